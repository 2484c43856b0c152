/*
 * The repository's snapshots as a read-only FUSE file system (libfuse3,
 * high-level API, path based): DIR/VM/SNAPSHOT-ID/DISK.raw and
 * DIR/VM/latest.  The tree is built once from the snapshot list; each
 * disk file is opened on its first open() and closed after its last
 * release().  See include/vmbackup/mount.h and docs/instant.md.
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>
#include "vmbackup/mount.h"
#include "vmbackup/disk.h"
#include "common/util.h"
#include "nbd/nbd.h" /* the LRU chunk cache of vmb serve */

#define NAME_MAX_BYTES 200
#define DEFAULT_CACHE (64u << 20) /* per open disk file */

struct mfile {
	char *name;        /* DISK.raw */
	const char *disk;  /* the disk's name in the snapshot */
	uint64_t size;
	uint32_t chunk_size;
	size_t snap;       /* index in mfs.snaps */
	pthread_mutex_t lock;
	vmb_disk *d;       /* open while refs > 0 */
	int refs;
};

struct msnap {
	vmb_snapshot *s;   /* borrowed from mfs.list */
	size_t vm;
	size_t first, nfiles; /* in mfs.files */
};

struct mvm {
	char *name;
	size_t latest;     /* index in mfs.snaps of its newest snapshot */
	size_t nsnaps;
};

struct mfs {
	vmb_repo *r;
	uint64_t cache_bytes;
	vmb_snapshot **list;
	size_t nlist;
	struct msnap *snaps;
	size_t nsnaps;
	struct mvm *vms;
	size_t nvms;
	struct mfile *files;
	size_t nfiles;
	time_t mounted;
};

/* A name from a manifest (hostile) as one path component: '/' and
 * control characters become '_', "", "." and ".." become "_", long ones
 * are cut. */
static char *component(const char *in, const char *suffix)
{
	size_t n = strlen(in), sl = strlen(suffix);
	if (n > NAME_MAX_BYTES)
		n = NAME_MAX_BYTES;
	char *o = vmb_malloc(n + sl + 2);
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		o[i] = c == '/' || c < 0x20 || c == 0x7f ? '_' : (char)c;
	}
	o[n] = 0;
	if (!n || strcmp(o, ".") == 0 || strcmp(o, "..") == 0) {
		o[0] = '_';
		n = 1;
	}
	memcpy(o + n, suffix, sl + 1);
	return o;
}

static void mfs_free(struct mfs *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nfiles; i++) {
		free(m->files[i].name);
		vmb_disk_close(m->files[i].d);
		pthread_mutex_destroy(&m->files[i].lock);
	}
	for (size_t i = 0; i < m->nvms; i++)
		free(m->vms[i].name);
	free(m->files);
	free(m->vms);
	free(m->snaps);
	vmb_snapshot_list_free(m->list, m->nlist);
	free(m);
}

