/*
 * qcow2 writing for changed-block tracking and image snapshots:
 *  - persistent dirty bitmaps added to / removed from an existing image,
 *    crash-safely (see vmb_disk__qcow2_bitmaps_edit and docs/cbt.md);
 *  - QEMU-compatible image locks;
 *  - new layers: empty overlays and merged layers with a backing file.
 *
 * Crash-safety rules followed everywhere (formats.md 1.15): clusters are
 * written before anything references them; refcounts are raised before a
 * reference is added and dropped only after it is gone; every step ends
 * with fsync.  A crash therefore leaves leaked clusters at worst.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/killpoint.h"
#include "common/util.h"
#include "qcow2.h"

#define QCOW2_MAGIC 0x514649FBu
#define EXT_BACKING_FORMAT 0xE2792ACAu
#define EXT_BITMAPS 0x23852875u
#define AUTOCLEAR_BITMAPS 1ULL
#define AUTOCLEAR_KNOWN 3ULL
#define INCOMPAT_DIRTY (1ULL << 0)
#define INCOMPAT_CORRUPT (1ULL << 1)
#define INCOMPAT_DATA_FILE (1ULL << 2)
#define INCOMPAT_KNOWN 0x1fULL
#define OFFSET_MASK 0x00fffffffffffe00ULL
#define OFLAG_COPIED (1ULL << 63)
#define OFLAG_ZERO 1ULL
#define MAX_REFTABLE_BYTES (8u << 20)
#define MAX_BITMAPS 65535u
#define MAX_BITMAP_DIR (1024ULL * 65535)
#define MAX_BITMAP_TABLE 0x8000000ULL
#define SECTOR 512u

typedef unsigned long long ull;

void vmb_disk__crash_point(const char *step)
{
	const char *at = getenv("VMB_TEST_CRASH_AT");
	if (at && step && strcmp(at, step) == 0)
		_exit(99);
	vmb__kill_point("step", step, -1);
}

/* ---- locks ---- */

static int lock_range(int fd, off_t start, off_t len)
{
	struct flock fl;
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = start;
	fl.l_len = len;
	return fcntl(fd, F_OFD_SETLK, &fl);
}

int vmb_disk__image_lock(const char *path, int *out)
{
	int fd, e;
	*out = -1;
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		return vmb_error_set(e == ENOENT ? VMB_ENOTFOUND :
				     (e == EACCES || e == EROFS || e == EPERM) ?
				     VMB_EACCES : VMB_EIO,
				     "cannot open %s for writing: %s", path,
				     strerror(e));
	}
	/* QEMU: shared locks on 100+perm (permissions held) and 200+perm
	 * (permissions not shared); a write lock over both conflicts with
	 * any QEMU process that has the image open */
	if (lock_range(fd, 100, 64) != 0 || lock_range(fd, 200, 64) != 0) {
		e = errno;
		close(fd);
		if (e == EAGAIN || e == EACCES)
			return vmb_error_set(VMB_ELOCKED,
					     "%s is in use: a running QEMU (or "
					     "another program) holds a lock on it",
					     path);
		return vmb_error_set(VMB_ENOTSUP, "cannot lock %s: %s", path,
				     strerror(e));
	}
	*out = fd;
	return 0;
}

/* ---- an image being edited ---- */

struct img {
	int fd;
	const char *path;
	uint64_t fsize, cs;
	unsigned cb;
	uint8_t *c0; /* cluster 0 (zero padded) */
	uint32_t version, hlen, rorder;
	uint64_t incompat, autoclear, size;
	uint64_t boff;   /* backing name offset, 0 = none */
	uint32_t blen;
	char *bname, *bfmt;
	uint64_t ext_end; /* end of the extension area */
	uint64_t bm_pos;  /* offset of the bitmaps extension, 0 = none */
	uint64_t end_pos; /* first byte after the last extension */
	int bm_last;      /* the bitmaps extension is the last one */
	uint32_t nb;
	uint64_t dir_size, dir_off;
	uint64_t rt_off, rt_n; /* refcount table, entries */
	uint64_t *rt;
	uint64_t epb;
	unsigned rbits;
	uint8_t **blk;      /* refcount blocks read or created */
	uint8_t *bdirty;    /* block must be written */
	uint64_t *bnew;     /* new block's cluster (0: not new) */
	uint64_t *taken;    /* clusters allocated by this edit */
	size_t ntaken, captaken;
};

static int iofail(struct img *m, const char *what, int r)
{
	return vmb_error_set(r == -ENOSPC ? VMB_ENOSPC : VMB_EIO,
			     "%s: cannot %s: %s", m->path, what,
			     strerror(r < 0 ? -r : r));
}

static int corrupt(struct img *m, const char *what)
{
	return vmb_error_set(VMB_ECORRUPT, "%s: %s", m->path, what);
}

static int do_sync(struct img *m)
{
	if (fsync(m->fd) != 0)
		return iofail(m, "sync", errno);
	return 0;
}

static int pw(struct img *m, const void *buf, uint64_t len, uint64_t off,
	      const char *what)
{
	int r = vmb_pwrite_full(m->fd, buf, (size_t)len, off);
	if (r < 0)
		return iofail(m, what, r);
	if (off + len > m->fsize)
		m->fsize = off + len;
	return 0;
}

