/*
 * The backup pipeline.  The calling thread walks each disk's allocation
 * map and reads only allocated data, one chunk at a time; worker threads
 * fingerprint, hash, compress and seal in parallel and hand each sealed
 * blob to a second, store stage (max(threads, 4) threads) that uploads
 * it, so workers never sit idle in fsync or network waits.  Queues and
 * buffers are bounded, so memory stays at about (threads * 2 + 2) chunks
 * plus (max(threads, 4) + threads) sealed blobs whatever the disk size.
 * The manifest is written last, after every upload has finished.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common/pool.h"
#include "common/util.h"
#include "cbt/cbt.h"
#include "common/json.h"
#include "disk/format.h"
#include "lease.h"
#include "repo_internal.h"

struct worker_state {
	ZSTD_CCtx *cctx;
};

/* A first backup compares its chunks with up to this many other disks */
#define VMB_MAX_REFS 4

struct bctx {
	vmb_repo *r;
	vmb_index *ix;          /* index being built */
	const vmb_index *parent; /* parent's index of this disk or NULL */
	const uint8_t *changed;  /* CBT plan: 0 = unchanged since parent */
	const vmb_cbt_range *ranges; /* CBT plan: changed ranges, or NULL */
	size_t nranges, rcur;
	struct worker_state *ws;
	size_t outcap;
	/* buffer free list */
	pthread_mutex_t lock;
	pthread_cond_t buf_cv;
	uint8_t **bufs;
	int nfree;
	/* sealed blob buffers, handed from the workers to the store stage */
	pthread_cond_t obuf_cv;
	uint8_t **obufs;
	int nofree;
	vmb_pool *store;        /* store stage: uploads sealed blobs */
	vmb_pool *workers;      /* hash, compress, seal */
	vmb_pool *readers;      /* patch runs: scattered reads in parallel */
	uint8_t *mine;          /* per chunk: uploaded by this run */
	const vmb_idset *damaged; /* chunks verify found damaged */
	/* page maps (pagemap.c): this disk's, being written; the parent's
	 * (carried forward for chunks change tracking skips or patches);
	 * and the references whose pages a new chunk is compared with, each
	 * with its index: the parent, or similar disks of other VMs (the
	 * chunk picks the one it differs from least) */
	vmb_pagemap *newmap;
	const vmb_pagemap *parentmap;
	struct refsrc {
		const vmb_index *ix;
		const vmb_pagemap *map;
	} refs[VMB_MAX_REFS];
	int nrefs;
	uint64_t bytes_like; /* chunk bytes stored as patches over refs */
	/* stats (under lock) */
	uint64_t bytes_new, bytes_stored, chunks_new, fp_reused;
	uint64_t bytes_allocated; /* whole chunks that held data */
	uint64_t precompressed; /* stored from vmb_repo_prefetch()'s work */
	const char *path;       /* this disk's image path, or NULL */
	/* first error */
	int err;
	char errmsg[1024];
};

struct job {
	struct bctx *c;
	uint64_t idx;
	uint32_t len;
	int patch; /* buf holds a patch's run bytes (index entry set) */
	int like;  /* ... made by like_ref() from a whole chunk */
	uint8_t *buf;
	/* patches, until read: where the runs are */
	vmb_disk *d;
	uint64_t off;
	vmb_index_run *runs;
	uint32_t nruns;
	/* read and compressed by vmb_repo_prefetch(), or NULL */
	const struct vmb_spec_ent *pre;
	/* whole chunks, until read: their data extents */
	struct chunk_map *map;
};

static uint8_t *get_buf(struct bctx *c)
{
	uint8_t *b;
	pthread_mutex_lock(&c->lock);
	while (!c->nfree)
		pthread_cond_wait(&c->buf_cv, &c->lock);
	b = c->bufs[--c->nfree];
	pthread_mutex_unlock(&c->lock);
	return b;
}

static void put_buf(struct bctx *c, uint8_t *b)
{
	pthread_mutex_lock(&c->lock);
	c->bufs[c->nfree++] = b;
	pthread_cond_signal(&c->buf_cv);
	pthread_mutex_unlock(&c->lock);
}

static uint8_t *get_obuf(struct bctx *c)
{
	uint8_t *b;
	pthread_mutex_lock(&c->lock);
	while (!c->nofree)
		pthread_cond_wait(&c->obuf_cv, &c->lock);
	b = c->obufs[--c->nofree];
	pthread_mutex_unlock(&c->lock);
	return b;
}

static void put_obuf(struct bctx *c, uint8_t *b)
{
	pthread_mutex_lock(&c->lock);
	c->obufs[c->nofree++] = b;
	pthread_cond_signal(&c->obuf_cv);
	pthread_mutex_unlock(&c->lock);
}

static void set_err(struct bctx *c, int rc)
{
	pthread_mutex_lock(&c->lock);
	if (!c->err) {
		c->err = rc;
		snprintf(c->errmsg, sizeof c->errmsg, "%s",
			 vmb_error_message());
	}
	pthread_mutex_unlock(&c->lock);
}

struct store_job {
	struct bctx *c;
	uint64_t idx;
	uint32_t len;
	int heal;
	int like; /* a patch over the reference made by like_ref() */
	uint8_t *blob;
	size_t n;
	char name[80];
};

/* Store stage: upload one sealed chunk blob. */
static void store_job(void *arg, int worker)
{
	struct store_job *s = arg;
	struct bctx *c = s->c;
	int rc;

	(void)worker;
	if (c->err)
		goto out;
	rc = vmb_repo__put_object(c->r, VMB_BLOB_CHUNK, s->name,
				  c->ix->e[s->idx].id, 32,
				  s->blob, s->n);
	if (rc) {
		set_err(c, rc);
		goto out;
	}
	pthread_mutex_lock(&c->lock);
	c->bytes_new += s->len;
	c->bytes_stored += s->n;
	c->chunks_new++;
	if (s->like)
		c->bytes_like += s->len;
	c->mine[s->idx] = 1;
	pthread_mutex_unlock(&c->lock);
	if (s->heal) {
		char dname[80];
		snprintf(dname, sizeof dname, "damaged/%s", s->name + 10);
		vmb_target_delete(c->r->t, dname);
		vmb_log(VMB_LOG_INFO, "healed damaged chunk %s", s->name + 10);
	}
out:
	put_obuf(c, s->blob);
	free(s);
}

/* Merge two increasing run lists into @out (touching runs joined).
 * @return the count, or -1 past VMB_INDEX_MAX_RUNS. */
static int merge_runs(const vmb_index_run *a, uint32_t na,
		      const vmb_index_run *b, uint32_t nb, vmb_index_run *out);

/* 1 if entry @i of @ix references a chunk verify found damaged. */
static int entry_damaged(const struct bctx *c, const vmb_index *ix,
			 uint64_t i)
{
	const uint8_t *ids[2];
	int n = vmb_index_ids(ix, i, ids);
	for (int k = 0; k < n; k++)
		if (vmb_idset_has(c->damaged, ids[k]))
			return 1;
	return 0;
}

/* Reference @x's page fingerprints of @j's chunk, or NULL if it has
 * none to compare with (another length, not in the map, damaged). */
static const uint8_t *ref_pages(const struct bctx *c, int x,
				const struct job *j)
{
	const vmb_index *ref = c->refs[x].ix;
	if (j->idx >= ref->count ||
	    vmb_index_chunk_len(ref, j->idx) != j->len ||
	    entry_damaged(c, ref, j->idx))
		return NULL;
	return vmb_pagemap_get(c->refs[x].map, j->idx);
}

/*
 * A chunk the repository does not have, whose page fingerprints are
 * @pages, against each reference's chunk at the same place: what a patch
 * over that reference's base would hold is the pages whose fingerprints
 * differ plus the runs the reference itself patched over its base (the
 * base's pages there are not in the map).  The reference with the
 * fewest such bytes wins (the first one on a tie).  If that is at most
 * half of the chunk, those pages move to the front of the buffer and the
 * entry becomes a patch over the winner's base.  Up to 7/8 of the chunk
 * it does too when all but half of it are pages no other reference has
 * either (this disk's own data, a large file written over the chunk):
 * storing it whole would store the rest of the chunk again.  Past half
 * otherwise, the chunk is stored whole: it becomes the base the next
 * disks patch over (the first clone's large changes, undone).  A chunk
 * equal to a reference's page for page takes that reference's entry.
 * The fingerprints are keyed (the guest cannot aim a collision) and 128
 * bits wide, as for the reuse of a parent's chunk id.  @return 1 made a
 * patch, 2 copied an entry, 0 store the chunk whole, or an error.
 */
