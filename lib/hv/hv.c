/*
 * The hypervisor plugin layer: finding, loading and checking plugins
 * (registered or dlopen'ed), and the operations every caller goes through:
 * describe, backup (begin, the repository pipeline, end), VM snapshots,
 * define.  The ABI is in include/vmbackup/sys/hv.h; docs/plugins.md says
 * how to write a plugin.
 */
#include <dlfcn.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vmbackup/sys/hv.h"
#include "vmbackup/disk.h"
#include "common/util.h"
#include "disk/qcow2.h"

#ifndef VMB_PLUGIN_DIR_DEFAULT
#define VMB_PLUGIN_DIR_DEFAULT "/usr/local/lib/vmbackup/plugins"
#endif

#define MAX_PLUGINS 32

/* One loaded (or registered) plugin; never unloaded before exit. */
struct plugin {
	const vmb_hv_plugin *p;
	vmb_hv_plugin copy; /* p's fields, zero past its struct_size */
	char *path;         /* module file, or NULL if registered */
	void *dl;
	int loaded;         /* load() was called */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct plugin plugins[MAX_PLUGINS];
static size_t nplugins;
static char *default_dir;

struct vmb_hv {
	struct plugin *pl;
	void *handle;
	vmb_hv_vm_info *info; /* last describe(), for vm_info_free */
};

VMB_EXTERN(const char *) vmb_hv_state_name(int state)
{
	switch (state) {
	case VMB_HV_STATE_OFF: return "off";
	case VMB_HV_STATE_RUNNING: return "running";
	case VMB_HV_STATE_PAUSED: return "paused";
	case VMB_HV_STATE_SAVED: return "saved";
	default: return "unknown";
	}
}

VMB_EXTERN(const char *) vmb_hv_plugin_dir(void)
{
	const char *e = getenv("VMB_PLUGIN_DIR");
	if (e && *e)
		return e;
	return default_dir ? default_dir : VMB_PLUGIN_DIR_DEFAULT;
}

VMB_EXTERN(void) vmb_hv_set_plugin_dir(const char *dir)
{
	free(default_dir);
	default_dir = dir ? strdup(dir) : NULL;
}

static int valid_name(const char *n)
{
	size_t len = n ? strlen(n) : 0;
	if (!len || len > 31 || n[0] < 'a' || n[0] > 'z')
		return 0;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') ||
		      *n == '_'))
			return 0;
	return 1;
}

/*
 * Check a plugin's struct before anything of it is called: size, API
 * version, name, mandatory callbacks, and every announced feature's
 * callbacks.  @p where names it for errors (a path or "built in").
 */
static int check_plugin(const vmb_hv_plugin *p, const char *where,
			vmb_hv_plugin *copy)
{
	const size_t min = offsetof(vmb_hv_plugin, backup_end) +
			   sizeof p->backup_end;
	if (!p)
		return vmb_error_set(VMB_EINVAL, "%s: the plugin's entry point "
				     "returned NULL", where);
	if (p->api_version != VMB_HV_API_VERSION)
		return vmb_error_set(VMB_ENOTSUP, "%s: plugin API version %u, "
				     "this vmbackup speaks version %u", where,
				     p->api_version, VMB_HV_API_VERSION);
	if (p->struct_size < min || p->struct_size > 65536)
		return vmb_error_set(VMB_EINVAL, "%s: plugin struct of %u bytes "
				     "is too %s", where, p->struct_size,
				     p->struct_size < min ? "small" : "large");
	memset(copy, 0, sizeof *copy);
	memcpy(copy, p, VMB_MIN(sizeof *copy, (size_t)p->struct_size));
	if (!valid_name(copy->name))
		return vmb_error_set(VMB_EINVAL, "%s: plugin name '%s' is not "
				     "[a-z][a-z0-9_]*", where,
				     copy->name ? copy->name : "(null)");
#define NEED(f)                                                         \
	if (!copy->f)                                                   \
		return vmb_error_set(VMB_EINVAL, "%s plugin (%s): mandatory " \
				     "callback " #f " is missing",      \
				     copy->name, where);
	NEED(open) NEED(close)
	/* a boot runner (VMB_HV_F_BOOT) without any source callback is not
	 * a backup source; anything else needs all three */
	if (!(copy->features & VMB_HV_F_BOOT) || copy->describe ||
	    copy->backup_begin || copy->backup_end) {
		NEED(describe) NEED(backup_begin) NEED(backup_end)
	}
#undef NEED
#define FEAT(flag, f)                                                   \
	if ((copy->features & (flag)) && !copy->f)                      \
		return vmb_error_set(VMB_EINVAL, "%s plugin (%s): offers "   \
				     #flag " without " #f, copy->name,  \
				     where);
	FEAT(VMB_HV_F_LIST, list)
	FEAT(VMB_HV_F_SNAPSHOT, snapshot_create)
	FEAT(VMB_HV_F_SNAPSHOT, snapshot_list)
	FEAT(VMB_HV_F_SNAPSHOT, snapshot_revert)
	FEAT(VMB_HV_F_SNAPSHOT, snapshot_delete)
	FEAT(VMB_HV_F_DEFINE, define)
	FEAT(VMB_HV_F_FOLDER, folder_fixup)
	FEAT(VMB_HV_F_INSTANT, start)
	FEAT(VMB_HV_F_INSTANT, pull_start)
	FEAT(VMB_HV_F_INSTANT, pull_wait)
	FEAT(VMB_HV_F_BOOT, boot)
#undef FEAT
	/* callbacks of features not announced are never called */
	if (!(copy->features & VMB_HV_F_LIST))
		copy->list = NULL;
	if (!(copy->features & VMB_HV_F_SNAPSHOT)) {
		copy->snapshot_create = NULL;
		copy->snapshot_list = NULL;
		copy->snapshot_revert = NULL;
		copy->snapshot_delete = NULL;
	}
	if (!(copy->features & VMB_HV_F_DEFINE))
		copy->define = NULL;
	if (!(copy->features & VMB_HV_F_FOLDER))
		copy->folder_fixup = NULL;
	if (!(copy->features & VMB_HV_F_INSTANT)) {
		copy->start = NULL;
		copy->pull_start = NULL;
		copy->pull_wait = NULL;
	}
	if (!(copy->features & VMB_HV_F_BOOT))
		copy->boot = NULL;
	return 0;
}

static struct plugin *find_loaded(const char *name)
{
	for (size_t i = 0; i < nplugins; i++)
		if (strcmp(plugins[i].copy.name, name) == 0)
			return &plugins[i];
	return NULL;
}

VMB_EXTERN(int) vmb_hv_register(const vmb_hv_plugin *(*init)(void))
{
	vmb_hv_plugin copy;
	const vmb_hv_plugin *p;
	int rc;
	if (!init)
		return vmb_error_set(VMB_EINVAL, "vmb_hv_register: no init "
				     "function");
	p = init();
	rc = check_plugin(p, "built in", &copy);
	if (rc)
		return rc;
	pthread_mutex_lock(&lock);
	if (find_loaded(copy.name)) {
		pthread_mutex_unlock(&lock);
		return 0; /* registered twice: the same thing */
	}
	if (nplugins == MAX_PLUGINS) {
		pthread_mutex_unlock(&lock);
		return vmb_error_set(VMB_ERANGE, "too many plugins");
	}
	plugins[nplugins].p = p;
	plugins[nplugins].copy = copy;
	nplugins++;
	pthread_mutex_unlock(&lock);
	return 0;
}

