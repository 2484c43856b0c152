/*
 * qcow2 images (v2 and v3).
 *
 * Reader: all cluster sizes QEMU accepts (512 B .. 2 MiB), standard and
 * extended L2 entries, zero clusters and subclusters, compressed clusters
 * (deflate, zstd), backing files, header extensions, internal snapshots
 * (viewed read-only) and persistent dirty bitmaps.  Every offset read from
 * the file is checked against the file size before use; allocations are
 * capped by the file size or by QEMU's own limits.
 *
 * Writer: v3, sparse, data clusters appended as they come; L2 tables stay
 * in memory and are written at finish together with the L1 table and the
 * refcount structures (every used cluster has refcount 1).
 *
 * Layout of a file written here:
 *   cluster 0        header (written last)
 *   clusters 1..     guest data, in write order
 *   then             L2 tables, L1 table, refcount table, refcount blocks
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include "common/util.h"
#include "format.h"
#include "qcow2.h"

#define QCOW2_MAGIC 0x514649FBu

#define INCOMPAT_DIRTY (1ULL << 0)
#define INCOMPAT_CORRUPT (1ULL << 1)
#define INCOMPAT_DATA_FILE (1ULL << 2)
#define INCOMPAT_COMPRESSION (1ULL << 3)
#define INCOMPAT_EXTL2 (1ULL << 4)
#define INCOMPAT_KNOWN 0x1fULL
#define COMPAT_LAZY_REFCOUNTS (1ULL << 0)
#define AUTOCLEAR_BITMAPS (1ULL << 0)

#define EXT_BACKING_FORMAT 0xE2792ACAu
#define EXT_FEATURE_TABLE 0x6803F857u
#define EXT_BITMAPS 0x23852875u
#define EXT_CRYPTO 0x0537BE77u
#define EXT_DATA_FILE 0x44415441u

#define OFFSET_MASK 0x00fffffffffffe00ULL
#define OFLAG_COPIED (1ULL << 63)
#define OFLAG_COMPRESSED (1ULL << 62)
#define OFLAG_ZERO 1ULL

/* QEMU's limits (block/qcow2.h), used to bound allocations */
#define MAX_L1_BYTES (32u << 20)
#define MAX_REFTABLE_BYTES (8u << 20)
#define MAX_SNAPSHOTS 65536u
#define MAX_SNAPSHOT_TABLE (64u << 20)
#define MAX_SNAPSHOT_EXTRA 1024u
#define MAX_BITMAPS 65535u
#define MAX_BITMAP_DIR (1024ULL * 65535)
#define MAX_BITMAP_TABLE 0x8000000ULL
#define MAX_BITMAP_NAME 1023u
#define MAX_BACKING_NAME 1023u

/* L2 cache: at most this many bytes, between MIN and MAX tables */
#define L2_CACHE_BYTES (32u << 20)
#define L2_CACHE_MIN 4u
#define L2_CACHE_MAX 64u
/* L2 entries fetched per cache lock */
#define WALK_BATCH 512u

struct snap {
	char *id;
	char *name;
	uint64_t l1_offset;
	uint32_t l1_size;
	int has_size;
	uint64_t disk_size;
	uint64_t vm_state_size;
	uint32_t date_sec;
	uint32_t date_nsec;
	uint64_t vm_clock_ns;
};

struct bmp {
	uint64_t table_offset;
	uint32_t table_size;
	uint32_t extra_size;
	uint8_t gran_bits;
};

struct l2_slot {
	uint64_t offset; /* 0: empty */
	uint8_t *data;   /* one cluster, as stored (big endian) */
	uint64_t used;
};

struct vmb_qcow2 {
	int fd;
	char *path;
	uint64_t file_size;
	uint32_t version;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint64_t header_size; /* virtual size in the header */
	uint64_t size;        /* virtual size of the viewed state */
	uint64_t incompat, compat, autoclear;
	uint32_t refcount_order;
	uint32_t header_length;
	int ctype; /* 0 deflate, 1 zstd */
	int ext_l2;
	uint32_t l2_bits;    /* log2(entries per L2 table) */
	uint32_t entry_size; /* 8 or 16 */
	uint64_t l1_offset;
	uint32_t l1_size;
	uint64_t *l1; /* L2 offsets (masked), host order */
	uint64_t reftable_offset;
	uint32_t reftable_clusters;
	uint64_t snap_offset;
	uint32_t nsnaps;
	struct snap *snaps;
	int view; /* index of the viewed snapshot, -1: active state */
	int has_bitmap_ext;
	uint64_t bmdir_size;
	uint64_t bmdir_offset;
	int bitmaps_consistent;
	uint32_t nbitmaps;
	struct bmp *bmps;
	vmb_qcow2_bitmap *bitmaps;
	char *backing;
	char *backing_fmt;

	pthread_mutex_t lock; /* guards the caches below */
	struct l2_slot *cache;
	unsigned ncache;
	uint64_t tick;
	uint64_t zcache_desc; /* last decompressed cluster (partial reads) */
	uint8_t *zcache;
	int zcache_valid;
};

static int qfail(const char *path, int code, const char *fmt, ...)
	VMB_PRINTF(3, 4);

/* One line: "<file>: <fault>". */
static int qfail(const char *path, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return vmb_error_set(code, "%s: %s", path, msg);
}

#define CORRUPT(q, ...) qfail((q)->path, VMB_ECORRUPT, __VA_ARGS__)

typedef unsigned long long ull;

/* ---- reading helpers ---- */

static int read_exact(struct vmb_qcow2 *q, void *buf, uint64_t len,
		      uint64_t off, const char *what)
{
	int64_t n;
	if (!vmb_range_ok(off, len, q->file_size))
		return CORRUPT(q, "%s at 0x%llx (%llu bytes) beyond end of file",
			       what, (ull)off, (ull)len);
	n = vmb_pread_full(q->fd, buf, (size_t)len, off);
	if (n < 0)
		return qfail(q->path, VMB_EIO, "cannot read %s at 0x%llx: %s",
			     what, (ull)off, strerror((int)-n));
	if ((uint64_t)n < len)
		return CORRUPT(q, "%s at 0x%llx truncated (file shrank?)",
			       what, (ull)off);
	return 0;
}

/* A table of entries*esize bytes at off: aligned, bounded, inside the
 * file, not in the header cluster. */
