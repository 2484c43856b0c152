/* vmb restore */
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb restore - restore a snapshot's disks to a folder\n"
"\n"
"SYNOPSIS\n"
"    vmb restore REPO SNAP --to DIR [--format raw|qcow2|vmdk|vdi]\n"
"                [--disk NAME] [--json]\n"
"\n"
"DESCRIPTION\n"
"    Writes DIR/<disk>.<ext> for each disk of snapshot SNAP (a full id, a\n"
"    unique prefix, 'latest' or 'VM@latest'), and the VM configuration\n"
"    beside them when the snapshot has one.  Any source format can be\n"
"    restored to any target format; the default is the source's own.\n"
"    Output images are sparse: zero areas stay unallocated.  Every chunk\n"
"    is authenticated before it is written; a damaged chunk stops the\n"
"    restore (exit 3) and the partial image is removed.  Existing files\n"
"    are never overwritten.\n"
"\n"
"OPTIONS\n"
"    --to DIR        destination folder (created if missing)\n"
"    --format FMT    raw, qcow2, vmdk or vdi\n"
"    --disk NAME     restore only this disk\n"
"    --threads N     worker threads (default: one per core)\n"
"    --no-sync       do not fsync the restored images at the end (as\n"
"                    qemu-img convert does not): faster, but a host crash\n"
"                    right after may leave them incomplete\n"
"    --json          print {snapshot, disks, bytes_total, bytes_written,\n"
"                    seconds}\n";

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "format", required_argument, NULL, 'f' },
		{ "disk", required_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 'j' },
		{ "no-sync", no_argument, NULL, 'S' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_restore_options o = VMB_RESTORE_OPTIONS_INIT;
	vmb_restore_result res;
	const char *dir = NULL;
	vmb_repo *r;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 't': dir = optarg; break;
		case 'f':
			if (strcmp(optarg, "raw") && strcmp(optarg, "qcow2") &&
			    strcmp(optarg, "vmdk") && strcmp(optarg, "vdi"))
				return cli_usage_error("restore", "unknown format "
						       "'%s'", optarg);
			o.format = optarg;
			break;
		case 'd': o.disk = optarg; break;
		case 'j': {
			char *e;
			long v = strtol(optarg, &e, 10);
			if (*e || v < 1 || v > 64)
				return cli_usage_error("restore", "bad thread count "
						       "'%s'", optarg);
			o.threads = (int)v;
			break;
		}
		case 'S': o.no_sync = 1; break;
		default:
			return cli_bad_option("restore", argv);
		}
	}
	if (optind + 2 != argc)
		return cli_usage_error("restore", "expected REPO and SNAP");
	if (!dir)
		return cli_usage_error("restore", "--to DIR is required");
	o.progress = cli_progress;
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	rc = vmb_repo_restore(r, argv[optind + 1], dir, &o, &res);
	cli_progress_done();
	vmb_repo_close(r);
	if (rc)
		return cli_fail(rc);
	if (g.json) {
		printf("{\"snapshot\":");
		cli_json_str(stdout, argv[optind + 1]);
		printf(",\"disks\":%zu,\"bytes_total\":%llu,"
		       "\"bytes_written\":%llu,\"seconds\":%.3f}\n", res.disks,
		       (unsigned long long)res.bytes_total,
		       (unsigned long long)res.bytes_written, res.seconds);
	} else if (!g.quiet) {
		char a[32];
		printf("restored %zu disk%s (%s) to %s in %.1f s\n", res.disks,
		       res.disks == 1 ? "" : "s", cli_bytes(res.bytes_total, a),
		       dir, res.seconds);
	}
	return EXIT_OK;
}