/* The module file of plugin @p name, if it exists: DIR/NAME.so for every
 * folder of the ':'-separated plugin path. */
static char *module_path(const char *name)
{
	const char *dirs = vmb_hv_plugin_dir();
	while (dirs && *dirs) {
		const char *colon = strchr(dirs, ':');
		size_t n = colon ? (size_t)(colon - dirs) : strlen(dirs);
		if (n) {
			char *p = vmb_asprintf("%.*s/%s.so", (int)n, dirs, name);
			struct stat st;
			if (!p)
				return NULL;
			if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
				return p;
			free(p);
		}
		dirs = colon ? colon + 1 : NULL;
	}
	return NULL;
}

/* Find plugin @p name: registered, already loaded, or load it now.
 * Called with the lock held. */
static int get_plugin(const char *name, struct plugin **out)
{
	struct plugin *pl = find_loaded(name);
	vmb_hv_plugin copy;
	vmb_hv_plugin_init_fn init;
	char *path;
	void *dl;
	int rc;
	if (pl) {
		*out = pl;
		return 0;
	}
	if (!valid_name(name))
		return vmb_error_set(VMB_EINVAL, "'%s' is not a plugin name",
				     name);
	path = module_path(name);
	if (!path)
		return vmb_error_set(VMB_ENOTFOUND, "no %s plugin: no %s.so in "
				     "%s (set VMB_PLUGIN_DIR?)", name, name,
				     vmb_hv_plugin_dir());
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		rc = vmb_error_set(VMB_ENOTSUP, "%s plugin: cannot load %s: %s",
				   name, path, dlerror());
		free(path);
		return rc;
	}
	*(void **)&init = dlsym(dl, VMB_HV_PLUGIN_ENTRY);
	if (!init) {
		rc = vmb_error_set(VMB_EINVAL, "%s plugin: %s has no %s()",
				   name, path, VMB_HV_PLUGIN_ENTRY);
		dlclose(dl);
		free(path);
		return rc;
	}
	rc = check_plugin(init(), path, &copy);
	if (!rc && strcmp(copy.name, name) != 0)
		rc = vmb_error_set(VMB_EINVAL, "%s: the file holds the '%s' "
				   "plugin, not '%s'", path, copy.name, name);
	if (!rc && nplugins == MAX_PLUGINS)
		rc = vmb_error_set(VMB_ERANGE, "too many plugins");
	if (rc) {
		dlclose(dl);
		free(path);
		return rc;
	}
	pl = &plugins[nplugins++];
	pl->p = NULL;
	pl->copy = copy;
	pl->path = path;
	pl->dl = dl;
	*out = pl;
	return 0;
}

/* A VM folder without a prefix: a directory holding exactly one file
 * ending in @ext ("vbox" for a VirtualBox VM).  Bounded scan. */
static int folder_holds_one(const char *dir, const char *ext)
{
	DIR *d;
	struct dirent *e;
	int n = 0, seen = 0;
	size_t el = strlen(ext);
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || !(d = opendir(dir)))
		return 0;
	while ((e = readdir(d)) && seen++ < 10000) {
		size_t l = strlen(e->d_name);
		if (e->d_name[0] != '.' && l > el + 1 &&
		    e->d_name[l - el - 1] == '.' &&
		    !strcmp(e->d_name + l - el, ext))
			n++;
	}
	closedir(d);
	return n == 1;
}

VMB_EXTERN(int) vmb_hv_parse_source(const char *source, char plugin[32],
				    const char **rest)
{
	const char *colon;
	if (!source || !*source)
		return vmb_error_set(VMB_EINVAL, "empty source");
	colon = strchr(source, ':');
	if (colon && colon > source && colon - source < 32 &&
	    source[0] != '/' && source[0] != '.') {
		char name[32];
		struct plugin *pl = NULL;
		char *mp;
		memcpy(name, source, (size_t)(colon - source));
		name[colon - source] = 0;
		if (valid_name(name)) {
			pthread_mutex_lock(&lock);
			pl = find_loaded(name);
			pthread_mutex_unlock(&lock);
			mp = pl ? NULL : module_path(name);
			struct stat st;
			/* PLUGIN:VM, also when the plugin is missing (the
			 * open then says so), unless it names a file */
			if (pl || mp || !strcmp(name, "file") ||
			    stat(source, &st) != 0) {
				free(mp);
				snprintf(plugin, 32, "%s", name);
				*rest = colon + 1;
				return 0;
			}
			vmb_error_clear();
		}
	}
	if (folder_holds_one(source, "vbox")) {
		snprintf(plugin, 32, "vbox");
		*rest = source;
		return 0;
	}
	if (folder_holds_one(source, "vmx")) {
		snprintf(plugin, 32, "vmware");
		*rest = source;
		return 0;
	}
	snprintf(plugin, 32, "file");
	*rest = source;
	return 0;
}

static int plugin_err(vmb_hv *h, int rc);

VMB_EXTERN(int) vmb_hv_open(const char *name, const char *uri, vmb_hv **out)
{
	struct plugin *pl = NULL;
	vmb_hv *h;
	int rc;
	*out = NULL;
	pthread_mutex_lock(&lock);
	rc = get_plugin(name ? name : "", &pl);
	if (!rc && !pl->loaded) {
		if (pl->copy.load && (rc = pl->copy.load()) != 0)
			vmb_error_prefix("%s plugin: ", name);
		else
			pl->loaded = 1;
	}
	pthread_mutex_unlock(&lock);
	if (rc)
		return rc;
	h = vmb_calloc(1, sizeof *h);
	if (!h)
		return VMB_ENOMEM;
	h->pl = pl;
	rc = pl->copy.open(uri, &h->handle);
	if (rc) {
		rc = plugin_err(h, rc);
		free(h);
		return rc;
	}
	*out = h;
	return 0;
}

static void free_info(vmb_hv *h)
{
	if (h->info && h->pl->copy.vm_info_free)
		h->pl->copy.vm_info_free(h->handle, h->info);
	h->info = NULL;
}

VMB_EXTERN(void) vmb_hv_close(vmb_hv *h)
{
	if (!h)
		return;
	free_info(h);
	h->pl->copy.close(h->handle);
	free(h);
}

VMB_EXTERN(const char *) vmb_hv_name(const vmb_hv *h) { return h->pl->copy.name; }
VMB_EXTERN(const char *) vmb_hv_version(const vmb_hv *h)
{
	return h->pl->copy.version ? h->pl->copy.version : "";
}
VMB_EXTERN(const char *) vmb_hv_description(const vmb_hv *h)
{
	return h->pl->copy.description ? h->pl->copy.description : "";
}
VMB_EXTERN(unsigned) vmb_hv_features(const vmb_hv *h) { return h->pl->copy.features; }
VMB_EXTERN(const char *) vmb_hv_path(const vmb_hv *h)
{
	return h->pl->path ? h->pl->path : "(built in)";
}

