/*
 * Restore: worker threads fetch, authenticate and decompress chunks into a
 * window of slots; the calling thread writes them in order (writers need
 * increasing offsets).  Zero chunks are never fetched and stay holes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vmbackup/sys/disk_format.h"
#include "common/pool.h"
#include "common/util.h"
#include "disk/format.h"
#include "repo_internal.h"

struct slot {
	uint8_t *buf;
	uint64_t idx;
	size_t len;
	int state; /* 0 free/pending, 1 done, 2 failed */
	int rc;
	char msg[1024];
};

/*
 * Unordered writers (raw): each worker fetches and decodes a chunk into a
 * free buffer and queues it; whichever worker finds no write in progress
 * writes queued buffers until the queue is empty.  One write at a time:
 * concurrent pwrites to one file only contend for its inode lock (the
 * waiter spins on a core that could be decoding), and a worker that finds
 * a write in progress goes back to decoding instead.
 */
struct direct {
	pthread_mutex_t lock;
	pthread_cond_t freed;  /* a buffer went back on the free list */
	uint64_t written;
	int err;
	char msg[1024];
	int *free_;            /* slot numbers of free buffers (a stack) */
	int nfree;
	int *queue;            /* decoded, waiting to be written (FIFO) */
	int qhead, qlen, qcap;
	int writing;           /* a worker is draining the queue */
};

struct rctx {
	vmb_repo *r;
	vmb_index *ix;
	struct slot *slots;
	ZSTD_DCtx **dctx;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct direct d;
};

struct rjob {
	struct rctx *c;
	struct slot *s;
	uint64_t idx;            /* unordered mode */
	vmb_disk_writer *w;      /* unordered mode */
};


static void fetch_job(void *arg, int worker)
{
	struct rjob *j = arg;
	struct rctx *c = j->c;
	struct slot *s = j->s;
	size_t got = 0;
	int rc = vmb_repo__read_entry(c->r, c->ix, s->idx, c->dctx[worker],
				      s->buf, &got);
	pthread_mutex_lock(&c->lock);
	s->len = got;
	s->rc = rc;
	if (rc)
		snprintf(s->msg, sizeof s->msg, "%s", vmb_error_message());
	s->state = rc ? 2 : 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->lock);
	free(j);
}

/* Record the first failure of the unordered path (d->lock held). */
static void direct_fail(struct direct *d, int rc)
{
	if (!d->err) {
		d->err = rc;
		snprintf(d->msg, sizeof d->msg, "%s", vmb_error_message());
	}
}

static void direct_job(void *arg, int worker)
{
	struct rjob *j = arg;
	struct rctx *c = j->c;
	struct direct *d = &c->d;
	struct slot *s;
	size_t got = 0;
	int rc = 0, n;

	pthread_mutex_lock(&d->lock);
	while (!d->err && !d->nfree)
		pthread_cond_wait(&d->freed, &d->lock);
	if (d->err) {
		pthread_mutex_unlock(&d->lock);
		goto out;
	}
	n = d->free_[--d->nfree];
	pthread_mutex_unlock(&d->lock);
	s = &c->slots[n];
	rc = vmb_repo__read_entry(c->r, c->ix, j->idx, c->dctx[worker],
				  s->buf, &got);
	s->idx = j->idx;
	s->len = got;
	pthread_mutex_lock(&d->lock);
	if (rc) {
		direct_fail(d, rc);
		d->free_[d->nfree++] = n;
		pthread_cond_broadcast(&d->freed);
		pthread_mutex_unlock(&d->lock);
		goto out;
	}
	d->queue[(d->qhead + d->qlen++) % d->qcap] = n;
	if (d->writing) { /* the worker writing now takes it too */
		pthread_mutex_unlock(&d->lock);
		goto out;
	}
	d->writing = 1;
	while (d->qlen) {
		n = d->queue[d->qhead];
		d->qhead = (d->qhead + 1) % d->qcap;
		d->qlen--;
		s = &c->slots[n];
		rc = 0;
		if (!d->err) {
			pthread_mutex_unlock(&d->lock);
			rc = vmb_disk__writer_write_at(
				j->w, s->idx * c->ix->chunk_size, s->buf,
				s->len);
			pthread_mutex_lock(&d->lock);
		}
		if (rc)
			direct_fail(d, rc);
		else if (!d->err)
			d->written += s->len;
		d->free_[d->nfree++] = n;
		pthread_cond_broadcast(&d->freed);
	}
	d->writing = 0;
	pthread_mutex_unlock(&d->lock);
out:
	free(j);
}