static int pr(struct img *m, void *buf, uint64_t len, uint64_t off,
	      const char *what)
{
	int64_t n;
	if (!vmb_range_ok(off, len, m->fsize))
		return vmb_error_set(VMB_ECORRUPT, "%s: %s beyond end of file",
				     m->path, what);
	n = vmb_pread_full(m->fd, buf, (size_t)len, off);
	if (n < 0)
		return iofail(m, what, (int)n);
	if ((uint64_t)n < len)
		return corrupt(m, "file shrank while reading");
	return 0;
}

static void img_free(struct img *m)
{
	for (uint64_t i = 0; m->blk && i < m->rt_n; i++)
		free(m->blk[i]);
	free(m->blk);
	free(m->bdirty);
	free(m->bnew);
	free(m->rt);
	free(m->c0);
	free(m->taken);
	free(m->bname);
	free(m->bfmt);
}

/* Header, extensions, backing name; refcount table if @p full. */
static int img_parse(struct img *m, int full)
{
	uint8_t h[112];
	struct stat st;
	uint64_t off;
	int r;

	if (fstat(m->fd, &st) != 0)
		return iofail(m, "stat", errno);
	m->fsize = (uint64_t)st.st_size;
	memset(h, 0, sizeof h);
	if (m->fsize < 72)
		return corrupt(m, "not a qcow2 image (too small)");
	if ((r = pr(m, h, VMB_MIN(sizeof h, m->fsize), 0, "read header")))
		return r;
	if (vmb_be32(h) != QCOW2_MAGIC)
		return corrupt(m, "not a qcow2 image");
	m->version = vmb_be32(h + 4);
	m->cb = vmb_be32(h + 20);
	if (m->cb < 9 || m->cb > 21)
		return corrupt(m, "bad cluster size");
	m->cs = 1ULL << m->cb;
	m->size = vmb_be64(h + 24);
	m->boff = vmb_be64(h + 8);
	m->blen = vmb_be32(h + 16);
	if (m->version == 3) {
		m->incompat = vmb_be64(h + 72);
		m->autoclear = vmb_be64(h + 88);
		m->rorder = vmb_be32(h + 96);
		m->hlen = vmb_be32(h + 100);
		if (m->hlen < 104 || m->hlen > m->cs || m->hlen % 8)
			return corrupt(m, "bad header length");
	} else {
		m->rorder = 4;
		m->hlen = 72;
	}
	if (m->rorder > 6)
		return corrupt(m, "bad refcount order");
	m->rt_off = vmb_be64(h + 48);
	m->rt_n = (uint64_t)vmb_be32(h + 56) * m->cs / 8;
	m->c0 = vmb_calloc(1, (size_t)m->cs);
	if (!m->c0)
		return VMB_ENOMEM;
	if ((r = pr(m, m->c0, VMB_MIN(m->cs, m->fsize), 0, "read header")))
		return r;
	if (m->boff) {
		if (m->boff > m->cs || m->blen > 1023 ||
		    m->blen > m->cs - m->boff || m->boff < m->hlen)
			return corrupt(m, "backing file name out of bounds");
		m->bname = vmb_strndup((char *)m->c0 + m->boff, m->blen);
		if (!m->bname)
			return VMB_ENOMEM;
	}
	m->ext_end = m->boff ? m->boff : m->cs;
	off = m->hlen;
	m->end_pos = 0;
	while (off + 8 <= m->ext_end) {
		uint32_t type = vmb_be32(m->c0 + off);
		uint32_t len = vmb_be32(m->c0 + off + 4);
		if (type == 0) {
			m->end_pos = off;
			break;
		}
		if (len > m->ext_end - off - 8)
			return corrupt(m, "header extension runs past its area");
		if (type == EXT_BITMAPS) {
			if (len != 24 || m->bm_pos)
				return corrupt(m, "bad bitmaps extension");
			m->bm_pos = off;
			m->nb = vmb_be32(m->c0 + off + 8);
			m->dir_size = vmb_be64(m->c0 + off + 16);
			m->dir_off = vmb_be64(m->c0 + off + 24);
		} else if (type == EXT_BACKING_FORMAT && !m->bfmt) {
			if (len > 15)
				return corrupt(m, "backing format too long");
			m->bfmt = vmb_strndup((char *)m->c0 + off + 8, len);
			if (!m->bfmt)
				return VMB_ENOMEM;
		}
		off += 8 + (((uint64_t)len + 7) & ~7ULL);
		m->end_pos = off;
	}
	if (!m->end_pos)
		m->end_pos = off;
	m->bm_last = m->bm_pos && m->bm_pos + 32 == m->end_pos;
	if (!full)
		return 0;

	if (m->version != 3)
		return vmb_error_set(VMB_ENOTSUP, "%s: qcow2 version 2 images "
				     "cannot hold persistent bitmaps", m->path);
	if (m->incompat & ~INCOMPAT_KNOWN)
		return vmb_error_set(VMB_ENOTSUP, "%s: unknown incompatible "
				     "features", m->path);
	if (m->incompat & (INCOMPAT_DIRTY | INCOMPAT_CORRUPT |
			   INCOMPAT_DATA_FILE))
		return vmb_error_set(VMB_ENOTSUP, "%s: image is marked dirty "
				     "or corrupt, or has an external data "
				     "file; not writing to it", m->path);
	if (vmb_be32(h + 32))
		return vmb_error_set(VMB_ENOTSUP, "%s: encrypted image",
				     m->path);
	if (!m->rt_n || m->rt_n * 8 > MAX_REFTABLE_BYTES ||
	    (m->rt_off & (m->cs - 1)) || !m->rt_off ||
	    !vmb_range_ok(m->rt_off, m->rt_n * 8, m->fsize))
		return corrupt(m, "bad refcount table");
	m->rbits = 1u << m->rorder;
	m->epb = m->cs * 8 / m->rbits;
	m->rt = vmb_malloc((size_t)m->rt_n * 8);
	m->blk = vmb_calloc((size_t)m->rt_n, sizeof *m->blk);
	m->bdirty = vmb_calloc((size_t)m->rt_n, 1);
	m->bnew = vmb_calloc((size_t)m->rt_n, sizeof *m->bnew);
	if (!m->rt || !m->blk || !m->bdirty || !m->bnew)
		return VMB_ENOMEM;
	if ((r = pr(m, m->rt, m->rt_n * 8, m->rt_off, "read refcount table")))
		return r;
	for (uint64_t i = 0; i < m->rt_n; i++) {
		uint64_t v = vmb_be64((uint8_t *)&m->rt[i]);
		m->rt[i] = v & ~0x1ffULL;
	}
	return 0;
}