/* An error from a plugin call, prefixed with the plugin's name. */
static int plugin_err(vmb_hv *h, int rc)
{
	if (rc >= 0)
		rc = vmb_error_set(VMB_EGENERIC, "failed without saying why");
	/* the file plugin's errors come from the image readers, which name
	 * the file already */
	if (strcmp(h->pl->copy.name, "file") != 0 &&
	    strncmp(vmb_error_message(), h->pl->copy.name,
		    strlen(h->pl->copy.name)) != 0)
		vmb_error_prefix("%s plugin: ", h->pl->copy.name);
	return rc;
}

static int unsupported(vmb_hv *h, const char *what)
{
	return vmb_error_set(VMB_ENOTSUP, "the %s plugin cannot %s",
			     h->pl->copy.name, what);
}

VMB_EXTERN(int) vmb_hv_list(vmb_hv *h, vmb_hv_vm_fn fn, void *payload)
{
	int rc;
	if (!h->pl->copy.list)
		return unsupported(h, "list VMs");
	rc = h->pl->copy.list(h->handle, fn, payload);
	return rc ? plugin_err(h, rc) : 0;
}

/* describe() with the answer checked: a plugin is not trusted to fill
 * its struct sensibly. */
static int describe(vmb_hv *h, const char *vm, vmb_hv_vm_info **out)
{
	vmb_hv_vm_info *info = NULL;
	int rc;
	free_info(h);
	if (!h->pl->copy.describe)
		return unsupported(h, "back up VMs (it is a boot runner)");
	rc = h->pl->copy.describe(h->handle, vm, &info);
	if (rc)
		return plugin_err(h, rc);
	if (!info || info->struct_size < sizeof *info || !info->name ||
	    !*info->name || (info->ndisks && !info->disks) ||
	    info->ndisks > 256) {
		h->info = info;
		return vmb_error_set(VMB_EINVAL, "%s plugin: describe('%s') "
				     "returned an incomplete answer",
				     h->pl->copy.name, vm);
	}
	h->info = info;
	*out = info;
	return 0;
}

VMB_EXTERN(int) vmb_hv_describe(vmb_hv *h, const char *vm, char **json)
{
	vmb_hv_vm_info *info;
	vmb_buf b;
	int rc = describe(h, vm, &info);
	if (rc)
		return rc;
	vmb_buf_init(&b);
	vmb_buf_puts(&b, "{\"name\":");
	vmb_buf_json_str(&b, info->name);
	vmb_buf_puts(&b, ",\"uuid\":");
	if (info->uuid)
		vmb_buf_json_str(&b, info->uuid);
	else
		vmb_buf_puts(&b, "null");
	vmb_buf_printf(&b, ",\"state\":\"%s\",\"plugin\":",
		       vmb_hv_state_name(info->state));
	vmb_buf_json_str(&b, h->pl->copy.name);
	vmb_buf_puts(&b, ",\"disks\":[");
	for (size_t i = 0; i < info->ndisks; i++) {
		const vmb_hv_disk_info *d = &info->disks[i];
		vmb_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
		vmb_buf_json_str(&b, d->name ? d->name : "");
		vmb_buf_puts(&b, ",\"path\":");
		vmb_buf_json_str(&b, d->path ? d->path : "");
		vmb_buf_puts(&b, ",\"format\":");
		vmb_buf_json_str(&b, d->format ? d->format : "");
		vmb_buf_printf(&b, ",\"size\":%llu}",
			       (unsigned long long)d->size);
	}
	vmb_buf_puts(&b, "],\"config_format\":");
	if (info->config_format)
		vmb_buf_json_str(&b, info->config_format);
	else
		vmb_buf_puts(&b, "null");
	vmb_buf_puts(&b, ",\"config\":");
	if (info->config)
		vmb_buf_json_str(&b, info->config);
	else
		vmb_buf_puts(&b, "null");
	vmb_buf_puts(&b, "}");
	free_info(h);
	if (b.failed) {
		vmb_buf_free(&b);
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	}
	*json = vmb_buf_detach(&b);
	return 0;
}

VMB_EXTERN(int) vmb_hv_snapshot_create(vmb_hv *h, const char *vm,
				       const char *name)
{
	int rc;
	if (!h->pl->copy.snapshot_create)
		return unsupported(h, "make VM snapshots");
	rc = h->pl->copy.snapshot_create(h->handle, vm, name);
	return rc ? plugin_err(h, rc) : 0;
}

VMB_EXTERN(int) vmb_hv_snapshot_list(vmb_hv *h, const char *vm,
				     vmb_hv_snapshot_fn fn, void *payload)
{
	int rc;
	if (!h->pl->copy.snapshot_list)
		return unsupported(h, "list VM snapshots");
	rc = h->pl->copy.snapshot_list(h->handle, vm, fn, payload);
	return rc ? plugin_err(h, rc) : 0;
}

VMB_EXTERN(int) vmb_hv_snapshot_revert(vmb_hv *h, const char *vm,
				       const char *name)
{
	int rc;
	if (!h->pl->copy.snapshot_revert)
		return unsupported(h, "revert VM snapshots");
	rc = h->pl->copy.snapshot_revert(h->handle, vm, name);
	return rc ? plugin_err(h, rc) : 0;
}

VMB_EXTERN(int) vmb_hv_snapshot_delete(vmb_hv *h, const char *vm,
				       const char *name)
{
	int rc;
	if (!h->pl->copy.snapshot_delete)
		return unsupported(h, "delete VM snapshots");
	rc = h->pl->copy.snapshot_delete(h->handle, vm, name);
	return rc ? plugin_err(h, rc) : 0;
}

VMB_EXTERN(int) vmb_hv_define(vmb_hv *h, const vmb_hv_define_request *req,
			      char **name)
{
	char *n = NULL;
	int rc;
	*name = NULL;
	if (!h->pl->copy.define)
		return unsupported(h, "define VMs");
	if (!req || req->struct_size < sizeof *req || !req->config)
		return vmb_error_set(VMB_EINVAL, "define: incomplete request");
	rc = h->pl->copy.define(h->handle, req, &n);
	if (rc) {
		free(n);
		return plugin_err(h, rc);
	}
	*name = n;
	return 0;
}

/* ---- backups ---- */

struct begun {
	vmb_hv *hv;
	vmb_hv_backup_job *b;
};

/* Check a plugin's backup struct. */
static int check_backup(vmb_hv *h, const char *vm, const vmb_hv_backup_job *b)
{
	if (!b || b->struct_size < sizeof *b || !b->ndisks || !b->disks ||
	    b->ndisks > 256)
		return vmb_error_set(VMB_EINVAL, "%s plugin: the backup of '%s' "
				     "came back without disks",
				     h->pl->copy.name, vm);
	for (size_t i = 0; i < b->ndisks; i++)
		if (!b->disks[i].disk || !b->disks[i].name ||
		    !*b->disks[i].name)
			return vmb_error_set(VMB_EINVAL, "%s plugin: disk %zu of "
					     "'%s' has no name or read handle",
					     h->pl->copy.name, i, vm);
	return 0;
}