static int restore_disk(vmb_repo *r, const vmb_mdisk *m, const char *path,
			const char *format, const char *subformat,
			int nthreads, const vmb_restore_options *o,
			vmb_progress *p, uint64_t *written)
{
	vmb_index ix;
	vmb_disk_writer *w = NULL;
	vmb_pool *pool = NULL;
	struct rctx c;
	uint64_t *order = NULL, ndata = 0, next_sub = 0;
	int window = nthreads * 2 + 2, rc;
	uint64_t ahead;
	double last = 0;

	memset(&c, 0, sizeof c);
	rc = vmb_repo__load_index(r, m->index, &ix);
	if (rc)
		return rc;
	if (ix.disk_size != m->size || ix.chunk_size != m->chunk_size) {
		vmb_index_free(&ix);
		return vmb_error_set(VMB_ECORRUPT, "index of disk %s does not "
				     "match its manifest", m->name);
	}
	c.r = r;
	c.ix = &ix;
	pthread_mutex_init(&c.lock, NULL);
	pthread_mutex_init(&c.d.lock, NULL);
	pthread_cond_init(&c.d.freed, NULL);
	pthread_cond_init(&c.cv, NULL);
	order = vmb_malloc((ix.count ? ix.count : 1) * sizeof *order);
	c.slots = vmb_calloc((size_t)window, sizeof *c.slots);
	c.dctx = vmb_calloc((size_t)nthreads, sizeof *c.dctx);
	if (!order || !c.slots || !c.dctx) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < ix.count; i++)
		if (ix.e[i].kind != VMB_CHUNK_ZERO)
			order[ndata++] = i;
	/* Reads run this many chunks ahead of the workers (about 64 MiB, at
	 * least the window): a target that can prefetch (local: kernel
	 * readahead into the page cache) keeps that many object reads in
	 * flight, where the workers alone would have one each. */
	ahead = (64u << 20) / (ix.chunk_size ? ix.chunk_size : 1);
	ahead = VMB_MAX(ahead, (uint64_t)window);
	ahead = VMB_MIN(ahead, (uint64_t)64);
	for (uint64_t k = 0; k < ahead && k < ndata; k++)
		vmb_repo__prefetch_entry(r, &ix, order[k]);
	for (int i = 0; i < window; i++)
		if (!(c.slots[i].buf = vmb_malloc(ix.chunk_size))) {
			rc = VMB_ENOMEM;
			goto out;
		}
	for (int i = 0; i < nthreads; i++)
		if (!(c.dctx[i] = ZSTD_createDCtx())) {
			rc = VMB_ENOMEM;
			goto out;
		}
	{
		vmb_disk_writer_options wo = VMB_DISK_WRITER_INIT;
		wo.subformat = subformat;
		if (o->version >= 2 && o->no_sync)
			wo.flags |= VMB_DISK_WRITER_NO_SYNC;
		rc = vmb_disk_writer_create(path, format, ix.disk_size, &wo,
					    &w);
	}
	if (rc)
		goto out;
	rc = vmb_pool_new(nthreads, window, &pool);
	if (rc)
		goto out;
	if (vmb_disk__writer_unordered(w)) {
		/* raw: no ordering; the workers write, one at a time (struct
		 * direct), from a free list of all the window's buffers */
		c.d.free_ = vmb_malloc((size_t)window * sizeof *c.d.free_);
		c.d.queue = vmb_malloc((size_t)window * sizeof *c.d.queue);
		if (!c.d.free_ || !c.d.queue) {
			rc = VMB_ENOMEM;
			goto out;
		}
		for (int i = 0; i < window; i++)
			c.d.free_[c.d.nfree++] = i;
		c.d.qcap = window;
		for (uint64_t k = 0; k < ndata && !c.d.err; k++) {
			struct rjob *j = vmb_malloc(sizeof *j);
			if (!j) {
				rc = VMB_ENOMEM;
				goto out;
			}
			if (k + ahead < ndata)
				vmb_repo__prefetch_entry(r, &ix, order[k + ahead]);
			j->c = &c;
			j->idx = order[k];
			j->w = w;
			vmb_pool_submit(pool, direct_job, j);
			p->bytes_done = (order[k] + 1) * ix.chunk_size;
			pthread_mutex_lock(&c.d.lock);
			p->bytes_written = *written + c.d.written;
			pthread_mutex_unlock(&c.d.lock);
			if (o->progress && vmb_now() - last > 0.2) {
				last = vmb_now();
				if (o->progress(p, o->progress_payload)) {
					rc = vmb_error_set(VMB_ECANCELED,
							   "restore cancelled");
					goto out;
				}
			}
		}
		vmb_pool_wait(pool);
		*written += c.d.written;
		if (c.d.err) {
			rc = vmb_error_set(c.d.err, "%s", c.d.msg);
			goto out;
		}
		rc = vmb_disk_writer_finish(w);
		goto out;
	}
	for (uint64_t k = 0; k < ndata; k++) {
		/* keep the window full */
		while (next_sub < ndata && next_sub < k + (uint64_t)window) {
			struct slot *s = &c.slots[next_sub % (uint64_t)window];
			struct rjob *j = vmb_malloc(sizeof *j);
			if (!j) {
				rc = VMB_ENOMEM;
				goto out;
			}
			if (next_sub + ahead < ndata)
				vmb_repo__prefetch_entry(r, &ix,
							 order[next_sub + ahead]);
			s->idx = order[next_sub];
			s->state = 0;
			j->c = &c;
			j->s = s;
			vmb_pool_submit(pool, fetch_job, j);
			next_sub++;
		}
		struct slot *s = &c.slots[k % (uint64_t)window];
		pthread_mutex_lock(&c.lock);
		while (s->state == 0)
			pthread_cond_wait(&c.cv, &c.lock);
		pthread_mutex_unlock(&c.lock);
		if (s->state == 2) {
			rc = vmb_error_set(s->rc, "%s", s->msg);
			goto out;
		}
		rc = vmb_disk_writer_write(w, s->idx * ix.chunk_size, s->buf,
					   s->len);
		if (rc)
			goto out;
		*written += s->len;
		p->bytes_done = (s->idx + 1) * ix.chunk_size;
		p->bytes_written = *written;
		if (o->progress && vmb_now() - last > 0.2) {
			last = vmb_now();
			if (o->progress(p, o->progress_payload)) {
				rc = vmb_error_set(VMB_ECANCELED,
						   "restore cancelled");
				goto out;
			}
		}
	}
	vmb_pool_wait(pool);
	rc = vmb_disk_writer_finish(w);