/* ---- refcounts ---- */

static uint64_t rc_max(const struct img *m)
{
	return m->rbits == 64 ? UINT64_MAX : (1ULL << m->rbits) - 1;
}

static uint64_t rc_val(const struct img *m, const uint8_t *b, uint64_t i)
{
	switch (m->rbits) {
	case 1: case 2: case 4: {
		uint64_t bit = i * m->rbits;
		return (b[bit / 8] >> (bit % 8)) & ((1u << m->rbits) - 1);
	}
	case 8: return b[i];
	case 16: return vmb_be16(b + 2 * i);
	case 32: return vmb_be32(b + 4 * i);
	default: return vmb_be64(b + 8 * i);
	}
}

static void rc_put(const struct img *m, uint8_t *b, uint64_t i, uint64_t v)
{
	switch (m->rbits) {
	case 1: case 2: case 4: {
		uint64_t bit = i * m->rbits;
		uint8_t mask = (uint8_t)(((1u << m->rbits) - 1) << (bit % 8));
		b[bit / 8] = (uint8_t)((b[bit / 8] & ~mask) |
				       ((v << (bit % 8)) & mask));
		break;
	}
	case 8: b[i] = (uint8_t)v; break;
	case 16: vmb_put_be16(b + 2 * i, (uint16_t)v); break;
	case 32: vmb_put_be32(b + 4 * i, (uint32_t)v); break;
	default: vmb_put_be64(b + 8 * i, v); break;
	}
}

/* The refcount block for table index bi (NULL: none allocated). */
static int rc_block(struct img *m, uint64_t bi, uint8_t **out)
{
	uint64_t off;
	int r;
	*out = NULL;
	if (bi >= m->rt_n)
		return 0;
	if (m->blk[bi]) {
		*out = m->blk[bi];
		return 0;
	}
	off = m->rt[bi];
	if (!off)
		return 0;
	if ((off & (m->cs - 1)) || !vmb_range_ok(off, m->cs, m->fsize))
		return corrupt(m, "refcount block offset out of bounds");
	m->blk[bi] = vmb_malloc((size_t)m->cs);
	if (!m->blk[bi])
		return VMB_ENOMEM;
	if ((r = pr(m, m->blk[bi], m->cs, off, "read refcount block"))) {
		free(m->blk[bi]);
		m->blk[bi] = NULL;
		return r;
	}
	*out = m->blk[bi];
	return 0;
}

static int rc_get(struct img *m, uint64_t c, uint64_t *v)
{
	uint8_t *b;
	int r = rc_block(m, c / m->epb, &b);
	*v = b ? rc_val(m, b, c % m->epb) : 0;
	return r;
}

static int rc_add(struct img *m, uint64_t c, int delta)
{
	uint64_t bi = c / m->epb, v;
	uint8_t *b;
	int r = rc_block(m, bi, &b);
	if (r)
		return r;
	if (!b)
		return corrupt(m, "cluster without a refcount block");
	v = rc_val(m, b, c % m->epb);
	if (delta < 0 && v == 0)
		return corrupt(m, "refcount of a used cluster is 0");
	if (delta > 0 && v == rc_max(m))
		return vmb_error_set(VMB_ENOTSUP, "%s: refcount overflow",
				     m->path);
	rc_put(m, b, c % m->epb, delta > 0 ? v + 1 : v - 1);
	m->bdirty[bi] = 1;
	return 0;
}

static int is_taken(const struct img *m, uint64_t c)
{
	for (size_t i = 0; i < m->ntaken; i++)
		if (m->taken[i] == c)
			return 1;
	return 0;
}

