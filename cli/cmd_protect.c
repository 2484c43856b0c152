/* vmb protect */
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb protect - protect a snapshot from prune, or lift it\n"
"\n"
"SYNOPSIS\n"
"    vmb protect REPO SNAP [--remove]\n"
"\n"
"DESCRIPTION\n"
"    A protected snapshot is never removed by 'vmb prune', whatever the\n"
"    rules.  --remove lifts the protection.\n";

int cmd_protect(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "remove", no_argument, NULL, 'r' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_repo *r;
	int c, rc, on = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		if (c == 'r')
			on = 0;
		else
			return cli_bad_option("protect", argv);
	}
	if (optind + 2 != argc)
		return cli_usage_error("protect", "expected REPO and SNAP");
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	rc = vmb_repo_protect(r, argv[optind + 1], on);
	vmb_repo_close(r);
	if (rc)
		return cli_fail(rc);
	if (g.json)
		printf("{\"protected\":%s}\n", on ? "true" : "false");
	else if (!g.quiet)
		printf("%s %s\n", on ? "protected" : "unprotected",
		       argv[optind + 1]);
	return EXIT_OK;
}
