/*
 * The "vbox" hypervisor plugin: VirtualBox VMs, from their folder
 * (docs/vbox.md).  `vbox:PATH` names a .vbox settings file or the folder
 * holding one.  The settings are read by settings.c; every image of the
 * media registry is checked against it (VDI headers carry the image's
 * uuid and its parent's: a file that disagrees is named); each disk of
 * the current state is read as its whole chain of differencing images,
 * opened with the layers the registry names (vmb_disk_open_layers()), so
 * change tracking sees the chain as it sees qcow2 overlays.
 *
 * The VM's state comes from VBoxManage where it is on PATH; a running VM
 * is refused unless the backup may be crash-consistent, or --live lets
 * the plugin take a VirtualBox snapshot (the images under it are then
 * read-only), back those up and delete the snapshot afterwards.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "vmbackup.h"
#include "vmbackup/sys/hv.h"
#include "vbox.h"
#include "vboxmanage.h"

struct vbox_vm {
	vmb_hv_vm_info info;
	struct vbox_machine m;
	char *text;
	size_t len;
	int state;
	char note[512];
	char vbm[PATH_MAX];   /* VBoxManage, or "" */
	vmb_hv_disk_info *disks;
	char **names;
	size_t ndisks;
};

struct vbox_job {
	vmb_hv_backup_job b;     /* a copy of the folder job's */
	vmb_hv_backup_job *fj;   /* the VM-folder layer's job */
	struct vbox_vm *v;       /* the VM as backed up */
	struct vbox_vm *after;   /* --live: as it is after the snapshot */
	char live_snap[37];      /* a snapshot we took, to delete */
	char scratch[PATH_MAX];  /* --live: folder of the settings copy */
	char copy[PATH_MAX];     /* the settings as they were before it */
	char note[600];
};

static int vbox_open(const char *uri, void **handle)
{
	static int token;
	if (uri && *uri)
		return vmb_error_set(VMB_EINVAL, "vbox: takes no connection "
				     "URI (got '%s')", uri);
	*handle = &token;
	return 0;
}

static void vbox_close(void *handle)
{
	(void)handle;
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a > b && !strcmp(s + a - b, suf);
}

/* The .vbox file @arg names (itself, or the one in its folder). */
static int find_settings(const char *arg, char out[PATH_MAX])
{
	struct stat st;
	char real[PATH_MAX];
	if (!realpath(arg, real))
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "%s: %s", arg, strerror(errno));
	if (stat(real, &st) != 0)
		return vmb_error_set(VMB_EIO, "%s: %s", arg, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(real);
		struct dirent *e;
		int n = 0, seen = 0;
		if (!d)
			return vmb_error_set(VMB_EIO, "%s: %s", arg,
					     strerror(errno));
		while ((e = readdir(d)) && seen++ < 100000)
			if (e->d_name[0] != '.' && ends_with(e->d_name, ".vbox")) {
				if (n++ == 0 &&
				    snprintf(out, PATH_MAX, "%s/%s", real,
					     e->d_name) >= PATH_MAX) {
					closedir(d);
					return vmb_error_set(VMB_EINVAL, "%s: "
							     "path too long", arg);
				}
			}
		closedir(d);
		if (n != 1)
			return vmb_error_set(n ? VMB_EAMBIGUOUS : VMB_ENOTFOUND,
					     "%s: %s .vbox settings file in "
					     "the folder", arg, n ? "more than "
					     "one" : "no");
		return 0;
	}
	if (!ends_with(real, ".vbox"))
		return vmb_error_set(VMB_EINVAL, "%s: not a .vbox settings "
				     "file or a VM folder", arg);
	snprintf(out, PATH_MAX, "%s", real);
	return 0;
}

/* A file the VM needs: there, a regular file, not a symlink. */
static int check_file(const char *path, const char *what)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "%s %s: %s", what, path, strerror(errno));
	if (S_ISLNK(st.st_mode))
		return vmb_error_set(VMB_EFORMAT, "%s %s is a symbolic link: "
				     "refused", what, path);
	if (!S_ISREG(st.st_mode))
		return vmb_error_set(VMB_EFORMAT, "%s %s is not a regular "
				     "file", what, path);
	return 0;
}

