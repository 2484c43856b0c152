/*
 * The chunk cache of `vmb serve` (docs/serve.md): a disk that reads its
 * base through a least-recently-used set of block-sized buffers, at most
 * `budget` bytes of them, so repeated and random small reads cost one
 * fetch and decryption per chunk, and memory stays bounded whatever the
 * disk's size.  Reads that continue where an earlier one stopped (a few
 * streams are followed at once) start a read-ahead of the next blocks in
 * background threads (several, so that decoding keeps up with a reader).
 *
 * An entry is loading (one thread reads it, others wait), ready or
 * failed.  Readers pin an entry while they copy from it; only unpinned
 * ones are evicted, so the budget can be exceeded by at most one block
 * per concurrent reader.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "common/util.h"
#include "vmbackup/sys/disk_format.h"
#include "nbd.h"

#define STREAMS 8     /* sequential readers followed at once */
#define RA_QUEUE 64   /* queued read-ahead blocks */
#define RA_THREADS 4  /* blocks fetched and decoded at once ahead */

enum { LOADING, READY, FAILED };

struct cent {
	uint64_t blk;
	uint8_t *data;
	int state;
	int refs;
	struct cent *prev, *next; /* LRU list, most recent first */
	struct cent *hnext;       /* hash chain */
};

struct vmb_cache {
	vmb_disk *base;
	uint64_t size;
	uint32_t block;
	size_t max_entries;
	size_t nent;
	struct cent **hash;
	size_t hmask;
	struct cent *head, *tail;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint64_t hits, misses;
	/* read-ahead */
	uint64_t stream_end[STREAMS];
	unsigned stream_next;
	uint32_t ra_blocks;
	uint64_t ra_q[RA_QUEUE];
	unsigned ra_head, ra_len;
	pthread_cond_t ra_cv;
	pthread_t ra_thread[RA_THREADS];
	int ra_running, stop;
};

static size_t hslot(const struct vmb_cache *c, uint64_t blk)
{
	return (size_t)((blk * 0x9e3779b97f4a7c15ULL) >> 20) & c->hmask;
}

static struct cent *lookup(struct vmb_cache *c, uint64_t blk)
{
	for (struct cent *e = c->hash[hslot(c, blk)]; e; e = e->hnext)
		if (e->blk == blk)
			return e;
	return NULL;
}

