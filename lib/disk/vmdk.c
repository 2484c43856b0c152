/*
 * VMDK images: hosted sparse extents (monolithicSparse, twoGbMaxExtentSparse,
 * delta disks), flat extents (monolithicFlat, twoGbMaxExtentFlat, vmfs),
 * streamOptimized (compressed grains, markers, footer) and text descriptors.
 * Writer: monolithicSparse and streamOptimized.
 *
 * Everything read from a file is untrusted: offsets, sizes and counts are
 * checked against the file size and fixed limits before use; extent file
 * names are confined to the descriptor's folder.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include "common/util.h"
#include "format.h"
#include "vmdk.h"

#define SECTOR 512ULL
#define VMDK_MAGIC 0x564D444Bu          /* "KDMV" little endian */
#define COWD_MAGIC 0x44574F43u          /* "COWD" little endian */
#define GD_AT_END 0xffffffffffffffffULL

#define FLAG_NL_TEST 0x1u
#define FLAG_RGD 0x2u
#define FLAG_ZERO_GRAIN 0x4u
#define FLAG_COMPRESSED 0x10000u
#define FLAG_MARKERS 0x20000u

#define MARKER_EOS 0
#define MARKER_GT 1
#define MARKER_GD 2
#define MARKER_FOOTER 3

/* limits */
#define MAX_DESC_BYTES (1u << 20)       /* descriptor text (QEMU: 1 MiB) */
#define MAX_LINE 4096                   /* descriptor line */
#define MAX_EXTENTS 4096
#define MAX_GTES 512                    /* QEMU refuses more */
#define MAX_GRAIN_SECTORS 0x200000ULL   /* 1 GiB, QEMU's limit */
#define MAX_CGRAIN_BYTES (64ULL << 20)  /* compressed extents: grain cap */
#define MAX_GD_ENTRIES (32ULL << 20)    /* QEMU's L1 limit */
#define GT_CACHE_SLOTS 64

enum ext_type { EXT_FLAT, EXT_SPARSE, EXT_ZERO };
static const char *const ext_type_names[] = { "FLAT", "SPARSE", "ZERO" };

struct gt_slot {
	int64_t tag; /* GD index, -1 = empty */
	uint64_t used;
	uint32_t *gte;
};

struct extent {
	int type;
	int fd;
	int noaccess;       /* NOACCESS: reads as zeros, file not opened */
	char *name;         /* as written in the descriptor */
	char *path;         /* resolved */
	uint64_t start;     /* guest byte offset of the extent */
	uint64_t size;      /* bytes */
	uint64_t file_size;
	uint64_t flat_off;  /* FLAT: byte offset in the file */
	int vmfs;           /* FLAT written as VMFS */
	/* SPARSE */
	uint32_t version, flags;
	uint64_t grain;     /* bytes */
	uint64_t grain_sec;
	uint32_t gtes;      /* entries per GT */
	uint64_t gt_bytes;  /* bytes of one GT on disk */
	uint64_t overhead;  /* sectors */
	uint64_t gd_sec;
	uint64_t gd_entries;
	uint32_t *gd;
	int compressed, markers, zero_grain;
	pthread_mutex_t lock;
	int lock_init;
	struct gt_slot slots[GT_CACHE_SLOTS];
	uint64_t tick;
};

struct dext {
	int noaccess;
	uint64_t sectors;
	int type;
	int vmfs;
	char *file;
	uint64_t offset;
};

struct desc {
	unsigned version;
	int has_cid, has_parent_cid;
	uint32_t cid, parent_cid;
	char *create_type;
	char *parent_hint;
	uint64_t cyl, heads, secs;
	struct dext *ext;
	size_t n, cap;
};

struct vmdk {
	char *path;
	struct desc d;
	struct extent *ext;
	size_t n;
	uint64_t size;
	int has_parent;
};

/* ---------------------------------------------------------------- */
/* small helpers */

static int io_err(const char *path, const char *what, int err)
{
	return vmb_error_set(err == ENOENT ? VMB_ENOTFOUND :
			     err == EACCES || err == EPERM ? VMB_EACCES :
			     err == ENOSPC || err == EFBIG ? VMB_ENOSPC :
			     err == ENOMEM ? VMB_ENOMEM : VMB_EIO,
			     "%s: %s: %s", path, what, strerror(err));
}

/* pread exactly len bytes or fail (short reads are corruption). */
static int read_exact(int fd, const char *path, void *buf, size_t len,
		      uint64_t off)
{
	int64_t n = vmb_pread_full(fd, buf, len, off);
	if (n < 0)
		return io_err(path, "read error", (int)-n);
	if ((size_t)n != len)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: truncated: %zu bytes expected at offset %llu",
				     path, len, (unsigned long long)off);
	return 0;
}

static void desc_free(struct desc *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->ext[i].file);
	free(d->ext);
	free(d->create_type);
	free(d->parent_hint);
	memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------------- */
/* probe */

static int is_desc_header(const uint8_t *p, size_t len)
{
	static const char want[] = "disk descriptorfile";
	size_t i = 0, j = 0;
	if (!len || p[0] != '#')
		return 0;
	for (i = 1; i < len && (p[i] == ' ' || p[i] == '\t'); i++)
		;
	while (i < len && want[j]) {
		if (want[j] == ' ') {
			if (p[i] != ' ' && p[i] != '\t')
				return 0;
			while (i < len && (p[i] == ' ' || p[i] == '\t'))
				i++;
			j++;
			continue;
		}
		if ((p[i] | 0x20) != want[j])
			return 0;
		i++, j++;
	}
	return want[j] == 0;
}

static int vmdk_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	size_t i = 0;
	if (len >= 512 && vmb_le32(head) == VMDK_MAGIC)
		return 100;
	/* a text descriptor: small, "# Disk DescriptorFile" before anything
	   but blank lines and comments */
	if (file_size > MAX_DESC_BYTES)
		return 0;
	while (i < len) {
		size_t e = i;
		while (e < len && head[e] != '\n')
			e++;
		size_t s = i;
		while (s < e && (head[s] == ' ' || head[s] == '\t' ||
				 head[s] == '\r'))
			s++;
		if (s < e) {
			if (head[s] != '#')
				return 0;
			if (is_desc_header(head + s, e - s))
				return 90;
		}
		if (e - i > MAX_LINE)
			return 0;
		i = e + 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* descriptor parser */

static int parse_u64(const char *s, size_t n, int base, uint64_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	if (!n)
		return -1;
	if (base == 16 && n > 2 && s[0] == '0' && (s[1] | 0x20) == 'x')
		i = 2;
	for (; i < n; i++) {
		int c = (unsigned char)s[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && (c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			d = (c | 0x20) - 'a' + 10;
		else
			return -1;
		if (vmb_mul_overflow(v, (uint64_t)base, &v) ||
		    vmb_add_overflow(v, (uint64_t)d, &v))
			return -1;
	}
	*out = v;
	return 0;
}

static int is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* One extent line: ACCESS SECTORS TYPE "FILE" [OFFSET] */
static int parse_extent_line(struct desc *d, const char *src, int lineno,
			     const char *p, const char *e)
{
	struct dext x;
	const char *t;
	char word[16];
	size_t n;

	memset(&x, 0, sizeof x);
#define SKIPWS() while (p < e && is_space(*p)) p++
#define WORD() do { t = p; while (p < e && !is_space(*p) && *p != '"') p++; } while (0)
	WORD();
	n = (size_t)(p - t);
	if (n == 8 && strncasecmp(t, "NOACCESS", 8) == 0)
		x.noaccess = 1;
	/* RW and RDONLY are both readable */
	SKIPWS();
	WORD();
	if (parse_u64(t, (size_t)(p - t), 10, &x.sectors) != 0 ||
	    x.sectors > VMB_DISK_MAX_SIZE / SECTOR)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: descriptor line %d: bad extent size",
				     src, lineno);
	SKIPWS();
	WORD();
	n = (size_t)(p - t);
	if (!n || n >= sizeof word)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: descriptor line %d: bad extent type",
				     src, lineno);
	memcpy(word, t, n);
	word[n] = 0;
	if (strcasecmp(word, "FLAT") == 0) {
		x.type = EXT_FLAT;
	} else if (strcasecmp(word, "VMFS") == 0) {
		x.type = EXT_FLAT;
		x.vmfs = 1;
	} else if (strcasecmp(word, "SPARSE") == 0) {
		x.type = EXT_SPARSE;
	} else if (strcasecmp(word, "ZERO") == 0) {
		x.type = EXT_ZERO;
	} else {
		for (char *c = word; *c; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				*c = '?';
		return vmb_error_set(VMB_ENOTSUP,
				     "%s: descriptor line %d: extent type %s is not supported",
				     src, lineno, word);
	}
	SKIPWS();
	if (x.type != EXT_ZERO || (p < e && *p == '"')) {
		if (p >= e || *p != '"')
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: descriptor line %d: extent file name must be quoted",
					     src, lineno);
		t = ++p;
		while (p < e && *p != '"')
			p++;
		if (p >= e)
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: descriptor line %d: unterminated file name",
					     src, lineno);
		if (p == t || memchr(t, 0, (size_t)(p - t)))
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: descriptor line %d: empty extent file name",
					     src, lineno);
		x.file = vmb_strndup(t, (size_t)(p - t));
		if (!x.file)
			return VMB_ENOMEM;
		p++;
		SKIPWS();
	}
	if (p < e) {
		WORD();
		if (x.type == EXT_ZERO ||
		    parse_u64(t, (size_t)(p - t), 10, &x.offset) != 0 ||
		    x.offset > VMB_DISK_MAX_SIZE / SECTOR ||
		    (x.type == EXT_SPARSE && x.offset != 0)) {
			free(x.file);
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: descriptor line %d: bad extent offset",
					     src, lineno);
		}
		SKIPWS();
		if (p < e) {
			free(x.file);
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: descriptor line %d: junk after extent",
					     src, lineno);
		}
	}
