/*
 * Local directory backend.  An object is a file; a put writes a temporary
 * file beside it, fsyncs it, renames it over the name and fsyncs the
 * folder, so a crash leaves either the old or the new object.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include "common/killpoint.h"
#include "common/util.h"
#include "target.h"

#define TMP_MARK ".tmp-"

struct local {
	vmb_target base;
	char *root;
};

static int errno_code(int e)
{
	switch (e) {
	case ENOENT: return VMB_ENOTFOUND;
	case EEXIST: return VMB_EEXISTS;
	case ENOSPC: case EDQUOT: case EFBIG: return VMB_ENOSPC;
	case EACCES: case EPERM: case EROFS: return VMB_EACCES;
	case ENOMEM: return VMB_ENOMEM;
	default: return VMB_EIO;
	}
}

static int fail(struct local *l, const char *what, const char *name, int e)
{
	return vmb_error_set(errno_code(e), "%s: cannot %s %s: %s",
			     l->base.url, what, name, strerror(e));
}


static int fsync_dir(const char *file)
{
	char *d = vmb_strdup(file), *slash;
	int fd, r = 0;
	if (!d)
		return -1;
	slash = strrchr(d, '/');
	if (slash)
		*slash = 0;
	fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		if (fsync(fd) != 0 && errno != EINVAL)
			r = -1;
		close(fd);
	}
	free(d);
	return r;
}

/*
 * Large objects whose buffer is page-aligned (the backup's sealed chunk
 * buffers are) are written with O_DIRECT: the kernel DMAs them from our
 * buffer instead of copying them into the page cache and writing that
 * back later, which was a tenth of a full backup's CPU time
 * (docs/benchmarks.md).  The last partial block goes through a small
 * aligned bounce buffer and the file is cut to size.  Filesystems that
 * refuse O_DIRECT (tmpfs, some FUSE) get the buffered write.
 * @return 0, or a positive errno.
 */
#define DIRECT_MIN (256u << 10)
#define DIRECT_ALIGN 4096u

/* VMB_LOCAL_DIRECT=0 turns O_DIRECT off (benchmarks, odd filesystems). */
static int direct_enabled(void)
{
	static int v = -1;
	if (v < 0) {
		const char *e = getenv("VMB_LOCAL_DIRECT");
		v = !(e && !strcmp(e, "0"));
	}
	return v;
}

static int write_object(int fd, const void *data, size_t length)
{
	static _Thread_local uint8_t tail[DIRECT_ALIGN]
		__attribute__((aligned(DIRECT_ALIGN)));
	size_t body = length & ~(size_t)(DIRECT_ALIGN - 1);
	size_t rest = length - body;
	int fl = fcntl(fd, F_GETFL), e;

	if (length < DIRECT_MIN || ((uintptr_t)data & (DIRECT_ALIGN - 1)) ||
	    !direct_enabled() ||
	    fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) != 0)
		return -vmb_pwrite_full(fd, data, length, 0);
	e = -vmb_pwrite_full(fd, data, body, 0);
	if (!e && rest) {
		memcpy(tail, (const uint8_t *)data + body, rest);
		memset(tail + rest, 0, DIRECT_ALIGN - rest);
		e = -vmb_pwrite_full(fd, tail, DIRECT_ALIGN, body);
		if (!e && ftruncate(fd, (off_t)length) != 0)
			e = errno;
	}
	if (e == EINVAL) {
		/* O_DIRECT accepted at fcntl time but not for writes */
		if (fcntl(fd, F_SETFL, fl) != 0 || ftruncate(fd, 0) != 0)
			return errno;
		e = -vmb_pwrite_full(fd, data, length, 0);
	}
	return e;
}