static int take(struct img *m, uint64_t c)
{
	if (m->ntaken == m->captaken) {
		size_t n = m->captaken ? m->captaken * 2 : 16;
		uint64_t *t = vmb_realloc(m->taken, n * sizeof *t);
		if (!t)
			return VMB_ENOMEM;
		m->taken = t;
		m->captaken = n;
	}
	m->taken[m->ntaken++] = c;
	return 0;
}

/* Create (in memory) the refcount block for the unallocated range bi:
 * it lives in its own range, so it counts itself. */
static int new_block(struct img *m, uint64_t bi)
{
	uint64_t c = bi * m->epb;
	int r;
	while (c == 0 || is_taken(m, c))
		c++;
	m->blk[bi] = vmb_calloc(1, (size_t)m->cs);
	if (!m->blk[bi])
		return VMB_ENOMEM;
	rc_put(m, m->blk[bi], c % m->epb, 1);
	m->bnew[bi] = c;
	m->bdirty[bi] = 1;
	if ((r = take(m, c)))
		return r;
	return 0;
}

/* n contiguous free clusters; they are marked taken.  @return first. */
static int alloc_run(struct img *m, uint64_t n, uint64_t *first)
{
	uint64_t run = 0, start = 0;
	for (uint64_t c = 1;; c++) {
		uint64_t bi = c / m->epb, v;
		int r;
		if (bi >= m->rt_n)
			return vmb_error_set(VMB_ENOTSUP, "%s: refcount table "
					     "is full", m->path);
		if (!m->rt[bi] && !m->blk[bi] && (r = new_block(m, bi)))
			return r;
		if ((r = rc_get(m, c, &v)))
			return r;
		if (v == 0 && !is_taken(m, c)) {
			if (!run)
				start = c;
			if (++run == n) {
				for (uint64_t k = 0; k < n; k++)
					if ((r = take(m, start + k)))
						return r;
				*first = start;
				return 0;
			}
		} else {
			run = 0;
		}
	}
}

/* Write every dirty block (existing ones in place, new ones at their
 * cluster), then fsync. */
static int write_blocks(struct img *m)
{
	int r;
	for (uint64_t i = 0; i < m->rt_n; i++) {
		if (!m->bdirty[i])
			continue;
		uint64_t off = m->bnew[i] ? m->bnew[i] * m->cs : m->rt[i];
		if ((r = pw(m, m->blk[i], m->cs, off, "write refcount block")))
			return r;
		m->bdirty[i] = 0;
	}
	return do_sync(m);
}

/* Hook new refcount blocks into the table (after they are durable). */
static int link_new_blocks(struct img *m)
{
	int any = 0, r;
	if ((r = write_blocks(m)))
		return r;
	for (uint64_t i = 0; i < m->rt_n; i++) {
		uint8_t e[8];
		if (!m->bnew[i] || m->rt[i])
			continue;
		vmb_put_be64(e, m->bnew[i] * m->cs);
		if ((r = pw(m, e, 8, m->rt_off + 8 * i,
			    "write refcount table")))
			return r;
		m->rt[i] = m->bnew[i] * m->cs;
		any = 1;
	}
	if (any && (r = do_sync(m)))
		return r;
	for (uint64_t i = 0; i < m->rt_n; i++)
		m->bnew[i] = 0;
	vmb_disk__crash_point("bitmap-refblock-added");
	return 0;
}

/* ---- the bitmap directory ---- */

struct dent {
	const uint8_t *raw;
	uint64_t len; /* padded */
	char *name;
	uint64_t toff;
	uint32_t tsize;
	uint32_t flags;
};

static int parse_dir(struct img *m, uint8_t **dirp, struct dent **out,
		     uint32_t *n)
{
	uint8_t *dir;
	struct dent *d;
	uint64_t pos = 0;
	int r;
	*dirp = NULL;
	*out = NULL;
	*n = 0;
	if (!m->bm_pos || !(m->autoclear & AUTOCLEAR_BITMAPS))
		return 0; /* none, or inconsistent: dropped (clusters leak) */
	if (!m->nb || m->nb > MAX_BITMAPS || m->dir_size > MAX_BITMAP_DIR ||
	    m->dir_size < 24ULL * m->nb || (m->dir_off & (m->cs - 1)) ||
	    !m->dir_off || !vmb_range_ok(m->dir_off, m->dir_size, m->fsize))
		return corrupt(m, "bad bitmap directory");
	dir = vmb_malloc((size_t)m->dir_size);
	d = vmb_calloc(m->nb, sizeof *d);
	if (!dir || !d) {
		free(dir);
		free(d);
		return VMB_ENOMEM;
	}
	*dirp = dir;
	*out = d;
	if ((r = pr(m, dir, m->dir_size, m->dir_off, "read bitmap directory")))
		return r;
	for (uint32_t i = 0; i < m->nb; i++) {
		const uint8_t *e = dir + pos;
		uint64_t len;
		uint16_t nl;
		uint32_t extra;
		if (m->dir_size - pos < 24)
			return corrupt(m, "bitmap directory truncated");
		nl = vmb_be16(e + 18);
		extra = vmb_be32(e + 20);
		len = (24 + (uint64_t)extra + nl + 7) & ~7ULL;
		if (len > m->dir_size - pos || !nl)
			return corrupt(m, "bad bitmap directory entry");
		d[i].raw = e;
		d[i].len = len;
		d[i].toff = vmb_be64(e);
		d[i].tsize = vmb_be32(e + 8);
		d[i].flags = vmb_be32(e + 12);
		d[i].name = vmb_strndup((const char *)e + 24 + extra, nl);
		if (!d[i].name)
			return VMB_ENOMEM;
		if ((d[i].toff & (m->cs - 1)) || !d[i].toff ||
		    d[i].tsize > MAX_BITMAP_TABLE ||
		    !vmb_range_ok(d[i].toff, (uint64_t)d[i].tsize * 8,
				  m->fsize))
			return corrupt(m, "bad bitmap table");
		*n = i + 1;
		pos += len;
	}
	return 0;
}