#undef SKIPWS
#undef WORD
	if (d->n >= MAX_EXTENTS) {
		free(x.file);
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: more than %d extents", src, MAX_EXTENTS);
	}
	if (d->n == d->cap) {
		size_t nc = d->cap ? d->cap * 2 : 8;
		struct dext *ne = vmb_realloc(d->ext, nc * sizeof *ne);
		if (!ne) {
			free(x.file);
			return VMB_ENOMEM;
		}
		d->ext = ne;
		d->cap = nc;
	}
	d->ext[d->n++] = x;
	return 0;
}

static int set_str(char **dst, const char *v, size_t n)
{
	char *s = vmb_strndup(v, n);
	if (!s)
		return VMB_ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/* Parse descriptor text (not NUL-terminated; stops at the first NUL). */
static int parse_descriptor(const char *src, const char *text, size_t len,
			    struct desc *d)
{
	const char *p = text, *end;
	const char *nul = memchr(text, 0, len);
	int lineno = 0, r = 0;

	memset(d, 0, sizeof *d);
	d->version = 1;
	end = nul ? nul : text + len;
	while (p < end) {
		const char *e = memchr(p, '\n', (size_t)(end - p));
		const char *ls, *le, *eq;
		if (!e)
			e = end;
		lineno++;
		if (e - p > MAX_LINE) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: descriptor line %d longer than %d bytes",
					  src, lineno, MAX_LINE);
			goto out;
		}
		ls = p;
		le = e;
		p = e + 1;
		while (ls < le && is_space(*ls))
			ls++;
		while (le > ls && is_space(le[-1]))
			le--;
		if (ls == le || *ls == '#')
			continue;
		/* extent line? */
		{
			const char *w = ls;
			while (w < le && !is_space(*w))
				w++;
			size_t n = (size_t)(w - ls);
			if ((n == 2 && strncasecmp(ls, "RW", 2) == 0) ||
			    (n == 6 && strncasecmp(ls, "RDONLY", 6) == 0) ||
			    (n == 8 && strncasecmp(ls, "NOACCESS", 8) == 0)) {
				if (w == le) {
					r = vmb_error_set(VMB_ECORRUPT,
							  "%s: descriptor line %d: incomplete extent",
							  src, lineno);
					goto out;
				}
				r = parse_extent_line(d, src, lineno, ls, le);
				if (r)
					goto out;
				continue;
			}
		}
		eq = memchr(ls, '=', (size_t)(le - ls));
		if (!eq) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: descriptor line %d is not key=value or an extent",
					  src, lineno);
			goto out;
		}
		const char *ks = ls, *ke = eq, *vs = eq + 1, *ve = le;
		while (ke > ks && is_space(ke[-1]))
			ke--;
		while (vs < ve && is_space(*vs))
			vs++;
		if (ve - vs >= 2 && *vs == '"' && ve[-1] == '"')
			vs++, ve--;
		size_t kn = (size_t)(ke - ks), vn = (size_t)(ve - vs);
#define KEY(s) (kn == sizeof(s) - 1 && strncasecmp(ks, s, kn) == 0)
		if (KEY("version")) {
			uint64_t v;
			if (parse_u64(vs, vn, 10, &v) || v < 1 || v > 3) {
				r = vmb_error_set(VMB_ENOTSUP,
						  "%s: descriptor line %d: unsupported version",
						  src, lineno);
				goto out;
			}
			d->version = (unsigned)v;
		} else if (KEY("CID") || KEY("parentCID")) {
			uint64_t v;
			if (parse_u64(vs, vn, 16, &v) || v > 0xffffffffULL) {
				r = vmb_error_set(VMB_ECORRUPT,
						  "%s: descriptor line %d: bad content id",
						  src, lineno);
				goto out;
			}
			if (KEY("CID"))
				d->cid = (uint32_t)v, d->has_cid = 1;
			else
				d->parent_cid = (uint32_t)v,
				d->has_parent_cid = 1;
		} else if (KEY("createType")) {
			if ((r = set_str(&d->create_type, vs, vn)))
				goto out;
		} else if (KEY("parentFileNameHint")) {
			if (memchr(vs, 0, vn)) {
				r = vmb_error_set(VMB_ECORRUPT,
						  "%s: descriptor line %d: bad parent name",
						  src, lineno);
				goto out;
			}
			if ((r = set_str(&d->parent_hint, vs, vn)))
				goto out;
		} else if (KEY("ddb.geometry.cylinders")) {
			parse_u64(vs, vn, 10, &d->cyl);
		} else if (KEY("ddb.geometry.heads")) {
			parse_u64(vs, vn, 10, &d->heads);
		} else if (KEY("ddb.geometry.sectors")) {
			parse_u64(vs, vn, 10, &d->secs);
		}
		/* other keys (encoding, ddb.*, changeTrackPath...) ignored */
#undef KEY
	}
out:
	if (r)
		desc_free(d);
	return r;
}

/* ---------------------------------------------------------------- */
/* extents */

static void extent_free(struct extent *x)
{
	if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
	free(x->name);
	free(x->path);
	free(x->gd);
	for (int i = 0; i < GT_CACHE_SLOTS; i++)
		free(x->slots[i].gte);
	if (x->lock_init)
		pthread_mutex_destroy(&x->lock);
	memset(x, 0, sizeof *x);
	x->fd = -1;
}

/*
 * Parse and check a sparse extent header; load the grain directory.
 * @param[out] desc_text  malloc'd embedded descriptor (or NULL)
 */
