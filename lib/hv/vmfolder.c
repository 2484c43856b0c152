/*
 * VM folders: the files of a desktop hypervisor's VM as entries of one
 * snapshot, and the restore that writes them back (docs/vm-folders.md).
 *
 * Backup: each file is opened as raw bytes (vmb_disk_open with
 * VMB_DISK_OPEN_RAW), so the pipeline's change tracking applies file by
 * file: an unchanged layer (a frozen VMDK delta, a base VDI) is
 * recognised by its identity and not read at all ("overlay"), a changed
 * one is compared by fingerprints.  The snapshot's configuration is a
 * JSON document naming every file, its role, the path the configuration
 * used and the entry holding it, and each drive's chain.
 *
 * Restore: the folder is written under the original names into an empty
 * (or new) folder; with --flatten every drive's chain is composed layer
 * by layer from the files just written (each layer opened alone, holes
 * fall through to the next layer of the chain the backup recorded, so no
 * path inside the images is trusted) into one image; then the plugin's
 * fixup rewrites the configuration.  A failure removes everything
 * written.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmbackup.h"
#include "vmbackup/sys/hv.h"
#include "common/json.h"
#include "common/util.h"

#define META_MAX 64
#define COPY_BLOCK (1u << 20)

struct vf_file {
	char *orig;  /* as the configuration wrote it */
	char *abs;   /* absolute path at backup */
	char *rel;   /* stored (restored) name */
	char *role;
	char *entry; /* disk name in the snapshot */
	dev_t dev;
	ino_t ino;
	uint64_t size;
	char *now;   /* restore: absolute path, or NULL if dropped */
};

struct vf_drive {
	char *name;
	char *format;
	char **layers; /* stored names, top first */
	size_t nlayers;
	char *flat;    /* restore --flatten: the image */
	char *flat_format;
};

struct vmb_vmfolder {
	char *plugin;
	char *dir;
	struct vf_file *files;
	size_t nfiles;
	struct vf_drive *drives;
	size_t ndrives;
	char *mkey[META_MAX];
	char *mval[META_MAX];
	size_t nmeta;
};

static void drive_free(struct vf_drive *d)
{
	free(d->name);
	free(d->format);
	for (size_t k = 0; k < d->nlayers; k++)
		free(d->layers[k]);
	free(d->layers);
	free(d->flat);
	free(d->flat_format);
}

static void file_free(struct vf_file *f)
{
	free(f->orig);
	free(f->abs);
	free(f->rel);
	free(f->role);
	free(f->entry);
	free(f->now);
}

static void folder_clear(vmb_vmfolder *f)
{
	for (size_t i = 0; i < f->nfiles; i++)
		file_free(&f->files[i]);
	free(f->files);
	for (size_t i = 0; i < f->ndrives; i++)
		drive_free(&f->drives[i]);
	free(f->drives);
	for (size_t i = 0; i < f->nmeta; i++) {
		free(f->mkey[i]);
		free(f->mval[i]);
	}
	free(f->plugin);
	free(f->dir);
}

VMB_EXTERN(void) vmb_vmfolder_free(vmb_vmfolder *f)
{
	if (!f)
		return;
	folder_clear(f);
	free(f);
}

VMB_EXTERN(int) vmb_vmfolder_new(const char *plugin, const char *dir,
				 vmb_vmfolder **out)
{
	vmb_vmfolder *f;
	char real[PATH_MAX];
	*out = NULL;
	if (!plugin || !*plugin || strlen(plugin) > 31 || !dir)
		return vmb_error_set(VMB_EINVAL, "vm folder: bad plugin name "
				     "or folder");
	if (!realpath(dir, real))
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "%s: %s", dir, strerror(errno));
	f = vmb_calloc(1, sizeof *f);
	if (!f)
		return VMB_ENOMEM;
	f->plugin = vmb_strdup(plugin);
	f->dir = vmb_strdup(real);
	if (!f->plugin || !f->dir) {
		vmb_vmfolder_free(f);
		return VMB_ENOMEM;
	}
	*out = f;
	return 0;
}

static int has_dotdot(const char *p)
{
	const char *s = p;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return 1;
		if (!e)
			break;
		s = e + 1;
	}
	return 0;
}

/* A stored name must stay inside the restore folder: relative, no empty,
 * "." or ".." components, no control characters. */
static int rel_ok(const char *r)
{
	const char *s = r;
	if (!r || !*r || *r == '/' || strlen(r) > 1024)
		return 0;
	for (const char *c = r; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '\\')
			return 0;
	for (;;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 0 || (n == 1 && s[0] == '.') ||
		    (n == 2 && s[0] == '.' && s[1] == '.'))
			return 0;
		if (!e)
			return 1;
		s = e + 1;
	}
}

static struct vf_file *find_rel(vmb_vmfolder *f, const char *rel)
{
	for (size_t i = 0; i < f->nfiles; i++)
		if (!strcmp(f->files[i].rel, rel))
			return &f->files[i];
	return NULL;
}

static int entry_taken(vmb_vmfolder *f, const char *e)
{
	for (size_t i = 0; i < f->nfiles; i++)
		if (!strcmp(f->files[i].entry, e))
			return 1;
	return 0;
}

static char *make_entry(vmb_vmfolder *f, const char *rel)
{
	char base[180], *e;
	size_t n = 0;
	for (const char *c = rel; *c && n + 1 < sizeof base; c++) {
		char ch = *c;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == '-'))
			ch = '_';
		base[n++] = ch;
	}
	base[n] = 0;
	if (base[0] == '.')
		base[0] = '_';
	e = vmb_strdup(base);
	for (int k = 2; e && entry_taken(f, e) && k < 100000; k++) {
		free(e);
		e = vmb_asprintf("%s-%d", base, k);
	}
	return e;
}