static void lru_unlink(struct vmb_cache *c, struct cent *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_front(struct vmb_cache *c, struct cent *e)
{
	e->next = c->head;
	e->prev = NULL;
	if (c->head)
		c->head->prev = e;
	c->head = e;
	if (!c->tail)
		c->tail = e;
}

static void remove_entry(struct vmb_cache *c, struct cent *e)
{
	struct cent **pp = &c->hash[hslot(c, e->blk)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(c, e);
	free(e->data);
	free(e);
	c->nent--;
}

/* Drop unpinned entries from the cold end until there is room. */
static void make_room(struct vmb_cache *c)
{
	struct cent *e = c->tail;
	while (c->nent >= c->max_entries && e) {
		struct cent *prev = e->prev;
		if (e->refs == 0 && e->state != LOADING)
			remove_entry(c, e);
		e = prev;
	}
}

static uint32_t block_len(const struct vmb_cache *c, uint64_t blk)
{
	uint64_t off = blk * c->block;
	return (uint32_t)VMB_MIN((uint64_t)c->block, c->size - off);
}

/* The entry of @blk, pinned, loaded (lock held; dropped while reading).
 * NULL with the error set if it cannot be read. */
static struct cent *get(struct vmb_cache *c, uint64_t blk, int count)
{
	for (;;) {
		struct cent *e = lookup(c, blk);
		int rc;
		if (e && e->state == READY) {
			e->refs++;
			lru_unlink(c, e);
			lru_front(c, e);
			if (count)
				c->hits++;
			return e;
		}
		if (e) { /* loading elsewhere: wait, then look again */
			e->refs++;
			while (e->state == LOADING)
				pthread_cond_wait(&c->cv, &c->lock);
			e->refs--;
			if (e->state == FAILED && e->refs == 0)
				remove_entry(c, e);
			else if (e->state == READY)
				continue;
			if (count)
				c->misses++;
			vmb_error_set(VMB_EIO, "cannot read block %llu of the "
				      "disk", (unsigned long long)blk);
			return NULL;
		}
		make_room(c);
		e = calloc(1, sizeof *e);
		if (e && !(e->data = malloc(c->block))) {
			free(e);
			e = NULL;
		}
		if (!e) {
			vmb_error_set(VMB_ENOMEM, "cache: out of memory");
			return NULL;
		}
		if (count)
			c->misses++;
		e->blk = blk;
		e->state = LOADING;
		e->refs = 1;
		e->hnext = c->hash[hslot(c, blk)];
		c->hash[hslot(c, blk)] = e;
		lru_front(c, e);
		c->nent++;
		pthread_mutex_unlock(&c->lock);
		rc = vmb_disk_read(c->base, e->data, blk * c->block,
				   block_len(c, blk));
		pthread_mutex_lock(&c->lock);
		e->state = rc ? FAILED : READY;
		pthread_cond_broadcast(&c->cv);
		if (rc) {
			if (--e->refs == 0)
				remove_entry(c, e);
			return NULL;
		}
		return e;
	}
}

static void put(struct vmb_cache *c, struct cent *e)
{
	e->refs--;
	if (e->refs == 0 && c->nent > c->max_entries)
		make_room(c);
}

static void *ra_main(void *arg)
{
	struct vmb_cache *c = arg;
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		uint64_t blk;
		struct cent *e;
		if (!c->ra_len) {
			pthread_cond_wait(&c->ra_cv, &c->lock);
			continue;
		}
		blk = c->ra_q[c->ra_head];
		c->ra_head = (c->ra_head + 1) % RA_QUEUE;
		c->ra_len--;
		if (lookup(c, blk))
			continue;
		e = get(c, blk, 0);
		if (e)
			put(c, e);
		else
			vmb_error_clear(); /* the reader will see it */
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* A read of [off, end) just came: follow sequential streams (lock held). */
static void read_ahead(struct vmb_cache *c, uint64_t off, uint64_t end)
{
	int seq = 0;
	uint64_t nblocks = (c->size + c->block - 1) / c->block;
	for (unsigned i = 0; i < STREAMS; i++)
		if (c->stream_end[i] == off && off) {
			c->stream_end[i] = end;
			seq = 1;
			break;
		}
	if (!seq) {
		c->stream_end[c->stream_next] = end;
		c->stream_next = (c->stream_next + 1) % STREAMS;
		return;
	}
	if (!c->ra_running)
		return;
	for (uint64_t b = (end + c->block - 1) / c->block, n = 0;
	     n < c->ra_blocks && b < nblocks && c->ra_len < RA_QUEUE;
	     b++, n++) {
		int queued = 0;
		if (lookup(c, b))
			continue;
		for (unsigned i = 0; i < c->ra_len && !queued; i++)
			queued = c->ra_q[(c->ra_head + i) % RA_QUEUE] == b;
		if (queued)
			continue;
		c->ra_q[(c->ra_head + c->ra_len) % RA_QUEUE] = b;
		c->ra_len++;
	}
	pthread_cond_broadcast(&c->ra_cv);
}

static uint64_t c_size(void *data)
{
	return ((struct vmb_cache *)data)->size;
}

static int c_read(void *data, void *buf, uint64_t off, size_t len)
{
	struct vmb_cache *c = data;
	uint8_t *o = buf;
	uint64_t end = off + len;
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	read_ahead(c, off, end);
	while (off < end) {
		uint64_t blk = off / c->block;
		uint32_t bo = (uint32_t)(off % c->block);
		size_t n = (size_t)VMB_MIN(end - off,
					   (uint64_t)(block_len(c, blk) - bo));
		struct cent *e = get(c, blk, 1);
		if (!e) {
			rc = vmb_error_code() ? vmb_error_code() : VMB_EIO;
			break;
		}
		pthread_mutex_unlock(&c->lock);
		memcpy(o, e->data + bo, n);
		pthread_mutex_lock(&c->lock);
		put(c, e);
		o += n;
		off += n;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int c_map(void *data, uint64_t off, uint64_t len, vmb_extent_fn fn,
		 void *payload)
{
	struct vmb_cache *c = data;
	return vmb_disk_map(c->base, off, len, fn, payload);
}

static void c_close(void *data)
{
	struct vmb_cache *c = data;
	if (c->ra_running) {
		pthread_mutex_lock(&c->lock);
		c->stop = 1;
		pthread_cond_broadcast(&c->ra_cv);
		pthread_mutex_unlock(&c->lock);
		for (int i = 0; i < c->ra_running; i++)
			pthread_join(c->ra_thread[i], NULL);
	}
	while (c->head)
		remove_entry(c, c->head);
	free(c->hash);
	vmb_disk_close(c->base);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cv);
	pthread_cond_destroy(&c->ra_cv);
	free(c);
}

static const vmb_disk_ops cache_ops = {
	1, "cache", c_size, c_read, c_map, c_close, NULL
};

int vmb_cache_open(vmb_disk *base, uint32_t block, size_t budget,
		   vmb_disk **out, struct vmb_cache **cache)
{
	struct vmb_cache *c;
	size_t hs = 16;
	int rc;
	*out = NULL;
	if (block < 4096 || block > (64u << 20))
		return vmb_error_set(VMB_EINVAL, "cache block size %u out of "
				     "range", block);
	c = vmb_calloc(1, sizeof *c);
	if (!c)
		return VMB_ENOMEM;
	c->base = base;
	c->size = vmb_disk_size(base);
	c->block = block;
	c->max_entries = VMB_MAX(budget / block, (size_t)4);
	while (hs < 2 * c->max_entries)
		hs *= 2;
	c->hash = vmb_calloc(hs, sizeof *c->hash);
	c->hmask = hs - 1;
	/* read ahead 8 MiB, at most a quarter of the cache */
	c->ra_blocks = (uint32_t)VMB_MAX((size_t)1,
		VMB_MIN((size_t)(8u << 20) / block, c->max_entries / 4));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cv, NULL);
	pthread_cond_init(&c->ra_cv, NULL);
	if (!c->hash) {
		c->base = NULL;
		c_close(c);
		return VMB_ENOMEM;
	}
	while (c->ra_running < RA_THREADS &&
	       pthread_create(&c->ra_thread[c->ra_running], NULL, ra_main,
			      c) == 0)
		c->ra_running++;
	rc = vmb_disk_new(&cache_ops, c, out);
	if (rc) {
		c->base = NULL;
		c_close(c);
		return rc;
	}
	if (cache)
		*cache = c;
	return 0;
}

void vmb_cache_stats(struct vmb_cache *c, uint64_t *hits, uint64_t *misses,
		     size_t *bytes)
{
	pthread_mutex_lock(&c->lock);
	*hits = c->hits;
	*misses = c->misses;
	*bytes = c->nent * (size_t)c->block;
	pthread_mutex_unlock(&c->lock);
}