static int check_table(struct vmb_qcow2 *q, const char *what, uint64_t off,
		       uint64_t entries, uint64_t esize, uint64_t max_bytes)
{
	uint64_t bytes;
	if (vmb_mul_overflow(entries, esize, &bytes) || bytes > max_bytes)
		return CORRUPT(q, "%s too large (%llu entries)", what,
			       (ull)entries);
	if (!entries)
		return 0;
	if (off & (q->cluster_size - 1))
		return CORRUPT(q, "%s offset 0x%llx not cluster aligned", what,
			       (ull)off);
	if (off == 0)
		return CORRUPT(q, "%s overlaps the header", what);
	if (!vmb_range_ok(off, bytes, q->file_size))
		return CORRUPT(q, "%s offset 0x%llx beyond end of file", what,
			       (ull)off);
	return 0;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b,
			   uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

/* Name of a feature bit from the feature name table, or "". */
static void feature_name(const uint8_t *tab, uint32_t len, int type, int bit,
			 char out[47])
{
	out[0] = 0;
	for (uint32_t i = 0; tab && i + 48 <= len; i += 48) {
		if (tab[i] == type && tab[i + 1] == bit) {
			memcpy(out, tab + i + 2, 46);
			out[46] = 0;
			for (char *c = out; *c; c++)
				if ((unsigned char)*c < 32 || *c == '"')
					*c = '?';
			return;
		}
	}
}

static int parse_header(struct vmb_qcow2 *q)
{
	uint8_t h[112];
	uint8_t *c0 = NULL;
	uint64_t c0len, backing_off, ext_end, off;
	uint32_t backing_len, crypt, nb_snap;
	const uint8_t *ftab = NULL;
	uint32_t ftab_len = 0;
	int seen_fmt = 0, seen_ftab = 0;
	uint64_t needed, l1_bytes, rt_bytes;
	unsigned shift;
	int r;

	if (q->file_size < 72)
		return CORRUPT(q, "file too small for a qcow2 header (%llu bytes)",
			       (ull)q->file_size);
	memset(h, 0, sizeof h);
	r = read_exact(q, h, VMB_MIN(sizeof h, q->file_size), 0, "header");
	if (r)
		return r;
	if (vmb_be32(h) != QCOW2_MAGIC)
		return CORRUPT(q, "not a qcow2 image (bad magic)");
	q->version = vmb_be32(h + 4);
	if (q->version != 2 && q->version != 3)
		return qfail(q->path, VMB_ENOTSUP,
			     "qcow2 version %u is not supported", q->version);
	backing_off = vmb_be64(h + 8);
	backing_len = vmb_be32(h + 16);
	q->cluster_bits = vmb_be32(h + 20);
	if (q->cluster_bits < 9 || q->cluster_bits > 21)
		return CORRUPT(q, "cluster_bits %u out of range 9..21",
			       q->cluster_bits);
	q->cluster_size = 1ULL << q->cluster_bits;
	q->header_size = q->size = vmb_be64(h + 24);
	crypt = vmb_be32(h + 32);
	q->l1_size = vmb_be32(h + 36);
	q->l1_offset = vmb_be64(h + 40);
	q->reftable_offset = vmb_be64(h + 48);
	q->reftable_clusters = vmb_be32(h + 56);
	nb_snap = vmb_be32(h + 60);
	q->snap_offset = vmb_be64(h + 64);
	if (q->version == 3) {
		if (q->file_size < 104)
			return CORRUPT(q, "truncated v3 header");
		q->incompat = vmb_be64(h + 72);
		q->compat = vmb_be64(h + 80);
		q->autoclear = vmb_be64(h + 88);
		q->refcount_order = vmb_be32(h + 96);
		q->header_length = vmb_be32(h + 100);
		if (q->header_length < 104)
			return CORRUPT(q, "header length %u too small",
				       q->header_length);
		if (q->header_length > q->cluster_size)
			return CORRUPT(q, "header length %u larger than a cluster",
				       q->header_length);
		if (q->header_length > q->file_size)
			return CORRUPT(q, "header length %u beyond end of file",
				       q->header_length);
	} else {
		q->refcount_order = 4;
		q->header_length = 72;
	}
	if (q->refcount_order > 6)
		return CORRUPT(q, "refcount order %u out of range 0..6",
			       q->refcount_order);

	/* cluster 0: header, extensions, backing file name */
	c0len = VMB_MIN(q->cluster_size, q->file_size);
	c0 = vmb_calloc(1, (size_t)q->cluster_size);
	if (!c0)
		return VMB_ENOMEM;
	r = read_exact(q, c0, c0len, 0, "header cluster");
	if (r)
		goto out;

	if (backing_off) {
		if (backing_off > q->cluster_size ||
		    backing_len > MAX_BACKING_NAME ||
		    backing_len > q->cluster_size - backing_off) {
			r = CORRUPT(q, "backing file name at 0x%llx (%u bytes) out of bounds",
				    (ull)backing_off, backing_len);
			goto out;
		}
		if (backing_off < q->header_length) {
			r = CORRUPT(q, "backing file name overlaps the header");
			goto out;
		}
		if (backing_off + backing_len > c0len) {
			r = CORRUPT(q, "backing file name beyond end of file");
			goto out;
		}
		if (memchr(c0 + backing_off, 0, backing_len)) {
			r = CORRUPT(q, "backing file name contains a NUL byte");
			goto out;
		}
		if (backing_len) {
			q->backing = vmb_strndup((char *)c0 + backing_off,
						 backing_len);
			if (!q->backing) {
				r = VMB_ENOMEM;
				goto out;
			}
		}
	}

	/* header extensions */
	ext_end = backing_off ? backing_off : q->cluster_size;
	ext_end = VMB_MIN(ext_end, c0len);
	off = q->header_length;
	while (off + 8 <= ext_end) {
		uint32_t type = vmb_be32(c0 + off);
		uint32_t len = vmb_be32(c0 + off + 4);
		const uint8_t *data = c0 + off + 8;
		if (type == 0)
			break;
		if (len > ext_end - off - 8) {
			r = CORRUPT(q, "header extension 0x%08x at offset %llu: length %u runs past the extension area",
				    type, (ull)off, len);
			goto out;
		}
		switch (type) {
		case EXT_BACKING_FORMAT:
			if (seen_fmt++) {
				r = CORRUPT(q, "duplicate backing format extension");
				goto out;
			}
			if (len > 15) {
				r = CORRUPT(q, "backing format name too long (%u bytes)",
					    len);
				goto out;
			}
			q->backing_fmt = vmb_strndup((const char *)data, len);
			if (!q->backing_fmt) {
				r = VMB_ENOMEM;
				goto out;
			}
			break;
		case EXT_FEATURE_TABLE:
			if (seen_ftab++) {
				r = CORRUPT(q, "duplicate feature table extension");
				goto out;
			}
			ftab = data;
			ftab_len = len;
			break;
		case EXT_BITMAPS:
			if (q->has_bitmap_ext) {
				r = CORRUPT(q, "duplicate bitmaps extension");
				goto out;
			}
			if (len != 24) {
				r = CORRUPT(q, "bitmaps extension has length %u, want 24",
					    len);
				goto out;
			}
			q->has_bitmap_ext = 1;
			q->nbitmaps = vmb_be32(data);
			if (vmb_be32(data + 4) != 0) {
				r = CORRUPT(q, "bitmaps extension reserved field not zero");
				goto out;
			}
			q->bmdir_size = vmb_be64(data + 8);
			q->bmdir_offset = vmb_be64(data + 16);
			break;
		default: /* crypto header pointer, data file name, unknown */
			break;
		}
		off += 8 + (((uint64_t)len + 7) & ~7ULL);
	}

	/* features */
	if (q->incompat & ~INCOMPAT_KNOWN) {
		uint64_t unknown = q->incompat & ~INCOMPAT_KNOWN;
		int bit = __builtin_ctzll(unknown);
		char name[47];
		feature_name(ftab, ftab_len, 0, bit, name);
		r = qfail(q->path, VMB_ENOTSUP,
			  "unsupported incompatible feature bit %d%s%s%s", bit,
			  name[0] ? " (" : "", name, name[0] ? ")" : "");
		goto out;
	}
	if (crypt) {
		r = qfail(q->path, VMB_ENOTSUP,
			  "encrypted images are not supported (crypt_method %u)",
			  crypt);
		goto out;
	}
	if (q->incompat & INCOMPAT_DATA_FILE) {
		r = qfail(q->path, VMB_ENOTSUP,
			  "images with an external data file are not supported");
		goto out;
	}
	if (q->incompat & INCOMPAT_COMPRESSION) {
		if (q->header_length < 105) {
			r = CORRUPT(q, "compression type bit set but no compression type field");
			goto out;
		}
		q->ctype = c0[104];
		if (q->ctype == 0) {
			r = CORRUPT(q, "compression type bit set with compression type zlib");
			goto out;
		}
		if (q->ctype != 1) {
			r = qfail(q->path, VMB_ENOTSUP,
				  "unknown compression type %d", q->ctype);
			goto out;
		}
	} else if (q->header_length >= 105 && c0[104] != 0) {
		r = CORRUPT(q, "compression type %u without incompatible bit 3",
			    c0[104]);
		goto out;
	}
	if (q->incompat & INCOMPAT_EXTL2) {
		if (q->cluster_bits < 14) {
			r = CORRUPT(q, "extended L2 entries need clusters of at least 16 KiB");
			goto out;
		}
		q->ext_l2 = 1;
	}
	q->entry_size = q->ext_l2 ? 16 : 8;
	q->l2_bits = q->cluster_bits - (q->ext_l2 ? 4 : 3);

	/* geometry */
	if (q->size > VMB_DISK_MAX_SIZE) {
		r = CORRUPT(q, "virtual size %llu is absurd", (ull)q->size);
		goto out;
	}
	shift = q->cluster_bits + q->l2_bits;
	needed = (q->size + (1ULL << shift) - 1) >> shift;
	if (q->l1_size < needed) {
		r = CORRUPT(q, "L1 table too small (%u entries) for the virtual size",
			    q->l1_size);
		goto out;
	}
	r = check_table(q, "L1 table", q->l1_offset, q->l1_size, 8,
			MAX_L1_BYTES);
	if (r)
		goto out;
	if (q->reftable_clusters == 0) {
		r = CORRUPT(q, "image has no refcount table");
		goto out;
	}
	r = check_table(q, "refcount table", q->reftable_offset,
			(uint64_t)q->reftable_clusters * q->cluster_size / 8, 8,
			MAX_REFTABLE_BYTES);
	if (r)
		goto out;
	l1_bytes = (uint64_t)q->l1_size * 8;
	rt_bytes = (uint64_t)q->reftable_clusters * q->cluster_size;
	if (ranges_overlap(q->l1_offset, l1_bytes, q->reftable_offset,
			   rt_bytes)) {
		r = CORRUPT(q, "L1 table overlaps the refcount table");
		goto out;
	}
	if (nb_snap > MAX_SNAPSHOTS) {
		r = CORRUPT(q, "too many snapshots (%u)", nb_snap);
		goto out;
	}
	q->nsnaps = nb_snap;
	if (nb_snap) {
		r = check_table(q, "snapshot table", q->snap_offset, nb_snap,
				40, (uint64_t)MAX_SNAPSHOTS * 40);
		if (r)
			goto out;
	}
	r = 0;
out:
	free(c0);
	return r;
}

static int load_snapshots(struct vmb_qcow2 *q)
{
	uint64_t off = q->snap_offset, total = 0;
	uint8_t fixed[40];
	uint8_t *var = NULL;
	int r = 0;

	if (!q->nsnaps)
		return 0;
	q->snaps = vmb_calloc(q->nsnaps, sizeof *q->snaps);
	var = vmb_malloc(MAX_SNAPSHOT_EXTRA + 2 * 65535);
	if (!q->snaps || !var) {
		r = VMB_ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < q->nsnaps; i++) {
		struct snap *s = &q->snaps[i];
		uint32_t extra;
		uint16_t id_len, name_len;
		uint64_t vlen, elen;
		char what[64];

		r = read_exact(q, fixed, 40, off, "snapshot table");
		if (r)
			goto out;
		s->l1_offset = vmb_be64(fixed);
		s->l1_size = vmb_be32(fixed + 8);
		id_len = vmb_be16(fixed + 12);
		name_len = vmb_be16(fixed + 14);
		s->date_sec = vmb_be32(fixed + 16);
		s->date_nsec = vmb_be32(fixed + 20);
		s->vm_clock_ns = vmb_be64(fixed + 24);
		s->vm_state_size = vmb_be32(fixed + 32);
		extra = vmb_be32(fixed + 36);
		if (extra > MAX_SNAPSHOT_EXTRA) {
			r = CORRUPT(q, "snapshot %u: extra data too large (%u bytes)",
				    i, extra);
			goto out;
		}
		vlen = (uint64_t)extra + id_len + name_len;
		elen = (40 + vlen + 7) & ~7ULL;
		total += elen;
		if (total > MAX_SNAPSHOT_TABLE) {
			r = CORRUPT(q, "snapshot table larger than 64 MiB");
			goto out;
		}
		r = read_exact(q, var, vlen, off + 40, "snapshot table");
		if (r)
			goto out;
		if (extra >= 8)
			s->vm_state_size = vmb_be64(var);
		if (extra >= 16) {
			s->disk_size = vmb_be64(var + 8);
			s->has_size = 1;
		}
		s->id = vmb_strndup((char *)var + extra, id_len);
		s->name = vmb_strndup((char *)var + extra + id_len, name_len);
		if (!s->id || !s->name) {
			r = VMB_ENOMEM;
			goto out;
		}
		snprintf(what, sizeof what, "snapshot %u L1 table", i);
		r = check_table(q, what, s->l1_offset, s->l1_size, 8,
				MAX_L1_BYTES);
		if (r)
			goto out;
		off += elen;
	}
out:
	free(var);
	return r;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The first non-zero value that appears twice in v[0..n), or 0.  Shared
 * tables would let a small file describe unbounded work. */
static uint64_t find_duplicate(const uint64_t *v, uint64_t n, int *err)
{
	uint64_t *c, m = 0, dup = 0;
	*err = 0;
	if (n < 2)
		return 0;
	c = vmb_malloc((size_t)n * sizeof *c);
	if (!c) {
		*err = VMB_ENOMEM;
		return 0;
	}
	for (uint64_t i = 0; i < n; i++)
		if (v[i])
			c[m++] = v[i];
	qsort(c, (size_t)m, sizeof *c, cmp_u64);
	for (uint64_t i = 1; i < m && !dup; i++)
		if (c[i] == c[i - 1])
			dup = c[i];
	free(c);
	return dup;
}

/* Read the chosen L1 table and check every L2 table offset in it. */
static int load_l1(struct vmb_qcow2 *q, uint64_t l1_off, uint32_t l1_size)
{
	uint8_t *raw;
	uint64_t bytes = (uint64_t)l1_size * 8;
	uint64_t rt_bytes = (uint64_t)q->reftable_clusters * q->cluster_size;
	int r;

	q->l1_size = l1_size;
	q->l1 = vmb_calloc(l1_size ? l1_size : 1, sizeof *q->l1);
	if (!q->l1)
		return VMB_ENOMEM;
	if (!l1_size)
		return 0;
	raw = vmb_malloc((size_t)bytes);
	if (!raw)
		return VMB_ENOMEM;
	r = read_exact(q, raw, bytes, l1_off, "L1 table");
	for (uint32_t i = 0; !r && i < l1_size; i++) {
		uint64_t l2 = vmb_be64(raw + 8 * (uint64_t)i) & OFFSET_MASK;
		q->l1[i] = l2;
		if (!l2)
			continue;
		if (l2 & (q->cluster_size - 1))
			r = CORRUPT(q, "L2 table offset 0x%llx (L1 index %u) not cluster aligned",
				    (ull)l2, i);
		else if (!vmb_range_ok(l2, q->cluster_size, q->file_size))
			r = CORRUPT(q, "L2 table offset 0x%llx (L1 index %u) beyond end of file",
				    (ull)l2, i);
		else if (ranges_overlap(l2, q->cluster_size, l1_off, bytes) ||
			 ranges_overlap(l2, q->cluster_size,
					q->reftable_offset, rt_bytes))
			r = CORRUPT(q, "L2 table at 0x%llx overlaps the L1 or refcount table",
				    (ull)l2);
	}
	free(raw);
	if (!r) {
		uint64_t dup = find_duplicate(q->l1, l1_size, &r);
		if (dup)
			r = CORRUPT(q, "L2 table at 0x%llx used twice in the L1 table",
				    (ull)dup);
	}
	return r;
}

static int load_bitmaps(struct vmb_qcow2 *q)
{
	uint8_t *dir = NULL;
	uint64_t dir_size, dir_off, pos = 0;
	int r = 0;

	if (!q->has_bitmap_ext)
		return 0;
	if (!(q->autoclear & AUTOCLEAR_BITMAPS)) {
		/* written by a program that does not know bitmaps */
		q->bitmaps_consistent = 0;
		q->nbitmaps = 0;
		return 0;
	}
	q->bitmaps_consistent = 1;
	dir_size = q->bmdir_size;
	dir_off = q->bmdir_offset;
	if (q->nbitmaps == 0 || q->nbitmaps > MAX_BITMAPS) {
		r = CORRUPT(q, "bitmap count %u out of range 1..65535",
			    q->nbitmaps);
		goto out;
	}
	if (dir_size < (uint64_t)q->nbitmaps * 24 || dir_size > MAX_BITMAP_DIR) {
		r = CORRUPT(q, "bitmap directory size %llu out of range",
			    (ull)dir_size);
		goto out;
	}
	r = check_table(q, "bitmap directory", dir_off, dir_size, 1,
			MAX_BITMAP_DIR);
	if (r)
		goto out;
	dir = vmb_malloc((size_t)dir_size);
	q->bmps = vmb_calloc(q->nbitmaps, sizeof *q->bmps);
	q->bitmaps = vmb_calloc(q->nbitmaps, sizeof *q->bitmaps);
	if (!dir || !q->bmps || !q->bitmaps) {
		r = VMB_ENOMEM;
		goto out;
	}
	r = read_exact(q, dir, dir_size, dir_off, "bitmap directory");
	if (r)
		goto out;
	for (uint32_t i = 0; i < q->nbitmaps; i++) {
		struct bmp *b = &q->bmps[i];
		vmb_qcow2_bitmap *pb = &q->bitmaps[i];
		const uint8_t *e = dir + pos;
		uint16_t name_size;
		uint64_t esize, g, bytes, want;
		char *name;

		if (dir_size - pos < 24) {
			r = CORRUPT(q, "bitmap directory truncated at entry %u", i);
			goto out;
		}
		b->table_offset = vmb_be64(e);
		b->table_size = vmb_be32(e + 8);
		pb->flags = vmb_be32(e + 12);
		pb->type = e[16];
		b->gran_bits = e[17];
		name_size = vmb_be16(e + 18);
		b->extra_size = vmb_be32(e + 20);
		esize = (24 + (uint64_t)b->extra_size + name_size + 7) & ~7ULL;
		if (esize > dir_size - pos) {
			r = CORRUPT(q, "bitmap directory entry %u runs past the directory",
				    i);
			goto out;
		}
		if (pb->type != 1) {
			r = CORRUPT(q, "bitmap %u has unknown type %u", i,
				    pb->type);
			goto out;
		}
		if (b->gran_bits < 9 || b->gran_bits > 31) {
			r = CORRUPT(q, "bitmap %u granularity bits %u out of range 9..31",
				    i, b->gran_bits);
			goto out;
		}
		if (name_size == 0 || name_size > MAX_BITMAP_NAME) {
			r = CORRUPT(q, "bitmap %u name length %u out of range",
				    i, name_size);
			goto out;
		}
		if (pb->flags & ~7u) {
			r = CORRUPT(q, "bitmap %u has reserved flags 0x%x", i,
				    pb->flags);
			goto out;
		}
		if (!b->table_offset) {
			r = CORRUPT(q, "bitmap %u has no bitmap table", i);
			goto out;
		}
		r = check_table(q, "bitmap table", b->table_offset,
				b->table_size, 8, MAX_BITMAP_TABLE * 8);
		if (r)
			goto out;
		name = vmb_strndup((const char *)e + 24 + b->extra_size,
				   name_size);
		if (!name) {
			r = VMB_ENOMEM;
			goto out;
		}
		pb->name = name;
		if (strlen(name) != name_size) {
			r = CORRUPT(q, "bitmap %u name contains a NUL byte", i);
			goto out;
		}
		g = 1ULL << b->gran_bits;
		pb->granularity = g;
		pb->in_use = (pb->flags & 1) != 0;
		pb->auto_ = (pb->flags & 2) != 0;
		bytes = ((q->header_size + g - 1) / g + 7) / 8;
		want = (bytes + q->cluster_size - 1) / q->cluster_size;
		if (b->table_size < want && !pb->in_use) {
			r = CORRUPT(q, "bitmap '%s' table too small for the virtual size",
				    name);
			goto out;
		}
		pos += esize;
	}
out:
	free(dir);
	return r;
}

void vmb_disk__qcow2_close(vmb_qcow2 *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	for (uint32_t i = 0; q->snaps && i < q->nsnaps; i++) {
		free(q->snaps[i].id);
		free(q->snaps[i].name);
	}
	for (uint32_t i = 0; q->bitmaps && i < q->nbitmaps; i++)
		free((char *)q->bitmaps[i].name);
	for (unsigned i = 0; q->cache && i < q->ncache; i++)
		free(q->cache[i].data);
	pthread_mutex_destroy(&q->lock);
	free(q->cache);
	free(q->zcache);
	free(q->snaps);
	free(q->bmps);
	free(q->bitmaps);
	free(q->l1);
	free(q->backing);
	free(q->backing_fmt);
	free(q->path);
	free(q);
}

int vmb_disk__qcow2_open(const char *path, const char *snapshot,
			 vmb_qcow2 **out)
{
	struct vmb_qcow2 *q;
	struct stat st;
	uint64_t l1_off;
	uint32_t l1_size;
	int r;

	*out = NULL;
	q = vmb_calloc(1, sizeof *q);
	if (!q)
		return VMB_ENOMEM;
	q->fd = -1;
	q->view = -1;
	pthread_mutex_init(&q->lock, NULL);
	q->path = vmb_strdup(path);
	if (!q->path) {
		r = VMB_ENOMEM;
		goto fail;
	}
	q->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (q->fd < 0) {
		int e = errno;
		r = vmb_error_set(e == ENOENT ? VMB_ENOTFOUND :
				  e == EACCES ? VMB_EACCES : VMB_EIO,
				  "cannot open %s: %s", path, strerror(e));
		goto fail;
	}
	if (fstat(q->fd, &st) != 0) {
		r = vmb_error_set(VMB_EIO, "cannot stat %s", path);
		goto fail;
	}
	q->file_size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz = 0;
		if (ioctl(q->fd, BLKGETSIZE64, &sz) == 0)
			q->file_size = sz;
	}
	if ((r = parse_header(q)) != 0 || (r = load_snapshots(q)) != 0)
		goto fail;
	l1_off = q->l1_offset;
	l1_size = q->l1_size;
	if (snapshot) {
		int found = -1;
		for (uint32_t i = 0; found < 0 && i < q->nsnaps; i++)
			if (strcmp(q->snaps[i].id, snapshot) == 0)
				found = (int)i;
		for (uint32_t i = 0; found < 0 && i < q->nsnaps; i++)
			if (strcmp(q->snaps[i].name, snapshot) == 0)
				found = (int)i;
		if (found < 0) {
			r = qfail(path, VMB_ENOTFOUND,
				  "snapshot '%s' not found", snapshot);
			goto fail;
		}
		struct snap *s = &q->snaps[found];
		uint64_t needed;
		unsigned shift = q->cluster_bits + q->l2_bits;
		q->view = found;
		if (s->has_size)
			q->size = s->disk_size;
		if (q->size > VMB_DISK_MAX_SIZE) {
			r = CORRUPT(q, "snapshot '%s' virtual size %llu is absurd",
				    snapshot, (ull)q->size);
			goto fail;
		}
		needed = (q->size + (1ULL << shift) - 1) >> shift;
		if (s->l1_size < needed) {
			r = CORRUPT(q, "snapshot '%s' L1 table too small for its size",
				    snapshot);
			goto fail;
		}
		l1_off = s->l1_offset;
		l1_size = s->l1_size;
	}
	if ((r = load_l1(q, l1_off, l1_size)) != 0 ||
	    (r = load_bitmaps(q)) != 0)
		goto fail;
	q->ncache = (unsigned)VMB_MAX(L2_CACHE_MIN,
				      VMB_MIN(L2_CACHE_MAX,
					      L2_CACHE_BYTES / q->cluster_size));
	q->cache = vmb_calloc(q->ncache, sizeof *q->cache);
	if (!q->cache) {
		r = VMB_ENOMEM;
		goto fail;
	}
	*out = q;
	return 0;
fail:
	vmb_disk__qcow2_close(q);
	return r;
}

uint64_t vmb_disk__qcow2_size(const vmb_qcow2 *q)
{
	return q->size;
}

/* ---- L2 cache ---- */

static void copy_entries(const struct vmb_qcow2 *q, const uint8_t *tab,
			 uint32_t first, uint32_t n, uint64_t *out)
{
	const uint8_t *p = tab + (uint64_t)first * q->entry_size;
	if (q->ext_l2) {
		for (uint32_t i = 0; i < n; i++, p += 16) {
			out[2 * i] = vmb_be64(p);
			out[2 * i + 1] = vmb_be64(p + 8);
		}
	} else {
		for (uint32_t i = 0; i < n; i++, p += 8) {
			out[2 * i] = vmb_be64(p);
			out[2 * i + 1] = 0;
		}
	}
}

/* Entries [first, first+n) of the L2 table at l2_off, as pairs of words. */
static int l2_get(struct vmb_qcow2 *q, uint64_t l2_off, uint32_t first,
		  uint32_t n, uint64_t *out)
{
	uint8_t *data;
	struct l2_slot *victim;
	int r;

	pthread_mutex_lock(&q->lock);
	for (unsigned i = 0; i < q->ncache; i++) {
		if (q->cache[i].offset == l2_off && q->cache[i].data) {
			q->cache[i].used = ++q->tick;
			copy_entries(q, q->cache[i].data, first, n, out);
			pthread_mutex_unlock(&q->lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&q->lock);

	/* miss: read outside the lock */
	data = vmb_malloc((size_t)q->cluster_size);
	if (!data)
		return VMB_ENOMEM;
	r = read_exact(q, data, q->cluster_size, l2_off, "L2 table");
	if (r) {
		free(data);
		return r;
	}
	copy_entries(q, data, first, n, out);

	pthread_mutex_lock(&q->lock);
	victim = &q->cache[0];
	for (unsigned i = 0; i < q->ncache; i++) {
		if (q->cache[i].offset == l2_off && q->cache[i].data) {
			victim = NULL; /* another thread loaded it */
			break;
		}
		if (!q->cache[i].data) {
			victim = &q->cache[i];
			break;
		}
		if (q->cache[i].used < victim->used)
			victim = &q->cache[i];
	}
	if (victim) {
		free(victim->data);
		victim->data = data;
		victim->offset = l2_off;
		victim->used = ++q->tick;
		data = NULL;
	}
	pthread_mutex_unlock(&q->lock);
	free(data);
	return 0;
}

/* ---- walking the mapping ---- */

enum { RUN_HOLE, RUN_ZERO, RUN_DATA, RUN_COMP };

struct run {
	uint64_t off;  /* guest */
	uint64_t len;
	uint64_t host; /* DATA: host offset of off; COMP: descriptor */
	int type;
};

typedef int (*run_fn)(struct vmb_qcow2 *q, const struct run *r, void *p);

struct walker {
	struct vmb_qcow2 *q;
	run_fn fn;
	void *payload;
	struct run pend;
	int has;
};

static int w_emit(struct walker *w, uint64_t off, uint64_t len, int type,
		  uint64_t host)
{
	if (!len)
		return 0;
	if (w->has) {
		struct run *p = &w->pend;
		if (type == p->type && type != RUN_COMP &&
		    p->off + p->len == off &&
		    (type != RUN_DATA || p->host + p->len == host)) {
			p->len += len;
			return 0;
		}
		int r = w->fn(w->q, p, w->payload);
		if (r)
			return r;
	}
	w->pend = (struct run){ off, len, host, type };
	w->has = 1;
	return 0;
}

static int check_host(struct vmb_qcow2 *q, uint64_t host, uint64_t guest)
{
	if (host & (q->cluster_size - 1))
		return CORRUPT(q, "data cluster offset 0x%llx (guest 0x%llx) not cluster aligned",
			       (ull)host, (ull)guest);
	if (host >= q->file_size)
		return CORRUPT(q, "data cluster offset 0x%llx (guest 0x%llx) beyond end of file",
			       (ull)host, (ull)guest);
	return 0;
}

/* Classify the cluster at guest offset g, clipped to [lo, hi). */
static int classify(struct walker *w, uint64_t e0, uint64_t e1, uint64_t g,
		    uint64_t lo, uint64_t hi)
{
	struct vmb_qcow2 *q = w->q;
	uint64_t cs = q->cluster_size;
	uint64_t a = VMB_MAX(g, lo), b = VMB_MIN(g + cs, hi);
	uint64_t host;
	uint32_t alloc, zero;
	int r;

	if (e0 & OFLAG_COMPRESSED) {
		unsigned x = 62 - (q->cluster_bits - 8);
		uint64_t desc = e0 & ((1ULL << 62) - 1);
		uint64_t coff = desc & ((1ULL << x) - 1);
		if (q->ext_l2 && e1)
			return CORRUPT(q, "compressed cluster (guest 0x%llx) with a subcluster bitmap",
				       (ull)g);
		if (coff >= q->file_size)
			return CORRUPT(q, "compressed cluster offset 0x%llx (guest 0x%llx) beyond end of file",
				       (ull)coff, (ull)g);
		return w_emit(w, a, b - a, RUN_COMP, desc);
	}
	host = e0 & OFFSET_MASK;
	if (!q->ext_l2) {
		if (e0 & OFLAG_ZERO)
			return w_emit(w, a, b - a, RUN_ZERO, 0);
		if (!host)
			return w_emit(w, a, b - a, RUN_HOLE, 0);
		if ((r = check_host(q, host, g)) != 0)
			return r;
		return w_emit(w, a, b - a, RUN_DATA, host + (a - g));
	}
	alloc = (uint32_t)e1;
	zero = (uint32_t)(e1 >> 32);
	if (alloc & zero)
		return CORRUPT(q, "invalid subcluster bitmap 0x%016llx (guest 0x%llx)",
			       (ull)e1, (ull)g);
	if (!host && alloc)
		return CORRUPT(q, "allocated subclusters without a host cluster (guest 0x%llx)",
			       (ull)g);
	if (host && (r = check_host(q, host, g)) != 0)
		return r;
	if (!alloc && !zero)
		return w_emit(w, a, b - a, RUN_HOLE, 0);
	if (zero == 0xffffffffu)
		return w_emit(w, a, b - a, RUN_ZERO, 0);
	if (alloc == 0xffffffffu)
		return w_emit(w, a, b - a, RUN_DATA, host + (a - g));
	{
		uint64_t sc = cs >> 5;
		for (unsigned k = 0; k < 32; k++) {
			uint64_t sa = VMB_MAX(g + k * sc, a);
			uint64_t sb = VMB_MIN(g + (k + 1) * sc, b);
			int type;
			if (sa >= sb)
				continue;
			if (zero & (1u << k))
				type = RUN_ZERO;
			else if (alloc & (1u << k))
				type = RUN_DATA;
			else
				type = RUN_HOLE;
			r = w_emit(w, sa, sb - sa, type,
				   type == RUN_DATA ? host + (sa - g) : 0);
			if (r)
				return r;
		}
	}
	return 0;
}

static int walk(struct vmb_qcow2 *q, uint64_t offset, uint64_t length,
		run_fn fn, void *payload)
{
	struct walker w = { q, fn, payload, { 0, 0, 0, 0 }, 0 };
	uint64_t ent[2 * WALK_BATCH];
	unsigned cb = q->cluster_bits, shift = cb + q->l2_bits;
	uint64_t l2_mask = (1ULL << q->l2_bits) - 1;
	uint64_t pos = offset, end = offset + length;
	int r;

	if (!vmb_range_ok(offset, length, q->size))
		return qfail(q->path, VMB_EINVAL,
			     "range 0x%llx+%llu beyond the virtual size",
			     (ull)offset, (ull)length);
	while (pos < end) {
		uint64_t l1i = pos >> shift;
		uint64_t span_end, c0, nclus, l2off;
		uint32_t n;
		if (l1i >= q->l1_size)
			return CORRUPT(q, "guest offset 0x%llx beyond the L1 table",
				       (ull)pos);
		span_end = VMB_MIN(end, (l1i + 1) << shift);
		l2off = q->l1[l1i];
		if (!l2off) {
			r = w_emit(&w, pos, span_end - pos, RUN_HOLE, 0);
			if (r)
				return r;
			pos = span_end;
			continue;
		}
		c0 = pos >> cb;
		nclus = ((span_end - 1) >> cb) - c0 + 1;
		n = (uint32_t)VMB_MIN(nclus, WALK_BATCH);
		r = l2_get(q, l2off, (uint32_t)(c0 & l2_mask), n, ent);
		if (r)
			return r;
		for (uint32_t i = 0; i < n; i++) {
			r = classify(&w, ent[2 * i], ent[2 * i + 1],
				     (c0 + i) << cb, pos, span_end);
			if (r)
				return r;
		}
		pos = VMB_MIN(span_end, (c0 + n) << cb);
	}
	if (w.has)
		return fn(q, &w.pend, payload);
	return 0;
}

/* ---- the format vtable: reader ---- */

static int qcow2_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	if (len >= 4 && vmb_be32(head) == QCOW2_MAGIC)
		return 100;
	return 0;
}

static int qcow2_open(const char *path, const vmb_layer_open_options *o,
		      void **layer, vmb_layer_info *info)
{
	struct vmb_qcow2 *q;
	int r = vmb_disk__qcow2_open(path, o ? o->snapshot : NULL, &q);
	if (r)
		return r;
	info->virtual_size = q->size;
	if (q->backing) {
		info->backing_path = vmb_strdup(q->backing);
		if (q->backing_fmt && q->backing_fmt[0])
			info->backing_format = vmb_strdup(q->backing_fmt);
		if (!info->backing_path ||
		    (q->backing_fmt && q->backing_fmt[0] &&
		     !info->backing_format)) {
			vmb_disk__layer_info_free(info);
			vmb_disk__qcow2_close(q);
			return VMB_ENOMEM;
		}
	}
	*layer = q;
	return 0;
}

struct map_walk {
	vmb_extent_fn fn;
	void *payload;
	vmb_extent pend;
	int has;
};

static int map_run(struct vmb_qcow2 *q, const struct run *run, void *p)
{
	struct map_walk *m = p;
	int kind = run->type == RUN_HOLE ? VMB_EXTENT_HOLE :
		   run->type == RUN_ZERO ? VMB_EXTENT_ZERO : VMB_EXTENT_DATA;
	if (m->has && m->pend.kind == kind &&
	    m->pend.offset + m->pend.length == run->off) {
		m->pend.length += run->len;
		return 0;
	}
	if (m->has && m->fn(&m->pend, m->payload))
		return 1;
	m->pend = (vmb_extent){ run->off, run->len, kind, 0 };
	m->has = 1;
	return 0;
}

static int qcow2_map(void *layer, uint64_t offset, uint64_t length,
		     vmb_extent_fn fn, void *payload)
{
	struct map_walk m = { fn, payload, { 0, 0, 0, 0 }, 0 };
	int r;
	if (!length)
		return 0;
	r = walk(layer, offset, length, map_run, &m);
	if (r)
		return r;
	if (m.has && fn(&m.pend, payload))
		return 1;
	return 0;
}

struct read_walk {
	uint8_t *buf;
	uint64_t base;
	uint8_t *scratch; /* one decompressed cluster */
	uint8_t *cbuf;    /* compressed input */
	z_stream z;
	int zinit;
	ZSTD_DCtx *zd;
};

/* Decompress the cluster described by desc into out (cluster_size bytes). */
static int decompress(struct vmb_qcow2 *q, struct read_walk *rw,
		      uint64_t desc, uint64_t guest, uint8_t *out)
{
	unsigned x = 62 - (q->cluster_bits - 8);
	uint64_t coff = desc & ((1ULL << x) - 1);
	uint64_t nsect = ((desc >> x) & ((1ULL << (q->cluster_bits - 8)) - 1)) + 1;
	uint64_t csize = nsect * 512 - (coff & 511);
	uint64_t avail = VMB_MIN(csize, q->file_size - coff);
	int64_t n;

	if (!rw->cbuf) {
		/* csize is at most 2 * cluster_size */
		rw->cbuf = vmb_malloc((size_t)(2 * q->cluster_size));
		if (!rw->cbuf)
			return VMB_ENOMEM;
	}
	n = vmb_pread_full(q->fd, rw->cbuf, (size_t)avail, coff);
	if (n < 0)
		return qfail(q->path, VMB_EIO,
			     "cannot read compressed cluster at 0x%llx: %s",
			     (ull)coff, strerror((int)-n));
	if (q->ctype == 0) {
		int zr;
		if (!rw->zinit) {
			memset(&rw->z, 0, sizeof rw->z);
			if (inflateInit2(&rw->z, -15) != Z_OK)
				return qfail(q->path, VMB_ENOMEM,
					     "cannot initialise zlib");
			rw->zinit = 1;
		} else {
			inflateReset(&rw->z);
		}
		rw->z.next_in = rw->cbuf;
		rw->z.avail_in = (uInt)n;
		rw->z.next_out = out;
		rw->z.avail_out = (uInt)q->cluster_size;
		zr = inflate(&rw->z, Z_FINISH);
		/* the input length is only known to the sector, so the
		 * stream may end early (Z_BUF_ERROR) once the output is full */
		if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR) ||
		    rw->z.avail_out != 0)
			return CORRUPT(q, "compressed cluster at 0x%llx (guest 0x%llx) does not inflate to one cluster",
				       (ull)coff, (ull)guest);
	} else {
		ZSTD_inBuffer in = { rw->cbuf, (size_t)n, 0 };
		ZSTD_outBuffer o = { out, (size_t)q->cluster_size, 0 };
		if (!rw->zd) {
			rw->zd = ZSTD_createDCtx();
			if (!rw->zd)
				return qfail(q->path, VMB_ENOMEM,
					     "cannot create a zstd context");
			ZSTD_DCtx_setParameter(rw->zd, ZSTD_d_windowLogMax, 23);
		} else {
			ZSTD_DCtx_reset(rw->zd, ZSTD_reset_session_only);
		}
		while (o.pos < o.size) {
			size_t in_pos = in.pos, out_pos = o.pos;
			size_t zr = ZSTD_decompressStream(rw->zd, &o, &in);
			if (ZSTD_isError(zr) ||
			    (in.pos == in_pos && o.pos == out_pos))
				return CORRUPT(q, "compressed cluster at 0x%llx (guest 0x%llx) does not decompress to one cluster",
					       (ull)coff, (ull)guest);
		}
	}
	return 0;
}

