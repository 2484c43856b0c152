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
"               [--no-encrypt] [--archive-passphrase-file FILE] [--json]\n"
"    vmb export REPO SNAP OUT.ova [--ova] [--json]\n"
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
"    (XChaCha20-Poly1305 secretstream) under a random key of its own,\n"
"    which the archive carries wrapped under a passphrase with Argon2id,\n"
"    as the repository's key file does: 'vmb import' on any host, into\n"
"    any repository, needs only the archive and that passphrase, even\n"
"    after this repository is gone.  The passphrase is\n"
"    --archive-passphrase-file, else $VMB_ARCHIVE_PASSPHRASE, else the\n"
"    repository's own.  Use --no-encrypt for a plain tar that any tool\n"
"    reads.  See docs/archives.md.\n"
"\n"
"    With --ova (or an OUT whose name ends in .ova) the archive is an OVA\n"
"    that VMware and VirtualBox import: an OVF 1.0 descriptor built from\n"
"    the VM's stored configuration (CPUs, memory, disks, NICs; a minimal\n"
"    valid one when there is none), a manifest with SHA256 digests, and\n"
"    each disk as a streamOptimized VMDK, in the order OVF requires.  An\n"
"    OVA is never encrypted: it is plain data for another tool.\n"
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
"    --archive-passphrase-file FILE\n"
"                    the encrypted archive's passphrase (first line of\n"
"                    FILE); default $VMB_ARCHIVE_PASSPHRASE, else the\n"
"                    repository's passphrase\n"
"    --ova           write an OVA (see above)\n"
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
		{ "archive-passphrase-file", required_argument, NULL, 'P' },
		{ "ova", no_argument, NULL, 'O' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_export_options o = VMB_EXPORT_OPTIONS_INIT;
	vmb_export_result res;
	vmb_repo *r;
	const char *out, *pfile = NULL;
	char *pass = NULL;
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
		case 'P': pfile = optarg; break;
		case 'O': o.ova = 1; break;
		default:
			return cli_bad_option("export", argv);
		}
	}
	if (optind + 3 != argc)
		return cli_usage_error("export", "expected REPO SNAP OUT.tar");
	out = argv[optind + 2];
	{
		size_t l = strlen(out);
		if (l > 4 && !strcmp(out + l - 4, ".ova"))
			o.ova = 1;
	}
	o.progress = cli_progress;
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	if (o.encrypt && !o.ova && vmb_repo_encrypted(r)) {
		rc = cli_archive_passphrase(&pass, pfile);
		if (!rc && !pass)
			rc = vmb_error_set(VMB_EINVAL, "an encrypted archive "
					   "needs a passphrase: set "
					   "VMB_ARCHIVE_PASSPHRASE, use "
					   "--archive-passphrase-file, or "
					   "--no-encrypt");
		if (rc) {
			vmb_repo_close(r);
			return cli_fail(rc);
		}
		o.passphrase = pass;
	}
	rc = vmb_repo_export(r, argv[optind + 1], out, &o, &res);
	cli_progress_done();
	vmb_repo_close(r);
	vmb_secret_free(pass);
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