static int like_ref(struct bctx *c, struct job *j, const uint8_t *pages)
{
	static _Thread_local vmb_index_run diff[VMB_INDEX_MAX_RUNS],
		all[VMB_INDEX_MAX_RUNS], best[VMB_INDEX_MAX_RUNS];
	const uint8_t *best_base = NULL, *best_rp = NULL;
	uint32_t half = j->len / 2;
	uint32_t limit = c->nrefs > 1 ? j->len - j->len / 8 : half;
	uint64_t best_total = (uint64_t)limit + 1, total;
	int nbest = 0, best_x = -1, rc;
	const uint8_t *rps[VMB_MAX_REFS];

	for (int x = 0; x < c->nrefs; x++)
		rps[x] = ref_pages(c, x, j);
	for (int x = 0; x < c->nrefs; x++) {
		const vmb_index *ref = c->refs[x].ix;
		const vmb_index_patch *pp;
		const uint8_t *rp, *base = NULL;
		uint32_t nd = 0;
		int nall, over = 0;

		if (!(rp = rps[x]))
			continue;
		pp = vmb_index_patch_of(ref, j->idx);
		if (ref->e[j->idx].kind == VMB_CHUNK_DATA)
			base = ref->e[j->idx].id;
		else if (pp && !vmb_index_id_is_zero(pp->base))
			base = pp->base;
		if (!base)
			continue;
		total = 0;
		for (uint32_t off = 0, p = 0; off < j->len;
		     off += VMB_PAGE_BYTES, p++) {
			uint32_t n = j->len - off < VMB_PAGE_BYTES ?
				     j->len - off : VMB_PAGE_BYTES;
			if (!memcmp(pages + (size_t)p * 16, rp + (size_t)p * 16,
				    16))
				continue;
			/* past half, or no better than the best so far */
			if ((total += n) >= best_total ||
			    (nd == VMB_INDEX_MAX_RUNS &&
			     diff[nd - 1].off + diff[nd - 1].len != off)) {
				over = 1;
				break;
			}
			if (nd && diff[nd - 1].off + diff[nd - 1].len == off) {
				diff[nd - 1].len += n;
				continue;
			}
			diff[nd].off = off;
			diff[nd++].len = n;
		}
		if (over)
			continue;
		if (!nd) {
			/* the reference's chunk to the page: its entry, no
			 * hashing and nothing stored */
			pthread_mutex_lock(&c->lock);
			rc = vmb_index_copy_entry(c->ix, ref, j->idx);
			pthread_mutex_unlock(&c->lock);
			return rc ? rc : 2;
		}
		nall = merge_runs(diff, nd, pp ? pp->runs : NULL,
				  pp ? pp->nruns : 0, all);
		if (nall <= 0)
			continue;
		total = 0;
		for (int k = 0; k < nall; k++)
			total += all[k].len;
		if (total >= best_total)
			continue;
		memcpy(best, all, (size_t)nall * sizeof *all);
		nbest = nall;
		best_total = total;
		best_base = base;
		best_rp = rp;
		best_x = x;
	}
	if (!nbest)
		return 0; /* most of it: a whole new chunk is better */
	if (best_total > half) {
		/* past half: only if what is not this disk's own (pages some
		 * other reference has too, the winner's runs) is at most half */
		uint64_t own = 0;
		int others = 0;
		for (int x = 0; x < c->nrefs; x++)
			others += x != best_x && rps[x];
		for (uint32_t off = 0, p = 0; others && off < j->len;
		     off += VMB_PAGE_BYTES, p++) {
			const uint8_t *fp = pages + (size_t)p * 16;
			int known = 0;
			if (!memcmp(fp, best_rp + (size_t)p * 16, 16))
				continue;
			for (int x = 0; x < c->nrefs && !known; x++)
				known = x != best_x && rps[x] &&
					!memcmp(fp, rps[x] + (size_t)p * 16, 16);
			if (!known)
				own += j->len - off < VMB_PAGE_BYTES ?
				       j->len - off : VMB_PAGE_BYTES;
		}
		if (best_total - own > half)
			return 0;
	}
	total = 0;
	for (int k = 0; k < nbest; k++) {
		/* runs increase: each moves down (or stays) */
		memmove(j->buf + total, j->buf + best[k].off, best[k].len);
		total += best[k].len;
	}
	pthread_mutex_lock(&c->lock);
	rc = vmb_index_set_patch(c->ix, j->idx, best_base, best,
				 (uint32_t)nbest);
	pthread_mutex_unlock(&c->lock);
	if (rc)
		return rc;
	j->len = (uint32_t)total;
	j->patch = 1;
	j->like = 1;
	return 1;
}

static void chunk_job(void *arg, int worker)
{
	struct job *j = arg;
	struct bctx *c = j->c;
	vmb_repo *r = c->r;
	vmb_index_entry *e = &c->ix->e[j->idx];
	struct worker_state *ws = &c->ws[worker];
	int rc = 0, fresh;

	if (c->err)
		goto out;
	if (j->patch)
		goto store; /* kind, base and runs set by the reader */
	if (vmb_is_zero(j->buf, j->len)) {
		e->kind = VMB_CHUNK_ZERO;
		goto out;
	}
	e->kind = VMB_CHUNK_DATA;
	uint8_t *pages = vmb_pagemap_slot(c->newmap, j->idx);
	if (pages) {
		vmb_pagemap_hash(r->keys, j->buf, j->len, pages);
		vmb_pagemap_set_valid(c->newmap, j->idx, 1);
	}
	/* the whole-chunk fingerprint only serves a whole DATA entry (a
	 * patch's is zero, a copied entry brings the reference's): hashed
	 * first only when the parent has a chunk to compare it with, else
	 * after the page map found no patch (a clone's chunks are nearly
	 * all patches: one pass over each chunk fewer) */
	int parent_data = c->parent && j->idx < c->parent->count &&
			  c->parent->e[j->idx].kind == VMB_CHUNK_DATA &&
			  vmb_index_chunk_len(c->parent, j->idx) == j->len;
	if (parent_data || !pages || !c->nrefs)
		vmb_crypto_fingerprint(r->keys, j->buf, j->len, e->fp);
	if (parent_data &&
	    memcmp(c->parent->e[j->idx].fp, e->fp, 16) == 0 &&
	    !vmb_idset_has(c->damaged, c->parent->e[j->idx].id)) {
		/* unchanged since the parent: reuse its id, no BLAKE2b */
		memcpy(e->id, c->parent->e[j->idx].id, 32);
		pthread_mutex_lock(&c->lock);
		c->fp_reused++;
		pthread_mutex_unlock(&c->lock);
		goto out;
	}
	if (pages && c->nrefs) {
		/* changed since the reference (or there is no parent): maybe
		 * only some of its pages did; then only those are hashed and
		 * stored, as a patch over the reference's chunk */
		rc = like_ref(c, j, pages);
		if (rc < 0)
			goto fail;
		if (rc == 2)
			goto out;
		if (rc == 0 && !parent_data)
			vmb_crypto_fingerprint(r->keys, j->buf, j->len, e->fp);
	}
store:
	vmb_crypto_chunk_id(r->keys, j->buf, j->len, e->id);
	char name[80];
	uint64_t sz;
	int heal = vmb_idset_has(c->damaged, e->id);
	vmb_chunk_name(e->id, name);
	pthread_mutex_lock(&r->known_lock);
	fresh = vmb_idset_add(&r->known, e->id);
	pthread_mutex_unlock(&r->known_lock);
	if (fresh < 0) {
		rc = VMB_ENOMEM;
		goto fail;
	}
	if (!heal) {
		if (!fresh)
			goto out;
		rc = vmb_target_stat(r->t, name, &sz, NULL);
		if (rc == 0)
			goto out; /* stored by an earlier (maybe killed) run */
		if (rc != VMB_ENOTFOUND)
			goto fail;
	}
	struct store_job *s = vmb_malloc(sizeof *s);
	if (!s) {
		rc = VMB_ENOMEM;
		goto fail;
	}
	s->c = c;
	s->idx = j->idx;
	s->len = j->len;
	s->like = j->like;
	s->heal = heal;
	memcpy(s->name, name, sizeof s->name);
	s->blob = get_obuf(c);
	if (j->pre && !j->patch) {
		/* buf is still the chunk prefetch compressed */
		size_t zlen;
		const uint8_t *z = vmb_repo__spec_payload(j->pre, &zlen);
		rc = vmb_blob_encode_compressed(r->keys, VMB_BLOB_CHUNK, e->id,
						32, j->buf, j->len, z, zlen,
						s->blob, &s->n);
		pthread_mutex_lock(&c->lock);
		c->precompressed++;
		pthread_mutex_unlock(&c->lock);
	} else {
		rc = vmb_blob_encode(r->keys, VMB_BLOB_CHUNK, e->id, 32,
				     j->buf, j->len, r->zstd_level, ws->cctx,
				     s->blob, &s->n);
	}
	if (rc) {
		put_obuf(c, s->blob);
		free(s);
		goto fail;
	}
	/* never blocks: the store queue holds as many jobs as there are
	 * blob buffers */
	vmb_pool_submit(c->store, store_job, s);
	goto out;
fail:
	/* do not let the known set claim a chunk that never got stored */
	set_err(c, rc);
out:
	put_buf(c, j->buf);
	free(j);
}

