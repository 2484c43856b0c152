/*
 * vmb_repo_import(): a vmb export (plain or encrypted) or an OVA as one
 * new snapshot.  Imports treat the archive as hostile: only flat regular
 * files, no links, devices, absolute or ".." paths, bounded sizes and
 * counts, no disk that points at a file outside the archive
 * (docs/archives.md).
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
#include <nettle/sha1.h>
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

struct istream {
	int fd;
	int enc;
	struct vmb_archive_secret *sec; /* key and stream state, locked */
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
			    &s->sec->st, s->out, &mlen, &tag, s->in, (size_t)n,
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
	char sha[65]; /* of the content, holes as vmb_archive__zeros */
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
	vmb_archive__shown_name(entry, sh);
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
		vmb_archive__hash_zeros(&h, (uint64_t)off - pos);
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
	vmb_archive__hash_zeros(&h, (uint64_t)size - pos);
	nf = &x->f[x->nf];
	vmb_archive__hash_hex(&h, nf->sha);
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

/* The digest algorithms OVF allows in a manifest. */
enum { MF_SHA1 = 1, MF_SHA256 = 2, MF_SHA512 = 3 };

/* Hex digest of an extracted file (SHA-256 was taken while extracting). */
static int file_digest(struct ictx *x, const struct xfile *f, int alg,
		       char hex[129])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[64];
	size_t mdlen;
	char *path;
	unsigned char *buf;
	uint64_t off = 0;
	int fd, rc = 0;
	struct sha1_ctx s1;
	crypto_hash_sha512_state s5;

	if (alg == MF_SHA256) {
		memcpy(hex, f->sha, 65);
		return 0;
	}
	path = vmb_asprintf("%s/%s", x->dir, f->name);
	buf = vmb_malloc(IO_BUF);
	if (!path || !buf) {
		free(path);
		free(buf);
		return VMB_ENOMEM;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd < 0) {
		free(buf);
		return vmb_error_set(VMB_EIO, "cannot read %s from the archive",
				     f->name);
	}
	sha1_init(&s1);
	crypto_hash_sha512_init(&s5);
	while (off < f->size) {
		size_t n = f->size - off < IO_BUF ? (size_t)(f->size - off)
						  : IO_BUF;
		if (vmb_pread_full(fd, buf, n, off) != (int64_t)n) {
			rc = vmb_error_set(VMB_EIO, "cannot read %s from the "
					   "archive", f->name);
			break;
		}
		if (alg == MF_SHA1)
			sha1_update(&s1, n, buf);
		else
			crypto_hash_sha512_update(&s5, buf, n);
		off += n;
	}
	close(fd);
	free(buf);
	if (rc)
		return rc;
	if (alg == MF_SHA1) {
		sha1_digest(&s1, SHA1_DIGEST_SIZE, md);
		mdlen = SHA1_DIGEST_SIZE;
	} else {
		crypto_hash_sha512_final(&s5, md);
		mdlen = 64;
	}
	for (size_t i = 0; i < mdlen; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[2 * mdlen] = 0;
	return 0;
}

static int is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return 0;
	return s[n] == 0;
}

/*
 * Check an OVA's manifest: every line is ALG(member)= hex with ALG one of
 * SHA1, SHA256, SHA512; each member's digest must match, each member named
 * must exist, and every member of the archive but the manifest and the
 * certificate must be named.  A tampered, missing or unlisted member is a
 * failed verification (VMB_EVERIFY); a malformed manifest is VMB_EINVAL.
 */
