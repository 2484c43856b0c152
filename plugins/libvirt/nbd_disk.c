/*
 * A vmb_disk over one NBD export of a libvirt pull-mode backup, read with
 * libnbd: data (several connections, so reads run in parallel), the
 * allocation map from base:allocation, and, for an incremental, the
 * changed extents from the qemu:dirty-bitmap: context of the checkpoint
 * the backup started from.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libnbd.h>
#include "lv.h"

#define MAX_CONN 8
/* one NBD request: QEMU's server takes 32 MiB; stay well below */
#define MAX_REQ (8u << 20)
/* block status asks at most this much at a time (32-bit lengths) */
#define MAX_STATUS (1ull << 30)

struct nbdisk {
	struct nbd_handle *h[MAX_CONN];
	int busy[MAX_CONN];
	int n;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint64_t size;
	char *export;
	char *bitmap;    /* dirty-bitmap context, or NULL (full backup) */
	char *base;      /* checkpoint the bitmap counts from, or NULL */
	char *new_state; /* to record for the next backup */
};

static struct nbd_handle *take(struct nbdisk *d, int *slot)
{
	pthread_mutex_lock(&d->lock);
	for (;;) {
		for (int i = 0; i < d->n; i++)
			if (!d->busy[i]) {
				d->busy[i] = 1;
				*slot = i;
				pthread_mutex_unlock(&d->lock);
				return d->h[i];
			}
		pthread_cond_wait(&d->cv, &d->lock);
	}
}

static void give(struct nbdisk *d, int slot)
{
	pthread_mutex_lock(&d->lock);
	d->busy[slot] = 0;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->lock);
}

static uint64_t nd_size(void *data)
{
	return ((struct nbdisk *)data)->size;
}

static int nbd_err(struct nbdisk *d, const char *what, uint64_t off)
{
	return vmb_error_set(VMB_EIO, "libvirt: NBD %s of disk %s at %llu: %s",
			     what, d->export, (unsigned long long)off,
			     nbd_get_error() ? nbd_get_error() : "failed");
}

static int nd_read(void *data, void *buf, uint64_t off, size_t len)
{
	struct nbdisk *d = data;
	int slot, rc = 0;
	struct nbd_handle *h;
	if (off > d->size || len > d->size - off)
		return vmb_error_set(VMB_EINVAL, "libvirt: read past the end "
				     "of disk %s", d->export);
	h = take(d, &slot);
	while (len && !rc) {
		size_t n = len < MAX_REQ ? len : MAX_REQ;
		if (nbd_pread(h, buf, n, off, 0) == -1)
			rc = nbd_err(d, "read", off);
		buf = (uint8_t *)buf + n;
		off += n;
		len -= n;
	}
	give(d, slot);
	return rc;
}

/* Walks one context's extents over [off, off+len). */
struct walk {
	const char *context;
	uint64_t pos, end; /* next offset expected, end of the request */
	int (*emit)(struct walk *w, uint64_t off, uint64_t len, uint32_t f);
	vmb_extent_fn fn;
	void *payload;
	int err; /* the callback's error (vmb_error) */
	/* pending extent, merged with neighbours of the same kind */
	uint64_t poff, plen;
	int pkind;
};

static int flush(struct walk *w)
{
	vmb_extent e;
	int rc;
	if (!w->plen)
		return 0;
	e.offset = w->poff;
	e.length = w->plen;
	e.kind = w->pkind;
	e.layer = w->pkind == VMB_EXTENT_HOLE ? -1 : 0;
	w->plen = 0;
	rc = w->fn(&e, w->payload);
	return rc;
}

static int add(struct walk *w, uint64_t off, uint64_t len, int kind)
{
	if (w->plen && w->pkind == kind && w->poff + w->plen == off) {
		w->plen += len;
		return 0;
	}
	int rc = flush(w);
	w->poff = off;
	w->plen = len;
	w->pkind = kind;
	return rc;
}

