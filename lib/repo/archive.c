/*
 * Export a snapshot as a self-contained pax tar (optionally encrypted),
 * and import such an archive or an OVA as a new snapshot.
 *
 * Layout and rules: docs/archives.md.  In short:
 *   - one file per disk (a GNU sparse 1.0 pax entry, so holes stay holes),
 *     the VM configuration, and manifest.json last, with the SHA-256 of
 *     every file;
 *   - encrypted archives are "VMBX" | version | flags | 0 0 | segment
 *     size | repository id | secretstream header, then the tar as
 *     crypto_secretstream_xchacha20poly1305 segments of 64 KiB plaintext;
 *     the key is subkey 16 (context "vmbexpt1") of the master key;
 *   - imports treat the archive as hostile: only flat regular files, no
 *     links, devices, absolute or ".." paths, bounded sizes and counts,
 *     no disk that points at a file outside the archive.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include "vmbackup/archive.h"
#include "vmbackup/sys/disk_format.h"
#include "common/json.h"
#include "common/util.h"
#include "disk/format.h"
#include "repo_internal.h"
/* libarchive is loaded on first use: archive_* are its function table */
#include "archive_dl.h"

#define X_MAGIC "VMBX"
#define X_VERSION 1
#define X_SEG (64u << 10)
#define X_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define X_FIXED 28 /* magic .. repository id: AD of every segment */
#define X_HDR (X_FIXED + crypto_secretstream_xchacha20poly1305_HEADERBYTES)
#define X_SUBKEY 16
#define X_CONTEXT "vmbexpt1"

#define MAX_ENTRIES 1000
#define MAX_ENTRY_SIZE (16ULL << 40)  /* 16 TiB */
#define MAX_META (4u << 20)           /* manifest, OVF, .mf, config */
#define SPACE_RESERVE (64ULL << 20)   /* leave this much free in TMPDIR */
#define SPACE_CHECK_EVERY (64ULL << 20)
#define IO_BUF (1u << 20)

static const uint8_t zeros[1 << 20];

static void hash_zeros(crypto_hash_sha256_state *h, uint64_t n)
{
	while (n) {
		size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
		crypto_hash_sha256_update(h, zeros, k);
		n -= k;
	}
}

static void hash_hex(crypto_hash_sha256_state *h, char hex[65])
{
	uint8_t d[32];
	crypto_hash_sha256_final(h, d);
	vmb_hex(d, 32, hex);
}

static void export_key(const vmb_repo *r, uint8_t key[32])
{
	crypto_kdf_derive_from_key(key, 32, X_SUBKEY, X_CONTEXT, r->master);
}

/* A file name safe in any archive and any file system. */
static char *safe_name(const char *s, const char *fallback)
{
	size_t n = s ? strlen(s) : 0;
	char *o;
	if (!n) {
		s = fallback;
		n = strlen(s);
	}
	if (n > 100)
		n = 100;
	o = vmb_strndup(s, n);
	if (!o)
		return NULL;
	for (char *p = o; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
		      *p == '-'))
			*p = '_';
	if (o[0] == '.')
		o[0] = '_';
	return o;
}

