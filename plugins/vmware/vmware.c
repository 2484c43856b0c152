/*
 * The "vmware" hypervisor plugin: VMware Workstation / Player VMs, from
 * their folder (docs/vmware.md).  `vmware:PATH` names a .vmx file or the
 * folder holding one.  The .vmx (vmx.c) names the disks (scsiN:M, sataN:M,
 * nvmeN:M, ideN:M .fileName); each disk's VMDK chain is followed through
 * parentFileNameHint with every CID/parentCID link checked, and every
 * descriptor and extent file, the .nvram, the .vmsd with its snapshots'
 * .vmsn files and disks, and the .vmss/.vmem of a suspended VM go into one
 * snapshot through the VM-folder layer (docs/vm-folders.md).  A *.lck
 * folder means the VM is running: refused unless crash-consistent.
 *
 * Restore (folder_fixup): the .vmx and .vmsd point at the restored files,
 * relative to the new folder; descriptors' parentFileNameHint and extent
 * names too; --new-uuid gives new uuid.bios/uuid.location, MACs and CIDs
 * with every parentCID following its parent.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vmbackup.h"
#include "vmbackup/sys/hv.h"
#include "vmx.h"

#define MAX_DRIVES 256

struct vmw_drive {
	char node[32];        /* "scsi0:0" */
	char *file;           /* as written */
	char *layers[VMDK_MAX_CHAIN]; /* absolute, top first */
	size_t nlayers;
	uint64_t size;
};

struct vmw_vm {
	vmb_hv_vm_info info;
	char vmx[PATH_MAX];
	char dir[PATH_MAX];
	char *base;           /* file name without .vmx */
	char *name;
	char *text;
	struct vmx x;
	struct vmw_drive d[MAX_DRIVES];
	size_t nd;
	vmb_hv_disk_info di[MAX_DRIVES];
	char lck[PATH_MAX];   /* a lock folder, or "" */
	int suspended;
};

static int vmw_open(const char *uri, void **handle)
{
	static int token;
	if (uri && *uri)
		return vmb_error_set(VMB_EINVAL, "vmware: takes no connection "
				     "URI (got '%s')", uri);
	*handle = &token;
	return 0;
}

static void vmw_close(void *handle)
{
	(void)handle;
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a > b && !strcasecmp(s + a - b, suf);
}

static int find_vmx(const char *arg, char out[PATH_MAX])
{
	struct stat st;
	char real[PATH_MAX];
	if (stat(arg, &st) != 0)
		return vmb_error_set(VMB_ENOTFOUND, "vmware: %s: %s", arg,
				     strerror(errno));
	if (!realpath(arg, real))
		return vmb_error_set(VMB_EIO, "vmware: %s: %s", arg,
				     strerror(errno));
	if (S_ISREG(st.st_mode)) {
		if (!ends_with(real, ".vmx"))
			return vmb_error_set(VMB_EINVAL, "vmware: %s is not a "
					     ".vmx file", arg);
		snprintf(out, PATH_MAX, "%s", real);
		return 0;
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(real);
		struct dirent *e;
		int n = 0, seen = 0;
		while (d && (e = readdir(d)) && seen++ < 10000)
			if (e->d_name[0] != '.' && ends_with(e->d_name, ".vmx")) {
				if (!n++ && snprintf(out, PATH_MAX, "%s/%s",
						     real, e->d_name) >= PATH_MAX)
					n = 2;
			}
		if (d)
			closedir(d);
		if (n == 1)
			return 0;
		return vmb_error_set(VMB_EINVAL, "vmware: %s holds %s .vmx file",
				     arg, n ? "more than one" : "no");
	}
	return vmb_error_set(VMB_EINVAL, "vmware: %s is not a .vmx file or a "
			     "folder", arg);
}

/* A path as a .vmx or descriptor writes it, against the folder @dir. */
static char *resolve(const char *dir, const char *p)
{
	char *out;
	if (p[0] == '/')
		return strdup(p);
	size_t ol = strlen(dir) + strlen(p) + 2;
	out = malloc(ol);
	if (out)
		snprintf(out, ol, "%s/%s", dir, p);
	return out;
}