VMB_EXTERN(int) vmb_hv_backup(vmb_repo *r, const vmb_hv_source *src,
			      size_t nsrc, const vmb_hv_backup_opts *opts,
			      vmb_backup_result *res)
{
	vmb_hv_backup_opts def = VMB_HV_BACKUP_OPTS_INIT;
	vmb_backup_options bo = VMB_BACKUP_OPTIONS_INIT;
	struct begun *begun = NULL;
	vmb_backup_source *bs = NULL;
	vmb_hv_parent_disk *pdisks = NULL;
	vmb_snapshot *parent = NULL;
	char *vmname = NULL;
	size_t nbegun = 0, nbs = 0, total = 0;
	const char *consistency = NULL, *note = NULL;
	int rc = 0;

	if (!opts)
		opts = &def;
	if (!nsrc || nsrc > 256)
		return vmb_error_set(VMB_EINVAL, "a backup needs 1 to 256 "
				     "sources");
	memset(res, 0, sizeof *res);
	for (size_t i = 0; i < nsrc; i++)
		if (!src[i].hv->pl->copy.backup_begin)
			return unsupported(src[i].hv, "back up VMs (it is a "
					   "boot runner)");
	/* the repository's options, as the caller set them */
	memcpy(&bo, &opts->backup,
	       opts->backup.version >= 2 ? sizeof bo :
	       offsetof(vmb_backup_options, consistency));
	bo.version = VMB_BACKUP_OPTIONS_VERSION;
	if (opts->backup.version < 2)
		bo.consistency = bo.consistency_note = NULL;
	if (opts->flags & VMB_HV_BACKUP_FULL)
		bo.full = 1;

	/* the VM's name decides the parent: describe the first source */
	if (bo.vm) {
		vmname = vmb_strdup(bo.vm);
	} else {
		vmb_hv_vm_info *info;
		rc = describe(src[0].hv, src[0].vm, &info);
		if (rc)
			return rc;
		vmname = vmb_strdup(info->name);
		free_info(src[0].hv);
	}
	if (!vmname)
		return VMB_ENOMEM;
	if (!bo.full && !(opts->flags & VMB_HV_BACKUP_FULL)) {
		char ref[300];
		snprintf(ref, sizeof ref, "%s@latest", vmname);
		rc = vmb_repo_snapshot_find(r, ref, &parent);
		if (rc == VMB_ENOTFOUND) {
			vmb_error_clear();
			rc = 0;
		} else if (rc) {
			goto out;
		}
	}
	if (parent) {
		size_t n = vmb_snapshot_disk_count(parent);
		pdisks = vmb_calloc(n ? n : 1, sizeof *pdisks);
		if (!pdisks) {
			rc = VMB_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			pdisks[i].name = vmb_snapshot_disk_name(parent, i);
			pdisks[i].state = vmb_snapshot_disk_cbt_state(parent, i);
		}
	}
	begun = vmb_calloc(nsrc, sizeof *begun);
	if (!begun) {
		rc = VMB_ENOMEM;
		goto out;
	}
	/* start every source; the first failure undoes the others */
	for (size_t i = 0; i < nsrc; i++) {
		vmb_hv_backup_options bopt;
		vmb_hv_backup_job *b = NULL;
		vmb_hv *h = src[i].hv;
		memset(&bopt, 0, sizeof bopt);
		bopt.struct_size = sizeof bopt;
		bopt.flags = opts->flags | (bo.full ? VMB_HV_BACKUP_FULL : 0);
		bopt.parent = parent ? vmb_snapshot_id(parent) : NULL;
		bopt.nparent = parent ? vmb_snapshot_disk_count(parent) : 0;
		bopt.parent_disks = pdisks;
		bopt.scratch_dir = opts->scratch_dir;
		bopt.repo_id = vmb_repo_id(r);
		rc = h->pl->copy.backup_begin(h->handle, src[i].vm, &bopt, &b);
		if (rc) {
			plugin_err(h, rc);
			goto out;
		}
		begun[nbegun].hv = h;
		begun[nbegun++].b = b;
		rc = check_backup(h, src[i].vm, b);
		if (rc)
			goto out;
		total += b->ndisks;
		if (!consistency && b->consistency) {
			consistency = b->consistency;
			note = b->consistency_note;
		} else if (b->consistency && consistency &&
			   strcmp(b->consistency, consistency) != 0) {
			/* several VMs in one snapshot: the weakest wins */
			if (!strcmp(b->consistency, "crash-consistent")) {
				consistency = b->consistency;
				note = b->consistency_note;
			}
		}
		if (!bo.config && b->config) {
			bo.config = b->config;
			bo.config_format = b->config_format;
		}
	}
	bs = vmb_calloc(total ? total : 1, sizeof *bs);
	if (!bs) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nbegun; i++)
		for (size_t k = 0; k < begun[i].b->ndisks; k++) {
			const vmb_hv_backup_disk *d = &begun[i].b->disks[k];
			bs[nbs].path = d->path;
			bs[nbs].name = d->name;
			bs[nbs].disk = d->disk;
			nbs++;
		}
	bo.vm = vmname;
	if (!bo.consistency) {
		bo.consistency = consistency;
		bo.consistency_note = note;
	}
	if (opts->flags & VMB_HV_BACKUP_DRY_RUN) {
		/* what would be read; nothing is stored */
		for (size_t i = 0; i < nbs; i++) {
			res->bytes_total += vmb_disk_size(bs[i].disk);
			vmb_log(VMB_LOG_INFO, "would read disk %s (%s, %llu "
				"bytes, %d layer%s)", bs[i].name,
				bs[i].path ? bs[i].path : "-",
				(unsigned long long)vmb_disk_size(bs[i].disk),
				vmb_disk_layers(bs[i].disk),
				vmb_disk_layers(bs[i].disk) == 1 ? "" : "s");
		}
		res->cbt = "none";
		goto out;
	}
	rc = vmb_repo_backup(r, bs, nbs, &bo, res);
out:
	{
		/* tell every begun plugin how it ended; keep the first error */
		int e = vmb_error_code();
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", vmb_error_message());
		for (size_t i = 0; begun && i < nbegun; i++) {
			vmb_hv *h = begun[i].hv;
			int erc = h->pl->copy.backup_end(h->handle, begun[i].b,
							 rc == 0);
			if (erc && !rc) {
				/* the snapshot is written: a failed clean-up
				 * is a warning, the next backup copes */
				vmb_log(VMB_LOG_WARN, "%s plugin: finishing the "
					"backup: %s", h->pl->copy.name,
					vmb_error_message());
			}
		}
		if (rc)
			vmb_error_set(e ? e : rc, "%s", msg);
	}
	free(bs);
	free(begun);
	free(pdisks);
	free(vmname);
	vmb_snapshot_free(parent);
	return rc;
}