/* Printable copy of an untrusted name for a one-line message. */
static void shown_name(const char *s, char out[120])
{
	size_t i = 0;
	if (!s)
		s = "(undecodable)";
	for (; *s && i < 116; s++)
		out[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
	if (*s) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = 0;
}

static void remove_tree(const char *dir)
{
	DIR *d;
	struct dirent *e;
	if (!dir || !(d = opendir(dir)))
		return;
	while ((e = readdir(d)) != NULL) {
		char *p;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		p = vmb_asprintf("%s/%s", dir, e->d_name);
		if (p) {
			unlink(p); /* the folders we make hold files only */
			free(p);
		}
	}
	closedir(d);
	rmdir(dir);
}

/* ==================== export ==================== */

struct ostream {
	int fd;
	int enc;
	crypto_secretstream_xchacha20poly1305_state st;
	uint8_t ad[X_FIXED];
	uint8_t *plain, *cipher;
	size_t fill;
	uint64_t written;
	char msg[300];
	const char *path;
};

static int os_raw(struct ostream *o, const void *p, size_t n)
{
	if (vmb_pwrite_full(o->fd, p, n, o->written) != 0) {
		snprintf(o->msg, sizeof o->msg, "cannot write %s: %s", o->path,
			 strerror(errno ? errno : EIO));
		return -1;
	}
	o->written += n;
	return 0;
}

static int os_push(struct ostream *o, unsigned char tag)
{
	unsigned long long clen = 0;
	crypto_secretstream_xchacha20poly1305_push(&o->st, o->cipher, &clen,
						   o->plain, o->fill, o->ad,
						   X_FIXED, tag);
	o->fill = 0;
	return os_raw(o, o->cipher, (size_t)clen);
}

static la_ssize_t os_write_cb(struct archive *a, void *cd, const void *buf,
			      size_t n)
{
	struct ostream *o = cd;
	const uint8_t *p = buf;
	size_t left = n;
	if (!o->enc) {
		if (os_raw(o, buf, n)) {
			archive_set_error(a, EIO, "%s", o->msg);
			return -1;
		}
		return (la_ssize_t)n;
	}
	while (left) {
		size_t k = VMB_MIN(left, X_SEG - o->fill);
		memcpy(o->plain + o->fill, p, k);
		o->fill += k;
		p += k;
		left -= k;
		if (o->fill == X_SEG &&
		    os_push(o, crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)) {
			archive_set_error(a, EIO, "%s", o->msg);
			return -1;
		}
	}
	return (la_ssize_t)n;
}

static int os_start(struct ostream *o, const vmb_repo *r)
{
	uint8_t hdr[X_HDR], key[32], rid[16];
	if (!o->enc)
		return 0;
	o->plain = vmb_malloc(X_SEG);
	o->cipher = vmb_malloc(X_SEG + X_ABYTES);
	if (!o->plain || !o->cipher)
		return VMB_ENOMEM;
	memset(hdr, 0, sizeof hdr);
	memcpy(hdr, X_MAGIC, 4);
	hdr[4] = X_VERSION;
	hdr[5] = 0; /* flags */
	vmb_put_le32(hdr + 8, X_SEG);
	vmb_unhex(r->id, rid, 16);
	memcpy(hdr + 12, rid, 16);
	export_key(r, key);
	crypto_secretstream_xchacha20poly1305_init_push(&o->st, hdr + X_FIXED,
							key);
	sodium_memzero(key, sizeof key);
	memcpy(o->ad, hdr, X_FIXED);
	if (os_raw(o, hdr, sizeof hdr))
		return vmb_error_set(VMB_EIO, "%s", o->msg);
	return 0;
}

static int os_finish(struct ostream *o)
{
	if (o->enc &&
	    os_push(o, crypto_secretstream_xchacha20poly1305_TAG_FINAL))
		return vmb_error_set(VMB_EIO, "%s", o->msg);
	if (fsync(o->fd) != 0)
		return vmb_error_set(VMB_EIO, "cannot write %s: %s", o->path,
				     strerror(errno));
	return 0;
}

static void os_free(struct ostream *o)
{
	sodium_memzero(&o->st, sizeof o->st);
	if (o->plain)
		sodium_memzero(o->plain, X_SEG);
	free(o->plain);
	free(o->cipher);
}

struct range {
	uint64_t off, len;
};

struct ranges {
	struct range *v;
	size_t n, cap;
	int failed;
};

static int ranges_add(struct ranges *rs, uint64_t off, uint64_t len)
{
	if (!len)
		return 0;
	if (rs->n && rs->v[rs->n - 1].off + rs->v[rs->n - 1].len == off) {
		rs->v[rs->n - 1].len += len;
		return 0;
	}
	if (rs->n == rs->cap) {
		size_t nc = rs->cap ? rs->cap * 2 : 64;
		struct range *nv = vmb_realloc(rs->v, nc * sizeof *nv);
		if (!nv) {
			rs->failed = 1;
			return VMB_ENOMEM;
		}
		rs->v = nv;
		rs->cap = nc;
	}
	rs->v[rs->n].off = off;
	rs->v[rs->n].len = len;
	rs->n++;
	return 0;
}

static int map_cb(const vmb_extent *e, void *payload)
{
	if (e->kind != VMB_EXTENT_DATA)
		return 0;
	return ranges_add(payload, e->offset, e->length) ? 1 : 0;
}

/* Where a reader gets the bytes of a data range. */
typedef int (*read_fn)(void *src, void *buf, uint64_t off, size_t len);

static int read_disk(void *src, void *buf, uint64_t off, size_t len)
{
	return vmb_disk_read(src, buf, off, len);
}

struct filesrc {
	int fd;
	const char *path;
};

static int read_file(void *src, void *buf, uint64_t off, size_t len)
{
	struct filesrc *f = src;
	int64_t n = vmb_pread_full(f->fd, buf, len, off);
	if (n != (int64_t)len)
		return vmb_error_set(VMB_EIO, "cannot read %s: %s", f->path,
				     n < 0 ? strerror((int)-n) : "short read");
	return 0;
}

struct xprog {
	const vmb_export_options *o;
	vmb_progress p;
	double last;
};

static int xprog_tick(struct xprog *xp, int force)
{
	if (!xp->o->progress || (!force && vmb_now() - xp->last < 0.2))
		return 0;
	xp->last = vmb_now();
	if (xp->o->progress(&xp->p, xp->o->progress_payload))
		return vmb_error_set(VMB_ECANCELED, "export cancelled");
	return 0;
}

static int archive_fail(struct archive *a, struct ostream *o,
			const char *what)
{
	if (o && o->msg[0])
		return vmb_error_set(VMB_EIO, "%s", o->msg);
	return vmb_error_set(VMB_EIO, "%s: %s", what,
			     archive_error_string(a) ? archive_error_string(a)
						     : "archive error");
}

/* Feed @n hole bytes to the pax writer (which skips them) and the hash. */
static int feed_hole(struct archive *a, struct ostream *o, const char *name,
		     crypto_hash_sha256_state *h, uint64_t n)
{
	while (n) {
		size_t k = (size_t)VMB_MIN(n, (uint64_t)sizeof zeros);
		crypto_hash_sha256_update(h, zeros, k);
		if (archive_write_data(a, zeros, k) != (la_ssize_t)k)
			return archive_fail(a, o, name);
		n -= k;
	}
	return 0;
}

/*
 * Add one file of @size bytes whose data lives in @rs (sorted, disjoint;
 * the rest reads as zeros) as a sparse pax entry, hashing its content.
 */
static int add_sparse(struct archive *a, struct ostream *o, const char *name,
		      int64_t mtime, uint64_t size, const struct ranges *rs,
		      read_fn rd, void *src, uint8_t *buf, size_t bufsz,
		      struct xprog *xp, uint64_t base, char sha[65])
{
	struct archive_entry *e = archive_entry_new();
	crypto_hash_sha256_state h;
	uint64_t pos = 0;
	int rc = 0;

	if (!e)
		return VMB_ENOMEM;
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0600);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_mtime(e, (time_t)mtime, 0);
	for (size_t i = 0; i < rs->n; i++)
		archive_entry_sparse_add_entry(e, (la_int64_t)rs->v[i].off,
					       (la_int64_t)rs->v[i].len);
	/* a file that ends in a hole (or is all hole) says so, like GNU tar */
	if (size && (!rs->n || rs->v[rs->n - 1].off + rs->v[rs->n - 1].len <
			       size))
		archive_entry_sparse_add_entry(e, (la_int64_t)size, 0);
	if (archive_write_header(a, e) != ARCHIVE_OK) {
		rc = archive_fail(a, o, name);
		archive_entry_free(e);
		return rc;
	}
	archive_entry_free(e);
	crypto_hash_sha256_init(&h);
	for (size_t i = 0; i <= rs->n && !rc; i++) {
		/* the last "range" is the end of the file */
		uint64_t roff = i < rs->n ? rs->v[i].off : size;
		uint64_t rend = i < rs->n ? roff + rs->v[i].len : size;
		/* the hole before: the pax writer skips these bytes, but
		 * must be fed them (one call never spans hole and data) */
		rc = feed_hole(a, o, name, &h, roff - pos);
		pos = roff;
		while (!rc && pos < rend) {
			/* read whole chunks where possible */
			size_t k = (size_t)VMB_MIN(rend - pos,
						   (uint64_t)(bufsz -
							      pos % bufsz));
			la_ssize_t w;
			rc = rd(src, buf, pos, k);
			if (rc)
				break;
			crypto_hash_sha256_update(&h, buf, k);
			w = archive_write_data(a, buf, k);
			if (w < 0 || (size_t)w != k) {
				rc = archive_fail(a, o, name);
				break;
			}
			pos += k;
			xp->p.bytes_done = base + pos;
			xp->p.bytes_read += k;
			xp->p.bytes_written = o->written;
			rc = xprog_tick(xp, 0);
		}
	}
	if (rc)
		return rc;
	hash_hex(&h, sha);
	if (archive_write_finish_entry(a) != ARCHIVE_OK)
		return archive_fail(a, o, name);
	return 0;
}

static int add_mem(struct archive *a, struct ostream *o, const char *name,
		   int64_t mtime, const void *data, size_t len, char sha[65])
{
	struct archive_entry *e = archive_entry_new();
	crypto_hash_sha256_state h;
	int rc = 0;
	if (!e)
		return VMB_ENOMEM;
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0600);
	archive_entry_set_size(e, (la_int64_t)len);
	archive_entry_set_mtime(e, (time_t)mtime, 0);
	if (archive_write_header(a, e) != ARCHIVE_OK ||
	    (len && archive_write_data(a, data, len) != (la_ssize_t)len) ||
	    archive_write_finish_entry(a) != ARCHIVE_OK)
		rc = archive_fail(a, o, name);
	archive_entry_free(e);
	if (!rc && sha) {
		crypto_hash_sha256_init(&h);
		crypto_hash_sha256_update(&h, data, len);
		hash_hex(&h, sha);
	}
	return rc;
}