static char *dir_of(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? strndup(path, s > path ? (size_t)(s - path) : 1)
		 : strdup(".");
}

static void vm_free(struct vmw_vm *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->nd; i++) {
		free(v->d[i].file);
		for (size_t k = 0; k < v->d[i].nlayers; k++)
			free(v->d[i].layers[k]);
	}
	vmx_free(&v->x);
	free(v->base);
	free(v->name);
	free(v->text);
	free(v);
}

/* "scsi0:1.fileName" -> node "scsi0:1" when it is a disk controller key */
static int drive_key(const char *key, char node[32])
{
	static const char *const bus[] = { "scsi", "sata", "nvme", "ide" };
	const char *dot = strrchr(key, '.');
	if (!dot || strcasecmp(dot, ".fileName") || dot - key >= 32)
		return 0;
	for (size_t b = 0; b < 4; b++) {
		size_t bl = strlen(bus[b]);
		const char *p = key + bl, *c;
		if (strncasecmp(key, bus[b], bl))
			continue;
		if (p >= dot || *p < '0' || *p > '9')
			return 0;
		while (p < dot && *p >= '0' && *p <= '9')
			p++;
		if (p >= dot || *p != ':')
			return 0;
		c = ++p;
		while (p < dot && *p >= '0' && *p <= '9')
			p++;
		if (p != dot || c == p || p - key > 20)
			return 0;
		memcpy(node, key, (size_t)(dot - key));
		node[dot - key] = 0;
		return 1;
	}
	return 0;
}

static const char *dev_get(const struct vmx *x, const char *node,
			   const char *what)
{
	char k[64];
	snprintf(k, sizeof k, "%s.%s", node, what);
	return vmx_get(x, k);
}

/* Follow @file's chain (as written, against @dir): every layer's
 * descriptor checked, CID links verified; @layers get absolute paths. */
static int walk_chain(const char *dir, const char *file, char **layers,
		      size_t *n, uint64_t *size)
{
	char *cur = resolve(dir, file);
	uint32_t want_cid = 0;
	int have_want = 0, rc = 0;
	char *child = NULL;
	*n = 0;
	while (cur) {
		struct vmdk_desc d;
		char real[PATH_MAX];
		if (*n >= VMDK_MAX_CHAIN) {
			rc = vmb_error_set(VMB_EFORMAT, "vmware: %s: chain deeper "
					   "than %d (a parent loop?)", file,
					   VMDK_MAX_CHAIN);
			break;
		}
		if (!realpath(cur, real)) {
			rc = vmb_error_set(VMB_ENOTFOUND, "vmware: %s%s%s: %s",
					   cur, child ? ", parent of " : "",
					   child ? child : "", strerror(errno));
			break;
		}
		for (size_t k = 0; k < *n; k++)
			if (!strcmp(layers[k], real)) {
				rc = vmb_error_set(VMB_EFORMAT, "vmware: %s: a "
						   "parent loop at %s", file,
						   real);
				goto out;
			}
		rc = vmdk_desc_load(cur, &d);
		if (rc)
			break;
		if (have_want && (!d.has_cid || d.cid != want_cid)) {
			rc = vmb_error_set(VMB_EFORMAT, "vmware: %s: parentCID "
					   "%08x does not match the CID %08x of "
					   "its parent %s", child, want_cid,
					   d.cid, cur);
			vmdk_desc_free(&d);
			break;
		}
		if (*n == 0) {
			*size = 0;
			for (size_t e = 0; e < d.next; e++)
				*size += d.ext[e].sectors * 512;
		}
		layers[(*n)++] = strdup(real);
		free(child);
		child = cur;
		cur = NULL;
		if (d.parent_hint && *d.parent_hint &&
		    !(d.has_parent_cid && d.parent_cid == 0xffffffffu)) {
			char *cd = dir_of(child);
			cur = cd ? resolve(cd, d.parent_hint) : NULL;
			free(cd);
			have_want = d.has_parent_cid;
			want_cid = d.parent_cid;
		}
		vmdk_desc_free(&d);
	}
out:
	free(cur);
	free(child);
	return rc;
}

