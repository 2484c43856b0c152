/*
 * VM folders (lib/hv/vmfolder.c): a plugin describes a folder (a config
 * file, a two-layer qcow2 chain, an NVRAM file of an odd size, a
 * snapshot-only state file), it is stored as one snapshot, and restored:
 * byte for byte under the original names with the configuration rewritten
 * by the plugin's fixup; --flatten as one image per drive without the
 * layers and the snapshot-only file; into a non-empty folder refused with
 * nothing written; a failing fixup leaving nothing behind; symlinks, ".."
 * and a disk listed twice refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vmbackup.h"
#include "vmbackup/sys/hv.h"
#include "testutil.h"

#define DSIZE (3u << 20)

static char vmdir[1024];
static int fail_fixup, fixups;
static unsigned seen_flags;

static int f_open(const char *uri, void **h) { (void)uri; *h = NULL; return 0; }
static void f_close(void *h) { (void)h; }

static int describe_folder(vmb_vmfolder **out)
{
	vmb_vmfolder *f = NULL;
	const char *layers[2] = { "disk.qcow2", "disk.qcow2.s1" };
	int rc = vmb_vmfolder_new("memfolder", vmdir, &f);
	if (!rc)
		rc = vmb_vmfolder_add_file(f, "vm.cfg", VMB_VMFOLDER_ROLE_CONFIG,
					   NULL);
	if (!rc)
		rc = vmb_vmfolder_add_file(f, "disk.qcow2",
					   VMB_VMFOLDER_ROLE_DISK, NULL);
	if (!rc) /* the same file by another spelling: one entry */
		rc = vmb_vmfolder_add_file(f, "./disk.qcow2",
					   VMB_VMFOLDER_ROLE_DISK, NULL);
	if (!rc)
		rc = vmb_vmfolder_add_file(f, "disk.qcow2.s1",
					   VMB_VMFOLDER_ROLE_DISK, NULL);
	if (!rc)
		rc = vmb_vmfolder_add_file(f, "sub/vm.nvram",
					   VMB_VMFOLDER_ROLE_FILE, NULL);
	if (!rc)
		rc = vmb_vmfolder_add_file(f, "s1.state",
					   VMB_VMFOLDER_ROLE_SNAPSHOT, NULL);
	if (!rc)
		rc = vmb_vmfolder_add_drive(f, "d0", "qcow2", layers, 2);
	if (!rc)
		rc = vmb_vmfolder_set(f, "name", "foldervm");
	if (!rc)
		rc = vmb_vmfolder_set(f, "consistency", "powered-off");
	if (rc) {
		vmb_vmfolder_free(f);
		return rc;
	}
	*out = f;
	return 0;
}

static int f_describe(void *h, const char *vm, vmb_hv_vm_info **out)
{
	static vmb_hv_vm_info info;
	(void)h; (void)vm;
	info.struct_size = sizeof info;
	info.name = "foldervm";
	*out = &info;
	return 0;
}

static int f_begin(void *h, const char *vm, const vmb_hv_backup_options *o,
		   vmb_hv_backup_job **out)
{
	vmb_vmfolder *f;
	int rc;
	(void)h; (void)vm; (void)o;
	rc = describe_folder(&f);
	return rc ? rc : vmb_vmfolder_job(f, out);
}

static int f_end(void *h, vmb_hv_backup_job *b, int c)
{
	(void)h; (void)c;
	vmb_vmfolder_job_free(b);
	return 0;
}

/* the config names its disk: rewrite it to the restored place */
static int f_fixup(void *h, vmb_vmfolder_view *v)
{
	char buf[512];
	const char *to;
	(void)h;
	fixups++;
	seen_flags = vmb_vmfolder_view_flags(v);
	if (fail_fixup)
		return vmb_error_set(VMB_EFORMAT, "memfolder: cannot rewrite");
	to = vmb_vmfolder_view_map_rel(v, "disk.qcow2");
	if (!to)
		return vmb_error_set(VMB_EINVAL, "memfolder: disk not mapped");
	snprintf(buf, sizeof buf, "disk=%s\nnvram=%s\n", to,
		 vmb_vmfolder_view_map(v, "sub/vm.nvram"));
	return vmb_vmfolder_view_write(v, "vm.cfg", buf, strlen(buf));
}

static const vmb_hv_plugin p_folder = {
	.struct_size = sizeof(vmb_hv_plugin),
	.api_version = VMB_HV_API_VERSION,
	.name = "memfolder",
	.version = "1",
	.description = "a VM folder",
	.features = VMB_HV_F_FOLDER,
	.open = f_open,
	.close = f_close,
	.describe = f_describe,
	.backup_begin = f_begin,
	.backup_end = f_end,
	.folder_fixup = f_fixup,
};
static const vmb_hv_plugin *i_folder(void) { return &p_folder; }