VMB_EXTERN(int) vmb_vmfolder_add_file(vmb_vmfolder *f, const char *path,
				      const char *role, const char **stored)
{
	struct stat st;
	struct vf_file *nf;
	char *abs, *dup = NULL, *rel = NULL;
	char real[PATH_MAX];
	int rc;

	if (stored)
		*stored = NULL;
	if (!f || !path || !*path || !role)
		return vmb_error_set(VMB_EINVAL, "vm folder: no path");
	if (strcmp(role, VMB_VMFOLDER_ROLE_CONFIG) &&
	    strcmp(role, VMB_VMFOLDER_ROLE_DISK) &&
	    strcmp(role, VMB_VMFOLDER_ROLE_SNAPSHOT) &&
	    strcmp(role, VMB_VMFOLDER_ROLE_FILE))
		return vmb_error_set(VMB_EINVAL, "vm folder: unknown role "
				     "'%.20s'", role);
	if (strlen(path) >= PATH_MAX - 1 || has_dotdot(path))
		return vmb_error_set(VMB_EINVAL, "%s: a path with '..' is "
				     "refused", path);
	abs = path[0] == '/' ? vmb_strdup(path)
			     : vmb_asprintf("%s/%s", f->dir, path);
	if (!abs)
		return VMB_ENOMEM;
	if (lstat(abs, &st) != 0) {
		int e = errno;
		rc = vmb_error_set(e == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				   "%s: %s", abs, strerror(e));
		goto fail;
	}
	if (S_ISLNK(st.st_mode)) {
		rc = vmb_error_set(VMB_EINVAL, "%s is a symbolic link: refused "
				   "(a VM folder's files are stored as files)",
				   abs);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = vmb_error_set(VMB_EINVAL, "%s is not a regular file", abs);
		goto fail;
	}
	for (size_t i = 0; i < f->nfiles; i++) {
		if (f->files[i].dev == st.st_dev &&
		    f->files[i].ino == st.st_ino) {
			if (stored)
				*stored = f->files[i].rel;
			free(abs);
			return 0;
		}
	}
	if (f->nfiles >= VMB_VMFOLDER_MAX_FILES) {
		rc = vmb_error_set(VMB_EINVAL, "vm folder: more than %d files",
				   VMB_VMFOLDER_MAX_FILES);
		goto fail;
	}
	/* inside the folder (after resolving the file's own folder): the
	 * relative name; outside: the base name, made unique */
	dup = vmb_strdup(abs);
	if (!dup) {
		rc = VMB_ENOMEM;
		goto fail;
	}
	{
		char *d = dirname(dup);
		size_t dl = strlen(f->dir);
		const char *b = strrchr(abs, '/') + 1;
		if (realpath(d, real) && !strncmp(real, f->dir, dl) &&
		    (real[dl] == 0 || real[dl] == '/'))
			rel = real[dl] ? vmb_asprintf("%s/%s", real + dl + 1, b)
				       : vmb_strdup(b);
		else
			rel = vmb_strdup(b);
		for (int k = 2; rel && find_rel(f, rel) && k < 100000; k++) {
			free(rel);
			rel = vmb_asprintf("ext%d-%s", k, b);
		}
	}
	if (!rel) {
		rc = VMB_ENOMEM;
		goto fail;
	}
	if (!rel_ok(rel)) {
		rc = vmb_error_set(VMB_EINVAL, "%s: a file name vmb cannot "
				   "restore safely", abs);
		goto fail;
	}
	nf = vmb_realloc(f->files, (f->nfiles + 1) * sizeof *f->files);
	if (!nf) {
		rc = VMB_ENOMEM;
		goto fail;
	}
	f->files = nf;
	nf = &f->files[f->nfiles];
	memset(nf, 0, sizeof *nf);
	nf->orig = vmb_strdup(path);
	nf->role = vmb_strdup(role);
	nf->entry = make_entry(f, rel);
	nf->abs = abs;
	nf->rel = rel;
	nf->dev = st.st_dev;
	nf->ino = st.st_ino;
	nf->size = (uint64_t)st.st_size;
	f->nfiles++;
	free(dup);
	if (!nf->orig || !nf->role || !nf->entry)
		return VMB_ENOMEM;
	if (stored)
		*stored = nf->rel;
	return 0;
fail:
	free(abs);
	free(dup);
	free(rel);
	return rc;
}

static struct vf_file *find_added(vmb_vmfolder *f, const char *path)
{
	struct stat st;
	char *abs;
	for (size_t i = 0; i < f->nfiles; i++)
		if (!strcmp(f->files[i].orig, path) ||
		    !strcmp(f->files[i].rel, path))
			return &f->files[i];
	abs = path[0] == '/' ? vmb_strdup(path)
			     : vmb_asprintf("%s/%s", f->dir, path);
	if (abs && lstat(abs, &st) == 0) {
		for (size_t i = 0; i < f->nfiles; i++)
			if (f->files[i].dev == st.st_dev &&
			    f->files[i].ino == st.st_ino) {
				free(abs);
				return &f->files[i];
			}
	}
	free(abs);
	return NULL;
}