static int sparse_open(struct extent *x, char **desc_text, size_t *desc_len)
{
	uint8_t h[512];
	const char *path = x->path;
	uint64_t capacity, grain_sec, desc_sec, desc_cnt, rgd, gd, overhead;
	uint64_t span, gd_bytes;
	uint16_t algo;
	int r;

	if (desc_text)
		*desc_text = NULL;
	if (x->file_size < 512)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: sparse extent shorter than its header",
				     path);
	if ((r = read_exact(x->fd, path, h, 512, 0)))
		return r;
	if (vmb_le32(h) == COWD_MAGIC)
		return vmb_error_set(VMB_ENOTSUP,
				     "%s: ESX sparse (COWD) extents are not supported",
				     path);
	if (vmb_le32(h) != VMDK_MAGIC)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: sparse extent without the KDMV magic", path);
	if (vmb_le64(h + 56) == GD_AT_END) {
		/* streamOptimized: the footer (a copy of the header with the
		   real GD offset) sits before the end-of-stream marker */
		uint8_t f[1536];
		if (x->file_size < 2048)
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: stream without a footer", path);
		if ((r = read_exact(x->fd, path, f, sizeof f,
				    x->file_size - 1536)))
			return r;
		if (vmb_le32(f + 8) != 0 || vmb_le32(f + 12) != MARKER_FOOTER ||
		    vmb_le32(f + 512) != VMDK_MAGIC ||
		    vmb_le64(f + 1024) != 0 || vmb_le32(f + 1032) != 0 ||
		    vmb_le32(f + 1036) != MARKER_EOS)
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: grain directory at the end but no valid footer",
					     path);
		memcpy(h, f + 512, 512);
		if (vmb_le64(h + 56) == GD_AT_END)
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: footer has no grain directory offset",
					     path);
	}
	x->version = vmb_le32(h + 4);
	x->flags = vmb_le32(h + 8);
	capacity = vmb_le64(h + 12);
	grain_sec = vmb_le64(h + 20);
	desc_sec = vmb_le64(h + 28);
	desc_cnt = vmb_le64(h + 36);
	x->gtes = vmb_le32(h + 44);
	rgd = vmb_le64(h + 48);
	gd = vmb_le64(h + 56);
	overhead = vmb_le64(h + 64);
	algo = vmb_le16(h + 77);

	if (x->version < 1 || x->version > 3)
		return vmb_error_set(VMB_ENOTSUP,
				     "%s: sparse extent version %u is not supported",
				     path, x->version);
	if ((x->flags & FLAG_NL_TEST) &&
	    (h[73] != '\n' || h[74] != ' ' || h[75] != '\r' || h[76] != '\n'))
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: newline check bytes damaged (file transferred in text mode?)",
				     path);
	if (algo > 1)
		return vmb_error_set(VMB_ENOTSUP,
				     "%s: compression algorithm %u is not supported",
				     path, algo);
	x->compressed = algo == 1 || (x->flags & FLAG_COMPRESSED);
	if (x->compressed && algo != 1)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: compressed grains without a compression algorithm",
				     path);
	x->markers = !!(x->flags & FLAG_MARKERS);
	x->zero_grain = !!(x->flags & FLAG_ZERO_GRAIN);
	if (!vmb_is_pow2(grain_sec) || grain_sec > MAX_GRAIN_SECTORS)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: bad grain size %llu sectors", path,
				     (unsigned long long)grain_sec);
	if (x->compressed && grain_sec * SECTOR > MAX_CGRAIN_BYTES)
		return vmb_error_set(VMB_ENOTSUP,
				     "%s: compressed grains of %llu sectors are too large",
				     path, (unsigned long long)grain_sec);
	if (x->gtes == 0 || x->gtes > MAX_GTES)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: bad number of grain table entries %u",
				     path, x->gtes);
	if (capacity > VMB_DISK_MAX_SIZE / SECTOR)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: absurd capacity %llu sectors", path,
				     (unsigned long long)capacity);
	x->grain_sec = grain_sec;
	x->grain = grain_sec * SECTOR;
	x->gt_bytes = ((uint64_t)x->gtes * 4 + SECTOR - 1) / SECTOR * SECTOR;
	x->size = capacity * SECTOR;
	span = (uint64_t)x->gtes * x->grain; /* <= 2^9 * 2^30 */
	x->gd_entries = (x->size + span - 1) / span;
	if (x->gd_entries > MAX_GD_ENTRIES)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: grain directory of %llu entries is too large",
				     path, (unsigned long long)x->gd_entries);
	gd_bytes = x->gd_entries * 4;
	if (gd == 0 && (x->flags & FLAG_RGD))
		gd = rgd;
	if (x->gd_entries && (gd == 0 || gd > x->file_size / SECTOR ||
			      !vmb_range_ok(gd * SECTOR, gd_bytes, x->file_size)))
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: grain directory (sector %llu, %llu entries) outside the file",
				     path, (unsigned long long)gd,
				     (unsigned long long)x->gd_entries);
	x->gd_sec = gd;
	if (overhead > x->file_size / SECTOR && !x->compressed)
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: truncated: metadata ends at sector %llu",
				     path, (unsigned long long)overhead);
	x->overhead = overhead;
	if (desc_sec && desc_cnt && desc_text) {
		if (desc_cnt > MAX_DESC_BYTES / SECTOR ||
		    desc_sec > x->file_size / SECTOR ||
		    !vmb_range_ok(desc_sec * SECTOR, desc_cnt * SECTOR,
				  x->file_size))
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: embedded descriptor (sector %llu, %llu sectors) out of bounds",
					     path, (unsigned long long)desc_sec,
					     (unsigned long long)desc_cnt);
		*desc_text = vmb_malloc(desc_cnt * SECTOR);
		if (!*desc_text)
			return VMB_ENOMEM;
		*desc_len = desc_cnt * SECTOR;
		if ((r = read_exact(x->fd, path, *desc_text, *desc_len,
				    desc_sec * SECTOR))) {
			free(*desc_text);
			*desc_text = NULL;
			return r;
		}
	}
	if (x->gd_entries) {
		x->gd = vmb_malloc(gd_bytes);
		if (!x->gd)
			return VMB_ENOMEM;
		if ((r = read_exact(x->fd, path, x->gd, gd_bytes, gd * SECTOR)))
			return r;
		for (uint64_t i = 0; i < x->gd_entries; i++) {
			uint32_t s = vmb_le32(&x->gd[i]);
			x->gd[i] = s;
			if (s && !vmb_range_ok((uint64_t)s * SECTOR, x->gt_bytes,
					       x->file_size))
				return vmb_error_set(VMB_ECORRUPT,
						     "%s: grain table %llu at sector %u is outside the file",
						     path, (unsigned long long)i, s);
		}
	}
	if (pthread_mutex_init(&x->lock, NULL) != 0)
		return vmb_error_set(VMB_ENOMEM, "%s: cannot create a lock", path);
	x->lock_init = 1;
	for (int i = 0; i < GT_CACHE_SLOTS; i++)
		x->slots[i].tag = -1;
	return 0;
}

