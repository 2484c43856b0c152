/* vmb inspect */
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb inspect - describe a disk image\n"
"\n"
"SYNOPSIS\n"
"    vmb inspect IMAGE [--json]\n"
"\n"
"DESCRIPTION\n"
"    Opens IMAGE (format recognised by content) with its backing chain\n"
"    and prints its format, version, virtual size, cluster/grain/block\n"
"    size, allocated and zero bytes, the chain (each layer's file and\n"
"    format), persistent bitmaps and internal snapshots.  No data is\n"
"    read, only metadata.\n";

/* Re-indent a JSON text for people (printing only, no interpretation). */
static void pretty(const char *j)
{
	int depth = 0, in_str = 0;
	for (const char *p = j; *p; p++) {
		char ch = *p;
		if (in_str) {
			putchar(ch);
			if (ch == '\\' && p[1])
				putchar(*++p);
			else if (ch == '"')
				in_str = 0;
			continue;
		}
		switch (ch) {
		case '"': in_str = 1; putchar(ch); break;
		case '{': case '[':
			putchar(ch);
			printf("\n%*s", ++depth * 2, "");
			break;
		case '}': case ']':
			printf("\n%*s%c", --depth * 2, "", ch);
			break;
		case ',': printf(",\n%*s", depth * 2, ""); break;
		case ':': printf(": "); break;
		default: putchar(ch);
		}
	}
	putchar('\n');
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	vmb_disk *d;
	char *json;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (!k)
			return cli_bad_option("inspect", argv);
	}
	if (optind + 1 != argc)
		return cli_usage_error("inspect", "expected exactly one IMAGE");
	rc = vmb_disk_open(argv[optind], 0, &d);
	if (rc)
		return cli_fail(rc);
	rc = vmb_disk_inspect_json(d, &json);
	vmb_disk_close(d);
	if (rc)
		return cli_fail(rc);
	if (g.json)
		printf("%s\n", json);
	else
		pretty(json);
	vmb_free(json);
	return EXIT_OK;
}