VMB_EXTERN(int) vmb_vmfolder_add_drive(vmb_vmfolder *f, const char *name,
				       const char *format,
				       const char *const *layers,
				       size_t nlayers)
{
	struct vf_drive *nd, d;
	if (!f || !name || !*name || !format || !layers || !nlayers)
		return vmb_error_set(VMB_EINVAL, "vm folder: a drive needs a "
				     "name, a format and layers");
	if (nlayers > VMB_VMFOLDER_MAX_LAYERS)
		return vmb_error_set(VMB_EINVAL, "drive %s: more than %d "
				     "layers", name, VMB_VMFOLDER_MAX_LAYERS);
	if (f->ndrives >= VMB_VMFOLDER_MAX_DRIVES)
		return vmb_error_set(VMB_EINVAL, "vm folder: more than %d "
				     "drives", VMB_VMFOLDER_MAX_DRIVES);
	for (size_t i = 0; i < f->ndrives; i++)
		if (!strcmp(f->drives[i].name, name))
			return vmb_error_set(VMB_EINVAL, "drive %s is listed "
					     "twice", name);
	memset(&d, 0, sizeof d);
	d.name = vmb_strdup(name);
	d.format = vmb_strdup(format);
	d.layers = vmb_calloc(nlayers, sizeof *d.layers);
	if (!d.name || !d.format || !d.layers) {
		drive_free(&d);
		return VMB_ENOMEM;
	}
	for (size_t k = 0; k < nlayers; k++) {
		struct vf_file *fl = layers[k] ? find_added(f, layers[k]) : NULL;
		if (!fl) {
			int rc = vmb_error_set(VMB_EINVAL, "drive %s: layer %s "
					       "was not added as a file", name,
					       layers[k] ? layers[k] : "(null)");
			drive_free(&d);
			return rc;
		}
		for (size_t j = 0; j < f->ndrives; j++)
			for (size_t m = 0; m < f->drives[j].nlayers; m++)
				if (!strcmp(f->drives[j].layers[m], fl->rel) &&
				    (k == 0 || m == 0)) {
					int rc = vmb_error_set(VMB_EINVAL,
						"%s is the disk of drives %s "
						"and %s: a disk listed twice",
						fl->abs, f->drives[j].name,
						name);
					drive_free(&d);
					return rc;
				}
		d.layers[k] = vmb_strdup(fl->rel);
		d.nlayers = k + 1;
		if (!d.layers[k]) {
			drive_free(&d);
			return VMB_ENOMEM;
		}
	}
	nd = vmb_realloc(f->drives, (f->ndrives + 1) * sizeof *f->drives);
	if (!nd) {
		drive_free(&d);
		return VMB_ENOMEM;
	}
	f->drives = nd;
	f->drives[f->ndrives++] = d;
	return 0;
}

static int meta_set(char **keys, char **vals, size_t *n, const char *key,
		    const char *value)
{
	for (size_t i = 0; i < *n; i++) {
		if (strcmp(keys[i], key))
			continue;
		free(vals[i]);
		if (!value) {
			free(keys[i]);
			keys[i] = keys[*n - 1];
			vals[i] = vals[*n - 1];
			(*n)--;
			return 0;
		}
		vals[i] = vmb_strdup(value);
		return vals[i] ? 0 : VMB_ENOMEM;
	}
	if (!value)
		return 0;
	if (*n >= META_MAX)
		return vmb_error_set(VMB_EINVAL, "vm folder: more than %d "
				     "strings", META_MAX);
	keys[*n] = vmb_strdup(key);
	vals[*n] = vmb_strdup(value);
	if (!keys[*n] || !vals[*n]) {
		free(keys[*n]);
		free(vals[*n]);
		return VMB_ENOMEM;
	}
	(*n)++;
	return 0;
}

static const char *meta_get(char *const *keys, char *const *vals, size_t n,
			    const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(keys[i], key))
			return vals[i];
	return NULL;
}

VMB_EXTERN(int) vmb_vmfolder_set(vmb_vmfolder *f, const char *key,
				 const char *value)
{
	if (!f || !key || !*key || strlen(key) > 64)
		return vmb_error_set(VMB_EINVAL, "vm folder: bad key");
	return meta_set(f->mkey, f->mval, &f->nmeta, key, value);
}

/* ---- the job ---- */

struct vf_job {
	vmb_hv_backup_job b;
	vmb_hv_backup_disk *disks;
	vmb_vmfolder *f;
	char *config;
};

static char *folder_json(const vmb_vmfolder *f)
{
	vmb_buf b;
	vmb_buf_init(&b);
	vmb_buf_puts(&b, "{\"vm_folder\":1,\"plugin\":");
	vmb_buf_json_str(&b, f->plugin);
	vmb_buf_puts(&b, ",\"dir\":");
	vmb_buf_json_str(&b, f->dir);
	vmb_buf_puts(&b, ",\"meta\":{");
	for (size_t i = 0; i < f->nmeta; i++) {
		vmb_buf_puts(&b, i ? "," : "");
		vmb_buf_json_str(&b, f->mkey[i]);
		vmb_buf_puts(&b, ":");
		vmb_buf_json_str(&b, f->mval[i]);
	}
	vmb_buf_puts(&b, "},\"files\":[");
	for (size_t i = 0; i < f->nfiles; i++) {
		const struct vf_file *x = &f->files[i];
		vmb_buf_puts(&b, i ? ",{\"path\":" : "{\"path\":");
		vmb_buf_json_str(&b, x->rel);
		vmb_buf_puts(&b, ",\"orig\":");
		vmb_buf_json_str(&b, x->orig);
		vmb_buf_puts(&b, ",\"abs\":");
		vmb_buf_json_str(&b, x->abs);
		vmb_buf_puts(&b, ",\"role\":");
		vmb_buf_json_str(&b, x->role);
		vmb_buf_puts(&b, ",\"disk\":");
		vmb_buf_json_str(&b, x->entry);
		vmb_buf_printf(&b, ",\"size\":%llu}",
			       (unsigned long long)x->size);
	}
	vmb_buf_puts(&b, "],\"drives\":[");
	for (size_t i = 0; i < f->ndrives; i++) {
		const struct vf_drive *d = &f->drives[i];
		vmb_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
		vmb_buf_json_str(&b, d->name);
		vmb_buf_puts(&b, ",\"format\":");
		vmb_buf_json_str(&b, d->format);
		vmb_buf_puts(&b, ",\"layers\":[");
		for (size_t k = 0; k < d->nlayers; k++) {
			vmb_buf_puts(&b, k ? "," : "");
			vmb_buf_json_str(&b, d->layers[k]);
		}
		vmb_buf_puts(&b, "]}");
	}
	vmb_buf_puts(&b, "]}");
	return vmb_buf_detach(&b);
}

VMB_EXTERN(void) vmb_vmfolder_job_free(vmb_hv_backup_job *b)
{
	struct vf_job *j = (struct vf_job *)b;
	if (!j)
		return;
	for (size_t i = 0; j->disks && i < j->b.ndisks; i++)
		vmb_disk_close(j->disks[i].disk);
	free(j->disks);
	free(j->config);
	vmb_vmfolder_free(j->f);
	free(j);
}