/* Copy grain table gdi into out[gtes]; all zero if the GD entry is 0. */
static int get_gt(struct extent *x, uint64_t gdi, uint32_t *out)
{
	uint32_t sec = x->gd[gdi];
	struct gt_slot *victim = NULL;
	uint32_t *fresh;
	int r;

	if (!sec) {
		memset(out, 0, x->gtes * sizeof *out);
		return 0;
	}
	pthread_mutex_lock(&x->lock);
	for (int i = 0; i < GT_CACHE_SLOTS; i++) {
		if (x->slots[i].tag == (int64_t)gdi) {
			memcpy(out, x->slots[i].gte, x->gtes * sizeof *out);
			x->slots[i].used = ++x->tick;
			pthread_mutex_unlock(&x->lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&x->lock);

	fresh = vmb_malloc(x->gtes * sizeof *fresh);
	if (!fresh)
		return VMB_ENOMEM;
	r = read_exact(x->fd, x->path, fresh, x->gtes * sizeof *fresh,
		       (uint64_t)sec * SECTOR);
	if (r) {
		free(fresh);
		return r;
	}
	for (uint32_t i = 0; i < x->gtes; i++)
		fresh[i] = vmb_le32(&fresh[i]);
	memcpy(out, fresh, x->gtes * sizeof *out);

	pthread_mutex_lock(&x->lock);
	for (int i = 0; i < GT_CACHE_SLOTS; i++) {
		if (x->slots[i].tag == (int64_t)gdi) { /* raced: keep theirs */
			pthread_mutex_unlock(&x->lock);
			free(fresh);
			return 0;
		}
		if (!victim || x->slots[i].used < victim->used)
			victim = &x->slots[i];
	}
	free(victim->gte);
	victim->gte = fresh;
	victim->tag = (int64_t)gdi;
	victim->used = ++x->tick;
	pthread_mutex_unlock(&x->lock);
	return 0;
}

enum { G_HOLE, G_ZERO, G_DATA };

/* Classify a grain table entry; checks it points inside the file. */
static int classify(const struct extent *x, uint32_t gte, uint64_t need,
		    int *kind)
{
	if (gte == 0) {
		*kind = G_HOLE;
		return 0;
	}
	if (gte == 1 && x->zero_grain) {
		*kind = G_ZERO;
		return 0;
	}
	*kind = G_DATA;
	if (x->compressed) {
		if ((uint64_t)gte * SECTOR + (x->markers ? 12 : 1) <= x->file_size)
			return 0;
	} else if (gte >= x->overhead &&
		   vmb_range_ok((uint64_t)gte * SECTOR, need, x->file_size)) {
		return 0;
	}
	return vmb_error_set(VMB_ECORRUPT,
			     "%s: grain at sector %u is outside the data area",
			     x->path, gte);
}

/* Walk the grains of [off, off+len) (extent-relative bytes) calling
 * cb for runs.  Used by both map and read. */
typedef int (*grain_cb)(struct extent *x, uint64_t off, uint64_t len,
			int kind, uint32_t gte, void *p);

static int walk_grains(struct extent *x, uint64_t off, uint64_t len,
		       grain_cb cb, void *p)
{
	uint32_t gt[MAX_GTES];
	int64_t have = -1;
	uint64_t end = off + len;
	uint64_t run_off = off, run_len = 0;
	uint32_t run_gte = 0;
	int run_kind = -1, r;

	while (off < end) {
		uint64_t gi = off / x->grain;
		uint64_t gdi = gi / x->gtes;
		uint64_t in = off % x->grain;
		uint64_t n = VMB_MIN(x->grain - in, end - off);
		uint64_t need = VMB_MIN(x->grain, x->size - gi * x->grain);
		uint32_t gte = 0;
		int kind = G_HOLE;
		if (!x->gd[gdi]) {
			/* no grain table: the whole span is a hole */
			uint64_t span_end = (gdi + 1) * x->gtes * x->grain;
			n = VMB_MIN(span_end, end) - off;
		} else {
			if ((int64_t)gdi != have) {
				if ((r = get_gt(x, gdi, gt)))
					return r;
				have = (int64_t)gdi;
			}
			gte = gt[gi % x->gtes];
			if ((r = classify(x, gte, need, &kind)))
				return r;
		}
		/* extend the run if contiguous in the file too (data) */
		if (run_len && kind == run_kind &&
		    (kind != G_DATA ||
		     (!x->compressed && in == 0 &&
		      (uint64_t)run_gte * SECTOR + (run_off % x->grain) +
		      run_len == (uint64_t)gte * SECTOR))) {
			run_len += n;
		} else {
			if (run_len && (r = cb(x, run_off, run_len, run_kind,
					       run_gte, p)))
				return r;
			run_off = off;
			run_len = n;
			run_kind = kind;
			run_gte = gte;
		}
		off += n;
	}
	if (run_len)
		return cb(x, run_off, run_len, run_kind, run_gte, p);
	return 0;
}

/* inflate one compressed grain into out (exactly want bytes) */
static int inflate_grain(const struct extent *x, const uint8_t *in,
			 size_t in_len, uint8_t *out, size_t want,
			 size_t alt_want, uint64_t where)
{
	z_stream zs;
	int zr, raw;
	size_t got;

	memset(&zs, 0, sizeof zs);
	/* zlib wrapper (what VMware and QEMU write); raw deflate otherwise */
	raw = !(in_len >= 2 && (in[0] & 0x0f) == 8 &&
		((in[0] << 8) | in[1]) % 31 == 0);
	if (inflateInit2(&zs, raw ? -15 : 15) != Z_OK)
		return vmb_error_set(VMB_ENOMEM, "%s: inflateInit failed",
				     x->path);
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)in_len;
	zs.next_out = out;
	zs.avail_out = (uInt)want;
	zr = inflate(&zs, Z_FINISH);
	got = zs.total_out;
	inflateEnd(&zs);
	if (zr != Z_STREAM_END || (got != want && got != alt_want))
		return vmb_error_set(VMB_ECORRUPT,
				     "%s: compressed grain at offset %llu is damaged",
				     x->path, (unsigned long long)where);
	if (got < want)
		memset(out + got, 0, want - got);
	return 0;
}

/* read [in, in+n) of one compressed grain (gi) stored at sector gte */
static int read_cgrain(struct extent *x, uint64_t gi, uint32_t gte,
		       uint64_t in, uint64_t n, uint8_t *dst)
{
	uint64_t pos = (uint64_t)gte * SECTOR, clen;
	uint64_t max_c = x->grain + x->grain / 8 + 1024; /* deflate bound */
	uint64_t tail = x->size - gi * x->grain;
	uint8_t *cbuf = NULL, *gbuf = NULL;
	int r;

	if (x->markers) {
		uint8_t m[12];
		if ((r = read_exact(x->fd, x->path, m, 12, pos)))
			return r;
		clen = vmb_le32(m + 8);
		if (vmb_le64(m) != gi * x->grain_sec || clen == 0 ||
		    clen > max_c ||
		    !vmb_range_ok(pos + 12, clen, x->file_size))
			return vmb_error_set(VMB_ECORRUPT,
					     "%s: bad grain marker at offset %llu",
					     x->path, (unsigned long long)pos);
		pos += 12;
	} else {
		clen = VMB_MIN(max_c, x->file_size - pos);
	}
	cbuf = vmb_malloc(clen);
	if (!cbuf)
		return VMB_ENOMEM;
	if ((r = read_exact(x->fd, x->path, cbuf, clen, pos)))
		goto out;
	if (in == 0 && n == x->grain) {
		r = inflate_grain(x, cbuf, clen, dst, x->grain,
				  VMB_MIN(tail, x->grain), pos);
	} else {
		gbuf = vmb_malloc(x->grain);
		if (!gbuf) {
			r = VMB_ENOMEM;
			goto out;
		}
		r = inflate_grain(x, cbuf, clen, gbuf, x->grain,
				  VMB_MIN(tail, x->grain), pos);
		if (!r)
			memcpy(dst, gbuf + in, n);
	}
out:
	free(cbuf);
	free(gbuf);
	return r;
}

struct map_ctx {
	struct vmdk *v;
	uint64_t base; /* guest offset of the extent */
	vmb_extent_fn fn;
	void *payload;
	int stopped;
};

static int map_cb(struct extent *x, uint64_t off, uint64_t len, int kind,
		  uint32_t gte, void *p)
{
	struct map_ctx *m = p;
	vmb_extent e = { m->base + off, len,
			 kind == G_DATA ? VMB_EXTENT_DATA :
			 kind == G_ZERO ? VMB_EXTENT_ZERO : VMB_EXTENT_HOLE, 0 };
	if (m->fn(&e, m->payload)) {
		m->stopped = 1;
		return 1;
	}
	return 0;
}

struct read_ctx {
	uint8_t *buf;
	uint64_t first; /* extent-relative offset of buf[0] */
};

static int read_cb(struct extent *x, uint64_t off, uint64_t len, int kind,
		   uint32_t gte, void *p)
{
	struct read_ctx *c = p;
	uint8_t *dst = c->buf + (off - c->first);
	if (kind != G_DATA) {
		memset(dst, 0, (size_t)len);
		return 0;
	}
	if (!x->compressed)
		return read_exact(x->fd, x->path, dst, (size_t)len,
				  (uint64_t)gte * SECTOR + off % x->grain);
	/* compressed: runs never span grains */
	return read_cgrain(x, off / x->grain, gte, off % x->grain, len, dst);
}

/* FLAT extents: holes of the file via SEEK_DATA/SEEK_HOLE */
static int flat_map(struct vmdk *v, struct extent *x, uint64_t off,
		    uint64_t len, struct map_ctx *m)
{
	uint64_t pos = off, end = off + len;
	int holekind = v->has_parent ? VMB_EXTENT_ZERO : VMB_EXTENT_HOLE;
	while (pos < end) {
		uint64_t fpos = x->flat_off + pos, next;
		off_t d = lseek(x->fd, (off_t)fpos, SEEK_DATA);
		vmb_extent e;
		int kind;
		if (d < 0 && errno != ENXIO) {
			kind = VMB_EXTENT_DATA;
			next = end;
		} else if (d < 0 || (uint64_t)d >= x->flat_off + end) {
			kind = holekind;
			next = end;
		} else if ((uint64_t)d > fpos) {
			kind = holekind;
			next = (uint64_t)d - x->flat_off;
		} else {
			off_t h = lseek(x->fd, (off_t)fpos, SEEK_HOLE);
			kind = VMB_EXTENT_DATA;
			if (h < 0 || (uint64_t)h <= fpos ||
			    (uint64_t)h >= x->flat_off + end)
				next = end;
			else
				next = (uint64_t)h - x->flat_off;
		}
		e = (vmb_extent){ x->start + pos, next - pos, kind, 0 };
		if (m->fn(&e, m->payload)) {
			m->stopped = 1;
			return 1;
		}
		pos = next;
	}
	return 0;
}

/* index of the extent containing guest offset off */
static size_t find_extent(const struct vmdk *v, uint64_t off)
{
	size_t lo = 0, hi = v->n;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (v->ext[mid].start <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static int vmdk_map(void *layer, uint64_t offset, uint64_t length,
		    vmb_extent_fn fn, void *payload)
{
	struct vmdk *v = layer;
	uint64_t end;
	int r = 0;

	if (!vmb_range_ok(offset, length, v->size))
		return vmb_error_set(VMB_EINVAL, "%s: map beyond the end",
				     v->path);
	end = offset + length;
	for (size_t i = find_extent(v, offset); offset < end && i < v->n; i++) {
		struct extent *x = &v->ext[i];
		uint64_t rel, n;
		struct map_ctx m = { v, x->start, fn, payload, 0 };
		if (!x->size || x->start > offset ||
		    offset - x->start >= x->size)
			continue;
		rel = offset - x->start;
		n = VMB_MIN(end - offset, x->size - rel);
		if (x->type == EXT_ZERO || x->noaccess) {
			vmb_extent e = { offset, n, VMB_EXTENT_ZERO, 0 };
			if (fn(&e, payload))
				return 1;
		} else if (x->type == EXT_FLAT) {
			r = flat_map(v, x, rel, n, &m);
		} else {
			r = walk_grains(x, rel, n, map_cb, &m);
		}
		if (m.stopped)
			return 1;
		if (r)
			return r;
		offset += n;
	}
	return 0;
}

static int vmdk_read(void *layer, void *buf, uint64_t offset, size_t length)
{
	struct vmdk *v = layer;
	uint8_t *p = buf;
	uint64_t end;
	int r = 0;

	if (!vmb_range_ok(offset, length, v->size))
		return vmb_error_set(VMB_EINVAL, "%s: read beyond the end",
				     v->path);
	end = offset + length;
	for (size_t i = find_extent(v, offset); offset < end && i < v->n; i++) {
		struct extent *x = &v->ext[i];
		uint64_t rel, n;
		if (!x->size || x->start > offset ||
		    offset - x->start >= x->size)
			continue;
		rel = offset - x->start;
		n = VMB_MIN(end - offset, x->size - rel);
		if (x->type == EXT_ZERO || x->noaccess) {
			memset(p, 0, (size_t)n);
		} else if (x->type == EXT_FLAT) {
			r = read_exact(x->fd, x->path, p, (size_t)n,
				       x->flat_off + rel);
		} else {
			struct read_ctx c = { p, rel };
			r = walk_grains(x, rel, n, read_cb, &c);
		}
		if (r)
			return r;
		p += n;
		offset += n;
	}
	return 0;
}

/* ---------------------------------------------------------------- */
/* open */

static int open_file(const char *path, int *fd, uint64_t *size, int allow_blk)
{
	struct stat st;
	*fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (*fd < 0)
		return io_err(path, "cannot open", errno);
	if (fstat(*fd, &st) != 0) {
		int e = errno;
		close(*fd);
		*fd = -1;
		return io_err(path, "cannot stat", e);
	}
	if (!S_ISREG(st.st_mode) && !(allow_blk && S_ISBLK(st.st_mode))) {
		close(*fd);
		*fd = -1;
		return vmb_error_set(VMB_EINVAL, "%s is not a regular file",
				     path);
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

static char *dir_of(const char *path)
{
	const char *s = strrchr(path, '/');
	if (!s)
		return vmb_strdup(".");
	if (s == path)
		return vmb_strdup("/");
	return vmb_strndup(path, (size_t)(s - path));
}

/* Resolve an extent name inside dir; refuse anything that escapes it. */
static int resolve_extent(const char *desc_path, const char *dir,
			  const char *name, char **out)
{
	char *full = NULL, *rdir = NULL, *rfull = NULL;
	const char *c = name;
	size_t dl;
	int r = 0;

	*out = NULL;
	if (name[0] == '/' || name[0] == '\\')
		goto escape;
	while (*c) {
		const char *e = c;
		while (*e && *e != '/' && *e != '\\')
			e++;
		if (e - c == 2 && c[0] == '.' && c[1] == '.')
			goto escape;
		c = *e ? e + 1 : e;
	}
	full = vmb_asprintf("%s/%s", dir, name);
	if (!full)
		return VMB_ENOMEM;
	rdir = realpath(dir, NULL);
	rfull = realpath(full, NULL);
	if (!rfull) {
		r = io_err(full, "extent file", errno);
		goto out;
	}
	if (!rdir) {
		r = io_err(dir, "descriptor folder", errno);
		goto out;
	}
	dl = strlen(rdir);
	if (strncmp(rfull, rdir, dl) != 0 ||
	    (rfull[dl] != '/' && !(dl == 1 && rdir[0] == '/')))
		goto escape;
	*out = full;
	full = NULL;
out:
	free(full);
	free(rdir);
	free(rfull);
	return r;
escape:
	r = vmb_error_set(VMB_EACCES,
			  "%s: extent file \"%.200s\" is outside the descriptor's folder",
			  desc_path, name);
	goto out;
}

static int open_extents(struct vmdk *v)
{
	char *dir = dir_of(v->path);
	uint64_t pos = 0;
	int r = 0;

	if (!dir)
		return VMB_ENOMEM;
	v->ext = vmb_calloc(v->d.n ? v->d.n : 1, sizeof *v->ext);
	if (!v->ext) {
		r = VMB_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < v->d.n; i++) {
		struct dext *de = &v->d.ext[i];
		struct extent *x = &v->ext[i];
		x->fd = -1;
		v->n = i + 1;
		x->type = de->type;
		x->vmfs = de->vmfs;
		x->noaccess = de->noaccess;
		x->start = pos;
		x->size = de->sectors * SECTOR;
		if (!x->size) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: descriptor has an empty extent",
					  v->path);
			goto out;
		}
		if (vmb_add_overflow(pos, x->size, &pos) ||
		    pos > VMB_DISK_MAX_SIZE) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: extents add up to an absurd size",
					  v->path);
			goto out;
		}
		if (de->file && !(x->name = vmb_strdup(de->file))) {
			r = VMB_ENOMEM;
			goto out;
		}
		if (x->type == EXT_ZERO || x->noaccess)
			continue;
		if ((r = resolve_extent(v->path, dir, de->file, &x->path)))
			goto out;
		if ((r = open_file(x->path, &x->fd, &x->file_size, 0)))
			goto out;
		if (x->type == EXT_FLAT) {
			x->flat_off = de->offset * SECTOR;
			if (!vmb_range_ok(x->flat_off, x->size, x->file_size)) {
				r = vmb_error_set(VMB_ECORRUPT,
						  "%s: flat extent %s is shorter than its %llu sectors",
						  v->path, x->path,
						  (unsigned long long)de->sectors);
				goto out;
			}
			continue;
		}
		if ((r = sparse_open(x, NULL, NULL)))
			goto out;
		if (x->size != de->sectors * SECTOR) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: extent %s has %llu sectors but the descriptor says %llu",
					  v->path, x->path,
					  (unsigned long long)(x->size / SECTOR),
					  (unsigned long long)de->sectors);
			goto out;
		}
	}
	v->size = pos;
