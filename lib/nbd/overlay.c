/*
 * The overlay of a --writable export (docs/serve.md, "Overlay"): one
 * local file that keeps every write, in 4 KiB blocks, over a read-only
 * base (the snapshot's disk).
 *
 *   0      header (4 KiB, little endian): "VMBOVL1\n", version 1, block
 *          size, disk size, bitmap offset and length, data offset, and
 *          what it belongs to (repository id, snapshot id, disk name)
 *   4 KiB  bitmap: bit i set = block i lives in the overlay
 *   data   block i at data offset + i * 4096 (the file is sparse)
 *
 * Crash safety: data is written before its bit is set, and the bitmap
 * reaches the disk only on a flush, after the data (fdatasync, bitmap,
 * fdatasync).  A crash loses at most the writes since the last flush, as
 * NBD allows, and never shows a block that was not written whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/util.h"
#include "vmbackup/sys/disk_format.h"
#include "nbd.h"

#define OVL_MAGIC "VMBOVL1\n"
#define OVL_BS 4096u
#define OVL_HDR 4096u
#define PAGE_BITS (8u * 4096u) /* blocks per bitmap page */

struct vmb_overlay {
	int fd;
	char *path;
	vmb_disk *base;
	uint64_t size, nblocks;
	uint64_t bitmap_len, data_off;
	uint8_t *bits;
	uint8_t *dirty;          /* one byte per bitmap page */
	size_t npages;
	pthread_mutex_t lock;    /* bits, dirty */
	pthread_mutex_t wlock;   /* one writer at a time */
	char hdr[OVL_HDR];
};

static int test_bit(const struct vmb_overlay *o, uint64_t b)
{
	return (o->bits[b / 8] >> (b % 8)) & 1;
}

static void set_bit(struct vmb_overlay *o, uint64_t b)
{
	o->bits[b / 8] |= (uint8_t)(1u << (b % 8));
	o->dirty[b / PAGE_BITS] = 1;
}