static int chunk_map_cb(const vmb_extent *e, void *payload)
{
	struct chunk_map *m = payload;
	if (e->kind != VMB_EXTENT_DATA)
		return 0;
	m->has_data = 1;
	if (m->n == 64) {
		m->overflow = 1; /* too fragmented: read the whole chunk */
		return 1;
	}
	m->ext[m->n++] = *e;
	return 0;
}

int vmb_repo__chunk_map(vmb_disk *d, uint64_t off, uint32_t len,
			struct chunk_map *m)
{
	memset(m, 0, sizeof *m);
	return vmb_disk_map(d, off, len, chunk_map_cb, m);
}

int vmb_repo__chunk_read(vmb_disk *d, const struct chunk_map *m, uint64_t off,
			 uint32_t len, uint8_t *buf, uint64_t *bytes_read)
{
	uint64_t pos = off, end = off + len;
	int rc = 0;
	if (m->overflow) {
		rc = vmb_disk_read(d, buf, off, len);
	} else {
		for (int k = 0; k < m->n && !rc; k++) {
			const vmb_extent *e = &m->ext[k];
			if (e->offset > pos)
				memset(buf + (pos - off), 0, e->offset - pos);
			rc = vmb_disk_read(d, buf + (e->offset - off),
					   e->offset, e->length);
			pos = e->offset + e->length;
		}
		if (!rc && pos < end)
			memset(buf + (pos - off), 0, end - pos);
	}
	if (bytes_read)
		*bytes_read = vmb_repo__chunk_map_bytes(m, len);
	return rc;
}

uint64_t vmb_repo__chunk_map_bytes(const struct chunk_map *m, uint32_t len)
{
	uint64_t n = 0;
	if (m->overflow)
		return len;
	for (int k = 0; k < m->n; k++)
		n += m->ext[k].length;
	return n;
}

VMB_EXTERN(char *) vmb_repo_disk_name(const char *path)
{
	const char *base = strrchr(path, '/');
	char *n, *dot;
	base = base ? base + 1 : path;
	n = vmb_strdup(*base ? base : "disk");
	if (!n)
		return NULL;
	dot = strrchr(n, '.');
	if (dot && dot != n)
		*dot = 0;
	for (char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
		      *p == '-'))
			*p = '_';
	if (n[0] == '.')
		n[0] = '_';
	return n;
}

struct keepalive;
static int keep_alive(struct keepalive *k, int force);

struct progress_state {
	struct keepalive *ka;
	const vmb_backup_options *o;
	double last;
	vmb_progress p;
};

static int report(struct progress_state *ps, int force)
{
	double now = vmb_now();
	if (!ps->o->progress || (!force && now - ps->last < 0.2))
		return 0;
	ps->last = now;
	if (ps->o->progress(&ps->p, ps->o->progress_payload))
		return vmb_error_set(VMB_ECANCELED, "backup cancelled");
	return 0;
}

/*
 * The page fingerprints of a chunk read as a patch (@j's runs, their
 * bytes in j->buf): the parent's outside the runs, new ones inside.
 * Unknown (so never a reference) unless the parent's are known and the
 * runs fall on page boundaries.
 */
static void patch_pages(struct bctx *c, const struct job *j)
{
	uint8_t *out = vmb_pagemap_slot(c->newmap, j->idx);
	const uint8_t *in = vmb_pagemap_get(c->parentmap, j->idx);
	uint32_t clen = vmb_index_chunk_len(c->ix, j->idx);
	uint64_t pos = 0;
	if (!out || !in)
		return;
	for (uint32_t k = 0; k < j->nruns; k++) {
		uint64_t end = (uint64_t)j->runs[k].off + j->runs[k].len;
		if (j->runs[k].off % VMB_PAGE_BYTES ||
		    (end % VMB_PAGE_BYTES && end != clen))
			return;
	}
	memcpy(out, in, (size_t)((clen + VMB_PAGE_BYTES - 1) / VMB_PAGE_BYTES) * 16);
	for (uint32_t k = 0; k < j->nruns; k++) {
		vmb_pagemap_hash(c->r->keys, j->buf + pos, j->runs[k].len,
				 out + (size_t)(j->runs[k].off / VMB_PAGE_BYTES) * 16);
		pos += j->runs[k].len;
	}
	vmb_pagemap_set_valid(c->newmap, j->idx, 1);
}

/* Read stage of a patch: its runs, often scattered over the disk, are
 * read by a pool of their own so that several reads are in flight. */
static void read_job(void *arg, int worker)
{
	struct job *j = arg;
	struct bctx *c = j->c;
	uint64_t pos = 0;
	int rc = 0;
	(void)worker;
	for (uint32_t k = 0; k < j->nruns && !rc && !c->err; k++) {
		rc = vmb_disk_read(j->d, j->buf + pos, j->off + j->runs[k].off,
				   j->runs[k].len);
		pos += j->runs[k].len;
	}
	if (!rc)
		patch_pages(c, j);
	free(j->runs);
	j->runs = NULL;
	if (rc)
		set_err(c, rc);
	if (rc || c->err) {
		put_buf(c, j->buf);
		free(j);
		return;
	}
	vmb_pool_submit(c->workers, chunk_job, j);
}

/* Read stage of a whole chunk: its data extents, zeros between them.
 * Run by the readers' pool, so that several reads are in flight: a raw
 * image is read with O_DIRECT, which has no readahead to keep the
 * device busy while this thread waits (docs/benchmarks.md, issue 15). */
static void whole_job(void *arg, int worker)
{
	struct job *j = arg;
	struct bctx *c = j->c;
	struct chunk_map *m = j->map;
	int rc = 0;
	(void)worker;
	if (c->err)
		rc = c->err;
	else
		rc = vmb_repo__chunk_read(j->d, m, j->off, j->len, j->buf,
					  NULL);
	free(m);
	j->map = NULL;
	if (rc) {
		if (!c->err)
			set_err(c, rc);
		put_buf(c, j->buf);
		free(j);
		return;
	}
	vmb_pool_submit(c->workers, chunk_job, j);
}

/* 1 if an entry of the parent references a chunk verify found damaged. */
static int parent_damaged(const struct bctx *c, uint64_t i)
{
	return entry_damaged(c, c->parent, i);
}

/* Merge two increasing run lists into @out (touching runs joined).
 * @return the count, or -1 past VMB_INDEX_MAX_RUNS. */