out:
	free(dir);
	return r;
}

static void vmdk_close(void *layer)
{
	struct vmdk *v = layer;
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		extent_free(&v->ext[i]);
	free(v->ext);
	desc_free(&v->d);
	free(v->path);
	free(v);
}

static int vmdk_open(const char *path, const vmb_layer_open_options *o,
		     void **layer, vmb_layer_info *info)
{
	struct vmdk *v;
	uint8_t magic[4] = { 0 };
	char *text = NULL;
	size_t text_len = 0;
	int fd = -1, r;
	uint64_t fsize;

	*layer = NULL;
	v = vmb_calloc(1, sizeof *v);
	if (!v)
		return VMB_ENOMEM;
	if (!(v->path = vmb_strdup(path))) {
		r = VMB_ENOMEM;
		goto fail;
	}
	if ((r = open_file(path, &fd, &fsize, 1)))
		goto fail;
	if (fsize >= 4 && (r = read_exact(fd, path, magic, 4, 0)))
		goto fail;
	if (vmb_le32(magic) == VMDK_MAGIC || vmb_le32(magic) == COWD_MAGIC) {
		/* a monolithic sparse file (maybe a delta or a stream) */
		struct extent *x;
		v->ext = vmb_calloc(1, sizeof *v->ext);
		if (!v->ext) {
			r = VMB_ENOMEM;
			goto fail;
		}
		v->n = 1;
		x = &v->ext[0];
		x->fd = fd;
		fd = -1;
		x->type = EXT_SPARSE;
		x->file_size = fsize;
		if (!(x->path = vmb_strdup(path))) {
			r = VMB_ENOMEM;
			goto fail;
		}
		if ((r = sparse_open(x, &text, &text_len)))
			goto fail;
		v->size = x->size;
		if (text) {
			r = parse_descriptor(path, text, text_len, &v->d);
			if (r)
				goto fail;
			if (v->d.n > 1 ||
			    (v->d.n == 1 && (v->d.ext[0].type != EXT_SPARSE ||
					     v->d.ext[0].sectors * SECTOR !=
					     x->size))) {
				r = vmb_error_set(VMB_ECORRUPT,
						  "%s: embedded descriptor does not match the sparse header (capacity %llu sectors)",
						  path,
						  (unsigned long long)(x->size / SECTOR));
				goto fail;
			}
			if (v->d.n == 1 && v->d.ext[0].file &&
			    !(x->name = vmb_strdup(v->d.ext[0].file))) {
				r = VMB_ENOMEM;
				goto fail;
			}
		} else {
			memset(&v->d, 0, sizeof v->d);
			v->d.version = 1;
		}
		if (!v->d.create_type &&
		    !(v->d.create_type = vmb_strdup(x->compressed ?
						    "streamOptimized" :
						    "monolithicSparse"))) {
			r = VMB_ENOMEM;
			goto fail;
		}
	} else {
		/* a text descriptor */
		if (fsize > MAX_DESC_BYTES) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: descriptor file larger than %u bytes",
					  path, MAX_DESC_BYTES);
			goto fail;
		}
		text_len = (size_t)fsize;
		text = vmb_malloc(text_len);
		if (!text) {
			r = VMB_ENOMEM;
			goto fail;
		}
		if ((r = read_exact(fd, path, text, text_len, 0)))
			goto fail;
		close(fd);
		fd = -1;
		if ((r = parse_descriptor(path, text, text_len, &v->d)))
			goto fail;
		if (!v->d.create_type) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: descriptor without createType",
					  path);
			goto fail;
		}
		if (strcasecmp(v->d.create_type, "fullDevice") == 0 ||
		    strcasecmp(v->d.create_type, "partitionedDevice") == 0 ||
		    strncasecmp(v->d.create_type, "vmfsRaw", 7) == 0 ||
		    strncasecmp(v->d.create_type, "vmfsRDM", 7) == 0) {
			r = vmb_error_set(VMB_ENOTSUP,
					  "%s: raw device VMDKs (%.40s) are not supported",
					  path, v->d.create_type);
			goto fail;
		}
		if (!v->d.n) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: descriptor without extents", path);
			goto fail;
		}
		if ((r = open_extents(v)))
			goto fail;
	}
	v->has_parent = v->d.parent_hint && v->d.parent_hint[0];
	if (v->size > VMB_DISK_MAX_SIZE) {
		r = vmb_error_set(VMB_ECORRUPT, "%s: absurd virtual size", path);
		goto fail;
	}
	info->virtual_size = v->size;
	if (v->has_parent) {
		info->backing_path = vmb_strdup(v->d.parent_hint);
		info->backing_format = vmb_strdup("vmdk");
		if (!info->backing_path || !info->backing_format) {
			vmb_disk__layer_info_free(info);
			r = VMB_ENOMEM;
			goto fail;
		}
	}
	free(text);
	*layer = v;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	free(text);
	vmdk_close(v);
	return r ? r : VMB_EGENERIC;
}