static int read_run(struct vmb_qcow2 *q, const struct run *run, void *p)
{
	struct read_walk *rw = p;
	uint8_t *dst = rw->buf + (run->off - rw->base);
	uint64_t cs = q->cluster_size;
	int r;

	switch (run->type) {
	case RUN_DATA: {
		int64_t n = vmb_pread_full(q->fd, dst, (size_t)run->len,
					   run->host);
		if (n < 0)
			return qfail(q->path, VMB_EIO,
				     "cannot read at 0x%llx: %s",
				     (ull)run->host, strerror((int)-n));
		/* a last cluster cut short by the end of file reads as 0 */
		if ((uint64_t)n < run->len)
			memset(dst + n, 0, (size_t)(run->len - (uint64_t)n));
		return 0;
	}
	case RUN_COMP: {
		uint64_t g = run->off & ~(cs - 1);
		int hit = 0;
		if (run->off == g && run->len == cs)
			return decompress(q, rw, run->host, g, dst);
		pthread_mutex_lock(&q->lock);
		if (q->zcache_valid && q->zcache_desc == run->host) {
			memcpy(dst, q->zcache + (run->off - g),
			       (size_t)run->len);
			hit = 1;
		}
		pthread_mutex_unlock(&q->lock);
		if (hit)
			return 0;
		if (!rw->scratch) {
			rw->scratch = vmb_malloc((size_t)cs);
			if (!rw->scratch)
				return VMB_ENOMEM;
		}
		r = decompress(q, rw, run->host, g, rw->scratch);
		if (r)
			return r;
		memcpy(dst, rw->scratch + (run->off - g), (size_t)run->len);
		pthread_mutex_lock(&q->lock);
		if (!q->zcache)
			q->zcache = malloc((size_t)cs);
		if (q->zcache) {
			memcpy(q->zcache, rw->scratch, (size_t)cs);
			q->zcache_desc = run->host;
			q->zcache_valid = 1;
		}
		pthread_mutex_unlock(&q->lock);
		return 0;
	}
	default:
		memset(dst, 0, (size_t)run->len);
		return 0;
	}
}