static int mfs_build(vmb_repo *r, const vmb_mount_options *o,
		     struct mfs **out)
{
	struct mfs *m = vmb_calloc(1, sizeof *m);
	size_t nfiles = 0;
	int rc;
	*out = NULL;
	if (!m)
		return VMB_ENOMEM;
	m->r = r;
	m->cache_bytes = o->cache_bytes;
	m->mounted = time(NULL);
	if (o->snapshot) {
		vmb_snapshot *s = NULL;
		rc = vmb_repo_snapshot_find(r, o->snapshot, &s);
		if (rc)
			goto fail;
		if (!(m->list = vmb_calloc(1, sizeof *m->list))) {
			vmb_snapshot_free(s);
			rc = VMB_ENOMEM;
			goto fail;
		}
		m->list[0] = s;
		m->nlist = 1;
	} else {
		rc = vmb_repo_snapshots(r, o->vm, &m->list, &m->nlist);
		if (rc)
			goto fail;
	}
	for (size_t i = 0; i < m->nlist; i++)
		nfiles += vmb_snapshot_disk_count(m->list[i]);
	m->snaps = vmb_calloc(m->nlist ? m->nlist : 1, sizeof *m->snaps);
	m->vms = vmb_calloc(m->nlist ? m->nlist : 1, sizeof *m->vms);
	m->files = vmb_calloc(nfiles ? nfiles : 1, sizeof *m->files);
	if (!m->snaps || !m->vms || !m->files) {
		rc = VMB_ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < m->nlist; i++) { /* oldest first */
		vmb_snapshot *s = m->list[i];
		char *vname = component(vmb_snapshot_vm(s), "");
		size_t v;
		if (!vname) {
			rc = VMB_ENOMEM;
			goto fail;
		}
		for (v = 0; v < m->nvms; v++)
			if (strcmp(m->vms[v].name, vname) == 0)
				break;
		if (v == m->nvms) {
			m->vms[v].name = vname;
			m->nvms++;
		} else {
			free(vname);
		}
		struct msnap *ms = &m->snaps[m->nsnaps];
		ms->s = s;
		ms->vm = v;
		ms->first = m->nfiles;
		m->vms[v].latest = m->nsnaps;
		m->vms[v].nsnaps++;
		for (size_t d = 0; d < vmb_snapshot_disk_count(s); d++) {
			const char *dn = vmb_snapshot_disk_name(s, d);
			char *fn = component(dn, ".raw");
			int dup = 0;
			if (!fn) {
				rc = VMB_ENOMEM;
				goto fail;
			}
			for (size_t k = ms->first; k < m->nfiles; k++)
				dup |= strcmp(m->files[k].name, fn) == 0;
			if (dup) {
				vmb_log(VMB_LOG_WARN, "snapshot %s: two disks "
					"are named %s; only the first is "
					"shown", vmb_snapshot_id(s), fn);
				free(fn);
				continue;
			}
			struct mfile *f = &m->files[m->nfiles++];
			f->name = fn;
			f->disk = dn;
			f->size = vmb_snapshot_disk_size(s, d);
			f->chunk_size = vmb_snapshot_disk_chunk_size(s, d);
			f->snap = m->nsnaps;
			pthread_mutex_init(&f->lock, NULL);
		}
		ms->nfiles = m->nfiles - ms->first;
		m->nsnaps++;
	}
	*out = m;
	return 0;
fail:
	mfs_free(m);
	return rc;
}

/* ---- path lookup ---- */

enum { N_NONE, N_ROOT, N_VM, N_LATEST, N_SNAP, N_FILE };

struct node {
	int kind;
	size_t i; /* vm, snap or file index */
};

/* The next component of *p (advanced past it) into c; 0 at the end. */
static int next_component(const char **p, char *c, size_t cap)
{
	const char *s = *p, *e;
	while (*s == '/')
		s++;
	if (!*s)
		return 0;
	e = strchr(s, '/');
	if (!e)
		e = s + strlen(s);
	if ((size_t)(e - s) >= cap)
		return -1;
	memcpy(c, s, (size_t)(e - s));
	c[e - s] = 0;
	*p = e;
	return 1;
}

static struct node lookup(const struct mfs *m, const char *path)
{
	struct node n = { N_ROOT, 0 };
	char c[NAME_MAX_BYTES + 16];
	const char *p = path;
	int k;
	while ((k = next_component(&p, c, sizeof c)) > 0) {
		size_t i;
		switch (n.kind) {
		case N_ROOT:
			for (i = 0; i < m->nvms; i++)
				if (strcmp(m->vms[i].name, c) == 0)
					break;
			if (i == m->nvms)
				goto none;
			n.kind = N_VM;
			n.i = i;
			break;
		case N_VM:
			if (strcmp(c, "latest") == 0) {
				n.kind = N_LATEST;
				break;
			}
			for (i = 0; i < m->nsnaps; i++)
				if (m->snaps[i].vm == n.i &&
				    strcmp(vmb_snapshot_id(m->snaps[i].s),
					   c) == 0)
					break;
			if (i == m->nsnaps)
				goto none;
			n.kind = N_SNAP;
			n.i = i;
			break;
		case N_SNAP: {
			const struct msnap *s = &m->snaps[n.i];
			for (i = s->first; i < s->first + s->nfiles; i++)
				if (strcmp(m->files[i].name, c) == 0)
					break;
			if (i == s->first + s->nfiles)
				goto none;
			n.kind = N_FILE;
			n.i = i;
			break;
		}
		default:
			goto none;
		}
	}
	if (k < 0)
		goto none;
	return n;
none:
	n.kind = N_NONE;
	return n;
}

static struct mfs *ctx(void)
{
	return fuse_get_context()->private_data;
}

/* ---- operations ---- */

