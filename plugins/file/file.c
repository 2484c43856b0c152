/*
 * The "file" hypervisor plugin: plain disk image files (raw, qcow2, VMDK,
 * VDI, with their backing chains), what `vmb backup REPO IMAGE` has always
 * taken.  Each image is a "VM" of one disk named after the file; change
 * tracking is the pipeline's own (qcow2 bitmaps, overlays, unchanged
 * files, fingerprints), since the disk is opened with vmb_disk_open().
 * VM snapshots are the image's external snapshots (vmb snapshot ...).
 *
 * The vmb tool links this plugin statically (so plain backups never
 * depend on the plugin folder); it is also built as file.so.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup.h"
#include "vmbackup/sys/hv.h"

struct file_vm {
	vmb_hv_vm_info info;
	vmb_hv_disk_info disk;
	char *name;
};

struct file_backup {
	vmb_hv_backup_job b;
	vmb_hv_backup_disk disk;
	char *path;
	char *name;
};

static int file_open(const char *uri, void **handle)
{
	static int token;
	if (uri && *uri)
		return vmb_error_set(VMB_EINVAL, "file: takes no connection "
				     "URI (got '%s')", uri);
	*handle = &token;
	return 0;
}

static void file_close(void *handle)
{
	(void)handle;
}

static void file_info_free(void *handle, vmb_hv_vm_info *info)
{
	struct file_vm *v = (struct file_vm *)info;
	(void)handle;
	if (!v)
		return;
	free(v->name);
	free(v);
}

static int file_describe(void *handle, const char *path,
			 vmb_hv_vm_info **out)
{
	struct file_vm *v;
	vmb_disk *d;
	int rc = vmb_disk_open(path, 0, &d);
	(void)handle;
	if (rc)
		return rc;
	v = calloc(1, sizeof *v);
	if (!v || !(v->name = vmb_repo_disk_name(path))) {
		free(v);
		vmb_disk_close(d);
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	}
	v->info.struct_size = sizeof v->info;
	v->info.name = v->name;
	v->info.state = VMB_HV_STATE_UNKNOWN;
	v->info.ndisks = 1;
	v->info.disks = &v->disk;
	v->disk.name = v->name;
	v->disk.path = path;
	/* the format's name is static: it outlives the disk */
	v->disk.format = vmb_disk_format_name(d);
	v->disk.size = vmb_disk_size(d);
	vmb_disk_close(d);
	*out = &v->info;
	return 0;
}

static int file_backup_begin(void *handle, const char *path,
			     const vmb_hv_backup_options *o,
			     vmb_hv_backup_job **out)
{
	struct file_backup *fb = calloc(1, sizeof *fb);
	int rc;
	(void)handle;
	(void)o; /* the pipeline finds its own parent for images */
	if (!fb)
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	fb->path = strdup(path);
	fb->name = vmb_repo_disk_name(path);
	if (!fb->path || !fb->name) {
		rc = vmb_error_set(VMB_ENOMEM, "out of memory");
		goto fail;
	}
	rc = vmb_disk_open(path, 0, &fb->disk.disk);
	if (rc)
		goto fail;
	fb->disk.name = fb->name;
	fb->disk.path = fb->path;
	fb->b.struct_size = sizeof fb->b;
	fb->b.vm = fb->name;
	fb->b.ndisks = 1;
	fb->b.disks = &fb->disk;
	*out = &fb->b;
	return 0;
fail:
	free(fb->path);
	free(fb->name);
	free(fb);
	return rc;
}

static int file_backup_end(void *handle, vmb_hv_backup_job *b, int committed)
{
	struct file_backup *fb = (struct file_backup *)b;
	(void)handle;
	(void)committed;
	if (!fb)
		return 0;
	vmb_disk_close(fb->disk.disk);
	free(fb->path);
	free(fb->name);
	free(fb);
	return 0;
}

static int file_snapshot_create(void *handle, const char *image,
				const char *name)
{
	(void)handle;
	return vmb_image_snapshot_create(image, name, NULL);
}

static int file_snapshot_list(void *handle, const char *image,
			      vmb_hv_snapshot_fn fn, void *payload)
{
	vmb_image_snapshot *l;
	size_t n;
	int rc = vmb_image_snapshot_list(image, &l, &n);
	(void)handle;
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (fn(l[i].name, l[i].created, payload))
			break;
	vmb_image_snapshot_list_free(l, n);
	return 0;
}

static int file_snapshot_revert(void *handle, const char *image,
				const char *name)
{
	(void)handle;
	return vmb_image_snapshot_revert(image, name);
}

static int file_snapshot_delete(void *handle, const char *image,
				const char *name)
{
	(void)handle;
	return vmb_image_snapshot_delete(image, name);
}

static const vmb_hv_plugin file_plugin = {
	.struct_size = sizeof(vmb_hv_plugin),
	.api_version = VMB_HV_API_VERSION,
	.name = "file",
	.version = "1",
	.description = "disk image files: raw, qcow2, VMDK, VDI",
	.features = VMB_HV_F_SNAPSHOT,
	.open = file_open,
	.close = file_close,
	.describe = file_describe,
	.vm_info_free = file_info_free,
	.backup_begin = file_backup_begin,
	.backup_end = file_backup_end,
	.snapshot_create = file_snapshot_create,
	.snapshot_list = file_snapshot_list,
	.snapshot_revert = file_snapshot_revert,
	.snapshot_delete = file_snapshot_delete,
};

VMB_HV_REGISTER_PLUGIN(file, file_plugin)
