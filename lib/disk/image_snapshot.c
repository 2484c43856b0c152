/*
 * External image snapshots (include/vmbackup/snapshot_image.h).
 *
 * Layout, for IMAGE = dir/base:
 *   dir/base              the image the VM uses (top layer: a qcow2
 *                         overlay, or for .vdi/.vmdk images a native VDI
 *                         differencing image / VMDK delta)
 *   dir/base.NAME         the frozen state at snapshot NAME (read-only)
 *   dir/base.vmbsnap.json {"version":1,"snapshots":[{"name","file",
 *                          "created"}...]}, oldest first, written
 *                          atomically (tmp, fsync, rename, fsync dir)
 *   dir/base.vmbtmp       a new layer being written (removed on retry)
 *   dir/.X.vmbtmp         a merged VDI layer X being written (hidden:
 *                         it has X's uuid, and children find their VDI
 *                         parent by uuid in dir, skipping dot files)
 *
 * Native layers: a VMDK delta is a monolithicSparse file whose embedded
 * descriptor has parentFileNameHint="base.NAME" and parentCID = the
 * parent's CID (QEMU refuses to read through a mismatch, so a merged
 * layer keeps the CID of the layer it replaces).  A VDI differencing
 * image (type 4) names its parent by uuid; a merged layer keeps the uuid
 * of the layer it replaces.
 *
 * Crash-safety of each operation is described at the function; the
 * crash points (VMB_TEST_CRASH_AT) name the steps.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "vmbackup/snapshot_image.h"
#include "common/json.h"
#include "common/util.h"
#include "format.h"
#include "qcow2.h"
#include "vdi.h"
#include "vmdk.h"

#define MAX_SNAPS 256

struct ent {
	char *name;
	char *file; /* base name, in dir */
	int64_t created;
};

struct ctx {
	const char *image;
	char *dir, *base, *side;
	struct ent *e;
	size_t n;
	vmb_disk *d;          /* the chain, opened from IMAGE */
	int nl;
	struct stat lst[64];  /* identity of each layer */
	int lock_fd;
};

static void ctx_free(struct ctx *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->e[i].name);
		free(c->e[i].file);
	}
	free(c->e);
	free(c->dir);
	free(c->base);
	free(c->side);
	vmb_disk_close(c->d);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
}

static int valid_name(const char *n)
{
	size_t len = strlen(n);
	if (!len || len > 64 || n[0] == '.' || !strncmp(n, "vmb", 3))
		return 0;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
		      *p == '.'))
			return 0;
	return 1;
}

static char *join(const char *dir, const char *name)
{
	return vmb_asprintf("%s/%s", dir, name);
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return vmb_error_set(VMB_EIO, "cannot open folder %s: %s", dir,
				     strerror(errno));
	if (fsync(fd) != 0 && errno != EINVAL) {
		int e = errno;
		close(fd);
		return vmb_error_set(VMB_EIO, "cannot sync folder %s: %s", dir,
				     strerror(e));
	}
	close(fd);
	return 0;
}

static int load_side(struct ctx *c)
{
	FILE *f = fopen(c->side, "rb");
	char *text;
	long len;
	vmb_json *j;
	const vmb_json *arr;
	int r;
	if (!f) {
		if (errno == ENOENT)
			return 0;
		return vmb_error_set(VMB_EIO, "cannot read %s: %s", c->side,
				     strerror(errno));
	}
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	if (len < 0 || len > (1 << 20)) {
		fclose(f);
		return vmb_error_set(VMB_ECORRUPT, "%s: bad size", c->side);
	}
	text = vmb_malloc((size_t)len + 1);
	if (!text) {
		fclose(f);
		return VMB_ENOMEM;
	}
	if (fread(text, 1, (size_t)len, f) != (size_t)len) {
		fclose(f);
		free(text);
		return vmb_error_set(VMB_EIO, "cannot read %s", c->side);
	}
	fclose(f);
	text[len] = 0;
	r = vmb_json_parse(text, (size_t)len, c->side, &j);
	free(text);
	if (r)
		return r;
	arr = vmb_json_arr(j, "snapshots");
	c->e = vmb_calloc(MAX_SNAPS, sizeof *c->e);
	if (!c->e) {
		vmb_json_free(j);
		return VMB_ENOMEM;
	}
	for (size_t i = 0; arr && i < arr->n && c->n < MAX_SNAPS; i++) {
		const vmb_json *o = arr->items[i];
		const char *n = vmb_json_str(o, "name");
		const char *fl = vmb_json_str(o, "file");
		int64_t t = 0;
		if (!n || !fl || !valid_name(n) || strchr(fl, '/'))
			continue;
		vmb_json_i64(o, "created", &t);
		c->e[c->n].name = vmb_strdup(n);
		c->e[c->n].file = vmb_strdup(fl);
		c->e[c->n].created = t;
		if (!c->e[c->n].name || !c->e[c->n].file) {
			vmb_json_free(j);
			return VMB_ENOMEM;
		}
		c->n++;
	}
	vmb_json_free(j);
	return 0;
}

