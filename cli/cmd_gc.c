/* vmb gc */
#include <stdlib.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb gc - free the space of chunks no snapshot uses\n"
"\n"
"SYNOPSIS\n"
"    vmb gc REPO [--dry-run] [--memory-limit SIZE] [--grace SECONDS] [--json]\n"
"\n"
"DESCRIPTION\n"
"    Marks every chunk that a snapshot references and deletes the rest,\n"
"    with unused indexes.  Safe while backups run, from any host: chunks\n"
"    younger than the oldest running backup are kept, and a backup that\n"
"    overlaps a GC re-checks (and if needed re-uploads) what it reused\n"
"    before it finishes; see docs/gc.md.  With no backup running, one run\n"
"    frees every unreferenced chunk.  Takes the repository's maintenance\n"
"    lease (it expires if gc is killed).\n"
"\n"
"OPTIONS\n"
"    --dry-run              count what would be freed; delete nothing\n"
"    --memory-limit SIZE    memory for the mark set (default 256M); more\n"
"                           chunks than fit means several passes\n"
"    --grace SECONDS        also keep chunks younger than this\n"
"    --json                 {chunks_total, chunks_referenced,\n"
"                           chunks_young, chunks_deleted, bytes_freed,\n"
"                           indexes_deleted, sessions_running,\n"
"                           sessions_stale, passes, seconds, dry_run}\n";

int cmd_gc(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "memory-limit", required_argument, NULL, 'm' },
		{ "grace", required_argument, NULL, 'g' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_gc_options o = VMB_GC_OPTIONS_INIT;
	vmb_gc_result res;
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
		case 'n': o.dry_run = 1; break;
		case 'm': {
			uint64_t v;
			if (cli_parse_size(optarg, 1u << 20, UINT64_MAX, &v))
				return cli_usage_error("gc", "bad memory limit "
						       "'%s' (at least 1M)", optarg);
			o.memory_limit = v;
			break;
		}
		case 'g':
			o.grace = strtoll(optarg, &end, 10);
			if (*end || o.grace < 0)
				return cli_usage_error("gc", "bad grace '%s'",
						       optarg);
			break;
		default: return cli_bad_option("gc", argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("gc", "expected exactly one REPO");
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	rc = vmb_repo_gc(r, &o, &res);
	vmb_repo_close(r);
	if (rc)
		return cli_fail(rc);
	if (g.json) {
		printf("{\"chunks_total\":%llu,\"chunks_referenced\":%llu,"
		       "\"chunks_young\":%llu,\"chunks_deleted\":%llu,"
		       "\"bytes_freed\":%llu,\"indexes_deleted\":%llu,"
		       "\"sessions_running\":%llu,\"sessions_stale\":%llu,"
		       "\"passes\":%u,\"seconds\":%.3f,\"dry_run\":%s}\n",
		       (unsigned long long)res.chunks_total,
		       (unsigned long long)res.chunks_referenced,
		       (unsigned long long)res.chunks_young,
		       (unsigned long long)res.chunks_deleted,
		       (unsigned long long)res.bytes_freed,
		       (unsigned long long)res.indexes_deleted,
		       (unsigned long long)res.sessions_running,
		       (unsigned long long)res.sessions_stale, res.passes,
		       res.seconds, o.dry_run ? "true" : "false");
	} else if (!g.quiet) {
		char a[32];
		printf("%s %llu of %llu chunks (%s), %llu unused indexes; kept "
		       "%llu referenced and %llu too young; %llu backups "
		       "running\n", o.dry_run ? "would free" : "freed",
		       (unsigned long long)res.chunks_deleted,
		       (unsigned long long)res.chunks_total,
		       cli_bytes(res.bytes_freed, a),
		       (unsigned long long)res.indexes_deleted,
		       (unsigned long long)res.chunks_referenced,
		       (unsigned long long)res.chunks_young,
		       (unsigned long long)res.sessions_running);
	}
	return EXIT_OK;
}