static void free_dir(struct dent *d, uint32_t n)
{
	for (uint32_t i = 0; d && i < n; i++)
		free(d[i].name);
	free(d);
}

/* Clusters of [off, off+len). */
static int free_range(struct img *m, uint64_t off, uint64_t len)
{
	int r;
	for (uint64_t c = off / m->cs; len && c <= (off + len - 1) / m->cs;
	     c++)
		if ((r = rc_add(m, c, -1)))
			return r;
	return 0;
}

/* Drop the refcounts of a bitmap's table and data clusters. */
static int free_bitmap(struct img *m, const struct dent *d)
{
	uint8_t *tab;
	int r;
	if (!d->tsize)
		return 0;
	tab = vmb_malloc((size_t)d->tsize * 8);
	if (!tab)
		return VMB_ENOMEM;
	r = pr(m, tab, (uint64_t)d->tsize * 8, d->toff, "read bitmap table");
	for (uint32_t k = 0; !r && k < d->tsize; k++) {
		uint64_t o = vmb_be64(tab + 8 * k) & OFFSET_MASK;
		if (o)
			r = rc_add(m, o / m->cs, -1);
	}
	free(tab);
	if (!r)
		r = free_range(m, d->toff, (uint64_t)d->tsize * 8);
	return r;
}

static int pos_in_one_sector(uint64_t off, uint64_t len)
{
	return off / SECTOR == (off + len - 1) / SECTOR;
}

/* Switch the header's bitmaps extension to (nb, size, off). */
static int switch_header(struct img *m, uint32_t nb, uint64_t dsize,
			 uint64_t doff)
{
	uint8_t pay[24], ext[40], ac[8];
	uint64_t keep_ac = m->autoclear & (AUTOCLEAR_KNOWN & ~AUTOCLEAR_BITMAPS);
	int r;

	vmb_put_be32(pay, nb);
	vmb_put_be32(pay + 4, 0);
	vmb_put_be64(pay + 8, dsize);
	vmb_put_be64(pay + 16, doff);

	/* fast path: only the payload changes, inside one sector (a
	 * sector write is atomic, as QEMU's own header updates assume) */
	if (nb && m->bm_pos && (m->autoclear & AUTOCLEAR_BITMAPS) &&
	    !(m->autoclear & ~AUTOCLEAR_KNOWN) &&
	    pos_in_one_sector(m->bm_pos + 8, 24)) {
		if ((r = pw(m, pay, 24, m->bm_pos + 8, "write header")) ||
		    (r = do_sync(m)))
			return r;
		vmb_disk__crash_point("bitmap-header-switched");
		return 0;
	}

	/* 1. every bitmap inconsistent for a moment: a crash from here to
	 *    step 3 loses the bitmaps (QEMU drops them; clusters leak) */
	if (m->autoclear & (AUTOCLEAR_BITMAPS | ~AUTOCLEAR_KNOWN)) {
		vmb_put_be64(ac, keep_ac);
		if ((r = pw(m, ac, 8, 88, "write header")) ||
		    (r = do_sync(m)))
			return r;
		m->autoclear = keep_ac;
	}
	vmb_disk__crash_point("bitmap-autoclear-cleared");
	/* 2. the extension */
	if (m->bm_pos && nb) {
		if ((r = pw(m, pay, 24, m->bm_pos + 8, "write header")))
			return r;
	} else if (m->bm_pos) {
		/* removing the last bitmap: end the list here */
		memset(ext, 0, 8);
		if ((r = pw(m, ext, 8, m->bm_pos, "write header")))
			return r;
		m->bm_pos = 0;
	} else if (nb) {
		if (m->end_pos + 40 > m->ext_end) {
			/* move the backing name to the end of cluster 0 */
			uint64_t nb_off = (m->cs - m->blen) & ~7ULL;
			uint8_t bo[8];
			if ((r = pw(m, m->bname, m->blen, nb_off,
				    "write header")) || (r = do_sync(m)))
				return r;
			vmb_disk__crash_point("bitmap-backing-moved");
			vmb_put_be64(bo, nb_off);
			if ((r = pw(m, bo, 8, 8, "write header")) ||
			    (r = do_sync(m)))
				return r;
			m->boff = m->ext_end = nb_off;
		}
		memset(ext, 0, sizeof ext);
		vmb_put_be32(ext, EXT_BITMAPS);
		vmb_put_be32(ext + 4, 24);
		memcpy(ext + 8, pay, 24);
		if ((r = pw(m, ext, 40, m->end_pos, "write header")))
			return r;
		m->bm_pos = m->end_pos;
	}
	if ((r = do_sync(m)))
		return r;
	vmb_disk__crash_point("bitmap-ext-written");
	/* 3. consistent again */
	if (nb) {
		vmb_put_be64(ac, keep_ac | AUTOCLEAR_BITMAPS);
		if ((r = pw(m, ac, 8, 88, "write header")) ||
		    (r = do_sync(m)))
			return r;
		m->autoclear = keep_ac | AUTOCLEAR_BITMAPS;
	}
	vmb_disk__crash_point("bitmap-header-switched");
	return 0;
}