static int save_side(struct ctx *c)
{
	vmb_buf b;
	char *tmp;
	int fd, r = 0;
	vmb_buf_init(&b);
	vmb_buf_puts(&b, "{\"version\":1,\"image\":");
	vmb_buf_json_str(&b, c->base);
	vmb_buf_puts(&b, ",\"snapshots\":[");
	for (size_t i = 0; i < c->n; i++) {
		vmb_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
		vmb_buf_json_str(&b, c->e[i].name);
		vmb_buf_puts(&b, ",\"file\":");
		vmb_buf_json_str(&b, c->e[i].file);
		vmb_buf_printf(&b, ",\"created\":%lld}",
			       (long long)c->e[i].created);
	}
	vmb_buf_puts(&b, "]}\n");
	tmp = vmb_asprintf("%s.tmp", c->side);
	if (!tmp || !b.data || b.failed) {
		free(tmp);
		vmb_buf_free(&b);
		return VMB_ENOMEM;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || vmb_pwrite_full(fd, b.data, b.len, 0) < 0 ||
	    fsync(fd) != 0)
		r = vmb_error_set(VMB_EIO, "cannot write %s: %s", tmp,
				  strerror(errno));
	if (fd >= 0)
		close(fd);
	if (!r && rename(tmp, c->side) != 0)
		r = vmb_error_set(VMB_EIO, "cannot rename %s: %s", tmp,
				  strerror(errno));
	if (r)
		unlink(tmp);
	else
		r = sync_dir(c->dir);
	free(tmp);
	vmb_buf_free(&b);
	return r;
}

/* The chain's layer holding file @p f (in dir), or -1. */
static int layer_of(struct ctx *c, const char *f)
{
	struct stat st;
	char *p = join(c->dir, f);
	int r = -1;
	if (p && stat(p, &st) == 0)
		for (int i = 0; i < c->nl && r < 0; i++)
			if (c->lst[i].st_dev == st.st_dev &&
			    c->lst[i].st_ino == st.st_ino)
				r = i;
	free(p);
	return r;
}

static int ctx_open(struct ctx *c, const char *image, int lock)
{
	char *a, *b;
	int r;
	memset(c, 0, sizeof *c);
	c->lock_fd = -1;
	c->image = image;
	a = vmb_strdup(image);
	b = vmb_strdup(image);
	if (!a || !b) {
		free(a);
		free(b);
		return VMB_ENOMEM;
	}
	c->dir = vmb_strdup(dirname(a));
	c->base = vmb_strdup(basename(b));
	free(a);
	free(b);
	c->side = vmb_asprintf("%s.vmbsnap.json", image);
	if (!c->dir || !c->base || !c->side)
		return VMB_ENOMEM;
	if (lock) {
		r = vmb_disk__image_lock(image, &c->lock_fd);
		if (r == VMB_ELOCKED)
			return vmb_error_set(VMB_ELOCKED, "%s is in use by a "
					     "running VM (QEMU holds a lock on "
					     "it): take snapshots through the "
					     "hypervisor", image);
		if (r)
			return r;
	}
	if ((r = vmb_disk_open(image, 0, &c->d)))
		return r;
	c->nl = vmb_disk_layers(c->d);
	if (c->nl > 64)
		c->nl = 64;
	for (int i = 0; i < c->nl; i++) {
		const char *p = vmb_disk_layer_path(c->d, i);
		if (!p || stat(p, &c->lst[i]) != 0)
			return vmb_error_set(VMB_EIO, "cannot stat layer %d "
					     "of %s", i, image);
	}
	return load_side(c);
}

static int find(struct ctx *c, const char *name)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->e[i].name, name))
			return (int)i;
	return -1;
}

static void drop_entry(struct ctx *c, size_t i)
{
	free(c->e[i].name);
	free(c->e[i].file);
	memmove(&c->e[i], &c->e[i + 1], (c->n - i - 1) * sizeof *c->e);
	c->n--;
}

/* Forget entries whose layer left the chain (after a crash) and remove
 * their files, which are ours (dir/base.NAME). */