/* Data ranges of a local (sparse) file. */
static int file_ranges(int fd, uint64_t size, struct ranges *rs)
{
	off_t pos = 0;
	while ((uint64_t)pos < size) {
		off_t d = lseek(fd, pos, SEEK_DATA), hle;
		if (d < 0) {
			if (errno == ENXIO)
				break; /* only a hole remains */
			/* no SEEK_DATA: everything is data */
			return ranges_add(rs, 0, size);
		}
		hle = lseek(fd, d, SEEK_HOLE);
		if (hle < 0 || (uint64_t)hle > size)
			hle = (off_t)size;
		if (ranges_add(rs, (uint64_t)d, (uint64_t)(hle - d)))
			return VMB_ENOMEM;
		pos = hle;
	}
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

VMB_EXTERN(int) vmb_repo_export(vmb_repo *r, const char *snap_ref,
				const char *out_tar,
				const vmb_export_options *opts,
				vmb_export_result *res)
{
	vmb_export_options def = VMB_EXPORT_OPTIONS_INIT;
	vmb_export_result dummy;
	vmb_snapshot *s = NULL;
	struct archive *a = NULL;
	struct ostream o;
	struct xprog xp;
	struct stat st;
	char *tmp = NULL, *parts = NULL, *odir = NULL, **files = NULL;
	char (*shas)[65] = NULL, cfg_sha[65] = "", *cfg_name = NULL;
	uint8_t *buf = NULL;
	vmb_buf m;
	int rc, tmp_made = 0;
	double t0 = vmb_now();
	uint64_t base = 0;

	if (!opts)
		opts = &def;
	if (!res)
		res = &dummy;
	memset(res, 0, sizeof *res);
	memset(&o, 0, sizeof o);
	memset(&xp, 0, sizeof xp);
	vmb_buf_init(&m);
	o.fd = -1;
	xp.o = opts;
	xp.p.phase = "export";
	if (!out_tar || !*out_tar)
		return vmb_error_set(VMB_EINVAL, "no archive file given");
	if (opts->format && (!vmb_disk_format_extension(opts->format)))
		return vmb_error_set(VMB_EINVAL, "unknown disk format '%s'",
				     opts->format);
	rc = vmb_archive_load("export");
	if (rc)
		return rc;
	rc = vmb_repo_snapshot_find(r, snap_ref, &s);
	if (rc)
		return rc;
	if (lstat(out_tar, &st) == 0) {
		rc = vmb_error_set(VMB_EEXISTS, "%s already exists (exports "
				   "never overwrite a file)", out_tar);
		goto out;
	}
	tmp = vmb_asprintf("%s.tmp", out_tar);
	odir = dir_of(out_tar);
	files = vmb_calloc(s->ndisks ? s->ndisks : 1, sizeof *files);
	shas = vmb_calloc(s->ndisks ? s->ndisks : 1, sizeof *shas);
	if (!tmp || !odir || !files || !shas) {
		rc = VMB_ENOMEM;
		goto out;
	}
	o.path = tmp;
	o.enc = opts->encrypt && r->keys.encrypted;
	o.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (o.fd < 0) {
		int e = errno;
		rc = vmb_error_set(e == EEXIST ? VMB_EEXISTS : VMB_EIO,
				   "cannot create %s: %s%s", tmp, strerror(e),
				   e == EEXIST ? " (another export running, or "
				   "left over: remove it)" : "");
		goto out;
	}
	tmp_made = 1;
	rc = os_start(&o, r);
	if (rc)
		goto out;
	for (size_t i = 0; i < s->ndisks; i++)
		xp.p.bytes_total += s->disks[i].size;
	a = archive_write_new();
	if (!a || archive_write_set_format_pax(a) != ARCHIVE_OK ||
	    archive_write_open(a, &o, NULL, os_write_cb, NULL) != ARCHIVE_OK) {
		rc = a ? archive_fail(a, &o, out_tar) : VMB_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < s->ndisks; i++) {
		const vmb_mdisk *md = &s->disks[i];
		const char *fmt = opts->format ? opts->format : md->format;
		struct ranges rs = { NULL, 0, 0, 0 };
		char *base_name;
		if (!vmb_disk_format_extension(fmt))
			fmt = "raw";
		base_name = safe_name(md->name, "disk");
		if (!base_name) {
			rc = VMB_ENOMEM;
			goto out;
		}
		files[i] = vmb_asprintf("%s.%s", base_name,
					vmb_disk_format_extension(fmt));
		free(base_name);
		if (!files[i]) {
			rc = VMB_ENOMEM;
			goto out;
		}
		/* names are unique in a manifest, but not after safe_name */
		for (size_t k = 0; k < i; k++)
			if (!strcmp(files[k], files[i])) {
				char *nn = vmb_asprintf("%zu-%s", i + 1,
							files[i]);
				if (!nn) {
					rc = VMB_ENOMEM;
					goto out;
				}
				free(files[i]);
				files[i] = nn;
				k = (size_t)-1;
			}
		xp.p.item = md->name;
		if (!strcmp(fmt, "raw")) {
			/* stream straight from the repository */
			vmb_disk *d = NULL;
			size_t bufsz = md->chunk_size ? md->chunk_size
						      : VMB_DEFAULT_CHUNK_SIZE;
			rc = vmb_snapshot_disk_open(r, s, md->name, &d);
			if (!rc)
				rc = vmb_disk_map(d, 0, md->size, map_cb, &rs);
			if (!rc && rs.failed)
				rc = VMB_ENOMEM;
			free(buf);
			buf = rc ? NULL : vmb_malloc(bufsz);
			if (!rc && !buf)
				rc = VMB_ENOMEM;
			if (!rc)
				rc = add_sparse(a, &o, files[i], s->time,
						md->size, &rs, read_disk, d, buf,
						bufsz, &xp, base, shas[i]);
			vmb_disk_close(d);
		} else {
			/* write the image next to OUT, then add it */
			vmb_restore_options ro = VMB_RESTORE_OPTIONS_INIT;
			vmb_restore_result rres;
			struct filesrc fs = { -1, NULL };
			char *img = NULL;
			struct stat ist;
			if (!parts) {
				parts = vmb_asprintf("%s.parts.XXXXXX",
						     out_tar);
				if (!parts || !mkdtemp(parts)) {
					rc = parts ? vmb_error_set(VMB_EIO,
						"cannot create a temporary "
						"folder beside %s: %s", out_tar,
						strerror(errno)) : VMB_ENOMEM;
					free(parts);
					parts = NULL;
					goto out;
				}
			}
			ro.format = fmt;
			ro.disk = md->name;
			rc = vmb_repo_restore(r, s->id, parts, &ro, &rres);
			if (!rc && !(img = vmb_asprintf("%s/%s.%s", parts,
					 md->name,
					 vmb_disk_format_extension(fmt))))
				rc = VMB_ENOMEM;
			if (!rc) {
				fs.path = img;
				fs.fd = open(img, O_RDONLY | O_CLOEXEC);
				if (fs.fd < 0 || fstat(fs.fd, &ist) != 0)
					rc = vmb_error_set(VMB_EIO, "cannot "
						"open %s: %s", img,
						strerror(errno));
			}
			if (!rc)
				rc = file_ranges(fs.fd, (uint64_t)ist.st_size,
						 &rs);
			free(buf);
			buf = rc ? NULL : vmb_malloc(IO_BUF);
			if (!rc && !buf)
				rc = VMB_ENOMEM;
			if (!rc)
				rc = add_sparse(a, &o, files[i], s->time,
						(uint64_t)ist.st_size, &rs,
						read_file, &fs, buf, IO_BUF,
						&xp, base, shas[i]);
			if (fs.fd >= 0)
				close(fs.fd);
			if (img)
				unlink(img);
			free(img);
		}
		free(rs.v);
		if (rc) {
			vmb_error_prefix("exporting disk %s: ", md->name);
			goto out;
		}
		base += md->size;
		res->disks++;
		res->bytes_total += md->size;
	}
	if (s->config && *s->config) {
		int xml = s->config_format &&
			  strstr(s->config_format, "xml") != NULL;
		char *vm = safe_name(s->vm, "vm");
		cfg_name = vm ? vmb_asprintf("%s.%s", vm, xml ? "xml" : "conf")
			      : NULL;
		free(vm);
		if (!cfg_name) {
			rc = VMB_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < s->ndisks; i++)
			if (!strcmp(files[i], cfg_name)) {
				char *nn = vmb_asprintf("config-%s", cfg_name);
				free(cfg_name);
				if (!(cfg_name = nn)) {
					rc = VMB_ENOMEM;
					goto out;
				}
			}
		rc = add_mem(a, &o, cfg_name, s->time, s->config,
			     strlen(s->config), cfg_sha);
		if (rc)
			goto out;
	}
	/* the manifest: last, so it can carry every checksum */
	vmb_buf_printf(&m, "{\"vmbackup_export\":1,\"vm\":");
	vmb_buf_json_str(&m, s->vm);
	vmb_buf_printf(&m, ",\"time\":%lld,\"snapshot\":\"%s\","
		       "\"repository\":\"%s\",\"host\":", (long long)s->time,
		       s->id, r->id);
	vmb_buf_json_str(&m, s->host ? s->host : "");
	vmb_buf_puts(&m, ",\"tags\":[");
	for (size_t i = 0; i < s->ntags; i++) {
		if (i)
			vmb_buf_puts(&m, ",");
		vmb_buf_json_str(&m, s->tags[i]);
	}
	vmb_buf_puts(&m, "],\"disks\":[");
	for (size_t i = 0; i < s->ndisks; i++) {
		const vmb_mdisk *md = &s->disks[i];
		const char *fmt = opts->format ? opts->format : md->format;
		if (!vmb_disk_format_extension(fmt))
			fmt = "raw";
		vmb_buf_printf(&m, "%s{\"name\":", i ? "," : "");
		vmb_buf_json_str(&m, md->name);
		vmb_buf_puts(&m, ",\"format\":");
		vmb_buf_json_str(&m, fmt);
		vmb_buf_printf(&m, ",\"virtual_size\":%llu,\"file\":",
			       (unsigned long long)md->size);
		vmb_buf_json_str(&m, files[i]);
		vmb_buf_printf(&m, ",\"sha256\":\"%s\"}", shas[i]);
	}
	vmb_buf_puts(&m, "]");
	if (cfg_name) {
		vmb_buf_puts(&m, ",\"config\":{\"file\":");
		vmb_buf_json_str(&m, cfg_name);
		vmb_buf_puts(&m, ",\"format\":");
		vmb_buf_json_str(&m, s->config_format ? s->config_format : "");
		vmb_buf_printf(&m, ",\"sha256\":\"%s\"}", cfg_sha);
	}
	vmb_buf_puts(&m, "}\n");
	if (m.failed) {
		rc = VMB_ENOMEM;
		goto out;
	}
	rc = add_mem(a, &o, "manifest.json", s->time, m.data, m.len, NULL);
	if (rc)
		goto out;
	if (archive_write_close(a) != ARCHIVE_OK) {
		rc = archive_fail(a, &o, out_tar);
		goto out;
	}
	rc = os_finish(&o);
	if (rc)
		goto out;
	close(o.fd);
	o.fd = -1;
	/* publish without replacing a file that appeared meanwhile */
	if (link(tmp, out_tar) == 0) {
		unlink(tmp);
	} else if (errno == EEXIST) {
		rc = vmb_error_set(VMB_EEXISTS, "%s already exists", out_tar);
		goto out;
	} else if (rename(tmp, out_tar) != 0) {
		rc = vmb_error_set(VMB_EIO, "cannot rename %s to %s: %s", tmp,
				   out_tar, strerror(errno));
		goto out;
	}
	tmp_made = 0;
	{
		int dfd = open(odir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	memcpy(res->snapshot, s->id, 33);
	res->bytes_written = o.written;
	res->encrypted = o.enc;
	res->seconds = vmb_now() - t0;
	xp.p.bytes_done = xp.p.bytes_total;
	xprog_tick(&xp, 1);
out:
	if (a)
		archive_write_free(a); /* after a failure: no close, no flush */
	if (o.fd >= 0)
		close(o.fd);
	if (tmp_made)
		unlink(tmp);
	if (parts)
		remove_tree(parts);
	os_free(&o);
	vmb_buf_free(&m);
	if (files)
		for (size_t i = 0; i < s->ndisks; i++)
			free(files[i]);
	free(files);
	free(shas);
	free(cfg_name);
	free(buf);
	free(parts);
	free(tmp);
	free(odir);
	vmb_snapshot_free(s);
	return rc;
}

/* ==================== import ==================== */

struct istream {
	int fd;
	int enc;
	crypto_secretstream_xchacha20poly1305_state st;
	uint8_t ad[X_FIXED];
	uint8_t *in, *out;
	int done, started;
	char other_repo[33];
	int code;
	char msg[400];
	const char *path;
	uint64_t consumed;
};

static ssize_t read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = read(fd, (char *)buf + got, n - got);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (k == 0)
			break;
		got += (size_t)k;
	}
	return (ssize_t)got;
}

static la_ssize_t is_fail(struct archive *a, struct istream *s, int code,
			  const char *fmt, const char *arg)
{
	s->code = code;
	snprintf(s->msg, sizeof s->msg, fmt, s->path, arg);
	archive_set_error(a, EIO, "%s", s->msg);
	return -1;
}

/* One decrypted segment; 0 at the end; -1 (and s->msg) on failure. */
static la_ssize_t is_next(struct archive *a, struct istream *s,
			  const void **buf)
{
	for (;;) {
		unsigned long long mlen = 0;
		unsigned char tag = 0;
		ssize_t n;
		if (s->done)
			return 0;
		n = read_full(s->fd, s->in, X_SEG + X_ABYTES);
		if (n < 0)
			return is_fail(a, s, VMB_EIO, "cannot read %s: %s",
				       strerror(errno));
		s->consumed += (uint64_t)n;
		if ((size_t)n < X_ABYTES)
			return is_fail(a, s, VMB_EINVAL, "%s is truncated: "
				       "the encrypted stream ends early%s", "");
		if (crypto_secretstream_xchacha20poly1305_pull(
			    &s->st, s->out, &mlen, &tag, s->in, (size_t)n,
			    s->ad, X_FIXED) != 0) {
			if (!s->started && s->other_repo[0])
				return is_fail(a, s, VMB_EAUTH,
					       "cannot decrypt %s: it was "
					       "exported from repository %s, "
					       "which has another key (export "
					       "with --no-encrypt to move "
					       "snapshots between repositories)",
					       s->other_repo);
			if (!s->started)
				return is_fail(a, s, VMB_EAUTH,
					       "cannot decrypt %s: wrong key "
					       "or damaged archive%s", "");
			return is_fail(a, s, VMB_EVERIFY, "%s is damaged or "
				       "truncated: an encrypted segment does "
				       "not authenticate%s", "");
		}
		s->started = 1;
		if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
			uint8_t extra;
			s->done = 1;
			if (read_full(s->fd, &extra, 1) != 0)
				return is_fail(a, s, VMB_EINVAL, "%s has data "
					       "after the end of its encrypted "
					       "stream%s", "");
		} else if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) {
			return is_fail(a, s, VMB_EINVAL, "%s: unexpected "
				       "segment tag%s", "");
		}
		if (mlen) {
			*buf = s->out;
			return (la_ssize_t)mlen;
		}
	}
}