static int qcow2_read(void *layer, void *buf, uint64_t offset, size_t length)
{
	struct read_walk rw;
	int r;
	if (!length)
		return 0;
	memset(&rw, 0, sizeof rw);
	rw.buf = buf;
	rw.base = offset;
	r = walk(layer, offset, length, read_run, &rw);
	if (rw.zinit)
		inflateEnd(&rw.z);
	ZSTD_freeDCtx(rw.zd);
	free(rw.scratch);
	free(rw.cbuf);
	return r;
}

static int qcow2_describe(void *layer, char **json)
{
	struct vmb_qcow2 *q = layer;
	vmb_buf b;

	*json = NULL;
	vmb_buf_init(&b);
	vmb_buf_printf(&b, "\"version\":%u,\"cluster_size\":%llu,"
		       "\"refcount_bits\":%u,\"compression_type\":\"%s\","
		       "\"extended_l2\":%s,\"lazy_refcounts\":%s,"
		       "\"dirty\":%s,\"corrupt\":%s",
		       q->version, (ull)q->cluster_size,
		       1u << q->refcount_order, q->ctype ? "zstd" : "zlib",
		       q->ext_l2 ? "true" : "false",
		       q->compat & COMPAT_LAZY_REFCOUNTS ? "true" : "false",
		       q->incompat & INCOMPAT_DIRTY ? "true" : "false",
		       q->incompat & INCOMPAT_CORRUPT ? "true" : "false");
	if (q->backing) {
		vmb_buf_puts(&b, ",\"backing_file\":");
		vmb_buf_json_str(&b, q->backing);
		if (q->backing_fmt && q->backing_fmt[0]) {
			vmb_buf_puts(&b, ",\"backing_format\":");
			vmb_buf_json_str(&b, q->backing_fmt);
		}
	}
	if (q->view >= 0) {
		vmb_buf_puts(&b, ",\"viewing_snapshot\":");
		vmb_buf_json_str(&b, q->snaps[q->view].id);
	}
	if (q->has_bitmap_ext && !q->bitmaps_consistent)
		vmb_buf_puts(&b, ",\"bitmaps_consistent\":false");
	vmb_buf_puts(&b, ",\"bitmaps\":[");
	for (uint32_t i = 0; i < q->nbitmaps; i++) {
		const vmb_qcow2_bitmap *m = &q->bitmaps[i];
		vmb_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
		vmb_buf_json_str(&b, m->name);
		vmb_buf_printf(&b, ",\"granularity\":%llu,\"in_use\":%s,"
			       "\"auto\":%s}", (ull)m->granularity,
			       m->in_use ? "true" : "false",
			       m->auto_ ? "true" : "false");
	}
	vmb_buf_puts(&b, "],\"snapshots\":[");
	for (uint32_t i = 0; i < q->nsnaps; i++) {
		const struct snap *s = &q->snaps[i];
		vmb_buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
		vmb_buf_json_str(&b, s->id);
		vmb_buf_puts(&b, ",\"name\":");
		vmb_buf_json_str(&b, s->name);
		vmb_buf_printf(&b, ",\"virtual_size\":%llu,\"date_sec\":%u,"
			       "\"vm_state_size\":%llu,\"vm_clock_ns\":%llu}",
			       (ull)(s->has_size ? s->disk_size : q->header_size),
			       s->date_sec, (ull)s->vm_state_size,
			       (ull)s->vm_clock_ns);
	}
	vmb_buf_puts(&b, "]");
	*json = vmb_buf_detach(&b);
	return *json ? 0 : VMB_ENOMEM;
}