static int merge_runs(const vmb_index_run *a, uint32_t na,
		      const vmb_index_run *b, uint32_t nb, vmb_index_run *out)
{
	uint32_t i = 0, k = 0;
	int n = 0;
	while (i < na || k < nb) {
		vmb_index_run x = (k >= nb || (i < na && a[i].off <= b[k].off))
					  ? a[i++] : b[k++];
		if (n && x.off <= out[n - 1].off + out[n - 1].len) {
			uint64_t end = (uint64_t)x.off + x.len;
			vmb_index_run *l = &out[n - 1];
			if (end > (uint64_t)l->off + l->len)
				l->len = (uint32_t)(end - l->off);
			continue;
		}
		if (n == VMB_INDEX_MAX_RUNS)
			return -1;
		out[n++] = x;
	}
	return n;
}

/*
 * Change tracking says chunk @i changed and knows where: if only a small
 * part of it did (with what earlier patches since its base replaced, at
 * most half), read just those ranges and queue a patch over the
 * parent's base instead of the whole chunk.  @return 1 queued, 0 not a
 * case for a patch (read the chunk whole), or an error.
 */
static int try_patch(struct bctx *c, vmb_pool *pool, vmb_disk *d,
		     uint64_t i, uint64_t off, uint32_t len,
		     uint64_t *bytes_read)
{
	static _Thread_local vmb_index_run mine[VMB_INDEX_MAX_RUNS],
		all[VMB_INDEX_MAX_RUNS];
	const vmb_index_patch *pp;
	const vmb_index_entry *pe;
	const uint8_t *base = NULL;
	uint32_t nmine = 0;
	uint64_t total = 0;
	int nall, rc;
	struct job *j;

	if (!c->ranges || !c->parent || i >= c->parent->count ||
	    vmb_index_chunk_len(c->parent, i) != len || parent_damaged(c, i))
		return 0;
	pe = &c->parent->e[i];
	pp = vmb_index_patch_of(c->parent, i);
	if (pe->kind == VMB_CHUNK_DATA)
		base = pe->id;
	else if (pp && !vmb_index_id_is_zero(pp->base))
		base = pp->base;
	/* the changed ranges inside this chunk */
	while (c->rcur < c->nranges &&
	       c->ranges[c->rcur].off + c->ranges[c->rcur].len <= off)
		c->rcur++;
	for (size_t k = c->rcur; k < c->nranges &&
	     c->ranges[k].off < off + len; k++) {
		uint64_t a = c->ranges[k].off > off ? c->ranges[k].off : off;
		uint64_t b = c->ranges[k].off + c->ranges[k].len;
		if (b > off + len)
			b = off + len;
		if (nmine == VMB_INDEX_MAX_RUNS)
			return 0;
		mine[nmine].off = (uint32_t)(a - off);
		mine[nmine++].len = (uint32_t)(b - a);
	}
	if (!nmine)
		return 0;
	nall = merge_runs(mine, nmine, pp ? pp->runs : NULL,
			  pp ? pp->nruns : 0, all);
	if (nall <= 0)
		return 0;
	for (int k = 0; k < nall; k++)
		total += all[k].len;
	if (total > len / 2)
		return 0; /* most of it: a whole new chunk is better */
	pthread_mutex_lock(&c->lock); /* workers make patches too */
	rc = vmb_index_set_patch(c->ix, i, base, all, (uint32_t)nall);
	pthread_mutex_unlock(&c->lock);
	if (rc)
		return rc;
	if (!c->readers && (rc = vmb_pool_new(8, 16, &c->readers)))
		return rc;
	if (!(j = vmb_calloc(1, sizeof *j)) ||
	    !(j->runs = vmb_malloc((size_t)nall * sizeof *all))) {
		free(j);
		return VMB_ENOMEM;
	}
	memcpy(j->runs, all, (size_t)nall * sizeof *all);
	j->nruns = (uint32_t)nall;
	j->c = c;
	j->idx = i;
	j->len = (uint32_t)total;
	j->patch = 1;
	j->d = d;
	j->off = off;
	j->buf = get_buf(c);
	*bytes_read += total;
	(void)pool;
	vmb_pool_submit(c->readers, read_job, j);
	return 1;
}

/* Back up one disk into c->ix.  Returns 0 or an error. */
static int backup_disk(struct bctx *c, vmb_pool *pool, vmb_disk *d,
		       struct progress_state *ps, uint64_t *bytes_read)
{
	vmb_index *ix = c->ix;
	int rc = 0;
	for (uint64_t i = 0; i < ix->count && !c->err; i++) {
		uint64_t off = i * ix->chunk_size;
		uint32_t len = vmb_index_chunk_len(ix, i);
		struct job *j;
		if (c->changed && !c->changed[i] && !parent_damaged(c, i)) {
			/* change tracking says untouched: the parent's entry */
			pthread_mutex_lock(&c->lock); /* workers make patches */
			rc = vmb_index_copy_entry(ix, c->parent, i);
			pthread_mutex_unlock(&c->lock);
			if (rc)
				return rc;
			const uint8_t *pf = vmb_pagemap_get(c->parentmap, i);
			uint8_t *nf = vmb_pagemap_slot(c->newmap, i);
			if (pf && nf) {
				memcpy(nf, pf, (size_t)((len + VMB_PAGE_BYTES - 1) /
						       VMB_PAGE_BYTES) * 16);
				vmb_pagemap_set_valid(c->newmap, i, 1);
			}
			ps->p.bytes_done += len;
			continue;
		}
		if (c->changed && c->ranges) {
			rc = try_patch(c, pool, d, i, off, len, bytes_read);
			if (rc < 0)
				return rc;
			if (rc == 1) {
				c->bytes_allocated += len;
				ps->p.bytes_done += len;
				ps->p.bytes_read = *bytes_read;
				if ((rc = report(ps, 0)) ||
				    (rc = keep_alive(ps->ka, 0)))
					return rc;
				continue;
			}
		}
		struct chunk_map *m = vmb_calloc(1, sizeof *m);
		if (!m)
			return VMB_ENOMEM;
		rc = vmb_repo__chunk_map(d, off, len, m);
		if (rc) {
			free(m);
			return rc;
		}
		ps->p.bytes_done += len;
		if (!m->has_data) {
			ix->e[i].kind = VMB_CHUNK_ZERO; /* never read */
			free(m);
		} else {
			c->bytes_allocated += len;
			if (!c->readers && (rc = vmb_pool_new(8, 16, &c->readers))) {
				free(m);
				return rc;
			}
			j = vmb_calloc(1, sizeof *j);
			if (!j) {
				free(m);
				return VMB_ENOMEM;
			}
			j->c = c;
			j->idx = i;
			j->len = len;
			j->d = d;
			j->off = off;
			j->buf = get_buf(c);
			j->pre = c->r->spec ? vmb_repo__spec_take(c->r, c->path,
					vmb_disk_size(d), off, len,
					c->r->zstd_level, j->buf, bytes_read)
					    : NULL;
			if (j->pre) {
				/* read during the key derivation */
				free(m);
				vmb_pool_submit(pool, chunk_job, j);
			} else {
				*bytes_read += vmb_repo__chunk_map_bytes(m, len);
				j->map = m;
				vmb_pool_submit(c->readers, whole_job, j);
			}
		}
		ps->p.bytes_read = *bytes_read;
		if ((rc = report(ps, 0)) || (rc = keep_alive(ps->ka, 0)))
			return rc;
	}
	return 0;
}


struct keepalive {
	vmb_repo *r;
	const char *session;
	const char *vm_lock;
	char *vm_token;
	double last;
};

/* Refresh the session marker and the VM lease about once a minute, so
 * GC and other hosts see this backup alive. */
static int keep_alive(struct keepalive *k, int force)
{
	double now = vmb_now();
	int rc;
	if (!force && now - k->last < 60)
		return 0;
	k->last = now;
	rc = vmb_target_touch(k->r->t, k->session);
	if (rc == VMB_ENOTSUP) {
		vmb_error_clear();
		rc = 0;
	}
	if (!rc && k->vm_lock)
		rc = vmb_lease_take(k->r, k->vm_lock, 300, "the VM", k->vm_token);
	return rc;
}

static void read_epoch(vmb_repo *r, char out[65])
{
	void *ep = NULL;
	size_t n;
	snprintf(out, 65, "0");
	if (vmb_target_get(r->t, "state/gc-epoch", &ep, &n) == 0) {
		n = n < 64 ? n : 64;
		memcpy(out, ep, n);
		out[n] = 0;
		free(ep);
	}
	vmb_error_clear();
}