static char *hidden_tmp(const char *path);

static void drop_stale(struct ctx *c)
{
	/* merged VDI layers a crash left (dir/.X.vmbtmp) */
	for (size_t i = 0; i <= c->n; i++) {
		char *p = join(c->dir, i < c->n ? c->e[i].file : c->base);
		char *h = p ? hidden_tmp(p) : NULL;
		if (h)
			unlink(h);
		free(h);
		free(p);
	}
	for (size_t i = 0; i < c->n;) {
		if (layer_of(c, c->e[i].file) >= 1) {
			i++;
			continue;
		}
		char *want = vmb_asprintf("%s.%s", c->base, c->e[i].name);
		if (want && !strcmp(want, c->e[i].file)) {
			char *p = join(c->dir, want);
			if (p)
				unlink(p);
			free(p);
		}
		free(want);
		drop_entry(c, i);
	}
}

static int write_overlay_tmp(struct ctx *c, const char *tmp,
			     const char *backing, const char *bfmt,
			     uint64_t size, unsigned mode)
{
	unlink(tmp); /* left by an earlier crash */
	return vmb_disk__qcow2_write_layer(tmp, size, backing, bfmt, NULL, 0,
					   mode);
}

/* ---- native (VDI, VMDK) layers ---- */

struct nat {
	int vdi;             /* else vmdk */
	uint64_t unit;       /* grain / block bytes of the new layer */
	int has_id;          /* keep this identity (a merge) */
	uint32_t cid;
	uint8_t uuid[16];
	int has_parent;      /* else a full (base) image */
	char *phint;         /* vmdk: parentFileNameHint */
	uint32_t pcid;
	uint8_t puuid[16], pmod[16];
};

static int is_native(const char *fmt)
{
	return fmt && (!strcmp(fmt, "vdi") || !strcmp(fmt, "vmdk"));
}

static int nat_unit(struct nat *n, uint64_t unit, const char *path)
{
	if (n->vdi) {
		/* VirtualBox wants a differencing image's blocks to be its
		 * parent's; the writer takes 64 KiB .. 64 MiB */
		if (!vmb_is_pow2(unit) || unit < 65536 || unit > (64u << 20))
			return vmb_error_set(VMB_ENOTSUP, "%s: VDI block size "
					     "%llu is not supported for "
					     "snapshot layers (use --format "
					     "qcow2)", path,
					     (unsigned long long)unit);
	} else if (!vmb_is_pow2(unit) || unit < 4096 || unit > (1u << 20)) {
		unit = 65536;
	}
	n->unit = unit;
	return 0;
}

/* An empty layer over the file @p path (named @p hint beside it). */
static int nat_over(struct nat *n, const char *fmt, const char *path,
		    const char *hint)
{
	int r;
	memset(n, 0, sizeof *n);
	n->vdi = !strcmp(fmt, "vdi");
	n->has_parent = 1;
	if (n->vdi) {
		vmb_vdi_ids id;
		if ((r = vmb_disk__vdi_ids(path, &id)))
			return r;
		memcpy(n->puuid, id.uuid, 16);
		memcpy(n->pmod, id.modify, 16);
		return nat_unit(n, id.block_size, path);
	}
	vmb_vmdk_info vi;
	if ((r = vmb_disk__vmdk_info(path, &vi)))
		return r;
	n->pcid = vi.has_cid ? vi.cid : 0xffffffffu;
	r = nat_unit(n, vi.grain, path);
	vmb_disk__vmdk_info_free(&vi);
	if (!r && !(n->phint = vmb_strdup(hint)))
		r = VMB_ENOMEM;
	return r;
}

/*
 * The merge of layer @p apath (A) with the one below it, @p lpath (L):
 * A's identity, L's parent reference (none if L is a base).
 */
