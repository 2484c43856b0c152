/*
 * The format-independent part of disk access: probing, chains of backing
 * files, the composed allocation map and reads, and writers.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>
#include "common/util.h"
#include "format.h"

static const vmb_disk_format *const formats[] = {
	&vmb_disk__qcow2_format,
	&vmb_disk__vmdk_format,
	&vmb_disk__vdi_format,
	&vmb_disk__raw_format, /* always last */
};

struct layer {
	const vmb_disk_format *fmt;
	void *state;
	vmb_layer_info info;
	char *path;
	struct stat st; /* identity: dev, inode, size, mtime */
};

struct vmb_disk {
	/* custom disks (vmb_disk_new) */
	const vmb_disk_ops *ops;
	void *data;
	/* image chains */
	int nlayers;
	struct layer layers[VMB_DISK_MAX_CHAIN];
};

/* A damaged image file is bad input, not damaged backup data. */
static int image_err(int r)
{
	if (r == VMB_ECORRUPT)
		return vmb_error_set(VMB_EFORMAT, "%s", vmb_error_message());
	return r;
}

const vmb_disk_format *vmb_disk__format_by_name(const char *name)
{
	for (size_t i = 0; i < VMB_ARRAY_SIZE(formats); i++)
		if (name && strcmp(formats[i]->name, name) == 0)
			return formats[i];
	return NULL;
}

void vmb_disk__prefer_cache(vmb_disk *d, int on)
{
	for (int i = 0; d && i < d->nlayers; i++)
		if (d->layers[i].fmt == &vmb_disk__raw_format)
			vmb_disk__raw_prefer_cache(d->layers[i].state, on);
}

void vmb_disk__layer_info_free(vmb_layer_info *info)
{
	free(info->backing_path);
	free(info->backing_format);
	info->backing_path = info->backing_format = NULL;
}

VMB_EXTERN(const char *) vmb_disk_format_extension(const char *format)
{
	const vmb_disk_format *f = vmb_disk__format_by_name(format);
	return f ? f->extension : NULL;
}

VMB_EXTERN(int) vmb_disk_format_parse(const char *spec, char format[16],
				      const char **subformat)
{
	static const char *const vmdk_subs[] = {
		"monolithicSparse", "streamOptimized", "monolithicFlat" };
	const char *colon = spec ? strchr(spec, ':') : NULL;
	const char *sub = NULL;
	size_t n;
	if (!spec || !*spec)
		return vmb_error_set(VMB_EINVAL, "empty disk format");
	n = colon ? (size_t)(colon - spec) : strlen(spec);
	if (n >= 16)
		return vmb_error_set(VMB_EINVAL, "unknown disk format '%.40s'",
				     spec);
	memcpy(format, spec, n);
	format[n] = 0;
	if (!vmb_disk_format_extension(format))
		return vmb_error_set(VMB_EINVAL, "unknown disk format '%s' "
				     "(raw, qcow2, vmdk or vdi)", format);
	if (colon) {
		const char *want = colon + 1;
		/* qemu-img's spelling is accepted too: vmdk:subformat=X */
		if (!strncmp(want, "subformat=", 10))
			want += 10;
		if (strcmp(format, "vmdk"))
			return vmb_error_set(VMB_EINVAL, "format %s has no "
					     "subformats (only vmdk does)",
					     format);
		for (size_t i = 0; i < sizeof vmdk_subs / sizeof *vmdk_subs;
		     i++)
			if (!strcasecmp(want, vmdk_subs[i]))
				sub = vmdk_subs[i];
		if (!sub)
			return vmb_error_set(VMB_EINVAL, "unknown vmdk "
					     "subformat '%.40s' "
					     "(monolithicSparse, streamOptimized "
					     "or monolithicFlat)", want);
	}
	if (subformat)
		*subformat = sub;
	return 0;
}