VMB_EXTERN(int) vmb_hv_backup_each(vmb_repo *r, const vmb_hv_source *src,
				   size_t nsrc, const vmb_hv_backup_opts *opts,
				   vmb_hv_each_fn fn, void *payload)
{
	vmb_hv_backup_opts def = VMB_HV_BACKUP_OPTS_INIT;
	size_t failed = 0;
	if (!opts)
		opts = &def;
	if (opts->backup.vm)
		return vmb_error_set(VMB_EINVAL, "a backup of each VM names "
				     "every VM from its configuration: no VM "
				     "name can be given");
	for (size_t i = 0; i < nsrc; i++) {
		vmb_backup_result res;
		vmb_hv_vm_info *info = NULL;
		char *vm = NULL, msg[1024];
		int rc;
		/* the name first, so a failure can say which VM it was */
		if (describe(src[i].hv, src[i].vm, &info) == 0) {
			vm = vmb_strdup(info->name);
			free_info(src[i].hv);
		}
		vmb_error_clear();
		rc = vmb_hv_backup(r, &src[i], 1, opts, &res);
		snprintf(msg, sizeof msg, "%s", rc ? vmb_error_message() : "");
		if (rc)
			failed++;
		if (fn && fn(i, &src[i], vm, rc, rc ? msg : NULL,
			     rc ? NULL : &res, payload)) {
			free(vm);
			break;
		}
		free(vm);
	}
	vmb_error_clear();
	return failed > (size_t)INT32_MAX ? INT32_MAX : (int)failed;
}

/* ---- restore and define ---- */

VMB_EXTERN(int) vmb_hv_restore_define(vmb_repo *r, const char *snap,
				      const char *dir,
				      const vmb_restore_options *ropts,
				      vmb_hv *h,
				      const vmb_hv_define_opts *dopts,
				      vmb_restore_result *res, char **name)
{
	vmb_hv_define_opts ddef = VMB_HV_DEFINE_OPTS_INIT;
	vmb_restore_options rdef = VMB_RESTORE_OPTIONS_INIT;
	vmb_hv_define_request req;
	vmb_hv_define_disk *dd = NULL;
	char **paths = NULL;
	vmb_snapshot *s = NULL;
	const char *cfg, *cfmt = NULL;
	char absdir[PATH_MAX], want_fmt[16] = "";
	size_t n = 0;
	int rc;

	if (name)
		*name = NULL;
	if (!dopts)
		dopts = &ddef;
	if (!ropts)
		ropts = &rdef;
	if (!h->pl->copy.define)
		return unsupported(h, "define VMs");
	rc = vmb_repo_snapshot_find(r, snap, &s);
	if (rc)
		return rc;
	cfg = vmb_snapshot_config(s, &cfmt);
	if (!cfg || !*cfg) {
		rc = vmb_error_set(VMB_EINVAL, "snapshot %s has no VM "
				   "configuration to define (it was not "
				   "backed up from a hypervisor)",
				   vmb_snapshot_id(s));
		goto out;
	}
	if (ropts->disk) {
		rc = vmb_error_set(VMB_EINVAL, "defining a VM restores every "
				   "disk of it: drop --disk");
		goto out;
	}
	/* resolve the reference once: restore exactly this snapshot */
	rc = vmb_repo_restore(r, vmb_snapshot_id(s), dir, ropts, res);
	if (rc)
		goto out;
	if (!realpath(dir, absdir)) {
		rc = vmb_error_set(VMB_EIO, "%s: %s", dir, strerror(errno));
		goto out;
	}
	n = vmb_snapshot_disk_count(s);
	dd = vmb_calloc(n ? n : 1, sizeof *dd);
	paths = vmb_calloc(n ? n : 1, sizeof *paths);
	if (!dd || !paths) {
		rc = VMB_ENOMEM;
		goto out;
	}
	if (ropts->format &&
	    vmb_disk_format_parse(ropts->format, want_fmt, NULL)) {
		rc = vmb_error_code();
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		/* "vmdk:streamOptimized" is a vmdk to the hypervisor */
		const char *fmt = ropts->format ? want_fmt :
				  vmb_snapshot_disk_format(s, i);
		if (!vmb_disk_format_extension(fmt))
			fmt = "raw"; /* as vmb_repo_restore() does */
		paths[i] = vmb_asprintf("%s/%s.%s", absdir,
					vmb_snapshot_disk_name(s, i),
					vmb_disk_format_extension(fmt));
		if (!paths[i]) {
			rc = VMB_ENOMEM;
			goto out;
		}
		dd[i].name = vmb_snapshot_disk_name(s, i);
		dd[i].path = paths[i];
		dd[i].format = fmt;
	}
	memset(&req, 0, sizeof req);
	req.struct_size = sizeof req;
	req.config_format = cfmt;
	req.config = cfg;
	req.name = dopts->name;
	req.dir = absdir;
	req.ndisks = n;
	req.disks = dd;
	req.flags = dopts->flags;
	{
		char *nm = NULL;
		rc = vmb_hv_define(h, &req, &nm);
		if (rc) {
			vmb_error_prefix("the disks are restored in %s, but ",
					 absdir);
			goto out;
		}
		if (name)
			*name = nm;
		else
			free(nm);
	}
out:
	for (size_t i = 0; paths && i < n; i++)
		free(paths[i]);
	free(paths);
	free(dd);
	vmb_snapshot_free(s);
	return rc;
}

struct folder_fixup {
	vmb_hv *h;
};

static int folder_fixup_cb(vmb_vmfolder_view *v, void *payload)
{
	struct folder_fixup *f = payload;
	int rc = f->h->pl->copy.folder_fixup(f->h->handle, v);
	return rc ? plugin_err(f->h, rc) : 0;
}

VMB_EXTERN(int) vmb_hv_folder_restore(vmb_repo *r, const char *snap,
				      const char *dir,
				      const vmb_vmfolder_restore_opts *o,
				      vmb_restore_result *res)
{
	vmb_snapshot *s = NULL;
	char plugin[32], id[33];
	struct folder_fixup f = { NULL };
	int rc = vmb_repo_snapshot_find(r, snap, &s);
	if (rc)
		return rc;
	if (!vmb_vmfolder_is(s, plugin)) {
		rc = vmb_error_set(VMB_EINVAL, "snapshot %s holds no VM "
				   "folder", vmb_snapshot_id(s));
		vmb_snapshot_free(s);
		return rc;
	}
	snprintf(id, sizeof id, "%s", vmb_snapshot_id(s));
	vmb_snapshot_free(s);
	rc = vmb_hv_open(plugin, NULL, &f.h);
	if (rc)
		return rc;
	if (!f.h->pl->copy.folder_fixup) {
		rc = vmb_error_set(VMB_ENOTSUP, "the %s plugin cannot restore "
				   "VM folders", plugin);
		vmb_hv_close(f.h);
		return rc;
	}
	rc = vmb_vmfolder_restore(r, id, dir, o, folder_fixup_cb, &f, res);
	vmb_hv_close(f.h);
	return rc;
}

/* ---- boot verification (vmb verify --boot) ----
 * Find the snapshot and its disk, check the boot signature, and hand the
 * disk to a boot runner plugin (VMB_HV_F_BOOT): "kvm" is the minimal
 * runner of --runner builtin (plugins/kvm/), "qemu" a whole OS under QEMU
 * (plugins/qemu/).  The runner reads the disk from the repository as the
 * guest asks for it.  docs/boot.md describes the runners. */

static const char *runner_plugin(const char *runner)
{
	if (!runner || !*runner || !strcmp(runner, "builtin"))
		return "kvm";
	return runner;
}

VMB_EXTERN(void) vmb_boot_result_free(vmb_boot_result *res)
{
	if (!res)
		return;
	free(res->console);
	free(res->screen);
	res->console = res->screen = NULL;
	res->console_len = 0;
}

