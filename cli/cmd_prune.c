/* vmb prune */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb prune - remove snapshots by retention rules\n"
"\n"
"SYNOPSIS\n"
"    vmb prune REPO [--vm NAME] [--keep-last N] [--keep-hourly N]\n"
"              [--keep-daily N] [--keep-weekly N] [--keep-monthly N]\n"
"              [--keep-yearly N] [--dry-run] [--json]\n"
"\n"
"DESCRIPTION\n"
"    Keeps the snapshots that at least one rule selects and removes the\n"
"    others, for each VM separately.  --keep-last N keeps the N newest.\n"
"    A period rule (--keep-daily N, ...) keeps the newest snapshot of\n"
"    each of the last N periods (local time; weeks are ISO weeks) that\n"
"    have a snapshot, as restic, Borg and Proxmox do.  Protected snapshots\n"
"    (vmb protect) are always kept.  At least one rule is required.\n"
"    Prune removes snapshots only; run 'vmb gc' to free their space.\n"
"\n"
"OPTIONS\n"
"    --vm NAME      only this VM's snapshots\n"
"    --dry-run      show what would be removed and why; change nothing\n"
"    --json         {removed, kept, snapshots:[{id, vm, time, keep,\n"
"                   reason}]}\n";

struct pstate {
	int n, kept;
};

static void on_item(const vmb_snapshot *s, int keep, const char *reason,
		    void *payload)
{
	struct pstate *p = payload;
	char ts[32];
	time_t t = (time_t)vmb_snapshot_time(s);
	strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", localtime(&t));
	if (g.json) {
		printf("%s{\"id\":\"%s\",\"vm\":", p->n ? "," : "",
		       vmb_snapshot_id(s));
		cli_json_str(stdout, vmb_snapshot_vm(s));
		printf(",\"time\":%lld,\"keep\":%s,\"reason\":",
		       (long long)vmb_snapshot_time(s), keep ? "true" : "false");
		cli_json_str(stdout, reason);
		printf("}");
	} else if (!g.quiet) {
		printf("%-6s %.12s  %-16s %s  (%s)\n", keep ? "keep" : "remove",
		       vmb_snapshot_id(s), vmb_snapshot_vm(s), ts, reason);
	}
	p->n++;
	p->kept += keep;
}

static int count_arg(const char *cmd, const char *a, int *out)
{
	long v;
	if (cli_parse_int(a, 0, 1000000, &v))
		return cli_usage_error(cmd, "bad count '%s'", a);
	*out = (int)v;
	return 0;
}

int cmd_prune(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'm' },
		{ "keep-last", required_argument, NULL, 'l' },
		{ "keep-hourly", required_argument, NULL, 'H' },
		{ "keep-daily", required_argument, NULL, 'd' },
		{ "keep-weekly", required_argument, NULL, 'w' },
		{ "keep-monthly", required_argument, NULL, 'M' },
		{ "keep-yearly", required_argument, NULL, 'y' },
		{ "dry-run", no_argument, NULL, 'n' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_prune_options o = VMB_PRUNE_OPTIONS_INIT;
	struct pstate p = { 0, 0 };
	size_t removed;
	vmb_repo *r;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 'm': o.vm = optarg; break;
		case 'l': if (count_arg("prune", optarg, &o.keep_last)) return EXIT_USAGE; break;
		case 'H': if (count_arg("prune", optarg, &o.keep_hourly)) return EXIT_USAGE; break;
		case 'd': if (count_arg("prune", optarg, &o.keep_daily)) return EXIT_USAGE; break;
		case 'w': if (count_arg("prune", optarg, &o.keep_weekly)) return EXIT_USAGE; break;
		case 'M': if (count_arg("prune", optarg, &o.keep_monthly)) return EXIT_USAGE; break;
		case 'y': if (count_arg("prune", optarg, &o.keep_yearly)) return EXIT_USAGE; break;
		case 'n': o.dry_run = 1; break;
		default: return cli_bad_option("prune", argv);
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("prune", "expected exactly one REPO");
	if (!o.keep_last && !o.keep_hourly && !o.keep_daily &&
	    !o.keep_weekly && !o.keep_monthly && !o.keep_yearly)
		return cli_usage_error("prune", "give at least one --keep-* "
				       "rule (refusing to remove everything)");
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	if (g.json)
		printf("{\"snapshots\":[");
	rc = vmb_repo_prune(r, &o, on_item, &p, &removed);
	vmb_repo_close(r);
	if (g.json)
		printf("],\"removed\":%zu,\"kept\":%d,\"dry_run\":%s}\n",
		       rc ? 0 : removed, p.kept, o.dry_run ? "true" : "false");
	if (rc)
		return cli_fail(rc);
	if (!g.json && !g.quiet)
		printf("%s %zu snapshot%s, kept %d%s\n",
		       o.dry_run ? "would remove" : "removed", removed,
		       removed == 1 ? "" : "s", p.kept,
		       o.dry_run || !removed ? "" :
		       " (run 'vmb gc' to free their space)");
	return EXIT_OK;
}