static int op_getattr(const char *path, struct stat *st,
		      struct fuse_file_info *fi)
{
	struct mfs *m = ctx();
	struct node n = lookup(m, path);
	memset(st, 0, sizeof *st);
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_nlink = 1;
	switch (n.kind) {
	case N_ROOT:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2 + m->nvms;
		st->st_mtime = m->mounted;
		break;
	case N_VM: {
		const struct mvm *v = &m->vms[n.i];
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2 + v->nsnaps;
		st->st_mtime = vmb_snapshot_time(m->snaps[v->latest].s);
		break;
	}
	case N_LATEST: {
		/* only reached through a VM */
		const char *id = NULL;
		char c[NAME_MAX_BYTES + 16];
		const char *p = path;
		if (next_component(&p, c, sizeof c) > 0)
			for (size_t i = 0; i < m->nvms; i++)
				if (strcmp(m->vms[i].name, c) == 0)
					id = vmb_snapshot_id(
						m->snaps[m->vms[i].latest].s);
		if (!id)
			return -ENOENT;
		st->st_mode = S_IFLNK | 0777;
		st->st_size = (off_t)strlen(id);
		st->st_mtime = m->mounted;
		break;
	}
	case N_SNAP:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		st->st_mtime = vmb_snapshot_time(m->snaps[n.i].s);
		break;
	case N_FILE: {
		const struct mfile *f = &m->files[n.i];
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)f->size;
		st->st_blocks = (blkcnt_t)((f->size + 511) / 512);
		st->st_blksize = 65536;
		st->st_mtime = vmb_snapshot_time(m->snaps[f->snap].s);
		break;
	}
	default:
		return -ENOENT;
	}
	st->st_atime = st->st_ctime = st->st_mtime;
	return 0;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
	struct mfs *m = ctx();
	struct node n = lookup(m, path);
	char c[NAME_MAX_BYTES + 16];
	const char *p = path;
	if (n.kind != N_LATEST || !size)
		return -EINVAL;
	if (next_component(&p, c, sizeof c) <= 0)
		return -ENOENT;
	for (size_t i = 0; i < m->nvms; i++)
		if (strcmp(m->vms[i].name, c) == 0) {
			snprintf(buf, size, "%s",
				 vmb_snapshot_id(m->snaps[m->vms[i].latest].s));
			return 0;
		}
	return -ENOENT;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
		      off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	struct mfs *m = ctx();
	struct node n = lookup(m, path);
	if (n.kind != N_ROOT && n.kind != N_VM && n.kind != N_SNAP)
		return n.kind == N_NONE ? -ENOENT : -ENOTDIR;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	if (n.kind == N_ROOT) {
		for (size_t i = 0; i < m->nvms; i++)
			if (fill(buf, m->vms[i].name, NULL, 0, 0))
				break;
	} else if (n.kind == N_VM) {
		fill(buf, "latest", NULL, 0, 0);
		for (size_t i = 0; i < m->nsnaps; i++)
			if (m->snaps[i].vm == n.i &&
			    fill(buf, vmb_snapshot_id(m->snaps[i].s), NULL, 0,
				 0))
				break;
	} else {
		const struct msnap *s = &m->snaps[n.i];
		for (size_t i = s->first; i < s->first + s->nfiles; i++)
			if (fill(buf, m->files[i].name, NULL, 0, 0))
				break;
	}
	return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	struct mfs *m = ctx();
	struct node n = lookup(m, path);
	int rc = 0;
	if (n.kind == N_NONE)
		return -ENOENT;
	if (n.kind != N_FILE)
		return -EISDIR;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	struct mfile *f = &m->files[n.i];
	pthread_mutex_lock(&f->lock);
	if (!f->d) {
		/* the disk read through the same bounded LRU chunk cache
		 * (with read-ahead) as vmb serve: memory stays at
		 * cache_bytes whatever the disk's size */
		vmb_disk *base = NULL;
		struct vmb_cache *c;
		rc = vmb_snapshot_disk_open(m->r, m->snaps[f->snap].s,
					    f->disk, &base);
		if (!rc)
			rc = vmb_cache_open(base, f->chunk_size ?
					    f->chunk_size : (1u << 20),
					    m->cache_bytes ? m->cache_bytes :
					    DEFAULT_CACHE, &f->d, &c);
		if (rc)
			vmb_log(VMB_LOG_ERROR, "opening %s: %s", path,
				vmb_error_message());
	}
	if (!rc)
		f->refs++;
	pthread_mutex_unlock(&f->lock);
	if (rc)
		return rc == VMB_ENOMEM ? -ENOMEM : -EIO;
	fi->fh = n.i;
	fi->keep_cache = 1; /* a snapshot never changes */
	return 0;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	struct mfs *m = ctx();
	if (fi->fh >= m->nfiles)
		return 0;
	struct mfile *f = &m->files[fi->fh];
	pthread_mutex_lock(&f->lock);
	if (f->refs > 0 && --f->refs == 0) {
		vmb_disk_close(f->d);
		f->d = NULL;
	}
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static int op_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct mfs *m = ctx();
	if (fi->fh >= m->nfiles || off < 0)
		return -EINVAL;
	struct mfile *f = &m->files[fi->fh];
	if ((uint64_t)off >= f->size)
		return 0;
	if (size > f->size - (uint64_t)off)
		size = (size_t)(f->size - (uint64_t)off);
	if (size > INT_MAX)
		size = INT_MAX;
	/* f->d stays open while this handle is: refs > 0 */
	int rc = vmb_disk_read(f->d, buf, (uint64_t)off, size);
	if (rc) {
		vmb_log(VMB_LOG_ERROR, "reading %s at %lld: %s", path,
			(long long)off, vmb_error_message());
		return -EIO;
	}
	return (int)size;
}