VMB_EXTERN(int) vmb_vmfolder_job(vmb_vmfolder *f, vmb_hv_backup_job **out)
{
	struct vf_job *j;
	int rc = 0;
	*out = NULL;
	if (!f)
		return vmb_error_set(VMB_EINVAL, "vm folder: none");
	if (!f->nfiles) {
		vmb_vmfolder_free(f);
		return vmb_error_set(VMB_EINVAL, "vm folder: no files");
	}
	j = vmb_calloc(1, sizeof *j);
	if (!j) {
		vmb_vmfolder_free(f);
		return VMB_ENOMEM;
	}
	j->f = f;
	j->disks = vmb_calloc(f->nfiles, sizeof *j->disks);
	j->config = folder_json(f);
	if (!j->disks || !j->config) {
		vmb_vmfolder_job_free(&j->b);
		return VMB_ENOMEM;
	}
	for (size_t i = 0; i < f->nfiles; i++) {
		vmb_hv_backup_disk *d = &j->disks[i];
		d->name = f->files[i].entry;
		d->path = f->files[i].abs;
		rc = vmb_disk_open(f->files[i].abs, VMB_DISK_OPEN_RAW,
				   &d->disk);
		if (rc) {
			j->b.ndisks = i;
			vmb_vmfolder_job_free(&j->b);
			return rc;
		}
	}
	j->b.struct_size = sizeof j->b;
	j->b.vm = meta_get(f->mkey, f->mval, f->nmeta, "name");
	if (!j->b.vm)
		j->b.vm = f->files[0].entry;
	j->b.ndisks = f->nfiles;
	j->b.disks = j->disks;
	j->b.config_format = VMB_VMFOLDER_CONFIG_FORMAT;
	j->b.config = j->config;
	j->b.consistency = meta_get(f->mkey, f->mval, f->nmeta, "consistency");
	j->b.consistency_note = meta_get(f->mkey, f->mval, f->nmeta,
					 "consistency_note");
	*out = &j->b;
	return 0;
}

/* ---- restore ---- */

struct vmb_vmfolder_view {
	vmb_vmfolder f;  /* files (rel, orig, role, entry, size, now),
			    drives, meta; f.dir = the original folder */
	char *dir;       /* restore folder (absolute) */
	unsigned flags;
	char **made;     /* files and folders written, in order */
	size_t nmade;
	char *mapbuf;
};

static int remember(vmb_vmfolder_view *v, const char *path)
{
	char **m = vmb_realloc(v->made, (v->nmade + 1) * sizeof *m);
	if (!m)
		return VMB_ENOMEM;
	v->made = m;
	m[v->nmade] = vmb_strdup(path);
	if (!m[v->nmade])
		return VMB_ENOMEM;
	v->nmade++;
	return 0;
}

static void forget(vmb_vmfolder_view *v, const char *path)
{
	for (size_t i = v->nmade; i-- > 0;)
		if (v->made[i] && !strcmp(v->made[i], path)) {
			free(v->made[i]);
			v->made[i] = NULL;
			return;
		}
}

static void view_free(vmb_vmfolder_view *v, int undo)
{
	for (size_t i = v->nmade; i-- > 0;) {
		if (undo && v->made[i] && remove(v->made[i]) != 0 &&
		    errno != ENOENT)
			vmb_log(VMB_LOG_WARN, "could not remove %s: %s",
				v->made[i], strerror(errno));
		free(v->made[i]);
	}
	free(v->made);
	folder_clear(&v->f);
	free(v->dir);
	free(v->mapbuf);
}

VMB_EXTERN(int) vmb_vmfolder_is(const vmb_snapshot *s, char plugin[32])
{
	const char *fmt = NULL, *cfg = s ? vmb_snapshot_config(s, &fmt) : NULL;
	vmb_json *j = NULL;
	const char *p;
	int is = 0;
	if (!cfg || !fmt || strcmp(fmt, VMB_VMFOLDER_CONFIG_FORMAT))
		return 0;
	if (vmb_json_parse(cfg, strlen(cfg), "vm folder", &j) == 0 &&
	    (p = vmb_json_str(j, "plugin")) && *p && strlen(p) < 32) {
		is = 1;
		if (plugin)
			snprintf(plugin, 32, "%s", p);
	}
	vmb_json_free(j);
	vmb_error_clear();
	return is;
}

static char *jdup(const vmb_json *o, const char *key)
{
	const char *s = vmb_json_str(o, key);
	return s ? vmb_strdup(s) : NULL;
}