static int vmdk_describe(void *layer, char **json)
{
	struct vmdk *v = layer;
	const struct extent *sp = NULL;
	vmb_buf b;

	for (size_t i = 0; i < v->n && !sp; i++)
		if (v->ext[i].type == EXT_SPARSE && !v->ext[i].noaccess &&
		    v->ext[i].fd >= 0)
			sp = &v->ext[i];
	vmb_buf_init(&b);
	vmb_buf_puts(&b, "\"create_type\":");
	vmb_buf_json_str(&b, v->d.create_type ? v->d.create_type : "");
	vmb_buf_printf(&b, ",\"version\":%u",
		       sp ? sp->version : v->d.version);
	vmb_buf_printf(&b, ",\"descriptor_version\":%u", v->d.version);
	if (sp)
		vmb_buf_printf(&b, ",\"grain_size\":%llu",
			       (unsigned long long)sp->grain);
	vmb_buf_printf(&b, ",\"compressed\":%s",
		       sp && sp->compressed ? "true" : "false");
	if (v->d.has_cid)
		vmb_buf_printf(&b, ",\"cid\":\"%08x\"", v->d.cid);
	if (v->d.has_parent_cid)
		vmb_buf_printf(&b, ",\"parent_cid\":\"%08x\"", v->d.parent_cid);
	if (v->d.cyl || v->d.heads || v->d.secs)
		vmb_buf_printf(&b, ",\"geometry\":{\"cylinders\":%llu,"
			       "\"heads\":%llu,\"sectors\":%llu}",
			       (unsigned long long)v->d.cyl,
			       (unsigned long long)v->d.heads,
			       (unsigned long long)v->d.secs);
	vmb_buf_puts(&b, ",\"extents\":[");
	for (size_t i = 0; i < v->n; i++) {
		const struct extent *x = &v->ext[i];
		vmb_buf_puts(&b, i ? ",{\"file\":" : "{\"file\":");
		if (x->name)
			vmb_buf_json_str(&b, x->name);
		else
			vmb_buf_puts(&b, "null");
		vmb_buf_puts(&b, ",\"type\":");
		vmb_buf_json_str(&b, x->vmfs ? "VMFS" : ext_type_names[x->type]);
		vmb_buf_printf(&b, ",\"sectors\":%llu",
			       (unsigned long long)(x->size / SECTOR));
		if (x->noaccess)
			vmb_buf_puts(&b, ",\"access\":\"NOACCESS\"");
		if (x->type == EXT_FLAT && x->flat_off)
			vmb_buf_printf(&b, ",\"offset\":%llu",
				       (unsigned long long)(x->flat_off / SECTOR));
		vmb_buf_puts(&b, "}");
	}
	vmb_buf_puts(&b, "],\"parent_hint\":");
	if (v->has_parent)
		vmb_buf_json_str(&b, v->d.parent_hint);
	else
		vmb_buf_puts(&b, "null");
	*json = vmb_buf_detach(&b);
	return *json ? 0 : VMB_ENOMEM;
}

/* ---------------------------------------------------------------- */
/* writer */

#define W_DESC_SEC 1
#define W_DESC_CNT 20
#define W_OVERHEAD_ALIGN 128
#define W_MAX_SIZE (64ULL << 40) /* 64 TiB, roughly VMware's limit */

struct vmdk_w {
	int fd;
	char *path;
	int stream;
	/* monolithicFlat: fd is the raw extent file flat_path, and the text
	   descriptor goes to path (held open as dfd from the start) */
	int flat, dfd;
	char *flat_path;
	uint64_t size, capacity;   /* bytes, sectors */
	uint64_t grain, grain_sec;
	uint64_t ngrains, ngts;
	uint64_t gt_sec;           /* sectors of one GT */
	uint64_t end;              /* next free sector */
	uint64_t overhead;
	/* monolithicSparse: fixed metadata layout */
	uint64_t rgd_at, rgt_at, gd_at, gt_at, gd_cnt;
	/* stream: GD built as GTs are written */
	uint32_t *gd;
	uint32_t gt[MAX_GTES];
	int64_t cur_gt;
	int gt_used;
	uint8_t *pend;             /* grain being assembled */
	int64_t pend_idx;
	uint8_t *zbuf;
	size_t zcap;
	z_stream zs;
	int zinit;
	/* vmb_disk__vmdk_create_layer */
	int has_cid, zeroed;
	uint32_t cid, parent_cid;
	char *parent_hint, *extent_name;
};

static int w_err(struct vmdk_w *w, int e)
{
	return io_err(w->path, "cannot write", e);
}

static int w_pwrite(struct vmdk_w *w, const void *buf, size_t len,
		    uint64_t off)
{
	int r = vmb_pwrite_full(w->fd, buf, len, off);
	return r < 0 ? w_err(w, -r) : 0;
}

/* Can we allocate n more sectors with 32-bit grain pointers? */
static int w_room(struct vmdk_w *w, uint64_t n)
{
	if (w->end + n > 0xffffffffULL)
		return vmb_error_set(VMB_ENOSPC,
				     "%s: VMDK extent full (32-bit sector pointers)",
				     w->path);
	return 0;
}

static int flush_gt(struct vmdk_w *w)
{
	uint8_t buf[MAX_GTES * 4];
	int r;
	if (w->cur_gt < 0 || !w->gt_used)
		return 0;
	for (int i = 0; i < MAX_GTES; i++)
		vmb_put_le32(buf + 4 * i, w->gt[i]);
	if (!w->stream) {
		uint64_t o = (uint64_t)w->cur_gt * w->gt_sec;
		if ((r = w_pwrite(w, buf, sizeof buf, (w->gt_at + o) * SECTOR)))
			return r;
		return w_pwrite(w, buf, sizeof buf, (w->rgt_at + o) * SECTOR);
	} else {
		uint8_t m[512];
		if ((r = w_room(w, 1 + w->gt_sec)))
			return r;
		memset(m, 0, sizeof m);
		vmb_put_le64(m, w->gt_sec);
		vmb_put_le32(m + 12, MARKER_GT);
		if ((r = w_pwrite(w, m, sizeof m, w->end * SECTOR)))
			return r;
		w->end++;
		w->gd[w->cur_gt] = (uint32_t)w->end;
		if ((r = w_pwrite(w, buf, sizeof buf, w->end * SECTOR)))
			return r;
		w->end += w->gt_sec;
	}
	return 0;
}

static int switch_gt(struct vmdk_w *w, uint64_t g)
{
	int r;
	if (w->cur_gt == (int64_t)g)
		return 0;
	if ((r = flush_gt(w)))
		return r;
	memset(w->gt, 0, sizeof w->gt);
	w->gt_used = 0;
	w->cur_gt = (int64_t)g;
	return 0;
}

static int set_gte(struct vmdk_w *w, uint64_t idx, uint32_t sec)
{
	int r = switch_gt(w, idx / MAX_GTES);
	if (r)
		return r;
	w->gt[idx % MAX_GTES] = sec;
	w->gt_used = 1;
	return 0;
}

/* streamOptimized: compress one grain and append it with its marker */
static int put_cgrain(struct vmdk_w *w, uint64_t idx, const uint8_t *data)
{
	uint64_t sectors, total;
	int r;

	if (deflateReset(&w->zs) != Z_OK)
		return vmb_error_set(VMB_EGENERIC, "%s: deflate failed",
				     w->path);
	w->zs.next_in = (Bytef *)data;
	w->zs.avail_in = (uInt)w->grain;
	w->zs.next_out = w->zbuf + 12;
	w->zs.avail_out = (uInt)(w->zcap - 12);
	if (deflate(&w->zs, Z_FINISH) != Z_STREAM_END)
		return vmb_error_set(VMB_EGENERIC, "%s: deflate failed",
				     w->path);
	total = 12 + w->zs.total_out;
	sectors = (total + SECTOR - 1) / SECTOR;
	memset(w->zbuf + total, 0, sectors * SECTOR - total);
	vmb_put_le64(w->zbuf, idx * w->grain_sec);
	vmb_put_le32(w->zbuf + 8, (uint32_t)w->zs.total_out);
	/* a finished grain table goes out before this grain */
	if ((r = switch_gt(w, idx / MAX_GTES)) || (r = w_room(w, sectors)))
		return r;
	if ((r = set_gte(w, idx, (uint32_t)w->end)))
		return r;
	if ((r = w_pwrite(w, w->zbuf, sectors * SECTOR, w->end * SECTOR)))
		return r;
	w->end += sectors;
	return 0;
}

/* Store n whole grains starting at grain idx (zero grains skipped). */
static int put_grains(struct vmdk_w *w, uint64_t idx, const uint8_t *p,
		      uint64_t n)
{
	uint64_t i = 0;
	int r;
	while (i < n) {
		uint64_t j;
		if (vmb_is_zero(p + i * w->grain, w->grain)) {
			i++;
			continue;
		}
		if (w->flat) {
			/* the raw extent: guest offset = file offset, zero
			   grains stay holes */
			if ((r = w_pwrite(w, p + i * w->grain, w->grain,
					  (idx + i) * w->grain)))
				return r;
			i++;
			continue;
		}
		if (w->stream) {
			if ((r = put_cgrain(w, idx + i, p + i * w->grain)))
				return r;
			i++;
			continue;
		}
		for (j = i + 1; j < n && j - i < 256 &&
		     !vmb_is_zero(p + j * w->grain, w->grain); j++)
			;
		if ((r = w_room(w, (j - i) * w->grain_sec)))
			return r;
		if ((r = w_pwrite(w, p + i * w->grain, (j - i) * w->grain,
				  w->end * SECTOR)))
			return r;
		for (uint64_t k = i; k < j; k++) {
			if ((r = set_gte(w, idx + k, (uint32_t)w->end)))
				return r;
			w->end += w->grain_sec;
		}
		i = j;
	}
	return 0;
}

static int flush_pending(struct vmdk_w *w)
{
	int r;
	if (w->pend_idx < 0)
		return 0;
	r = put_grains(w, (uint64_t)w->pend_idx, w->pend, 1);
	w->pend_idx = -1;
	return r;
}

static int vmdk_write(void *writer, uint64_t offset, const void *buf,
		      size_t length)
{
	struct vmdk_w *w = writer;
	const uint8_t *p = buf;
	int r;

	if (!vmb_range_ok(offset, length, w->size))
		return vmb_error_set(VMB_EINVAL, "%s: write beyond the end",
				     w->path);
	while (length) {
		uint64_t idx = offset / w->grain, in = offset % w->grain;
		uint64_t n = VMB_MIN(w->grain - in, length);
		if (w->pend_idx >= 0 && (uint64_t)w->pend_idx != idx &&
		    (r = flush_pending(w)))
			return r;
		if (in == 0 && length >= w->grain) {
			uint64_t k = length / w->grain;
			if ((r = put_grains(w, idx, p, k)))
				return r;
			n = k * w->grain;
		} else {
			if (w->pend_idx < 0) {
				memset(w->pend, 0, w->grain);
				w->pend_idx = (int64_t)idx;
			}
			memcpy(w->pend + in, p, n);
			if (in + n == w->grain && (r = flush_pending(w)))
				return r;
		}
		p += n;
		offset += n;
		length -= n;
	}
	return 0;
}