static int local_put(vmb_target *t, const char *name, const void *data,
		     size_t length)
{
	struct local *l = (struct local *)t;
	char *path = vmb_asprintf("%s/%s", l->root, name), *tmp = NULL;
	int fd = -1, r = 0, e;
	uint8_t rnd[8];
	char rhex[17];

	if (!path)
		return VMB_ENOMEM;
	randombytes_buf(rnd, sizeof rnd);
	vmb_hex(rnd, sizeof rnd, rhex);
	tmp = vmb_asprintf("%s" TMP_MARK "%s", path, rhex);
	if (!tmp) {
		r = VMB_ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == ENOENT) {
		char *dir = vmb_strdup(tmp), *slash = strrchr(dir, '/');
		if (slash)
			*slash = 0;
		int mr = dir ? vmb_mkdir_p(dir, 0700) : VMB_ENOMEM;
		if (mr != 0) {
			e = mr == VMB_ENOSPC ? ENOSPC : mr == VMB_EACCES ? EACCES :
			    mr == VMB_EINVAL ? ENOTDIR : mr == VMB_ENOMEM ? ENOMEM :
			    EIO;
			free(dir);
			r = fail(l, "create folder for", name, e);
			goto out;
		}
		free(dir);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (fd < 0) {
		r = fail(l, "create", name, errno);
		goto out;
	}
	vmb__kill_point("write", name, 1);
	e = write_object(fd, data, length);
	vmb__kill_point("write", name, 0);
	if (e) {
		r = fail(l, "write", name, e);
		goto out;
	}
	vmb__kill_point("fsync", name, 1);
	e = fsync(fd) != 0 ? errno : 0;
	vmb__kill_point("fsync", name, 0);
	if (e) {
		r = fail(l, "sync", name, e);
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		r = fail(l, "close", name, errno);
		goto out;
	}
	fd = -1;
	vmb__kill_point("rename", name, 1);
	e = rename(tmp, path) != 0 ? errno : 0;
	vmb__kill_point("rename", name, 0);
	if (e) {
		r = fail(l, "rename", name, e);
		goto out;
	}
	if (fsync_dir(path) != 0) {
		r = fail(l, "sync folder of", name, errno);
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	if (r && tmp)
		unlink(tmp);
	free(tmp);
	free(path);
	return r;
}

static int local_get(vmb_target *t, const char *name, void **data,
		     size_t *length)
{
	struct local *l = (struct local *)t;
	char *path = vmb_asprintf("%s/%s", l->root, name);
	struct stat st;
	int fd, r = 0;
	void *buf = NULL;
	int64_t n;

	if (!path)
		return VMB_ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return fail(l, "open", name, errno);
	if (fstat(fd, &st) != 0) {
		r = fail(l, "stat", name, errno);
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)(1LL << 32)) {
		r = vmb_error_set(VMB_ECORRUPT, "%s: %s is not a valid object",
				  l->base.url, name);
		goto out;
	}
	buf = vmb_malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = VMB_ENOMEM;
		goto out;
	}
	n = vmb_pread_full(fd, buf, (size_t)st.st_size, 0);
	if (n < 0) {
		r = fail(l, "read", name, (int)-n);
		goto out;
	}
	*data = buf;
	*length = (size_t)n;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return r;
}

static int local_stat(vmb_target *t, const char *name, uint64_t *size,
		      int64_t *mtime)
{
	struct local *l = (struct local *)t;
	char *path = vmb_asprintf("%s/%s", l->root, name);
	struct stat st;
	int r;
	if (!path)
		return VMB_ENOMEM;
	r = stat(path, &st);
	free(path);
	if (r != 0) {
		int e = errno;
		if (e == ENOENT)
			return vmb_error_set(VMB_ENOTFOUND, "%s: %s not found",
					     l->base.url, name);
		return fail(l, "stat", name, e);
	}
	*size = (uint64_t)st.st_size;
	*mtime = (int64_t)st.st_mtime;
	return 0;
}

/*
 * A temporary file of a put that never reached its rename (the process
 * was killed between write and rename) is invisible to every reader and
 * would stay forever: listings remove those older than TMP_STALE seconds,
 * far longer than any put takes, so GC (which lists everything) gets the
 * space back.
 */
#define TMP_STALE 3600

static void stale_tmp(DIR *d, const char *name)
{
	struct stat st;
	int dfd = dirfd(d);
	if (dfd >= 0 && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(st.st_mode) && st.st_mtime < time(NULL) - TMP_STALE)
		unlinkat(dfd, name, 0);
}

struct walk {
	struct local *l;
	const char *prefix;
	vmb_target_list_fn fn;
	void *payload;
	int stop;
	int err;
};

