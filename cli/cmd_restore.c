/* vmb restore */
#include <stdlib.h>
#include <string.h>
#include "cli.h"

static const char help[] =
"NAME\n"
"    vmb restore - restore a snapshot's disks to a folder\n"
"\n"
"SYNOPSIS\n"
"    vmb restore REPO SNAP --to DIR [--format raw|qcow2|vmdk[:SUB]|vdi]\n"
"                [--disk NAME] [--json]\n"
"    vmb restore REPO SNAP --to DIR [--format F] --define\n"
"                [--connect URI] [--name NEW] [--keep-macs] [--keep-uuid]\n"
"    vmb restore REPO SNAP --to DIR [--flatten [--format F]] [--new-uuid]\n"
"    vmb restore REPO SNAP --file PATH --to DIR [--disk NAME]\n"
"                [--partition N] [--force] [--json]\n"
"\n"
"DESCRIPTION\n"
"    Writes DIR/<disk>.<ext> for each disk of snapshot SNAP (a full id, a\n"
"    unique prefix, 'latest' or 'VM@latest'), and the VM configuration\n"
"    beside them when the snapshot has one.  Any source format can be\n"
"    restored to any target format; the default is the source's own.\n"
"    Output images are sparse: zero areas stay unallocated.  Every chunk\n"
"    is authenticated before it is written; a damaged chunk stops the\n"
"    restore (exit 3) and the partial image is removed.  Existing files\n"
"    are never overwritten.\n"
"\n"
"    With --define the VM is also defined on a hypervisor from the\n"
"    configuration stored in the snapshot (a libvirt domain XML for\n"
"    libvirt:DOMAIN backups), on this host or another one (--connect):\n"
"    the disks point at the restored files with their new format, the\n"
"    name is NEW (default: as stored), the UUID is left for libvirt to\n"
"    make anew and the MAC addresses are dropped (so the copy can run\n"
"    beside the original), file-backed serial consoles write into DIR,\n"
"    and CD-ROM drives come back empty.  If the define fails, the\n"
"    restored disks stay in DIR and the message says so.  A VM folder\n"
"    (vbox:, vmware:) with --define is restored flattened (--format,\n"
"    default qcow2) and defined on libvirt from its hardware (CPUs,\n"
"    memory, BIOS or EFI, disks on matching buses, NICs with their MACs\n"
"    unless --new-uuid); what has no equivalent there is listed\n"
"    (\"no_equivalent\" with --json).\n"
"\n"
"    A snapshot of a VM folder (vmware:PATH, vbox:PATH) is restored as\n"
"    that folder into DIR (new or empty): every file under its original\n"
"    name, the configuration rewritten by the plugin so every path points\n"
"    inside DIR, the snapshot tree intact.  --flatten gives the current\n"
"    state only: one image per drive (in --format F if given), no\n"
"    snapshot tree; --new-uuid gives the copy new identities (VM, disks,\n"
"    MAC addresses), changed consistently in the configuration and in\n"
"    the disk headers.  See docs/vm-folders.md.\n"
"\n"
"    With --file, only PATH (a file, a symlink or a whole folder) comes\n"
"    back from an ext2/3/4 guest file system, read straight from the\n"
"    repository (libext2fs, no kernel mount, no copy of the disk), into\n"
"    DIR/NAME (\"/\" fills DIR).  Modes and times are kept, owners when\n"
"    run as root; symlinks are made as symlinks; names that could leave\n"
"    DIR are skipped with a warning.  The file system is the whole disk\n"
"    if it has one, else the one ext partition (MBR or GPT; several:\n"
"    name one with --partition).  Other file systems (NTFS, XFS, FAT...):\n"
"    use 'vmb mount'.  See docs/instant.md.\n"
"\n"
"OPTIONS\n"
"    --to DIR        destination folder (created if missing)\n"
"    --format FMT    raw, qcow2, vmdk or vdi; vmdk:SUBFORMAT picks the\n"
"                    VMDK layout: monolithicSparse (the default),\n"
"                    streamOptimized (compressed, what ESXi and OVA\n"
"                    consumers want) or monolithicFlat (NAME.vmdk\n"
"                    descriptor + NAME-flat.vmdk raw data)\n"
"    --disk NAME     restore only this disk\n"
"    --threads N     worker threads (default: one per core)\n"
"    --no-sync       do not fsync the restored images at the end (as\n"
"                    qemu-img convert does not): faster, but a host crash\n"
"                    right after may leave them incomplete\n"
"    --define        define the VM from the snapshot's configuration\n"
"    --connect URI   hypervisor to define it on (default:\n"
"                    LIBVIRT_DEFAULT_URI, else libvirt's default)\n"
"    --name NEW      name of the defined VM\n"
"    --keep-macs     keep the network cards' MAC addresses\n"
"    --keep-uuid     keep the VM's UUID (only where the original is gone)\n"
"    --instant       with --define: instant recovery.  Nothing is restored\n"
"                    first: a detached 'vmb serve' exports the snapshot on\n"
"                    DIR/vmb-serve.sock (log in DIR/vmb-serve.log), each\n"
"                    disk becomes DIR/<disk>.qcow2, an empty overlay over\n"
"                    its NBD export, and the VM is defined on them and\n"
"                    started at once.  Then libvirt pulls the data into\n"
"                    the overlays while the VM runs; when the copy is\n"
"                    done the overlays stand alone, the server is\n"
"                    stopped and the command ends.  A copy that fails\n"
"                    leaves the VM running on its overlays (consistent)\n"
"                    and the server up\n"
"    --flatten       VM folders: the current state only, one image per drive\n"
"    --new-uuid      VM folders: new VM, disk and MAC identities\n"
"    --file PATH     restore only PATH from the guest's ext2/3/4 file\n"
"                    system (with --disk NAME: from that disk; default:\n"
"                    the first)\n"
"    --partition N   the file system in partition N (as Linux numbers\n"
"                    them; 0: the whole disk)\n"
"    --force         with --file: write into a non-empty DIR, replacing\n"
"                    files of the same name\n"
"    --json          print {snapshot (the id SNAP resolved to),\n"
"                    snapshot_ref (SNAP as given), disks, bytes_total,\n"
"                    bytes_written, seconds} (and defined: the new VM's\n"
"                    name); with --file {snapshot, snapshot_ref, path,\n"
"                    disk, partition, fs, files, dirs, symlinks,\n"
"                    skipped, bytes, seconds}\n";

