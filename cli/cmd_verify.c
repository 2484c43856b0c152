/* vmb verify */
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
"               [--timeout SECONDS]\n"
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
"    --boot             boot the snapshot (not available yet)\n"
"\n"
"EXIT STATUS\n"
"    0 all good, 3 damage found, 1 the verification could not run.\n";

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
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_verify_options o = VMB_VERIFY_OPTIONS_INIT;
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
			char *e;
			long v = strtol(optarg, &e, 10);
			if (*e || v < 1 || v > 64)
				return cli_usage_error("verify", "bad thread count "
						       "'%s'", optarg);
			o.threads = (int)v;
			break;
		}
		case 'b': boot = 1; break;
		case 'r': case 'e': case 't': break;
		default: return cli_bad_option("verify", argv);
		}
	}
	if (optind + 1 != argc && optind + 2 != argc)
		return cli_usage_error("verify", "expected REPO [SNAP]");
	if (boot) {
		vmb_error_set(VMB_ENOTSUP, "boot verification is not available "
			      "in this build yet");
		return cli_fail(VMB_ENOTSUP);
	}
	if (optind + 2 == argc)
		o.snapshot = argv[optind + 1];
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