static int nat_merge(struct nat *n, const char *fmt, const char *apath,
		     const char *lpath, int l_has_parent)
{
	int r;
	memset(n, 0, sizeof *n);
	n->vdi = !strcmp(fmt, "vdi");
	n->has_parent = l_has_parent;
	if (n->vdi) {
		vmb_vdi_ids a, l;
		if ((r = vmb_disk__vdi_ids(apath, &a)))
			return r;
		n->has_id = 1;
		memcpy(n->uuid, a.uuid, 16);
		if (l_has_parent) {
			if ((r = vmb_disk__vdi_ids(lpath, &l)))
				return r;
			if (l.type != 4)
				return vmb_error_set(VMB_ECORRUPT, "%s: not a "
						     "differencing image",
						     lpath);
			memcpy(n->puuid, l.parent, 16);
			memcpy(n->pmod, l.parent_modify, 16);
		}
		return nat_unit(n, a.block_size, apath);
	}
	vmb_vmdk_info a, l;
	if ((r = vmb_disk__vmdk_info(apath, &a)))
		return r;
	n->has_id = a.has_cid;
	n->cid = a.cid;
	r = nat_unit(n, a.grain, apath);
	vmb_disk__vmdk_info_free(&a);
	if (r || !l_has_parent)
		return r;
	if ((r = vmb_disk__vmdk_info(lpath, &l)))
		return r;
	if (!l.parent_hint)
		r = vmb_error_set(VMB_ECORRUPT, "%s: not a delta image",
				  lpath);
	n->phint = l.parent_hint;
	l.parent_hint = NULL;
	n->pcid = l.has_parent_cid ? l.parent_cid : 0xffffffffu;
	vmb_disk__vmdk_info_free(&l);
	return r;
}

enum { U_DATA = 1, U_ZERO = 2, U_OTHER = 4 };

struct umap {
	uint8_t *st;
	uint64_t n, unit;
	int keep;
};

static int umap_cb(const vmb_extent *e, void *payload)
{
	struct umap *m = payload;
	uint8_t bit = U_OTHER;
	if (e->layer >= 0 && e->layer < m->keep)
		bit = e->kind == VMB_EXTENT_DATA ? U_DATA :
		      e->kind == VMB_EXTENT_ZERO ? U_ZERO : U_OTHER;
	for (uint64_t u = e->offset / m->unit;
	     u <= (e->offset + e->length - 1) / m->unit && u < m->n; u++)
		m->st[u] |= bit;
	return 0;
}

/*
 * Write a native layer at @p path (removed first: a leftover) of @p size
 * guest bytes, to be renamed to @p final.  With @p src, every grain/block
 * that layers [0, @p keep) of @p src own (data or zeros) is stored, read
 * through @p src (so the layer shows exactly what @p src shows there);
 * zero ones as zero grains/blocks when the layer has a parent, else left
 * out.  The rest stays unallocated.  fsync'd; crash point "layer-data-written" before
 * the metadata.
 */
static int write_native(const char *path, const char *final, uint64_t size,
			const struct nat *n, vmb_disk *src, int keep,
			unsigned mode)
{
	const vmb_disk_format *F = n->vdi ? &vmb_disk__vdi_format :
				   &vmb_disk__vmdk_format;
	struct umap m = { NULL, 0, n->unit, keep };
	uint8_t *buf = NULL;
	void *w = NULL;
	int r;

	unlink(path); /* left by an earlier crash */
	if (n->vdi)
		r = vmb_disk__vdi_create_layer(path, size, (uint32_t)n->unit,
					       n->has_id ? n->uuid : NULL,
					       n->has_parent ? n->puuid : NULL,
					       n->pmod, &w);
	else
		r = vmb_disk__vmdk_create_layer(path, strrchr(final, '/') ?
						strrchr(final, '/') + 1 : final,
						size, n->unit,
						n->has_id ? &n->cid : NULL,
						n->has_parent ? n->phint : NULL,
						n->pcid, &w);
	if (r)
		return r;
	if (src && keep > 0) {
		m.n = (size + n->unit - 1) / n->unit;
		m.st = vmb_calloc(m.n ? (size_t)m.n : 1, 1);
		buf = vmb_malloc((size_t)n->unit);
		if (!m.st || !buf) {
			r = VMB_ENOMEM;
			goto fail;
		}
		if ((r = vmb_disk_map(src, 0, size, umap_cb, &m)))
			goto fail;
		for (uint64_t u = 0; u < m.n; u++) {
			uint64_t g = u * n->unit;
			size_t len = (size_t)VMB_MIN(n->unit, size - g);
			int zero;
			if (!(m.st[u] & (U_DATA | U_ZERO)))
				continue; /* not ours: the parent's */
			if (m.st[u] == U_ZERO) {
				zero = 1;
			} else {
				if ((r = vmb_disk_read(src, buf, g, len)))
					goto fail;
				zero = vmb_is_zero(buf, len);
			}
			if (zero && !n->has_parent)
				continue; /* unallocated reads as zeros */
			if (zero)
				r = n->vdi ? vmb_disk__vdi_zero(w, g, len) :
					     vmb_disk__vmdk_zero(w, g, len);
			else
				r = F->write(w, g, buf, len);
			if (r)
				goto fail;
		}
	}
	vmb_disk__crash_point("layer-data-written");
	r = F->finish(w); /* frees w; removes the file if it fails */
	w = NULL;
	if (!r && mode && chmod(path, mode) != 0)
		r = vmb_error_set(VMB_EIO, "cannot chmod %s: %s", path,
				  strerror(errno));
	if (r)
		unlink(path);
	free(m.st);
	free(buf);
	return r;
fail:
	F->abort(w);
	free(m.st);
	free(buf);
	return r;
}

