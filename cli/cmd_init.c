/* vmb init */
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb init - create a repository\n"
"\n"
"SYNOPSIS\n"
"    vmb init REPO [--encryption repokey|none] [--chunk-size SIZE]\n"
"             [--compression-level N]\n"
"             [--cipher auto|xchacha20poly1305|aes256gcm]\n"
"\n"
"DESCRIPTION\n"
"    Creates an empty repository at REPO: a folder path, file:///path,\n"
"    nfs://HOST/EXPORT/PATH or s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX].\n"
"    With repokey encryption (the default) a random master key encrypts\n"
"    everything and is stored in the repository wrapped with your\n"
"    passphrase (Argon2id).  Keep the passphrase: without it the\n"
"    backups cannot be read.  With --encryption none, data is only\n"
"    compressed and checksummed.\n"
"\n"
"OPTIONS\n"
"    --encryption MODE      repokey (default) or none\n"
"    --cipher NAME          how repokey seals every object, fixed for the\n"
"                           repository's life: aes256gcm (AES-256-GCM\n"
"                           with a subkey per object; needs AES-NI and\n"
"                           PCLMUL, several times faster), xchacha20poly1305\n"
"                           (XChaCha20-Poly1305, runs everywhere), or auto\n"
"                           (the default: aes256gcm where this CPU has it).\n"
"                           A machine without AES-NI cannot read an\n"
"                           aes256gcm repository.\n"
"    --chunk-size SIZE      power of two from 64K to 16M (default 4M);\n"
"                           dedup granularity of disk images\n"
"    --compression-level N  zstd level 1..19 (default 1), 0 to disable\n"
"    --passphrase-file F    read the new passphrase from F\n"
"    --json                 print {\"repository\":...,\"id\":...,\n"
"                           \"cipher\":...}\n"
"\n"
"    The passphrase comes from --passphrase-file, VMB_PASSPHRASE, or is\n"
"    asked for twice on a terminal.\n";

int cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "encryption", required_argument, NULL, 'e' },
		{ "chunk-size", required_argument, NULL, 'c' },
		{ "compression-level", required_argument, NULL, 'l' },
		{ "cipher", required_argument, NULL, 'C' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_repo_init_options o = VMB_REPO_INIT_OPTIONS_INIT;
	char *pass = NULL;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 'e':
			if (!strcmp(optarg, "repokey"))
				o.encrypted = 1;
			else if (!strcmp(optarg, "none"))
				o.encrypted = 0;
			else
				return cli_usage_error("init", "unknown "
						       "encryption '%s'", optarg);
			break;
		case 'c': {
			uint64_t v;
			if (cli_parse_size(optarg, 1, 16u << 20, &v))
				return cli_usage_error("init", "bad chunk size "
						       "'%s'", optarg);
			o.chunk_size = (uint32_t)v;
			break;
		}
		case 'C':
			if (!strcmp(optarg, "auto"))
				o.cipher = VMB_CIPHER_AUTO;
			else if (!strcmp(optarg, "xchacha20poly1305"))
				o.cipher = VMB_CIPHER_XCHACHA20POLY1305;
			else if (!strcmp(optarg, "aes256gcm"))
				o.cipher = VMB_CIPHER_AES256GCM;
			else
				return cli_usage_error("init", "unknown cipher "
						       "'%s' (auto, "
						       "xchacha20poly1305 or "
						       "aes256gcm)", optarg);
			break;
		case 'l': {
			long v;
			if (cli_parse_int(optarg, 0, 19, &v))
				return cli_usage_error("init", "bad compression "
						       "level '%s'", optarg);
			o.zstd_level = v ? (int)v : -1;
			break;
		}
		default:
			return cli_bad_option("init", argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("init", "expected exactly one REPO");
	if (o.encrypted && !vmb_cipher_available(o.cipher))
		return cli_fail(vmb_error_set(VMB_ENOTSUP, "init: AES-256-GCM "
					      "is not available on this machine "
					      "(no AES-NI/PCLMUL); use --cipher "
					      "xchacha20poly1305"));
	if (o.encrypted) {
		rc = cli_new_passphrase(&pass, NULL, g.passphrase_file);
		if (rc)
			return cli_fail(rc);
	}
	rc = vmb_repo_init(argv[optind], pass, &o);
	vmb_secret_free(pass);
	if (rc)
		return cli_fail(rc);
	if (g.json) {
		vmb_repo *r;
		rc = cli_open_repo(argv[optind], &r);
		if (rc)
			return cli_fail(rc);
		printf("{\"repository\":");
		cli_json_str(stdout, argv[optind]);
		printf(",\"id\":\"%s\",\"encryption\":\"%s\",\"cipher\":\"%s\","
		       "\"chunk_size\":%u}\n", vmb_repo_id(r),
		       vmb_repo_encrypted(r) ? "repokey" : "none",
		       vmb_repo_cipher(r), vmb_repo_chunk_size(r));
		vmb_repo_close(r);
	} else if (!g.quiet) {
		printf("initialized %s repository at %s\n",
		       o.encrypted ? "encrypted" : "unencrypted", argv[optind]);
	}
	return EXIT_OK;
}