struct seek {
	int want_data;
	uint64_t found;
	int hit;
};

static int seek_cb(const vmb_extent *e, void *payload)
{
	struct seek *s = payload;
	if ((e->kind == VMB_EXTENT_DATA) == s->want_data) {
		s->found = e->offset;
		s->hit = 1;
		return 1;
	}
	return 0;
}

static off_t op_lseek(const char *path, off_t off, int whence,
		      struct fuse_file_info *fi)
{
	struct mfs *m = ctx();
	if (fi->fh >= m->nfiles)
		return -EINVAL;
	struct mfile *f = &m->files[fi->fh];
	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	if (off < 0)
		return -ENXIO;
	if ((uint64_t)off >= f->size)
		return -ENXIO;
	struct seek s = { whence == SEEK_DATA, 0, 0 };
	if (vmb_disk_map(f->d, (uint64_t)off, f->size - (uint64_t)off,
			 seek_cb, &s))
		return -EIO;
	if (s.hit)
		return (off_t)(s.found > (uint64_t)off ? s.found
						       : (uint64_t)off);
	/* no data after off: ENXIO; no hole: the virtual hole at EOF */
	return whence == SEEK_DATA ? -ENXIO : (off_t)f->size;
}

static int op_statfs(const char *path, struct statvfs *st)
{
	struct mfs *m = ctx();
	memset(st, 0, sizeof *st);
	st->f_bsize = st->f_frsize = 4096;
	for (size_t i = 0; i < m->nfiles; i++)
		st->f_blocks += (m->files[i].size + 4095) / 4096;
	st->f_files = m->nvms + m->nsnaps + m->nfiles + 1;
	st->f_namemax = 255;
	return 0;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->kernel_cache = 1;
	cfg->entry_timeout = cfg->attr_timeout = 3600;
	cfg->negative_timeout = 60;
	return fuse_get_context()->private_data;
}

static const struct fuse_operations ops = {
	.getattr = op_getattr,
	.readlink = op_readlink,
	.open = op_open,
	.read = op_read,
	.statfs = op_statfs,
	.release = op_release,
	.readdir = op_readdir,
	.init = op_init,
	.lseek = op_lseek,
};

/* ---- mounting ---- */

VMB_EXTERN(int) vmb_mount_check(const char *dir)
{
	struct stat st;
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return vmb_error_set(VMB_ENOTSUP, "cannot mount on %s: "
				     "/dev/fuse: %s (load the fuse module, or "
				     "give the container --device /dev/fuse)",
				     dir, strerror(errno));
	close(fd);
	if (stat(dir, &st) != 0)
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "cannot mount on %s: %s", dir,
				     strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return vmb_error_set(VMB_EINVAL, "cannot mount on %s: not a "
				     "directory", dir);
	DIR *d = opendir(dir);
	if (!d)
		return vmb_error_set(VMB_EIO, "cannot mount on %s: %s", dir,
				     strerror(errno));
	struct dirent *e;
	int empty = 1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			empty = 0;
			break;
		}
	closedir(d);
	if (!empty)
		return vmb_error_set(VMB_EINVAL, "cannot mount on %s: the "
				     "directory is not empty", dir);
	return 0;
}

/* Is a file system of ours (fuse.vmb) mounted on the absolute path? */
static int ours_mounted(const char *abs)
{
	FILE *f = fopen("/proc/self/mounts", "r");
	char line[4096];
	int found = 0;
	if (!f)
		return -1;
	while (!found && fgets(line, sizeof line, f)) {
		char *src = strtok(line, " "), *mp = strtok(NULL, " "),
		     *type = strtok(NULL, " ");
		if (!src || !mp || !type)
			continue;
		/* /proc/mounts escapes blanks as \040 etc.: undo that */
		char un[4096];
		size_t j = 0;
		for (size_t i = 0; mp[i] && j + 1 < sizeof un; i++) {
			if (mp[i] == '\\' && mp[i + 1] >= '0' &&
			    mp[i + 1] <= '3' && mp[i + 2] && mp[i + 3]) {
				un[j++] = (char)((mp[i + 1] - '0') * 64 +
						 (mp[i + 2] - '0') * 8 +
						 (mp[i + 3] - '0'));
				i += 3;
			} else {
				un[j++] = mp[i];
			}
		}
		un[j] = 0;
		found = strcmp(un, abs) == 0 && strcmp(type, "fuse.vmb") == 0;
	}
	fclose(f);
	return found;
}