static int emit_alloc(struct walk *w, uint64_t off, uint64_t len, uint32_t f)
{
	int kind = (f & LIBNBD_STATE_HOLE) && (f & LIBNBD_STATE_ZERO) ?
		   VMB_EXTENT_HOLE : (f & LIBNBD_STATE_ZERO) ? VMB_EXTENT_ZERO :
		   VMB_EXTENT_DATA;
	return add(w, off, len, kind);
}

static int emit_dirty(struct walk *w, uint64_t off, uint64_t len, uint32_t f)
{
	if (!(f & 1)) /* bit 0: dirty */
		return flush(w);
	return add(w, off, len, VMB_EXTENT_DATA);
}

static int extent_cb(void *user, const char *metacontext, uint64_t offset,
		     uint32_t *entries, size_t nr, int *error)
{
	struct walk *w = user;
	if (strcmp(metacontext, w->context) != 0)
		return 0; /* another context's answer */
	if (offset != w->pos) {
		w->err = vmb_error_set(VMB_EIO, "libvirt: NBD block status "
				       "answered for %llu, asked for %llu",
				       (unsigned long long)offset,
				       (unsigned long long)w->pos);
		return -1;
	}
	for (size_t i = 0; i + 1 < nr && w->pos < w->end; i += 2) {
		uint64_t len = entries[i];
		if (!len) {
			w->err = vmb_error_set(VMB_EIO, "libvirt: NBD block "
					       "status returned an empty "
					       "extent");
			return -1;
		}
		if (len > w->end - w->pos)
			len = w->end - w->pos; /* servers may overshoot */
		if ((w->err = w->emit(w, w->pos, len, entries[i + 1])) != 0)
			return -1;
		w->pos += len;
	}
	(void)error;
	return 0;
}

static int walk(struct nbdisk *d, const char *context, uint64_t off,
		uint64_t len, int (*emit)(struct walk *, uint64_t, uint64_t,
					  uint32_t),
		vmb_extent_fn fn, void *payload)
{
	struct walk w;
	int slot, rc = 0;
	struct nbd_handle *h;
	if (off > d->size || len > d->size - off)
		return vmb_error_set(VMB_EINVAL, "libvirt: map past the end "
				     "of disk %s", d->export);
	memset(&w, 0, sizeof w);
	w.context = context;
	w.emit = emit;
	w.fn = fn;
	w.payload = payload;
	w.pos = off;
	h = take(d, &slot);
	/* a bounded loop: each round advances by at least one extent */
	for (uint64_t rounds = 0; w.pos < off + len && !rc; rounds++) {
		uint64_t before = w.pos;
		uint64_t n = off + len - w.pos;
		nbd_extent_callback cb = { extent_cb, &w, NULL };
		if (n > MAX_STATUS)
			n = MAX_STATUS;
		w.end = w.pos + n;
		if (nbd_block_status(h, n, w.pos, cb, 0) == -1) {
			rc = w.err ? w.err : nbd_err(d, "block status", w.pos);
			break;
		}
		if (w.err) {
			rc = w.err;
			break;
		}
		if (w.pos == before || rounds > (d->size >> 9) + 16)
			rc = vmb_error_set(VMB_EIO, "libvirt: NBD block status "
					   "of disk %s made no progress at "
					   "%llu", d->export,
					   (unsigned long long)w.pos);
	}
	give(d, slot);
	if (!rc)
		rc = flush(&w);
	return rc;
}

static int nd_map(void *data, uint64_t off, uint64_t len, vmb_extent_fn fn,
		  void *payload)
{
	return walk(data, LIBNBD_CONTEXT_BASE_ALLOCATION, off, len,
		    emit_alloc, fn, payload);
}

