/*
 * vmb verify: read, authenticate, decompress and re-hash chunks (with
 * --data), or check they exist.  Each unique chunk is checked once, in
 * parallel; damage is then reported at every place it breaks.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "common/pool.h"
#include "common/util.h"
#include "repo_internal.h"

struct vctx {
	vmb_repo *r;
	int data;
	uint32_t max_chunk;
	ZSTD_DCtx **dctx;
	uint8_t **bufs;
	pthread_mutex_t lock;
	vmb_idset bad;
	char (*bad_why)[200]; /* parallel to an array of bad ids */
	uint8_t (*bad_ids)[32];
	size_t nbad, capbad;
	uint64_t checked, bytes;
	int err;
	char errmsg[1024];
};

struct vjob {
	struct vctx *c;
	uint8_t id[32];
};

static void add_bad(struct vctx *c, const uint8_t id[32], const char *why)
{
	pthread_mutex_lock(&c->lock);
	if (vmb_idset_add(&c->bad, id) == 1) {
		if (c->nbad == c->capbad) {
			size_t nc = c->capbad ? c->capbad * 2 : 16;
			void *a = realloc(c->bad_ids, nc * 32);
			void *b = a ? realloc(c->bad_why, nc * 200) : NULL;
			if (a)
				c->bad_ids = a;
			if (b)
				c->bad_why = b;
			if (!a || !b) {
				pthread_mutex_unlock(&c->lock);
				return;
			}
			c->capbad = nc;
		}
		memcpy(c->bad_ids[c->nbad], id, 32);
		snprintf(c->bad_why[c->nbad], 200, "%s", why);
		c->nbad++;
	}
	pthread_mutex_unlock(&c->lock);
}

static void verify_job(void *arg, int w)
{
	struct vjob *j = arg;
	struct vctx *c = j->c;
	char name[80];
	int rc;
	vmb_chunk_name(j->id, name);
	if (!c->data) {
		uint64_t sz;
		rc = vmb_target_stat(c->r->t, name, &sz, NULL);
		if (rc == VMB_ENOTFOUND)
			add_bad(c, j->id, "missing");
		else if (!rc && sz < VMB_BLOB_HEADER_BYTES)
			add_bad(c, j->id, "truncated");
		else if (rc)
			goto fail;
	} else {
		size_t len;
		uint8_t id[32];
		rc = vmb_repo__get_chunk(c->r, j->id, c->dctx[w], c->bufs[w],
					 c->max_chunk, &len);
		if (rc == VMB_ECORRUPT) {
			const char *m = vmb_error_message();
			const char *colon = strrchr(m, ':');
			add_bad(c, j->id, strstr(m, "is missing") ? "missing" :
				colon ? colon + 2 : m);
		} else if (rc) {
			goto fail;
		} else {
			vmb_crypto_chunk_id(c->r->keys, c->bufs[w], len, id);
			if (sodium_memcmp(id, j->id, 32) != 0)
				add_bad(c, j->id, "content does not match its id");
			pthread_mutex_lock(&c->lock);
			c->bytes += len;
			pthread_mutex_unlock(&c->lock);
		}
	}
	pthread_mutex_lock(&c->lock);
	c->checked++;
	pthread_mutex_unlock(&c->lock);
	free(j);
	return;
fail:
	pthread_mutex_lock(&c->lock);
	if (!c->err) {
		c->err = rc;
		snprintf(c->errmsg, sizeof c->errmsg, "%s", vmb_error_message());
	}
	pthread_mutex_unlock(&c->lock);
	free(j);
}

static const char *bad_reason(struct vctx *c, const uint8_t id[32])
{
	for (size_t i = 0; i < c->nbad; i++)
		if (memcmp(c->bad_ids[i], id, 32) == 0)
			return c->bad_why[i];
	return "damaged";
}