/* The boot sector's signature; 1 when it is there, else the reason. */
static int check_signature(vmb_disk *d, vmb_boot_result *res)
{
	unsigned char mbr[512];
	int rc;
	if (vmb_disk_size(d) < 512) {
		snprintf(res->reason, sizeof res->reason, "no boot sector: "
			 "the disk is %llu bytes",
			 (unsigned long long)vmb_disk_size(d));
		return 0;
	}
	rc = vmb_disk_read(d, mbr, 0, sizeof mbr);
	if (rc)
		return rc;
	if (mbr[510] != 0x55 || mbr[511] != 0xaa) {
		snprintf(res->reason, sizeof res->reason, "no boot signature: "
			 "bytes 510-511 of the boot sector are %02x %02x, not "
			 "55 aa", mbr[510], mbr[511]);
		return 0;
	}
	return 1;
}

VMB_EXTERN(int) vmb_hv_boot(vmb_repo *r, const char *snap,
			    const vmb_boot_options *o, vmb_boot_result *res)
{
	static const vmb_boot_options def = VMB_BOOT_OPTIONS_INIT;
	vmb_hv_boot_request req;
	vmb_hv_boot_report rep;
	vmb_snapshot *s = NULL;
	vmb_disk *d = NULL;
	vmb_hv *h = NULL;
	const char *plugin;
	double t0 = vmb_now();
	int rc;

	if (!o)
		o = &def;
	memset(res, 0, sizeof *res);
	if (o->version != VMB_BOOT_OPTIONS_VERSION)
		return vmb_error_set(VMB_EINVAL, "vmb_boot_options version %u "
				     "is not %u", o->version,
				     VMB_BOOT_OPTIONS_VERSION);
	if (o->timeout < 0 || o->timeout > 86400)
		return vmb_error_set(VMB_EINVAL, "boot timeout %.1f s is not "
				     "within 0..86400", o->timeout);
	if (o->memory_mb && (o->memory_mb < 2 || o->memory_mb > 2048))
		return vmb_error_set(VMB_EINVAL, "guest memory %u MiB is not "
				     "within 2..2048", o->memory_mb);
	plugin = runner_plugin(o->runner);
	snprintf(res->runner, sizeof res->runner, "%s", plugin);
	rc = vmb_repo_snapshot_find(r, snap ? snap : "latest", &s);
	if (rc)
		return rc;
	snprintf(res->snapshot, sizeof res->snapshot, "%s", vmb_snapshot_id(s));
	rc = vmb_snapshot_disk_open(r, s, o->disk, &d);
	if (rc)
		goto out;
	snprintf(res->disk, sizeof res->disk, "%s",
		 o->disk ? o->disk : vmb_snapshot_disk_name(s, 0));
	rc = check_signature(d, res);
	if (rc <= 0)
		goto out; /* an error, or the verdict: it cannot boot */
	rc = vmb_hv_open(plugin, NULL, &h);
	if (rc)
		goto out;
	if (!h->pl->copy.boot) {
		rc = unsupported(h, "boot snapshots");
		goto out;
	}
	memset(&req, 0, sizeof req);
	req.struct_size = sizeof req;
	req.disk = d;
	req.disk_name = res->disk;
	req.expect = o->expect && *o->expect ? o->expect : NULL;
	req.timeout = o->timeout > 0 ? o->timeout : 30;
	req.vcpu = o->vcpu && *o->vcpu ? o->vcpu : NULL;
	req.memory_mb = o->memory_mb ? o->memory_mb : 256;
	req.console_limit = o->console_limit ? o->console_limit : 1u << 20;
	req.max_instructions = o->max_instructions;
	req.scratch_dir = o->scratch_dir;
	memset(&rep, 0, sizeof rep);
	rep.struct_size = sizeof rep;
	rc = h->pl->copy.boot(h->handle, &req, &rep);
	res->console = rep.console;
	res->screen = rep.screen;
	if (rc) {
		rc = plugin_err(h, rc);
		vmb_boot_result_free(res);
		goto out;
	}
	/* the plugin's strings are bounded here, whatever it wrote */
	rep.reason[sizeof rep.reason - 1] = 0;
	rep.vcpu[sizeof rep.vcpu - 1] = 0;
	res->booted = rep.booted == 1;
	snprintf(res->reason, sizeof res->reason, "%s", rep.reason[0] ?
		 rep.reason : (res->booted ? "booted" : "did not boot"));
	snprintf(res->vcpu, sizeof res->vcpu, "%s", rep.vcpu);
	res->console_len = res->console ? rep.console_len : 0;
	res->console_total = rep.console_total;
	rc = 0;
out:
	res->seconds = vmb_now() - t0;
	vmb_hv_close(h);
	vmb_disk_close(d);
	vmb_snapshot_free(s);
	return rc;
}

/* ---- a VM folder defined on another hypervisor (libvirt) ---- */

/*
 * The neutral hardware description plugins leave in the folder's meta
 * (docs/vm-folders.md): hw.cpus, hw.memory_mb, hw.firmware ("bios" or
 * "efi"), hw.nics (MAC addresses, comma-separated), hw.bus.DRIVE
 * ("sata", "ide", "scsi", "nvme", "virtio"), hw.unsupported (what has
 * no equivalent, "; "-separated).  Read in the restore's fixup, after the
 * plugin's own, with each drive's one image.
 */
#define FD_MAX_DRIVES 64
struct folder_define {
	struct folder_fixup f;
	size_t n;
	char *name[FD_MAX_DRIVES], *path[FD_MAX_DRIVES], *fmt[FD_MAX_DRIVES];
	char *bus[FD_MAX_DRIVES];
	char *vm, *cpus, *mem, *fw, *nics, *unsup;
};

static char *meta_dup(vmb_vmfolder_view *v, const char *k)
{
	const char *s = vmb_vmfolder_view_meta(v, k);
	return s ? vmb_strdup(s) : NULL;
}

static int folder_define_cb(vmb_vmfolder_view *v, void *payload)
{
	struct folder_define *d = payload;
	int rc = folder_fixup_cb(v, &d->f);
	if (rc)
		return rc;
	d->n = vmb_vmfolder_view_drives(v);
	if (d->n > FD_MAX_DRIVES)
		return vmb_error_set(VMB_EINVAL, "more than %d drives to "
				     "define", FD_MAX_DRIVES);
	for (size_t i = 0; i < d->n; i++) {
		const char *fmt = NULL;
		const char *p = vmb_vmfolder_view_drive_flat(v, i, &fmt);
		char key[200];
		if (!p)
			return vmb_error_set(VMB_EINVAL, "drive %s was not "
					     "flattened",
					     vmb_vmfolder_view_drive(v, i));
		snprintf(key, sizeof key, "hw.bus.%s",
			 vmb_vmfolder_view_drive(v, i));
		d->name[i] = vmb_strdup(vmb_vmfolder_view_drive(v, i));
		d->path[i] = vmb_strdup(p);
		d->fmt[i] = vmb_strdup(fmt ? fmt : "raw");
		d->bus[i] = meta_dup(v, key);
		if (!d->name[i] || !d->path[i] || !d->fmt[i])
			return VMB_ENOMEM;
	}
	d->vm = meta_dup(v, "name");
	d->cpus = meta_dup(v, "hw.cpus");
	d->mem = meta_dup(v, "hw.memory_mb");
	d->fw = meta_dup(v, "hw.firmware");
	d->nics = meta_dup(v, "hw.nics");
	d->unsup = meta_dup(v, "hw.unsupported");
	return 0;
}

