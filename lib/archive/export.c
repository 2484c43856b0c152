/*
 * vmb_repo_export(): one snapshot as a self-contained pax tar, optionally
 * encrypted.  Layout: docs/archives.md.  In short:
 *   - one file per disk (a GNU sparse 1.0 pax entry, so holes stay holes),
 *     the VM configuration, and manifest.json last, with the SHA-256 of
 *     every file;
 *   - encrypted archives are "VMBX" | version | flags | 0 0 | segment
 *     size | repository id | secretstream header, then the tar as
 *     crypto_secretstream_xchacha20poly1305 segments of 64 KiB plaintext;
 *     the key is subkey 16 (context "vmbexpt1") of the master key.
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
#include "repo/repo_internal.h"
#include "crypto/crypto.h"
#include "archive_internal.h"
/* libarchive is loaded on first use: archive_* are its function table */
#include "archive_dl.h"

struct ostream {
	int fd;
	int enc;
	struct vmb_archive_secret *sec; /* key and stream state, locked */
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
	crypto_secretstream_xchacha20poly1305_push(&o->sec->st, o->cipher, &clen,
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

/*
 * Start an encrypted stream.  Format 1: the key derives from the
 * repository's master key.  Format 2 (@p pass given): a random key,
 * wrapped under @p pass with Argon2id in a key block after the fixed
 * header, so the archive opens with the passphrase alone.
 */
static int os_start(struct ostream *o, const vmb_repo *r, const char *pass)
{
	uint8_t hdr[X_FIXED + 4], rid[16], *key;
	uint8_t sshdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	char *kb = NULL;
	size_t kblen = 0;
	if (!o->enc)
		return 0;
	if (!(o->sec = vmb_archive__secret_new()))
		return VMB_ENOMEM;
	key = o->sec->key;
	o->plain = vmb_malloc(X_SEG);
	o->cipher = vmb_malloc(X_SEG + X_ABYTES);
	if (!o->plain || !o->cipher)
		return VMB_ENOMEM;
	memset(hdr, 0, sizeof hdr);
	memcpy(hdr, X_MAGIC, 4);
	hdr[4] = pass ? X_VERSION_PW : X_VERSION;
	hdr[5] = 0; /* flags */
	vmb_put_le32(hdr + 8, X_SEG);
	vmb_unhex(r->id, rid, 16);
	memcpy(hdr + 12, rid, 16);
	if (pass) {
		int rc;
		randombytes_buf(key, 32);
		rc = vmb_crypto_wrap_key(key, pass, strlen(pass), 1, &kb);
		if (rc)
			return rc; /* os_free() wipes the key */
		kblen = strlen(kb);
		if (kblen > X_KEYBLOCK_MAX) {
			free(kb);
			return vmb_error_set(VMB_EINVAL, "archive key block too "
					     "large");
		}
		vmb_put_le32(hdr + X_FIXED, (uint32_t)kblen);
	} else {
		vmb_archive__export_key(r, key);
	}
	crypto_secretstream_xchacha20poly1305_init_push(&o->sec->st, sshdr, key);
	sodium_memzero(key, 32);
	memcpy(o->ad, hdr, X_FIXED);
	if (os_raw(o, hdr, pass ? sizeof hdr : X_FIXED) ||
	    (kb && os_raw(o, kb, kblen)) || os_raw(o, sshdr, sizeof sshdr)) {
		free(kb);
		return vmb_error_set(VMB_EIO, "%s", o->msg);
	}
	free(kb);
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
	vmb_archive__secret_free(o->sec);
	o->sec = NULL;
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
		size_t k = (size_t)VMB_MIN(n, (uint64_t)sizeof vmb_archive__zeros);
		crypto_hash_sha256_update(h, vmb_archive__zeros, k);
		if (archive_write_data(a, vmb_archive__zeros, k) != (la_ssize_t)k)
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
	vmb_archive__hash_hex(&h, sha);
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
		vmb_archive__hash_hex(&h, sha);
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

/* Publish @tmp as @out without replacing a file that appeared meanwhile,
 * and make the name durable. */
static int publish(const char *tmp, const char *out, const char *odir)
{
	int dfd;
	if (link(tmp, out) == 0) {
		unlink(tmp);
	} else if (errno == EEXIST) {
		return vmb_error_set(VMB_EEXISTS, "%s already exists", out);
	} else if (rename(tmp, out) != 0) {
		return vmb_error_set(VMB_EIO, "cannot rename %s to %s: %s", tmp,
				     out, strerror(errno));
	}
	dfd = open(odir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* Create the archive's temporary file OUT.tmp (never an existing one). */
static int create_tmp(struct ostream *o, const char *tmp, mode_t mode)
{
	int e;
	o->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (o->fd >= 0)
		return 0;
	e = errno;
	return vmb_error_set(e == EEXIST ? VMB_EEXISTS : VMB_EIO,
			     "cannot create %s: %s%s", tmp, strerror(e),
			     e == EEXIST ? " (another export running, or left "
			     "over: remove it)" : "");
}

/* Close the tar, end (and fsync) the stream, publish @tmp as @out. */
static int finish_archive(struct archive *a, struct ostream *o,
			  const char *tmp, const char *out, const char *odir)
{
	int rc;
	if (archive_write_close(a) != ARCHIVE_OK)
		return archive_fail(a, o, out);
	rc = os_finish(o);
	if (rc)
		return rc;
	close(o->fd);
	o->fd = -1;
	return publish(tmp, out, odir);
}

/* A hex SHA-256 of a whole file. */
static int sha256_file(int fd, const char *path, uint64_t size, uint8_t *buf,
		       char hex[65])
{
	crypto_hash_sha256_state h;
	uint64_t off = 0;
	crypto_hash_sha256_init(&h);
	while (off < size) {
		size_t n = (size_t)VMB_MIN(size - off, (uint64_t)IO_BUF);
		if (vmb_pread_full(fd, buf, n, off) != (int64_t)n)
			return vmb_error_set(VMB_EIO, "cannot read %s: %s", path,
					     strerror(errno ? errno : EIO));
		crypto_hash_sha256_update(&h, buf, n);
		off += n;
	}
	vmb_archive__hash_hex(&h, hex);
	return 0;
}

/* Copy one snapshot disk into a new streamOptimized VMDK at @path,
 * reading only its data extents (in 64 KiB-aligned pieces, as the
 * writer wants them). */
static int write_stream_vmdk(vmb_repo *r, const vmb_snapshot *s,
			     const vmb_mdisk *md, const char *path,
			     uint8_t *buf, struct xprog *xp)
{
	vmb_disk_writer_options wo = VMB_DISK_WRITER_INIT;
	vmb_disk_writer *w = NULL;
	vmb_disk *d = NULL;
	struct ranges rs = { NULL, 0, 0, 0 };
	uint64_t done = xp->p.bytes_done, pos = 0;
	int rc;
	wo.subformat = "streamOptimized";
	wo.flags = VMB_DISK_WRITER_NO_SYNC; /* the tar is fsync'd */
	rc = vmb_snapshot_disk_open(r, s, md->name, &d);
	if (!rc)
		rc = vmb_disk_map(d, 0, md->size, map_cb, &rs);
	if (!rc && rs.failed)
		rc = VMB_ENOMEM;
	if (!rc)
		rc = vmb_disk_writer_create(path, "vmdk", md->size, &wo, &w);
	for (size_t i = 0; !rc && i < rs.n; i++) {
		uint64_t a = rs.v[i].off & ~(uint64_t)0xffff;
		uint64_t e = rs.v[i].off + rs.v[i].len;
		e = e > md->size - md->size % 65536 ? md->size
						      : (e + 0xffff) & ~(uint64_t)0xffff;
		if (a < pos)
			a = pos;
		while (!rc && a < e) {
			size_t n = (size_t)VMB_MIN(e - a, (uint64_t)IO_BUF);
			rc = vmb_disk_read(d, buf, a, n);
			if (!rc)
				rc = vmb_disk_writer_write(w, a, buf, n);
			a += n;
			pos = a;
			xp->p.bytes_done = done + a;
			xp->p.bytes_read += n;
			if (!rc)
				rc = xprog_tick(xp, 0);
		}
	}
	if (!rc)
		rc = vmb_disk_writer_finish(w);
	vmb_disk_writer_free(w);
	vmb_disk_close(d);
	free(rs.v);
	xp->p.bytes_done = done + md->size;
	return rc;
}

/*
 * `vmb export --ova`: every disk restored as a streamOptimized VMDK into a
 * folder beside OUT, an OVF 1.0 descriptor describing them (and the VM's
 * CPUs, memory and NICs from its stored configuration), a manifest with
 * their SHA-256, then one plain tar in the order OVF requires: descriptor,
 * manifest, disk files in References order.  ustar when every member fits
 * its 8 GiB size field, pax otherwise.
 */
static int export_ova(vmb_repo *r, const vmb_snapshot *s, const char *out,
		      const vmb_export_options *opts, vmb_export_result *res)
{
	struct ostream o;
	struct archive *a = NULL;
	struct ovf_vm vm;
	struct xprog xp;
	char *tmp = NULL, *odir = NULL, *parts = NULL, *base = NULL;
	char *ovfname = NULL, *mfname = NULL, *ovf = NULL, **paths = NULL;
	char (*shas)[65] = NULL, ovfsha[65];
	uint8_t *buf = NULL;
	int rc = 0, tmp_made = 0, big = 0;
	double t0 = vmb_now();
	vmb_buf mf;

	memset(&o, 0, sizeof o);
	memset(&vm, 0, sizeof vm);
	memset(&xp, 0, sizeof xp);
	vmb_buf_init(&mf);
	o.fd = -1;
	xp.o = opts;
	xp.p.phase = "export";
	base = vmb_archive__safe_name(s->vm, "vm");
	tmp = vmb_asprintf("%s.tmp", out);
	odir = dir_of(out);
	vm.disks = vmb_calloc(s->ndisks ? s->ndisks : 1, sizeof *vm.disks);
	paths = vmb_calloc(s->ndisks ? s->ndisks : 1, sizeof *paths);
	shas = vmb_calloc(s->ndisks ? s->ndisks : 1, sizeof *shas);
	buf = vmb_malloc(IO_BUF);
	parts = vmb_asprintf("%s.parts.XXXXXX", out);
	if (!base || !tmp || !odir || !vm.disks || !paths || !shas || !buf ||
	    !parts || !(ovfname = vmb_asprintf("%s.ovf", base)) ||
	    !(mfname = vmb_asprintf("%s.mf", base))) {
		rc = VMB_ENOMEM;
		goto out;
	}
	if (!mkdtemp(parts)) {
		rc = vmb_error_set(VMB_EIO, "cannot create a temporary folder "
				   "beside %s: %s", out, strerror(errno));
		free(parts);
		parts = NULL;
		goto out;
	}
	vm.name = s->vm;
	vm.ndisks = s->ndisks;
	for (size_t i = 0; i < s->ndisks; i++) {
		snprintf(vm.disks[i].name, sizeof vm.disks[i].name, "%s",
			 s->disks[i].name);
		xp.p.bytes_total += s->disks[i].size;
	}
	rc = vmb_archive__ovf_vm_from_config(s->config_format, s->config, &vm);
	if (rc)
		goto out;
	/* the disks, as streamOptimized VMDKs named BASE-diskN.vmdk (the
	 * name is also the extent name in the embedded descriptor, which
	 * VMware's and libyal's readers resolve) */
	for (size_t i = 0; i < s->ndisks; i++) {
		struct stat st;
		char *img, *named;
		int fd;
		xp.p.item = s->disks[i].name;
		xprog_tick(&xp, 1);
		named = vmb_asprintf("%s-disk%zu.vmdk", base, i + 1);
		img = named ? vmb_asprintf("%s/%s", parts, named) : NULL;
		if (!img || !named) {
			free(img);
			free(named);
			rc = VMB_ENOMEM;
			goto out;
		}
		paths[i] = img;
		vm.disks[i].file = named;
		rc = write_stream_vmdk(r, s, &s->disks[i], img, buf, &xp);
		if (rc) {
			vmb_error_prefix("exporting disk %s: ", s->disks[i].name);
			goto out;
		}
		fd = open(img, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) != 0) {
			rc = vmb_error_set(VMB_EIO, "cannot open %s: %s", img,
					   strerror(errno));
			if (fd >= 0)
				close(fd);
			goto out;
		}
		vm.disks[i].file_size = (uint64_t)st.st_size;
		vm.disks[i].capacity = s->disks[i].size;
		big |= st.st_size >= (off_t)(8ULL << 30) - 512;
		rc = sha256_file(fd, img, (uint64_t)st.st_size, buf, shas[i]);
		close(fd);
		if (rc)
			goto out;
	}
	ovf = vmb_archive__ovf_build(&vm);
	if (!ovf) {
		rc = VMB_ENOMEM;
		goto out;
	}
	{
		crypto_hash_sha256_state h;
		crypto_hash_sha256_init(&h);
		crypto_hash_sha256_update(&h, (const uint8_t *)ovf, strlen(ovf));
		vmb_archive__hash_hex(&h, ovfsha);
	}
	vmb_buf_printf(&mf, "SHA256(%s)= %s\n", ovfname, ovfsha);
	for (size_t i = 0; i < s->ndisks; i++)
		vmb_buf_printf(&mf, "SHA256(%s)= %s\n", vm.disks[i].file,
			       shas[i]);
	if (mf.failed) {
		rc = VMB_ENOMEM;
		goto out;
	}
	/* the tar */
	o.path = tmp;
	rc = create_tmp(&o, tmp, 0644);
	if (rc)
		goto out;
	tmp_made = 1;
	a = archive_write_new();
	if (!a || (big ? archive_write_set_format_pax(a)
		       : archive_write_set_format_ustar(a)) != ARCHIVE_OK ||
	    archive_write_open(a, &o, NULL, os_write_cb, NULL) != ARCHIVE_OK) {
		rc = a ? archive_fail(a, &o, out) : VMB_ENOMEM;
		goto out;
	}
	rc = add_mem(a, &o, ovfname, s->time, ovf, strlen(ovf), NULL);
	if (!rc)
		rc = add_mem(a, &o, mfname, s->time, mf.data, mf.len, NULL);
	for (size_t i = 0; !rc && i < s->ndisks; i++) {
		/* dense: an OVA reader expects no sparse entries */
		struct range whole = { 0, vm.disks[i].file_size };
		struct ranges rs = { &whole, 1, 1, 0 };
		struct filesrc fs = { -1, paths[i] };
		char sha[65];
		fs.fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (fs.fd < 0) {
			rc = vmb_error_set(VMB_EIO, "cannot open %s: %s",
					   paths[i], strerror(errno));
			break;
		}
		rc = add_sparse(a, &o, vm.disks[i].file, s->time,
				vm.disks[i].file_size,
				vm.disks[i].file_size ? &rs : &(struct ranges){
				NULL, 0, 0, 0 }, read_file, &fs, buf, IO_BUF,
				&xp, 0, sha);
		close(fs.fd);
		/* the bytes written are the bytes hashed for the manifest */
		if (!rc && strcmp(sha, shas[i]))
			rc = vmb_error_set(VMB_EIO, "%s changed while it was "
					   "written", paths[i]);
	}
	if (rc)
		goto out;
	rc = finish_archive(a, &o, tmp, out, odir);
	if (rc)
		goto out;
	tmp_made = 0;
	memcpy(res->snapshot, s->id, 33);
	res->disks = s->ndisks;
	for (size_t i = 0; i < s->ndisks; i++)
		res->bytes_total += s->disks[i].size;
	res->bytes_written = o.written;
	res->encrypted = 0;
	res->seconds = vmb_now() - t0;
	xp.p.bytes_done = xp.p.bytes_total;
	xprog_tick(&xp, 1);
out:
	if (a)
		archive_write_free(a);
	if (o.fd >= 0)
		close(o.fd);
	if (tmp_made)
		unlink(tmp);
	if (parts)
		vmb_archive__remove_tree(parts);
	for (size_t i = 0; paths && i < s->ndisks; i++) {
		free(paths[i]);
		free((char *)vm.disks[i].file);
	}
	vmb_buf_free(&mf);
	free(paths);
	free(vm.disks);
	free(shas);
	free(buf);
	free(ovf);
	free(ovfname);
	free(mfname);
	free(parts);
	free(base);
	free(tmp);
	free(odir);
	return rc;
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
	char want_fmt[16] = "";
	const char *want_sub = NULL;

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
	if (opts->format &&
	    vmb_disk_format_parse(opts->format, want_fmt, &want_sub))
		return vmb_error_code();
	if (want_sub && !strcmp(want_sub, "monolithicFlat"))
		return vmb_error_set(VMB_ENOTSUP, "an archive holds one file "
				     "per disk: export as vmdk:monolithicSparse "
				     "or vmdk:streamOptimized, or restore with "
				     "--format vmdk:monolithicFlat");
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
	if (opts->version >= 2 && opts->ova) {
		rc = export_ova(r, s, out_tar, opts, res);
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
	o.enc = opts->encrypt && r->keys->encrypted;

	rc = create_tmp(&o, tmp, 0600);
	if (rc)
		goto out;
	tmp_made = 1;
	rc = os_start(&o, r, opts->version >= 2 && opts->passphrase &&
			     *opts->passphrase ? opts->passphrase : NULL);
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
		const char *fmt = opts->format ? want_fmt : md->format;
		struct ranges rs = { NULL, 0, 0, 0 };
		char *base_name;
		if (!vmb_disk_format_extension(fmt))
			fmt = "raw";
		base_name = vmb_archive__safe_name(md->name, "disk");
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
		/* names are unique in a manifest, but not after vmb_archive__safe_name */
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
			/* the whole spec: vmdk:streamOptimized */
			ro.format = opts->format ? opts->format : fmt;
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
		char *vm = vmb_archive__safe_name(s->vm, "vm");
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
		const char *fmt = opts->format ? want_fmt : md->format;
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
	rc = finish_archive(a, &o, tmp, out_tar, odir);
	if (rc)
		goto out;
	tmp_made = 0;
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
		vmb_archive__remove_tree(parts);
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