static int load_vm(const char *arg, struct vmw_vm **out)
{
	struct vmw_vm *v = calloc(1, sizeof *v);
	const char *b, *dn;
	char *slash;
	int rc;
	if (!v)
		return VMB_ENOMEM;
	rc = find_vmx(arg, v->vmx);
	if (rc)
		goto fail;
	snprintf(v->dir, sizeof v->dir, "%s", v->vmx);
	slash = strrchr(v->dir, '/');
	*slash = 0;
	b = strrchr(v->vmx, '/') + 1;
	v->base = strndup(b, strlen(b) - 4);
	rc = vmx_load(v->vmx, &v->x);
	if (rc)
		goto fail;
	dn = vmx_get(&v->x, "displayName");
	v->name = strdup(dn && *dn ? dn : v->base);
	if (!v->base || !v->name) {
		rc = VMB_ENOMEM;
		goto fail;
	}
	/* a *.lck folder: VMware has the VM (or one of its disks) open */
	{
		DIR *d = opendir(v->dir);
		struct dirent *e;
		int seen = 0;
		while (d && (e = readdir(d)) && seen++ < 10000) {
			struct stat st;
			char p[PATH_MAX];
			if (!ends_with(e->d_name, ".lck"))
				continue;
			if (snprintf(p, sizeof p, "%s/%s", v->dir, e->d_name) <
				    (int)sizeof p && lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
				snprintf(v->lck, sizeof v->lck, "%.*s", 255,
					 e->d_name);
				break;
			}
		}
		if (d)
			closedir(d);
	}
	{
		const char *ss = vmx_get(&v->x, "checkpoint.vmState");
		v->suspended = ss && *ss;
	}
	for (size_t i = 0; i < v->x.n; i++) {
		struct vmw_drive *dr;
		const char *pres, *type, *file;
		char node[32];
		if (!v->x.l[i].key || !drive_key(v->x.l[i].key, node))
			continue;
		file = v->x.l[i].value;
		pres = dev_get(&v->x, node, "present");
		type = dev_get(&v->x, node, "deviceType");
		if (pres && !vmx_true(pres))
			continue;
		if (!*file || (type && (strstr(type, "cdrom") ||
					!strcasecmp(type, "atapi-cdrom") ||
					strstr(type, "floppy"))))
			continue; /* CD/DVD images are not part of the VM */
		for (size_t k = 0; k < v->nd; k++)
			if (!strcasecmp(v->d[k].node, node))
				goto next; /* the last key won (vmx_get) */
		if (v->nd >= MAX_DRIVES) {
			rc = vmb_error_set(VMB_EFORMAT, "vmware: %s: more than "
					   "%d disks", v->vmx, MAX_DRIVES);
			goto fail;
		}
		dr = &v->d[v->nd++];
		snprintf(dr->node, sizeof dr->node, "%s", node);
		dr->file = strdup(dev_get(&v->x, node, "fileName"));
		if (!dr->file) {
			rc = VMB_ENOMEM;
			goto fail;
		}
		rc = walk_chain(v->dir, dr->file, dr->layers, &dr->nlayers,
				&dr->size);
		if (rc)
			goto fail;
		for (size_t k = 0; k + 1 < v->nd; k++)
			if (!strcmp(v->d[k].layers[0], dr->layers[0])) {
				rc = vmb_error_set(VMB_EINVAL, "vmware: %s is "
						   "the disk of both %s and %s",
						   dr->file, v->d[k].node, node);
				goto fail;
			}
next:		;
	}
	v->info.struct_size = sizeof v->info;
	v->info.name = v->name;
	v->info.uuid = vmx_get(&v->x, "uuid.bios");
	v->info.state = v->lck[0] ? VMB_HV_STATE_RUNNING :
			v->suspended ? VMB_HV_STATE_SAVED : VMB_HV_STATE_OFF;
	v->info.ndisks = v->nd;
	v->info.disks = v->di;
	for (size_t i = 0; i < v->nd; i++) {
		v->di[i].name = v->d[i].node;
		v->di[i].path = v->d[i].layers[0];
		v->di[i].format = "vmdk";
		v->di[i].size = v->d[i].size;
	}
	v->info.config_format = "vmware-vmx";
	{
		size_t n;
		v->text = vmx_write(&v->x, &n);
	}
	v->info.config = v->text;
	*out = v;
	return 0;
fail:
	vm_free(v);
	return rc;
}