static int check_mf(struct ictx *x, const char *mfname)
{
	static const struct { const char *name; int alg; size_t hexlen;
			      const char *shown; } algs[] = {
		{ "SHA1", MF_SHA1, 40, "SHA-1" },
		{ "SHA256", MF_SHA256, 64, "SHA-256" },
		{ "SHA512", MF_SHA512, 128, "SHA-512" } };
	char *text = NULL, *line, *save = NULL;
	unsigned char *listed = vmb_calloc(x->nf + 1, 1);
	unsigned lineno = 0, ndigests = 0;
	int rc = listed ? read_small(x, mfname, &text) : VMB_ENOMEM;
	if (rc) {
		free(listed);
		return rc;
	}
	for (line = strtok_r(text, "\n", &save); line && !rc;
	     line = strtok_r(NULL, "\n", &save)) {
		char *open, *close, *hex, *fn, shown[120], got[129];
		size_t k, ln = strlen(line);
		const struct xfile *f;
		lineno++;
		while (ln && (line[ln - 1] == '\r' || line[ln - 1] == ' ' ||
			      line[ln - 1] == '\t'))
			line[--ln] = 0;
		if (!ln)
			continue;
		open = strchr(line, '(');
		close = strstr(line, ")=");
		if (!open || !close || close < open) {
			rc = vmb_error_set(VMB_EINVAL, "%s: line %u of the "
					   "manifest %s is not 'ALGORITHM(file)= "
					   "digest'; nothing was imported",
					   x->archive, lineno, mfname);
			break;
		}
		*open = 0;
		for (k = 0; k < sizeof algs / sizeof algs[0]; k++)
			if (!strcmp(line, algs[k].name))
				break;
		if (k == sizeof algs / sizeof algs[0]) {
			vmb_archive__shown_name(line, shown);
			rc = vmb_error_set(VMB_EINVAL, "%s: the manifest %s "
					   "uses the digest '%s', which OVF does "
					   "not allow (SHA1, SHA256, SHA512); "
					   "nothing was imported", x->archive,
					   mfname, shown);
			break;
		}
		hex = close + 2;
		while (*hex == ' ' || *hex == '\t')
			hex++;
		fn = vmb_strndup(open + 1, (size_t)(close - open - 1));
		if (!fn) {
			rc = VMB_ENOMEM;
			break;
		}
		vmb_archive__shown_name(fn, shown);
		if (!is_hex(hex, algs[k].hexlen)) {
			rc = vmb_error_set(VMB_EINVAL, "%s: the manifest %s "
					   "gives %s a %s that is not %zu hex "
					   "digits; nothing was imported",
					   x->archive, mfname, shown,
					   algs[k].shown, algs[k].hexlen);
			free(fn);
			break;
		}
		f = find_file(x, strrchr(fn, '/') ? strrchr(fn, '/') + 1 : fn);
		free(fn);
		if (!f) {
			rc = vmb_error_set(VMB_EVERIFY, "%s: the manifest %s "
					   "lists %s, which the archive lacks; "
					   "nothing was imported", x->archive,
					   mfname, shown);
			break;
		}
		rc = file_digest(x, f, algs[k].alg, got);
		if (!rc && strcasecmp(hex, got) != 0)
			rc = vmb_error_set(VMB_EVERIFY, "%s: %s does not match "
					   "its %s in the manifest %s (damaged or "
					   "altered); nothing was imported",
					   x->archive, f->name, algs[k].shown,
					   mfname);
		listed[f - x->f] = 1;
		ndigests++;
	}
	if (!rc && !ndigests)
		rc = vmb_error_set(VMB_EINVAL, "%s: the manifest %s holds no "
				   "digests; nothing was imported", x->archive,
				   mfname);
	for (size_t i = 0; !rc && i < x->nf; i++)
		if (!listed[i] && strcmp(x->f[i].name, mfname) &&
		    !ends_with(x->f[i].name, ".cert"))
			rc = vmb_error_set(VMB_EVERIFY, "%s: %s is not listed "
					   "in the manifest %s, so nothing "
					   "vouches for it; nothing was imported",
					   x->archive, x->f[i].name, mfname);
	free(listed);
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
	if (read_full(s.fd, hdr, X_FIXED) == X_FIXED &&
	    !memcmp(hdr, X_MAGIC, 4)) {
		uint8_t rid[16], *key;
		uint8_t sshdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
		char hid[33];
		int pw = hdr[4] == X_VERSION_PW;
		/* the key and stream state in locked memory, wiped at out */
		if (!(s.sec = vmb_archive__secret_new())) {
			rc = VMB_ENOMEM;
			goto out;
		}
		key = s.sec->key;
		if (hdr[4] != X_VERSION && !pw) {
			rc = vmb_error_set(VMB_ENOTSUP, "%s: encrypted archive "
					   "version %u is not supported (a newer "
					   "vmb wrote it)", archive, hdr[4]);
			goto out;
		}
		if (vmb_le32(hdr + 8) != X_SEG) {
			rc = vmb_error_set(VMB_EINVAL, "%s: damaged encrypted "
					   "archive header", archive);
			goto out;
		}
		s.consumed = X_FIXED;
		if (pw) {
			/* format 2: the key travels with the archive */
			const char *pass = opts->version >= 2 ?
					   opts->passphrase : NULL;
			uint8_t lb[4];
			uint32_t kblen;
			char *kb, what[300];
			int enc = 0;
			if (read_full(s.fd, lb, 4) != 4 ||
			    (kblen = vmb_le32(lb)) == 0 ||
			    kblen > X_KEYBLOCK_MAX) {
				rc = vmb_error_set(VMB_EINVAL, "%s: damaged "
						   "encrypted archive header "
						   "(key block)", archive);
				goto out;
			}
			if (!pass || !*pass) {
				rc = vmb_error_set(VMB_EAUTH, "%s is encrypted: "
						   "give its passphrase", archive);
				goto out;
			}
			kb = vmb_malloc(kblen);
			if (!kb) {
				rc = VMB_ENOMEM;
				goto out;
			}
			if (read_full(s.fd, kb, kblen) != (ssize_t)kblen) {
				free(kb);
				rc = vmb_error_set(VMB_EINVAL, "%s: damaged "
						   "encrypted archive header "
						   "(key block)", archive);
				goto out;
			}
			snprintf(what, sizeof what, "%s: key block", archive);
			rc = vmb_crypto_unwrap_key(kb, kblen, pass, strlen(pass),
						   what, key, &enc);
			free(kb);
			if (!rc && !enc)
				rc = vmb_error_set(VMB_ECORRUPT, "%s: its key "
						   "is not wrapped", what);
			if (rc == VMB_EAUTH)
				rc = vmb_error_set(VMB_EAUTH, "%s: wrong "
						   "passphrase for this archive",
						   archive);
			if (rc) {
				sodium_memzero(key, 32);
				goto out;
			}
			s.consumed += 4 + kblen;
		} else {
			if (!r->keys->encrypted) {
				rc = vmb_error_set(VMB_EAUTH, "%s is encrypted "
						   "and this repository is not: "
						   "it can only be imported into "
						   "the repository that exported "
						   "it", archive);
				goto out;
			}
			vmb_unhex(r->id, rid, 16);
			if (memcmp(rid, hdr + 12, 16) != 0) {
				vmb_hex(hdr + 12, 16, hid);
				memcpy(s.other_repo, hid, 33);
			}
			vmb_archive__export_key(r, key);
		}
		s.enc = 1;
		s.in = vmb_malloc(X_SEG + X_ABYTES);
		if (!s.in ||
		    read_full(s.fd, sshdr, sizeof sshdr) != (ssize_t)sizeof sshdr) {
			sodium_memzero(key, 32);
			rc = s.in ? vmb_error_set(VMB_EINVAL, "%s: damaged "
						  "encrypted archive header",
						  archive) : VMB_ENOMEM;
			goto out;
		}
		memcpy(s.ad, hdr, X_FIXED);
		if (crypto_secretstream_xchacha20poly1305_init_pull(
			    &s.sec->st, sshdr, key) != 0) {
			sodium_memzero(key, 32);
			rc = vmb_error_set(VMB_EINVAL, "%s: damaged encrypted "
					   "archive header", archive);
			goto out;
		}
		sodium_memzero(key, 32);
		s.consumed += sizeof sshdr;
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
				vmb_archive__shown_name(file, sh);
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
			names[nsrc] = vmb_archive__safe_name(name, "disk");
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
		const char *certname = NULL;
		for (size_t i = 0; i < x.nf; i++)
			if (ends_with(x.f[i].name, ".cert"))
				certname = x.f[i].name;
		if (mfname) {
			rc = check_mf(&x, mfname);
			if (rc)
				goto out;
		}
		if (certname)
			vmb_log(VMB_LOG_WARN, "%s: the signature in %s was NOT "
				"verified (vmb does not check X.509 "
				"certificates)%s", archive, certname, mfname ?
				"; the manifest's digests were" :
				" and there is no manifest");
		rc = read_small(&x, ovfname, &ovftext);
		if (!rc) {
			rc = vmb_archive__ovf_parse(ovftext, strlen(ovftext),
						    &ovf);
			if (rc)
				rc = vmb_error_set(VMB_EINVAL, "%s: %s: %s; "
						   "nothing was imported",
						   archive, ovfname,
						   vmb_error_message());
		}
		if (rc)
			goto out;
		for (size_t i = 0; i < ovf.nfiles; i++) {
			const struct ovf_file *of = &ovf.files[i];
			const char *h = of->href;
			const char *b = strrchr(h, '/') ? strrchr(h, '/') + 1 : h;
			const struct xfile *f = find_file(&x, b);
			char *dot, sh[120];
			vmb_archive__shown_name(h, sh);
			if (!f || strstr(h, "://")) {
				rc = vmb_error_set(VMB_EINVAL, "%s: the OVF "
						   "refers to '%s', which the "
						   "archive lacks; nothing was "
						   "imported", archive, sh);
				goto out;
			}
			if (of->has_size && of->size != f->size) {
				rc = vmb_error_set(VMB_EVERIFY, "%s: %s has "
						   "%llu bytes, its ovf:size in "
						   "%s says %llu; nothing was "
						   "imported", archive, sh,
						   (unsigned long long)f->size,
						   ovfname, (unsigned long long)
						   of->size);
				goto out;
			}
			if (ends_with(b, ".iso") || ends_with(b, ".img.gz") ||
			    ends_with(b, ".gz") || ends_with(b, ".nvram")) {
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
			/* the Disk that uses this file: its capacity */
			for (size_t k = 0; of->id && k < ovf.ndisks; k++) {
				const struct ovf_disk *od = &ovf.disks[k];
				uint64_t vs = vmb_disk_size(disks[nsrc - 1]);
				uint64_t cap = od->capacity;
				if (!od->has_capacity || !od->file_ref ||
				    strcmp(od->file_ref, of->id))
					continue;
				/* images hold whole sectors */
				if (cap % 512 && cap <= UINT64_MAX - 511)
					cap += 512 - cap % 512;
				if (vs != cap) {
					rc = vmb_error_set(VMB_EVERIFY, "%s: %s "
						"holds a %llu-byte disk, its "
						"ovf:capacity in %s says %llu "
						"bytes; nothing was imported",
						archive, sh,
						(unsigned long long)vs, ovfname,
						(unsigned long long)
						od->capacity);
					goto out;
				}
			}
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
	vmb_archive__secret_free(s.sec);
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
		vmb_archive__remove_tree(x.dir);
	for (size_t i = 0; i < x.nf; i++)
		free(x.f[i].name);
	free(x.f);
	free(x.dir);
	vmb_json_free(mj);
	vmb_archive__ovf_free(&ovf);
	free(manifest);
	free(ovftext);
	free(config);
	free(vm);
	return rc;
}