/* vmb restore --file: one path out of the guest's file system */
static int restore_file(vmb_repo *r, const char *ref, const char *path,
			const char *disk, int partition, const char *dir,
			int force)
{
	vmb_guestfs_options go = VMB_GUESTFS_OPTIONS_INIT;
	vmb_guestfs_extract_options xo = VMB_GUESTFS_EXTRACT_OPTIONS_INIT;
	vmb_guestfs_extract_result res;
	vmb_snapshot *s = NULL;
	vmb_guestfs *gfs = NULL;
	char id[33] = "";
	int rc;
	go.partition = partition;
	xo.flags = force ? VMB_GUESTFS_FORCE : 0;
	xo.progress = cli_progress;
	rc = vmb_repo_snapshot_find(r, ref, &s);
	if (!rc) {
		snprintf(id, sizeof id, "%s", vmb_snapshot_id(s));
		if (!disk && vmb_snapshot_disk_count(s))
			disk = vmb_snapshot_disk_name(s, 0);
		rc = vmb_guestfs_open_snapshot(r, s, disk, &go, &gfs);
	}
	if (!rc)
		rc = vmb_guestfs_extract(gfs, path, dir, &xo, &res);
	cli_progress_done();
	if (!rc && g.json) {
		printf("{\"snapshot\":\"%s\",\"snapshot_ref\":", id);
		cli_json_str(stdout, ref);
		printf(",\"path\":");
		cli_json_str(stdout, path);
		printf(",\"disk\":");
		cli_json_str(stdout, disk);
		printf(",\"partition\":%u,\"fs\":\"%s\",\"files\":%llu,"
		       "\"dirs\":%llu,\"symlinks\":%llu,\"skipped\":%llu,"
		       "\"bytes\":%llu,\"seconds\":%.3f}\n",
		       vmb_guestfs_partition(gfs), vmb_guestfs_type(gfs),
		       (unsigned long long)res.files,
		       (unsigned long long)res.dirs,
		       (unsigned long long)res.symlinks,
		       (unsigned long long)res.skipped,
		       (unsigned long long)res.bytes, res.seconds);
	} else if (!rc && !g.quiet) {
		char a[32], where[32] = "whole disk";
		if (vmb_guestfs_partition(gfs))
			snprintf(where, sizeof where, "partition %u",
				 vmb_guestfs_partition(gfs));
		printf("restored %s from %s (disk %s, %s, %s): %llu file%s, "
		       "%llu folder%s, %llu symlink%s (%s) to %s in %.1f s\n",
		       path, id, disk, where, vmb_guestfs_type(gfs),
		       (unsigned long long)res.files, res.files == 1 ? "" : "s",
		       (unsigned long long)res.dirs, res.dirs == 1 ? "" : "s",
		       (unsigned long long)res.symlinks,
		       res.symlinks == 1 ? "" : "s", cli_bytes(res.bytes, a),
		       dir, res.seconds);
		if (res.skipped)
			printf("skipped %llu entr%s (see the warnings)\n",
			       (unsigned long long)res.skipped,
			       res.skipped == 1 ? "y" : "ies");
	}
	vmb_guestfs_close(gfs);
	vmb_snapshot_free(s);
	return rc ? cli_fail(rc) : EXIT_OK;
}