static la_ssize_t is_read_cb(struct archive *a, void *cd, const void **buf)
{
	struct istream *s = cd;
	if (s->enc)
		return is_next(a, s, buf);
	ssize_t n;
	do
		n = read(s->fd, s->out, IO_BUF);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return is_fail(a, s, VMB_EIO, "cannot read %s: %s",
			       strerror(errno));
	s->consumed += (uint64_t)n;
	*buf = s->out;
	return n;
}

struct xfile {
	char *name;   /* flat name in the work folder */
	uint64_t size;
	char sha[65]; /* of the content, holes as zeros */
};

struct ictx {
	vmb_repo *r;
	const char *archive;
	const vmb_import_options *o;
	char *dir;
	struct xfile *f;
	size_t nf;
	uint64_t since_check;
	vmb_progress p;
	double last;
};

static int refuse(struct ictx *x, const char *entry, const char *why)
{
	char sh[120];
	shown_name(entry, sh);
	return vmb_error_set(VMB_EINVAL, "%s: refusing entry '%s': %s; "
			     "nothing was imported", x->archive, sh, why);
}

/*
 * Check an entry name; on success *flat is the name in the work folder
 * (NULL for a folder entry, which is skipped).
 */
static int check_name(struct ictx *x, const char *raw, int isdir,
		      const char **flat)
{
	const char *p, *c;
	size_t n;
	int parts = 0;
	*flat = NULL;
	if (!raw)
		return refuse(x, raw, "its name cannot be decoded");
	if (raw[0] == '/')
		return refuse(x, raw, "absolute path");
	p = raw;
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	n = strlen(p);
	if (n > 255)
		return refuse(x, raw, "name too long");
	for (c = p; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '\\')
			return refuse(x, raw, "control character or backslash "
				      "in the name");
	if (isdir)
		while (n && p[n - 1] == '/')
			n--;
	if (!n) {
		if (isdir)
			return 0; /* "./" */
		return refuse(x, raw, "empty name");
	}
	for (size_t i = 0, start = 0; i <= n; i++) {
		if (i < n && p[i] != '/')
			continue;
		size_t len = i - start;
		if (len == 0)
			return refuse(x, raw, "empty path component");
		if ((len == 1 && p[start] == '.') ||
		    (len == 2 && p[start] == '.' && p[start + 1] == '.'))
			return refuse(x, raw, "'.' or '..' in the path");
		parts++;
		start = i + 1;
	}
	if (parts > (isdir ? 1 : 2))
		return refuse(x, raw, "nested folders (archives must be flat, "
			      "one folder level at most)");
	if (isdir)
		return 0;
	*flat = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
	return 0;
}