/* Is a maintenance lease (GC, prune) live right now? */
static int maintenance_running(vmb_repo *r)
{
	void *data = NULL;
	size_t len;
	vmb_json *j = NULL;
	int64_t exp = 0;
	if (vmb_target_get(r->t, "locks/maintenance", &data, &len) != 0) {
		vmb_error_clear();
		return 0;
	}
	if (len < 4096 && vmb_json_parse(data, len, "lock", &j) == 0)
		vmb_json_i64(j, "expires", &exp);
	vmb_json_free(j);
	free(data);
	return exp > (int64_t)time(NULL);
}

/*
 * After the manifest is written: if a GC overlapped this backup, wait for
 * it to end, then make sure every chunk this backup reused without
 * uploading still exists; re-read and re-upload any that a GC removed
 * (docs/gc.md).  Fails, removing the manifest, if the source no longer
 * has the same data.
 */
static int end_check(vmb_repo *r, const char *start_epoch,
		     const char *manifest, vmb_index *ixs, uint8_t **mine,
		     vmb_disk **disks, size_t nd, struct keepalive *ka)
{
	char now_epoch[65];
	vmb_idset seen;
	ZSTD_CCtx *cctx = NULL;
	uint8_t *buf = NULL, *out = NULL;
	int rc = 0, waited = 0;

	read_epoch(r, now_epoch);
	if (strcmp(now_epoch, start_epoch) == 0 && !maintenance_running(r))
		return 0;
	while (maintenance_running(r)) {
		if (!waited++)
			vmb_log(VMB_LOG_INFO, "a GC or prune is running; "
				"waiting for it before checking reused chunks");
		if ((rc = keep_alive(ka, 0)))
			return rc;
		sleep(2);
	}
	vmb_log(VMB_LOG_INFO, "a GC overlapped this backup: checking the "
		"chunks it reused");
	memset(&seen, 0, sizeof seen);
	/* the indexes first: an index already stored by an earlier backup
	 * (same content, same name) is reused, not written, and a GC that
	 * found it unreferenced may have removed it since */
	for (size_t d = 0; d < nd && !rc; d++) {
		uint8_t *ib, hid[32];
		size_t ilen;
		uint64_t isz, stored = 0;
		char iname[100], hex[65];
		rc = vmb_index_encode(&ixs[d], &ib, &ilen);
		if (rc)
			break;
		vmb_crypto_chunk_id(r->keys, ib, ilen, hid);
		vmb_hex(hid, 32, hex);
		snprintf(iname, sizeof iname, "indexes/%s", hex);
		rc = vmb_target_stat(r->t, iname, &isz, NULL);
		if (rc == VMB_ENOTFOUND) {
			vmb_error_clear();
			rc = vmb_repo__put_blob(r, VMB_BLOB_INDEX, iname,
						(uint8_t *)iname, strlen(iname),
						ib, ilen, &stored);
			if (!rc)
				vmb_log(VMB_LOG_INFO, "re-uploaded index %s "
					"removed by a concurrent GC", hex);
		}
		free(ib);
	}
	for (size_t d = 0; d < nd && !rc; d++) {
		vmb_index *ix = &ixs[d];
		for (uint64_t i = 0; i < ix->count && !rc; i++) {
			char name[80];
			uint64_t sz;
			size_t n;
			uint32_t len = vmb_index_chunk_len(ix, i);
			uint8_t id[32];
			if (ix->e[i].kind == VMB_CHUNK_PATCH) {
				/* a patch or its base cannot be rebuilt from
				 * the source: only checked */
				const uint8_t *ids[2];
				int np = vmb_index_ids(ix, i, ids);
				for (int k = 0; k < np && !rc; k++) {
					if ((k == 0 && mine[d][i]) ||
					    vmb_idset_add(&seen, ids[k]) != 1)
						continue;
					vmb_chunk_name(ids[k], name);
					rc = vmb_target_stat(r->t, name, &sz,
							     NULL);
					if (rc == VMB_ENOTFOUND)
						rc = vmb_error_set(VMB_EIO,
							"a concurrent GC removed "
							"chunk %s, which this "
							"backup needs; run the "
							"backup again", name + 10);
				}
				continue;
			}
			if (ix->e[i].kind != VMB_CHUNK_DATA || mine[d][i] ||
			    vmb_idset_add(&seen, ix->e[i].id) != 1)
				continue;
			vmb_chunk_name(ix->e[i].id, name);
			rc = vmb_target_stat(r->t, name, &sz, NULL);
			if (rc != VMB_ENOTFOUND)
				continue;
			/* repair from the source */
			if ((!buf && !(buf = vmb_malloc(ix->chunk_size))) ||
			    (!out && !(out = vmb_malloc(vmb_blob_bound(ix->chunk_size)))) ||
			    (!cctx && !(cctx = ZSTD_createCCtx()))) {
				rc = VMB_ENOMEM;
				break;
			}
			rc = vmb_disk_read(disks[d], buf, i * ix->chunk_size, len);
			if (rc)
				break;
			vmb_crypto_chunk_id(r->keys, buf, len, id);
			if (memcmp(id, ix->e[i].id, 32) != 0) {
				rc = vmb_error_set(VMB_EIO, "a concurrent GC "
						   "removed chunk %s and the source "
						   "has changed since; run the "
						   "backup again", name + 10);
				break;
			}
			rc = vmb_blob_encode(r->keys, VMB_BLOB_CHUNK, id, 32,
					     buf, len, r->zstd_level, cctx, out,
					     &n);
			if (!rc)
				rc = vmb_repo__put_object(r, VMB_BLOB_CHUNK,
							  name, id, 32, out, n);
			vmb_log(VMB_LOG_INFO, "re-uploaded chunk %s removed by "
				"a concurrent GC", name + 10);
		}
	}
	vmb_idset_free(&seen);
	ZSTD_freeCCtx(cctx);
	free(buf);
	free(out);
	if (rc) {
		int e = vmb_error_code();
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", vmb_error_message());
		vmb_target_delete(r->t, manifest);
		vmb_error_set(e ? e : rc, "%s", msg);
	}
	return rc;
}

struct dmg_list {
	vmb_idset *set;
};

static int damaged_cb(const char *name, uint64_t size, int64_t mtime,
		      void *payload)
{
	struct dmg_list *d = payload;
	uint8_t id[32];
	const char *h = strrchr(name, '/');
	if (h && vmb_unhex(h + 1, id, 32) == 0)
		vmb_idset_add(d->set, id);
	return 0;
}

static int find_parent(vmb_repo *r, const char *vm, vmb_snapshot **out)
{
	vmb_snapshot **list;
	size_t n;
	int rc = vmb_repo_snapshots(r, vm, &list, &n);
	*out = NULL;
	if (rc)
		return rc;
	if (n) {
		*out = list[n - 1];
		list[n - 1] = NULL;
	}
	vmb_snapshot_list_free(list, n ? n - 1 : 0);
	return 0;
}

/* The references of a disk backed up without a parent, with what they
 * own. */
struct refset {
	int n;
	vmb_index ix[VMB_MAX_REFS];
	vmb_pagemap *map[VMB_MAX_REFS];
	char snap[VMB_MAX_REFS][33];
};

static void refset_free(struct refset *s)
{
	for (int k = 0; k < s->n; k++) {
		vmb_index_free(&s->ix[k]);
		vmb_pagemap_close(s->map[k]);
	}
	s->n = 0;
}

/*
 * For a disk backed up without a parent (a VM's first backup, or
 * --full): disks of the same size and chunk size in the newest snapshots
 * whose page map this host has.  Their pages are what a new chunk is
 * compared with (the classroom of clones: thirty copies of one image,
 * each a little different), each chunk picking the one it differs from
 * least.  Of up to 64 candidates (newest first) these are kept: the one
 * with the most whole chunks (newest first on a tie: the image the
 * others were patched over, so a chunk that clone changed itself is
 * where another candidate serves better), and the three newest (their
 * chunks are patches over the best base each chunk had, or whole chunks
 * where no base was good).  Only their maps are opened (authenticated);
 * one that is not usable is left out.  Nothing found is not an error.
 */
