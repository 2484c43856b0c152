/* vmb verify */
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb verify - verify snapshots: their chunks exist, or their data\n"
"\n"
"SYNOPSIS\n"
"    vmb verify REPO [SNAP] [--data] [--sample PERCENT] [--json]\n"
"    vmb verify REPO [SNAP] --boot [--runner builtin|qemu] [--expect REGEX]\n"
"               [--timeout SECONDS] [--vcpu kvm|unicorn|tcg] [--memory MIB]\n"
"               [--disk NAME] [--json]\n"
"\n"
"DESCRIPTION\n"
"    Without --data, checks that every chunk the snapshot (or every\n"
"    snapshot) needs exists.  With --data, reads every chunk, checks its\n"
"    authentication tag, decompresses it and recomputes its id: the only\n"
"    way to know the bytes on the target are still the ones backed up.\n"
"    Each chunk is checked once however many snapshots share it.  Every\n"
"    damaged or missing chunk is reported once per snapshot, disk and\n"
"    guest offset it breaks, and recorded in the repository so that the\n"
"    next backup producing the same data rewrites it (healing).\n"
"\n"
"OPTIONS\n"
"    --data             read and authenticate the data\n"
"    --sample PERCENT   check a random PERCENT of the chunks (a cheaper\n"
"                       nightly pass; every chunk is eventually covered)\n"
"    --threads N        worker threads (default: one per core)\n"
"    --json             {ok, snapshots, chunks_checked, chunks_damaged,\n"
"                       bytes_checked, seconds, damage:[{snapshot, vm,\n"
"                       disk, offset, chunk, problem}]}\n"
"\n"
"  Booting (--boot): the snapshot's disk is booted read-only, straight\n"
"  from the repository (no restore; guest writes are thrown away), and\n"
"  judged by what its console prints.\n"
"    --runner builtin   the minimal runner (default): real mode at the\n"
"                       boot sector, our own firmware, KVM or unicorn\n"
"    --runner qemu      a whole OS under QEMU, disk served over NBD\n"
"                       ($VMB_QEMU, else qemu-system-x86_64 in PATH)\n"
"    --expect REGEX     POSIX extended regex the console (serial port,\n"
"                       BIOS teletype, VGA text) must show; default: a\n"
"                       boot sector that runs without a fault and\n"
"                       prints something\n"
"    --timeout SECONDS  give up after this long (default 30)\n"
"    --vcpu NAME        builtin: kvm or unicorn (default: kvm when\n"
"                       /dev/kvm works); qemu: kvm or tcg.  Also VMB_VCPU\n"
"    --memory MIB       guest RAM (default 256)\n"
"    --disk NAME        the disk to boot (default: the first)\n"
"    --console-limit N  a guest printing more than N bytes is stopped as a\n"
"                       console flood (default 1 MiB)\n"
"    --json             {booted, snapshot, disk, runner, vcpu, reason,\n"
"                       seconds, console, console_bytes, screen}\n"
"\n"
"EXIT STATUS\n"
"    0 all good (booted), 3 damage found or did not boot, 1 the\n"
"    verification could not run.\n";

/* Guest output, made safe for a terminal or a JSON string: printable
 * ASCII, newlines and tabs as they are, anything else as \xNN. */
static char *clean_console(const char *s, size_t n)
{
	char *o = malloc(n * 4 + 1), *p = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			continue;
		if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f))
			*p++ = (char)c;
		else {
			static const char hex[] = "0123456789abcdef";
			*p++ = '\\';
			*p++ = 'x';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p = 0;
	return o;
}

