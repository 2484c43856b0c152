/*
 * NFS backend: NFSv3 or NFSv4 through libnfs, in user space (no kernel
 * mount).
 *
 * URL: nfs://HOST/EXPORT/PATH[?version=3|4&nfsport=N&mountport=M] (the
 * libnfs URL syntax; its other options pass through).  NFSv3 (the
 * default, and the fast path) finds which leading part of the path is the
 * export by mounting successively shorter prefixes, longest first (the
 * server refuses a mount of a folder inside an export), and treats the rest
 * as the repository folder.  NFSv4 does the same from the server's pseudo
 * root (nfs://HOST/PSEUDO/PATH?version=4).
 *
 * Atomic and durable put: the data goes to a temporary name beside the
 * object ("NAME.tmp-RANDOM", never listed), is committed with nfs_fsync
 * (an NFS COMMIT: the server has it on stable storage), and is renamed
 * over the final name.  An NFS server replies to CREATE, MKDIR and RENAME
 * only once they are stable (RFC 1813 / RFC 7530), so there is no folder
 * fsync to do.  A reader sees the old or the new object, never a part.
 *
 * The NFSv4 write cut: Debian 12's libnfs 4.0.0 cannot encode an NFSv4
 * WRITE of more than 3840 bytes ("ZDR error: Failed to encode
 * COMPOUND4args"); NFSv3 writes of megabytes work.  The limit is found at
 * run time: an NFSv4 target first writes in pieces of the size the library
 * reports (nfs_get_writemax); when that fails with an encoding error the
 * piece size drops to 3840 bytes (then halves if needed) and stays there
 * for the target's life.  A libnfs that lifts the limit keeps large writes.
 *
 * Threads: an nfs_context is not thread safe, so operations borrow one
 * from a pool (at most VMB_NFS_CONNECTIONS, default 8, each its own TCP
 * connection and mount) and return it; callers wait when all are busy.
 * List callbacks run with no context held.
 *
 * Timeouts: every RPC has a timeout (nfs_set_timeout; VMB_NFS_TIMEOUT
 * seconds, default 60) and libnfs's own endless reconnection is off: a
 * context whose connection failed is dropped and the operation is tried
 * once more on a fresh connection, then fails with "cannot connect to nfs
 * server HOST: ...".  A dead server cannot hang a backup.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw-nfs.h>
#include <sodium.h>
#include "common/util.h"
#include "target.h"

#define TMP_MARK ".tmp-"
#define POOL_MAX 64
#define V4_SAFE_WRITE 3840 /* largest NFSv4 WRITE libnfs 4.0.0 encodes */
#define IO_MAX (1u << 20)
#define MAX_OBJECT (1ULL << 32)

struct nfs {
	vmb_target base;
	char *libnfs_url;   /* the URL as libnfs parses it */
	char *server;
	char *dir;          /* absolute path in the URL ("/exp/repo") */
	char *export_path;  /* what is mounted ("/exp") */
	char *root;         /* repository folder inside the mount ("/repo") */
	int version;
	int timeout_ms;
	atomic_size_t wmax; /* write piece size (see the NFSv4 cut) */
	int v4_cut_found;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct nfs_context *idle[POOL_MAX];
	int nidle;
	int nlive;          /* contexts in existence (idle + borrowed) */
	int max_live;
};

/* ---- errors ---- */

static int errno_code(int e)
{
	switch (e) {
	case ENOENT: return VMB_ENOTFOUND;
	case EEXIST: return VMB_EEXISTS;
	case ENOSPC: case EDQUOT: case EFBIG: return VMB_ENOSPC;
	case EACCES: case EPERM: case EROFS: return VMB_EACCES;
	case ENOMEM: return VMB_ENOMEM;
	case ETIMEDOUT: return VMB_ETIMEOUT;
	default: return VMB_EIO;
	}
}

/* Did the server answer (an NFS status), or did the transport fail? */
static int server_answered(int e)
{
	switch (e) {
	case ENOENT: case EEXIST: case ENOSPC: case EDQUOT: case EFBIG:
	case EACCES: case EPERM: case EROFS: case ENOTDIR: case EISDIR:
	case ENOTEMPTY: case ENAMETOOLONG: case EINVAL: case EXDEV:
	case ESTALE: case EMLINK: case ENXIO: case EOVERFLOW:
		return 1;
	default:
		return 0;
	}
}