static void find_references(vmb_repo *r, const vmb_mdisk *m,
			    struct refset *out)
{
	enum { WINDOW = 64, NEWEST = VMB_MAX_REFS - 1 };
	struct cand {
		vmb_index ix;
		const char *index;
		const char *snap;
		uint64_t whole;
	} keep[VMB_MAX_REFS];
	vmb_snapshot **list;
	size_t n;
	int nnew = 0, old = 0, best = -1, seen = 0;

	memset(out, 0, sizeof *out);
	if (vmb_repo__snapshots(r, NULL, 0, &list, &n)) {
		vmb_error_clear();
		return;
	}
	/* keep[0..NEWEST-1]: the newest; keep[NEWEST]: the older one with
	 * the most whole chunks */
	for (size_t k = n; k-- > 0 && seen < WINDOW;)
		for (size_t d = 0; d < list[k]->ndisks && seen < WINDOW; d++) {
			const vmb_mdisk *x = &list[k]->disks[d];
			vmb_index ix;
			uint64_t whole = 0;
			int dup = 0, slot;
			if (x->size != m->size || x->chunk_size != r->chunk_size ||
			    !vmb_pagemap_present(r, x->index, m->size,
						 r->chunk_size))
				continue;
			for (int q = 0; q < nnew; q++)
				dup |= !strcmp(keep[q].index, x->index);
			if (dup || (old && !strcmp(keep[NEWEST].index, x->index)))
				continue; /* the same disk content again */
			seen++;
			if (vmb_repo__load_index(r, x->index, &ix)) {
				vmb_error_clear();
				continue;
			}
			for (uint64_t e = 0; e < ix.count; e++)
				whole += ix.e[e].kind == VMB_CHUNK_DATA;
			if (nnew < NEWEST) {
				slot = nnew++;
			} else if (!old || whole > keep[NEWEST].whole) {
				if (old)
					vmb_index_free(&keep[NEWEST].ix);
				slot = NEWEST;
				old = 1;
			} else {
				vmb_index_free(&ix);
				continue;
			}
			keep[slot].ix = ix;
			keep[slot].index = x->index;
			keep[slot].snap = list[k]->id;
			keep[slot].whole = whole;
		}
	for (int q = 0; q < nnew; q++)
		if (best < 0 || keep[q].whole > keep[best].whole)
			best = q;
	if (old && (best < 0 || keep[NEWEST].whole > keep[best].whole))
		best = NEWEST;
	else if (old)
		vmb_index_free(&keep[NEWEST].ix);
	/* the best first, then the newest */
	for (int q = -1; q < nnew; q++) {
		int s = q < 0 ? best : q;
		vmb_pagemap *pm = NULL;
		if (s < 0 || (q >= 0 && q == best))
			continue;
		vmb_pagemap_open(r, keep[s].index, m->size, r->chunk_size, &pm);
		if (!pm) {
			vmb_index_free(&keep[s].ix);
			continue;
		}
		out->ix[out->n] = keep[s].ix;
		out->map[out->n] = pm;
		memcpy(out->snap[out->n], keep[s].snap, 33);
		out->n++;
	}
	vmb_snapshot_list_free(list, n);
}

static void add_index_ids(vmb_repo *r, const vmb_index *ix)
{
	pthread_mutex_lock(&r->known_lock);
	for (uint64_t i = 0; i < ix->count; i++) {
		const uint8_t *ids[2];
		int n = vmb_index_ids(ix, i, ids);
		for (int k = 0; k < n; k++)
			vmb_idset_add(&r->known, ids[k]);
	}
	pthread_mutex_unlock(&r->known_lock);
}

