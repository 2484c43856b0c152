/* vmb snapshot create|list|revert|delete IMAGE [NAME] */
#include <string.h>
#include <time.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb snapshot - external snapshots of a disk image\n"
"\n"
"SYNOPSIS\n"
"    vmb snapshot create IMAGE NAME [--format qcow2|vdi|vmdk]\n"
"    vmb snapshot list IMAGE [--json]\n"
"    vmb snapshot revert IMAGE NAME\n"
"    vmb snapshot delete IMAGE NAME\n"
"    vmb snapshot create|list|revert|delete PLUGIN:VM [NAME] [--connect URI]\n"
"\n"
"DESCRIPTION\n"
"    create freezes IMAGE's current content in the read-only file\n"
"    IMAGE.NAME and turns IMAGE (the path the VM uses) into an empty\n"
"    overlay on top of it: a qcow2 overlay for qcow2 and raw images, a\n"
"    VirtualBox differencing image for .vdi images and a delta disk\n"
"    (monolithicSparse, parentFileNameHint IMAGE.NAME) for .vmdk images.\n"
"    list shows the snapshots, oldest first.  revert discards every\n"
"    change since NAME (and the snapshots newer than NAME).  delete\n"
"    removes snapshot NAME and keeps the current state, by merging NAME's\n"
"    layer with the layer above it into a new file of that layer's\n"
"    format.  Names and times are kept in IMAGE.vmbsnap.json.  Every step\n"
"    is crash-safe.  The VM must be stopped: an image in use by a running\n"
"    QEMU is refused.  Snapshots are not backups: they live on the same\n"
"    disk as the image (see vmb backup).\n"
"\n"
"    VMDK images made of a descriptor and separate extent files\n"
"    (monolithicFlat, twoGbMaxExtent*) get native snapshots refused:\n"
"    use --format qcow2.  QEMU does not open VDI differencing images;\n"
"    VirtualBox and vmb do.\n"
"\n"
"    With PLUGIN:VM (libvirt:DOMAIN) the hypervisor's own VM snapshots\n"
"    are made, listed, reverted to or deleted through its plugin (for\n"
"    libvirt: virDomainSnapshotCreateXML and friends; internal qcow2\n"
"    snapshots), on --connect URI.\n"
"\n"
"OPTIONS\n"
"    --format FMT     the overlay's format: qcow2 (any image; then only\n"
"                     QEMU can run the VM), or vdi / vmdk (the default\n"
"                     for images of that format)\n"
"    --connect URI    hypervisor connection for PLUGIN:VM\n";

static int list_cb(const char *name, int64_t created, void *payload)
{
	int *n = payload;
	if (g.json) {
		printf(*n ? ",{\"name\":" : "{\"name\":");
		cli_json_str(stdout, name);
		printf(",\"created\":%lld}", (long long)created);
	} else {
		printf("%s\n", name);
	}
	(*n)++;
	return 0;
}

/* VM snapshots through a hypervisor plugin */
static int hv_snapshot(const char *plugin, const char *vm, const char *verb,
		       const char *name, const char *uri)
{
	vmb_hv *h = NULL;
	int rc, n = 0;
	if (strcmp(verb, "list") && !name)
		return cli_usage_error("snapshot", "%s needs a NAME", verb);
	if (strcmp(verb, "list") && strcmp(verb, "create") &&
	    strcmp(verb, "revert") && strcmp(verb, "delete"))
		return cli_usage_error("snapshot", "unknown action '%s' (want "
				       "create, list, revert or delete)", verb);
	rc = vmb_hv_open(plugin, uri, &h);
	if (rc)
		return cli_fail(rc);
	if (!strcmp(verb, "list")) {
		if (g.json)
			printf("[");
		rc = vmb_hv_snapshot_list(h, vm, list_cb, &n);
		if (g.json)
			printf("]\n");
	} else if (!strcmp(verb, "create")) {
		rc = vmb_hv_snapshot_create(h, vm, name);
	} else if (!strcmp(verb, "revert")) {
		rc = vmb_hv_snapshot_revert(h, vm, name);
	} else {
		rc = vmb_hv_snapshot_delete(h, vm, name);
	}
	if (rc) {
		rc = cli_fail(rc);
		vmb_hv_close(h);
		return rc;
	}
	vmb_hv_close(h);
	if (strcmp(verb, "list") && !g.quiet && !g.json)
		printf("%s snapshot %s of %s:%s\n", verb, name, plugin, vm);
	else if (strcmp(verb, "list") && g.json) {
		printf("{\"action\":\"%s\",\"snapshot\":", verb);
		cli_json_str(stdout, name);
		printf("}\n");
	}
	return EXIT_OK;
}

