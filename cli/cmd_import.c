/* vmb import */
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb import - import an exported tar or an OVA as a new snapshot\n"
"\n"
"SYNOPSIS\n"
"    vmb import REPO ARCHIVE [--vm NAME] [--tag TAG]... [--json]\n"
"\n"
"DESCRIPTION\n"
"    Reads ARCHIVE and backs its disks up into REPO as one new snapshot.\n"
"    ARCHIVE is either a 'vmb export' archive (plain, or encrypted: it\n"
"    opens with its passphrase alone, into any repository; archives of\n"
"    format 1, from older vmb, only into a repository sharing the\n"
"    exporter's master key) or an OVA: a tar holding an\n"
"    .ovf descriptor and its disk images (streamOptimized VMDK, as\n"
"    VirtualBox and VMware write them).  The VM configuration (the\n"
"    exported one, or the OVF descriptor) is kept with the snapshot.\n"
"\n"
"    The disks are first extracted into a private temporary folder under\n"
"    $TMPDIR (default /tmp), which needs room for the disks' data, and\n"
"    checked: every SHA-256 in an export's manifest.json, or every line\n"
"    (SHA1, SHA256 or SHA512) of an OVA's .mf manifest, must match, every\n"
"    member but the manifest and certificate must be listed in it, and\n"
"    every disk's size must match the manifest (ovf:size and\n"
"    ovf:capacity for an OVA).  An OVA's .cert signature is not checked,\n"
"    and vmb says so.  Only then is anything written to REPO.\n"
"\n"
"    Archives are treated as hostile.  An archive with an absolute path,\n"
"    a '..' component, more than one folder level, a link, a device, a\n"
"    file declaring more than 16 TiB, more than 1000 entries, a disk\n"
"    image that refers to a backing file, or damaged tar structure is\n"
"    refused with one error line and nothing is imported.\n"
"\n"
"    The VM name is --vm, else the one in manifest.json, else the OVF's\n"
"    VirtualSystem id or Name, else the archive's file name.\n"
"\n"
"OPTIONS\n"
"    --vm NAME       VM name of the new snapshot\n"
"    --tag TAG       tag the new snapshot (repeatable)\n"
"    --threads N     backup worker threads (default: one per core)\n"
"    --archive-passphrase-file FILE\n"
"                    an encrypted archive's passphrase (first line of\n"
"                    FILE); default $VMB_ARCHIVE_PASSPHRASE, else the\n"
"                    repository's passphrase\n"
"    --json          print the backup's JSON object: snapshot, vm,\n"
"                    bytes_total, bytes_read, bytes_new, bytes_stored,\n"
"                    chunks_total, chunks_new, seconds, cbt, archive\n"
"\n"
"ENVIRONMENT\n"
"    TMPDIR          where the archive is extracted (default /tmp)\n"
"    VMB_ARCHIVE_PASSPHRASE  an encrypted archive's passphrase\n"
"\n"
"EXIT STATUS\n"
"    0 imported, 1 error or refused archive, 2 usage error, 3 a checksum\n"
"    did not match (damaged archive)\n";

int cmd_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'm' },
		{ "tag", required_argument, NULL, 't' },
		{ "threads", required_argument, NULL, 'j' },
		{ "archive-passphrase-file", required_argument, NULL, 'P' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_import_options o = VMB_IMPORT_OPTIONS_INIT;
	vmb_backup_result res;
	const char **tags = NULL;
	size_t ntags = 0;
	char *vm = NULL, *pass = NULL;
	const char *pfile = NULL;
	vmb_repo *r;
	int c, rc;

	tags = calloc((size_t)argc + 1, sizeof *tags);
	if (!tags)
		return cli_fail(VMB_ENOMEM);
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0) {
			free(tags);
			return cli_help(help);
		}
		if (k)
			continue;
		switch (c) {
		case 'm': o.vm = optarg; break;
		case 't': tags[ntags++] = optarg; break;
		case 'P': pfile = optarg; break;
		case 'j': {
			long v;
			if (cli_parse_int(optarg, 1, 64, &v))
				return cli_usage_error("import", "bad thread count "
						       "'%s'", optarg);
			o.threads = (int)v;
			break;
		}
		default:
			free(tags);
			return cli_bad_option("import", argv);
		}
	}
	if (optind + 2 != argc) {
		free(tags);
		return cli_usage_error("import", "expected REPO ARCHIVE");
	}
	if (o.vm && !*o.vm) {
		free(tags);
		return cli_usage_error("import", "empty VM name");
	}
	o.tags = ntags ? tags : NULL;
	o.ntags = ntags;
	o.progress = cli_progress;
	rc = cli_open_repo(argv[optind], &r);
	if (rc) {
		free(tags);
		return cli_fail(rc);
	}
	rc = cli_archive_passphrase(&pass, pfile);
	if (!rc) {
		o.passphrase = pass;
		rc = vmb_repo_import(r, argv[optind + 1], &o, &res, &vm);
	}
	cli_progress_done();
	vmb_repo_close(r);
	free(tags);
	vmb_secret_free(pass);
	if (rc) {
		int ex = cli_fail(rc);
		/* only a checksum mismatch means damaged data (exit 3);
		 * a refused or unreadable archive is an error (exit 1) */
		return rc == VMB_EVERIFY ? EXIT_VERIFY
					 : ex == EXIT_VERIFY ? EXIT_ERR : ex;
	}
	if (g.json) {
		printf("{\"snapshot\":\"%s\",\"vm\":", res.snapshot);
		cli_json_str(stdout, vm);
		printf(",\"bytes_total\":%llu,\"bytes_read\":%llu,"
		       "\"bytes_new\":%llu,\"bytes_stored\":%llu,"
		       "\"chunks_total\":%llu,\"chunks_new\":%llu,"
		       "\"seconds\":%.3f,\"cbt\":",
		       (unsigned long long)res.bytes_total,
		       (unsigned long long)res.bytes_read,
		       (unsigned long long)res.bytes_new,
		       (unsigned long long)res.bytes_stored,
		       (unsigned long long)res.chunks_total,
		       (unsigned long long)res.chunks_new, res.seconds);
		cli_json_str(stdout, res.cbt ? res.cbt : "none");
		printf(",\"archive\":");
		cli_json_str(stdout, argv[optind + 1]);
		printf("}\n");
	} else if (!g.quiet) {
		char a[32], b[32];
		printf("imported %s as snapshot %s of %s: %s, %s new\n",
		       argv[optind + 1], res.snapshot, vm ? vm : "?",
		       cli_bytes(res.bytes_total, a),
		       cli_bytes(res.bytes_stored, b));
	}
	vmb_free(vm);
	return EXIT_OK;
}