static int parse_folder(const vmb_snapshot *s, vmb_vmfolder *f)
{
	const char *fmt = NULL, *cfg = vmb_snapshot_config(s, &fmt);
	const vmb_json *files, *drives, *meta;
	vmb_json *j = NULL;
	int rc;
	if (!cfg || !fmt || strcmp(fmt, VMB_VMFOLDER_CONFIG_FORMAT))
		return vmb_error_set(VMB_EINVAL, "snapshot %s holds no VM "
				     "folder", vmb_snapshot_id(s));
	rc = vmb_json_parse(cfg, strlen(cfg), "vm folder document", &j);
	if (rc)
		return rc;
	rc = VMB_ECORRUPT;
	f->plugin = jdup(j, "plugin");
	f->dir = jdup(j, "dir");
	files = vmb_json_arr(j, "files");
	drives = vmb_json_arr(j, "drives");
	meta = vmb_json_get(j, "meta");
	if (!f->plugin || !f->dir || !files || !drives || !files->n ||
	    files->n > VMB_VMFOLDER_MAX_FILES ||
	    drives->n > VMB_VMFOLDER_MAX_DRIVES)
		goto bad;
	f->files = vmb_calloc(files->n, sizeof *f->files);
	f->drives = vmb_calloc(drives->n ? drives->n : 1, sizeof *f->drives);
	if (!f->files || !f->drives) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < files->n; i++) {
		const vmb_json *o = files->items[i];
		struct vf_file *x = &f->files[f->nfiles];
		int found = 0;
		x->rel = jdup(o, "path");
		x->orig = jdup(o, "orig");
		x->abs = jdup(o, "abs");
		x->role = jdup(o, "role");
		x->entry = jdup(o, "disk");
		f->nfiles++;
		if (!x->rel || !x->orig || !x->abs || !x->role || !x->entry ||
		    !rel_ok(x->rel) || vmb_json_u64(o, "size", &x->size))
			goto bad;
		for (size_t k = 0; k + 1 < f->nfiles; k++)
			if (!strcmp(f->files[k].rel, x->rel))
				goto bad;
		for (size_t k = 0; k < vmb_snapshot_disk_count(s); k++)
			if (!strcmp(vmb_snapshot_disk_name(s, k), x->entry))
				found = 1;
		if (!found || x->size > UINT64_MAX / 2)
			goto bad;
	}
	for (size_t i = 0; i < drives->n; i++) {
		const vmb_json *o = drives->items[i], *ls;
		struct vf_drive *d = &f->drives[f->ndrives++];
		d->name = jdup(o, "name");
		d->format = jdup(o, "format");
		ls = vmb_json_arr(o, "layers");
		if (!d->name || !d->format || !ls || !ls->n ||
		    ls->n > VMB_VMFOLDER_MAX_LAYERS)
			goto bad;
		d->layers = vmb_calloc(ls->n, sizeof *d->layers);
		if (!d->layers) {
			rc = VMB_ENOMEM;
			goto out;
		}
		for (size_t k = 0; k < ls->n; k++) {
			const vmb_json *e = ls->items[k];
			if (e->type != VMB_JSON_STR || !find_rel(f, e->str))
				goto bad;
			d->layers[k] = vmb_strdup(e->str);
			d->nlayers = k + 1;
			if (!d->layers[k]) {
				rc = VMB_ENOMEM;
				goto out;
			}
		}
	}
	for (size_t i = 0; meta && meta->type == VMB_JSON_OBJ && i < meta->n;
	     i++) {
		const vmb_json *e = meta->items[i];
		if (e->type != VMB_JSON_STR || !e->key)
			goto bad;
		rc = meta_set(f->mkey, f->mval, &f->nmeta, e->key, e->str);
		if (rc)
			goto out;
	}
	rc = 0;
	goto out;
bad:
	rc = vmb_error_set(VMB_ECORRUPT, "snapshot %s: its VM folder "
			   "document is malformed", vmb_snapshot_id(s));
out:
	vmb_json_free(j);
	return rc;
}

static int make_parents(vmb_vmfolder_view *v, const char *rel)
{
	char *p = vmb_asprintf("%s/%s", v->dir, rel), *s;
	int rc = 0;
	if (!p)
		return VMB_ENOMEM;
	s = p + strlen(v->dir) + 1;
	while ((s = strchr(s, '/'))) {
		*s = 0;
		if (mkdir(p, 0755) == 0)
			rc = remember(v, p);
		else if (errno != EEXIST)
			rc = vmb_error_set(VMB_EIO, "cannot create %s: %s", p,
					   strerror(errno));
		*s++ = '/';
		if (rc)
			break;
	}
	free(p);
	return rc;
}

struct copy_ctx {
	const vmb_vmfolder_restore_opts *o;
	vmb_restore_result *res;
	uint64_t done, total;
};

static int progress(struct copy_ctx *c, const char *item)
{
	vmb_progress p;
	if (!c->o->progress)
		return 0;
	memset(&p, 0, sizeof p);
	p.phase = "restore";
	p.item = item;
	p.bytes_done = c->done;
	p.bytes_total = c->total;
	p.bytes_written = c->res->bytes_written;
	if (c->o->progress(&p, c->o->progress_payload))
		return vmb_error_set(VMB_ECANCELED, "restore canceled");
	return 0;
}

/* Write one stored file to @p path: sparse (zero blocks are skipped),
 * exactly its recorded size. */
static int write_entry(vmb_repo *r, const vmb_snapshot *s,
		       const struct vf_file *x, const char *path,
		       struct copy_ctx *c)
{
	vmb_disk *d = NULL;
	uint8_t *buf = NULL;
	int fd = -1, rc;
	uint64_t size;