static int space_check(struct ictx *x, uint64_t need)
{
	struct statvfs sv;
	if (statvfs(x->dir, &sv) != 0)
		return 0; /* cannot tell: the write itself will fail */
	if ((uint64_t)sv.f_bavail * sv.f_frsize < need + SPACE_RESERVE)
		return vmb_error_set(VMB_ENOSPC, "%s: not enough free space in "
				     "%s to extract the archive; nothing was "
				     "imported (set TMPDIR to a bigger "
				     "folder)", x->archive, x->dir);
	return 0;
}

static int iprog_tick(struct ictx *x, struct istream *s, int force)
{
	if (!x->o->progress || (!force && vmb_now() - x->last < 0.2))
		return 0;
	x->last = vmb_now();
	x->p.bytes_done = s->consumed;
	x->p.bytes_read = s->consumed;
	if (x->o->progress(&x->p, x->o->progress_payload))
		return vmb_error_set(VMB_ECANCELED, "import cancelled");
	return 0;
}

static int read_fail(struct ictx *x, struct archive *a, struct istream *s)
{
	const char *m;
	if (s->msg[0])
		return vmb_error_set(s->code ? s->code : VMB_EINVAL, "%s%s",
				     s->msg, s->code == VMB_EINVAL ?
				     "; nothing was imported" : "");
	m = archive_error_string(a);
	return vmb_error_set(VMB_EINVAL, "%s: not a valid tar archive: %s; "
			     "nothing was imported", x->archive,
			     m ? m : "unreadable");
}

static int extract(struct ictx *x, struct archive *a, struct istream *s,
		   struct archive_entry *e, const char *raw, const char *flat)
{
	int64_t size = archive_entry_size(e);
	crypto_hash_sha256_state h;
	struct xfile *nf;
	uint64_t pos = 0;
	char *path;
	int fd, rc = 0;

	if (!archive_entry_size_is_set(e) || size < 0)
		return refuse(x, raw, "it has no size");
	if ((uint64_t)size > MAX_ENTRY_SIZE) {
		char why[120];
		snprintf(why, sizeof why, "it declares %lld bytes, more than "
			 "the 16 TiB limit", (long long)size);
		return refuse(x, raw, why);
	}
	if (!strcmp(flat, ".") || !strcmp(flat, ".."))
		return refuse(x, raw, "'.' or '..' in the path");
	for (size_t i = 0; i < x->nf; i++)
		if (!strcmp(x->f[i].name, flat))
			return refuse(x, raw, "a second file of the same name");
	nf = vmb_realloc(x->f, (x->nf + 1) * sizeof *nf);
	if (!nf)
		return VMB_ENOMEM;
	x->f = nf;
	path = vmb_asprintf("%s/%s", x->dir, flat);
	if (!path)
		return VMB_ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		rc = vmb_error_set(VMB_EIO, "cannot create %s: %s", path,
				   strerror(errno));
		free(path);
		return rc;
	}
	crypto_hash_sha256_init(&h);
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;
		int ar = archive_read_data_block(a, &buf, &len, &off);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK) {
			rc = read_fail(x, a, s);
			break;
		}
		if (off < 0 || (uint64_t)off < pos || (uint64_t)off > (uint64_t)size ||
		    len > (uint64_t)size - (uint64_t)off) {
			rc = refuse(x, raw, "its data lies outside its "
				    "declared size");
			break;
		}
		hash_zeros(&h, (uint64_t)off - pos);
		crypto_hash_sha256_update(&h, buf, len);
		if (!vmb_is_zero(buf, len)) {
			x->since_check += len;
			if (x->since_check >= SPACE_CHECK_EVERY || pos == 0) {
				x->since_check = 0;
				rc = space_check(x, len);
				if (rc)
					break;
			}
			if (vmb_pwrite_full(fd, buf, len, (uint64_t)off)) {
				int en = errno;
				rc = vmb_error_set(en == ENOSPC ? VMB_ENOSPC
								 : VMB_EIO,
						   "cannot write %s: %s", path,
						   strerror(en));
				break;
			}
		}
		pos = (uint64_t)off + len;
		x->p.bytes_written += len;
		rc = iprog_tick(x, s, 0);
		if (rc)
			break;
	}
	if (!rc && ftruncate(fd, (off_t)size) != 0)
		rc = vmb_error_set(VMB_EIO, "cannot write %s: %s", path,
				   strerror(errno));
	close(fd);
	free(path);
	if (rc)
		return rc;
	hash_zeros(&h, (uint64_t)size - pos);
	nf = &x->f[x->nf];
	hash_hex(&h, nf->sha);
	nf->size = (uint64_t)size;
	if (!(nf->name = vmb_strdup(flat)))
		return VMB_ENOMEM;
	x->nf++;
	return 0;
}

static const struct xfile *find_file(const struct ictx *x, const char *name)
{
	for (size_t i = 0; i < x->nf; i++)
		if (!strcmp(x->f[i].name, name))
			return &x->f[i];
	return NULL;
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcasecmp(s + a - b, suf) == 0;
}

/* Read a small extracted file (NUL-terminated, no NULs inside). */
static int read_small(struct ictx *x, const char *name, char **out)
{
	char *path = vmb_asprintf("%s/%s", x->dir, name), *buf;
	const struct xfile *f = find_file(x, name);
	int fd;
	int64_t n;
	*out = NULL;
	if (!path)
		return VMB_ENOMEM;
	if (!f || f->size > MAX_META) {
		free(path);
		return vmb_error_set(VMB_EINVAL, "%s: %s is larger than %u "
				     "bytes; nothing was imported", x->archive,
				     name, MAX_META);
	}
	buf = vmb_malloc((size_t)f->size + 1);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (!buf || fd < 0) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return buf ? vmb_error_set(VMB_EIO, "cannot read %s from the "
					   "archive", name) : VMB_ENOMEM;
	}
	n = vmb_pread_full(fd, buf, (size_t)f->size, 0);
	close(fd);
	if (n != (int64_t)f->size) {
		free(buf);
		return vmb_error_set(VMB_EIO, "cannot read %s from the archive",
				     name);
	}
	buf[n] = 0;
	if (strlen(buf) != (size_t)n) {
		free(buf);
		return vmb_error_set(VMB_EINVAL, "%s: %s holds NUL bytes; "
				     "nothing was imported", x->archive, name);
	}
	*out = buf;
	return 0;
}

/* ---- a minimal OVF reader: tags, attributes, text ---- */

static char *xml_unescape(const char *s, size_t n)
{
	char *o = vmb_malloc(n + 1), *w = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n;) {
		static const struct { const char *e; char c; } ents[] = {
			{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
			{ "&quot;", '"' }, { "&apos;", '\'' } };
		int hit = 0;
		if (s[i] == '&')
			for (size_t k = 0; k < 5; k++) {
				size_t l = strlen(ents[k].e);
				if (i + l <= n && !strncmp(s + i, ents[k].e, l)) {
					*w++ = ents[k].c;
					i += l;
					hit = 1;
					break;
				}
			}
		if (!hit)
			*w++ = s[i++];
	}
	*w = 0;
	return o;
}

/* Local name of the tag at s (after '<'): its length, and *end. */
static const char *tag_local(const char *s, size_t *len)
{
	const char *e = s, *colon = NULL;
	while (*e && *e != ' ' && *e != '\t' && *e != '\r' && *e != '\n' &&
	       *e != '>' && *e != '/') {
		if (*e == ':')
			colon = e;
		e++;
	}
	*len = (size_t)(e - (colon ? colon + 1 : s));
	return colon ? colon + 1 : s;
}