/* Every image of the registry against its header. */
static int check_media(const struct vbox_machine *m)
{
	int rc;
	for (size_t i = 0; i < m->nmedia; i++) {
		const struct vbox_medium *md = &m->media[i];
		char uuid[37], parent[37];
		vmb_disk *d;
		if (md->kind != VBOX_HDD)
			continue;
		if ((rc = check_file(md->path, "disk image")))
			return rc;
		if (!md->format || strcasecmp(md->format, "VDI"))
			continue;
		if ((rc = vmb_disk_open(md->path, VMB_DISK_OPEN_NO_BACKING,
					&d)))
			return rc;
		rc = strcmp(vmb_disk_format_name(d), "vdi") ?
		     vmb_error_set(VMB_EFORMAT, "%s: the settings file says "
				   "VDI, the file is %s", md->path,
				   vmb_disk_format_name(d)) :
		     vmb_disk_layer_uuid(d, 0, uuid, parent);
		vmb_disk_close(d);
		if (rc)
			return rc;
		if (strcmp(uuid, md->uuid))
			return vmb_error_set(VMB_EFORMAT, "%s: the VDI header's "
					     "image uuid is {%s}, the settings "
					     "file says {%s}", md->path, uuid,
					     md->uuid);
		if (md->parent < 0 && parent[0])
			return vmb_error_set(VMB_EFORMAT, "%s: a differencing "
					     "image of {%s}, but the settings "
					     "file lists it as a base image",
					     md->path, parent);
		if (md->parent >= 0 &&
		    strcmp(parent, m->media[md->parent].uuid))
			return vmb_error_set(VMB_EFORMAT, "%s: the VDI header's "
					     "parent uuid is {%s}, but the "
					     "settings file nests it under %s "
					     "{%s}", md->path,
					     parent[0] ? parent : "none",
					     m->media[md->parent].location,
					     m->media[md->parent].uuid);
	}
	if (m->current.state_path &&
	    (rc = check_file(m->current.state_path, "saved state")))
		return rc;
	for (size_t i = 0; i < m->nsnaps; i++)
		if (m->snaps[i].state_path &&
		    (rc = check_file(m->snaps[i].state_path, "saved state")))
			return rc;
	if (m->nvram_path && (rc = check_file(m->nvram_path, "NVRAM file")))
		return rc;
	return 0;
}

