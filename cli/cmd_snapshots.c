/* vmb snapshots */
#include <string.h>
#include <time.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb snapshots - list the snapshots in a repository\n"
"\n"
"SYNOPSIS\n"
"    vmb snapshots REPO [--vm NAME] [--json]\n"
"\n"
"DESCRIPTION\n"
"    Lists snapshots oldest first: id, VM, time, disks, size and tags.\n"
"    Any unique prefix of an id, 'latest' or 'VM@latest' can name a\n"
"    snapshot in other commands.\n"
"\n"
"OPTIONS\n"
"    --vm NAME   only snapshots of this VM\n"
"    --json      a JSON array of objects with id, vm, time (Unix\n"
"                seconds), host, parent, cbt, tags and disks (name,\n"
"                format, virtual_size)\n";

int cmd_snapshots(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'm' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	const char *vm = NULL;
	vmb_snapshot **list;
	size_t n;
	vmb_repo *r;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		if (c == 'm')
			vm = optarg;
		else
			return cli_bad_option("snapshots", argv);
	}
	if (optind + 1 != argc)
		return cli_usage_error("snapshots", "expected exactly one REPO");
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	cli_quiet_errors(); /* damaged manifests: one summary line */
	rc = vmb_repo_snapshots(r, vm, &list, &n);
	if (rc) {
		vmb_repo_close(r);
		return cli_fail(rc);
	}
	if (g.json)
		printf("[");
	else if (!g.quiet)
		printf("%-12s  %-16s  %-19s  %5s  %10s  %s\n", "ID", "VM",
		       "TIME", "DISKS", "SIZE", "TAGS");
	for (size_t i = 0; i < n; i++) {
		vmb_snapshot *s = list[i];
		uint64_t total = 0;
		for (size_t d = 0; d < vmb_snapshot_disk_count(s); d++)
			total += vmb_snapshot_disk_size(s, d);
		if (g.json) {
			printf("%s{\"id\":\"%s\",\"vm\":", i ? "," : "",
			       vmb_snapshot_id(s));
			cli_json_str(stdout, vmb_snapshot_vm(s));
			printf(",\"time\":%lld,\"host\":",
			       (long long)vmb_snapshot_time(s));
			cli_json_str(stdout, vmb_snapshot_host(s));
			printf(",\"parent\":");
			if (vmb_snapshot_parent(s))
				cli_json_str(stdout, vmb_snapshot_parent(s));
			else
				printf("null");
			printf(",\"cbt\":");
			cli_json_str(stdout, vmb_snapshot_cbt(s));
			printf(",\"tags\":[");
			for (size_t t = 0; t < vmb_snapshot_tag_count(s); t++) {
				if (t)
					printf(",");
				cli_json_str(stdout, vmb_snapshot_tag(s, t));
			}
			printf("],\"bytes_total\":%llu,\"disks\":[",
			       (unsigned long long)total);
			for (size_t d = 0; d < vmb_snapshot_disk_count(s); d++) {
				printf("%s{\"name\":", d ? "," : "");
				cli_json_str(stdout, vmb_snapshot_disk_name(s, d));
				printf(",\"format\":");
				cli_json_str(stdout, vmb_snapshot_disk_format(s, d));
				printf(",\"virtual_size\":%llu}",
				       (unsigned long long)vmb_snapshot_disk_size(s, d));
			}
			printf("]}");
		} else if (!g.quiet) {
			char ts[32], sz[32], tags[256] = "";
			time_t t = (time_t)vmb_snapshot_time(s);
			size_t tl = 0;
			strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S",
				 localtime(&t));
			for (size_t k = 0; k < vmb_snapshot_tag_count(s) &&
					   tl < sizeof tags - 1; k++)
				tl += (size_t)snprintf(tags + tl, sizeof tags - tl,
						       "%s%s", k ? "," : "",
						       vmb_snapshot_tag(s, k));
			printf("%-12.12s  %-16s  %-19s  %5zu  %10s  %s\n",
			       vmb_snapshot_id(s), vmb_snapshot_vm(s), ts,
			       vmb_snapshot_disk_count(s), cli_bytes(total, sz),
			       tags);
		}
	}
	if (g.json)
		printf("]\n");
	vmb_snapshot_list_free(list, n);
	{
		const char *first;
		size_t bad = vmb_repo_damaged_manifests(r, &first);
		if (bad) {
			vmb_error_set(VMB_ECORRUPT, "%zu snapshot manifest%s "
				      "damaged (first: %s); the others are "
				      "listed", bad, bad == 1 ? " is" : "s are",
				      first);
			vmb_repo_close(r);
			return cli_fail(VMB_ECORRUPT);
		}
	}
	vmb_repo_close(r);
	return EXIT_OK;
}