static int fail(struct nfs *n, struct nfs_context *c, const char *what,
		const char *name, int e)
{
	const char *why = c ? nfs_get_error(c) : NULL;
	if (!server_answered(e))
		return vmb_error_set(errno_code(e) == VMB_ETIMEOUT ? VMB_ETIMEOUT
								   : VMB_EIO,
				     "%s: cannot connect to nfs server %s: "
				     "%s %s: %s", n->base.url, n->server, what,
				     name, why && *why ? why : strerror(e));
	if (e == ENOENT)
		return vmb_error_set(VMB_ENOTFOUND, "%s: %s not found",
				     n->base.url, name);
	return vmb_error_set(errno_code(e), "%s: cannot %s %s: %s",
			     n->base.url, what, name,
			     why && *why ? why : strerror(e));
}

/* ---- the context pool ---- */

static struct nfs_context *new_context(struct nfs *n, const char *mount,
				       int *err, char *why, size_t whylen)
{
	struct nfs_context *c = nfs_init_context();
	struct nfs_url *u;
	int r;

	*err = ENOMEM;
	if (why)
		snprintf(why, whylen, "out of memory");
	if (!c)
		return NULL;
	/* sets version, nfsport, mountport and friends from the URL */
	u = nfs_parse_url_dir(c, n->libnfs_url);
	if (!u) {
		*err = EINVAL;
		if (why)
			snprintf(why, whylen, "%s", nfs_get_error(c));
		nfs_destroy_context(c);
		return NULL;
	}
	nfs_destroy_url(u);
	nfs_set_timeout(c, n->timeout_ms);
	if (n->version == 4) {
		/* NFSv4 state belongs to a client id: each context needs its
		   own, or their SETCLIENTIDs expire one another's state */
		uint8_t rnd[8];
		char id[96], hex[17];
		randombytes_buf(rnd, sizeof rnd);
		vmb_hex(rnd, sizeof rnd, hex);
		snprintf(id, sizeof id, "vmbackup-%ld-%s", (long)getpid(), hex);
		nfs4_set_client_name(c, id);
		randombytes_buf(rnd, sizeof rnd);
		nfs4_set_verifier(c, (const char *)rnd);
	}
	nfs_set_autoreconnect(c, 0);
	nfs_set_dircache(c, 0);
	r = nfs_mount(c, n->server, mount);
	if (r != 0) {
		*err = -r;
		if (why)
			snprintf(why, whylen, "%s", nfs_get_error(c));
		nfs_destroy_context(c);
		return NULL;
	}
	*err = 0;
	return c;
}

static struct nfs_context *ctx_get(struct nfs *n)
{
	struct nfs_context *c = NULL;
	char why[512];
	int e;

	pthread_mutex_lock(&n->lock);
	while (!n->nidle && n->nlive >= n->max_live)
		pthread_cond_wait(&n->cond, &n->lock);
	if (n->nidle) {
		c = n->idle[--n->nidle];
		pthread_mutex_unlock(&n->lock);
		return c;
	}
	n->nlive++;
	pthread_mutex_unlock(&n->lock);
	c = new_context(n, n->export_path, &e, why, sizeof why);
	if (!c) {
		pthread_mutex_lock(&n->lock);
		n->nlive--;
		pthread_cond_signal(&n->cond);
		pthread_mutex_unlock(&n->lock);
		if (e == EACCES || e == EPERM)
			vmb_error_set(VMB_EACCES, "%s: permission denied "
				      "mounting %s on %s: %s", n->base.url,
				      n->export_path, n->server, why);
		else
			vmb_error_set(e == ETIMEDOUT ? VMB_ETIMEOUT : VMB_EIO,
				      "%s: cannot connect to nfs server %s: %s",
				      n->base.url, n->server, why);
	}
	return c;
}

/* Return a context; broken ones (transport failure) are destroyed. */
static void ctx_put(struct nfs *n, struct nfs_context *c, int broken)
{
	if (!c)
		return;
	pthread_mutex_lock(&n->lock);
	if (!broken && n->nidle < POOL_MAX) {
		n->idle[n->nidle++] = c;
		c = NULL;
	} else {
		n->nlive--;
	}
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
	if (c)
		nfs_destroy_context(c);
}

/* Run an operation with a pooled context.  The body sets broken_ when
   the transport failed (the context is dropped and the operation tried once
   more on a fresh connection) and retry_ on ESTALE (the object was replaced
   between two RPCs by a concurrent put: look it up again, a few times). */