/* Attribute whose local name is @name inside the tag [s, end). */
static char *tag_attr(const char *s, const char *end, const char *name)
{
	size_t nl = strlen(name);
	const char *p = s;
	while (p < end) {
		const char *a, *colon = NULL, *eq;
		char q;
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' ||
				   *p == '\n'))
			p++;
		a = p;
		while (p < end && *p != '=' && *p != ' ' && *p != '>' &&
		       *p != '/') {
			if (*p == ':')
				colon = p;
			p++;
		}
		eq = p;
		if (p >= end || *p != '=') {
			p++;
			continue;
		}
		p++;
		if (p >= end || (*p != '"' && *p != '\''))
			continue;
		q = *p++;
		const char *v = p;
		while (p < end && *p != q)
			p++;
		if (p >= end)
			return NULL;
		const char *ln = colon ? colon + 1 : a;
		if ((size_t)(eq - ln) == nl && !strncmp(ln, name, nl))
			return xml_unescape(v, (size_t)(p - v));
		p++;
	}
	return NULL;
}

struct ovf {
	char *vm;
	char **hrefs;
	size_t nhrefs;
};

static void ovf_free(struct ovf *o)
{
	free(o->vm);
	for (size_t i = 0; i < o->nhrefs; i++)
		free(o->hrefs[i]);
	free(o->hrefs);
}

static int ovf_parse(const char *text, struct ovf *o)
{
	const char *p = text;
	int in_vs = 0, in_refs = 0;
	char *id = NULL, *name = NULL;
	memset(o, 0, sizeof *o);
	while ((p = strchr(p, '<')) != NULL) {
		const char *end, *ln;
		size_t ll;
		int closing;
		if (!strncmp(p, "<!--", 4)) {
			const char *e = strstr(p + 4, "-->");
			if (!e)
				break;
			p = e + 3;
			continue;
		}
		if (p[1] == '?' || p[1] == '!') {
			p = strchr(p, '>');
			if (!p)
				break;
			continue;
		}
		closing = p[1] == '/';
		end = strchr(p, '>');
		if (!end)
			break;
		ln = tag_local(p + 1 + closing, &ll);
#define IS(t) (ll == strlen(t) && !strncmp(ln, t, ll))
		if (closing) {
			if (IS("References"))
				in_refs = 0;
			if (IS("VirtualSystem"))
				in_vs = 0;
		} else if (IS("References")) {
			in_refs = 1;
		} else if (IS("File") && in_refs) {
			char *h = tag_attr(ln + ll, end, "href");
			if (h) {
				char **nh = vmb_realloc(o->hrefs, (o->nhrefs + 1)
							* sizeof *nh);
				if (!nh) {
					free(h);
					goto nomem;
				}
				o->hrefs = nh;
				o->hrefs[o->nhrefs++] = h;
			}
		} else if (IS("VirtualSystem") && !id) {
			in_vs = 1;
			id = tag_attr(ln + ll, end, "id");
		} else if (IS("Name") && in_vs && !name && end[-1] != '/') {
			const char *t = end + 1, *te = strchr(t, '<');
			if (te)
				name = xml_unescape(t, (size_t)(te - t));
		}
#undef IS
		p = end + 1;
	}
	if (id && *id) {
		o->vm = id;
		free(name);
	} else {
		free(id);
		o->vm = name;
	}
	return 0;
nomem:
	free(id);
	free(name);
	return VMB_ENOMEM;
}

/* A VM name from untrusted text: printable, trimmed, bounded. */
static char *clean_vm_name(const char *s)
{
	char *o;
	size_t n = 0;
	if (!s)
		return NULL;
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	o = vmb_malloc(strlen(s) + 1);
	if (!o)
		return NULL;
	for (; *s && n < 200; s++)
		if ((unsigned char)*s >= 0x20 && *s != 0x7f && *s != '/' &&
		    *s != '\\')
			o[n++] = *s;
	while (n && o[n - 1] == ' ')
		n--;
	o[n] = 0;
	if (!n) {
		free(o);
		return NULL;
	}
	return o;
}

/* Check an OVA's .mf file: SHA256(file)= hex lines are verified. */
static int check_mf(struct ictx *x, const char *mfname)
{
	char *text = NULL, *line, *save = NULL;
	int rc = read_small(x, mfname, &text), sha1 = 0;
	if (rc)
		return rc;
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *open = strchr(line, '('), *close = strstr(line, ")=");
		const struct xfile *f;
		char *fn, *hex;
		if (!open || !close || close < open)
			continue;
		if (!strncmp(line, "SHA1(", 5)) {
			sha1 = 1;
			continue;
		}
		if (strncmp(line, "SHA256(", 7))
			continue;
		fn = vmb_strndup(open + 1, (size_t)(close - open - 1));
		if (!fn) {
			rc = VMB_ENOMEM;
			break;
		}
		hex = close + 2;
		while (*hex == ' ')
			hex++;
		hex[strcspn(hex, " \r")] = 0;
		f = find_file(x, strrchr(fn, '/') ? strrchr(fn, '/') + 1 : fn);
		if (!f)
			rc = vmb_error_set(VMB_EINVAL, "%s: the .mf lists %s, "
					   "which the archive lacks; nothing "
					   "was imported", x->archive, fn);
		else if (strcasecmp(hex, f->sha) != 0)
			rc = vmb_error_set(VMB_EVERIFY, "%s: %s does not match "
					   "its SHA-256 in the .mf; nothing was "
					   "imported", x->archive, fn);
		free(fn);
		if (rc)
			break;
	}
	if (!rc && sha1)
		vmb_log(VMB_LOG_INFO, "%s: SHA-1 lines of %s were not checked",
			x->archive, mfname);
	free(text);
	return rc;
}

/* Refuse images that would pull in a file outside the archive. */
static int check_disk_file(struct ictx *x, const char *name,
			   const char *want_format, vmb_disk **out)
{
	char *path = vmb_asprintf("%s/%s", x->dir, name);
	const char *probed = NULL;
	const vmb_disk_format *fmt;
	vmb_layer_info info;
	vmb_layer_open_options lo = { 1, NULL };
	void *layer = NULL;
	int rc;

	*out = NULL;
	if (!path)
		return VMB_ENOMEM;
	rc = vmb_disk_probe(path, &probed);
	if (rc)
		goto out;
	if (want_format && strcmp(want_format, probed) != 0) {
		rc = vmb_error_set(VMB_EINVAL, "%s: %s should be a %s image "
				   "but looks like %s; nothing was imported",
				   x->archive, name, want_format, probed);
		goto out;
	}
	fmt = vmb_disk__format_by_name(probed);
	if (!fmt) {
		rc = vmb_error_set(VMB_ENOTSUP, "%s: %s: format %s is not "
				   "supported", x->archive, name, probed);
		goto out;
	}
	memset(&info, 0, sizeof info);
	rc = fmt->open(path, &lo, &layer, &info);
	if (rc) {
		vmb_error_prefix("%s: ", x->archive);
		goto out;
	}
	if ((info.backing_path && info.backing_path[0]) ||
	    info.parent_by_uuid)
		rc = vmb_error_set(VMB_EINVAL, "%s: %s is an overlay of "
				   "another image (backing file or parent); "
				   "archives must hold whole disks; nothing was "
				   "imported", x->archive, name);
	fmt->close(layer);
	vmb_disk__layer_info_free(&info);
	if (!rc)
		rc = vmb_disk_open(path, VMB_DISK_OPEN_NO_BACKING, out);
out:
	free(path);
	return rc;
}