static void xml_text(vmb_buf *b, const char *s)
{
	for (; s && *s; s++)
		switch (*s) {
		case '&': vmb_buf_puts(b, "&amp;"); break;
		case '<': vmb_buf_puts(b, "&lt;"); break;
		case '>': vmb_buf_puts(b, "&gt;"); break;
		case '\'': vmb_buf_puts(b, "&apos;"); break;
		case '"': vmb_buf_puts(b, "&quot;"); break;
		default:
			if ((unsigned char)*s >= 0x20)
				vmb_buf_printf(b, "%c", *s);
		}
}

static unsigned parse_small(const char *s, unsigned lo, unsigned hi,
			    unsigned def)
{
	char *e;
	unsigned long v;
	if (!s || !*s)
		return def;
	v = strtoul(s, &e, 10);
	return *e || v < lo || v > hi ? def : (unsigned)v;
}

/* The domain XML of a folder's hardware, for libvirt's define(). */
static char *folder_domain_xml(struct folder_define *d, const char *dir,
			       vmb_hv_define_disk *dd, char (*devs)[8],
			       vmb_buf *report)
{
	vmb_buf b;
	unsigned nsd = 0, nhd = 0, nvd = 0;
	const char *nics = d->nics;
	vmb_buf_init(&b);
	vmb_buf_printf(&b, "<domain type='%s'>\n  <name>",
		       access("/dev/kvm", R_OK | W_OK) == 0 ? "kvm" : "qemu");
	xml_text(&b, d->vm ? d->vm : "vm");
	vmb_buf_printf(&b, "</name>\n  <memory unit='MiB'>%u</memory>\n"
		       "  <vcpu>%u</vcpu>\n",
		       parse_small(d->mem, 16, 1u << 22, 512),
		       parse_small(d->cpus, 1, 512, 1));
	vmb_buf_printf(&b, "  <os%s>\n    <type arch='x86_64'>hvm</type>\n"
		       "    <boot dev='hd'/>\n  </os>\n"
		       "  <features><acpi/></features>\n  <devices>\n",
		       d->fw && !strcmp(d->fw, "efi") ? " firmware='efi'" : "");
	for (size_t i = 0; i < d->n; i++) {
		const char *bus = d->bus[i] ? d->bus[i] : "sata";
		char *dev = devs[i];
		if (!strcmp(bus, "nvme") || !strcmp(bus, "usb") ||
		    !strcmp(bus, "floppy")) {
			vmb_buf_printf(report, "%sdrive %s: %s bus as sata",
				       report->len ? "; " : "", d->name[i], bus);
			bus = "sata";
		}
		if (!strcmp(bus, "ide"))
			snprintf(dev, 8, "hd%c", 'a' + (nhd++ % 26));
		else if (!strcmp(bus, "virtio"))
			snprintf(dev, 8, "vd%c", 'a' + (nvd++ % 26));
		else
			snprintf(dev, 8, "sd%c", 'a' + (nsd++ % 26));
		vmb_buf_printf(&b, "    <disk type='file' device='disk'>"
			       "<driver name='qemu' type='%s'/><source file='",
			       !strcmp(d->fmt[i], "qcow2") ? "qcow2" :
			       !strcmp(d->fmt[i], "vmdk") ? "vmdk" :
			       !strcmp(d->fmt[i], "vdi") ? "vdi" : "raw");
		xml_text(&b, d->path[i]);
		vmb_buf_printf(&b, "'/><target dev='%s' bus='%s'/></disk>\n",
			       dev, bus);
		dd[i].name = dev;
		dd[i].path = d->path[i];
		dd[i].format = d->fmt[i];
	}
	while (nics && *nics) {
		size_t k = strcspn(nics, ",");
		char mac[32];
		if (k == 12) {
			snprintf(mac, sizeof mac, "%.2s:%.2s:%.2s:%.2s:%.2s:%.2s",
				 nics, nics + 2, nics + 4, nics + 6, nics + 8,
				 nics + 10);
			vmb_buf_puts(&b, "    <interface type='user'><mac address='");
			xml_text(&b, mac);
			vmb_buf_puts(&b, "'/><model type='e1000'/></interface>\n");
		} else if (k == 17) {
			vmb_buf_puts(&b, "    <interface type='user'><mac address='");
			snprintf(mac, sizeof mac, "%.17s", nics);
			xml_text(&b, mac);
			vmb_buf_puts(&b, "'/><model type='e1000'/></interface>\n");
		}
		nics += k;
		if (*nics == ',')
			nics++;
	}
	if (d->nics && *d->nics)
		vmb_buf_printf(report, "%sNICs: user-mode networking (the "
			       "original's attachment has no equivalent here)",
			       report->len ? "; " : "");
	vmb_buf_puts(&b, "    <serial type='file'><source path='");
	xml_text(&b, dir);
	vmb_buf_puts(&b, "/serial0.log'/><target port='0'/></serial>\n"
		     "    <console type='file'><source path='");
	xml_text(&b, dir);
	vmb_buf_puts(&b, "/console0.log'/><target type='serial' port='0'/>"
		     "</console>\n  </devices>\n</domain>\n");
	if (b.failed) {
		vmb_buf_free(&b);
		return NULL;
	}
	return vmb_buf_detach(&b);
}