#define WITH_CONTEXT(n, c, ...)                                           \
	do {                                                              \
		int reconnects_ = 0;                                      \
		for (int attempt_ = 0; attempt_ < 6; attempt_++) {        \
			int broken_ = 0, retry_ = 0;                      \
			(c) = ctx_get(n);                                 \
			if (!(c)) {                                       \
				r = vmb_error_code();                     \
				break;                                    \
			}                                                 \
			__VA_ARGS__;                                      \
			ctx_put((n), (c), broken_);                       \
			if (broken_ ? reconnects_++ >= 1 : !retry_)       \
				break;                                    \
		}                                                         \
	} while (0)

/* inside the body: classify an errno */
#define CHECK_TRANSPORT(e)                                                \
	do {                                                              \
		if (!server_answered(e))                                  \
			broken_ = 1;                                      \
		else if ((e) == ESTALE)                                   \
			retry_ = 1;                                       \
	} while (0)

static char *obj_path(struct nfs *n, const char *name)
{
	return vmb_asprintf("%s/%s", n->root, name);
}

static int mkdirs(struct nfs_context *c, const char *dir)
{
	char *p = vmb_strdup(dir);
	int r = 0;
	if (!p)
		return -ENOMEM;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char save = *s;
		*s = 0;
		r = nfs_mkdir(c, p);
		if (r == -EEXIST)
			r = 0;
		if (r && r != -EACCES && r != -EROFS && r != -EPERM) {
			/* a folder of the pseudo root, say: go on, the next
			   level or the create tells */
			if (!server_answered(-r))
				break;
			r = 0;
		} else if (r) {
			struct nfs_stat_64 st;
			if (nfs_stat64(c, p, &st) == 0 && S_ISDIR(st.nfs_mode))
				r = 0;
			else
				break;
		}
		*s = save;
		if (!save)
			break;
	}
	free(p);
	return r;
}

static int is_encode_error(struct nfs_context *c)
{
	const char *e = nfs_get_error(c);
	return e && (strstr(e, "ZDR") || strstr(e, "encode"));
}

/* Write all of data; adapts the NFSv4 piece size. */
static int write_all(struct nfs *n, struct nfs_context *c,
		     struct nfsfh *fh, const uint8_t *data, size_t length)
{
	size_t off = 0;
	while (off < length) {
		size_t piece = atomic_load(&n->wmax);
		size_t k = VMB_MIN(piece, length - off);
		int w = nfs_pwrite(c, fh, off, k, data + off);
		if (w < 0 && n->version == 4 && k > 512 &&
		    is_encode_error(c)) {
			/* libnfs could not encode a WRITE this large */
			size_t cut = k > V4_SAFE_WRITE ? V4_SAFE_WRITE : k / 2;
			size_t cur = piece;
			while (cur > cut &&
			       !atomic_compare_exchange_weak(&n->wmax, &cur, cut)) {
			}
			if (!n->v4_cut_found) {
				n->v4_cut_found = 1;
				vmb_log(VMB_LOG_DEBUG, "%s: NFSv4 writes cut to "
					"%zu bytes (libnfs cannot encode "
					"larger ones)", n->base.url, cut);
			}
			continue;
		}
		if (w < 0)
			return w;
		if (w == 0)
			return -EIO;
		off += (size_t)w;
	}
	return 0;
}

static int nfs_put_one(struct nfs *n, struct nfs_context *c,
		       const char *name, const char *path, const char *tmp,
		       const void *data, size_t length, int *broken)
{
	struct nfsfh *fh = NULL;
	int e, r = 0;

	e = -nfs_create(c, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600, &fh);
	if (e == ENOENT) {
		char *dir = vmb_strdup(tmp), *slash = strrchr(dir, '/');
		if (!dir)
			return VMB_ENOMEM;
		*slash = 0;
		e = -mkdirs(c, dir);
		free(dir);
		if (e) {
			*broken = !server_answered(e);
			return fail(n, c, "create folder for", name, e);
		}
		e = -nfs_create(c, tmp, O_WRONLY | O_CREAT | O_EXCL, 0600, &fh);
	}
	if (e) {
		*broken = !server_answered(e);
		return fail(n, c, "create", name, e);
	}
	e = -write_all(n, c, fh, data, length);
	if (e) {
		*broken = !server_answered(e);
		r = fail(n, c, "write", name, e);
		goto out;
	}
	e = -nfs_fsync(c, fh); /* COMMIT: on the server's stable storage */
	if (e) {
		*broken = !server_answered(e);
		r = fail(n, c, "sync", name, e);
		goto out;
	}
	e = -nfs_close(c, fh);
	fh = NULL;
	if (e) {
		*broken = !server_answered(e);
		r = fail(n, c, "close", name, e);
		goto out;
	}
	e = -nfs_rename(c, tmp, path);
	if (e) {
		*broken = !server_answered(e);
		r = fail(n, c, "rename", name, e);
		goto out;
	}
out:
	if (fh)
		nfs_close(c, fh);
	if (r && !*broken)
		nfs_unlink(c, tmp);
	return r;
}