	rc = vmb_snapshot_disk_open(r, s, x->entry, &d);
	if (rc)
		return rc;
	size = vmb_disk_size(d);
	if (size != x->size) {
		rc = vmb_error_set(VMB_ECORRUPT, "%s: stored as %llu bytes, "
				   "recorded as %llu", x->rel,
				   (unsigned long long)size,
				   (unsigned long long)x->size);
		goto out;
	}
	buf = vmb_malloc(COPY_BLOCK);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (!buf || fd < 0) {
		rc = buf ? vmb_error_set(errno == EEXIST ? VMB_EEXISTS : VMB_EIO,
					 "cannot create %s: %s", path,
					 strerror(errno)) : VMB_ENOMEM;
		goto out;
	}
	if (ftruncate(fd, (off_t)size) != 0) {
		rc = vmb_error_set(VMB_EIO, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (uint64_t off = 0; off < size;) {
		size_t n = (size_t)VMB_MIN((uint64_t)COPY_BLOCK, size - off);
		rc = vmb_disk_read(d, buf, off, n);
		if (rc)
			goto out;
		if (!vmb_is_zero(buf, n)) {
			rc = vmb_pwrite_full(fd, buf, n, off);
			if (rc) {
				rc = vmb_error_set(VMB_EIO, "cannot write %s: %s",
						   path, strerror(-rc));
				goto out;
			}
			c->res->bytes_written += n;
		}
		off += n;
		c->done += n;
		if ((rc = progress(c, x->rel)) != 0)
			goto out;
	}
	if (!c->o->no_sync && fsync(fd) != 0) {
		rc = vmb_error_set(VMB_EIO, "%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0 && close(fd) != 0 && !rc)
		rc = vmb_error_set(VMB_EIO, "%s: %s", path, strerror(errno));
	free(buf);
	vmb_disk_close(d);
	return rc;
}

/* --flatten: compose a drive's layers (each opened alone, in the order
 * the backup recorded) into one image. */
struct compose {
	vmb_disk **l;
	size_t n;
	uint8_t *buf;
	uint64_t base;
	int rc;
};

static int fill(struct compose *c, size_t k, uint64_t off, uint64_t len);

struct fill_walk {
	struct compose *c;
	size_t k;
	int rc;
};

static int fill_walk_cb(const vmb_extent *e, void *payload)
{
	struct fill_walk *w = payload;
	struct compose *c = w->c;
	uint8_t *dst = c->buf + (e->offset - c->base);
	if (e->kind == VMB_EXTENT_DATA)
		w->rc = vmb_disk_read(c->l[w->k], dst, e->offset,
				      (size_t)e->length);
	else if (e->kind == VMB_EXTENT_ZERO || w->k + 1 >= c->n)
		memset(dst, 0, (size_t)e->length);
	else
		w->rc = fill(c, w->k + 1, e->offset, e->length);
	return w->rc ? 1 : 0;
}

static int fill(struct compose *c, size_t k, uint64_t off, uint64_t len)
{
	struct fill_walk w = { c, k, 0 };
	uint64_t sz = vmb_disk_size(c->l[k]);
	int rc;
	if (off >= sz) { /* a smaller parent: zeros past its end */
		memset(c->buf + (off - c->base), 0, (size_t)len);
		return 0;
	}
	if (off + len > sz) {
		memset(c->buf + (sz - c->base), 0, (size_t)(off + len - sz));
		len = sz - off;
	}
	rc = vmb_disk_map(c->l[k], off, len, fill_walk_cb, &w);
	return w.rc ? w.rc : rc;
}

static int flatten_drive(vmb_vmfolder_view *v, struct vf_drive *d,
			 const vmb_vmfolder_restore_opts *o,
			 struct copy_ctx *cc)
{
	struct compose c;
	vmb_disk_writer *w = NULL;
	vmb_disk_writer_options wo = VMB_DISK_WRITER_INIT;
	char fmt[16], *tmp = NULL;
	const char *sub = NULL;
	uint64_t size;
	int rc;

	memset(&c, 0, sizeof c);
	if (o->format) {
		rc = vmb_disk_format_parse(o->format, fmt, &sub);
		if (rc)
			return rc;
	} else {
		snprintf(fmt, sizeof fmt, "%s", d->format);
	}
	if (!vmb_disk_format_extension(fmt))
		return vmb_error_set(VMB_ENOTSUP, "drive %s: cannot write "
				     "format '%s'", d->name, fmt);
	c.l = vmb_calloc(d->nlayers, sizeof *c.l);
	c.buf = vmb_malloc(COPY_BLOCK);
	if (!c.l || !c.buf) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < d->nlayers; k++) {
		char *p = vmb_asprintf("%s/%s", v->dir, d->layers[k]);
		if (!p) {
			rc = VMB_ENOMEM;
			goto out;
		}
		rc = vmb_disk_open(p, VMB_DISK_OPEN_NO_BACKING, &c.l[k]);
		free(p);
		if (rc)
			goto out;
		c.n = k + 1;
	}
	/* the image takes the base layer's name (its extension changed for
	 * another format) */
	{
		const char *base = d->layers[d->nlayers - 1];
		const char *dot = strrchr(base, '.'), *sl = strrchr(base, '/');
		if (!strcmp(fmt, d->format) || !dot || (sl && dot < sl))
			d->flat = vmb_asprintf("%s/%s", v->dir, base);
		else
			d->flat = vmb_asprintf("%s/%.*s.%s", v->dir,
					       (int)(dot - base), base,
					       vmb_disk_format_extension(fmt));
		d->flat_format = vmb_strdup(fmt);
		if (d->flat)
			tmp = vmb_asprintf("%s.vmbtmp", d->flat);
		if (!d->flat || !d->flat_format || !tmp) {
			rc = VMB_ENOMEM;
			goto out;
		}
	}
	size = vmb_disk_size(c.l[0]);
	wo.subformat = sub;
	if (o->no_sync)
		wo.flags |= VMB_DISK_WRITER_NO_SYNC;
	rc = vmb_disk_writer_create(tmp, fmt, size, &wo, &w);
	if (rc)
		goto out;
	if ((rc = remember(v, tmp)) != 0)
		goto out;
	for (uint64_t off = 0; off < size;) {
		size_t n = (size_t)VMB_MIN((uint64_t)COPY_BLOCK, size - off);
		c.base = off;
		rc = fill(&c, 0, off, n);
		if (!rc)
			rc = vmb_disk_writer_write(w, off, c.buf, n);
		if (rc)
			goto out;
		off += n;
		cc->done += n;
		if ((rc = progress(cc, d->name)) != 0)
			goto out;
	}
	rc = vmb_disk_writer_finish(w);
out:
	vmb_disk_writer_free(w);
	for (size_t k = 0; k < c.n; k++)
		vmb_disk_close(c.l[k]);
	free(c.l);
	free(c.buf);
	free(tmp);
	return rc;
}

static int drop_file(vmb_vmfolder_view *v, struct vf_file *x)
{
	if (!x->now)
		return 0;
	if (unlink(x->now) != 0 && errno != ENOENT)
		return vmb_error_set(VMB_EIO, "cannot remove %s: %s", x->now,
				     strerror(errno));
	forget(v, x->now);
	free(x->now);
	x->now = NULL;
	return 0;
}

static int dir_is_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int empty = 1;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = 0;
			break;
		}
	closedir(d);
	return empty;
}

VMB_EXTERN(int) vmb_vmfolder_restore(vmb_repo *r, const char *snap,
				     const char *dir,
				     const vmb_vmfolder_restore_opts *o,
				     vmb_vmfolder_fixup_fn fixup,
				     void *payload, vmb_restore_result *res)
{
	static const vmb_vmfolder_restore_opts defo =
		VMB_VMFOLDER_RESTORE_OPTS_INIT;
	vmb_vmfolder_view v;
	vmb_snapshot *s = NULL;
	vmb_restore_result lres;
	struct copy_ctx cc;
	char real[PATH_MAX];
	double t0 = vmb_now();
	int rc;

	if (!o)
		o = &defo;
	if (!res)
		res = &lres;
	memset(res, 0, sizeof *res);
	memset(&v, 0, sizeof v);
	memset(&cc, 0, sizeof cc);
	cc.o = o;
	cc.res = res;
	if (!r || !snap || !dir || !*dir)
		return vmb_error_set(VMB_EINVAL, "restore: no snapshot or "
				     "folder");
	rc = vmb_repo_snapshot_find(r, snap, &s);
	if (rc)
		return rc;
	rc = parse_folder(s, &v.f);
	if (rc)
		goto out;
	v.flags = o->flags;
	/* the folder: new, or empty */
	if (mkdir(dir, 0755) == 0) {
		if (!realpath(dir, real)) {
			rc = vmb_error_set(VMB_EIO, "%s: %s", dir,
					   strerror(errno));
			rmdir(dir);
			goto out;
		}
		v.dir = vmb_strdup(real);
		if (!v.dir || (rc = remember(&v, real)) != 0) {
			rmdir(dir);
			rc = rc ? rc : VMB_ENOMEM;
			goto out;
		}
	} else if (errno == EEXIST) {
		int e = dir_is_empty(dir);
		if (e != 1 || !realpath(dir, real)) {
			rc = vmb_error_set(e == 0 ? VMB_EEXISTS : VMB_EINVAL,
					   "%s %s: a VM folder is restored "
					   "into a new or empty folder", dir,
					   e == 0 ? "is not empty" :
					   "is not a folder");
			goto out;
		}
		v.dir = vmb_strdup(real);
		if (!v.dir) {
			rc = VMB_ENOMEM;
			goto out;
		}
	} else if (errno == ENOENT) {
		rc = vmb_mkdir_p(dir, 0755);
		if (!rc && !realpath(dir, real))
			rc = vmb_error_set(VMB_EIO, "%s: %s", dir,
					   strerror(errno));
		if (!rc && !(v.dir = vmb_strdup(real)))
			rc = VMB_ENOMEM;
		if (!rc)
			rc = remember(&v, real);
		if (rc)
			goto out;
	} else {
		rc = vmb_error_set(VMB_EIO, "cannot create %s: %s", dir,
				   strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < v.f.nfiles; i++)
		cc.total += v.f.files[i].size;
	/* every file under its name (snapshot-only files not when
	 * flattening); layers too, as --flatten composes from them */
	for (size_t i = 0; i < v.f.nfiles; i++) {
		struct vf_file *x = &v.f.files[i];
		if ((o->flags & VMB_VMFOLDER_FLATTEN) &&
		    !strcmp(x->role, VMB_VMFOLDER_ROLE_SNAPSHOT))
			continue;
		rc = make_parents(&v, x->rel);
		if (rc)
			goto out;
		x->now = vmb_asprintf("%s/%s", v.dir, x->rel);
		if (!x->now) {
			rc = VMB_ENOMEM;
			goto out;
		}
		rc = write_entry(r, s, x, x->now, &cc);
		if (rc == 0 || rc != VMB_EEXISTS) {
			int r2 = remember(&v, x->now);
			rc = rc ? rc : r2;
		}
		if (rc)
			goto out;
	}
	if (o->flags & VMB_VMFOLDER_FLATTEN) {
		for (size_t i = 0; i < v.f.ndrives; i++) {
			rc = flatten_drive(&v, &v.f.drives[i], o, &cc);
			if (rc) {
				vmb_error_prefix("drive %s: ",
						 v.f.drives[i].name);
				goto out;
			}
		}
		/* the layers go; each drive's image takes its place */
		for (size_t i = 0; i < v.f.nfiles; i++)
			if (!strcmp(v.f.files[i].role, VMB_VMFOLDER_ROLE_DISK) &&
			    (rc = drop_file(&v, &v.f.files[i])) != 0)
				goto out;
		for (size_t i = 0; i < v.f.ndrives; i++) {
			struct vf_drive *d = &v.f.drives[i];
			char *tmp = vmb_asprintf("%s.vmbtmp", d->flat);
			if (!tmp) {
				rc = VMB_ENOMEM;
				goto out;
			}
			if (rename(tmp, d->flat) != 0) {
				rc = vmb_error_set(VMB_EIO, "cannot rename %s: "
						   "%s", tmp, strerror(errno));
				free(tmp);
				goto out;
			}
			forget(&v, tmp);
			free(tmp);
			if ((rc = remember(&v, d->flat)) != 0)
				goto out;
		}
	}
	if (fixup) {
		rc = fixup(&v, payload);
		if (rc)
			goto out;
	}
	res->disks = v.f.ndrives;
	res->bytes_total = cc.total;
	res->seconds = vmb_now() - t0;
out:
	view_free(&v, rc != 0);
	vmb_snapshot_free(s);
	return rc;
}

/* ---- the view ---- */

VMB_EXTERN(const char *) vmb_vmfolder_view_dir(const vmb_vmfolder_view *v)
{
	return v ? v->dir : NULL;
}

VMB_EXTERN(const char *) vmb_vmfolder_view_orig_dir(const vmb_vmfolder_view *v)
{
	return v ? v->f.dir : NULL;
}

VMB_EXTERN(unsigned) vmb_vmfolder_view_flags(const vmb_vmfolder_view *v)
{
	return v ? v->flags : 0;
}

VMB_EXTERN(const char *) vmb_vmfolder_view_meta(const vmb_vmfolder_view *v,
						const char *key)
{
	return v && key ? meta_get(v->f.mkey, v->f.mval, v->f.nmeta, key)
			: NULL;
}

VMB_EXTERN(size_t) vmb_vmfolder_view_files(const vmb_vmfolder_view *v)
{
	return v ? v->f.nfiles : 0;
}

#define FILE_GET(fn, field)                                              \
	VMB_EXTERN(const char *) fn(const vmb_vmfolder_view *v, size_t i) \
	{                                                                \
		return v && i < v->f.nfiles ? v->f.files[i].field : NULL; \
	}
FILE_GET(vmb_vmfolder_view_file, rel)
FILE_GET(vmb_vmfolder_view_file_orig, orig)
FILE_GET(vmb_vmfolder_view_file_role, role)
FILE_GET(vmb_vmfolder_view_file_path, now)
#undef FILE_GET

VMB_EXTERN(size_t) vmb_vmfolder_view_drives(const vmb_vmfolder_view *v)
{
	return v ? v->f.ndrives : 0;
}

VMB_EXTERN(const char *) vmb_vmfolder_view_drive(const vmb_vmfolder_view *v,
						 size_t i)
{
	return v && i < v->f.ndrives ? v->f.drives[i].name : NULL;
}

VMB_EXTERN(size_t) vmb_vmfolder_view_drive_layers(const vmb_vmfolder_view *v,
						  size_t i)
{
	return v && i < v->f.ndrives ? v->f.drives[i].nlayers : 0;
}

VMB_EXTERN(const char *) vmb_vmfolder_view_drive_layer(const vmb_vmfolder_view *v,
						       size_t i, size_t k)
{
	if (!v || i >= v->f.ndrives || k >= v->f.drives[i].nlayers)
		return NULL;
	return v->f.drives[i].layers[k];
}

VMB_EXTERN(const char *) vmb_vmfolder_view_drive_flat(const vmb_vmfolder_view *v,
						      size_t i,
						      const char **format)
{
	if (format)
		*format = NULL;
	if (!v || i >= v->f.ndrives || !v->f.drives[i].flat)
		return NULL;
	if (format)
		*format = v->f.drives[i].flat_format;
	return v->f.drives[i].flat;
}

/* Normalise "a/./b//c" (no ".." handling: such paths never match). */
static void squash(char *p)
{
	char *w = p;
	for (char *s = p; *s;) {
		if (s[0] == '/' && s[1] == '/') {
			s++;
			continue;
		}
		if (s[0] == '.' && s[1] == '/' && (s == p || s[-1] == '/')) {
			s += 2;
			continue;
		}
		*w++ = *s++;
	}
	*w = 0;
}

VMB_EXTERN(const char *) vmb_vmfolder_view_map(const vmb_vmfolder_view *v,
					       const char *path)
{
	char *want;
	const struct vf_file *hit = NULL;
	if (!v || !path || !*path)
		return NULL;
	want = path[0] == '/' ? vmb_strdup(path)
			      : vmb_asprintf("%s/%s", v->f.dir, path);
	if (!want)
		return NULL;
	squash(want);
	for (size_t i = 0; i < v->f.nfiles && !hit; i++) {
		char *a = vmb_strdup(v->f.files[i].abs);
		if (a) {
			squash(a);
			if (!strcmp(a, want) || !strcmp(v->f.files[i].orig, path))
				hit = &v->f.files[i];
		}
		free(a);
	}
	free(want);
	if (!hit)
		return NULL;
	if (hit->now)
		return hit->now;
	/* a dropped layer: its drive's image */
	for (size_t i = 0; i < v->f.ndrives; i++)
		for (size_t k = 0; k < v->f.drives[i].nlayers; k++)
			if (!strcmp(v->f.drives[i].layers[k], hit->rel))
				return v->f.drives[i].flat;
	return NULL;
}

VMB_EXTERN(const char *) vmb_vmfolder_view_map_rel(const vmb_vmfolder_view *v,
						   const char *path)
{
	vmb_vmfolder_view *m = (vmb_vmfolder_view *)v;
	const char *a = vmb_vmfolder_view_map(v, path);
	size_t dl;
	if (!a)
		return NULL;
	dl = strlen(v->dir);
	if (strncmp(a, v->dir, dl) || a[dl] != '/')
		return NULL;
	free(m->mapbuf);
	m->mapbuf = vmb_strdup(a + dl + 1);
	return m->mapbuf;
}

VMB_EXTERN(int) vmb_vmfolder_view_write(vmb_vmfolder_view *v,
					const char *rel, const void *data,
					size_t len)
{
	char *p = NULL, *tmp = NULL;
	int fd = -1, rc = 0, existed;
	if (!v || !rel || !rel_ok(rel))
		return vmb_error_set(VMB_EINVAL, "vm folder: bad file name "
				     "'%s'", rel ? rel : "(null)");
	if ((rc = make_parents(v, rel)) != 0)
		return rc;
	p = vmb_asprintf("%s/%s", v->dir, rel);
	tmp = p ? vmb_asprintf("%s.vmbtmp", p) : NULL;
	if (!p || !tmp) {
		rc = VMB_ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = vmb_error_set(VMB_EIO, "cannot create %s: %s", tmp,
				   strerror(errno));
		goto out;
	}
	if ((rc = remember(v, tmp)) != 0)
		goto out;
	rc = vmb_pwrite_full(fd, data, len, 0);
	if (rc || fsync(fd) != 0) {
		rc = vmb_error_set(VMB_EIO, "cannot write %s: %s", tmp,
				   strerror(rc ? -rc : errno));
		goto out;
	}
	close(fd);
	fd = -1;
	existed = access(p, F_OK) == 0;
	if (rename(tmp, p) != 0) {
		rc = vmb_error_set(VMB_EIO, "cannot rename %s: %s", tmp,
				   strerror(errno));
		goto out;
	}
	forget(v, tmp);
	if (!existed)
		rc = remember(v, p);
	for (size_t i = 0; i < v->f.nfiles; i++)
		if (!strcmp(v->f.files[i].rel, rel) && !v->f.files[i].now)
			v->f.files[i].now = vmb_strdup(p);
out:
	if (fd >= 0)
		close(fd);
	free(p);
	free(tmp);
	return rc;
}

VMB_EXTERN(int) vmb_vmfolder_view_drop(vmb_vmfolder_view *v, size_t i)
{
	if (!v || i >= v->f.nfiles)
		return vmb_error_set(VMB_EINVAL, "vm folder: no file %zu", i);
	return drop_file(v, &v->f.files[i]);
}