int vmb_disk__qcow2_bitmaps_edit(int fd, const char *path,
				 const vmb_qcow2_bitmap_edit *e)
{
	struct img m;
	uint8_t *dir = NULL, *ndir = NULL, *zero = NULL;
	struct dent *d = NULL;
	uint32_t n = 0, nkeep = 0;
	uint64_t ndir_size = 0, tsize = 0, tcl = 0, toff = 0, dcl = 0,
		 doff = 0, gbits = 0;
	int *drop = NULL, r;

	memset(&m, 0, sizeof m);
	m.fd = fd;
	m.path = path;
	if ((r = img_parse(&m, 1)) || (r = parse_dir(&m, &dir, &d, &n)))
		goto out;
	drop = vmb_calloc(n ? n : 1, sizeof *drop);
	if (!drop) {
		r = VMB_ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		for (size_t k = 0; k < e->nremove; k++)
			if (e->remove[k] && !strcmp(d[i].name, e->remove[k]))
				drop[i] = 1;
		if (e->add && !strcmp(d[i].name, e->add)) {
			r = vmb_error_set(VMB_EEXISTS, "%s: a bitmap named "
					  "'%s' exists", path, e->add);
			goto out;
		}
		if (!drop[i]) {
			nkeep++;
			ndir_size += d[i].len;
		}
	}
	if (e->add) {
		size_t nl = strlen(e->add);
		uint64_t g = e->add_granularity, bytes;
		if (!nl || nl > 1023 || !vmb_is_pow2(g) || g < 512 ||
		    g > (1ULL << 31)) {
			r = vmb_error_set(VMB_EINVAL, "%s: bad bitmap name or "
					  "granularity", path);
			goto out;
		}
		gbits = (uint64_t)__builtin_ctzll(g);
		bytes = ((m.size + g - 1) / g + 7) / 8;
		tsize = VMB_MAX(1, (bytes + m.cs - 1) / m.cs);
		tcl = (tsize * 8 + m.cs - 1) / m.cs;
		ndir_size += (24 + nl + 7) & ~7ULL;
		nkeep++;
	}
	if (nkeep > MAX_BITMAPS || ndir_size > MAX_BITMAP_DIR) {
		r = vmb_error_set(VMB_ENOTSUP, "%s: too many bitmaps", path);
		goto out;
	}
	/* can the header take the extension?  (decided before writing) */
	if (nkeep && !m.bm_pos && m.end_pos + 40 > m.ext_end &&
	    (!m.boff || ((m.cs - m.blen) & ~7ULL) < m.boff + m.blen ||
	     ((m.cs - m.blen) & ~7ULL) < m.end_pos + 40)) {
		r = vmb_error_set(VMB_ENOTSUP, "%s: no room in the header for "
				  "the bitmaps extension", path);
		goto out;
	}
	if (!nkeep && m.bm_pos && !m.bm_last) {
		r = vmb_error_set(VMB_ENOTSUP, "%s: cannot remove a bitmaps "
				  "extension that is not the last one", path);
		goto out;
	}

	/* the new directory */
	if (nkeep) {
		uint64_t pos = 0;
		dcl = (ndir_size + m.cs - 1) / m.cs;
		if (tcl && (r = alloc_run(&m, tcl, &toff)))
			goto out;
		if ((r = alloc_run(&m, dcl, &doff)))
			goto out;
		ndir = vmb_calloc(1, (size_t)(dcl * m.cs));
		if (!ndir) {
			r = VMB_ENOMEM;
			goto out;
		}
		for (uint32_t i = 0; i < n; i++) {
			if (drop[i])
				continue;
			memcpy(ndir + pos, d[i].raw, (size_t)d[i].len);
			pos += d[i].len;
		}
		if (e->add) {
			uint8_t *p = ndir + pos;
			vmb_put_be64(p, toff * m.cs);
			vmb_put_be32(p + 8, (uint32_t)tsize);
			vmb_put_be32(p + 12, e->add_auto ? 2u : 0u);
			p[16] = 1;
			p[17] = (uint8_t)gbits;
			vmb_put_be16(p + 18, (uint16_t)strlen(e->add));
			vmb_put_be32(p + 20, 0);
			memcpy(p + 24, e->add, strlen(e->add));
		}
	}
	/* 1. new refcount blocks, if the new clusters need some */
	if ((r = link_new_blocks(&m)))
		goto out;
	/* 2. new clusters (an empty bitmap: a table of zero entries) */
	if (tcl) {
		zero = vmb_calloc(1, (size_t)(tcl * m.cs));
		if (!zero) {
			r = VMB_ENOMEM;
			goto out;
		}
		if ((r = pw(&m, zero, tcl * m.cs, toff * m.cs,
			    "write bitmap table")))
			goto out;
	}
	if (dcl && (r = pw(&m, ndir, dcl * m.cs, doff * m.cs,
			   "write bitmap directory")))
		goto out;
	if ((r = do_sync(&m)))
		goto out;
	vmb_disk__crash_point("bitmap-data-written");
	/* 3. their refcounts */
	for (uint64_t k = 0; k < tcl && !r; k++)
		r = rc_add(&m, toff + k, +1);
	for (uint64_t k = 0; k < dcl && !r; k++)
		r = rc_add(&m, doff + k, +1);
	if (r || (r = write_blocks(&m)))
		goto out;
	vmb_disk__crash_point("bitmap-refcounts-raised");
	/* 4. the switch */
	if ((r = switch_header(&m, nkeep, ndir_size, doff * m.cs)))
		goto out;
	/* 5. free what is no longer referenced */
	if (n) {
		for (uint32_t i = 0; i < n && !r; i++)
			if (drop[i])
				r = free_bitmap(&m, &d[i]);
		if (!r)
			r = free_range(&m, m.dir_off, m.dir_size);
		if (r || (r = write_blocks(&m)))
			goto out;
	}
	vmb_disk__crash_point("bitmap-old-freed");
out:
	free(drop);
	free(zero);
	free(ndir);
	free(dir);
	free_dir(d, n);
	img_free(&m);
	return r;
}

