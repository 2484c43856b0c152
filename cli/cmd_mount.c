/* vmb mount, vmb umount */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb mount - show a repository's snapshots as raw disk image files\n"
"\n"
"SYNOPSIS\n"
"    vmb mount REPO [SNAP] DIR [-f|--foreground] [--vm NAME]\n"
"              [--allow-other] [--cache-size SIZE]\n"
"    vmb umount DIR\n"
"\n"
"DESCRIPTION\n"
"    Mounts a read-only FUSE file system on the empty folder DIR where\n"
"    every snapshot's disks appear as raw images,\n"
"        DIR/VM/SNAPSHOT-ID/DISK.raw   (mtime: the snapshot's time)\n"
"        DIR/VM/latest -> SNAPSHOT-ID\n"
"    read on demand straight from the repository: nothing is restored\n"
"    first.  With SNAP (an id, a unique prefix, 'latest' or\n"
"    'VM@latest') only that snapshot is shown.  Loop-mount a disk to\n"
"    get at the guest's files (mount -o ro,loop DIR/VM/ID/disk0.raw\n"
"    /mnt), or open it with debugfs, qemu-img, fdisk.  SEEK_DATA and\n"
"    SEEK_HOLE report the stored allocation, so cp --sparse=always and\n"
"    qemu-img convert skip zero areas.  The snapshot list is read when\n"
"    mounting; remount to see newer snapshots.\n"
"\n"
"    vmb mount returns once the file system is mounted and serves it in\n"
"    the background until `vmb umount DIR` (or fusermount3 -u DIR).\n"
"\n"
"OPTIONS\n"
"    -f, --foreground   serve in the foreground; Ctrl-C unmounts\n"
"    --vm NAME          only this VM's snapshots\n"
"    --allow-other      let other users read the files (as non-root:\n"
"                       needs user_allow_other in /etc/fuse.conf)\n"
"    --cache-size SIZE  decoded chunks kept per open disk file\n"
"                       (default 64M; K, M, G suffixes)\n"
"    --debug            FUSE's request log on stderr (implies -f)\n";

static void ready(const char *dir, void *payload)
{
	if (!g.quiet)
		printf("mounted on %s\n", dir);
	fflush(stdout);
}

int cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "vm", required_argument, NULL, 'm' },
		{ "allow-other", no_argument, NULL, 'a' },
		{ "cache-size", required_argument, NULL, 'c' },
		{ "debug", no_argument, NULL, 'd' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_mount_options o = VMB_MOUNT_OPTIONS_INIT;
	const char *dir;
	vmb_repo *r;
	int c, rc;

	while ((c = getopt_long(argc, argv, "fvh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 'f': o.foreground = 1; break;
		case 'm': o.vm = optarg; break;
		case 'a': o.allow_other = 1; break;
		case 'c':
			if (cli_parse_size(optarg, 1, 1ull << 44, &o.cache_bytes))
				return cli_usage_error("mount", "bad cache size "
						       "'%s'", optarg);
			break;
		case 'd': o.debug = 1; o.foreground = 1; break;
		default:
			return cli_bad_option("mount", argv);
		}
	}
	if (argc - optind != 2 && argc - optind != 3)
		return cli_usage_error("mount", "expected REPO [SNAP] DIR");
	dir = argv[argc - 1];
	if (argc - optind == 3)
		o.snapshot = argv[optind + 1];
	if (o.snapshot && o.vm)
		return cli_usage_error("mount", "give SNAP or --vm, not both");
	/* the mount point first: a wrong one should not cost a passphrase */
	rc = vmb_mount_check(dir);
	if (rc)
		return cli_fail(rc);
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	o.ready = ready;
	rc = vmb_mount_run(r, dir, &o);
	if (rc == 1) /* the detached server serves on */
		_exit(EXIT_OK);
	vmb_repo_close(r);
	if (rc)
		return cli_fail(rc);
	return EXIT_OK;
}

static const char umount_help[] =
"NAME\n"
"    vmb umount - unmount a file system that vmb mount mounted\n"
"\n"
"SYNOPSIS\n"
"    vmb umount DIR\n"
"\n"
"DESCRIPTION\n"
"    Unmounts DIR (through fusermount3 -u) and so ends its vmb mount\n"
"    server.  Fails with one line when nothing of vmb's is mounted on\n"
"    DIR or when a process still uses the file system.\n";

int cmd_umount(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTIONS, { 0 } };
	int c, rc;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(umount_help);
		if (!k)
			return cli_bad_option("umount", argv);
	}
	if (argc - optind != 1)
		return cli_usage_error("umount", "expected DIR");
	rc = vmb_mount_stop(argv[optind]);
	if (rc)
		return cli_fail(rc);
	return EXIT_OK;
}
