/* vmb export */
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb export - write a snapshot to a self-contained tar\n"
"\n"
"SYNOPSIS\n"
"    vmb export REPO SNAP OUT.tar [--format raw|qcow2|vmdk[:SUB]|vdi]\n"
"               [--no-encrypt] [--json]\n"
"\n"
"DESCRIPTION\n"
"    Writes snapshot SNAP (a full id, a unique prefix, 'latest' or\n"
"    'VM@latest') as one pax tar file that needs no repository to be\n"
"    read: each disk as one image file, the VM configuration if the\n"
"    snapshot has one, and manifest.json (VM name, time, source snapshot,\n"
"    and for each disk its name, format, virtual size, file name and\n"
"    SHA-256).  Raw disks are stored as sparse entries, so their holes\n"
"    take no space in the archive and come back as holes when GNU tar,\n"
"    bsdtar or 'vmb import' extract them.\n"
"\n"
"    When the repository is encrypted, the archive is encrypted too\n"
"    (XChaCha20-Poly1305 secretstream with a key derived from the\n"
"    repository's master key): only this repository, or one sharing its\n"
"    master key, can import it, and no other tool can read it.  Use\n"
"    --no-encrypt for a plain tar, to move a snapshot to another\n"
"    repository or to another tool.  See docs/archives.md.\n"
"\n"
"    The archive is written as OUT.tar.tmp and renamed when complete; an\n"
"    existing OUT.tar is never overwritten.  qcow2, VMDK and VDI images\n"
"    are built in a temporary folder beside OUT.tar first.\n"
"\n"
"OPTIONS\n"
"    --format FMT    disk format in the archive: raw, qcow2, vmdk or vdi;\n"
"                    vmdk:streamOptimized or vmdk:monolithicSparse (the\n"
"                    default) pick the VMDK layout\n"
"                    (default: each disk's source format)\n"
"    --no-encrypt    write a plain tar even from an encrypted repository\n"
"    --json          print {snapshot, archive, disks, bytes_total,\n"
"                    bytes_written, encrypted, seconds}\n"
"\n"
"EXIT STATUS\n"
"    0 written, 1 error, 2 usage error, 3 damaged data in the repository\n";

int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "no-encrypt", no_argument, NULL, 'n' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_export_options o = VMB_EXPORT_OPTIONS_INIT;
	vmb_export_result res;
	vmb_repo *r;
	const char *out;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 'f':
			{
				char f[16];
				if (vmb_disk_format_parse(optarg, f, NULL))
					return cli_usage_error("export", "%s",
							vmb_error_message());
			}
			o.format = optarg;
			break;
		case 'n': o.encrypt = 0; break;
		default:
			return cli_bad_option("export", argv);
		}
	}
	if (optind + 3 != argc)
		return cli_usage_error("export", "expected REPO SNAP OUT.tar");
	out = argv[optind + 2];
	o.progress = cli_progress;
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	rc = vmb_repo_export(r, argv[optind + 1], out, &o, &res);
	cli_progress_done();
	vmb_repo_close(r);
	if (rc)
		return cli_fail(rc);
	if (g.json) {
		printf("{\"snapshot\":\"%s\",\"archive\":", res.snapshot);
		cli_json_str(stdout, out);
		printf(",\"disks\":%zu,\"bytes_total\":%llu,"
		       "\"bytes_written\":%llu,\"encrypted\":%s,"
		       "\"seconds\":%.3f}\n", res.disks,
		       (unsigned long long)res.bytes_total,
		       (unsigned long long)res.bytes_written,
		       res.encrypted ? "true" : "false", res.seconds);
	} else if (!g.quiet) {
		char a[32], b[32];
		printf("exported snapshot %.8s (%zu disk%s, %s) to %s: %s%s "
		       "in %.1f s\n", res.snapshot, res.disks,
		       res.disks == 1 ? "" : "s", cli_bytes(res.bytes_total, a),
		       out, cli_bytes(res.bytes_written, b),
		       res.encrypted ? ", encrypted" : "", res.seconds);
	}
	return EXIT_OK;
}