static int nfs_put(vmb_target *t, const char *name, const void *data,
		   size_t length)
{
	struct nfs *n = (struct nfs *)t;
	struct nfs_context *c;
	char *path = obj_path(n, name), *tmp = NULL;
	uint8_t rnd[8];
	char rhex[17];
	int r = 0;

	if (!path)
		return VMB_ENOMEM;
	WITH_CONTEXT(n, c, {
		randombytes_buf(rnd, sizeof rnd);
		vmb_hex(rnd, sizeof rnd, rhex);
		free(tmp);
		tmp = vmb_asprintf("%s" TMP_MARK "%s", path, rhex);
		r = tmp ? nfs_put_one(n, c, name, path, tmp, data, length,
				      &broken_)
			: VMB_ENOMEM;
	});
	free(tmp);
	free(path);
	return r;
}

static int nfs_get(vmb_target *t, const char *name, void **data,
		   size_t *length)
{
	struct nfs *n = (struct nfs *)t;
	struct nfs_context *c;
	char *path = obj_path(n, name);
	int r = 0;

	if (!path)
		return VMB_ENOMEM;
	WITH_CONTEXT(n, c, {
		struct nfsfh *fh = NULL;
		struct nfs_stat_64 st;
		uint8_t *buf = NULL;
		size_t off = 0, rmax;
		int e = -nfs_open(c, path, O_RDONLY, &fh);
		r = 0;
		if (!e)
			e = -nfs_fstat64(c, fh, &st);
		if (e) {
			CHECK_TRANSPORT(e);
			r = fail(n, c, "open", name, e);
		} else if (!S_ISREG(st.nfs_mode) || st.nfs_size > MAX_OBJECT) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: %s is not a valid object",
					  n->base.url, name);
		} else if (!(buf = malloc((size_t)st.nfs_size + 1))) {
			r = vmb_error_set(VMB_ENOMEM, "out of memory");
		} else {
			rmax = VMB_MIN(VMB_MAX(nfs_get_readmax(c), 4096),
				       IO_MAX);
			while (off < st.nfs_size) {
				int k = nfs_pread(c, fh, off,
						  VMB_MIN(rmax,
							  st.nfs_size - off),
						  buf + off);
				if (k < 0) {
					/* replaced under us by a concurrent
					 * put (libnfs has no silly rename)?
					 * If the server still answers for the
					 * name, open it again (bounded). */
					struct nfs_stat_64 st2;
					int e2 = -nfs_stat64(c, path, &st2);
					if (!e2 || server_answered(e2))
						retry_ = 1;
					else
						CHECK_TRANSPORT(-k);
					r = fail(n, c, "read", name, -k);
					break;
				}
				if (k == 0)
					break; /* shrank meanwhile */
				off += (size_t)k;
			}
			if (!r && off != st.nfs_size) {
				retry_ = 1; /* replaced while read: again */
				r = vmb_error_set(VMB_EIO, "%s: %s changed "
						  "while being read",
						  n->base.url, name);
			}
		}
		if (fh)
			nfs_close(c, fh);
		if (!r) {
			*data = buf;
			*length = off;
		} else {
			free(buf);
		}
	});
	free(path);
	return r;
}

static int nfs_stat_obj(vmb_target *t, const char *name, uint64_t *size,
			int64_t *mtime)
{
	struct nfs *n = (struct nfs *)t;
	struct nfs_context *c;
	char *path = obj_path(n, name);
	int r = 0;

	if (!path)
		return VMB_ENOMEM;
	WITH_CONTEXT(n, c, {
		struct nfs_stat_64 st;
		int e = -nfs_stat64(c, path, &st);
		r = 0;
		if (e) {
			CHECK_TRANSPORT(e);
			r = fail(n, c, "stat", name, e);
		} else if (!S_ISREG(st.nfs_mode)) {
			r = vmb_error_set(VMB_ENOTFOUND, "%s: %s not found",
					  n->base.url, name);
		} else {
			*size = st.nfs_size;
			*mtime = (int64_t)st.nfs_mtime;
		}
	});
	free(path);
	return r;
}