VMB_EXTERN(int) vmb_repo_backup(vmb_repo *r, const vmb_backup_source *src,
				size_t nsrc, const vmb_backup_options *opts,
				vmb_backup_result *res)
{
	vmb_backup_options def = VMB_BACKUP_OPTIONS_INIT;
	struct bctx c;
	vmb_pool *pool = NULL;
	vmb_snapshot snap, *parent = NULL;
	vmb_disk **disks = NULL;
	int *own = NULL;
	vmb_index *ixs = NULL;
	struct progress_state ps;
	char host[256] = "", session[64] = "", *json = NULL, stats[512];
	uint8_t sid[16], **mine = NULL;
	int rc = 0, nthreads = 0, nbufs, nstore, nobufs, used_parent = 0;
	struct keepalive ka;
	char vm_lock[80] = "", vm_token[33] = "", start_epoch[65];
	vmb_idset damaged;
	double t0 = vmb_now();

	if (!opts)
		opts = &def;
	memset(res, 0, sizeof *res);
	memset(&snap, 0, sizeof snap);
	memset(&c, 0, sizeof c);
	memset(&ps, 0, sizeof ps);
	memset(&ka, 0, sizeof ka);
	memset(&damaged, 0, sizeof damaged);
	ps.o = opts;
	ps.ka = &ka;
	ka.r = r;
	ka.vm_token = vm_token;
	ps.p.phase = "backup";
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.buf_cv, NULL);
	pthread_cond_init(&c.obuf_cv, NULL);
	c.r = r;
	if (!nsrc || nsrc > 256)
		return vmb_error_set(VMB_EINVAL, "a backup needs 1 to 256 disks");
	/* vmb_repo_open_async(): nothing is written before the key is
	 * verified */
	if ((rc = vmb_repo_key_wait(r)))
		return rc;

	disks = vmb_calloc(nsrc, sizeof *disks);
	own = vmb_calloc(nsrc, sizeof *own);
	ixs = vmb_calloc(nsrc, sizeof *ixs);
	mine = vmb_calloc(nsrc, sizeof *mine);
	snap.disks = vmb_calloc(nsrc, sizeof *snap.disks);
	if (!disks || !own || !ixs || !mine || !snap.disks) {
		rc = VMB_ENOMEM;
		goto out;
	}
	/* open every source first: fail before writing anything */
	for (size_t i = 0; i < nsrc; i++) {
		vmb_mdisk *m = &snap.disks[i];
		if (src[i].disk) {
			disks[i] = src[i].disk;
		} else {
			if (!src[i].path) {
				rc = vmb_error_set(VMB_EINVAL, "source %zu has "
						   "neither a path nor a disk", i);
				goto out;
			}
			rc = vmb_disk_open(src[i].path, 0, &disks[i]);
			if (rc)
				goto out;
			own[i] = 1;
		}
		m->name = src[i].name ? vmb_strdup(src[i].name)
				      : vmb_repo_disk_name(src[i].path ?
							    src[i].path : "disk");
		m->source = vmb_strdup(src[i].path ? src[i].path : "");
		m->format = vmb_strdup(vmb_disk_format_name(disks[i]));
		{
			/* taken right after the open that stat'ed the file */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			m->top_stamp = vmb_cbt_top_stamp(disks[i],
				(int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
		}
		m->size = vmb_disk_size(disks[i]);
		m->chunk_size = r->chunk_size;
		if (!m->name || !m->source || !m->format) {
			rc = VMB_ENOMEM;
			goto out;
		}
		/* unique names */
		for (size_t k = 0; k < i; k++) {
			if (strcmp(snap.disks[k].name, m->name) == 0) {
				char *nn = vmb_asprintf("%s-%zu", m->name, i + 1);
				free(m->name);
				m->name = nn;
				if (!nn) {
					rc = VMB_ENOMEM;
					goto out;
				}
				k = (size_t)-1;
			}
		}
		snap.ndisks++;
		res->bytes_total += m->size;
	}
	ps.p.bytes_total = res->bytes_total;

	snap.vm = vmb_strdup(opts->vm ? opts->vm : snap.disks[0].name);
	if (!snap.vm || !*snap.vm) {
		rc = vmb_error_set(VMB_EINVAL, "empty VM name");
		goto out;
	}
	/* one backup of a VM at a time (the name is hashed: VM names are
	 * private, the lock object's name is not) */
	{
		uint8_t h[32];
		char hex[65];
		vmb_crypto_chunk_id(r->keys, snap.vm, strlen(snap.vm), h);
		vmb_hex(h, 16, hex);
		snprintf(vm_lock, sizeof vm_lock, "locks/vm-%s", hex);
		char what[300];
		snprintf(what, sizeof what, "VM '%s'", snap.vm);
		rc = vmb_lease_take(r, vm_lock, 300, what, vm_token);
		if (rc) {
			vm_lock[0] = 0;
			goto out;
		}
		ka.vm_lock = vm_lock;
	}
	read_epoch(r, start_epoch);
	{
		struct dmg_list dl = { &damaged };
		rc = vmb_target_list(r->t, "damaged/", damaged_cb, &dl);
		if (rc)
			goto out;
	}
	if (!opts->full) {
		rc = find_parent(r, snap.vm, &parent);
		if (rc)
			goto out;
	}
	if (!r->known_loaded)
		vmb_repo__cache_load(r);

	/* announce the running backup (GC keeps what it may reuse) */
	vmb_crypto_random(sid, sizeof sid);
	vmb_hex(sid, sizeof sid, snap.id);
	vmb_lease_hostname(host);
	snprintf(session, sizeof session, "sessions/%s", snap.id);
	{
		char sbuf[512];
		snprintf(sbuf, sizeof sbuf, "{\"started\":%lld,\"host\":\"%s\","
			 "\"pid\":%d}\n", (long long)time(NULL), host,
			 (int)getpid());
		rc = vmb_target_put(r->t, session, sbuf, strlen(sbuf));
		if (rc) {
			session[0] = 0;
			goto out;
		}
		ka.session = session;
		ka.last = vmb_now();
	}

	nthreads = vmb_repo__threads(r, opts->threads);
	nbufs = nthreads * 2 + 2;
	/* store threads mostly wait (fsync, network): at least 4, so
	 * several uploads are in flight even on a 1- or 2-core host, and
	 * one blob buffer per store thread plus one per worker */
	nstore = nthreads < 4 ? 4 : nthreads;
	nobufs = nstore + nthreads;
	c.outcap = vmb_blob_bound(r->chunk_size);
	c.ws = vmb_calloc((size_t)nthreads, sizeof *c.ws);
	c.bufs = vmb_calloc((size_t)nbufs, sizeof *c.bufs);
	c.obufs = vmb_calloc((size_t)nobufs, sizeof *c.obufs);
	if (!c.ws || !c.bufs || !c.obufs) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (int i = 0; i < nthreads; i++) {
		c.ws[i].cctx = ZSTD_createCCtx();
		if (!c.ws[i].cctx) {
			rc = VMB_ENOMEM;
			goto out;
		}
	}
	for (int i = 0; i < nbufs; i++) {
		/* page-aligned: a raw image reads into it with O_DIRECT */
		if (posix_memalign((void **)&c.bufs[i], 4096, r->chunk_size))
			c.bufs[i] = NULL;
		if (!c.bufs[i]) {
			vmb_error_set(VMB_ENOMEM, "out of memory");
			rc = VMB_ENOMEM;
			goto out;
		}
		c.nfree++;
	}
	for (int i = 0; i < nobufs; i++) {
		/* page-aligned: the local target can write it with O_DIRECT */
		if (posix_memalign((void **)&c.obufs[i], 4096, c.outcap))
			c.obufs[i] = NULL;
		if (!c.obufs[i]) {
			rc = VMB_ENOMEM;
			goto out;
		}
		c.nofree++;
	}
	/* the store stage: a queue as long as the number of blob buffers
	 * (so submitting never waits) */
	rc = vmb_pool_new(nstore, nobufs, &c.store);
	if (rc)
		goto out;
	rc = vmb_pool_new(nthreads, nthreads * 2, &pool);
	if (rc)
		goto out;
	c.workers = pool;

	for (size_t i = 0; i < nsrc && !rc; i++) {
		vmb_mdisk *m = &snap.disks[i];
		vmb_index pix;
		vmb_cbt_plan plan;
		vmb_mdisk *pm_used = NULL;
		int have_parent = 0;
		memset(&pix, 0, sizeof pix);
		memset(&plan, 0, sizeof plan);
		rc = vmb_cbt_layers(disks[i], &m->layers, &m->nlayers);
		if (rc)
			break;
		rc = vmb_index_alloc(&ixs[i], m->size, r->chunk_size);
		if (rc)
			break;
		mine[i] = vmb_calloc(ixs[i].count ? ixs[i].count : 1, 1);
		if (!mine[i]) {
			rc = VMB_ENOMEM;
			break;
		}
		c.mine = mine[i];
		c.path = src[i].path;
		c.damaged = &damaged;
		if (parent) {
			/* the disk of the same name; else, when the VM has as
			 * many disks as before, the one in the same place */
			size_t pick = parent->ndisks;
			for (size_t k = 0; k < parent->ndisks; k++)
				if (strcmp(parent->disks[k].name, m->name) == 0)
					pick = k;
			if (pick == parent->ndisks && parent->ndisks == nsrc)
				pick = i;
			for (size_t k = pick; k < parent->ndisks && k == pick;
			     k++) {
				vmb_mdisk *pm = &parent->disks[k];
				if (pm->chunk_size == r->chunk_size) {
					rc = vmb_repo__load_index(r, pm->index,
								  &pix);
					if (rc) {
						/* a damaged parent only costs speed */
						vmb_log(VMB_LOG_WARN, "parent snapshot "
							"%s unusable (%s); reading "
							"everything", parent->id,
							vmb_error_message());
						rc = 0;
					} else {
						have_parent = 1;
						pm_used = pm;
						add_index_ids(r, &pix);
					}
					break;
				}
			}
		}
		c.ix = &ixs[i];
		c.parent = have_parent ? &pix : NULL;
		c.changed = NULL;
		{
			/* always: a change source may set itself up for the
			 * next backup (plan.new_state) even without a parent */
			int use_parent = have_parent &&
					 pix.disk_size == m->size &&
					 pix.chunk_size == r->chunk_size;
			vmb_cbt_parent cp = { NULL, 0, NULL, 0, NULL };
			if (use_parent) {
				cp.layers = pm_used->layers;
				cp.nlayers = pm_used->nlayers;
				cp.state = pm_used->cbt_state;
				cp.size = pm_used->size;
				cp.top_stamp = pm_used->top_stamp;
			}
			rc = vmb_cbt_plan_make(disks[i], r->chunk_size,
					       use_parent ? &cp : NULL, &plan);
			if (rc) {
				/* a broken change source costs speed only */
				vmb_log(VMB_LOG_WARN, "change tracking for disk "
					"%s unusable (%s); comparing "
					"fingerprints", m->name,
					vmb_error_message());
				vmb_cbt_plan_free(&plan);
				rc = 0;
			}
			c.changed = use_parent ? plan.changed : NULL;
			c.ranges = use_parent ? plan.ranges : NULL;
			c.nranges = use_parent ? plan.nranges : 0;
			c.rcur = 0;
			if (!use_parent)
				plan.source = NULL;
			free(m->cbt_state);
			m->cbt_state = plan.new_state; /* for the next backup */
			plan.new_state = NULL;
		}
		m->cbt = vmb_strdup(plan.source ? plan.source :
				    have_parent ? "fingerprint" : "none");
		if (plan.source && !strcmp(plan.source, "libvirt"))
			used_parent = used_parent > 4 ? used_parent : 4;
		else if (plan.source && !strcmp(plan.source, "qcow2-bitmap"))
			used_parent = used_parent > 3 ? used_parent : 3;
		else if (plan.source)
			used_parent = used_parent > 2 ? used_parent : 2;
		else if (have_parent && !used_parent)
			used_parent = 1;
		/* page maps: this disk's for later backups, and those its
		 * new chunks are compared with (the parent's, else other
		 * snapshots' disks like this one) */
		vmb_pagemap *parentmap = NULL;
		struct refset rs;
		memset(&rs, 0, sizeof rs);
		vmb_pagemap_create(r, m->size, r->chunk_size, &c.newmap);
		c.nrefs = 0;
		if (have_parent) {
			if (pix.disk_size == m->size &&
			    pix.chunk_size == r->chunk_size)
				vmb_pagemap_open(r, pm_used->index, m->size,
						 r->chunk_size, &parentmap);
			if (parentmap) {
				c.refs[0].ix = &pix;
				c.refs[0].map = parentmap;
				c.nrefs = 1;
			}
		} else {
			find_references(r, m, &rs);
			for (int k = 0; k < rs.n; k++) {
				c.refs[k].ix = &rs.ix[k];
				c.refs[k].map = rs.map[k];
			}
			c.nrefs = rs.n;
			if (rs.n)
				vmb_log(VMB_LOG_INFO, "disk %s: new chunks are "
					"compared page by page with snapshot "
					"%s and %d more like it", m->name,
					rs.snap[0], rs.n - 1);
		}
		c.parentmap = parentmap;
		ps.p.item = m->name;
		/* with a parent or references most chunks are hashed and
		 * dropped: the disk, not the CPU, sets the pace, and the
		 * page cache's readahead reads faster than direct reads
		 * (lib/disk/raw.c); a first backup compresses every chunk */
		vmb_disk__prefer_cache(disks[i], have_parent || c.nrefs > 0);
		rc = backup_disk(&c, pool, disks[i], &ps, &res->bytes_read);
		if (c.readers)
			vmb_pool_wait(c.readers); /* they feed the workers */
		vmb_pool_wait(pool);    /* workers first: they feed the store */
		vmb_pool_wait(c.store); /* every chunk stored before the index */
		c.changed = NULL;
		c.ranges = NULL;
		c.nrefs = 0;
		c.parentmap = NULL;
		vmb_pagemap_close(parentmap);
		refset_free(&rs);
		vmb_cbt_plan_free(&plan);
		vmb_index_free(&pix);
		if (!rc && c.err) {
			vmb_error_set(c.err, "%s", c.errmsg);
			rc = c.err;
		}
		if (rc)
			break;
		/* store the index, named by its keyed hash */
		uint8_t *ib, hid[32];
		size_t ilen;
		char iname[100];
		rc = vmb_index_encode(&ixs[i], &ib, &ilen);
		if (rc)
			break;
		vmb_crypto_chunk_id(r->keys, ib, ilen, hid);
		vmb_hex(hid, 32, m->index);
		snprintf(iname, sizeof iname, "indexes/%s", m->index);
		uint64_t isz;
		if (vmb_target_stat(r->t, iname, &isz, NULL) != 0)
			rc = vmb_repo__put_blob(r, VMB_BLOB_INDEX, iname,
						(uint8_t *)iname, strlen(iname),
						ib, ilen, &c.bytes_stored);
		free(ib);
		if (rc)
			break;
		/* the map goes under the index's name; the parent's is no
		 * longer anyone's parent */
		if (vmb_pagemap_commit(r, c.newmap, m->index) == 1 &&
		    pm_used && strcmp(pm_used->index, m->index) != 0)
			vmb_pagemap_remove(r, pm_used->index);
		vmb_pagemap_close(c.newmap);
		c.newmap = NULL;
		for (uint64_t k = 0; k < ixs[i].count; k++) {
			m->chunks++;
			if (ixs[i].e[k].kind == VMB_CHUNK_ZERO)
				m->zero_chunks++;
		}
		res->chunks_total += m->chunks;
		res->chunks_zero += m->zero_chunks;
	}
	if (rc)
		goto out;
	report(&ps, 1);

	/* the manifest, last */
	{
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		snap.time = (int64_t)ts.tv_sec;
		snap.time_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	}
	snap.host = vmb_strdup(host);
	snap.parent = parent && used_parent ? vmb_strdup(parent->id) : NULL;
	static const char *cbt_names[] = { "none", "fingerprint", "overlay",
					   "qcow2-bitmap", "libvirt" };
	snap.cbt = vmb_strdup(cbt_names[used_parent]);
	snap.tags = (char **)opts->tags;
	snap.ntags = opts->ntags;
	snap.config = (char *)opts->config;
	snap.config_format = (char *)opts->config_format;
	if (opts->version >= 2) {
		snap.consistency = (char *)opts->consistency;
		snap.consistency_note = opts->consistency ?
					(char *)opts->consistency_note : NULL;
	}
	res->bytes_new = c.bytes_new;
	res->bytes_allocated = c.bytes_allocated;
	res->chunks_new = c.chunks_new;
	res->precompressed_chunks = c.precompressed;
	res->cbt = cbt_names[used_parent];
	res->seconds = vmb_now() - t0;
	snprintf(stats, sizeof stats, "{\"bytes_total\":%llu,\"bytes_read\":"
		 "%llu,\"bytes_allocated\":%llu,\"bytes_new\":%llu,"
		 "\"bytes_stored\":%llu,"
		 "\"chunks_total\":%llu,\"chunks_new\":%llu,"
		 "\"chunks_zero\":%llu,\"seconds\":%.3f}",
		 (unsigned long long)res->bytes_total,
		 (unsigned long long)res->bytes_read,
		 (unsigned long long)c.bytes_allocated,
		 (unsigned long long)c.bytes_new,
		 (unsigned long long)c.bytes_stored,
		 (unsigned long long)res->chunks_total,
		 (unsigned long long)c.chunks_new,
		 (unsigned long long)res->chunks_zero, res->seconds);
	json = vmb_repo__manifest_json(&snap, stats);
	snap.tags = NULL;
	snap.ntags = 0;
	snap.config = snap.config_format = NULL;
	snap.consistency = snap.consistency_note = NULL;
	if (!json) {
		rc = VMB_ENOMEM;
		goto out;
	}
	{
		char mname[64];
		snprintf(mname, sizeof mname, "snapshots/%s", snap.id);
		rc = vmb_repo__put_blob(r, VMB_BLOB_MANIFEST, mname,
					(uint8_t *)mname, strlen(mname), json,
					strlen(json), &c.bytes_stored);
		if (!rc)
			rc = end_check(r, start_epoch, mname, ixs, mine, disks,
				       nsrc, &ka);
	}
	if (rc)
		goto out;
	memcpy(res->snapshot, snap.id, 33);
	res->bytes_stored = c.bytes_stored;
	res->seconds = vmb_now() - t0;
	vmb_repo__cache_save(r);
out:
	vmb_pool_free(c.readers); /* waits; feeds the workers */
	if (pool) {
		vmb_pool_wait(pool);
		vmb_pool_free(pool);
	}
	if (c.store) {
		vmb_pool_wait(c.store);
		vmb_pool_free(c.store);
	}
	vmb_repo__spec_free(r); /* the jobs that took from it are done */
	if (session[0] || vm_lock[0]) {
		int e = vmb_error_code();
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", vmb_error_message());
		if (session[0])
			vmb_target_delete(r->t, session);
		if (vm_lock[0])
			vmb_lease_release(r, vm_lock, vm_token);
		if (rc)
			vmb_error_set(e, "%s", msg);
		else
			vmb_error_clear();
	}
	vmb_pagemap_close(c.newmap);
	vmb_idset_free(&damaged);
	if (rc) {
		/* the in-memory known set may hold ids whose upload failed */
		pthread_mutex_lock(&r->known_lock);
		vmb_idset_free(&r->known);
		pthread_mutex_unlock(&r->known_lock);
		r->known_loaded = 0;
	}
	for (int i = 0; c.ws && i < nthreads; i++) {
		ZSTD_freeCCtx(c.ws[i].cctx);
	}
	free(c.ws);
	if (c.bufs) {
		for (int i = 0; i < c.nfree; i++)
			free(c.bufs[i]);
		free(c.bufs);
	}
	if (c.obufs) {
		for (int i = 0; i < c.nofree; i++)
			free(c.obufs[i]);
		free(c.obufs);
	}
	for (size_t i = 0; i < nsrc; i++) {
		if (disks && own && own[i])
			vmb_disk_close(disks[i]);
		if (ixs)
			vmb_index_free(&ixs[i]);
		if (mine)
			free(mine[i]);
	}
	free(mine);
	free(disks);
	free(own);
	free(ixs);
	free(json);
	vmb_snapshot_free(parent);
	/* snap's strings are ours; its tags/config were borrowed */
	{
		vmb_snapshot *sp = vmb_calloc(1, sizeof *sp);
		if (sp) {
			*sp = snap;
			vmb_snapshot_free(sp);
		}
	}
	pthread_mutex_destroy(&c.lock);
	pthread_cond_destroy(&c.buf_cv);
	pthread_cond_destroy(&c.obuf_cv);
	return rc;
}