static void fill_header(struct vmdk_w *w, uint8_t *h, uint64_t gd,
			uint64_t rgd)
{
	memset(h, 0, 512);
	vmb_put_le32(h, VMDK_MAGIC);
	vmb_put_le32(h + 4, w->stream ? 3 : w->zeroed ? 2 : 1);
	vmb_put_le32(h + 8, w->stream ? FLAG_NL_TEST | FLAG_COMPRESSED |
			    FLAG_MARKERS : FLAG_NL_TEST | FLAG_RGD |
			    (w->zeroed ? FLAG_ZERO_GRAIN : 0));
	vmb_put_le64(h + 12, w->capacity);
	vmb_put_le64(h + 20, w->grain_sec);
	vmb_put_le64(h + 28, W_DESC_SEC);
	vmb_put_le64(h + 36, W_DESC_CNT);
	vmb_put_le32(h + 44, MAX_GTES);
	vmb_put_le64(h + 48, rgd);
	vmb_put_le64(h + 56, gd);
	vmb_put_le64(h + 64, w->overhead);
	h[72] = 0;
	h[73] = '\n';
	h[74] = ' ';
	h[75] = '\r';
	h[76] = '\n';
	vmb_put_le16(h + 77, w->stream ? 1 : 0);
}

static int write_descriptor(struct vmdk_w *w)
{
	char *text = NULL, *base, *parent = NULL;
	const char *s = strrchr(w->path, '/');
	uint8_t buf[W_DESC_CNT * 512];
	uint32_t cid = 0;
	uint64_t cyl = w->capacity / (16 * 63);
	size_t n;
	int r;

	if (w->has_cid)
		cid = w->cid;
	else if (getrandom(&cid, sizeof cid, GRND_NONBLOCK) !=
		 (ssize_t)sizeof cid)
		cid = (uint32_t)time(NULL) ^ (uint32_t)getpid() << 16;
	if (cid == 0xffffffffu)
		cid = 1;
	if (w->parent_hint &&
	    !(parent = vmb_asprintf("parentFileNameHint=\"%s\"\n",
				    w->parent_hint)))
		return VMB_ENOMEM;
	if (w->flat)
		s = strrchr(w->flat_path, '/');
	base = vmb_strdup(w->extent_name ? w->extent_name :
			  s ? s + 1 : w->flat ? w->flat_path : w->path);
	if (!base) {
		free(parent);
		return VMB_ENOMEM;
	}
	for (char *c = base; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == '"' || *c == 0x7f)
			*c = '_';
	if (cyl > 16383)
		cyl = 16383;
	text = vmb_asprintf("# Disk DescriptorFile\n"
			    "version=1\n"
			    "CID=%08x\n"
			    "parentCID=%08x\n"
			    "createType=\"%s\"\n"
			    "%s"
			    "\n"
			    "# Extent description\n"
			    "RW %llu %s \"%.200s\"%s\n"
			    "\n"
			    "# The Disk Data Base\n"
			    "#DDB\n"
			    "\n"
			    "ddb.virtualHWVersion = \"4\"\n"
			    "ddb.geometry.cylinders = \"%llu\"\n"
			    "ddb.geometry.heads = \"16\"\n"
			    "ddb.geometry.sectors = \"63\"\n"
			    "ddb.adapterType = \"ide\"\n",
			    cid, w->parent_hint ? w->parent_cid : 0xffffffffu,
			    w->flat ? "monolithicFlat" : w->stream ?
			    "streamOptimized" : "monolithicSparse",
			    parent ? parent : "",
			    (unsigned long long)w->capacity,
			    w->flat ? "FLAT" : "SPARSE", base,
			    w->flat ? " 0" : "",
			    (unsigned long long)cyl);
	free(base);
	free(parent);
	if (!text)
		return VMB_ENOMEM;
	n = strlen(text);
	if (w->flat) {
		/* a descriptor file of its own: the text only */
		r = vmb_pwrite_full(w->dfd, text, n, 0);
		free(text);
		if (r < 0)
			return io_err(w->path, "cannot write", -r);
		if (ftruncate(w->dfd, (off_t)n) != 0)
			return io_err(w->path, "cannot write", errno);
		return 0;
	}
	memset(buf, 0, sizeof buf);
	memcpy(buf, text, VMB_MIN(n, sizeof buf - 1));
	free(text);
	r = w_pwrite(w, buf, sizeof buf, W_DESC_SEC * SECTOR);
	return r;
}

static void vmdk_abort(void *writer)
{
	struct vmdk_w *w = writer;
	if (!w)
		return;
	if (w->fd >= 0) {
		close(w->fd);
		unlink(w->flat ? w->flat_path : w->path);
	}
	if (w->dfd >= 0) {
		close(w->dfd);
		unlink(w->path);
	}
	free(w->flat_path);
	if (w->zinit)
		deflateEnd(&w->zs);
	free(w->gd);
	free(w->pend);
	free(w->zbuf);
	free(w->path);
	free(w->parent_hint);
	free(w->extent_name);
	free(w);
}

static int vmdk_create(const char *path, uint64_t size,
		       const vmb_layer_create_options *o, void **writer)
{
	struct vmdk_w *w;
	const char *sub = o ? o->subformat : NULL;
	uint64_t grain = o && o->cluster_size ? o->cluster_size : 65536;
	int r;

	*writer = NULL;
	if (sub && strcmp(sub, "monolithicSparse") != 0 &&
	    strcmp(sub, "streamOptimized") != 0 &&
	    strcmp(sub, "monolithicFlat") != 0)
		return vmb_error_set(VMB_ENOTSUP,
				     "%s: vmdk subformat '%s' cannot be written (use monolithicSparse, streamOptimized or monolithicFlat)",
				     path, sub);
	if (!vmb_is_pow2(grain) || grain < 4096 || grain > (1u << 20))
		return vmb_error_set(VMB_EINVAL,
				     "%s: vmdk grain size %llu must be a power of two from 4 KiB to 1 MiB",
				     path, (unsigned long long)grain);
	if (size == 0 || size % SECTOR || size > W_MAX_SIZE)
		return vmb_error_set(VMB_EINVAL,
				     "%s: vmdk size %llu must be a non-zero multiple of 512 up to 64 TiB",
				     path, (unsigned long long)size);
	w = vmb_calloc(1, sizeof *w);
	if (!w)
		return VMB_ENOMEM;
	w->fd = -1;
	w->dfd = -1;
	w->cur_gt = -1;
	w->pend_idx = -1;
	w->stream = sub && strcmp(sub, "streamOptimized") == 0;
	w->flat = sub && strcmp(sub, "monolithicFlat") == 0;
	w->size = size;
	w->capacity = size / SECTOR;
	w->grain = grain;
	w->grain_sec = grain / SECTOR;
	w->ngrains = (size + grain - 1) / grain;
	w->ngts = (w->ngrains + MAX_GTES - 1) / MAX_GTES;
	w->gt_sec = MAX_GTES * 4 / SECTOR;
	w->gd_cnt = (w->ngts * 4 + SECTOR - 1) / SECTOR;
	if (!(w->path = vmb_strdup(path)) ||
	    !(w->pend = vmb_malloc(grain))) {
		r = VMB_ENOMEM;
		goto fail;
	}
	if (w->stream) {
		w->gd = vmb_calloc(w->ngts, sizeof *w->gd);
		w->zcap = 12 + compressBound((uLong)grain) + SECTOR;
		w->zbuf = vmb_malloc(w->zcap);
		if (!w->gd || !w->zbuf) {
			r = VMB_ENOMEM;
			goto fail;
		}
		if (deflateInit(&w->zs, Z_DEFAULT_COMPRESSION) != Z_OK) {
			r = vmb_error_set(VMB_ENOMEM, "%s: deflateInit failed",
					  path);
			goto fail;
		}
		w->zinit = 1;
		w->overhead = W_OVERHEAD_ALIGN;
	} else {
		/* QEMU's layout: header, descriptor, RGD, RGTs, GD, GTs */
		w->rgd_at = W_DESC_SEC + W_DESC_CNT;
		w->rgt_at = w->rgd_at + w->gd_cnt;
		w->gd_at = w->rgt_at + w->ngts * w->gt_sec;
		w->gt_at = w->gd_at + w->gd_cnt;
		w->overhead = (w->gt_at + w->ngts * w->gt_sec +
			       W_OVERHEAD_ALIGN - 1) / W_OVERHEAD_ALIGN *
			      W_OVERHEAD_ALIGN;
	}
	w->end = w->overhead;
	if (w->flat) {
		/* NAME.vmdk (descriptor) + NAME-flat.vmdk (data), as VMware
		   and qemu-img name them */
		size_t l = strlen(path);
		if (l > 5 && !strcmp(path + l - 5, ".vmdk"))
			w->flat_path = vmb_asprintf("%.*s-flat.vmdk",
						    (int)(l - 5), path);
		else
			w->flat_path = vmb_asprintf("%s-flat.vmdk", path);
		if (!w->flat_path) {
			r = VMB_ENOMEM;
			goto fail;
		}
		w->dfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			      0600);
		if (w->dfd < 0) {
			r = errno == EEXIST ?
			    vmb_error_set(VMB_EEXISTS, "%s already exists",
					  path) :
			    io_err(path, "cannot create", errno);
			goto fail;
		}
	}
	w->fd = open(w->flat ? w->flat_path : path,
		     O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		const char *fp = w->flat ? w->flat_path : path;
		r = errno == EEXIST ?
		    vmb_error_set(VMB_EEXISTS, "%s already exists", fp) :
		    io_err(fp, "cannot create", errno);
		goto fail;
	}
	*writer = w;
	return 0;