VMB_EXTERN(int) vmb_mount_stop(const char *dir)
{
	char abs[PATH_MAX];
	if (!realpath(dir, abs))
		return vmb_error_set(VMB_EINVAL, "cannot unmount %s: %s", dir,
				     strerror(errno));
	if (ours_mounted(abs) != 1)
		return vmb_error_set(VMB_EINVAL, "cannot unmount %s: no vmb "
				     "mount there", dir);
	pid_t pid = fork();
	if (pid < 0)
		return vmb_error_set(VMB_EIO, "cannot unmount %s: fork: %s",
				     dir, strerror(errno));
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 1);
			dup2(nul, 2);
		}
		execlp("fusermount3", "fusermount3", "-u", "-q", abs,
		       (char *)NULL);
		_exit(127);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127 &&
	    umount2(abs, 0) == 0)
		return 0; /* no fusermount3; root may unmount directly */
	if (ours_mounted(abs) == 0)
		return 0;
	return vmb_error_set(VMB_EIO, "cannot unmount %s: it is busy (a "
			     "process still uses it; see fuser -m %s)", dir,
			     abs);
}

VMB_EXTERN(int) vmb_mount_run(vmb_repo *r, const char *dir,
			      const vmb_mount_options *opts)
{
	vmb_mount_options o = VMB_MOUNT_OPTIONS_INIT;
	struct mfs *m = NULL;
	struct fuse *f = NULL;
	char abs[PATH_MAX];
	char mopts[512];
	int rc, ret = 0;

	if (opts)
		o = *opts;
	rc = vmb_mount_check(dir);
	if (rc)
		return rc;
	if (!realpath(dir, abs))
		return vmb_error_set(VMB_EIO, "cannot mount on %s: %s", dir,
				     strerror(errno));
	rc = mfs_build(r, &o, &m);
	if (rc)
		return rc;
	snprintf(mopts, sizeof mopts, "ro,fsname=vmb,subtype=vmb,"
		 "default_permissions%s", o.allow_other ? ",allow_other" : "");
	char *argv[] = { "vmb", "-o", mopts, o.debug ? "-d" : NULL, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(o.debug ? 4 : 3, argv);
	f = fuse_new(&args, &ops, sizeof ops, m);
	fuse_opt_free_args(&args);
	if (!f) {
		mfs_free(m);
		return vmb_error_set(VMB_EIO, "cannot mount on %s: FUSE "
				     "refused the options", dir);
	}
	if (fuse_mount(f, abs) != 0) {
		fuse_destroy(f);
		mfs_free(m);
		return vmb_error_set(VMB_EIO, "cannot mount on %s: the mount "
				     "failed (see the message above; as "
				     "non-root, fusermount3 must be "
				     "installed setuid)", dir);
	}
	if (o.ready)
		o.ready(abs, o.payload);
	if (!o.foreground) {
		/* mounted: detach.  The working directory is kept, so a
		 * repository opened by a relative path still resolves. */
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			fuse_unmount(f);
			fuse_destroy(f);
			mfs_free(m);
			return vmb_error_set(VMB_EIO, "cannot detach: fork: "
					     "%s", strerror(errno));
		}
		if (pid > 0)
			return 1; /* the parent; the child serves */
		setsid();
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			if (!o.debug)
				dup2(nul, 2);
			if (nul > 2)
				close(nul);
		}
	}
	struct fuse_session *se = fuse_get_session(f);
	if (fuse_set_signal_handlers(se) != 0) {
		ret = vmb_error_set(VMB_EIO, "cannot install signal handlers");
	} else {
		/* a signal that ends the loop is returned as its number:
		 * that is the normal way to stop, not an error */
		if (fuse_loop_mt(f, 0) < 0)
			ret = vmb_error_set(VMB_EIO, "serving %s ended with "
					    "an error", dir);
		fuse_remove_signal_handlers(se);
	}
	fuse_unmount(f);
	fuse_destroy(f);
	mfs_free(m);
	return ret;
}