/* rel: path of dir relative to root ("" for root). */
static void walk_dir(struct walk *w, const char *rel, int depth)
{
	char *dir = rel[0] ? vmb_asprintf("%s/%s", w->l->root, rel)
			   : vmb_strdup(w->l->root);
	DIR *d;
	struct dirent *e;

	if (!dir || depth > 16)
		goto out;
	d = opendir(dir);
	if (!d) {
		if (errno != ENOENT && errno != ENOTDIR)
			w->err = fail(w->l, "list", rel[0] ? rel : ".", errno);
		goto out;
	}
	while (!w->stop && !w->err && (e = readdir(d))) {
		char *name;
		struct stat st;
		size_t plen = strlen(w->prefix), nlen;
		if (e->d_name[0] == '.')
			continue;
		if (strstr(e->d_name, TMP_MARK)) {
			stale_tmp(d, e->d_name);
			continue;
		}
		name = rel[0] ? vmb_asprintf("%s/%s", rel, e->d_name)
			      : vmb_strdup(e->d_name);
		if (!name) {
			w->err = VMB_ENOMEM;
			break;
		}
		nlen = strlen(name);
		/* prune: descend only where the prefix can still match */
		if (strncmp(name, w->prefix, VMB_MIN(nlen, plen)) != 0) {
			free(name);
			continue;
		}
		char *full = vmb_asprintf("%s/%s", dir, e->d_name);
		if (full && stat(full, &st) == 0) {
			if (S_ISDIR(st.st_mode)) {
				walk_dir(w, name, depth + 1);
			} else if (S_ISREG(st.st_mode) && nlen >= plen &&
				   vmb_target__name_ok(name)) {
				if (w->fn(name, (uint64_t)st.st_size,
					  (int64_t)st.st_mtime, w->payload))
					w->stop = 1;
			}
		}
		free(full);
		free(name);
	}
	closedir(d);
out:
	free(dir);
}

static int local_list(vmb_target *t, const char *prefix,
		      vmb_target_list_fn fn, void *payload)
{
	struct walk w = { (struct local *)t, prefix, fn, payload, 0, 0 };
	/* start from the deepest folder named completely by the prefix */
	char *start = vmb_strdup(prefix), *slash;
	if (!start)
		return VMB_ENOMEM;
	slash = strrchr(start, '/');
	if (slash)
		*slash = 0;
	else
		start[0] = 0;
	walk_dir(&w, start, 0);
	free(start);
	return w.err;
}

static int local_del(vmb_target *t, const char *name)
{
	struct local *l = (struct local *)t;
	char *path = vmb_asprintf("%s/%s", l->root, name);
	int r = 0;
	if (!path)
		return VMB_ENOMEM;
	if (unlink(path) != 0) {
		int e = errno;
		r = e == ENOENT ? vmb_error_set(VMB_ENOTFOUND,
						"%s: %s not found",
						l->base.url, name)
				: fail(l, "delete", name, e);
	}
	free(path);
	return r;
}

/* Ask the kernel to read the object into the page cache (asynchronous
 * readahead of the whole file); a later get() then finds it there. */
static void local_prefetch(vmb_target *t, const char *name)
{
	struct local *l = (struct local *)t;
	char *path = vmb_asprintf("%s/%s", l->root, name);
	int fd;
	if (!path)
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	free(path);
	if (fd < 0)
		return;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
	close(fd);
}

static int local_touch(vmb_target *t, const char *name)
{
	struct local *l = (struct local *)t;
	char *path = vmb_asprintf("%s/%s", l->root, name);
	int r = 0;
	if (!path)
		return VMB_ENOMEM;
	if (utimensat(AT_FDCWD, path, NULL, 0) != 0)
		r = fail(l, "touch", name, errno);
	free(path);
	return r;
}

static void local_close(vmb_target *t)
{
	struct local *l = (struct local *)t;
	free(l->root);
	free(l->base.url);
	free(l);
}

static const vmb_target_ops local_ops = {
	VMB_TARGET_OPS_VERSION, "local", local_put, local_get, local_stat,
	local_list, local_del, local_touch, local_close, local_prefetch,
};

static int local_open(const char *url, vmb_target **out)
{
	struct local *l;
	const char *path = url;
	size_t n;
	if (strncmp(url, "file://", 7) == 0) {
		path = url + 7;
		if (path[0] != '/')
			return vmb_error_set(VMB_EINVAL,
					     "%s: file:// URLs need an absolute path",
					     url);
	}
	l = vmb_calloc(1, sizeof *l);
	if (!l)
		return VMB_ENOMEM;
	l->root = vmb_strdup(path);
	l->base.url = vmb_strdup(url);
	if (!l->root || !l->base.url) {
		local_close(&l->base);
		return VMB_ENOMEM;
	}
	n = strlen(l->root);
	while (n > 1 && l->root[n - 1] == '/')
		l->root[--n] = 0;
	l->base.ops = &local_ops;
	*out = &l->base;
	return 0;
}

const vmb_target_backend vmb_target__local_backend = {
	VMB_TARGET_BACKEND_VERSION, "file", local_open
};