static int probe_file(const char *path, const vmb_disk_format **out)
{
	uint8_t *head;
	struct stat st;
	int fd, best = 0;
	int64_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return vmb_error_set(e == ENOENT ? VMB_ENOTFOUND :
				     e == EACCES ? VMB_EACCES : VMB_EIO,
				     "cannot open %s: %s", path, strerror(e));
	}
	if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
		close(fd);
		return vmb_error_set(VMB_EINVAL, "%s is not a disk image file",
				     path);
	}
	head = vmb_malloc(VMB_DISK_PROBE_BYTES);
	if (!head) {
		close(fd);
		return VMB_ENOMEM;
	}
	n = vmb_pread_full(fd, head, VMB_DISK_PROBE_BYTES, 0);
	close(fd);
	if (n < 0) {
		free(head);
		return vmb_error_set(VMB_EIO, "cannot read %s: %s", path,
				     strerror((int)-n));
	}
	*out = &vmb_disk__raw_format;
	for (size_t i = 0; i + 1 < VMB_ARRAY_SIZE(formats); i++) {
		int s = formats[i]->probe(head, (size_t)n, (uint64_t)st.st_size);
		if (s > best) {
			best = s;
			*out = formats[i];
		}
	}
	free(head);
	return 0;
}

VMB_EXTERN(int) vmb_disk_probe(const char *path, const char **format)
{
	const vmb_disk_format *f;
	int r = probe_file(path, &f);
	if (r == 0)
		*format = f->name;
	return r;
}

static char *resolve_backing(const char *child, const char *backing)
{
	char *dup, *dir, *out;
	if (backing[0] == '/')
		return vmb_strdup(backing);
	dup = vmb_strdup(child);
	if (!dup)
		return NULL;
	dir = dirname(dup);
	out = vmb_asprintf("%s/%s", dir, backing);
	free(dup);
	return out;
}

/* VDI-style parents: find the file in the child's folder whose uuid
 * matches.  Bounded: at most 4096 directory entries are looked at. */
static char *find_parent_by_uuid(const char *child,
				 const vmb_disk_format *fmt,
				 const uint8_t uuid[16])
{
	char *dup = vmb_strdup(child), *dir, *found = NULL;
	DIR *d;
	struct dirent *e;
	int seen = 0;
	if (!dup)
		return NULL;
	dir = dirname(dup);
	d = opendir(dir);
	while (d && !found && (e = readdir(d)) && seen++ < 4096) {
		char *p;
		const vmb_disk_format *pf;
		void *st = NULL;
		vmb_layer_info info;
		vmb_layer_open_options o = { 1, NULL };
		if (e->d_name[0] == '.')
			continue;
		p = vmb_asprintf("%s/%s", dir, e->d_name);
		if (!p)
			break;
		memset(&info, 0, sizeof info);
		if (probe_file(p, &pf) == 0 && pf == fmt &&
		    fmt->open(p, &o, &st, &info) == 0) {
			if (info.has_uuid && memcmp(info.uuid, uuid, 16) == 0)
				found = p, p = NULL;
			fmt->close(st);
		}
		vmb_disk__layer_info_free(&info);
		free(p);
	}
	if (d)
		closedir(d);
	free(dup);
	vmb_error_clear();
	return found;
}

static void close_layers(vmb_disk *d)
{
	for (int i = 0; i < d->nlayers; i++) {
		if (d->layers[i].fmt && d->layers[i].state)
			d->layers[i].fmt->close(d->layers[i].state);
		vmb_disk__layer_info_free(&d->layers[i].info);
		free(d->layers[i].path);
	}
	d->nlayers = 0;
}

/* RTUUID text (the VDI header layout): u32, u16, u16 little endian,
 * then 8 bytes as stored. */