int cmd_restore(int argc, char **argv)
{
	char resolved[33] = "";
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "format", required_argument, NULL, 'f' },
		{ "disk", required_argument, NULL, 'd' },
		{ "threads", required_argument, NULL, 'j' },
		{ "no-sync", no_argument, NULL, 'S' },
		{ "define", no_argument, NULL, 'D' },
		{ "instant", no_argument, NULL, 'I' },
		{ "connect", required_argument, NULL, 'c' },
		{ "name", required_argument, NULL, 'n' },
		{ "keep-macs", no_argument, NULL, 'M' },
		{ "keep-uuid", no_argument, NULL, 'U' },
		{ "flatten", no_argument, NULL, 'F' },
		{ "new-uuid", no_argument, NULL, 'N' },
		{ "file", required_argument, NULL, 'P' },
		{ "partition", required_argument, NULL, 'p' },
		{ "force", no_argument, NULL, 'o' },
		CLI_COMMON_OPTIONS, { 0 }
	};
	vmb_restore_options o = VMB_RESTORE_OPTIONS_INIT;
	vmb_restore_result res;
	vmb_hv_define_opts dopt = VMB_HV_DEFINE_OPTS_INIT;
	vmb_vmfolder_restore_opts fo = VMB_VMFOLDER_RESTORE_OPTS_INIT;
	const char *dir = NULL, *uri = NULL;
	char *defined = NULL, *report = NULL;
	int define = 0, instant = 0, force = 0, partition = VMB_GUESTFS_AUTO;
	const char *file = NULL;
	vmb_repo *r;
	int c, rc;

	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		int k = cli_common_opt(c, optarg);
		if (k < 0)
			return cli_help(help);
		if (k)
			continue;
		switch (c) {
		case 't': dir = optarg; break;
		case 'f':
			{
				char f[16];
				if (vmb_disk_format_parse(optarg, f, NULL))
					return cli_usage_error("restore", "%s",
							vmb_error_message());
			}
			o.format = optarg;
			break;
		case 'd': o.disk = optarg; break;
		case 'j': {
			long v;
			if (cli_parse_int(optarg, 1, 64, &v))
				return cli_usage_error("restore", "bad thread count "
						       "'%s'", optarg);
			o.threads = (int)v;
			break;
		}
		case 'S': o.no_sync = 1; break;
		case 'D': define = 1; break;
		case 'I': instant = 1; break;
		case 'c': uri = optarg; break;
		case 'n': dopt.name = optarg; break;
		case 'M': dopt.flags |= VMB_HV_DEFINE_KEEP_MACS; break;
		case 'U': dopt.flags |= VMB_HV_DEFINE_KEEP_UUID; break;
		case 'F': fo.flags |= VMB_VMFOLDER_FLATTEN; break;
		case 'N': fo.flags |= VMB_VMFOLDER_NEW_UUID; break;
		case 'P': file = optarg; break;
		case 'o': force = 1; break;
		case 'p': {
			long v;
			if (cli_parse_int(optarg, 0, 4096, &v))
				return cli_usage_error("restore", "bad partition "
						       "number '%s'", optarg);
			partition = (int)v;
			break;
		}
		default:
			return cli_bad_option("restore", argv);
		}
	}
	if (optind + 2 != argc)
		return cli_usage_error("restore", "expected REPO and SNAP");
	if (!dir)
		return cli_usage_error("restore", "--to DIR is required");
	if (!define && (uri || dopt.name || dopt.flags))
		return cli_usage_error("restore", "--connect, --name, --keep-macs "
				       "and --keep-uuid go with --define");
	if (instant && (!define || o.format || o.disk))
		return cli_usage_error("restore", "--instant goes with --define "
				       "(and without --format and --disk)");
	if (!file && (force || partition != VMB_GUESTFS_AUTO))
		return cli_usage_error("restore", "--partition and --force go "
				       "with --file");
	if (file && (define || o.format || fo.flags))
		return cli_usage_error("restore", "--file goes without "
				       "--define, --format, --flatten and "
				       "--new-uuid");
	o.progress = cli_progress;
	rc = cli_open_repo(argv[optind], &r);
	if (rc)
		return cli_fail(rc);
	if (file) {
		rc = restore_file(r, argv[optind + 1], file, o.disk, partition,
				  dir, force);
		vmb_repo_close(r);
		return rc;
	}
	if (define) {
		/* the snapshot's configuration says which plugin defines it */
		vmb_snapshot *s = NULL;
		vmb_hv *h = NULL;
		const char *fmt = NULL;
		int folder = 0;
		rc = vmb_repo_snapshot_find(r, argv[optind + 1], &s);
		if (!rc)
			folder = vmb_vmfolder_is(s, NULL);
		if (!rc && !folder && (!vmb_snapshot_config(s, &fmt) || !fmt ||
				       strncmp(fmt, "libvirt", 7) != 0))
			rc = vmb_error_set(VMB_EINVAL, "snapshot %s has no "
					   "libvirt domain XML to define (it "
					   "was not backed up from libvirt:)",
					   vmb_snapshot_id(s));
		if (!rc && instant) {
			snprintf(resolved, sizeof resolved, "%s",
				 vmb_snapshot_id(s));
			vmb_snapshot_free(s);
			rc = cli_restore_instant(r, argv[optind], resolved, dir,
						 uri, &dopt);
			vmb_repo_close(r);
			return rc;
		}
		if (!rc)
			rc = vmb_hv_open("libvirt", uri, &h);
		if (!rc)
			snprintf(resolved, sizeof resolved, "%s",
				 vmb_snapshot_id(s));
		if (!rc && folder) {
			/* a VirtualBox or VMware folder: flattened, and
			 * defined from its hardware description */
			fo.format = o.format;
			fo.progress = o.progress;
			fo.no_sync = o.no_sync;
			rc = vmb_hv_folder_restore_define(r, resolved, dir,
							  &fo, h, &dopt, &res,
							  &defined, &report);
		} else if (!rc) {
			rc = vmb_hv_restore_define(r, resolved, dir,
						   &o, h, &dopt, &res,
						   &defined);
		}
		vmb_hv_close(h);
		vmb_snapshot_free(s);
	} else {
		/* resolve once, so the id printed is the one restored */
		vmb_snapshot *s = NULL;
		rc = vmb_repo_snapshot_find(r, argv[optind + 1], &s);
		if (!rc)
			snprintf(resolved, sizeof resolved, "%s",
				 vmb_snapshot_id(s));
		if (!rc && vmb_vmfolder_is(s, NULL)) {
			if (o.disk)
				rc = vmb_error_set(VMB_EINVAL, "snapshot %s is "
						   "a VM folder: it is restored "
						   "whole (drop --disk)",
						   resolved);
			else if (o.format && !(fo.flags & VMB_VMFOLDER_FLATTEN))
				rc = vmb_error_set(VMB_EINVAL, "snapshot %s is "
						   "a VM folder: --format goes "
						   "with --flatten", resolved);
			fo.format = o.format;
			fo.progress = o.progress;
			fo.no_sync = o.no_sync;
			if (!rc)
				rc = vmb_hv_folder_restore(r, resolved, dir,
							   &fo, &res);
		} else if (!rc && fo.flags) {
			rc = vmb_error_set(VMB_EINVAL, "--flatten and "
					   "--new-uuid go with snapshots of VM "
					   "folders (vmware:, vbox:); %s is "
					   "not one", resolved);
		} else if (!rc) {
			rc = vmb_repo_restore(r, resolved, dir, &o, &res);
		}
		vmb_snapshot_free(s);
	}
	cli_progress_done();
	vmb_repo_close(r);
	if (rc)
		return cli_fail(rc);
	if (g.json) {
		printf("{\"snapshot\":\"%s\",\"snapshot_ref\":", resolved);
		cli_json_str(stdout, argv[optind + 1]);
		printf(",\"disks\":%zu,\"bytes_total\":%llu,"
		       "\"bytes_written\":%llu,\"seconds\":%.3f", res.disks,
		       (unsigned long long)res.bytes_total,
		       (unsigned long long)res.bytes_written, res.seconds);
		if (defined) {
			printf(",\"defined\":");
			cli_json_str(stdout, defined);
		}
		if (report) {
			printf(",\"no_equivalent\":");
			cli_json_str(stdout, report);
		}
		printf("}\n");
	} else if (!g.quiet) {
		char a[32];
		printf("restored %zu disk%s (%s) to %s in %.1f s\n", res.disks,
		       res.disks == 1 ? "" : "s", cli_bytes(res.bytes_total, a),
		       dir, res.seconds);
		if (defined)
			printf("defined VM %s\n", defined);
		if (report)
			printf("no equivalent on the target: %s\n", report);
	}
	vmb_free(defined);
	vmb_free(report);
	return EXIT_OK;
}
