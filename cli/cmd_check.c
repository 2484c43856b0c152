/* vmb check */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb check - check a repository's metadata\n"
"\n"
"SYNOPSIS\n"
"    vmb check REPO [--expect-snapshots N] [--expect-latest-within AGE]\n"
"                   [--vm NAME] [--json]\n"
"\n"
"DESCRIPTION\n"
"    The fast pass: every snapshot manifest and chunk index is read,\n"
"    authenticated and parsed, and every chunk they reference must exist.\n"
"    Chunk contents are not read (see 'vmb verify --data').  Each problem\n"
"    is printed on stdout as a 'problem:' line.\n"
"\n"
"    Authentication cannot show that whole snapshots were deleted or that\n"
"    the repository was rolled back to an older copy.  The expectations\n"
"    catch that: they fail the check when a VM holds fewer snapshots, or\n"
"    its newest is older, than a nightly job guarantees.\n"
"\n"
"OPTIONS\n"
"    --expect-snapshots N   each VM holds at least N readable snapshots\n"
"    --expect-latest-within AGE\n"
"                           each VM's newest snapshot is at most AGE old:\n"
"                           a number with s, m, h, d or w (26h, 2d, 90m;\n"
"                           no unit: seconds)\n"
"    --vm NAME              the expectations are about this VM only (it\n"
"                           must have snapshots); without it every VM in\n"
"                           the repository is held to them, and an empty\n"
"                           repository fails them\n"
"    --json                 one JSON object on stdout\n"
"\n"
"EXIT STATUS\n"
"    0 no problem, 3 problems found (damage, or an expectation not met),\n"
"    1 the check could not run, 2 usage error.\n";

#define MAX_JSON_PROBLEMS 100
static int problems;
static char *problem_text[MAX_JSON_PROBLEMS];

static void sink(vmb_log_level level, const char *msg, void *payload)
{
	if (level == VMB_LOG_ERROR) {
		if (problems < MAX_JSON_PROBLEMS)
			problem_text[problems] = strdup(msg);
		problems++;
		if (!g.json)
			printf("problem: %s\n", msg);
	} else if (!g.quiet) {
		fprintf(stderr, "vmb: warning: %s\n", msg);
	}
}

/* "26h", "2d", "90m", "3600" (seconds): > 0, no overflow. */
static int parse_age(const char *s, int64_t *out)
{
	static const struct { char u; int64_t s; } units[] = {
		{ 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 },
		{ 'w', 604800 }
	};
	char *end;
	long long v;
	int64_t mul = 1;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || v <= 0)
		return -1;
	if (*end) {
		size_t i;
		for (i = 0; i < sizeof units / sizeof *units; i++)
			if (end[0] == units[i].u && !end[1])
				break;
		if (i == sizeof units / sizeof *units)
			return -1;
		mul = units[i].s;
	}
	if (__builtin_mul_overflow((int64_t)v, mul, out))
		return -1;
	return 0;
}

int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "expect-snapshots", required_argument, NULL, 'n' },
		{ "expect-latest-within", required_argument, NULL, 'a' },
		{ "vm", required_argument, NULL, 'm' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_expect_options eo = VMB_EXPECT_OPTIONS_INIT;
	vmb_expect_result er;
	vmb_check_result res;
	vmb_repo *r;
	const char *cipher;
	int c, rc, expect = 0;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'n':
			errno = 0;
			eo.min_snapshots = strtoull(optarg, &end, 10);
			if (errno || *end || *optarg < '1' || *optarg > '9')
				return cli_usage_error("check", "bad snapshot "
						       "count '%s' (a number "
						       "of at least 1)", optarg);
			expect = 1;
			continue;
		case 'a':
			if (parse_age(optarg, &eo.max_age) < 0)
				return cli_usage_error("check", "bad age '%s' "
						       "(for example 26h, 2d, "
						       "90m)", optarg);
			expect = 1;
			continue;
		case 'm':
			eo.vm = optarg;
			continue;
		}
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (!k)
			return cli_bad_option("check", argv);
	}
	if (optind + 1 != argc)
		return cli_usage_error("check", "expected exactly one REPO");
	if (eo.vm && !expect)
		return cli_usage_error("check", "--vm goes with "
				       "--expect-snapshots or "
				       "--expect-latest-within");
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	vmb_log_set(sink, NULL, VMB_LOG_WARN);
	rc = vmb_repo_check_expect(r, expect ? &eo : NULL, &res, &er);
	cipher = vmb_repo_cipher(r);
	vmb_repo_close(r);
	if (rc && rc != VMB_EVERIFY)
		return cli_fail(rc);
	if (g.json) {
		printf("{\"ok\":%s,\"snapshots\":%llu,\"indexes\":%llu,"
		       "\"chunks_referenced\":%llu,\"chunks_missing\":%llu,"
		       "\"errors\":%llu,\"cipher\":\"%s\"",
		       rc ? "false" : "true",
		       (unsigned long long)res.snapshots,
		       (unsigned long long)res.indexes,
		       (unsigned long long)res.chunks_referenced,
		       (unsigned long long)res.chunks_missing,
		       (unsigned long long)res.errors, cipher);
		if (expect) {
			printf(",\"expect_ok\":%s,\"expect_failures\":%llu,"
			       "\"vms\":%llu,\"fewest_snapshots\":%llu,"
			       "\"oldest_latest_time\":%lld",
			       er.failures ? "false" : "true",
			       (unsigned long long)er.failures,
			       (unsigned long long)er.vms,
			       (unsigned long long)er.fewest,
			       (long long)er.oldest_latest);
		}
		printf(",\"problems\":[");
		for (int i = 0; i < problems && i < MAX_JSON_PROBLEMS; i++) {
			if (i)
				putchar(',');
			cli_json_str(stdout, problem_text[i]);
		}
		printf("]}\n");
	} else if (!g.quiet && !rc) {
		printf("ok: %llu snapshots, %llu indexes, %llu chunks "
		       "referenced (cipher %s)\n",
		       (unsigned long long)res.snapshots,
		       (unsigned long long)res.indexes,
		       (unsigned long long)res.chunks_referenced, cipher);
	}
	for (int i = 0; i < problems && i < MAX_JSON_PROBLEMS; i++)
		free(problem_text[i]);
	if (rc)
		return cli_fail(rc);
	return EXIT_OK;
}