fail:
	vmdk_abort(w);
	return r;
}

static int vmdk_finish(void *writer)
{
	struct vmdk_w *w = writer;
	uint8_t h[512];
	uint8_t *gdbuf = NULL;
	size_t gdlen = (size_t)(w->gd_cnt * SECTOR);
	int r;

	if ((r = flush_pending(w)) || (r = flush_gt(w)))
		goto fail;
	w->cur_gt = -1;
	gdbuf = vmb_calloc(1, gdlen);
	if (!gdbuf) {
		r = VMB_ENOMEM;
		goto fail;
	}
	if ((r = write_descriptor(w)))
		goto fail;
	if (w->flat) {
		if (ftruncate(w->fd, (off_t)w->size) != 0) {
			r = w_err(w, errno);
			goto fail;
		}
		r = vmb_disk__sync_close(&w->dfd, w->path);
		if (r)
			goto fail;
		r = vmb_disk__sync_close(&w->fd, w->flat_path);
		if (r) {
			unlink(w->flat_path);
			unlink(w->path);
			goto fail;
		}
		free(gdbuf);
		vmdk_abort(w);
		return 0;
	} else if (!w->stream) {
		/* every GT has its preassigned place (unused ones are holes
		   that read as zeros: "no grain allocated") */
		for (uint64_t i = 0; i < w->ngts; i++)
			vmb_put_le32(gdbuf + 4 * i,
				     (uint32_t)(w->rgt_at + i * w->gt_sec));
		if ((r = w_pwrite(w, gdbuf, gdlen, w->rgd_at * SECTOR)))
			goto fail;
		for (uint64_t i = 0; i < w->ngts; i++)
			vmb_put_le32(gdbuf + 4 * i,
				     (uint32_t)(w->gt_at + i * w->gt_sec));
		if ((r = w_pwrite(w, gdbuf, gdlen, w->gd_at * SECTOR)))
			goto fail;
		fill_header(w, h, w->gd_at, w->rgd_at);
		if ((r = w_pwrite(w, h, 512, 0)))
			goto fail;
		if (ftruncate(w->fd, (off_t)(w->end * SECTOR)) != 0) {
			r = w_err(w, errno);
			goto fail;
		}
	} else {
		uint8_t m[512];
		uint64_t gd_sec;
		if ((r = w_room(w, 1 + w->gd_cnt + 3)))
			goto fail;
		/* GD marker + GD */
		memset(m, 0, sizeof m);
		vmb_put_le64(m, w->gd_cnt);
		vmb_put_le32(m + 12, MARKER_GD);
		if ((r = w_pwrite(w, m, 512, w->end * SECTOR)))
			goto fail;
		w->end++;
		gd_sec = w->end;
		for (uint64_t i = 0; i < w->ngts; i++)
			vmb_put_le32(gdbuf + 4 * i, w->gd[i]);
		if ((r = w_pwrite(w, gdbuf, gdlen, w->end * SECTOR)))
			goto fail;
		w->end += w->gd_cnt;
		/* footer marker, footer, end-of-stream marker */
		memset(m, 0, sizeof m);
		vmb_put_le64(m, 1);
		vmb_put_le32(m + 12, MARKER_FOOTER);
		if ((r = w_pwrite(w, m, 512, w->end * SECTOR)))
			goto fail;
		w->end++;
		fill_header(w, h, gd_sec, 0);
		if ((r = w_pwrite(w, h, 512, w->end * SECTOR)))
			goto fail;
		w->end++;
		memset(m, 0, sizeof m);
		if ((r = w_pwrite(w, m, 512, w->end * SECTOR)))
			goto fail;
		w->end++;
		fill_header(w, h, GD_AT_END, 0);
		if ((r = w_pwrite(w, h, 512, 0)))
			goto fail;
	}
	r = vmb_disk__sync_close(&w->fd, w->path);
	if (r) {
		unlink(w->path); /* vmdk_abort only unlinks an open file */
		goto fail;
	}
	free(gdbuf);
	vmdk_abort(w); /* frees; fd already closed, file kept */
	return 0;
fail:
	free(gdbuf);
	vmdk_abort(w);
	return r;
}

/* ---------------------------------------------------------------- */
/* native snapshot layers (vmdk.h) */

int vmb_disk__vmdk_info(const char *path, vmb_vmdk_info *out)
{
	vmb_layer_open_options o = { 1, NULL };
	vmb_layer_info info;
	struct vmdk *v;
	void *l = NULL;
	int r;

	memset(out, 0, sizeof *out);
	memset(&info, 0, sizeof info);
	if ((r = vmdk_open(path, &o, &l, &info)))
		return r;
	v = l;
	vmb_disk__layer_info_free(&info);
	/* vmdk_open keeps the file's own descriptor in d for a sparse
	 * file: a single file when the only extent is that file */
	out->single_file = v->n == 1 && v->ext[0].type == EXT_SPARSE &&
			   v->ext[0].path && strcmp(v->ext[0].path, path) == 0;
	out->stream = v->n && v->ext[0].type == EXT_SPARSE &&
		      v->ext[0].compressed;
	out->has_cid = v->d.has_cid;
	out->cid = v->d.cid;
	out->has_parent_cid = v->d.has_parent_cid;
	out->parent_cid = v->d.parent_cid;
	for (size_t i = 0; i < v->n && !out->grain; i++)
		if (v->ext[i].type == EXT_SPARSE && v->ext[i].fd >= 0)
			out->grain = v->ext[i].grain;
	if ((v->has_parent &&
	     !(out->parent_hint = vmb_strdup(v->d.parent_hint))) ||
	    (v->d.create_type &&
	     !(out->create_type = vmb_strdup(v->d.create_type)))) {
		vmb_disk__vmdk_info_free(out);
		r = VMB_ENOMEM;
	}
	vmdk_close(l);
	return r;
}

void vmb_disk__vmdk_info_free(vmb_vmdk_info *info)
{
	free(info->parent_hint);
	free(info->create_type);
	info->parent_hint = info->create_type = NULL;
}

int vmb_disk__vmdk_create_layer(const char *path, const char *extent_name,
				uint64_t size, uint64_t grain, const uint32_t *cid,
				const char *parent_hint, uint32_t parent_cid,
				void **writer)
{
	vmb_layer_create_options o = VMB_DISK_WRITER_INIT;
	struct vmdk_w *w;
	int r;

	o.subformat = "monolithicSparse";
	o.cluster_size = (uint32_t)grain;
	if (parent_hint && (!parent_hint[0] || strlen(parent_hint) > 1024 ||
			    strpbrk(parent_hint, "\"\n\r")))
		return vmb_error_set(VMB_EINVAL, "%s: parent name \"%.200s\" "
				     "cannot be written in a descriptor",
				     path, parent_hint);
	if ((r = vmdk_create(path, size, &o, writer)))
		return r;
	w = *writer;
	if (cid) {
		w->has_cid = 1;
		w->cid = *cid;
	}
	if (extent_name && !(w->extent_name = vmb_strdup(extent_name))) {
		vmdk_abort(w);
		*writer = NULL;
		return VMB_ENOMEM;
	}
	if (parent_hint) {
		w->parent_cid = parent_cid;
		if (!(w->parent_hint = vmb_strdup(parent_hint))) {
			vmdk_abort(w);
			*writer = NULL;
			return VMB_ENOMEM;
		}
	}
	return 0;
}

int vmb_disk__vmdk_zero(void *writer, uint64_t offset, uint64_t length)
{
	struct vmdk_w *w = writer;
	int r;

	if (w->stream || !vmb_range_ok(offset, length, w->size) ||
	    offset % w->grain ||
	    (length % w->grain && offset + length != w->size))
		return vmb_error_set(VMB_EINVAL, "%s: zero range not in whole "
				     "grains", w->path);
	if ((r = flush_pending(w)))
		return r;
	for (uint64_t g = offset / w->grain; g * w->grain < offset + length;
	     g++)
		if ((r = set_gte(w, g, 1)))
			return r;
	w->zeroed = 1;
	return 0;
}

const vmb_disk_format vmb_disk__vmdk_format = {
	.version = VMB_DISK_FORMAT_VERSION,
	.name = "vmdk",
	.extension = "vmdk",
	.probe = vmdk_probe,
	.open = vmdk_open,
	.map = vmdk_map,
	.read = vmdk_read,
	.describe = vmdk_describe,
	.close = vmdk_close,
	.create = vmdk_create,
	.write = vmdk_write,
	.finish = vmdk_finish,
	.abort = vmdk_abort,
};