static int read_settings(const char *path, char **text, size_t *len)
{
	struct stat st;
	int fd, rc;
	char *buf;
	ssize_t n;
	if ((rc = check_file(path, "settings file")))
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || fstat(fd, &st) != 0) {
		rc = vmb_error_set(VMB_EIO, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (st.st_size > (off_t)VBOX_MAX_SETTINGS) {
		close(fd);
		return vmb_error_set(VMB_EFORMAT, "%s: larger than %u MiB",
				     path, VBOX_MAX_SETTINGS >> 20);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return VMB_ENOMEM;
	}
	n = pread(fd, buf, (size_t)st.st_size, 0);
	close(fd);
	if (n != st.st_size) {
		free(buf);
		return vmb_error_set(VMB_EIO, "%s: short read", path);
	}
	buf[n] = 0;
	*text = buf;
	*len = (size_t)n;
	return 0;
}

static void vm_free(struct vbox_vm *v)
{
	if (!v)
		return;
	vbox_machine_free(&v->m);
	free(v->text);
	for (size_t i = 0; i < v->ndisks; i++)
		free(v->names[i]);
	free(v->names);
	free(v->disks);
	free(v);
}

/* A disk's name in the snapshot: its base image's file name without
 * extension (stable across VirtualBox snapshots), made unique. */
static char *disk_name(const struct vbox_vm *v, const struct vbox_medium *base)
{
	char *n = vmb_repo_disk_name(base->path), *u;
	for (int k = 2; n && k < 1000; k++) {
		size_t i;
		for (i = 0; i < v->ndisks && strcmp(v->names[i], n); i++)
			;
		if (i == v->ndisks)
			return n;
		u = malloc(strlen(n) + 8);
		if (u)
			snprintf(u, strlen(n) + 8, "%s-%d",
				 k == 2 ? n : n, k);
		free(n);
		n = u;
	}
	return n;
}

/* The state whose disks are read: the current one, or a snapshot. */
static int fill_disks(struct vbox_vm *v, const struct vbox_state *st)
{
	for (size_t i = 0; i < v->ndisks; i++)
		free(v->names[i]);
	free(v->names);
	free(v->disks);
	v->ndisks = 0;
	v->names = calloc(st->natt + 1, sizeof *v->names);
	v->disks = calloc(st->natt + 1, sizeof *v->disks);
	if (!v->names || !v->disks)
		return VMB_ENOMEM;
	for (size_t i = 0; i < st->natt; i++) {
		const struct vbox_attach *a = &st->att[i];
		int chain[VBOX_MAX_CHAIN];
		size_t n;
		if (a->kind != VBOX_HDD || a->medium < 0)
			continue;
		n = vbox_chain(&v->m, a->medium, chain);
		v->names[v->ndisks] = disk_name(v, &v->m.media[chain[n - 1]]);
		if (!v->names[v->ndisks])
			return VMB_ENOMEM;
		v->disks[v->ndisks].name = v->names[v->ndisks];
		v->disks[v->ndisks].path = v->m.media[a->medium].path;
		v->disks[v->ndisks].format = "vdi";
		if (v->m.media[a->medium].format &&
		    strcasecmp(v->m.media[a->medium].format, "VDI"))
			v->disks[v->ndisks].format = "vmdk";
		v->ndisks++;
	}
	return 0;
}

static int load_vm(const char *arg, struct vbox_vm **out)
{
	char path[PATH_MAX];
	struct vbox_vm *v;
	int rc;
	*out = NULL;
	if ((rc = find_settings(arg, path)))
		return rc;
	v = calloc(1, sizeof *v);
	if (!v)
		return VMB_ENOMEM;
	if ((rc = read_settings(path, &v->text, &v->len)))
		goto fail;
	if ((rc = vbox_settings_parse(v->text, v->len, path, &v->m))) {
		vmb_error_prefix("%s: ", path);
		goto fail;
	}
	if ((rc = check_media(&v->m)))
		goto fail;
	v->state = v->m.current.state_file ? VMB_HV_STATE_SAVED :
		   VMB_HV_STATE_UNKNOWN;
	if (vbox_manage_find(v->vbm, sizeof v->vbm)) {
		int st;
		rc = vbox_manage_state(v->vbm, v->m.uuid, &st, v->note,
				       sizeof v->note);
		if (rc < 0)
			goto fail;
		if (rc == 0)
			v->state = st;
		rc = 0;
	} else {
		snprintf(v->note, sizeof v->note, "VBoxManage is not on PATH: "
			 "state read from the settings file");
	}
	if ((rc = fill_disks(v, &v->m.current)))
		goto fail;
	v->info.struct_size = sizeof v->info;
	v->info.name = v->m.name;
	v->info.uuid = v->m.uuid;
	v->info.state = v->state;
	v->info.ndisks = v->ndisks;
	v->info.disks = v->disks;
	v->info.config_format = "vbox-xml";
	v->info.config = v->text;
	*out = v;
	return 0;
fail:
	vm_free(v);
	return rc;
}

static int vbox_describe(void *handle, const char *vm, vmb_hv_vm_info **out)
{
	struct vbox_vm *v;
	int rc = load_vm(vm, &v);
	(void)handle;
	if (rc)
		return rc;
	*out = &v->info;
	return 0;
}

static void vbox_info_free(void *handle, vmb_hv_vm_info *info)
{
	(void)handle;
	vm_free((struct vbox_vm *)info);
}

static void job_free(struct vbox_job *j)
{
	if (!j)
		return;
	vmb_vmfolder_job_free(j->fj);
	if (j->copy[0])
		unlink(j->copy);
	if (j->scratch[0])
		rmdir(j->scratch);
	vm_free(j->v);
	vm_free(j->after);
	free(j);
}

/* --live: the settings as they were before the snapshot, which is what
 * the images now read-only belong to, kept in a scratch copy. */
static int keep_settings(struct vbox_job *j, const vmb_hv_backup_options *o)
{
	const char *tmp = o->scratch_dir ? o->scratch_dir : getenv("TMPDIR");
	int fd;
	snprintf(j->scratch, sizeof j->scratch, "%s/vmb-vbox.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(j->scratch)) {
		j->scratch[0] = 0;
		return vmb_error_set(VMB_EIO, "cannot make a scratch folder: "
				     "%s", strerror(errno));
	}
	if ((size_t)snprintf(j->copy, sizeof j->copy, "%s/%s", j->scratch,
			     strrchr(j->v->m.settings, '/') + 1) >=
	    sizeof j->copy) {
		j->copy[0] = 0;
		return vmb_error_set(VMB_EINVAL, "scratch path too long");
	}
	fd = open(j->copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, j->v->text, j->v->len) != (ssize_t)j->v->len) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return vmb_error_set(VMB_EIO, "%s: %s", j->copy, strerror(e));
	}
	close(fd);
	return 0;
}