static void qcow2_close(void *layer)
{
	vmb_disk__qcow2_close(layer);
}

/* ---- bitmaps for changed-block tracking ---- */

int vmb_disk__qcow2_bitmaps(vmb_qcow2 *q, const vmb_qcow2_bitmap **list,
			    size_t *count, int *consistent)
{
	*list = q->bitmaps;
	*count = q->nbitmaps;
	if (consistent)
		*consistent = !q->has_bitmap_ext || q->bitmaps_consistent;
	return 0;
}

struct dirty_emit {
	vmb_qcow2_dirty_fn fn;
	void *payload;
	uint64_t start, len; /* pending range */
	uint64_t limit;      /* virtual size */
};

static int dirty_add(struct dirty_emit *d, uint64_t off, uint64_t len)
{
	if (off >= d->limit)
		return 0;
	len = VMB_MIN(len, d->limit - off);
	if (d->len && d->start + d->len == off) {
		d->len += len;
		return 0;
	}
	if (d->len) {
		int r = d->fn(d->start, d->len, d->payload);
		if (r)
			return r;
	}
	d->start = off;
	d->len = len;
	return 0;
}

int vmb_disk__qcow2_bitmap_dirty(vmb_qcow2 *q, const char *name,
				 vmb_qcow2_dirty_fn fn, void *payload)
{
	const struct bmp *b = NULL;
	const vmb_qcow2_bitmap *pb = NULL;
	struct dirty_emit d = { fn, payload, 0, 0, q->header_size };
	uint8_t *tab = NULL, *data = NULL;
	uint64_t g, nbits, bytes, nclus, cs = q->cluster_size;
	int r = 0;

	for (uint32_t i = 0; i < q->nbitmaps; i++) {
		if (strcmp(q->bitmaps[i].name, name) == 0) {
			b = &q->bmps[i];
			pb = &q->bitmaps[i];
			break;
		}
	}
	if (!b)
		return qfail(q->path, VMB_ENOTFOUND, "no bitmap named '%s'",
			     name);
	if (pb->in_use)
		return CORRUPT(q, "bitmap '%s' is in use (not saved cleanly)",
			       name);
	if (b->extra_size && !(pb->flags & 4))
		return qfail(q->path, VMB_ENOTSUP,
			     "bitmap '%s' has unknown extra data", name);
	g = pb->granularity;
	nbits = (q->header_size + g - 1) / g;
	bytes = (nbits + 7) / 8;
	nclus = (bytes + cs - 1) / cs;
	if (nclus > b->table_size)
		return CORRUPT(q, "bitmap '%s' table too small", name);
	tab = vmb_malloc((size_t)nclus * 8 + 1);
	data = vmb_malloc((size_t)cs);
	if (!tab || !data) {
		r = VMB_ENOMEM;
		goto out;
	}
	r = read_exact(q, tab, nclus * 8, b->table_offset, "bitmap table");
	if (r)
		goto out;
	{
		/* distinct data clusters: reading stays bounded by the file */
		uint64_t *offs = vmb_malloc((size_t)nclus * 8 + 8), dup;
		if (!offs) {
			r = VMB_ENOMEM;
			goto out;
		}
		for (uint64_t k = 0; k < nclus; k++)
			offs[k] = vmb_be64(tab + 8 * k) & OFFSET_MASK;
		dup = find_duplicate(offs, nclus, &r);
		free(offs);
		if (!r && dup)
			r = CORRUPT(q, "bitmap '%s' data cluster 0x%llx used twice",
				    name, (ull)dup);
		if (r)
			goto out;
	}
	for (uint64_t k = 0; k < nclus; k++) {
		uint64_t e = vmb_be64(tab + 8 * k);
		uint64_t off = e & OFFSET_MASK;
		uint64_t bit0 = k * cs * 8; /* first bit in this cluster */
		uint64_t nb = VMB_MIN(cs * 8, nbits - bit0);
		if (e & 0xFF000000000001FEULL) {
			r = CORRUPT(q, "bitmap '%s' table entry %llu has reserved bits set",
				    name, (ull)k);
			goto out;
		}
		if (!off) {
			if (e & 1) {
				r = dirty_add(&d, bit0 * g, nb * g);
				if (r)
					goto out;
			}
			continue;
		}
		if (e & 1) {
			r = CORRUPT(q, "bitmap '%s' table entry %llu has an offset and the all-ones bit",
				    name, (ull)k);
			goto out;
		}
		if (off & (cs - 1)) {
			r = CORRUPT(q, "bitmap '%s' data cluster 0x%llx not cluster aligned",
				    name, (ull)off);
			goto out;
		}
		r = read_exact(q, data, cs, off, "bitmap data");
		if (r)
			goto out;
		for (uint64_t i = 0; i < nb;) {
			uint8_t byte = data[i / 8];
			if (!(i & 7) && nb - i >= 64) {
				uint64_t word;
				memcpy(&word, data + i / 8, 8);
				if (word == 0) {
					i += 64;
					continue;
				}
				if (word == ~0ULL) {
					r = dirty_add(&d, (bit0 + i) * g, 64 * g);
					if (r)
						goto out;
					i += 64;
					continue;
				}
			}
			if (byte & (1u << (i & 7))) {
				r = dirty_add(&d, (bit0 + i) * g, g);
				if (r)
					goto out;
			}
			i++;
		}
	}
	if (d.len)
		r = fn(d.start, d.len, payload);
out:
	free(tab);
	free(data);
	return r;
}

