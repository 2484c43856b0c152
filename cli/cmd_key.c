/* vmb key change-passphrase|add|export */
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb key - change, add or export repository keys\n"
"\n"
"SYNOPSIS\n"
"    vmb key change-passphrase REPO [--new-passphrase-file F] [--json]\n"
"    vmb key add REPO [--new-passphrase-file F] [--json]\n"
"    vmb key export REPO FILE [--json]\n"
"\n"
"DESCRIPTION\n"
"    An encrypted repository has one random master key.  Each key file\n"
"    in the repository (keys/default, keys/<hex>) holds that master key\n"
"    wrapped by one passphrase (Argon2id).  The current passphrase, given\n"
"    as for every command, says which key file to work on: the one it\n"
"    opens.  None of these commands reads or rewrites any data: chunks,\n"
"    indexes and snapshots stay byte-for-byte the same.\n"
"\n"
"    change-passphrase\n"
"        Rewrites the key file the current passphrase opens so that the\n"
"        new passphrase opens it instead.  The file is replaced\n"
"        atomically; from then on the old passphrase no longer opens\n"
"        that key file.  (A key file exported earlier with 'vmb key\n"
"        export' still holds the old wrapping: keep it safe or destroy\n"
"        it.)\n"
"\n"
"    add\n"
"        Writes a new key file keys/<16 hex> for another passphrase.\n"
"        Both passphrases open the repository afterwards.  Remove the\n"
"        file from the repository to revoke it.\n"
"\n"
"    export\n"
"        Copies the key file the current passphrase opens to the local\n"
"        FILE (mode 0600; an existing FILE is never overwritten), for\n"
"        safekeeping away from the repository.  Copying it back as\n"
"        keys/default restores access with the passphrase it was made\n"
"        with, should the key files in the repository be lost or changed.\n"
"\n"
"    An unencrypted repository has no passphrase: change-passphrase and\n"
"    add fail on it.\n"
"\n"
"OPTIONS\n"
"    --new-passphrase-file F  read the new passphrase from F (first line)\n"
"    --passphrase-file F      read the current passphrase from F\n"
"    --json                   print {\"repository\":...,\"key\":...} (and\n"
"                             \"file\" for export)\n"
"\n"
"ENVIRONMENT\n"
"    VMB_PASSPHRASE           the current passphrase\n"
"    VMB_NEW_PASSPHRASE       the new passphrase (else asked for twice on\n"
"                             a terminal)\n"
"\n"
"EXIT STATUS\n"
"    0 done, 1 error (wrong passphrase, unencrypted repository, FILE\n"
"    exists, ...), 2 usage error\n";

static void print_json(const char *action, const char *repo,
		       const char *key, const char *file)
{
	printf("{\"action\":");
	cli_json_str(stdout, action);
	printf(",\"repository\":");
	cli_json_str(stdout, repo);
	printf(",\"key\":");
	cli_json_str(stdout, key);
	if (file) {
		printf(",\"file\":");
		cli_json_str(stdout, file);
	}
	printf("}\n");
}

int cmd_key(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "new-passphrase-file", required_argument, NULL, 'n' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	const char *newfile = NULL, *sub, *repo;
	char *pass = NULL, *keyname = NULL;
	vmb_repo *r = NULL;
	int c, rc, nargs;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 'n': newfile = optarg; break;
		default:
			return cli_bad_option("key", argv);
		}
	}
	if (optind >= argc)
		return cli_usage_error("key", "expected change-passphrase, add "
				       "or export");
	sub = argv[optind++];
	nargs = argc - optind;
	if (!strcmp(sub, "change-passphrase") || !strcmp(sub, "add")) {
		if (nargs != 1)
			return cli_usage_error("key", "expected 'key %s REPO'",
					       sub);
	} else if (!strcmp(sub, "export")) {
		if (nargs != 2)
			return cli_usage_error("key", "expected 'key export "
					       "REPO FILE'");
		if (newfile)
			return cli_usage_error("key", "export takes no new "
					       "passphrase");
	} else {
		return cli_usage_error("key", "unknown key command '%s'", sub);
	}
	repo = argv[optind];
	rc = cli_open_repo(repo, &r);
	if (rc)
		return cli_fail(rc);
	if (!strcmp(sub, "export")) {
		const char *file = argv[optind + 1];
		rc = vmb_repo_key_export(r, file);
		if (!rc) {
			if (g.json)
				print_json("export", repo, vmb_repo_key_name(r),
					   file);
			else if (!g.quiet)
				printf("exported %s to %s\n",
				       vmb_repo_key_name(r), file);
		}
		vmb_repo_close(r);
		return rc ? cli_fail(rc) : EXIT_OK;
	}
	if (!vmb_repo_encrypted(r)) {
		vmb_error_set(VMB_ENOTSUP, "%s: the repository is not "
			      "encrypted: it has no passphrase to %s", repo,
			      !strcmp(sub, "add") ? "add" : "change");
		vmb_repo_close(r);
		return cli_fail(VMB_ENOTSUP);
	}
	rc = cli_new_passphrase(&pass, "VMB_NEW_PASSPHRASE", newfile);
	if (rc) {
		vmb_repo_close(r);
		return cli_fail(rc);
	}
	if (!strcmp(sub, "add"))
		rc = vmb_repo_key_add(r, pass, &keyname);
	else
		rc = vmb_repo_key_change(r, pass);
	vmb_secret_free(pass);
	if (!rc) {
		const char *kn = keyname ? keyname : vmb_repo_key_name(r);
		if (g.json)
			print_json(sub, repo, kn, NULL);
		else if (!g.quiet)
			printf(keyname ? "added key file %s\n"
				       : "changed the passphrase of %s\n", kn);
	}
	vmb_free(keyname);
	vmb_repo_close(r);
	return rc ? cli_fail(rc) : EXIT_OK;
}