/* dir/.B.vmbtmp for dir/B */
static char *hidden_tmp(const char *path)
{
	const char *s = strrchr(path, '/');
	if (!s)
		return vmb_asprintf(".%s.vmbtmp", path);
	return vmb_asprintf("%.*s/.%s.vmbtmp", (int)(s - path), path, s + 1);
}

/*
 * create: (1) write the empty overlay at IMAGE.vmbtmp (backing
 * "base.NAME"), fsync; (2) hard-link IMAGE to IMAGE.NAME, fsync the
 * folder; (3) rename IMAGE.vmbtmp over IMAGE, fsync the folder: the
 * switch; (4) make IMAGE.NAME read-only and record NAME in the sidecar.
 * Before (3) IMAGE is untouched; after it the snapshot exists (its name
 * derived from the file name until (4)).
 */
VMB_EXTERN(int) vmb_image_snapshot_create(const char *image,
					  const char *name,
					  const char *format)
{
	struct ctx c;
	char *frozen = NULL, *fbase = NULL, *tmp = NULL;
	const char *fmt;
	struct nat n;
	struct stat st;
	int r, native = 0;

	memset(&n, 0, sizeof n);

	if (!valid_name(name))
		return vmb_error_set(VMB_EINVAL, "bad snapshot name '%s': use "
				     "1-64 of A-Z a-z 0-9 _ - . (not starting "
				     "with '.' or 'vmb')", name);
	if (format && strcmp(format, "qcow2") != 0 && !is_native(format))
		return vmb_error_set(VMB_ENOTSUP, "snapshot overlays of format "
				     "%s are not supported (use qcow2, or vdi "
				     "/ vmdk for images of that format)",
				     format);
	if ((r = ctx_open(&c, image, 1)))
		goto out;
	fmt = vmb_disk_format_name(c.d);
	native = is_native(fmt) && (!format || !strcmp(format, fmt));
	if (format && strcmp(format, "qcow2") != 0 && !native) {
		r = vmb_error_set(VMB_ENOTSUP, "%s is a %s image: a %s overlay "
				  "needs a %s image (use --format qcow2)",
				  image, fmt, format, format);
		goto out;
	}
	if (native && !strcmp(fmt, "vmdk")) {
		vmb_vmdk_info vi;
		if ((r = vmb_disk__vmdk_info(image, &vi)))
			goto out;
		if (!vi.single_file)
			r = vmb_error_set(VMB_ENOTSUP, "%s is a multi-file VMDK "
					  "(%s): renaming its descriptor would "
					  "not freeze its extent files; use "
					  "--format qcow2 for a qcow2 overlay",
					  image, vi.create_type ?
					  vi.create_type : "descriptor");
		vmb_disk__vmdk_info_free(&vi);
		if (r)
			goto out;
	}
	drop_stale(&c);
	if (find(&c, name) >= 0) {
		r = vmb_error_set(VMB_EEXISTS, "%s: snapshot '%s' exists",
				  image, name);
		goto out;
	}
	if (c.n >= MAX_SNAPS || c.nl >= 60) {
		r = vmb_error_set(VMB_ENOTSUP, "%s: too many snapshots", image);
		goto out;
	}
	fbase = vmb_asprintf("%s.%s", c.base, name);
	frozen = fbase ? join(c.dir, fbase) : NULL;
	tmp = vmb_asprintf("%s.vmbtmp", image);
	if (!fbase || !frozen || !tmp) {
		r = VMB_ENOMEM;
		goto out;
	}
	if (stat(image, &st) != 0) {
		r = vmb_error_set(VMB_EIO, "cannot stat %s", image);
		goto out;
	}
	{
		struct stat fs;
		if (lstat(frozen, &fs) == 0) {
			/* a create killed after its link: IMAGE.NAME is still
			 * IMAGE itself, unreferenced; start over */
			if (fs.st_dev == st.st_dev && fs.st_ino == st.st_ino &&
			    st.st_nlink == 2) {
				unlink(frozen);
			} else {
				r = vmb_error_set(VMB_EEXISTS, "%s exists "
						  "already", frozen);
				goto out;
			}
		}
	}
	if (stat(image, &st) != 0) {
		r = vmb_error_set(VMB_EIO, "cannot stat %s", image);
		goto out;
	}
	if (native) {
		/* IMAGE's file is the parent: IMAGE.NAME from (2) on */
		r = nat_over(&n, fmt, image, fbase);
		if (!r)
			r = write_native(tmp, image, vmb_disk_size(c.d), &n,
					 NULL, 0, st.st_mode & 07777);
	} else {
		r = write_overlay_tmp(&c, tmp, fbase, fmt, vmb_disk_size(c.d),
				      st.st_mode & 07777);
	}
	if (r)
		goto out;
	vmb_disk__crash_point("snap-overlay-written");
	if (link(image, frozen) != 0) {
		r = vmb_error_set(VMB_EIO, "cannot link %s to %s: %s", image,
				  frozen, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if ((r = sync_dir(c.dir)))
		goto out;
	vmb_disk__crash_point("snap-linked");
	if (rename(tmp, image) != 0) {
		r = vmb_error_set(VMB_EIO, "cannot rename %s to %s: %s", tmp,
				  image, strerror(errno));
		unlink(frozen);
		unlink(tmp);
		goto out;
	}
	if ((r = sync_dir(c.dir)))
		goto out;
	vmb_disk__crash_point("snap-renamed");
	chmod(frozen, st.st_mode & 07555);
	if (!c.e && !(c.e = vmb_calloc(MAX_SNAPS, sizeof *c.e))) {
		r = VMB_ENOMEM;
		goto out;
	}
	c.e[c.n].name = vmb_strdup(name);
	c.e[c.n].file = vmb_strdup(fbase);
	c.e[c.n].created = (int64_t)time(NULL);
	c.n++;
	if (!c.e[c.n - 1].name || !c.e[c.n - 1].file) {
		r = VMB_ENOMEM;
		goto out;
	}
	r = save_side(&c);
	vmb_disk__crash_point("snap-sidecar");
out:
	free(n.phint);
	free(frozen);
	free(fbase);
	free(tmp);
	ctx_free(&c);
	return r;
}

static int cmp_layer(const void *a, const void *b)
{
	const vmb_image_snapshot *x = a, *y = b;
	return y->layer - x->layer; /* bottom (oldest) first */
}

VMB_EXTERN(int) vmb_image_snapshot_list(const char *image,
					vmb_image_snapshot **list,
					size_t *count)
{
	struct ctx c;
	vmb_image_snapshot *l = NULL;
	size_t n = 0;
	int r;
	*list = NULL;
	*count = 0;
	if ((r = ctx_open(&c, image, 0)))
		goto out;
	l = vmb_calloc((size_t)c.nl + c.n + 1, sizeof *l);
	if (!l) {
		r = VMB_ENOMEM;
		goto out;
	}
	for (int i = 1; i < c.nl; i++) {
		const char *p = vmb_disk_layer_path(c.d, i);
		const char *fb = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
		int k = -1;
		for (size_t j = 0; j < c.n && k < 0; j++)
			if (layer_of(&c, c.e[j].file) == i)
				k = (int)j;
		if (k >= 0) {
			l[n].name = vmb_strdup(c.e[k].name);
			l[n].created = c.e[k].created;
		} else if (!strncmp(fb, c.base, strlen(c.base)) &&
			   fb[strlen(c.base)] == '.' &&
			   valid_name(fb + strlen(c.base) + 1)) {
			/* no sidecar entry (crash): derived from the name */
			l[n].name = vmb_strdup(fb + strlen(c.base) + 1);
			l[n].created = (int64_t)c.lst[i].st_mtime;
		} else {
			continue; /* a backing file that is not a snapshot */
		}
		l[n].file = vmb_strdup(p);
		l[n].layer = i;
		if (!l[n].name || !l[n].file) {
			n++;
			r = VMB_ENOMEM;
			goto out;
		}
		n++;
	}
	qsort(l, n, sizeof *l, cmp_layer);
	*list = l;
	*count = n;
	l = NULL;
	n = 0;
out:
	vmb_image_snapshot_list_free(l, n);
	ctx_free(&c);
	return r;
}

VMB_EXTERN(void) vmb_image_snapshot_list_free(vmb_image_snapshot *list,
					      size_t count)
{
	for (size_t i = 0; list && i < count; i++) {
		free(list[i].name);
		free(list[i].file);
	}
	free(list);
}

/* The layer of snapshot @p name: from the sidecar, else by file name. */
static int snap_layer(struct ctx *c, const char *name, char **fbase)
{
	int i = find(c, name), k;
	*fbase = vmb_strdup(i >= 0 ? c->e[i].file : "");
	if (!*fbase)
		return VMB_ENOMEM;
	if (i < 0) {
		free(*fbase);
		*fbase = vmb_asprintf("%s.%s", c->base, name);
		if (!*fbase)
			return VMB_ENOMEM;
	}
	k = layer_of(c, *fbase);
	if (k < 1)
		return vmb_error_set(VMB_ENOTFOUND, "%s has no snapshot '%s'",
				     c->image, name);
	return k;
}

/*
 * revert: (1) write a fresh overlay over NAME's layer at IMAGE.vmbtmp,
 * fsync; (2) rename it over IMAGE, fsync the folder: the switch;
 * (3) drop the newer snapshots from the sidecar; (4) remove their files.
 * A crash before (2) changes nothing; after it, leftovers are cleaned by
 * the next revert/delete.
 */
VMB_EXTERN(int) vmb_image_snapshot_revert(const char *image,
					  const char *name)
{
	struct ctx c;
	char *fbase = NULL, *tmp = NULL, *lpath = NULL;
	vmb_disk *ld = NULL;
	struct nat n;
	struct stat st;
	char *drop[64];
	int r, k, ndrop = 0;

	memset(&n, 0, sizeof n);

	if ((r = ctx_open(&c, image, 1)))
		goto out;
	if ((k = r = snap_layer(&c, name, &fbase)) < 0)
		goto out;
	r = 0;
	lpath = join(c.dir, fbase);
	tmp = vmb_asprintf("%s.vmbtmp", image);
	if (!lpath || !tmp) {
		r = VMB_ENOMEM;
		goto out;
	}
	if ((r = vmb_disk_open(lpath, 0, &ld)) || stat(image, &st) != 0) {
		if (!r)
			r = vmb_error_set(VMB_EIO, "cannot stat %s", image);
		goto out;
	}
	if (is_native(vmb_disk_format_name(c.d)) &&
	    !strcmp(vmb_disk_format_name(c.d), vmb_disk_format_name(ld))) {
		/* IMAGE is native: a fresh native layer of the same format */
		r = nat_over(&n, vmb_disk_format_name(ld), lpath, fbase);
		if (!r)
			r = write_native(tmp, image, vmb_disk_size(ld), &n,
					 NULL, 0, st.st_mode & 07777);
	} else {
		r = write_overlay_tmp(&c, tmp, fbase,
				      vmb_disk_format_name(ld),
				      vmb_disk_size(ld), st.st_mode & 07777);
	}
	if (r)
		goto out;
	vmb_disk__crash_point("revert-written");
	/* layers above NAME's that are ours (base.X): removed after */
	for (int i = 1; i < k && i < 64 && ndrop < 64; i++) {
		const char *p = vmb_disk_layer_path(c.d, i);
		const char *fb = strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
		if (!strncmp(fb, c.base, strlen(c.base)) &&
		    fb[strlen(c.base)] == '.' &&
		    valid_name(fb + strlen(c.base) + 1))
			drop[ndrop++] = vmb_strdup(p);
	}
	if (rename(tmp, image) != 0) {
		r = vmb_error_set(VMB_EIO, "cannot rename %s to %s: %s", tmp,
				  image, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if ((r = sync_dir(c.dir)))
		goto out;
	vmb_disk__crash_point("revert-renamed");
	/* the chain is now IMAGE + layers k..: entries above k are stale */
	vmb_disk_close(c.d);
	c.d = NULL;
	if ((r = vmb_disk_open(image, 0, &c.d)))
		goto out;
	c.nl = vmb_disk_layers(c.d);
	for (int i = 0; i < c.nl && i < 64; i++)
		stat(vmb_disk_layer_path(c.d, i), &c.lst[i]);
	drop_stale(&c);
	r = save_side(&c);
	vmb_disk__crash_point("revert-sidecar");
	for (int i = 0; !r && i < ndrop; i++)
		if (drop[i])
			unlink(drop[i]);
out:
	for (int i = 0; i < ndrop; i++)
		free(drop[i]);
	free(n.phint);
	vmb_disk_close(ld);
	free(fbase);
	free(tmp);
	free(lpath);
	ctx_free(&c);
	return r;
}

/*
 * delete: NAME's layer L and the layer A above it (A may be IMAGE) are
 * merged: (1) a new file A.vmbtmp gets every cluster A or L owns (read
 * through A's chain, so it holds A's state exactly) over L's own backing
 * file, fsync; (2) it is renamed over A, fsync the folder: the switch,
 * L is no longer referenced; (3) NAME leaves the sidecar; (4) L's file is
 * removed.  A crash before (2) changes nothing; after it, L is an orphan
 * the next revert/delete removes.
 */
VMB_EXTERN(int) vmb_image_snapshot_delete(const char *image,
					  const char *name)
{
	struct ctx c;
	char *fbase = NULL, *tmp = NULL, *lpath = NULL, *bk = NULL,
	     *bkfmt = NULL;
	const char *apath, *afmt;
	vmb_disk *src = NULL;
	struct nat n;
	struct stat st;
	int r, k, native;

	memset(&n, 0, sizeof n);
	if ((r = ctx_open(&c, image, 1)))
		goto out;
	if ((k = r = snap_layer(&c, name, &fbase)) < 0)
		goto out;
	r = 0;
	apath = vmb_disk_layer_path(c.d, k - 1);
	afmt = vmb_disk_layer_format(c.d, k - 1);
	native = is_native(afmt);
	lpath = join(c.dir, fbase);
	tmp = !apath ? NULL : native && !strcmp(afmt, "vdi") ?
	      hidden_tmp(apath) : vmb_asprintf("%s.vmbtmp", apath);
	if (!lpath || !tmp || !apath) {
		r = VMB_ENOMEM;
		goto out;
	}
	if (native) {
		/* A and L merge into a native layer of A's format that keeps
		 * A's identity (its children's parent reference) and takes
		 * L's parent reference, or none when L is the base */
		if (strcmp(vmb_disk_layer_format(c.d, k), afmt) != 0) {
			r = vmb_error_set(VMB_ENOTSUP, "%s: snapshot '%s' is a "
					  "%s layer under a %s layer", image,
					  name, vmb_disk_layer_format(c.d, k),
					  afmt);
			goto out;
		}
		r = nat_merge(&n, afmt, apath, lpath,
			      k + 1 < vmb_disk_layers(c.d));
		if (r)
			goto out;
	} else if (strcmp(afmt, "qcow2") != 0) {
		r = vmb_error_set(VMB_ENOTSUP, "%s: the layer above snapshot "
				  "'%s' is not qcow2", image, name);
		goto out;
	} else if (k + 1 < vmb_disk_layers(c.d)) {
		/* L has a backing file: keep L's own reference to it */
		if (strcmp(vmb_disk_layer_format(c.d, k), "qcow2") != 0) {
			r = vmb_error_set(VMB_ENOTSUP, "%s: snapshot '%s' is "
					  "a %s layer with a parent", image,
					  name, vmb_disk_layer_format(c.d, k));
			goto out;
		}
		if ((r = vmb_disk__qcow2_backing(lpath, &bk, &bkfmt)))
			goto out;
		if (!bkfmt)
			bkfmt = vmb_strdup(vmb_disk_layer_format(c.d, k + 1));
	}
	if ((r = vmb_disk_open(apath, 0, &src)) || stat(apath, &st) != 0) {
		if (!r)
			r = vmb_error_set(VMB_EIO, "cannot stat %s", apath);
		goto out;
	}
	unlink(tmp);
	if (native)
		r = write_native(tmp, apath, vmb_disk_size(src), &n, src, 2,
				 st.st_mode & 07777);
	else
		r = vmb_disk__qcow2_write_layer(tmp, vmb_disk_size(src), bk,
						bkfmt, src, 2,
						st.st_mode & 07777);
	if (r)
		goto out;
	vmb_disk__crash_point("delete-merged");
	if (rename(tmp, apath) != 0) {
		r = vmb_error_set(VMB_EIO, "cannot rename %s to %s: %s", tmp,
				  apath, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if ((r = sync_dir(c.dir)))
		goto out;
	vmb_disk__crash_point("delete-renamed");
	vmb_disk_close(c.d);
	c.d = NULL;
	if ((r = vmb_disk_open(image, 0, &c.d)))
		goto out;
	c.nl = vmb_disk_layers(c.d);
	for (int i = 0; i < c.nl && i < 64; i++)
		stat(vmb_disk_layer_path(c.d, i), &c.lst[i]);
	drop_stale(&c); /* NAME's layer left the chain: entry and file go */
	r = save_side(&c);
	vmb_disk__crash_point("delete-sidecar");
	if (!r && layer_of(&c, fbase) < 0)
		unlink(lpath); /* ours, even without a sidecar entry */
out:
	free(n.phint);
	vmb_disk_close(src);
	free(fbase);
	free(tmp);
	free(lpath);
	free(bk);
	free(bkfmt);
	ctx_free(&c);
	return r;
}