static uint32_t blen(const struct vmb_overlay *o, uint64_t b)
{
	return (uint32_t)VMB_MIN((uint64_t)OVL_BS, o->size - b * OVL_BS);
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) { /* past the end of a sparse file: zeros */
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int io_error(struct vmb_overlay *o, const char *what)
{
	int e = errno;
	return vmb_error_set(e == ENOSPC ? VMB_ENOSPC : VMB_EIO,
			     "cannot %s overlay %s: %s", what, o->path,
			     strerror(e));
}

/* ---- the view: base + overlay ---- */

static uint64_t v_size(void *data)
{
	return ((struct vmb_overlay *)data)->size;
}

static int v_read(void *data, void *buf, uint64_t off, size_t len)
{
	struct vmb_overlay *o = data;
	uint8_t *out = buf;
	uint64_t end = off + len;
	while (off < end) {
		uint64_t b = off / OVL_BS, e;
		int in;
		pthread_mutex_lock(&o->lock);
		in = test_bit(o, b);
		/* a run of blocks on the same side */
		for (e = b + 1; e * OVL_BS < end && test_bit(o, e) == in; e++)
			;
		pthread_mutex_unlock(&o->lock);
		uint64_t rend = VMB_MIN(end, e * OVL_BS);
		size_t n = (size_t)(rend - off);
		if (in) {
			if (pread_all(o->fd, out, n, o->data_off + off))
				return io_error(o, "read");
		} else {
			int rc = vmb_disk_read(o->base, out, off, n);
			if (rc)
				return rc;
		}
		out += n;
		off = rend;
	}
	return 0;
}

struct fwd {
	vmb_extent_fn fn;
	void *payload;
	int stopped;
};

static int fwd_cb(const vmb_extent *e, void *payload)
{
	struct fwd *f = payload;
	vmb_extent x = *e;
	x.layer = e->layer < 0 ? -1 : e->layer + 1;
	return f->stopped = f->fn(&x, f->payload);
}

static int v_map(void *data, uint64_t off, uint64_t len, vmb_extent_fn fn,
		 void *payload)
{
	struct vmb_overlay *o = data;
	uint64_t end = off + len;
	while (off < end) {
		uint64_t b = off / OVL_BS, e;
		int in;
		pthread_mutex_lock(&o->lock);
		in = test_bit(o, b);
		for (e = b + 1; e * OVL_BS < end && test_bit(o, e) == in; e++)
			;
		pthread_mutex_unlock(&o->lock);
		uint64_t rend = VMB_MIN(end, e * OVL_BS);
		if (in) {
			vmb_extent x = { off, rend - off, VMB_EXTENT_DATA, 0 };
			if (fn(&x, payload))
				return 0;
		} else {
			struct fwd f = { fn, payload, 0 };
			int rc = vmb_disk_map(o->base, off, rend - off, fwd_cb,
					      &f);
			if (rc || f.stopped)
				return rc;
		}
		off = rend;
	}
	return 0;
}

static void v_close(void *data)
{
	struct vmb_overlay *o = data;
	if (o->fd >= 0) {
		if (vmb_overlay_flush(o))
			vmb_log(VMB_LOG_ERROR, "%s", vmb_error_message());
		close(o->fd);
	}
	free(o->bits);
	free(o->dirty);
	free(o->path);
	pthread_mutex_destroy(&o->lock);
	pthread_mutex_destroy(&o->wlock);
	free(o);
}

static const vmb_disk_ops view_ops = {
	1, "overlay", v_size, v_read, v_map, v_close, NULL
};

/* ---- writes ---- */

/* Block @b with [bo, bo+n) replaced by @src (NULL: zeros), written to the
 * overlay; the rest comes from wherever the block lives now. */
static int write_partial(struct vmb_overlay *o, uint64_t b, uint32_t bo,
			 const uint8_t *src, uint32_t n)
{
	uint8_t blk[OVL_BS];
	uint32_t l = blen(o, b);
	int rc = v_read(o, blk, b * OVL_BS, l);
	if (rc)
		return rc;
	if (src)
		memcpy(blk + bo, src, n);
	else
		memset(blk + bo, 0, n);
	if (pwrite_all(o->fd, blk, l, o->data_off + b * OVL_BS))
		return io_error(o, "write");
	return 0;
}

static void mark(struct vmb_overlay *o, uint64_t first, uint64_t last)
{
	pthread_mutex_lock(&o->lock);
	for (uint64_t b = first; b <= last; b++)
		set_bit(o, b);
	pthread_mutex_unlock(&o->lock);
}

/* Write @buf (NULL: zeros) at [off, off+len), inside the disk. */
static int ovl_put(struct vmb_overlay *o, const uint8_t *buf, uint64_t off,
		   uint64_t len)
{
	uint64_t end = off + len;
	int rc = 0;
	if (!vmb_range_ok(off, len, o->size))
		return vmb_error_set(VMB_ENOSPC, "write beyond the end of the "
				     "disk");
	if (!len)
		return 0;
	pthread_mutex_lock(&o->wlock);
	while (off < end && !rc) {
		uint64_t b = off / OVL_BS;
		uint32_t bo = (uint32_t)(off % OVL_BS);
		uint32_t l = blen(o, b);
		if (bo || end - off < l) { /* part of one block */
			uint32_t n = (uint32_t)VMB_MIN(end - off,
						       (uint64_t)(l - bo));
			rc = write_partial(o, b, bo, buf, n);
			if (!rc)
				mark(o, b, b);
			if (buf)
				buf += n;
			off += n;
			continue;
		}
		/* whole blocks in one go */
		uint64_t n = (end - off) / OVL_BS * OVL_BS;
		if (end == o->size && end - off - n)
			n = end - off; /* the short last block of the disk */
		if (buf) {
			if (pwrite_all(o->fd, buf, (size_t)n, o->data_off + off))
				rc = io_error(o, "write");
			buf += n;
		} else if (fallocate(o->fd, FALLOC_FL_PUNCH_HOLE |
				     FALLOC_FL_KEEP_SIZE,
				     (off_t)(o->data_off + off),
				     (off_t)n) != 0) {
			/* no hole punching here: write the zeros */
			static const uint8_t z[OVL_BS];
			for (uint64_t p = 0; p < n && !rc; p += OVL_BS)
				if (pwrite_all(o->fd, z, (size_t)VMB_MIN(n - p,
					       (uint64_t)OVL_BS),
					       o->data_off + off + p))
					rc = io_error(o, "write");
		}
		if (!rc)
			mark(o, b, (off + n - 1) / OVL_BS);
		off += n;
	}
	pthread_mutex_unlock(&o->wlock);
	return rc;
}

int vmb_overlay_write(struct vmb_overlay *o, const void *buf, uint64_t off,
		      size_t len)
{
	return ovl_put(o, buf, off, len);
}

int vmb_overlay_zero(struct vmb_overlay *o, uint64_t off, uint64_t len)
{
	return ovl_put(o, NULL, off, len);
}

int vmb_overlay_flush(struct vmb_overlay *o)
{
	int rc = 0;
	pthread_mutex_lock(&o->wlock);
	if (fdatasync(o->fd))
		rc = io_error(o, "sync");
	pthread_mutex_lock(&o->lock);
	for (size_t p = 0; p < o->npages && !rc; p++) {
		uint64_t at = (uint64_t)p * 4096u;
		if (!o->dirty[p])
			continue;
		if (pwrite_all(o->fd, o->bits + at, (size_t)VMB_MIN(
			       (uint64_t)4096u, o->bitmap_len - at),
			       OVL_HDR + at))
			rc = io_error(o, "write");
		else
			o->dirty[p] = 0;
	}
	pthread_mutex_unlock(&o->lock);
	if (!rc && fdatasync(o->fd))
		rc = io_error(o, "sync");
	pthread_mutex_unlock(&o->wlock);
	return rc;
}

/* ---- open ---- */

static void put_str(char *dst, size_t cap, const char *s)
{
	memset(dst, 0, cap);
	if (s)
		memcpy(dst, s, VMB_MIN(strlen(s), cap - 1));
}

/* Header fields; @strings at 48 (repo 64), 112 (snap 64), 176 (disk 256). */
static int parse_header(const char *path, const uint8_t *h,
			uint64_t *size, uint64_t *bitmap_len,
			uint64_t *data_off)
{
	uint64_t nblocks;
	if (memcmp(h, OVL_MAGIC, 8) != 0)
		return vmb_error_set(VMB_EFORMAT, "%s is not a vmb overlay",
				     path);
	if (vmb_le32(h + 8) != 1 || vmb_le32(h + 12) != OVL_BS)
		return vmb_error_set(VMB_ENOTSUP, "overlay %s: version %u, "
				     "block size %u not supported", path,
				     vmb_le32(h + 8), vmb_le32(h + 12));
	*size = vmb_le64(h + 16);
	*bitmap_len = vmb_le64(h + 32);
	*data_off = vmb_le64(h + 40);
	nblocks = *size / OVL_BS + (*size % OVL_BS != 0);
	if (*size == 0 || *size > (UINT64_C(1) << 56) ||
	    vmb_le64(h + 24) != OVL_HDR ||
	    *bitmap_len != (nblocks + 7) / 8 ||
	    *data_off % OVL_BS || *data_off < OVL_HDR + *bitmap_len ||
	    h[48 + 63] || h[112 + 63] || h[176 + 255])
		return vmb_error_set(VMB_EFORMAT, "overlay %s: damaged header",
				     path);
	return 0;
}

int vmb_overlay_identify(const char *path, char repo_id[65], char snap[65],
			 char disk[257], uint64_t *size)
{
	uint8_t h[OVL_HDR];
	uint64_t bl, doff;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
	if (fd < 0)
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "cannot open overlay %s: %s", path,
				     strerror(errno));
	rc = pread_all(fd, h, sizeof h, 0);
	close(fd);
	if (rc)
		return vmb_error_set(VMB_EIO, "cannot read overlay %s", path);
	rc = parse_header(path, h, size, &bl, &doff);
	if (rc)
		return rc;
	memcpy(repo_id, h + 48, 64);
	repo_id[64] = 0;
	memcpy(snap, h + 112, 64);
	snap[64] = 0;
	memcpy(disk, h + 176, 256);
	disk[256] = 0;
	return 0;
}