int vmb_disk__qcow2_backing(const char *path, char **backing, char **fmt)
{
	struct img m;
	int r;
	*backing = *fmt = NULL;
	memset(&m, 0, sizeof m);
	m.path = path;
	m.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (m.fd < 0)
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "cannot open %s: %s", path,
				     strerror(errno));
	r = img_parse(&m, 0);
	close(m.fd);
	if (!r) {
		*backing = m.bname;
		*fmt = m.bfmt;
		m.bname = m.bfmt = NULL;
	}
	img_free(&m);
	return r;
}

/* ---- new layers ---- */

enum { ST_DATA = 1, ST_ZERO = 2, ST_OTHER = 4 };

struct lw_map {
	uint8_t *st;
	uint64_t n;
	unsigned cb;
	int keep;
};

static int lw_map_cb(const vmb_extent *e, void *payload)
{
	struct lw_map *m = payload;
	uint8_t bit = ST_OTHER;
	if (e->layer >= 0 && e->layer < m->keep)
		bit = e->kind == VMB_EXTENT_DATA ? ST_DATA :
		      e->kind == VMB_EXTENT_ZERO ? ST_ZERO : ST_OTHER;
	for (uint64_t c = e->offset >> m->cb;
	     c <= (e->offset + e->length - 1) >> m->cb && c < m->n; c++)
		m->st[c] |= bit;
	return 0;
}