VMB_EXTERN(int) vmb_hv_folder_restore_define(vmb_repo *r, const char *snap,
					     const char *dir,
					     const vmb_vmfolder_restore_opts *o,
					     vmb_hv *h,
					     const vmb_hv_define_opts *dopts,
					     vmb_restore_result *res,
					     char **name, char **report)
{
	vmb_vmfolder_restore_opts fo = VMB_VMFOLDER_RESTORE_OPTS_INIT;
	vmb_hv_define_opts ddef = VMB_HV_DEFINE_OPTS_INIT;
	struct folder_define d;
	vmb_hv_define_request req;
	vmb_hv_define_disk dd[FD_MAX_DRIVES];
	char devs[FD_MAX_DRIVES][8];
	vmb_snapshot *s = NULL;
	char plugin[32], id[33], *xml = NULL, absdir[PATH_MAX];
	vmb_buf rep;
	int rc;

	*name = NULL;
	if (report)
		*report = NULL;
	memset(&d, 0, sizeof d);
	vmb_buf_init(&rep);
	if (!dopts)
		dopts = &ddef;
	if (o)
		fo = *o;
	fo.flags |= VMB_VMFOLDER_FLATTEN; /* one image per drive */
	if (!fo.format)
		fo.format = "qcow2";
	if (!h->pl->copy.define)
		return unsupported(h, "define VMs");
	if ((rc = vmb_repo_snapshot_find(r, snap, &s)))
		return rc;
	if (!vmb_vmfolder_is(s, plugin)) {
		rc = vmb_error_set(VMB_EINVAL, "snapshot %s holds no VM "
				   "folder", vmb_snapshot_id(s));
		vmb_snapshot_free(s);
		return rc;
	}
	snprintf(id, sizeof id, "%s", vmb_snapshot_id(s));
	vmb_snapshot_free(s);
	if ((rc = vmb_hv_open(plugin, NULL, &d.f.h)))
		return rc;
	if (!d.f.h->pl->copy.folder_fixup) {
		rc = vmb_error_set(VMB_ENOTSUP, "the %s plugin cannot restore "
				   "VM folders", plugin);
		goto out;
	}
	rc = vmb_vmfolder_restore(r, id, dir, &fo, folder_define_cb, &d, res);
	if (rc)
		goto out;
	if (!realpath(dir, absdir))
		snprintf(absdir, sizeof absdir, "%s", dir);
	if (!(xml = folder_domain_xml(&d, absdir, dd, devs, &rep))) {
		rc = VMB_ENOMEM;
		goto out;
	}
	if (d.unsup && *d.unsup)
		vmb_buf_printf(&rep, "%s%s", rep.len ? "; " : "", d.unsup);
	memset(&req, 0, sizeof req);
	req.struct_size = sizeof req;
	req.config_format = "libvirt-xml";
	req.config = xml;
	req.name = dopts->name;
	req.dir = absdir;
	req.ndisks = d.n;
	req.disks = dd;
	/* the folder's own MACs, unless a new identity was asked for */
	req.flags = dopts->flags | ((fo.flags & VMB_VMFOLDER_NEW_UUID) ? 0 :
				    VMB_HV_DEFINE_KEEP_MACS);
	rc = vmb_hv_define(h, &req, name);
	if (rc)
		vmb_error_prefix("the folder is restored in %s, but ", dir);
out:
	vmb_hv_close(d.f.h);
	for (size_t i = 0; i < d.n; i++) {
		free(d.name[i]);
		free(d.path[i]);
		free(d.fmt[i]);
		free(d.bus[i]);
	}
	free(d.vm);
	free(d.cpus);
	free(d.mem);
	free(d.fw);
	free(d.nics);
	free(d.unsup);
	free(xml);
	if (!rc && report && rep.len && !rep.failed)
		*report = vmb_buf_detach(&rep);
	else
		vmb_buf_free(&rep);
	return rc;
}

/* ---- instant recovery ---- */

VMB_EXTERN(int) vmb_hv_restore_instant(vmb_repo *r, const char *snap,
				       const char *dir,
				       const char *nbd_socket, vmb_hv *h,
				       const vmb_hv_define_opts *dopts,
				       char **name)
{
	vmb_hv_define_opts ddef = VMB_HV_DEFINE_OPTS_INIT;
	vmb_hv_define_request req;
	vmb_hv_define_disk *dd = NULL;
	char **paths = NULL, absdir[PATH_MAX], *nm = NULL;
	vmb_snapshot *s = NULL;
	const char *cfg, *cfmt = NULL;
	size_t n = 0, made = 0;
	int rc;

	if (name)
		*name = NULL;
	if (!dopts)
		dopts = &ddef;
	if (!h->pl->copy.define || !h->pl->copy.start ||
	    !h->pl->copy.pull_start)
		return unsupported(h, "run VMs from a backup (instant "
				   "recovery)");
	if (!nbd_socket || !*nbd_socket || strchr(nbd_socket, '?') ||
	    strchr(nbd_socket, '#'))
		return vmb_error_set(VMB_EINVAL, "instant recovery: bad NBD "
				     "socket path '%s'",
				     nbd_socket ? nbd_socket : "");
	rc = vmb_repo_snapshot_find(r, snap, &s);
	if (rc)
		return rc;
	cfg = vmb_snapshot_config(s, &cfmt);
	if (!cfg || !*cfg) {
		rc = vmb_error_set(VMB_EINVAL, "snapshot %s has no VM "
				   "configuration to define (it was not "
				   "backed up from a hypervisor)",
				   vmb_snapshot_id(s));
		goto out;
	}
	if (mkdir(dir, 0755) && errno != EEXIST) {
		rc = vmb_error_set(VMB_EIO, "cannot create %s: %s", dir,
				   strerror(errno));
		goto out;
	}
	if (!realpath(dir, absdir)) {
		rc = vmb_error_set(VMB_EIO, "%s: %s", dir, strerror(errno));
		goto out;
	}
	n = vmb_snapshot_disk_count(s);
	dd = vmb_calloc(n ? n : 1, sizeof *dd);
	paths = vmb_calloc(n ? n : 1, sizeof *paths);
	if (!dd || !paths) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *dn = vmb_snapshot_disk_name(s, i);
		char *backing = vmb_asprintf("nbd+unix:///%s?socket=%s", dn,
					     nbd_socket);
		paths[i] = vmb_asprintf("%s/%s.qcow2", absdir, dn);
		if (!backing || !paths[i]) {
			free(backing);
			rc = VMB_ENOMEM;
			goto out;
		}
		if (access(paths[i], F_OK) == 0) {
			free(backing);
			rc = vmb_error_set(VMB_EEXISTS, "%s exists: not "
					   "overwritten", paths[i]);
			goto out;
		}
		/* an empty overlay: every read falls through to the server
		 * until the pull has copied the data in */
		rc = vmb_disk__qcow2_write_layer(paths[i],
						 vmb_snapshot_disk_size(s, i),
						 backing, "raw", NULL, 0, 0644);
		free(backing);
		if (rc)
			goto out;
		made = i + 1;
		dd[i].name = dn;
		dd[i].path = paths[i];
		dd[i].format = "qcow2";
	}
	memset(&req, 0, sizeof req);
	req.struct_size = sizeof req;
	req.config_format = cfmt;
	req.config = cfg;
	req.name = dopts->name;
	req.dir = absdir;
	req.ndisks = n;
	req.disks = dd;
	req.flags = dopts->flags;
	rc = vmb_hv_define(h, &req, &nm);
	if (rc)
		goto out;
	rc = h->pl->copy.start(h->handle, nm);
	if (rc) {
		rc = plugin_err(h, rc);
		vmb_error_prefix("%s is defined on overlays in %s but did not "
				 "start: ", nm, absdir);
		goto out;
	}
	rc = h->pl->copy.pull_start(h->handle, nm);
	if (rc) {
		rc = plugin_err(h, rc);
		vmb_error_prefix("%s runs on overlays in %s (over the server), "
				 "but the copy to local disk did not start: ",
				 nm, absdir);
	}
out:
	if (rc && !nm) /* nothing uses them: remove the overlays we made */
		for (size_t i = 0; i < made; i++)
			unlink(paths[i]);
	if (name && nm)
		*name = nm;
	else
		free(nm);
	for (size_t i = 0; paths && i < n; i++)
		free(paths[i]);
	free(paths);
	free(dd);
	vmb_snapshot_free(s);
	return rc;
}

VMB_EXTERN(int) vmb_hv_instant_wait(vmb_hv *h, const char *vm,
				    vmb_progress_fn fn, void *payload)
{
	int rc;
	if (!h->pl->copy.pull_wait)
		return unsupported(h, "run VMs from a backup (instant "
				   "recovery)");
	rc = h->pl->copy.pull_wait(h->handle, vm, fn, payload);
	return rc ? plugin_err(h, rc) : 0;
}