VMB_EXTERN(int) vmb_repo_import(vmb_repo *r, const char *archive,
				const vmb_import_options *opts,
				vmb_backup_result *result, char **vm_out)
{
	vmb_import_options def = VMB_IMPORT_OPTIONS_INIT;
	vmb_backup_result dummy;
	struct ictx x;
	struct istream s;
	struct archive *a = NULL;
	struct stat ast;
	const char *tmpdir = getenv("TMPDIR");
	char *manifest = NULL, *ovftext = NULL, *config = NULL, *vm = NULL;
	const char *config_format = NULL, *ovfname = NULL, *mfname = NULL;
	vmb_json *mj = NULL;
	struct ovf ovf;
	vmb_backup_source *src = NULL;
	vmb_disk **disks = NULL;
	char **names = NULL, **paths = NULL;
	size_t nsrc = 0, entries = 0;
	uint8_t hdr[X_HDR];
	int rc = 0;

	if (!opts)
		opts = &def;
	if (!result)
		result = &dummy;
	if (vm_out)
		*vm_out = NULL;
	memset(result, 0, sizeof *result);
	memset(&x, 0, sizeof x);
	memset(&s, 0, sizeof s);
	memset(&ovf, 0, sizeof ovf);
	x.r = r;
	x.archive = archive;
	x.o = opts;
	x.p.phase = "import";
	s.fd = -1;
	s.path = archive;

	rc = vmb_archive_load("import");
	if (rc)
		return rc;
	s.fd = open(archive, O_RDONLY | O_CLOEXEC);
	if (s.fd < 0 || fstat(s.fd, &ast) != 0)
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "cannot open %s: %s", archive,
				     strerror(errno));
	if (!S_ISREG(ast.st_mode)) {
		close(s.fd);
		return vmb_error_set(VMB_EINVAL, "%s is not a regular file",
				     archive);
	}
	x.p.bytes_total = (uint64_t)ast.st_size;
	s.out = vmb_malloc(IO_BUF > X_SEG ? IO_BUF : X_SEG);
	if (!s.out) {
		rc = VMB_ENOMEM;
		goto out;
	}
	/* encrypted?  "VMBX" header */
	if (read_full(s.fd, hdr, X_HDR) == X_HDR && !memcmp(hdr, X_MAGIC, 4)) {
		uint8_t key[32], rid[16];
		char hid[33];
		if (hdr[4] != X_VERSION) {
			rc = vmb_error_set(VMB_ENOTSUP, "%s: encrypted archive "
					   "version %u is not supported",
					   archive, hdr[4]);
			goto out;
		}
		if (vmb_le32(hdr + 8) != X_SEG) {
			rc = vmb_error_set(VMB_EINVAL, "%s: damaged encrypted "
					   "archive header", archive);
			goto out;
		}
		if (!r->keys.encrypted) {
			rc = vmb_error_set(VMB_EAUTH, "%s is encrypted and this "
					   "repository is not: it can only be "
					   "imported into the repository that "
					   "exported it", archive);
			goto out;
		}
		vmb_unhex(r->id, rid, 16);
		if (memcmp(rid, hdr + 12, 16) != 0) {
			vmb_hex(hdr + 12, 16, hid);
			memcpy(s.other_repo, hid, 33);
		}
		s.enc = 1;
		s.in = vmb_malloc(X_SEG + X_ABYTES);
		if (!s.in) {
			rc = VMB_ENOMEM;
			goto out;
		}
		memcpy(s.ad, hdr, X_FIXED);
		export_key(r, key);
		if (crypto_secretstream_xchacha20poly1305_init_pull(
			    &s.st, hdr + X_FIXED, key) != 0) {
			sodium_memzero(key, sizeof key);
			rc = vmb_error_set(VMB_EINVAL, "%s: damaged encrypted "
					   "archive header", archive);
			goto out;
		}
		sodium_memzero(key, sizeof key);
		s.consumed = X_HDR;
	} else if (lseek(s.fd, 0, SEEK_SET) != 0) {
		rc = vmb_error_set(VMB_EIO, "cannot read %s: %s", archive,
				   strerror(errno));
		goto out;
	}
	x.dir = vmb_asprintf("%s/vmb-import.XXXXXX",
			     tmpdir && *tmpdir ? tmpdir : "/tmp");
	if (!x.dir) {
		rc = VMB_ENOMEM;
		goto out;
	}
	if (!mkdtemp(x.dir)) {
		rc = vmb_error_set(VMB_EIO, "cannot create a temporary folder "
				   "%s: %s", x.dir, strerror(errno));
		free(x.dir);
		x.dir = NULL;
		goto out;
	}

	/* ---- extract every entry, refusing anything odd ---- */
	a = archive_read_new();
	if (!a || archive_read_support_format_tar(a) != ARCHIVE_OK) {
		rc = VMB_ENOMEM;
		goto out;
	}
	if (archive_read_open(a, &s, NULL, is_read_cb, NULL) != ARCHIVE_OK) {
		rc = read_fail(&x, a, &s);
		goto out;
	}
	for (;;) {
		struct archive_entry *e;
		const char *raw, *flat;
		int ar = archive_read_next_header(a, &e), type;
		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK) {
			rc = read_fail(&x, a, &s);
			goto out;
		}
		if (++entries > MAX_ENTRIES) {
			rc = vmb_error_set(VMB_EINVAL, "%s: more than %d "
					   "entries; nothing was imported",
					   archive, MAX_ENTRIES);
			goto out;
		}
		raw = archive_entry_pathname(e);
		type = (int)archive_entry_filetype(e);
		if (archive_entry_hardlink(e)) {
			rc = refuse(&x, raw, "it is a hard link");
			goto out;
		}
		if (type == AE_IFLNK || archive_entry_symlink(e)) {
			rc = refuse(&x, raw, "it is a symbolic link");
			goto out;
		}
		if (type != AE_IFREG && type != AE_IFDIR) {
			rc = refuse(&x, raw, "it is a device, FIFO or socket, "
				    "not a regular file");
			goto out;
		}
		rc = check_name(&x, raw, type == AE_IFDIR, &flat);
		if (rc)
			goto out;
		if (type == AE_IFDIR || !flat)
			continue;
		rc = extract(&x, a, &s, e, raw, flat);
		if (rc)
			goto out;
	}
	/* an encrypted stream must also end properly */
	while (s.enc && !s.done) {
		const void *b;
		if (is_next(a, &s, &b) < 0) {
			rc = read_fail(&x, a, &s);
			goto out;
		}
	}
	archive_read_free(a);
	a = NULL;
	if (iprog_tick(&x, &s, 1)) {
		rc = vmb_error_code();
		goto out;
	}

	/* ---- what is it? ---- */
	for (size_t i = 0; i < x.nf; i++) {
		if (ends_with(x.f[i].name, ".ovf") && !ovfname)
			ovfname = x.f[i].name;
		if (ends_with(x.f[i].name, ".mf") && !mfname)
			mfname = x.f[i].name;
	}
	names = vmb_calloc(x.nf + 1, sizeof *names);
	paths = vmb_calloc(x.nf + 1, sizeof *paths);
	disks = vmb_calloc(x.nf + 1, sizeof *disks);
	src = vmb_calloc(x.nf + 1, sizeof *src);
	if (!names || !paths || !disks || !src) {
		rc = VMB_ENOMEM;
		goto out;
	}
	if (find_file(&x, "manifest.json")) {
		const vmb_json *jd, *jc;
		uint64_t ver = 0;
		char what[300];
		snprintf(what, sizeof what, "%s: manifest.json", archive);
		rc = read_small(&x, "manifest.json", &manifest);
		if (rc)
			goto out;
		rc = vmb_json_parse(manifest, strlen(manifest), what, &mj);
		if (rc) {
			rc = vmb_error_set(VMB_EINVAL, "%s; nothing was "
					   "imported", vmb_error_message());
			goto out;
		}
		if (vmb_json_u64(mj, "vmbackup_export", &ver) || ver != 1 ||
		    !(jd = vmb_json_arr(mj, "disks")) || !jd->n) {
			rc = vmb_error_set(ver > 1 && ver < 1000 ? VMB_ENOTSUP
					   : VMB_EINVAL, "%s: not a vmb export "
					   "manifest (or a newer version); "
					   "nothing was imported", what);
			goto out;
		}
		if (jd->n > x.nf) {
			rc = vmb_error_set(VMB_EINVAL, "%s lists more disks "
					   "than the archive holds; nothing was "
					   "imported", what);
			goto out;
		}
		for (size_t i = 0; i < jd->n; i++) {
			const vmb_json *d = jd->items[i];
			const char *name = vmb_json_str(d, "name");
			const char *file = vmb_json_str(d, "file");
			const char *fmt = vmb_json_str(d, "format");
			const char *sha = vmb_json_str(d, "sha256");
			const struct xfile *f = file ? find_file(&x, file)
						     : NULL;
			uint64_t vsize;
			if (!name || !*name || !file || !fmt || !sha ||
			    vmb_json_u64(d, "virtual_size", &vsize)) {
				rc = vmb_error_set(VMB_EINVAL, "%s: disk %zu is "
						   "incomplete; nothing was "
						   "imported", what, i + 1);
				goto out;
			}
			if (!f) {
				char sh[120];
				shown_name(file, sh);
				rc = vmb_error_set(VMB_EINVAL, "%s: disk file "
						   "'%s' is missing from the "
						   "archive; nothing was "
						   "imported", archive, sh);
				goto out;
			}
			if (strcasecmp(sha, f->sha) != 0) {
				rc = vmb_error_set(VMB_EVERIFY, "%s: %s does not "
						   "match its SHA-256 in "
						   "manifest.json (damaged "
						   "archive); nothing was "
						   "imported", archive, f->name);
				goto out;
			}
			for (size_t k = 0; k < nsrc; k++)
				if (!strcmp(paths[k], f->name)) {
					rc = vmb_error_set(VMB_EINVAL, "%s: "
						"two disks share %s; nothing "
						"was imported", what, f->name);
					goto out;
				}
			names[nsrc] = safe_name(name, "disk");
			paths[nsrc] = vmb_strdup(f->name);
			if (!names[nsrc] || !paths[nsrc]) {
				rc = VMB_ENOMEM;
				goto out;
			}
			rc = check_disk_file(&x, f->name, fmt, &disks[nsrc]);
			if (!rc && vmb_disk_size(disks[nsrc]) != vsize)
				rc = vmb_error_set(VMB_EVERIFY, "%s: disk %s has "
						   "%llu bytes, the manifest "
						   "says %llu; nothing was "
						   "imported", archive, name,
						   (unsigned long long)
						   vmb_disk_size(disks[nsrc]),
						   (unsigned long long)vsize);
			nsrc++;
			if (rc)
				goto out;
		}
		if ((jc = vmb_json_get(mj, "config")) &&
		    jc->type == VMB_JSON_OBJ) {
			const char *file = vmb_json_str(jc, "file");
			const char *sha = vmb_json_str(jc, "sha256");
			const struct xfile *f = file ? find_file(&x, file)
						     : NULL;
			if (!f || !sha || strcasecmp(sha, f->sha) != 0) {
				rc = vmb_error_set(f ? VMB_EVERIFY : VMB_EINVAL,
						   "%s: the VM configuration is "
						   "%s; nothing was imported",
						   archive, f ? "damaged (SHA-256 "
						   "mismatch)" : "missing");
				goto out;
			}
			rc = read_small(&x, f->name, &config);
			if (rc)
				goto out;
			config_format = vmb_json_str(jc, "format");
			if (config_format && !*config_format)
				config_format = NULL;
		}
		vm = clean_vm_name(vmb_json_str(mj, "vm"));
	} else if (ovfname) {
		if (mfname) {
			rc = check_mf(&x, mfname);
			if (rc)
				goto out;
		}
		rc = read_small(&x, ovfname, &ovftext);
		if (!rc)
			rc = ovf_parse(ovftext, &ovf);
		if (rc)
			goto out;
		for (size_t i = 0; i < ovf.nhrefs; i++) {
			const char *h = ovf.hrefs[i];
			const char *b = strrchr(h, '/') ? strrchr(h, '/') + 1 : h;
			const struct xfile *f = find_file(&x, b);
			char *dot;
			if (!f || strstr(h, "://")) {
				char sh[120];
				shown_name(h, sh);
				rc = vmb_error_set(VMB_EINVAL, "%s: the OVF "
						   "refers to '%s', which the "
						   "archive lacks; nothing was "
						   "imported", archive, sh);
				goto out;
			}
			if (ends_with(b, ".iso") || ends_with(b, ".img.gz") ||
			    ends_with(b, ".gz")) {
				vmb_log(VMB_LOG_WARN, "%s: skipping %s (not a "
					"disk image)", archive, b);
				continue;
			}
			names[nsrc] = vmb_strdup(b);
			paths[nsrc] = vmb_strdup(b);
			if (!names[nsrc] || !paths[nsrc]) {
				rc = VMB_ENOMEM;
				goto out;
			}
			if ((dot = strrchr(names[nsrc], '.')) &&
			    dot != names[nsrc])
				*dot = 0;
			rc = check_disk_file(&x, b, NULL, &disks[nsrc]);
			nsrc++;
			if (rc)
				goto out;
		}
		if (!nsrc) {
			rc = vmb_error_set(VMB_EINVAL, "%s: the OVF descriptor "
					   "names no disk images; nothing was "
					   "imported", archive);
			goto out;
		}
		config = ovftext;
		ovftext = NULL;
		config_format = "ovf-xml";
		vm = clean_vm_name(ovf.vm);
	} else {
		rc = vmb_error_set(VMB_EINVAL, "%s is neither a vmb export (no "
				   "manifest.json) nor an OVA (no .ovf "
				   "descriptor); nothing was imported",
				   archive);
		goto out;
	}
	if (opts->vm && *opts->vm) {
		free(vm);
		vm = vmb_strdup(opts->vm);
	} else if (!vm) {
		const char *b = strrchr(archive, '/') ? strrchr(archive, '/') + 1
						      : archive;
		char *dot;
		vm = clean_vm_name(b);
		if (vm && (dot = strrchr(vm, '.')) && dot != vm)
			*dot = 0;
		if (!vm)
			vm = vmb_strdup("imported");
	}
	if (!vm) {
		rc = VMB_ENOMEM;
		goto out;
	}

	/* ---- back the disks up as one snapshot ---- */
	for (size_t i = 0; i < nsrc; i++) {
		char *prov = vmb_asprintf("%s:%s", archive, paths[i]);
		if (!prov) {
			rc = VMB_ENOMEM;
			goto out;
		}
		free(paths[i]);
		paths[i] = prov;
		src[i].path = paths[i];
		src[i].name = names[i];
		src[i].disk = disks[i];
	}
	{
		vmb_backup_options bo = VMB_BACKUP_OPTIONS_INIT;
		bo.vm = vm;
		bo.tags = opts->tags;
		bo.ntags = opts->ntags;
		bo.threads = opts->threads;
		bo.progress = opts->progress;
		bo.progress_payload = opts->progress_payload;
		bo.config_format = config ? (config_format ? config_format
							   : "unknown")
					  : NULL;
		bo.config = config;
		rc = vmb_repo_backup(r, src, nsrc, &bo, result);
		if (rc)
			vmb_error_prefix("importing %s: ", archive);
	}
	if (!rc && vm_out) {
		*vm_out = vm;
		vm = NULL;
	}
out:
	if (a)
		archive_read_free(a);
	if (s.fd >= 0)
		close(s.fd);
	sodium_memzero(&s.st, sizeof s.st);
	free(s.in);
	if (s.out) {
		sodium_memzero(s.out, IO_BUF > X_SEG ? IO_BUF : X_SEG);
		free(s.out);
	}
	for (size_t i = 0; i < x.nf + 1 && disks; i++)
		vmb_disk_close(disks[i]);
	for (size_t i = 0; i < x.nf + 1; i++) {
		if (names)
			free(names[i]);
		if (paths)
			free(paths[i]);
	}
	free(names);
	free(paths);
	free(disks);
	free(src);
	if (x.dir)
		remove_tree(x.dir);
	for (size_t i = 0; i < x.nf; i++)
		free(x.f[i].name);
	free(x.f);
	free(x.dir);
	vmb_json_free(mj);
	ovf_free(&ovf);
	free(manifest);
	free(ovftext);
	free(config);
	free(vm);
	return rc;
}