int vmb_disk__qcow2_write_layer(const char *path, uint64_t size,
				const char *backing, const char *backing_fmt,
				vmb_disk *src, int keep, unsigned mode)
{
	const uint64_t cs = 65536;
	const unsigned cb = 16, l2b = cb - 3;
	uint64_t ncl = (size + cs - 1) / cs;
	uint64_t l1n = VMB_MAX(1, (size + (cs << l2b) - 1) / (cs << l2b));
	uint64_t next = cs, l1_off, l1c, n0, nb = 0, nt = 0, total, rt_off,
		 rb_off, epb = cs * 8 / 16;
	uint64_t **l2 = NULL, *l2off = NULL;
	uint8_t *buf = NULL, *st = NULL;
	size_t blen = backing ? strlen(backing) : 0;
	size_t flen = backing_fmt ? strlen(backing_fmt) : 0;
	struct img m;
	int r = 0;

	memset(&m, 0, sizeof m);
	m.path = path;
	if (blen > 1023 || flen > 15 || 112 + 8 + ((flen + 7) & ~7u) + 8 +
	    blen > cs)
		return vmb_error_set(VMB_EINVAL, "%s: backing name too long",
				     path);
	if (l1n * 8 > (32u << 20))
		return vmb_error_set(VMB_EINVAL, "%s: disk too large", path);
	l2 = vmb_calloc((size_t)l1n, sizeof *l2);
	l2off = vmb_calloc((size_t)l1n, sizeof *l2off);
	buf = vmb_malloc((size_t)cs);
	if (!l2 || !l2off || !buf) {
		r = VMB_ENOMEM;
		goto out_nofile;
	}
	m.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
		    mode ? mode : 0644);
	if (m.fd < 0) {
		int e = errno;
		r = vmb_error_set(e == EEXIST ? VMB_EEXISTS :
				  e == EACCES ? VMB_EACCES : VMB_EIO,
				  "cannot create %s: %s", path, strerror(e));
		goto out_nofile;
	}
	if (mode)
		fchmod(m.fd, mode);
	if (src && keep > 0) {
		struct lw_map lm;
		st = vmb_calloc(ncl ? ncl : 1, 1);
		if (!st) {
			r = VMB_ENOMEM;
			goto fail;
		}
		lm.st = st;
		lm.n = ncl;
		lm.cb = cb;
		lm.keep = keep;
		if ((r = vmb_disk_map(src, 0, size, lw_map_cb, &lm)))
			goto fail;
		for (uint64_t c = 0; c < ncl; c++) {
			uint64_t e, g = c << cb, len = VMB_MIN(cs, size - g);
			if (!(st[c] & (ST_DATA | ST_ZERO)))
				continue; /* not ours: the backing file's */
			if (st[c] == ST_ZERO) {
				e = OFLAG_ZERO;
			} else {
				memset(buf, 0, (size_t)cs);
				if ((r = vmb_disk_read(src, buf, g, (size_t)len)))
					goto fail;
				if (vmb_is_zero(buf, (size_t)cs)) {
					e = OFLAG_ZERO;
				} else {
					if ((r = pw(&m, buf, cs, next,
						    "write data")))
						goto fail;
					e = next | OFLAG_COPIED;
					next += cs;
				}
			}
			if (!l2[c >> l2b] &&
			    !(l2[c >> l2b] = vmb_calloc(1, (size_t)cs))) {
				r = VMB_ENOMEM;
				goto fail;
			}
			l2[c >> l2b][c & ((1u << l2b) - 1)] = e;
		}
	}
	if ((r = do_sync(&m)))
		goto fail;
	vmb_disk__crash_point("layer-data-written");
	for (uint64_t i = 0; i < l1n; i++) {
		if (!l2[i])
			continue;
		for (uint64_t j = 0; j < cs / 8; j++)
			vmb_put_be64(buf + 8 * j, l2[i][j]);
		l2off[i] = next;
		if ((r = pw(&m, buf, cs, next, "write L2 table")))
			goto fail;
		next += cs;
	}
	l1c = (l1n * 8 + cs - 1) / cs;
	l1_off = next;
	for (uint64_t k = 0; k < l1c; k++) {
		memset(buf, 0, (size_t)cs);
		for (uint64_t j = 0; j < cs / 8 && k * (cs / 8) + j < l1n; j++) {
			uint64_t o = l2off[k * (cs / 8) + j];
			vmb_put_be64(buf + 8 * j, o ? o | OFLAG_COPIED : 0);
		}
		if ((r = pw(&m, buf, cs, next, "write L1 table")))
			goto fail;
		next += cs;
	}
	n0 = next / cs;
	for (;;) {
		uint64_t t = n0 + nb + nt;
		uint64_t nb2 = (t + epb - 1) / epb;
		uint64_t nt2 = (nb2 * 8 + cs - 1) / cs;
		if (nb2 == nb && nt2 == nt)
			break;
		nb = nb2;
		nt = nt2;
	}
	total = n0 + nb + nt;
	rt_off = next;
	rb_off = rt_off + nt * cs;
	for (uint64_t i = 0; i < nt; i++) {
		memset(buf, 0, (size_t)cs);
		for (uint64_t j = 0; j < cs / 8; j++)
			if (i * (cs / 8) + j < nb)
				vmb_put_be64(buf + 8 * j,
					     rb_off + (i * (cs / 8) + j) * cs);
		if ((r = pw(&m, buf, cs, rt_off + i * cs,
			    "write refcount table")))
			goto fail;
	}
	for (uint64_t i = 0; i < nb; i++) {
		memset(buf, 0, (size_t)cs);
		for (uint64_t j = 0; j < epb; j++)
			if (i * epb + j < total)
				vmb_put_be16(buf + 2 * j, 1);
		if ((r = pw(&m, buf, cs, rb_off + i * cs,
			    "write refcount block")))
			goto fail;
	}
	/* header, last */
	{
		uint64_t off = 112;
		memset(buf, 0, (size_t)cs);
		vmb_put_be32(buf, QCOW2_MAGIC);
		vmb_put_be32(buf + 4, 3);
		vmb_put_be32(buf + 20, cb);
		vmb_put_be64(buf + 24, size);
		vmb_put_be32(buf + 36, (uint32_t)l1n);
		vmb_put_be64(buf + 40, l1_off);
		vmb_put_be64(buf + 48, rt_off);
		vmb_put_be32(buf + 56, (uint32_t)nt);
		vmb_put_be32(buf + 96, 4);
		vmb_put_be32(buf + 100, 112);
		if (flen) {
			vmb_put_be32(buf + off, EXT_BACKING_FORMAT);
			vmb_put_be32(buf + off + 4, (uint32_t)flen);
			memcpy(buf + off + 8, backing_fmt, flen);
			off += 8 + ((flen + 7) & ~7u);
		}
		off += 8; /* end of extensions */
		if (blen) {
			vmb_put_be64(buf + 8, off);
			vmb_put_be32(buf + 16, (uint32_t)blen);
			memcpy(buf + off, backing, blen);
		}
		if ((r = pw(&m, buf, cs, 0, "write header")))
			goto fail;
	}
	if ((r = do_sync(&m)))
		goto fail;
	if (close(m.fd) != 0) {
		m.fd = -1;
		r = iofail(&m, "close", errno);
		goto fail;
	}
	m.fd = -1;
	goto out_nofile;
fail:
	if (m.fd >= 0)
		close(m.fd);
	unlink(path);
out_nofile:
	for (uint64_t i = 0; l2 && i < l1n; i++)
		free(l2[i]);
	free(l2);
	free(l2off);
	free(buf);
	free(st);
	return r;
}
