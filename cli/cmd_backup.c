/* vmb backup */
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb backup - back up disk images as a new snapshot\n"
"\n"
"SYNOPSIS\n"
"    vmb backup REPO SOURCE... [--vm NAME] [--tag TAG]... [--full]\n"
"               [--json] [--threads N]\n"
"\n"
"DESCRIPTION\n"
"    Reads each SOURCE disk image (raw, qcow2, VMDK or VDI, recognised by\n"
"    content, with its backing chain) and stores it in REPO as one\n"
"    snapshot.  Only allocated data is read; holes and zero blocks are\n"
"    recorded as markers.  Data is cut into fixed chunks on the guest's\n"
"    offsets, deduplicated against everything already in the repository,\n"
"    compressed and encrypted.  The parent is the latest snapshot of the\n"
"    same VM: chunks whose fingerprint did not change are not hashed,\n"
"    compressed or uploaded again.  The snapshot becomes visible only\n"
"    when everything it needs is stored, so an interrupted backup leaves\n"
"    no half snapshot behind.\n"
"\n"
"OPTIONS\n"
"    --vm NAME      VM the snapshot belongs to (default: the first\n"
"                   disk's file name without extension)\n"
"    --tag TAG      attach a tag (repeatable)\n"
"    --full         ignore the parent snapshot (read and hash all)\n"
"    --threads N    worker threads (default: one per core)\n"
"    --json         print one JSON object when done, with snapshot, vm,\n"
"                   bytes_total, bytes_read, bytes_new, bytes_stored,\n"
"                   chunks_total, chunks_new, seconds and cbt\n"
"\n"
"EXIT STATUS\n"
"    0 when the snapshot was written, 1 on any failure.\n";

static int backup_main(int argc, char **argv, const char **tags);

int cmd_backup(int argc, char **argv)
{
	/* room for every --tag; freed here whichever way backup_main ends */
	const char **tags = calloc((size_t)argc, sizeof *tags);
	int rc;
	if (!tags)
		return EXIT_ERR;
	rc = backup_main(argc, argv, tags);
	free(tags);
	return rc;
}

static int backup_main(int argc, char **argv, const char **tags)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'm' },
		{ "tag", required_argument, NULL, 't' },
		{ "full", no_argument, NULL, 'f' },
		{ "threads", required_argument, NULL, 'j' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_backup_options o = VMB_BACKUP_OPTIONS_INIT;
	vmb_backup_result res;
	vmb_backup_source *src;
	size_t ntags = 0, nsrc;
	vmb_repo *r;
	char *end;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 'm': o.vm = optarg; break;
		case 't': tags[ntags++] = optarg; break;
		case 'f': o.full = 1; break;
		case 'j':
			o.threads = (int)strtol(optarg, &end, 10);
			if (*end || o.threads < 1 || o.threads > 64)
				return cli_usage_error("backup", "bad thread "
						       "count '%s'", optarg);
			break;
		default:
			return cli_bad_option("backup", argv);
		}
	}
	if (argc - optind < 2)
		return cli_usage_error("backup", "expected REPO and at least "
				       "one SOURCE");
	for (int i = optind + 1; i < argc; i++)
		if (!strncmp(argv[i], "libvirt:", 8)) {
			vmb_error_set(VMB_ENOTSUP, "%s: libvirt sources need the "
				      "libvirt plugin, which is not built yet",
				      argv[i]);
			return cli_fail(VMB_ENOTSUP);
		}
	nsrc = (size_t)(argc - optind - 1);
	src = calloc(nsrc, sizeof *src);
	if (!src)
		return EXIT_ERR;
	for (size_t i = 0; i < nsrc; i++)
		src[i].path = argv[optind + 1 + (int)i];
	o.tags = tags;
	o.ntags = ntags;
	o.progress = cli_progress;
	rc = cli_open_repo(argv[optind], &r);
	if (rc) {
		free(src);
		return cli_fail(rc);
	}
	rc = vmb_repo_backup(r, src, nsrc, &o, &res);
	cli_progress_done();
	if (rc) {
		vmb_error_prefix("backup failed: ");
		vmb_repo_close(r);
		free(src);
		return cli_fail(rc);
	}
	{
		vmb_snapshot *s = NULL;
		const char *vm = o.vm;
		if (!vm && vmb_repo_snapshot_find(r, res.snapshot, &s) == 0)
			vm = vmb_snapshot_vm(s);
		if (g.json) {
			printf("{\"snapshot\":\"%s\",\"vm\":", res.snapshot);
			cli_json_str(stdout, vm ? vm : "");
			printf(",\"bytes_total\":%llu,\"bytes_read\":%llu,"
			       "\"bytes_new\":%llu,\"bytes_stored\":%llu,"
			       "\"chunks_total\":%llu,\"chunks_new\":%llu,"
			       "\"chunks_zero\":%llu,\"seconds\":%.3f,"
			       "\"cbt\":\"%s\"}\n",
			       (unsigned long long)res.bytes_total,
			       (unsigned long long)res.bytes_read,
			       (unsigned long long)res.bytes_new,
			       (unsigned long long)res.bytes_stored,
			       (unsigned long long)res.chunks_total,
			       (unsigned long long)res.chunks_new,
			       (unsigned long long)res.chunks_zero,
			       res.seconds, res.cbt);
		} else if (!g.quiet) {
			char a[32], b[32], d[32], e[32];
			printf("snapshot %s of %s: %s total, %s read, %s new, "
			       "%s stored in %.1f s (cbt: %s)\n", res.snapshot,
			       vm ? vm : "?", cli_bytes(res.bytes_total, a),
			       cli_bytes(res.bytes_read, b),
			       cli_bytes(res.bytes_new, d),
			       cli_bytes(res.bytes_stored, e), res.seconds,
			       res.cbt);
		}
		vmb_snapshot_free(s);
	}
	vmb_repo_close(r);
	free(src);
	return EXIT_OK;
}