static int nd_changes(void *data, const char *parent_state,
		      vmb_extent_fn fn, void *payload, const char **source,
		      char **new_state)
{
	struct nbdisk *d = data;
	char ck[200];
	int rc;
	*source = NULL;
	*new_state = d->new_state ? strdup(d->new_state) : NULL;
	if (d->new_state && !*new_state)
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	/* the bitmap counts from d->base: it says what changed since the
	 * parent only if the parent was read at that very checkpoint */
	if (!d->bitmap || !parent_state ||
	    lv_state_get(parent_state, "checkpoint", ck, sizeof ck) != 0 ||
	    strcmp(ck, d->base) != 0)
		return 0;
	rc = walk(d, d->bitmap, 0, d->size, emit_dirty, fn, payload);
	if (rc)
		return rc;
	*source = "libvirt";
	return 0;
}

static void nd_close(void *data)
{
	struct nbdisk *d = data;
	if (!d)
		return;
	for (int i = 0; i < d->n; i++) {
		nbd_shutdown(d->h[i], 0);
		nbd_close(d->h[i]);
	}
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cv);
	free(d->export);
	free(d->bitmap);
	free(d->base);
	free(d->new_state);
	free(d);
}

static const vmb_disk_ops nbd_ops = {
	.version = VMB_DISK_OPS_VERSION,
	.format = "raw",
	.size = nd_size,
	.read = nd_read,
	.map = nd_map,
	.close = nd_close,
	.changes = nd_changes,
};

int lv_nbd_disk_open(const char *sock, const char *export, int nconn,
		     const char *bitmap, const char *base,
		     const char *new_state, vmb_disk **out)
{
	struct nbdisk *d = calloc(1, sizeof *d);
	int rc;
	if (!d)
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cv, NULL);
	d->export = strdup(export);
	d->bitmap = bitmap ? strdup(bitmap) : NULL;
	d->base = base ? strdup(base) : NULL;
	d->new_state = new_state ? strdup(new_state) : NULL;
	if (!d->export || (bitmap && !d->bitmap) || (base && !d->base) ||
	    (new_state && !d->new_state)) {
		nd_close(d);
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	}
	if (nconn < 1)
		nconn = 1;
	if (nconn > MAX_CONN)
		nconn = MAX_CONN;
	for (int i = 0; i < nconn; i++) {
		struct nbd_handle *h = nbd_create();
		if (!h) {
			nd_close(d);
			return vmb_error_set(VMB_ENOMEM, "libvirt: nbd_create: %s",
					     nbd_get_error());
		}
		d->h[d->n++] = h;
		if (nbd_set_export_name(h, export) == -1 ||
		    nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 ||
		    (bitmap && nbd_add_meta_context(h, bitmap) == -1) ||
		    nbd_connect_unix(h, sock) == -1) {
			rc = vmb_error_set(VMB_EIO, "libvirt: cannot connect to "
					   "the NBD export %s at %s: %s", export,
					   sock, nbd_get_error());
			nd_close(d);
			return rc;
		}
		if (i == 0) {
			int64_t sz = nbd_get_size(h);
			if (sz < 0) {
				rc = nbd_err(d, "size", 0);
				nd_close(d);
				return rc;
			}
			d->size = (uint64_t)sz;
			if (nbd_can_meta_context(h,
				LIBNBD_CONTEXT_BASE_ALLOCATION) != 1) {
				rc = vmb_error_set(VMB_ENOTSUP, "libvirt: the NBD "
						   "export %s has no allocation "
						   "map", export);
				nd_close(d);
				return rc;
			}
			if (bitmap && nbd_can_meta_context(h, bitmap) != 1) {
				/* no bitmap: fine, the backup reads it all */
				vmb_log(VMB_LOG_WARN, "libvirt: disk %s: the NBD "
					"export has no %s; reading everything",
					export, bitmap);
				free(d->bitmap);
				d->bitmap = NULL;
			}
		}
	}
	rc = vmb_disk_new(&nbd_ops, d, out);
	if (rc)
		nd_close(d);
	return rc;
}