VMB_EXTERN(int) vmb_repo_verify(vmb_repo *r, const vmb_verify_options *o,
				vmb_verify_fn fn, void *payload,
				vmb_verify_result *res)
{
	vmb_verify_options def = VMB_VERIFY_OPTIONS_INIT;
	vmb_snapshot **sv = NULL;
	size_t ns = 0;
	vmb_index **ixs = NULL; /* [snapshot][disk] */
	struct vctx c;
	vmb_pool *pool = NULL;
	vmb_idset queued;
	vmb_progress p;
	int rc, nthreads = 0;
	double t0 = vmb_now(), last = 0;

	if (!o)
		o = &def;
	memset(res, 0, sizeof *res);
	memset(&c, 0, sizeof c);
	memset(&queued, 0, sizeof queued);
	memset(&p, 0, sizeof p);
	p.phase = "verify";
	pthread_mutex_init(&c.lock, NULL);
	c.r = r;
	c.data = o->data;
	if (o->sample < 0 || o->sample > 100)
		return vmb_error_set(VMB_EINVAL, "sample must be 0..100 percent");
	if (o->snapshot) {
		vmb_snapshot *s;
		rc = vmb_repo_snapshot_find(r, o->snapshot, &s);
		if (rc == VMB_ECORRUPT && fn) {
			fn(o->snapshot, NULL, NULL, UINT64_MAX, NULL,
			   vmb_error_message(), payload);
			res->problems++;
		}
		if (rc)
			goto out;
		sv = vmb_calloc(1, sizeof *sv);
		if (!sv) {
			vmb_snapshot_free(s);
			rc = VMB_ENOMEM;
			goto out;
		}
		sv[0] = s;
		ns = 1;
	} else {
		/* every manifest, one by one, so a damaged one is reported
		 * rather than stopping the verification */
		rc = vmb_repo__snapshots(r, NULL, 0, &sv, &ns);
		if (rc)
			goto out;
		if (r->damaged_manifests) {
			if (fn)
				fn(r->first_damaged, NULL, NULL, UINT64_MAX,
				   NULL, "damaged snapshot manifest", payload);
			res->problems += r->damaged_manifests;
		}
	}
	res->snapshots = ns;
	ixs = vmb_calloc(ns ? ns : 1, sizeof *ixs);
	if (!ixs) {
		rc = VMB_ENOMEM;
		goto out;
	}
	c.max_chunk = 4096;
	for (size_t i = 0; i < ns; i++) {
		ixs[i] = vmb_calloc(sv[i]->ndisks ? sv[i]->ndisks : 1,
				    sizeof **ixs);
		if (!ixs[i]) {
			rc = VMB_ENOMEM;
			goto out;
		}
		for (size_t d = 0; d < sv[i]->ndisks; d++) {
			rc = vmb_repo__load_index(r, sv[i]->disks[d].index,
						  &ixs[i][d]);
			if (rc == VMB_ECORRUPT || rc == VMB_ENOTSUP) {
				if (fn)
					fn(sv[i]->id, sv[i]->vm,
					   sv[i]->disks[d].name, UINT64_MAX,
					   NULL, vmb_error_message(), payload);
				res->problems++;
				rc = 0;
				continue;
			}
			if (rc)
				goto out;
			if (ixs[i][d].chunk_size > c.max_chunk)
				c.max_chunk = ixs[i][d].chunk_size;
			p.bytes_total += ixs[i][d].disk_size;
		}
	}
	nthreads = vmb_repo__threads(r, o->threads);
	c.dctx = vmb_calloc((size_t)nthreads, sizeof *c.dctx);
	c.bufs = vmb_calloc((size_t)nthreads, sizeof *c.bufs);
	if (!c.dctx || !c.bufs) {
		rc = VMB_ENOMEM;
		goto out;
	}
	for (int i = 0; i < nthreads; i++)
		if (!(c.dctx[i] = ZSTD_createDCtx()) ||
		    !(c.bufs[i] = vmb_malloc(c.max_chunk))) {
			rc = VMB_ENOMEM;
			goto out;
		}
	rc = vmb_pool_new(nthreads, nthreads * 4, &pool);
	if (rc)
		goto out;
	for (size_t i = 0; i < ns && !c.err; i++)
		for (size_t d = 0; d < sv[i]->ndisks && !c.err; d++) {
			vmb_index *ix = &ixs[i][d];
			for (uint64_t k = 0; k < ix->count && !c.err; k++) {
				const uint8_t *ids[2];
				int nid = vmb_index_ids(ix, k, ids);
				p.bytes_done += vmb_index_chunk_len(ix, k);
				for (int q = 0; q < nid; q++) {
				struct vjob *j;
				if (vmb_idset_add(&queued, ids[q]) != 1)
					continue;
				if (o->sample > 0 && o->sample < 100 &&
				    randombytes_uniform(1000000) >=
				    (uint32_t)(o->sample * 10000))
					continue;
				j = vmb_malloc(sizeof *j);
				if (!j) {
					rc = VMB_ENOMEM;
					goto out;
				}
				j->c = &c;
				memcpy(j->id, ids[q], 32);
				vmb_pool_submit(pool, verify_job, j);
				}
				if (o->progress && vmb_now() - last > 0.2) {
					last = vmb_now();
					p.bytes_read = c.bytes;
					if (o->progress(&p, o->progress_payload)) {
						rc = vmb_error_set(VMB_ECANCELED,
								   "verify cancelled");
						goto out;
					}
				}
			}
		}
	vmb_pool_wait(pool);
	if (c.err) {
		rc = vmb_error_set(c.err, "%s", c.errmsg);
		goto out;
	}
	res->chunks_checked = c.checked;
	res->bytes_checked = c.bytes;
	res->chunks_damaged = c.nbad;
	/* report each damaged chunk where it breaks; mark it for healing */
	for (size_t b = 0; b < c.nbad; b++) {
		char hex[65], name[80];
		vmb_hex(c.bad_ids[b], 32, hex);
		snprintf(name, sizeof name, "damaged/%s", hex);
		vmb_target_put(r->t, name, c.bad_why[b], strlen(c.bad_why[b]));
	}
	for (size_t i = 0; i < ns && c.nbad; i++)
		for (size_t d = 0; d < sv[i]->ndisks; d++) {
			vmb_index *ix = &ixs[i][d];
			for (uint64_t k = 0; k < ix->count; k++) {
				const uint8_t *ids[2];
				int nid = vmb_index_ids(ix, k, ids);
				for (int q = 0; q < nid; q++) {
				char hex[65];
				if (!vmb_idset_has(&c.bad, ids[q]))
					continue;
				vmb_hex(ids[q], 32, hex);
				if (fn)
					fn(sv[i]->id, sv[i]->vm,
					   sv[i]->disks[d].name,
					   k * ix->chunk_size, hex,
					   bad_reason(&c, ids[q]), payload);
				res->problems++;
				}
			}
		}
	rc = 0;
out:
	if (pool) {
		vmb_pool_wait(pool);
		vmb_pool_free(pool);
	}
	if (c.dctx)
		for (int i = 0; i < nthreads; i++) {
			ZSTD_freeDCtx(c.dctx[i]);
			free(c.bufs ? c.bufs[i] : NULL);
		}
	free(c.dctx);
	free(c.bufs);
	if (ixs) {
		for (size_t i = 0; i < ns; i++) {
			if (!ixs[i])
				continue;
			for (size_t d = 0; d < sv[i]->ndisks; d++)
				vmb_index_free(&ixs[i][d]);
			free(ixs[i]);
		}
		free(ixs);
	}
	vmb_snapshot_list_free(sv, ns);
	vmb_idset_free(&c.bad);
	vmb_idset_free(&queued);
	free(c.bad_ids);
	free(c.bad_why);
	pthread_mutex_destroy(&c.lock);
	res->seconds = vmb_now() - t0;
	if (!rc && res->problems)
		rc = vmb_error_set(VMB_EVERIFY, "verification found %llu "
				   "problem%s (%llu damaged chunk%s)",
				   (unsigned long long)res->problems,
				   res->problems == 1 ? "" : "s",
				   (unsigned long long)res->chunks_damaged,
				   res->chunks_damaged == 1 ? "" : "s");
	return rc;
}