/* ---- list ---- */

struct dent {
	char *name;
	int is_dir;
	uint64_t size;
	int64_t mtime;
};

struct walk {
	struct nfs *n;
	const char *prefix;
	vmb_target_list_fn fn;
	void *payload;
	int stop;
	int err;
};

/* Read one folder into an array (no context held afterwards). */
static int read_dir(struct nfs *n, const char *rel, struct dent **out,
		    size_t *count)
{
	struct nfs_context *c;
	char *dir = rel[0] ? vmb_asprintf("%s/%s", n->root, rel)
			   : vmb_strdup(n->root);
	int r = 0;

	*out = NULL;
	*count = 0;
	if (!dir)
		return VMB_ENOMEM;
	WITH_CONTEXT(n, c, {
		struct nfsdir *d = NULL;
		struct nfsdirent *e;
		struct dent *v = NULL;
		size_t nv = 0, cap = 0;
		int er = -nfs_opendir(c, dir, &d);
		r = 0;
		if (er) {
			CHECK_TRANSPORT(er);
			if (er != ENOENT && er != ENOTDIR)
				r = fail(n, c, "list", rel[0] ? rel : ".", er);
		} else {
			while ((e = nfs_readdir(c, d))) {
				if (e->name[0] == '.')
					continue;
				if (strstr(e->name, TMP_MARK)) {
					/* a put killed before its rename:
					 * gone after an hour (local.c) */
					if (e->type == NF3REG &&
					    (int64_t)e->mtime.tv_sec <
					    (int64_t)time(NULL) - 3600) {
						char *tp = vmb_asprintf(
							"%s/%s", dir, e->name);
						if (tp)
							nfs_unlink(c, tp);
						free(tp);
					}
					continue;
				}
				if (e->type != NF3DIR && e->type != NF3REG)
					continue;
				if (nv == cap) {
					size_t nc = cap ? cap * 2 : 64;
					struct dent *nd = realloc(v, nc * sizeof *nd);
					if (!nd) {
						r = vmb_error_set(VMB_ENOMEM,
								  "out of memory");
						break;
					}
					v = nd;
					cap = nc;
				}
				v[nv].name = vmb_strdup(e->name);
				if (!v[nv].name) {
					r = VMB_ENOMEM;
					break;
				}
				v[nv].is_dir = e->type == NF3DIR;
				v[nv].size = e->size;
				v[nv].mtime = (int64_t)e->mtime.tv_sec;
				nv++;
			}
			nfs_closedir(c, d);
		}
		if (r) {
			for (size_t i = 0; i < nv; i++)
				free(v[i].name);
			free(v);
		} else {
			*out = v;
			*count = nv;
		}
	});
	free(dir);
	return r;
}

static void walk_dir(struct walk *w, const char *rel, int depth)
{
	struct dent *v;
	size_t nv, plen = strlen(w->prefix);
	int r;

	if (depth > 32)
		return;
	r = read_dir(w->n, rel, &v, &nv);
	if (r) {
		w->err = r;
		return;
	}
	for (size_t i = 0; i < nv; i++) {
		char *name = NULL;
		size_t nlen;
		if (w->stop || w->err)
			goto next;
		name = rel[0] ? vmb_asprintf("%s/%s", rel, v[i].name)
			      : vmb_strdup(v[i].name);
		if (!name) {
			w->err = VMB_ENOMEM;
			goto next;
		}
		nlen = strlen(name);
		/* prune: descend only where the prefix can still match */
		if (strncmp(name, w->prefix, VMB_MIN(nlen, plen)) != 0)
			goto next;
		if (v[i].is_dir) {
			walk_dir(w, name, depth + 1);
		} else if (nlen >= plen && vmb_target__name_ok(name)) {
			if (w->fn(name, v[i].size, v[i].mtime, w->payload))
				w->stop = 1;
		}
next:
		free(name);
		free(v[i].name);
	}
	free(v);
}