/* ---- writer ---- */

struct qw {
	int fd;
	char *path;
	uint64_t size;
	unsigned cb;
	uint64_t cs;
	unsigned l2_bits;
	uint64_t l1_size;
	uint64_t **l2;   /* per L1 index: host offsets, host order */
	uint64_t next;   /* next free host offset */
	uint64_t cur;    /* guest cluster held in cbuf, UINT64_MAX: none */
	uint8_t *cbuf;
	uint64_t run_host; /* pending pwrite of whole clusters */
	const uint8_t *run_buf;
	uint64_t run_len;
};

static int qw_io(struct qw *w, int r)
{
	return vmb_error_set(r == -ENOSPC ? VMB_ENOSPC : VMB_EIO,
			     "cannot write %s: %s", w->path, strerror(-r));
}

static void qw_free(struct qw *w, int remove)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (remove && w->path)
		unlink(w->path);
	for (uint64_t i = 0; w->l2 && i < w->l1_size; i++)
		free(w->l2[i]);
	free(w->l2);
	free(w->cbuf);
	free(w->path);
	free(w);
}

static int qcow2_create(const char *path, uint64_t size,
			const vmb_layer_create_options *o, void **writer)
{
	struct qw *w;
	uint64_t cs = o && o->cluster_size ? o->cluster_size : 65536;
	unsigned shift;
	int fd;

	if (!vmb_is_pow2(cs) || cs < 512 || cs > (2u << 20))
		return vmb_error_set(VMB_EINVAL,
				     "%s: qcow2 cluster size %llu must be a power of two from 512 to 2 MiB",
				     path, (ull)cs);
	w = vmb_calloc(1, sizeof *w);
	if (!w)
		return VMB_ENOMEM;
	w->fd = -1;
	w->size = size;
	w->cs = cs;
	w->cb = (unsigned)__builtin_ctzll(cs);
	w->l2_bits = w->cb - 3;
	shift = w->cb + w->l2_bits;
	w->l1_size = (size + (1ULL << shift) - 1) >> shift;
	w->cur = UINT64_MAX;
	w->next = cs;
	if (w->l1_size * 8 > MAX_L1_BYTES) {
		free(w);
		return vmb_error_set(VMB_EINVAL,
				     "%s: disk too large for qcow2 clusters of %llu bytes",
				     path, (ull)cs);
	}
	w->path = vmb_strdup(path);
	w->l2 = vmb_calloc(w->l1_size ? w->l1_size : 1, sizeof *w->l2);
	w->cbuf = vmb_malloc((size_t)cs);
	if (!w->path || !w->l2 || !w->cbuf) {
		qw_free(w, 0);
		return VMB_ENOMEM;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		qw_free(w, 0);
		return vmb_error_set(e == EEXIST ? VMB_EEXISTS :
				     e == EACCES ? VMB_EACCES : VMB_EIO,
				     "cannot create %s: %s", path, strerror(e));
	}
	w->fd = fd;
	*writer = w;
	return 0;
}