static int run_boot(vmb_repo *r, const char *snap, const vmb_boot_options *bo)
{
	vmb_boot_result res;
	char *con, *scr;
	int rc = vmb_hv_boot(r, snap, bo, &res);
	if (rc)
		return cli_fail(rc);
	con = clean_console(res.console ? res.console : "", res.console_len);
	scr = res.screen ? clean_console(res.screen, strlen(res.screen)) : NULL;
	if (g.json) {
		printf("{\"booted\":%s,\"snapshot\":", res.booted ? "true" :
		       "false");
		cli_json_str(stdout, res.snapshot);
		printf(",\"disk\":");
		cli_json_str(stdout, res.disk);
		printf(",\"runner\":");
		cli_json_str(stdout, res.runner);
		printf(",\"vcpu\":");
		cli_json_str(stdout, res.vcpu);
		printf(",\"reason\":");
		cli_json_str(stdout, res.reason);
		printf(",\"seconds\":%.3f,\"console\":", res.seconds);
		cli_json_str(stdout, con ? con : "");
		printf(",\"console_bytes\":%llu,\"screen\":",
		       (unsigned long long)res.console_total);
		if (scr)
			cli_json_str(stdout, scr);
		else
			printf("null");
		printf("}\n");
	} else {
		printf("%s: snapshot %.16s disk %s (%s runner%s%s) in %.1f s: "
		       "%s\n", res.booted ? "booted" : "did not boot",
		       res.snapshot, res.disk, res.runner,
		       res.vcpu[0] ? ", " : "", res.vcpu, res.seconds,
		       res.reason);
		if (!g.quiet && con && *con)
			printf("--- console (%llu bytes) ---\n%s%s",
			       (unsigned long long)res.console_total, con,
			       con[strlen(con) - 1] == '\n' ? "" : "\n");
		if (!g.quiet && scr && *scr)
			printf("--- screen ---\n%s%s", scr,
			       scr[strlen(scr) - 1] == '\n' ? "" : "\n");
	}
	free(con);
	free(scr);
	rc = res.booted ? EXIT_OK : EXIT_VERIFY;
	vmb_boot_result_free(&res);
	return rc;
}

struct dmg {
	int n;
};

static void on_damage(const char *snap, const char *vm, const char *disk,
		      uint64_t off, const char *chunk, const char *what,
		      void *payload)
{
	struct dmg *d = payload;
	if (g.json) {
		printf("%s{\"snapshot\":", d->n ? "," : "");
		cli_json_str(stdout, snap);
		printf(",\"vm\":");
		cli_json_str(stdout, vm ? vm : "");
		printf(",\"disk\":");
		if (disk)
			cli_json_str(stdout, disk);
		else
			printf("null");
		if (off == UINT64_MAX)
			printf(",\"offset\":null");
		else
			printf(",\"offset\":%llu", (unsigned long long)off);
		printf(",\"chunk\":");
		if (chunk)
			cli_json_str(stdout, chunk);
		else
			printf("null");
		printf(",\"problem\":");
		cli_json_str(stdout, what);
		printf("}");
	} else if (disk && off != UINT64_MAX) {
		printf("damaged: snapshot %s (%s) disk %s offset %llu: chunk "
		       "%.16s...: %s\n", snap, vm ? vm : "?", disk,
		       (unsigned long long)off, chunk ? chunk : "?", what);
	} else {
		printf("damaged: snapshot %s%s%s: %s\n", snap,
		       disk ? " disk " : "", disk ? disk : "", what);
	}
	d->n++;
}

static void quiet_sink(vmb_log_level l, const char *m, void *p)
{
	(void)l; (void)m; (void)p; /* damage is reported through on_damage */
}

int cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data", no_argument, NULL, 'd' },
		{ "sample", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 'j' },
		{ "boot", no_argument, NULL, 'b' },
		{ "runner", required_argument, NULL, 'r' },
		{ "expect", required_argument, NULL, 'e' },
		{ "timeout", required_argument, NULL, 't' },
		{ "vcpu", required_argument, NULL, 'c' },
		{ "memory", required_argument, NULL, 'm' },
		{ "disk", required_argument, NULL, 'D' },
		{ "console-limit", required_argument, NULL, 'L' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_verify_options o = VMB_VERIFY_OPTIONS_INIT;
	vmb_boot_options bo = VMB_BOOT_OPTIONS_INIT;
	vmb_verify_result res;
	struct dmg d = { 0 };
	vmb_repo *r;
	char *end;
	int c, rc, boot = 0;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 'd': o.data = 1; break;
		case 's':
			o.sample = strtod(optarg, &end);
			if (*end || o.sample <= 0 || o.sample > 100)
				return cli_usage_error("verify", "bad sample "
						       "percentage '%s'", optarg);
			o.data = 1;
			break;
		case 'j': {
			long v;
			if (cli_parse_int(optarg, 1, 64, &v))
				return cli_usage_error("verify", "bad thread count "
						       "'%s'", optarg);
			o.threads = (int)v;
			break;
		}
		case 'b': boot = 1; break;
		case 'r':
			if (strcmp(optarg, "builtin") && strcmp(optarg, "qemu"))
				return cli_usage_error("verify", "unknown runner "
						       "'%s' (builtin or qemu)",
						       optarg);
			bo.runner = optarg;
			break;
		case 'e': {
			regex_t re;
			int e = regcomp(&re, optarg, REG_EXTENDED | REG_NOSUB);
			if (e) {
				char msg[128];
				regerror(e, &re, msg, sizeof msg);
				return cli_usage_error("verify", "bad --expect "
						       "regex '%s': %s", optarg,
						       msg);
			}
			regfree(&re);
			bo.expect = optarg;
			break;
		}
		case 't':
			bo.timeout = strtod(optarg, &end);
			if (*end || !(bo.timeout > 0) || bo.timeout > 86400)
				return cli_usage_error("verify", "bad timeout "
						       "'%s' (seconds, up to "
						       "86400)", optarg);
			break;
		case 'c': bo.vcpu = optarg; break;
		case 'm': {
			long v;
			if (cli_parse_int(optarg, 2, 2048, &v))
				return cli_usage_error("verify", "bad memory "
						       "size '%s' (MiB, 2 to "
						       "2048)", optarg);
			bo.memory_mb = (uint32_t)v;
			break;
		}
		case 'D': bo.disk = optarg; break;
		case 'L': {
			long v;
			if (cli_parse_int(optarg, 1, (64l << 20), &v))
				return cli_usage_error("verify", "bad console "
						       "limit '%s' (bytes, up "
						       "to 64 MiB)", optarg);
			bo.console_limit = (size_t)v;
			break;
		}
		default: return cli_bad_option("verify", argv);
		}
	}
	if (optind + 1 != argc && optind + 2 != argc)
		return cli_usage_error("verify", "expected REPO [SNAP]");
	if (!boot && (bo.runner || bo.expect || bo.timeout || bo.vcpu ||
		      bo.memory_mb || bo.disk || bo.console_limit))
		return cli_usage_error("verify", "--runner, --expect, --timeout, "
				       "--vcpu, --memory and --disk go with "
				       "--boot");
	if (optind + 2 == argc)
		o.snapshot = argv[optind + 1];
	if (boot) {
		if (o.data)
			return cli_usage_error("verify", "--boot and --data are "
					       "separate runs");
		if (!bo.vcpu && getenv("VMB_VCPU") && *getenv("VMB_VCPU"))
			bo.vcpu = getenv("VMB_VCPU");
		rc = cli_open_repo(argv[optind], &r);
		if (rc)
			return cli_fail(rc);
		rc = run_boot(r, o.snapshot, &bo);
		vmb_repo_close(r);
		return rc;
	}
	o.progress = cli_progress;
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	vmb_log_set(quiet_sink, NULL, VMB_LOG_ERROR);
	if (g.json)
		printf("{\"damage\":[");
	rc = vmb_repo_verify(r, &o, on_damage, &d, &res);
	cli_progress_done();
	vmb_repo_close(r);
	if (g.json)
		printf("],\"ok\":%s,\"snapshots\":%llu,\"chunks_checked\":%llu,"
		       "\"chunks_damaged\":%llu,\"bytes_checked\":%llu,"
		       "\"seconds\":%.3f}\n", rc ? "false" : "true",
		       (unsigned long long)res.snapshots,
		       (unsigned long long)res.chunks_checked,
		       (unsigned long long)res.chunks_damaged,
		       (unsigned long long)res.bytes_checked, res.seconds);
	else if (!rc && !g.quiet) {
		char a[32];
		printf("ok: %llu snapshot%s, %llu chunks %s (%s) in %.1f s\n",
		       (unsigned long long)res.snapshots,
		       res.snapshots == 1 ? "" : "s",
		       (unsigned long long)res.chunks_checked,
		       o.data ? "read and authenticated" : "present",
		       cli_bytes(res.bytes_checked, a), res.seconds);
	}
	if (rc)
		return cli_fail(rc);
	return EXIT_OK;
}
