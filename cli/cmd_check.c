/* vmb check */
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb check - check a repository's metadata\n"
"\n"
"SYNOPSIS\n"
"    vmb check REPO [--json]\n"
"\n"
"DESCRIPTION\n"
"    The fast pass: every snapshot manifest and chunk index is read,\n"
"    authenticated and parsed, and every chunk they reference must exist.\n"
"    Chunk contents are not read (see 'vmb verify --data').  Each problem\n"
"    is printed on stdout as a 'problem:' line.\n"
"\n"
"EXIT STATUS\n"
"    0 no problem, 3 problems found, 1 the check could not run.\n";

static int problems;

static void sink(vmb_log_level level, const char *msg, void *payload)
{
	if (level == VMB_LOG_ERROR) {
		problems++;
		if (!g.json)
			printf("problem: %s\n", msg);
	} else if (!g.quiet) {
		fprintf(stderr, "vmb: warning: %s\n", msg);
	}
}

int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	vmb_check_result res;
	vmb_repo *r;
	const char *cipher;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (!k)
			return cli_bad_option("check", argv);
	}
	if (optind + 1 != argc)
		return cli_usage_error("check", "expected exactly one REPO");
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	vmb_log_set(sink, NULL, VMB_LOG_WARN);
	rc = vmb_repo_check(r, &res);
	cipher = vmb_repo_cipher(r);
	vmb_repo_close(r);
	if (rc && rc != VMB_EVERIFY)
		return cli_fail(rc);
	if (g.json)
		printf("{\"ok\":%s,\"snapshots\":%llu,\"indexes\":%llu,"
		       "\"chunks_referenced\":%llu,\"chunks_missing\":%llu,"
		       "\"errors\":%llu,\"cipher\":\"%s\"}\n",
		       rc ? "false" : "true",
		       (unsigned long long)res.snapshots,
		       (unsigned long long)res.indexes,
		       (unsigned long long)res.chunks_referenced,
		       (unsigned long long)res.chunks_missing,
		       (unsigned long long)res.errors, cipher);
	else if (!g.quiet && !rc)
		printf("ok: %llu snapshots, %llu indexes, %llu chunks "
		       "referenced (cipher %s)\n",
		       (unsigned long long)res.snapshots,
		       (unsigned long long)res.indexes,
		       (unsigned long long)res.chunks_referenced, cipher);
	if (rc)
		return cli_fail(rc);
	return EXIT_OK;
}