int cmd_snapshot(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "connect", required_argument, NULL, 'c' },
		CLI_COMMON_OPTIONS, { 0 } };
	const char *format = NULL, *verb, *image, *name, *uri = NULL;
	char plugin[32];
	const char *vm;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vhf:", opts, NULL)) != -1) {
		if (c == 'f') {
			format = optarg;
			continue;
		}
		if (c == 'c') {
			uri = optarg;
			continue;
		}
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (!k)
			return cli_bad_option("snapshot", argv);
	}
	if (optind + 2 > argc)
		return cli_usage_error("snapshot", "expected "
				       "create|list|revert|delete IMAGE [NAME]");
	verb = argv[optind];
	image = argv[optind + 1];
	name = optind + 2 < argc ? argv[optind + 2] : NULL;
	if (optind + 3 < argc)
		return cli_usage_error("snapshot", "too many arguments");
	if (vmb_hv_parse_source(image, plugin, &vm) == 0 &&
	    strcmp(plugin, "file") != 0)
		return hv_snapshot(plugin, vm, verb, name, uri);
	if (!strncmp(image, "file:", 5))
		image += 5;
	if (!strcmp(verb, "list")) {
		vmb_image_snapshot *l;
		size_t n;
		if (name)
			return cli_usage_error("snapshot", "list takes no NAME");
		rc = vmb_image_snapshot_list(image, &l, &n);
		if (rc)
			return cli_fail(rc);
		if (g.json) {
			printf("[");
			for (size_t i = 0; i < n; i++) {
				printf(i ? ",{\"name\":" : "{\"name\":");
				cli_json_str(stdout, l[i].name);
				printf(",\"file\":");
				cli_json_str(stdout, l[i].file);
				printf(",\"created\":%lld}",
				       (long long)l[i].created);
			}
			printf("]\n");
		} else {
			if (n)
				printf("%-20s %-20s %s\n", "NAME", "CREATED",
				       "FILE");
			for (size_t i = 0; i < n; i++) {
				char ts[32];
				time_t t = (time_t)l[i].created;
				strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S",
					 localtime(&t));
				printf("%-20s %-20s %s\n", l[i].name, ts,
				       l[i].file);
			}
		}
		vmb_image_snapshot_list_free(l, n);
		return EXIT_OK;
	}
	if (!name)
		return cli_usage_error("snapshot", "%s needs a NAME", verb);
	if (!strcmp(verb, "create"))
		rc = vmb_image_snapshot_create(image, name, format);
	else if (!strcmp(verb, "revert"))
		rc = vmb_image_snapshot_revert(image, name);
	else if (!strcmp(verb, "delete"))
		rc = vmb_image_snapshot_delete(image, name);
	else
		return cli_usage_error("snapshot", "unknown action '%s' (want "
				       "create, list, revert or delete)", verb);
	if (rc)
		return cli_fail(rc);
	if (g.json) {
		printf("{\"action\":\"%s\",\"snapshot\":", verb);
		cli_json_str(stdout, name);
		printf("}\n");
	} else if (!g.quiet)
		printf("%s snapshot %s of %s\n", !strcmp(verb, "create") ?
		       "created" : !strcmp(verb, "revert") ? "reverted to" :
		       "deleted", name, image);
	return EXIT_OK;
}