static int vbox_backup_begin(void *handle, const char *vm,
			     const vmb_hv_backup_options *o,
			     vmb_hv_backup_job **out)
{
	struct vbox_job *j = calloc(1, sizeof *j);
	struct vbox_vm *v;
	int rc;
	(void)handle;
	if (!j)
		return VMB_ENOMEM;
	if ((rc = load_vm(vm, &j->v)))
		goto fail;
	v = j->v;
	j->b.consistency = "powered-off";
	if (v->state == VMB_HV_STATE_RUNNING ||
	    v->state == VMB_HV_STATE_PAUSED) {
		if ((o->flags & VMB_HV_BACKUP_LIVE) &&
		    (o->flags & VMB_HV_BACKUP_DRY_RUN)) {
			vmb_log(VMB_LOG_INFO, "would run: VBoxManage snapshot "
				"%s take vmb-backup-%lld --live", v->m.uuid,
				(long long)time(NULL));
			vmb_log(VMB_LOG_INFO, "would read the images of that "
				"snapshot (read-only while it exists)");
			vmb_log(VMB_LOG_INFO, "would run: VBoxManage snapshot "
				"%s delete <that snapshot's uuid>", v->m.uuid);
			j->b.consistency = "crash-consistent";
		} else if (o->flags & VMB_HV_BACKUP_LIVE) {
			char name[64];
			snprintf(name, sizeof name, "vmb-backup-%lld",
				 (long long)time(NULL));
			vmb_log(VMB_LOG_INFO, "running: VBoxManage snapshot %s "
				"take %s --live", v->m.uuid, name);
			rc = vbox_manage_snapshot_take(v->vbm, v->m.uuid, name,
						       j->live_snap);
			if (rc)
				goto fail;
			/* the images under the new snapshot are read-only
			 * now; they are what the settings named before it */
			if ((rc = load_vm(vm, &j->after)))
				goto fail;
			if (!j->live_snap[0])
				memcpy(j->live_snap,
				       j->after->m.current_snapshot, 37);
			if ((rc = keep_settings(j, o)))
				goto fail;
			j->b.consistency = "crash-consistent";
			snprintf(j->note, sizeof j->note, "VirtualBox live "
				 "snapshot {%s}, deleted after the backup",
				 j->live_snap);
		} else if (o->flags & VMB_HV_BACKUP_CRASH_CONSISTENT) {
			j->b.consistency = "crash-consistent";
			snprintf(j->note, sizeof j->note, "the VM was %s "
				 "(%s)", vmb_hv_state_name(v->state), v->note);
		} else {
			rc = vmb_error_set(VMB_ELOCKED, "VM '%s' is %s: shut it "
					   "down, or use --live or "
					   "--crash-consistent", v->m.name,
					   vmb_hv_state_name(v->state));
			goto fail;
		}
	} else if (v->state == VMB_HV_STATE_SAVED) {
		j->b.consistency = "saved";
		snprintf(j->note, sizeof j->note, "saved state %s", 
			 v->m.current.state_file ? v->m.current.state_file :
			 "(not in the settings)");
	} else if (v->state == VMB_HV_STATE_UNKNOWN) {
		j->b.consistency = "unchecked";
		snprintf(j->note, sizeof j->note, "%s", v->note);
	} else if (o->flags & VMB_HV_BACKUP_LIVE) {
		/* nothing to snapshot: a VM that is off is read as it is */
		snprintf(j->note, sizeof j->note, "--live: the VM is off");
	}
	rc = vbox_folder_job(&v->m, j->copy[0] ? j->copy : NULL,
			     &v->m.current, j->b.consistency,
			     j->note[0] ? j->note : NULL, &j->fj);
	if (rc)
		goto fail;
	j->b = *j->fj;
	*out = &j->b;
	return 0;
fail:
	if (j->live_snap[0] && j->v) {
		int e = vmb_error_code();
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", vmb_error_message());
		vbox_manage_snapshot_delete(j->v->vbm, j->v->m.uuid,
					    j->live_snap);
		vmb_error_set(e ? e : rc, "%s", msg);
	}
	job_free(j);
	return rc;
}

static int vbox_backup_end(void *handle, vmb_hv_backup_job *b, int committed)
{
	struct vbox_job *j = (struct vbox_job *)b;
	int rc = 0;
	(void)handle;
	(void)committed;
	if (!j)
		return 0;
	/* the images are closed before VirtualBox merges them */
	vmb_vmfolder_job_free(j->fj);
	j->fj = NULL;
	if (j->live_snap[0]) {
		vmb_log(VMB_LOG_INFO, "running: VBoxManage snapshot %s delete "
			"%s", j->v->m.uuid, j->live_snap);
		rc = vbox_manage_snapshot_delete(j->v->vbm, j->v->m.uuid,
						 j->live_snap);
	}
	job_free(j);
	return rc;
}

static const vmb_hv_plugin vbox_plugin = {
	.struct_size = sizeof(vmb_hv_plugin),
	.api_version = VMB_HV_API_VERSION,
	.name = "vbox",
	.version = "1",
	.description = "VirtualBox VM folders (.vbox settings, VDI chains)",
	.features = VMB_HV_F_LIVE | VMB_HV_F_FOLDER,
	.open = vbox_open,
	.close = vbox_close,
	.describe = vbox_describe,
	.vm_info_free = vbox_info_free,
	.backup_begin = vbox_backup_begin,
	.backup_end = vbox_backup_end,
	.folder_fixup = vbox_folder_fixup,
};

VMB_HV_REGISTER_PLUGIN(vbox, vbox_plugin)