static int qw_map(struct qw *w, uint64_t ci, uint64_t host)
{
	uint64_t l1i = ci >> w->l2_bits;
	if (!w->l2[l1i]) {
		w->l2[l1i] = vmb_calloc(1, (size_t)w->cs);
		if (!w->l2[l1i])
			return VMB_ENOMEM;
	}
	w->l2[l1i][ci & ((1ULL << w->l2_bits) - 1)] = host;
	return 0;
}

static int qw_flush_run(struct qw *w)
{
	int r;
	if (!w->run_len)
		return 0;
	r = vmb_pwrite_full(w->fd, w->run_buf, (size_t)w->run_len,
			    w->run_host);
	w->run_len = 0;
	return r < 0 ? qw_io(w, r) : 0;
}

static int qw_flush_cur(struct qw *w)
{
	uint64_t host;
	int r;
	if (w->cur == UINT64_MAX)
		return 0;
	if (!vmb_is_zero(w->cbuf, (size_t)w->cs)) {
		host = w->next;
		w->next += w->cs;
		r = vmb_pwrite_full(w->fd, w->cbuf, (size_t)w->cs, host);
		if (r < 0)
			return qw_io(w, r);
		if ((r = qw_map(w, w->cur, host)) != 0)
			return r;
	}
	w->cur = UINT64_MAX;
	return 0;
}