static void uuid_text(const uint8_t u[16], char out[37])
{
	snprintf(out, 37,
		 "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 (unsigned)(u[0] | u[1] << 8 | u[2] << 16 | (uint32_t)u[3] << 24),
		 (unsigned)(u[4] | u[5] << 8), (unsigned)(u[6] | u[7] << 8),
		 u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* With an explicit chain: does @child's link name @parent? */
static int check_link(const struct layer *child, const struct layer *parent)
{
	char want[37], got[37];
	if (child->info.parent_by_uuid) {
		if (!parent->info.has_uuid ||
		    memcmp(child->info.parent_uuid, parent->info.uuid, 16)) {
			uuid_text(child->info.parent_uuid, want);
			if (parent->info.has_uuid)
				uuid_text(parent->info.uuid, got);
			else
				snprintf(got, sizeof got, "none");
			return vmb_error_set(VMB_EFORMAT, "%s: its header names "
					     "parent uuid {%s}, but %s, named "
					     "as its parent, has uuid {%s}",
					     child->path, want, parent->path,
					     got);
		}
		if (child->fmt != parent->fmt)
			return vmb_error_set(VMB_EFORMAT, "%s: parent %s is %s, "
					     "not %s", child->path,
					     parent->path, parent->fmt->name,
					     child->fmt->name);
		return 0;
	}
	if (child->info.backing_path && child->info.backing_path[0]) {
		char *b = resolve_backing(child->path,
					  child->info.backing_path);
		struct stat st;
		int same = b && stat(b, &st) == 0 &&
			   st.st_dev == parent->st.st_dev &&
			   st.st_ino == parent->st.st_ino;
		if (!same) {
			int r = vmb_error_set(VMB_EFORMAT, "%s: its backing "
					      "file is %s, not %s",
					      child->path,
					      child->info.backing_path,
					      parent->path);
			free(b);
			return r;
		}
		free(b);
	}
	return 0;
}

/*
 * Open a chain: @path and its backing files as the images name them, or,
 * with @explicit (@nexp layers below @path, nearest first), exactly those
 * files, each checked against the link its child records.
 */
static int open_chain(const char *path, const char *const *explicit,
		      size_t nexp, unsigned flags, vmb_disk **out)
{
	vmb_disk *d;
	char *cur;
	const char *hint = NULL;
	dev_t devs[VMB_DISK_MAX_CHAIN];
	ino_t inos[VMB_DISK_MAX_CHAIN];
	int r = 0;

	*out = NULL;
	d = vmb_calloc(1, sizeof *d);
	if (!d)
		return VMB_ENOMEM;
	cur = vmb_strdup(path);
	if (!cur) {
		free(d);
		return VMB_ENOMEM;
	}
	for (;;) {
		struct layer *l;
		const vmb_disk_format *fmt = NULL;
		vmb_layer_open_options o = { 1, NULL };
		struct stat st;

		if (d->nlayers >= VMB_DISK_MAX_CHAIN) {
			r = vmb_error_set(VMB_EFORMAT,
					  "%s: backing chain deeper than %d",
					  path, VMB_DISK_MAX_CHAIN);
			goto fail;
		}
		if (stat(cur, &st) != 0) {
			int e = errno;
			r = vmb_error_set(e == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
					  d->nlayers ? "backing file %s of %s: %s"
						     : "cannot open %s%.0s: %s",
					  cur, path, strerror(e));
			goto fail;
		}
		for (int i = 0; i < d->nlayers; i++) {
			if (devs[i] == st.st_dev && inos[i] == st.st_ino) {
				r = vmb_error_set(VMB_EFORMAT,
						  "%s: loop in backing chain at %s",
						  path, cur);
				goto fail;
			}
		}
		devs[d->nlayers] = st.st_dev;
		inos[d->nlayers] = st.st_ino;
		if (hint) {
			fmt = vmb_disk__format_by_name(hint);
			if (!fmt) {
				r = vmb_error_set(VMB_ENOTSUP,
						  "%s: backing format '%s' is not supported",
						  cur, hint);
				goto fail;
			}
		} else if (flags & VMB_DISK_OPEN_RAW) {
			fmt = &vmb_disk__raw_format;
		} else if ((r = probe_file(cur, &fmt)) != 0) {
			goto fail;
		}
		l = &d->layers[d->nlayers];
		memset(l, 0, sizeof *l);
		l->st = st;
		l->fmt = fmt;
		l->path = cur;
		cur = NULL;
		d->nlayers++;
		r = image_err(fmt->open(l->path, &o, &l->state, &l->info));
		if (r) {
			l->state = NULL;
			if (vmb_error_code() == 0)
				vmb_error_set(r, "cannot open %s as %s",
					      l->path, fmt->name);
			goto fail;
		}
		if (l->info.virtual_size > VMB_DISK_MAX_SIZE) {
			r = vmb_error_set(VMB_EFORMAT,
					  "%s: virtual size %llu is absurd",
					  l->path,
					  (unsigned long long)l->info.virtual_size);
			goto fail;
		}
		if (d->nlayers > 1 && explicit &&
		    (r = check_link(&d->layers[d->nlayers - 2], l)))
			goto fail;
		if (flags & VMB_DISK_OPEN_NO_BACKING)
			break;
		if (explicit) {
			int has_parent = (l->info.backing_path &&
					  l->info.backing_path[0]) ||
					 l->info.parent_by_uuid;
			size_t next = (size_t)d->nlayers - 1;
			if (next < nexp && !has_parent) {
				r = vmb_error_set(VMB_EFORMAT, "%s is not a "
						  "differencing image, but %s is "
						  "named as its parent",
						  l->path, explicit[next]);
				goto fail;
			}
			if (next >= nexp && has_parent) {
				r = vmb_error_set(VMB_EFORMAT, "%s is a "
						  "differencing image, but no "
						  "parent is named for it",
						  l->path);
				goto fail;
			}
			if (next >= nexp)
				break;
			if (!(cur = vmb_strdup(explicit[next]))) {
				r = VMB_ENOMEM;
				goto fail;
			}
			hint = NULL;
		} else if (l->info.backing_path && l->info.backing_path[0]) {
			cur = resolve_backing(l->path, l->info.backing_path);
			if (!cur) {
				r = VMB_ENOMEM;
				goto fail;
			}
			hint = l->info.backing_format;
		} else if (l->info.parent_by_uuid) {
			cur = find_parent_by_uuid(l->path, fmt,
						  l->info.parent_uuid);
			if (!cur) {
				r = vmb_error_set(VMB_ENOTFOUND,
						  "%s: parent image (by uuid) not found beside it",
						  l->path);
				goto fail;
			}
			hint = fmt->name;
		} else {
			break;
		}
	}
	*out = d;
	return 0;
fail:
	free(cur);
	close_layers(d);
	free(d);
	return r ? r : VMB_EGENERIC;
}

VMB_EXTERN(int) vmb_disk_open(const char *path, unsigned flags,
			      vmb_disk **out)
{
	return open_chain(path, NULL, 0, flags, out);
}

VMB_EXTERN(int) vmb_disk_open_layers(const char *const *paths, size_t n,
				     vmb_disk **out)
{
	*out = NULL;
	if (!paths || n < 1 || n > VMB_DISK_MAX_CHAIN)
		return vmb_error_set(VMB_EINVAL, "vmb_disk_open_layers: "
				     "between 1 and %d layers",
				     VMB_DISK_MAX_CHAIN);
	return open_chain(paths[0], paths + 1, n - 1, 0, out);
}

VMB_EXTERN(int) vmb_disk_layer_uuid(const vmb_disk *d, int i,
				    char uuid[37], char parent[37])
{
	const struct layer *l;
	if (!d || d->ops || i < 0 || i >= d->nlayers)
		return vmb_error_set(VMB_EINVAL, "no layer %d", i);
	l = &d->layers[i];
	uuid[0] = parent[0] = 0;
	if (!l->info.has_uuid)
		return vmb_error_set(VMB_ENOTSUP, "%s: a %s image has no "
				     "uuid", l->path, l->fmt->name);
	uuid_text(l->info.uuid, uuid);
	if (l->info.parent_by_uuid)
		uuid_text(l->info.parent_uuid, parent);
	return 0;
}

VMB_EXTERN(int) vmb_disk_new(const vmb_disk_ops *ops, void *data,
			     vmb_disk **out)
{
	vmb_disk *d;
	*out = NULL;
	if (!ops || ops->version < 1 || !ops->size || !ops->read)
		return vmb_error_set(VMB_EINVAL,
				     "vmb_disk_new: incomplete disk ops");
	d = vmb_calloc(1, sizeof *d);
	if (!d)
		return VMB_ENOMEM;
	d->ops = ops;
	d->data = data;
	*out = d;
	return 0;
}

int vmb_disk__changes(vmb_disk *d, const char *parent_state,
		      vmb_extent_fn fn, void *payload, const char **source,
		      char **new_state)
{
	*source = NULL;
	*new_state = NULL;
	if (!d->ops || d->ops->version < 2 || !d->ops->changes)
		return 1;
	return d->ops->changes(d->data, parent_state, fn, payload, source,
			       new_state);
}

VMB_EXTERN(void) vmb_disk_close(vmb_disk *d)
{
	if (!d)
		return;
	if (d->ops) {
		if (d->ops->close)
			d->ops->close(d->data);
	} else {
		close_layers(d);
	}
	free(d);
}

VMB_EXTERN(uint64_t) vmb_disk_size(const vmb_disk *d)
{
	if (d->ops)
		return d->ops->size(d->data);
	return d->layers[0].info.virtual_size;
}

VMB_EXTERN(const char *) vmb_disk_format_name(const vmb_disk *d)
{
	if (d->ops)
		return d->ops->format ? d->ops->format : "custom";
	return d->layers[0].fmt->name;
}

VMB_EXTERN(int) vmb_disk_layer_identity(const vmb_disk *d, int i,
					 char out[96])
{
	const struct stat *st;
	if (d->ops || i < 0 || i >= d->nlayers)
		return vmb_error_set(VMB_ENOTSUP, "no layer identity");
	st = &d->layers[i].st;
	/* a block device's times do not change when it is written */
	if (!S_ISREG(st->st_mode))
		return vmb_error_set(VMB_ENOTSUP, "no identity for %s: not a "
				     "regular file", d->layers[i].path);
	snprintf(out, 96, "%llx:%llx:%llu:%lld.%09ld",
		 (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
		 (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec,
		 st->st_mtim.tv_nsec);
	return 0;
}

VMB_EXTERN(int) vmb_disk_layer_times(const vmb_disk *d, int i,
				      int64_t *mtime_ns, int64_t *ctime_ns)
{
	const struct stat *st;
	if (d->ops || i < 0 || i >= d->nlayers ||
	    !S_ISREG(d->layers[i].st.st_mode))
		return vmb_error_set(VMB_ENOTSUP, "no file times");
	st = &d->layers[i].st;
	*mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 +
		    st->st_mtim.tv_nsec;
	*ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 +
		    st->st_ctim.tv_nsec;
	return 0;
}

VMB_EXTERN(const char *) vmb_disk_layer_path(const vmb_disk *d, int i)
{
	return !d->ops && i >= 0 && i < d->nlayers ? d->layers[i].path : NULL;
}

VMB_EXTERN(const char *) vmb_disk_layer_format(const vmb_disk *d, int i)
{
	return !d->ops && i >= 0 && i < d->nlayers ? d->layers[i].fmt->name
						  : NULL;
}

VMB_EXTERN(int) vmb_disk_layers(const vmb_disk *d)
{
	return d->ops ? 1 : d->nlayers;
}

/* ---- composed map ---- */

struct emitter {
	vmb_extent_fn fn;
	void *payload;
	vmb_extent pending;
	int has_pending;
	int stopped;
};

static int emit(struct emitter *em, uint64_t off, uint64_t len, int kind,
		int layer)
{
	if (!len)
		return 0;
	if (kind == VMB_EXTENT_HOLE)
		layer = -1;
	if (em->has_pending && em->pending.kind == kind &&
	    em->pending.layer == layer &&
	    em->pending.offset + em->pending.length == off) {
		em->pending.length += len;
		return 0;
	}
	if (em->has_pending) {
		if (em->fn(&em->pending, em->payload)) {
			em->stopped = 1;
			return 1;
		}
	}
	em->pending.offset = off;
	em->pending.length = len;
	em->pending.kind = kind;
	em->pending.layer = layer;
	em->has_pending = 1;
	return 0;
}

static int map_layer(vmb_disk *d, int i, uint64_t off, uint64_t len,
		     struct emitter *em);

struct layer_walk {
	vmb_disk *d;
	int i;
	uint64_t next; /* expected next offset: checks the format's order */
	uint64_t end;
	struct emitter *em;
	int err;
};

static int layer_cb(const vmb_extent *e, void *payload)
{
	struct layer_walk *w = payload;
	uint64_t off = e->offset, len = e->length;

	/* a format must report contiguous, increasing extents in range */
	if (off != w->next || !len || !vmb_range_ok(off, len, w->end) ||
	    off + len > w->end || e->kind < 0 || e->kind > 2) {
		w->err = vmb_error_set(VMB_EFORMAT,
				       "%s: inconsistent allocation map at %llu",
				       w->d->layers[w->i].path,
				       (unsigned long long)off);
		return 1;
	}
	w->next = off + len;
	if (e->kind == VMB_EXTENT_HOLE && w->i + 1 < w->d->nlayers) {
		uint64_t bsize = w->d->layers[w->i + 1].info.virtual_size;
		uint64_t inside = off < bsize ? VMB_MIN(len, bsize - off) : 0;
		if (inside) {
			int r = map_layer(w->d, w->i + 1, off, inside, w->em);
			if (r) {
				w->err = r;
				return 1;
			}
			if (w->em->stopped)
				return 1;
		}
		if (emit(w->em, off + inside, len - inside,
			 VMB_EXTENT_HOLE, -1))
			return 1;
		return 0;
	}
	return emit(w->em, off, len, e->kind, w->i);
}

static int map_layer(vmb_disk *d, int i, uint64_t off, uint64_t len,
		     struct emitter *em)
{
	struct layer_walk w = { d, i, off, off + len, em, 0 };
	struct layer *l = &d->layers[i];
	int r = image_err(l->fmt->map(l->state, off, len, layer_cb, &w));
	if (w.err)
		return image_err(w.err);
	if (r < 0)
		return r;
	if (!em->stopped && w.next != off + len)
		return vmb_error_set(VMB_EFORMAT,
				     "%s: allocation map does not cover the disk",
				     l->path);
	return 0;
}

struct all_data {
	vmb_extent_fn fn;
	void *payload;
};

VMB_EXTERN(int) vmb_disk_map(vmb_disk *d, uint64_t offset, uint64_t length,
			     vmb_extent_fn fn, void *payload)
{
	struct emitter em = { fn, payload, { 0, 0, 0, 0 }, 0, 0 };
	uint64_t size = vmb_disk_size(d);
	int r;

	if (!vmb_range_ok(offset, length, size))
		return vmb_error_set(VMB_EINVAL,
				     "map range beyond the end of the disk");
	if (!length)
		return 0;
	if (d->ops) {
		if (d->ops->map)
			return d->ops->map(d->data, offset, length, fn,
					   payload);
		vmb_extent e = { offset, length, VMB_EXTENT_DATA, 0 };
		fn(&e, payload);
		return 0;
	}
	r = map_layer(d, 0, offset, length, &em);
	if (r)
		return r;
	if (em.has_pending && !em.stopped)
		fn(&em.pending, payload);
	return 0;
}

/* ---- composed read ---- */

static int read_layer(vmb_disk *d, int i, uint8_t *buf, uint64_t off,
		      uint64_t len);

struct read_walk {
	vmb_disk *d;
	int i;
	uint8_t *buf;
	uint64_t base;
	uint64_t next;
	uint64_t end;
	int err;
};

static int read_cb(const vmb_extent *e, void *payload)
{
	struct read_walk *w = payload;
	struct layer *l = &w->d->layers[w->i];
	uint64_t off = e->offset, len = e->length;
	uint8_t *p;
	int r = 0;

	if (off != w->next || !len || off + len > w->end || off + len < off) {
		w->err = vmb_error_set(VMB_EFORMAT,
				       "%s: inconsistent allocation map at %llu",
				       l->path, (unsigned long long)off);
		return 1;
	}
	w->next = off + len;
	p = w->buf + (off - w->base);
	switch (e->kind) {
	case VMB_EXTENT_DATA:
		r = image_err(l->fmt->read(l->state, p, off, (size_t)len));
		break;
	case VMB_EXTENT_ZERO:
		memset(p, 0, (size_t)len);
		break;
	default:
		if (w->i + 1 < w->d->nlayers) {
			uint64_t bsize = w->d->layers[w->i + 1].info.virtual_size;
			uint64_t inside = off < bsize ?
					  VMB_MIN(len, bsize - off) : 0;
			if (inside)
				r = read_layer(w->d, w->i + 1, p, off, inside);
			memset(p + inside, 0, (size_t)(len - inside));
		} else {
			memset(p, 0, (size_t)len);
		}
	}
	if (r) {
		w->err = r;
		return 1;
	}
	return 0;
}

static int read_layer(vmb_disk *d, int i, uint8_t *buf, uint64_t off,
		      uint64_t len)
{
	struct read_walk w = { d, i, buf, off, off, off + len, 0 };
	struct layer *l = &d->layers[i];
	int r = image_err(l->fmt->map(l->state, off, len, read_cb, &w));
	if (w.err)
		return image_err(w.err);
	if (r < 0)
		return r;
	if (w.next != off + len)
		return vmb_error_set(VMB_EFORMAT,
				     "%s: allocation map does not cover the disk",
				     l->path);
	return 0;
}

VMB_EXTERN(int) vmb_disk_read(vmb_disk *d, void *buf, uint64_t offset,
			      size_t length)
{
	if (!vmb_range_ok(offset, length, vmb_disk_size(d)))
		return vmb_error_set(VMB_EINVAL,
				     "read beyond the end of the disk");
	if (!length)
		return 0;
	if (d->ops)
		return d->ops->read(d->data, buf, offset, length);
	return read_layer(d, 0, buf, offset, length);
}

/* ---- inspect ---- */

struct count_walk {
	uint64_t data, zero;
};

static int count_cb(const vmb_extent *e, void *payload)
{
	struct count_walk *c = payload;
	if (e->kind == VMB_EXTENT_DATA)
		c->data += e->length;
	else if (e->kind == VMB_EXTENT_ZERO)
		c->zero += e->length;
	return 0;
}

VMB_EXTERN(int) vmb_disk_inspect_json(vmb_disk *d, char **json)
{
	vmb_buf b;
	struct count_walk c = { 0, 0 };
	int r;

	*json = NULL;
	r = vmb_disk_map(d, 0, vmb_disk_size(d), count_cb, &c);
	if (r)
		return r;
	vmb_buf_init(&b);
	vmb_buf_puts(&b, "{\"format\":");
	vmb_buf_json_str(&b, vmb_disk_format_name(d));
	if (!d->ops) {
		vmb_buf_puts(&b, ",\"file\":");
		vmb_buf_json_str(&b, d->layers[0].path);
	}
	vmb_buf_printf(&b, ",\"virtual_size\":%llu,\"allocated_bytes\":%llu,"
		       "\"zero_bytes\":%llu",
		       (unsigned long long)vmb_disk_size(d),
		       (unsigned long long)c.data, (unsigned long long)c.zero);
	if (!d->ops && d->layers[0].fmt->describe) {
		char *extra = NULL;
		r = d->layers[0].fmt->describe(d->layers[0].state, &extra);
		if (r) {
			vmb_buf_free(&b);
			return r;
		}
		if (extra && extra[0]) {
			vmb_buf_puts(&b, ",");
			vmb_buf_puts(&b, extra);
		}
		free(extra);
	}
	vmb_buf_puts(&b, ",\"chain\":[");
	for (int i = 0; !d->ops && i < d->nlayers; i++) {
		vmb_buf_printf(&b, "%s{\"file\":", i ? "," : "");
		vmb_buf_json_str(&b, d->layers[i].path);
		vmb_buf_puts(&b, ",\"format\":");
		vmb_buf_json_str(&b, d->layers[i].fmt->name);
		vmb_buf_printf(&b, ",\"virtual_size\":%llu}",
			       (unsigned long long)d->layers[i].info.virtual_size);
	}
	vmb_buf_puts(&b, "]}");
	*json = vmb_buf_detach(&b);
	return *json ? 0 : VMB_ENOMEM;
}

/* ---- writers ---- */

static _Thread_local int finishing_nosync;

int vmb_disk__fsync(int fd)
{
	return finishing_nosync ? 0 : fsync(fd);
}

int vmb_disk__sync_close(int *fd, const char *path)
{
	int e;
	if (vmb_disk__fsync(*fd) != 0) {
		e = errno;
		close(*fd);
		*fd = -1;
		return vmb_error_set(e == ENOSPC ? VMB_ENOSPC : VMB_EIO,
				     "cannot sync %s: %s", path, strerror(e));
	}
	e = close(*fd) != 0 ? errno : 0;
	*fd = -1;
	if (e)
		return vmb_error_set(e == ENOSPC ? VMB_ENOSPC : VMB_EIO,
				     "cannot close %s: %s", path, strerror(e));
	return 0;
}

struct vmb_disk_writer {
	int nosync;
	const vmb_disk_format *fmt;
	void *state;
	uint64_t size;
	uint64_t next; /* lowest offset the next write may start at */
	int finished;
};

VMB_EXTERN(int) vmb_disk_writer_create(const char *path, const char *format,
				       uint64_t size,
				       const vmb_disk_writer_options *opts,
				       vmb_disk_writer **out)
{
	const vmb_disk_format *fmt = vmb_disk__format_by_name(format);
	vmb_disk_writer_options def = VMB_DISK_WRITER_INIT;
	vmb_disk_writer *w;
	struct stat st;
	int r;

	*out = NULL;
	if (!fmt || !fmt->create)
		return vmb_error_set(VMB_ENOTSUP,
				     "cannot write images in format '%s'",
				     format ? format : "(null)");
	if (lstat(path, &st) == 0)
		return vmb_error_set(VMB_EEXISTS, "%s already exists", path);
	if (size > VMB_DISK_MAX_SIZE)
		return vmb_error_set(VMB_EINVAL, "disk size too large");
	w = vmb_calloc(1, sizeof *w);
	if (!w)
		return VMB_ENOMEM;
	r = fmt->create(path, size, opts ? opts : &def, &w->state);
	if (r) {
		free(w);
		return r;
	}
	w->fmt = fmt;
	w->size = size;
	w->nosync = opts && opts->version >= 2 &&
		    (opts->flags & VMB_DISK_WRITER_NO_SYNC);
	*out = w;
	return 0;
}

VMB_EXTERN(int) vmb_disk_writer_write(vmb_disk_writer *w, uint64_t offset,
				      const void *buf, size_t length)
{
	if (w->finished)
		return vmb_error_set(VMB_EINVAL, "writer already finished");
	if (offset < w->next || !vmb_range_ok(offset, length, w->size))
		return vmb_error_set(VMB_EINVAL,
				     "disk writer: write at %llu out of order or range",
				     (unsigned long long)offset);
	if (!length)
		return 0;
	w->next = offset + length;
	return w->fmt->write(w->state, offset, buf, length);
}

int vmb_disk__writer_unordered(const vmb_disk_writer *w)
{
	/* raw writes are plain pwrites: any order, any thread */
	return w->fmt == &vmb_disk__raw_format;
}

int vmb_disk__writer_write_at(vmb_disk_writer *w, uint64_t offset,
			      const void *buf, size_t length)
{
	if (!vmb_disk__writer_unordered(w) || w->finished ||
	    !vmb_range_ok(offset, length, w->size))
		return vmb_error_set(VMB_EINVAL, "disk writer: unordered write "
				     "at %llu not allowed",
				     (unsigned long long)offset);
	return length ? w->fmt->write(w->state, offset, buf, length) : 0;
}

VMB_EXTERN(int) vmb_disk_writer_finish(vmb_disk_writer *w)
{
	int r;
	if (w->finished)
		return 0;
	finishing_nosync = w->nosync;
	r = w->fmt->finish(w->state);
	finishing_nosync = 0;
	w->state = NULL;
	w->finished = 1;
	return r;
}

VMB_EXTERN(void) vmb_disk_writer_free(vmb_disk_writer *w)
{
	if (!w)
		return;
	if (!w->finished && w->state)
		w->fmt->abort(w->state);
	free(w);
}