static int nfs_list(vmb_target *t, const char *prefix, vmb_target_list_fn fn,
		    void *payload)
{
	struct walk w = { (struct nfs *)t, prefix, fn, payload, 0, 0 };
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

static int nfs_del(vmb_target *t, const char *name)
{
	struct nfs *n = (struct nfs *)t;
	struct nfs_context *c;
	char *path = obj_path(n, name);
	int r = 0;

	if (!path)
		return VMB_ENOMEM;
	WITH_CONTEXT(n, c, {
		int e = -nfs_unlink(c, path);
		r = 0;
		/* a retry after a lost reply may find it gone: that is
		   the delete we sent */
		if (e == ENOENT && attempt_ > 0)
			e = 0;
		if (e) {
			CHECK_TRANSPORT(e);
			r = fail(n, c, "delete", name, e);
		}
	});
	free(path);
	return r;
}

static int nfs_touch(vmb_target *t, const char *name)
{
	struct nfs *n = (struct nfs *)t;
	struct nfs_context *c;
	char *path = obj_path(n, name);
	int r = 0;

	if (!path)
		return VMB_ENOMEM;
	WITH_CONTEXT(n, c, {
		struct timeval tv[2];
		int e;
		gettimeofday(&tv[0], NULL);
		tv[1] = tv[0];
		e = -nfs_utimes(c, path, tv);
		r = 0;
		if (e) {
			CHECK_TRANSPORT(e);
			r = fail(n, c, "touch", name, e);
		}
	});
	free(path);
	return r;
}

static void nfs_close_target(vmb_target *t)
{
	struct nfs *n = (struct nfs *)t;
	for (int i = 0; i < n->nidle; i++)
		nfs_destroy_context(n->idle[i]);
	pthread_mutex_destroy(&n->lock);
	pthread_cond_destroy(&n->cond);
	free(n->libnfs_url);
	free(n->server);
	free(n->dir);
	free(n->export_path);
	free(n->root);
	free(n->base.url);
	free(n);
}

static const vmb_target_ops nfs_ops = {
	VMB_TARGET_OPS_VERSION, "nfs", nfs_put, nfs_get, nfs_stat_obj,
	nfs_list, nfs_del, nfs_touch, nfs_close_target, NULL /* prefetch */,
};

static long env_long(const char *name, long def, long lo, long hi)
{
	const char *v = getenv(name);
	char *end;
	long x;
	if (!v || !*v)
		return def;
	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return def;
	return x;
}

/*
 * Find the export: mount successively shorter leading parts of n->dir,
 * longest first.  Sets export_path and root; keeps the working context.
 */
static int find_export(struct nfs *n, struct nfs_context **out)
{
	char *p = vmb_strdup(n->dir), why[512] = "";
	int saw_acces = 0, e = 0;

	if (!p)
		return VMB_ENOMEM;
	for (;;) {
		size_t len = strlen(p);
		if (len > 1 || n->version == 3) {
			struct nfs_context *c = new_context(n, len ? p : "/", &e,
							    why, sizeof why);
			if (c) {
				n->export_path = vmb_strdup(len ? p : "/");
				n->root = vmb_asprintf("/%s",
						       n->dir[len] == '/'
							       ? n->dir + len + 1
							       : n->dir + len);
				free(p);
				if (!n->export_path || !n->root) {
					nfs_destroy_context(c);
					return VMB_ENOMEM;
				}
				/* "/" + "" -> "/" is a fine root; drop a
				   trailing slash otherwise */
				size_t rl = strlen(n->root);
				if (rl > 1 && n->root[rl - 1] == '/')
					n->root[rl - 1] = 0;
				if (rl == 1)
					n->root[0] = 0; /* paths: "" + "/name" */
				*out = c;
				return 0;
			}
			if (e == EINVAL && strstr(why, "URL")) {
				free(p);
				return vmb_error_set(VMB_EINVAL, "%s: %s",
						     n->base.url, why);
			}
			/* the server answered "no such folder" or "not an
			   export": try a shorter prefix; anything else means
			   no answer */
			if (e != ENOENT && e != EACCES && e != EPERM &&
			    e != ENOTDIR && e != ESTALE) {
				free(p);
				return vmb_error_set(
					e == ETIMEDOUT ? VMB_ETIMEOUT : VMB_EIO,
					"%s: cannot connect to nfs server %s: "
					"%s (%s)", n->base.url, n->server, why,
					strerror(e));
			}
			if (e == EACCES || e == EPERM)
				saw_acces = 1;
		}
		char *slash = strrchr(p, '/');
		if (!slash || len == 0)
			break;
		*slash = 0;
	}
	free(p);
	(void)saw_acces;
	if (n->version == 4) {
		const char *s = n->dir + 1;
		size_t k = strcspn(s, "/");
		return vmb_error_set(VMB_ENOTFOUND,
				     "%s: export /%.*s not found on %s",
				     n->base.url, (int)k, s, n->server);
	}
	/* NFSv3 servers refuse a mount outside their exports with
	   MNT3ERR_ACCES too, so this is "not found" as far as we can tell */
	return vmb_error_set(VMB_ENOTFOUND, "%s: export %s not found on %s "
			     "(%s)", n->base.url, n->dir, n->server,
			     why[0] ? why : "no leading part of the path "
					    "could be mounted");
}

static int nfs_open_target(const char *url, vmb_target **out)
{
	struct nfs *n;
	struct nfs_context *c = NULL;
	struct nfs_url *u;
	const char *q;
	int r;

	n = vmb_calloc(1, sizeof *n);
	if (!n)
		return VMB_ENOMEM;
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->cond, NULL);
	n->base.ops = &nfs_ops;
	n->base.url = vmb_strdup(url);
	n->libnfs_url = vmb_strdup(url);
	if (!n->base.url || !n->libnfs_url) {
		nfs_close_target(&n->base);
		return VMB_ENOMEM;
	}
	n->version = 3;
	q = strchr(url, '?');
	if (q) {
		const char *v = strstr(q, "version=");
		if (v && (v[-1] == '?' || v[-1] == '&')) {
			if (v[8] == '4' && (v[9] == 0 || v[9] == '&'))
				n->version = 4;
			else if (!(v[8] == '3' && (v[9] == 0 || v[9] == '&'))) {
				nfs_close_target(&n->base);
				return vmb_error_set(VMB_EINVAL, "%s: version "
						     "must be 3 or 4", url);
			}
		}
	}
	n->timeout_ms = (int)env_long("VMB_NFS_TIMEOUT", 60, 1, 3600) * 1000;
	n->max_live = (int)env_long("VMB_NFS_CONNECTIONS", 8, 1, POOL_MAX);
	/* URL syntax through libnfs itself */
	{
		struct nfs_context *pc = nfs_init_context();
		if (!pc) {
			nfs_close_target(&n->base);
			return vmb_error_set(VMB_ENOMEM, "out of memory");
		}
		u = nfs_parse_url_dir(pc, url);
		if (!u || !u->server || !u->path || u->path[0] != '/') {
			r = vmb_error_set(VMB_EINVAL, "%s: invalid NFS URL "
					  "(nfs://HOST/EXPORT/PATH[?version=3|4"
					  "&nfsport=N&mountport=M]): %s", url,
					  nfs_get_error(pc));
			if (u)
				nfs_destroy_url(u);
			nfs_destroy_context(pc);
			nfs_close_target(&n->base);
			return r;
		}
		n->server = vmb_strdup(u->server);
		n->dir = vmb_strdup(u->path);
		nfs_destroy_url(u);
		nfs_destroy_context(pc);
		if (!n->server || !n->dir) {
			nfs_close_target(&n->base);
			return VMB_ENOMEM;
		}
		size_t dl = strlen(n->dir);
		while (dl > 1 && n->dir[dl - 1] == '/')
			n->dir[--dl] = 0;
		for (const char *s = n->dir; *s; s++)
			if (s[0] == '/' && s[1] == '.' &&
			    (s[2] == '/' || !s[2] ||
			     (s[2] == '.' && (s[3] == '/' || !s[3])))) {
				nfs_close_target(&n->base);
				return vmb_error_set(VMB_EINVAL, "%s: '.' and "
						     "'..' are not allowed in "
						     "the path", url);
			}
	}
	r = find_export(n, &c);
	if (r) {
		nfs_close_target(&n->base);
		return r;
	}
	{
		uint64_t wm = nfs_get_writemax(c);
		if (wm < 512)
			wm = 512;
		atomic_store(&n->wmax, (size_t)VMB_MIN(wm, (uint64_t)IO_MAX));
	}
	n->nlive = 1;
	ctx_put(n, c, 0);
	*out = &n->base;
	return 0;
}

const vmb_target_backend vmb_target__nfs_backend = {
	VMB_TARGET_BACKEND_VERSION, "nfs", nfs_open_target
};