static int qcow2_write(void *writer, uint64_t offset, const void *buf,
		       size_t length)
{
	struct qw *w = writer;
	const uint8_t *p = buf;
	uint64_t pos = offset, end = offset + length;
	int r = 0;

	if (!vmb_range_ok(offset, length, w->size))
		return vmb_error_set(VMB_EINVAL, "%s: write beyond the disk",
				     w->path);
	while (pos < end) {
		uint64_t ci = pos >> w->cb, g = ci << w->cb;
		uint64_t cend = VMB_MIN(g + w->cs, w->size);
		uint64_t n = VMB_MIN(end, cend) - pos;
		const uint8_t *src = p + (pos - offset);

		if (pos == g && n == w->cs) {
			/* a whole cluster straight from the caller's buffer */
			if (vmb_is_zero(src, (size_t)n)) {
				pos += n;
				continue;
			}
			if (w->run_len &&
			    (w->run_host + w->run_len != w->next ||
			     w->run_buf + w->run_len != src) &&
			    (r = qw_flush_run(w)) != 0)
				goto out;
			if (!w->run_len) {
				w->run_host = w->next;
				w->run_buf = src;
			}
			if ((r = qw_map(w, ci, w->next)) != 0)
				goto out;
			w->next += w->cs;
			w->run_len += w->cs;
		} else {
			/* part of a cluster: assemble it in cbuf */
			if (w->cur != ci) {
				if ((r = qw_flush_cur(w)) != 0)
					goto out;
				w->cur = ci;
				memset(w->cbuf, 0, (size_t)w->cs);
			}
			memcpy(w->cbuf + (pos - g), src, (size_t)n);
			if (pos + n == cend && (r = qw_flush_cur(w)) != 0)
				goto out;
		}
		pos += n;
	}
out:
	if (!r)
		r = qw_flush_run(w);
	else
		w->run_len = 0;
	return r;
}

static void qcow2_abort(void *writer)
{
	qw_free(writer, 1);
}

static int qcow2_finish(void *writer)
{
	struct qw *w = writer;
	uint64_t cs = w->cs, l1_off = 0, l1_clusters, n0, nb = 0, nt = 0;
	uint64_t rt_off, rb_off, total, epb = cs * 8 / 16;
	uint64_t *l2_off = NULL;
	uint8_t *buf = NULL;
	int r;

	if ((r = qw_flush_cur(w)) != 0)
		goto fail;
	l2_off = vmb_calloc(w->l1_size ? w->l1_size : 1, sizeof *l2_off);
	buf = vmb_calloc(1, (size_t)cs);
	if (!l2_off || !buf) {
		r = VMB_ENOMEM;
		goto fail;
	}
	/* L2 tables */
	for (uint64_t i = 0; i < w->l1_size; i++) {
		uint64_t *t = w->l2[i];
		if (!t)
			continue;
		for (uint64_t j = 0; j < cs / 8; j++)
			vmb_put_be64(buf + 8 * j,
				     t[j] ? t[j] | OFLAG_COPIED : 0);
		l2_off[i] = w->next;
		r = vmb_pwrite_full(w->fd, buf, (size_t)cs, w->next);
		if (r < 0) {
			r = qw_io(w, r);
			goto fail;
		}
		w->next += cs;
	}
	/* L1 table */
	l1_clusters = (w->l1_size * 8 + cs - 1) / cs;
	if (w->l1_size) {
		uint8_t *l1 = vmb_calloc(1, (size_t)(l1_clusters * cs));
		if (!l1) {
			r = VMB_ENOMEM;
			goto fail;
		}
		for (uint64_t i = 0; i < w->l1_size; i++)
			vmb_put_be64(l1 + 8 * i,
				     l2_off[i] ? l2_off[i] | OFLAG_COPIED : 0);
		l1_off = w->next;
		r = vmb_pwrite_full(w->fd, l1, (size_t)(l1_clusters * cs),
				    l1_off);
		free(l1);
		if (r < 0) {
			r = qw_io(w, r);
			goto fail;
		}
		w->next += l1_clusters * cs;
	}
	/* refcounts (16 bit): the table and blocks must cover themselves */
	n0 = w->next / cs;
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
	rt_off = w->next;
	rb_off = rt_off + nt * cs;
	for (uint64_t i = 0; i < nt; i++) {
		memset(buf, 0, (size_t)cs);
		for (uint64_t j = 0; j < cs / 8; j++) {
			uint64_t blk = i * (cs / 8) + j;
			if (blk < nb)
				vmb_put_be64(buf + 8 * j, rb_off + blk * cs);
		}
		r = vmb_pwrite_full(w->fd, buf, (size_t)cs, rt_off + i * cs);
		if (r < 0) {
			r = qw_io(w, r);
			goto fail;
		}
	}
	for (uint64_t i = 0; i < nb; i++) {
		memset(buf, 0, (size_t)cs);
		for (uint64_t j = 0; j < epb; j++)
			if (i * epb + j < total)
				vmb_put_be16(buf + 2 * j, 1);
		r = vmb_pwrite_full(w->fd, buf, (size_t)cs, rb_off + i * cs);
		if (r < 0) {
			r = qw_io(w, r);
			goto fail;
		}
	}
	/* header, last */
	memset(buf, 0, (size_t)cs);
	vmb_put_be32(buf, QCOW2_MAGIC);
	vmb_put_be32(buf + 4, 3);
	vmb_put_be32(buf + 20, w->cb);
	vmb_put_be64(buf + 24, w->size);
	vmb_put_be32(buf + 36, (uint32_t)w->l1_size);
	vmb_put_be64(buf + 40, l1_off);
	vmb_put_be64(buf + 48, rt_off);
	vmb_put_be32(buf + 56, (uint32_t)nt);
	vmb_put_be32(buf + 96, 4);   /* refcount_order: 16 bit */
	vmb_put_be32(buf + 100, 112); /* header_length */
	/* compression_type 0, padding, then the end-of-extensions marker */
	r = vmb_pwrite_full(w->fd, buf, (size_t)cs, 0);
	if (r < 0) {
		r = qw_io(w, r);
		goto fail;
	}
	r = vmb_disk__sync_close(&w->fd, w->path);
	if (r)
		goto fail;
	free(l2_off);
	free(buf);
	qw_free(w, 0);
	return 0;
fail:
	free(l2_off);
	free(buf);
	qw_free(w, 1);
	return r;
}

const vmb_disk_format vmb_disk__qcow2_format = {
	.version = VMB_DISK_FORMAT_VERSION,
	.name = "qcow2",
	.extension = "qcow2",
	.probe = qcow2_probe,
	.open = qcow2_open,
	.map = qcow2_map,
	.read = qcow2_read,
	.describe = qcow2_describe,
	.close = qcow2_close,
	.create = qcow2_create,
	.write = qcow2_write,
	.finish = qcow2_finish,
	.abort = qcow2_abort,
};