int vmb_overlay_open(const char *path, vmb_disk *base, const char *repo_id,
		     const char *snap, const char *disk, int create,
		     struct vmb_overlay **ovl, vmb_disk **view)
{
	struct vmb_overlay *o;
	uint8_t *h;
	struct stat st;
	int rc = 0;
	*ovl = NULL;
	*view = NULL;
	o = vmb_calloc(1, sizeof *o);
	if (!o)
		return VMB_ENOMEM;
	o->fd = -1;
	pthread_mutex_init(&o->lock, NULL);
	pthread_mutex_init(&o->wlock, NULL);
	o->base = base;
	o->path = vmb_strdup(path);
	o->size = vmb_disk_size(base);
	o->nblocks = o->size / OVL_BS + (o->size % OVL_BS != 0);
	o->bitmap_len = (o->nblocks + 7) / 8;
	o->data_off = (OVL_HDR + o->bitmap_len + (1u << 20) - 1) &
		      ~(uint64_t)((1u << 20) - 1);
	h = (uint8_t *)o->hdr;
	if (!o->path) {
		rc = VMB_ENOMEM;
		goto fail;
	}
	o->fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
	if (o->fd < 0 || fstat(o->fd, &st)) {
		rc = vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				   "cannot open overlay %s: %s", path,
				   strerror(errno));
		goto fail;
	}
	if (st.st_size == 0 && create) {
		memcpy(h, OVL_MAGIC, 8);
		vmb_put_le32(h + 8, 1);
		vmb_put_le32(h + 12, OVL_BS);
		vmb_put_le64(h + 16, o->size);
		vmb_put_le64(h + 24, OVL_HDR);
		vmb_put_le64(h + 32, o->bitmap_len);
		vmb_put_le64(h + 40, o->data_off);
		put_str(o->hdr + 48, 64, repo_id);
		put_str(o->hdr + 112, 64, snap);
		put_str(o->hdr + 176, 256, disk);
		if (pwrite_all(o->fd, h, OVL_HDR, 0) ||
		    ftruncate(o->fd, (off_t)(o->data_off + o->size)) ||
		    fsync(o->fd)) {
			rc = io_error(o, "create");
			goto fail;
		}
	} else {
		uint64_t size, bl, doff;
		if (pread_all(o->fd, h, OVL_HDR, 0)) {
			rc = io_error(o, "read");
			goto fail;
		}
		rc = parse_header(path, h, &size, &bl, &doff);
		if (rc)
			goto fail;
		if (size != o->size ||
		    (repo_id && strcmp(o->hdr + 48, repo_id) != 0) ||
		    (snap && strcmp(o->hdr + 112, snap) != 0) ||
		    (disk && strcmp(o->hdr + 176, disk) != 0)) {
			rc = vmb_error_set(VMB_EINVAL, "overlay %s belongs to "
					   "disk %s of snapshot %.12s, not "
					   "this one", path, o->hdr + 176,
					   o->hdr + 112);
			goto fail;
		}
		o->data_off = doff;
	}
	o->npages = (size_t)((o->bitmap_len + 4095) / 4096);
	o->bits = vmb_calloc(1, (size_t)o->bitmap_len);
	o->dirty = vmb_calloc(1, o->npages ? o->npages : 1);
	if (!o->bits || !o->dirty) {
		rc = VMB_ENOMEM;
		goto fail;
	}
	if (pread_all(o->fd, o->bits, (size_t)o->bitmap_len, OVL_HDR)) {
		rc = io_error(o, "read");
		goto fail;
	}
	rc = vmb_disk_new(&view_ops, o, view);
	if (rc)
		goto fail;
	*ovl = o;
	return 0;
fail:
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	v_close(o);
	return rc;
}