static void write_file(const char *path, const void *data, size_t n)
{
	FILE *fp = fopen(path, "wb");
	CHECK(fp != NULL);
	if (fp) {
		CHECK(fwrite(data, 1, n, fp) == n);
		fclose(fp);
	}
}

static int same_file(const char *a, const char *b)
{
	return test_sh("cmp -s '%s' '%s'", a, b) == 0;
}

static int exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

int main(void)
{
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_hv_backup_opts ho = VMB_HV_BACKUP_OPTS_INIT;
	vmb_vmfolder_restore_opts ro = VMB_VMFOLDER_RESTORE_OPTS_INIT;
	vmb_disk_writer_options wo = VMB_DISK_WRITER_INIT;
	vmb_backup_result res;
	vmb_restore_result rres;
	vmb_disk_writer *w = NULL;
	vmb_hv_source src;
	vmb_repo *r = NULL;
	vmb_hv *h = NULL;
	vmb_snapshot *s = NULL;
	vmb_disk *d = NULL;
	uint8_t *data = malloc(DSIZE), *back = malloc(DSIZE);
	char p[4096], q[4096];
	const char *url = test_path("repo");

	snprintf(vmdir, sizeof vmdir, "%s", test_path("vm"));
	CHECK(mkdir(vmdir, 0755) == 0);
	snprintf(p, sizeof p, "%s/sub", vmdir);
	CHECK(mkdir(p, 0755) == 0);
	snprintf(p, sizeof p, "%s/vm.cfg", vmdir);
	write_file(p, "disk=disk.qcow2\n", 16);
	snprintf(p, sizeof p, "%s/sub/vm.nvram", vmdir);
	write_file(p, "NVRAM", 5); /* not a multiple of anything */
	snprintf(p, sizeof p, "%s/s1.state", vmdir);
	write_file(p, "saved state\n", 12);
	test_random(data, DSIZE, 7);
	memset(data + (1u << 20), 0, 1u << 20);
	snprintf(p, sizeof p, "%s/disk.qcow2", vmdir);
	CHECK_OK(vmb_disk_writer_create(p, "qcow2", DSIZE, &wo, &w));
	CHECK_OK(vmb_disk_writer_write(w, 0, data, DSIZE));
	CHECK_OK(vmb_disk_writer_finish(w));
	vmb_disk_writer_free(w);
	/* disk.qcow2.s1 frozen, disk.qcow2 an empty overlay over it */
	CHECK_OK(vmb_image_snapshot_create(p, "s1", NULL));

	io.encrypted = 0;
	CHECK_OK(vmb_repo_init(url, NULL, &io));
	CHECK_OK(vmb_repo_open(url, NULL, &r));
	CHECK_OK(vmb_hv_register(i_folder));
	CHECK_OK(vmb_hv_open("memfolder", NULL, &h));
	src.hv = h;
	src.vm = vmdir;
	CHECK_OK(vmb_hv_backup(r, &src, 1, &ho, &res));

	CHECK_OK(vmb_repo_snapshot_find(r, "foldervm@latest", &s));
	if (s) {
		char pl[32];
		CHECK(vmb_snapshot_disk_count(s) == 5);
		CHECK(vmb_vmfolder_is(s, pl) && !strcmp(pl, "memfolder"));
		CHECK(!strcmp(vmb_snapshot_consistency(s), "powered-off"));
		CHECK(!strcmp(vmb_snapshot_disk_format(s, 0), "raw"));
	}
	vmb_snapshot_free(s);

	/* whole: every file byte for byte, the config rewritten */
	snprintf(q, sizeof q, "%s", test_path("r1"));
	CHECK_OK(vmb_hv_folder_restore(r, "latest", q, &ro, &rres));
	CHECK(fixups == 1 && seen_flags == 0);
	CHECK(rres.disks == 1);
#define BOTH(name) (snprintf(p, sizeof p, "%s/" name, vmdir), \
		    snprintf(q, sizeof q, "%s/" name, test_path("r1")))
	BOTH("disk.qcow2");
	CHECK(same_file(p, q));
	BOTH("disk.qcow2.s1");
	CHECK(same_file(p, q));
	BOTH("sub/vm.nvram");
	CHECK(same_file(p, q));
	BOTH("s1.state");
	CHECK(same_file(p, q));
	snprintf(q, sizeof q, "%s/vm.cfg", test_path("r1"));
	CHECK(test_sh("grep -qx 'disk=disk.qcow2' '%s' && grep -qx "
		      "'nvram=%s/sub/vm.nvram' '%s'", q, test_path("r1"), q)
	      == 0);
	snprintf(q, sizeof q, "%s/vm.cfg.vmbtmp", test_path("r1"));
	CHECK(!exists(q));

	/* --flatten: one image under the base's name, no other layer, no
	 * snapshot-only file */
	ro.flags = VMB_VMFOLDER_FLATTEN;
	snprintf(q, sizeof q, "%s", test_path("r2"));
	CHECK_OK(vmb_hv_folder_restore(r, "latest", q, &ro, &rres));
	CHECK(seen_flags == VMB_VMFOLDER_FLATTEN);
	snprintf(q, sizeof q, "%s/disk.qcow2", test_path("r2"));
	CHECK(!exists(q));
	snprintf(q, sizeof q, "%s/s1.state", test_path("r2"));
	CHECK(!exists(q));
	snprintf(q, sizeof q, "%s/vm.cfg", test_path("r2"));
	CHECK(test_sh("grep -qx 'disk=disk.qcow2.s1' '%s'", q) == 0);
	snprintf(q, sizeof q, "%s/disk.qcow2.s1", test_path("r2"));
	CHECK_OK(vmb_disk_open(q, 0, &d));
	if (d) {
		CHECK(vmb_disk_layers(d) == 1);
		CHECK(vmb_disk_size(d) == DSIZE);
		CHECK_OK(vmb_disk_read(d, back, 0, DSIZE));
		CHECK(memcmp(back, data, DSIZE) == 0);
	}
	vmb_disk_close(d);
	/* flattened to another format: the base's name, its extension */
	ro.format = "raw";
	snprintf(q, sizeof q, "%s", test_path("r3"));
	CHECK_OK(vmb_hv_folder_restore(r, "latest", q, &ro, &rres));
	snprintf(q, sizeof q, "%s/disk.qcow2.img", test_path("r3"));
	CHECK(exists(q));
	snprintf(q, sizeof q, "%s/vm.cfg", test_path("r3"));
	CHECK(test_sh("grep -qx 'disk=disk.qcow2.img' '%s'", q) == 0);
	ro.format = NULL;
	ro.flags = 0;

	/* a non-empty folder: refused, nothing written */
	CHECK_ERR(vmb_hv_folder_restore(r, "latest", test_path("r1"), &ro,
					&rres), VMB_EEXISTS);
	/* a failing fixup: nothing left behind */
	fail_fixup = 1;
	snprintf(q, sizeof q, "%s", test_path("r4"));
	CHECK_ERR(vmb_hv_folder_restore(r, "latest", q, &ro, &rres),
		  VMB_EFORMAT);
	CHECK(strstr(vmb_error_message(), "memfolder: cannot rewrite"));
	CHECK(!exists(q));
	fail_fixup = 0;

	/* hostile paths */
	{
		vmb_vmfolder *f = NULL;
		const char *one[1] = { "vm.cfg" };
		CHECK_OK(vmb_vmfolder_new("memfolder", vmdir, &f));
		snprintf(p, sizeof p, "%s/link.vmdk", vmdir);
		CHECK(symlink("disk.qcow2", p) == 0);
		CHECK_ERR(vmb_vmfolder_add_file(f, "link.vmdk",
						VMB_VMFOLDER_ROLE_DISK, NULL),
			  VMB_EINVAL);
		CHECK(strstr(vmb_error_message(), "symbolic link"));
		CHECK_ERR(vmb_vmfolder_add_file(f, "sub/../vm.cfg",
						VMB_VMFOLDER_ROLE_DISK, NULL),
			  VMB_EINVAL);
		CHECK_ERR(vmb_vmfolder_add_file(f, "missing.vmdk",
						VMB_VMFOLDER_ROLE_DISK, NULL),
			  VMB_ENOTFOUND);
		CHECK_OK(vmb_vmfolder_add_file(f, "vm.cfg",
					       VMB_VMFOLDER_ROLE_DISK, NULL));
		CHECK_OK(vmb_vmfolder_add_drive(f, "a", "raw", one, 1));
		CHECK_ERR(vmb_vmfolder_add_drive(f, "b", "raw", one, 1),
			  VMB_EINVAL);
		CHECK(strstr(vmb_error_message(), "listed twice"));
		vmb_vmfolder_free(f);
	}
	vmb_hv_close(h);
	vmb_repo_close(r);
	free(data);
	free(back);
	return test_done();
}