out:
	if (pool) {
		vmb_pool_wait(pool);
		vmb_pool_free(pool);
	}
	vmb_disk_writer_free(w); /* removes the file unless finished */
	if (c.slots)
		for (int i = 0; i < window; i++)
			free(c.slots[i].buf);
	if (c.dctx)
		for (int i = 0; i < nthreads; i++)
			ZSTD_freeDCtx(c.dctx[i]);
	free(c.slots);
	free(c.dctx);
	free(c.d.free_);
	free(c.d.queue);
	free(order);
	vmb_index_free(&ix);
	pthread_mutex_destroy(&c.lock);
	pthread_mutex_destroy(&c.d.lock);
	pthread_cond_destroy(&c.d.freed);
	pthread_cond_destroy(&c.cv);
	return rc;
}

static int write_file(const char *path, const char *data)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return vmb_error_set(errno == EEXIST ? VMB_EEXISTS : VMB_EIO,
				     "cannot create %s: %s", path,
				     strerror(errno));
	if (vmb_pwrite_full(fd, data, strlen(data), 0) || fsync(fd)) {
		close(fd);
		unlink(path);
		return vmb_error_set(VMB_EIO, "cannot write %s", path);
	}
	close(fd);
	return 0;
}

VMB_EXTERN(int) vmb_repo_restore(vmb_repo *r, const char *ref,
				 const char *dir,
				 const vmb_restore_options *opts,
				 vmb_restore_result *res)
{
	vmb_restore_options def = VMB_RESTORE_OPTIONS_INIT;
	vmb_snapshot *s = NULL;
	vmb_progress p;
	struct stat st;
	int rc, nthreads;
	double t0 = vmb_now();
	size_t matched = 0;
	char want_fmt[16] = "";
	const char *want_sub = NULL;

	if (!opts)
		opts = &def;
	memset(res, 0, sizeof *res);
	memset(&p, 0, sizeof p);
	p.phase = "restore";
	if (opts->format &&
	    vmb_disk_format_parse(opts->format, want_fmt, &want_sub))
		return vmb_error_code();
	rc = vmb_repo_snapshot_find(r, ref, &s);
	if (rc)
		return rc;
	if (stat(dir, &st) != 0) {
		/* a new host's restore target may not exist at all yet */
		rc = vmb_mkdir_p(dir, 0700);
		if (rc)
			goto out;
	} else if (!S_ISDIR(st.st_mode)) {
		rc = vmb_error_set(VMB_EINVAL, "%s is not a folder", dir);
		goto out;
	}
	for (size_t i = 0; i < s->ndisks; i++)
		if (!opts->disk || strcmp(opts->disk, s->disks[i].name) == 0)
			p.bytes_total += s->disks[i].size;
	nthreads = vmb_repo__threads(r, opts->threads);
	for (size_t i = 0; i < s->ndisks; i++) {
		const vmb_mdisk *m = &s->disks[i];
		const char *fmt = opts->format ? want_fmt : m->format;
		char *path;
		if (opts->disk && strcmp(opts->disk, m->name) != 0)
			continue;
		matched++;
		if (!vmb_disk_format_extension(fmt))
			fmt = "raw"; /* source format we cannot write */
		path = vmb_asprintf("%s/%s.%s", dir, m->name,
				    vmb_disk_format_extension(fmt));
		if (!path) {
			rc = VMB_ENOMEM;
			goto out;
		}
		p.item = m->name;
		rc = restore_disk(r, m, path, fmt, opts->format ? want_sub : NULL,
				  nthreads, opts, &p,
				  &res->bytes_written);
		if (rc)
			vmb_error_prefix("snapshot %s disk %s: ", s->id, m->name);
		free(path);
		if (rc)
			goto out;
		res->disks++;
		res->bytes_total += m->size;
	}
	if (opts->disk && !matched) {
		rc = vmb_error_set(VMB_ENOTFOUND, "snapshot %s has no disk '%s'",
				   s->id, opts->disk);
		goto out;
	}
	if (s->config && *s->config) {
		int xml = s->config_format &&
			  strstr(s->config_format, "xml") != NULL;
		char *cp = vmb_asprintf("%s/%s.%s", dir, s->vm,
					xml ? "xml" : "conf");
		if (!cp) {
			rc = VMB_ENOMEM;
			goto out;
		}
		rc = write_file(cp, s->config);
		free(cp);
		if (rc)
			goto out;
	}
	res->seconds = vmb_now() - t0;
	if (opts->progress) {
		p.bytes_done = p.bytes_total;
		opts->progress(&p, opts->progress_payload);
	}
out:
	vmb_snapshot_free(s);
	return rc;
}