static int vmw_describe(void *handle, const char *vm, vmb_hv_vm_info **out)
{
	struct vmw_vm *v;
	int rc = load_vm(vm, &v);
	(void)handle;
	if (rc)
		return rc;
	*out = &v->info;
	return 0;
}

static void vmw_info_free(void *handle, vmb_hv_vm_info *info)
{
	(void)handle;
	vm_free((struct vmw_vm *)info);
}

static int exists_file(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Add a chain's files: every layer's descriptor and its extent files. */
static int add_layers(vmb_vmfolder *f, char *const *layers, size_t n,
		      const char *first_as_written)
{
	for (size_t k = 0; k < n; k++) {
		struct vmdk_desc d;
		char *dd;
		int rc = vmb_vmfolder_add_file(f, k || !first_as_written ?
					       layers[k] : first_as_written,
					       VMB_VMFOLDER_ROLE_DISK, NULL);
		if (rc)
			return rc;
		rc = vmdk_desc_load(layers[k], &d);
		if (rc)
			return rc;
		dd = dir_of(layers[k]);
		for (size_t e = 0; !rc && e < d.next; e++) {
			char *p;
			if (!d.ext[e].file)
				continue;
			p = dd ? resolve(dd, d.ext[e].file) : NULL;
			rc = p ? vmb_vmfolder_add_file(f, p,
						       VMB_VMFOLDER_ROLE_DISK,
						       NULL) : VMB_ENOMEM;
			free(p);
		}
		free(dd);
		vmdk_desc_free(&d);
		if (rc)
			return rc;
	}
	return 0;
}

struct vmw_job {
	vmb_hv_backup_job b;
	vmb_hv_backup_job *fj;
	char note[PATH_MAX + 64];
};

static int build_folder(struct vmw_vm *v, const char *consistency,
			const char *note, vmb_hv_backup_job **out)
{
	vmb_vmfolder *f = NULL;
	char p[PATH_MAX + 16];
	const char *s;
	int rc = vmb_vmfolder_new("vmware", v->dir, &f);
	if (rc)
		return rc;
	rc = vmb_vmfolder_add_file(f, strrchr(v->vmx, '/') + 1,
				   VMB_VMFOLDER_ROLE_CONFIG, NULL);
	if (!rc && (s = vmx_get(&v->x, "extendedConfigFile")) && *s) {
		char *a = resolve(v->dir, s);
		if (a && exists_file(a))
			rc = vmb_vmfolder_add_file(f, s, VMB_VMFOLDER_ROLE_FILE,
						   NULL);
		free(a);
	}
	/* NVRAM: the nvram key, else NAME.nvram */
	if (!rc) {
		s = vmx_get(&v->x, "nvram");
		if (s && *s) {
			char *a = resolve(v->dir, s);
			if (!a)
				rc = VMB_ENOMEM;
			else if (exists_file(a))
				rc = vmb_vmfolder_add_file(f, s,
						VMB_VMFOLDER_ROLE_FILE, NULL);
			free(a);
		} else {
			snprintf(p, sizeof p, "%s/%s.nvram", v->dir, v->base);
			if (exists_file(p))
				rc = vmb_vmfolder_add_file(f, p,
						VMB_VMFOLDER_ROLE_FILE, NULL);
		}
	}
	/* a suspended VM: its saved state and memory */
	if (!rc && v->suspended) {
		s = vmx_get(&v->x, "checkpoint.vmState");
		rc = vmb_vmfolder_add_file(f, s, VMB_VMFOLDER_ROLE_FILE, NULL);
		if (!rc) {
			char *a = resolve(v->dir, s);
			if (a && ends_with(a, ".vmss")) {
				memcpy(a + strlen(a) - 5, ".vmem", 5);
				if (exists_file(a))
					rc = vmb_vmfolder_add_file(f, a,
						VMB_VMFOLDER_ROLE_FILE, NULL);
			}
			free(a);
		}
	}
	/* the snapshot list, each snapshot's state and disks */
	snprintf(p, sizeof p, "%s/%s.vmsd", v->dir, v->base);
	if (!rc && exists_file(p)) {
		struct vmx sd;
		rc = vmx_load(p, &sd);
		if (!rc)
			rc = vmb_vmfolder_add_file(f, p,
						   VMB_VMFOLDER_ROLE_SNAPSHOT,
						   NULL);
		if (!rc)
			rc = vmb_vmfolder_set(f, "vmsd", strrchr(p, '/') + 1);
		for (size_t i = 0; !rc && i < sd.n; i++) {
			const char *k = sd.l[i].key, *val = sd.l[i].value, *dot;
			if (!k || strncasecmp(k, "snapshot", 8) || !*val)
				continue;
			dot = strrchr(k, '.');
			if (!dot || strcasecmp(dot, ".fileName"))
				continue;
			if (strchr(k + 8, '.') == dot) {
				/* snapshotN.fileName: the .vmsn (and .vmem) */
				char *a = resolve(v->dir, val);
				if (!a) {
					rc = VMB_ENOMEM;
					break;
				}
				rc = vmb_vmfolder_add_file(f, val,
						VMB_VMFOLDER_ROLE_SNAPSHOT, NULL);
				if (!rc && ends_with(a, ".vmsn")) {
					memcpy(a + strlen(a) - 5, ".vmem", 5);
					if (exists_file(a))
						rc = vmb_vmfolder_add_file(f, a,
						  VMB_VMFOLDER_ROLE_SNAPSHOT, NULL);
				}
				free(a);
			} else {
				/* snapshotN.diskM.fileName: the disk at that
				 * point, with its chain */
				char *layers[VMDK_MAX_CHAIN];
				size_t n = 0;
				uint64_t sz;
				rc = walk_chain(v->dir, val, layers, &n, &sz);
				if (!rc)
					rc = add_layers(f, layers, n, val);
				for (size_t m = 0; m < n; m++)
					free(layers[m]);
				if (rc)
					vmb_error_prefix("%s (%s): ", p, k);
			}
		}
		vmx_free(&sd);
	}
	for (size_t i = 0; !rc && i < v->nd; i++) {
		const char *ls[VMDK_MAX_CHAIN];
		rc = add_layers(f, v->d[i].layers, v->d[i].nlayers,
				v->d[i].file);
		for (size_t k = 0; k < v->d[i].nlayers; k++)
			ls[k] = k ? v->d[i].layers[k] : v->d[i].file;
		if (!rc)
			rc = vmb_vmfolder_add_drive(f, v->d[i].node, "vmdk", ls,
						    v->d[i].nlayers);
	}
	if (!rc)
		rc = vmb_vmfolder_set(f, "name", v->name);
	if (!rc)
		rc = vmb_vmfolder_set(f, "config", strrchr(v->vmx, '/') + 1);
	if (!rc)
		rc = vmb_vmfolder_set(f, "consistency", consistency);
	if (!rc && note)
		rc = vmb_vmfolder_set(f, "consistency_note", note);
	if (rc) {
		vmb_vmfolder_free(f);
		return rc;
	}
	return vmb_vmfolder_job(f, out);
}

static int vmw_backup_begin(void *handle, const char *vm,
			    const vmb_hv_backup_options *o,
			    vmb_hv_backup_job **out)
{
	struct vmw_vm *v = NULL;
	struct vmw_job *j;
	const char *cons = "powered-off", *note = NULL;
	int rc;
	(void)handle;
	j = calloc(1, sizeof *j);
	if (!j)
		return VMB_ENOMEM;
	rc = load_vm(vm, &v);
	if (rc)
		goto fail;
	if (v->lck[0]) {
		if (!(o->flags & VMB_HV_BACKUP_CRASH_CONSISTENT)) {
			rc = vmb_error_set(VMB_ELOCKED, "vmware: VM '%s' is "
					   "running (%s): shut it down, or use "
					   "--crash-consistent", v->name,
					   v->lck);
			goto fail;
		}
		cons = "crash-consistent";
		snprintf(j->note, sizeof j->note, "the VM was running (%s)",
			 v->lck);
		note = j->note;
	} else if (v->suspended) {
		cons = "saved";
		snprintf(j->note, sizeof j->note, "suspended to %s",
			 vmx_get(&v->x, "checkpoint.vmState"));
		note = j->note;
	}
	rc = build_folder(v, cons, note, &j->fj);
	if (rc)
		goto fail;
	j->b = *j->fj;
	j->b.plugin_data = j->fj;
	vm_free(v);
	*out = &j->b;
	return 0;
fail:
	vm_free(v);
	free(j);
	return rc;
}

static int vmw_backup_end(void *handle, vmb_hv_backup_job *b, int committed)
{
	struct vmw_job *j = (struct vmw_job *)b;
	(void)handle;
	(void)committed;
	if (!j)
		return 0;
	vmb_vmfolder_job_free(j->fj);
	free(j);
	return 0;
}

/* ---- restore ---- */

struct fix {
	vmb_vmfolder_view *v;
	const char *orig_desc_dir; /* original folder of the descriptor */
	const char *new_desc_dir;
	char buf[PATH_MAX];
};

static int rnd(void *p, size_t n)
{
	return getrandom(p, n, 0) == (ssize_t)n ? 0 :
	       vmb_error_set(VMB_EIO, "vmware: no random bytes: %s",
			     strerror(errno));
}

/* Where a file the original wrote as @p (against @odir) is now, relative
 * to @ndir when inside it. */
static const char *moved(struct fix *x, const char *odir, const char *ndir,
			 const char *p)
{
	char *a = resolve(odir, p);
	const char *now = a ? vmb_vmfolder_view_map(x->v, a) : NULL;
	size_t nl = strlen(ndir);
	free(a);
	if (!now)
		return NULL;
	if (!strncmp(now, ndir, nl) && now[nl] == '/')
		snprintf(x->buf, sizeof x->buf, "%s", now + nl + 1);
	else
		snprintf(x->buf, sizeof x->buf, "%s", now);
	return x->buf;
}

static const char *map_ext(const char *file, void *payload)
{
	struct fix *x = payload;
	return moved(x, x->orig_desc_dir, x->new_desc_dir, file);
}

/* The original absolute path of stored file @i. */
static char *orig_abs(vmb_vmfolder_view *v, size_t i)
{
	return resolve(vmb_vmfolder_view_orig_dir(v),
		       vmb_vmfolder_view_file_orig(v, i));
}

static int fix_descriptors(vmb_vmfolder_view *v, int new_uuid)
{
	size_t n = vmb_vmfolder_view_files(v);
	uint32_t *cid = calloc(n ? n : 1, sizeof *cid);
	int *isd = calloc(n ? n : 1, sizeof *isd);
	struct fix x;
	int rc = 0;
	if (!cid || !isd) {
		free(cid);
		free(isd);
		return VMB_ENOMEM;
	}
	memset(&x, 0, sizeof x);
	x.v = v;
	/* which files are descriptors; new CIDs for each */
	for (size_t i = 0; i < n; i++) {
		struct vmdk_desc d;
		const char *now = vmb_vmfolder_view_file_path(v, i);
		if (!now || strcmp(vmb_vmfolder_view_file_role(v, i),
				   VMB_VMFOLDER_ROLE_DISK))
			continue;
		if (vmdk_desc_load(now, &d) != 0) {
			vmb_error_clear(); /* an extent of a split disk */
			continue;
		}
		vmdk_desc_free(&d);
		isd[i] = 1;
		if (new_uuid && (rc = rnd(&cid[i], sizeof cid[i])) != 0)
			goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct vmdk_desc d;
		char *oa, *od, *nd;
		const char *now = vmb_vmfolder_view_file_path(v, i);
		const char *hint = NULL;
		uint32_t pcid = 0xffffffffu;
		if (!isd[i])
			continue;
		if ((rc = vmdk_desc_load(now, &d)) != 0)
			goto out;
		oa = orig_abs(v, i);
		od = oa ? dir_of(oa) : NULL;
		nd = dir_of(now);
		if (!od || !nd) {
			free(oa);
			free(od);
			free(nd);
			vmdk_desc_free(&d);
			rc = VMB_ENOMEM;
			goto out;
		}
		if (d.parent_hint && *d.parent_hint) {
			char *pa = resolve(od, d.parent_hint);
			const char *pn = pa ? vmb_vmfolder_view_map(v, pa) : NULL;
			hint = moved(&x, od, nd, d.parent_hint);
			for (size_t k = 0; new_uuid && pn && k < n; k++)
				if (isd[k] && vmb_vmfolder_view_file_path(v, k) &&
				    !strcmp(vmb_vmfolder_view_file_path(v, k), pn))
					pcid = cid[k];
			free(pa);
			if (!hint) {
				rc = vmb_error_set(VMB_ENOTFOUND, "vmware: %s: "
						   "its parent %s was not "
						   "stored", now, d.parent_hint);
				free(oa);
				free(od);
				free(nd);
				vmdk_desc_free(&d);
				goto out;
			}
		}
		if (!new_uuid && d.has_parent_cid)
			pcid = d.parent_cid;
		x.orig_desc_dir = od;
		x.new_desc_dir = nd;
		{
			char h[PATH_MAX];
			snprintf(h, sizeof h, "%s", hint ? hint : "");
			rc = vmdk_desc_rewrite(now, new_uuid, cid[i], pcid,
					       hint ? h : NULL,
					       d.embedded ? NULL : map_ext, &x);
		}
		free(oa);
		free(od);
		free(nd);
		vmdk_desc_free(&d);
		if (rc)
			goto out;
	}
out:
	free(cid);
	free(isd);
	return rc;
}

static int rewrite_conf(vmb_vmfolder_view *v, const char *rel,
			int new_uuid, int is_vmx)
{
	const char *now = vmb_vmfolder_view_map(v, rel);
	struct vmx x;
	char *out;
	size_t len;
	int rc;
	if (!now)
		return vmb_error_set(VMB_ENOTFOUND, "vmware: %s was not "
				     "restored", rel);
	rc = vmx_load(now, &x);
	if (rc)
		return rc;
	for (size_t i = 0; i < x.n; i++) {
		struct vmx_line *l = &x.l[i];
		const char *to, *dot;
		char node[32];
		if (!l->key || !*l->value)
			continue;
		dot = strrchr(l->key, '.');
		if (!(dot && !strcasecmp(dot, ".fileName")) &&
		    strcasecmp(l->key, "nvram") &&
		    strcasecmp(l->key, "checkpoint.vmState") &&
		    strcasecmp(l->key, "extendedConfigFile"))
			continue;
		to = vmb_vmfolder_view_map_rel(v, l->value);
		if (!to) {
			/* not stored: a CD/DVD image comes back empty, so
			 * the folder refers to nothing outside it */
			if (is_vmx && drive_key(l->key, node))
				l->value[0] = 0;
			continue;
		}
		free(l->value);
		l->value = strdup(to);
		if (!l->value) {
			vmx_free(&x);
			return VMB_ENOMEM;
		}
	}
	if (is_vmx && new_uuid) {
		uint8_t u[16], m[3];
		char s[64];
		if ((rc = rnd(u, sizeof u)) != 0) {
			vmx_free(&x);
			return rc;
		}
		u[0] = 0x56, u[1] = 0x4d; /* as VMware's own start */
		snprintf(s, sizeof s, "%02x %02x %02x %02x %02x %02x %02x %02x-"
			 "%02x %02x %02x %02x %02x %02x %02x %02x", u[0], u[1],
			 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
			 u[11], u[12], u[13], u[14], u[15]);
		rc = vmx_set(&x, "uuid.bios", s);
		if (!rc)
			rc = vmx_set(&x, "uuid.location", s);
		for (size_t i = 0; !rc && i < x.n; i++) {
			struct vmx_line *l = &x.l[i];
			const char *dot;
			if (!l->key || strncasecmp(l->key, "ethernet", 8) ||
			    !(dot = strchr(l->key, '.')))
				continue;
			if (strcasecmp(dot, ".generatedAddress") &&
			    strcasecmp(dot, ".address"))
				continue;
			if ((rc = rnd(m, sizeof m)) != 0)
				break;
			if (!strcasecmp(dot, ".address"))
				m[0] &= 0x3f; /* static: 00:50:56:00-3f */
			snprintf(s, sizeof s, "%s:%02x:%02x:%02x",
				 strcasecmp(dot, ".address") ? "00:0c:29" :
				 "00:50:56", m[0], m[1], m[2]);
			free(l->value);
			l->value = strdup(s);
			if (!l->value)
				rc = VMB_ENOMEM;
		}
		if (rc) {
			vmx_free(&x);
			return rc;
		}
	}
	out = vmx_write(&x, &len);
	vmx_free(&x);
	if (!out)
		return VMB_ENOMEM;
	{
		const char *r = vmb_vmfolder_view_map_rel(v, rel);
		char rr[PATH_MAX];
		snprintf(rr, sizeof rr, "%s", r ? r : rel);
		rc = vmb_vmfolder_view_write(v, rr, out, len);
	}
	free(out);
	return rc;
}

static int vmw_folder_fixup(void *handle, vmb_vmfolder_view *v)
{
	unsigned fl = vmb_vmfolder_view_flags(v);
	const char *cfg = vmb_vmfolder_view_meta(v, "config");
	const char *vmsd = vmb_vmfolder_view_meta(v, "vmsd");
	int nu = (fl & VMB_VMFOLDER_NEW_UUID) != 0, rc;
	(void)handle;
	if (!cfg)
		return vmb_error_set(VMB_ECORRUPT, "vmware: the snapshot names "
				     "no .vmx");
	/* descriptors first: parent hints and extents into the folder */
	rc = fix_descriptors(v, nu);
	if (rc)
		return rc;
	/* flattened images: one layer each (new CIDs on request) */
	for (size_t i = 0; nu && i < vmb_vmfolder_view_drives(v); i++) {
		const char *fmt = NULL;
		const char *flat = vmb_vmfolder_view_drive_flat(v, i, &fmt);
		uint32_t c;
		if (!flat || !fmt || strcmp(fmt, "vmdk"))
			continue;
		if ((rc = rnd(&c, sizeof c)) != 0 ||
		    (rc = vmdk_desc_rewrite(flat, 1, c, 0xffffffffu, NULL, NULL,
					    NULL)) != 0)
			return rc;
	}
	rc = rewrite_conf(v, cfg, nu, 1);
	if (!rc && vmsd && !(fl & VMB_VMFOLDER_FLATTEN))
		rc = rewrite_conf(v, vmsd, 0, 0);
	return rc;
}

static const vmb_hv_plugin vmware_plugin = {
	.struct_size = sizeof(vmb_hv_plugin),
	.api_version = VMB_HV_API_VERSION,
	.name = "vmware",
	.version = "1",
	.description = "VMware Workstation / Player VM folders (.vmx)",
	.features = VMB_HV_F_FOLDER,
	.open = vmw_open,
	.close = vmw_close,
	.describe = vmw_describe,
	.vm_info_free = vmw_info_free,
	.backup_begin = vmw_backup_begin,
	.backup_end = vmw_backup_end,
	.folder_fixup = vmw_folder_fixup,
};

VMB_HV_REGISTER_PLUGIN(vmware, vmware_plugin)
