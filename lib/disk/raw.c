/* Raw images: the file is the disk.  Holes come from SEEK_DATA/SEEK_HOLE. */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>
#include "common/util.h"
#include "format.h"

struct raw {
	int fd;
	int dfd;    /* the same file with O_DIRECT, or -1 */
	int force;  /* VMB_DIRECT_READ=1: direct even when cached */
	atomic_int direct; /* 0 once O_DIRECT reads failed with EINVAL
			    * (readers run in several threads) */
	atomic_int cached; /* auto mode reads through the page cache
			    * (vmb_disk__prefer_cache) */
	int regular; /* a regular file: its size is checked on every map */
	uint64_t size;
	char *path;
};

/*
 * Large aligned reads of a regular file that the page cache does not
 * hold bypass it (O_DIRECT): the device writes straight into the
 * caller's buffer.  The buffered read's copy out of the page cache was
 * the kernel's biggest share of a full backup's CPU (docs/benchmarks.md,
 * issue 15), and a backup reads each block once, so caching it buys
 * nothing.  A range that is mostly cached already (mincore) is read
 * from the cache, so a warm image costs no device reads; either way
 * the data is current (an O_DIRECT read writes back dirty pages in its
 * range first).  Only the 4 KiB-aligned body of a request goes direct;
 * an unaligned head (never: chunk and extent starts are aligned) or
 * tail (the end of a file whose size is no multiple of 4 KiB) is read
 * through the page cache.  Files or filesystems that refuse O_DIRECT
 * (tmpfs on older kernels: EINVAL at open or at the first read) take
 * the ordinary read, silently.
 *
 * VMB_DIRECT_READ=auto (the default) does the above, 0 never reads
 * direct, 1 reads direct even what is cached (tests, A/B runs).
 *
 * Direct reads pay where the reader is CPU-bound (a first backup
 * compresses every chunk).  Where it is bound by the disk (an
 * incremental without change tracking, a clone compared page by page:
 * nearly every chunk is hashed and dropped), the kernel's sequential
 * readahead keeps the device busier than a few direct reads in flight
 * (docs/benchmarks.md, 2026-12-08: a median 1.12 s buffered against 1.28 s
 * direct), so the backup asks for the page cache there
 * (vmb_disk__prefer_cache) and auto mode then never reads direct.
 */
#define DIRECT_MIN (256u << 10)
#define DIRECT_ALIGN 4096u

/* @return 0 off, 1 forced, 2 auto, -1 a bad value */
static int direct_mode(void)
{
	const char *e = getenv("VMB_DIRECT_READ");
	if (!e || !*e || !strcmp(e, "auto"))
		return 2;
	if (!strcmp(e, "0"))
		return 0;
	if (!strcmp(e, "1"))
		return 1;
	return -1;
}

/* 1 if at least half of the pages of the range are in the page cache
 * (or that cannot be told). */
static int mostly_cached(struct raw *r, uint64_t offset, size_t length)
{
	unsigned char vec[1024];
	long psl = sysconf(_SC_PAGESIZE);
	size_t ps = psl > 0 ? (size_t)psl : DIRECT_ALIGN;
	size_t pages, resident = 0, step;
	if (offset % ps || length % ps)
		return 1; /* mmap needs page offsets: read it buffered */
	pages = length / ps;
	for (size_t p = 0; p < pages; p += step) {
		size_t len;
		void *m;
		int e;
		step = pages - p < sizeof vec ? pages - p : sizeof vec;
		len = step * ps;
		m = mmap(NULL, len, PROT_READ, MAP_SHARED, r->fd,
			 (off_t)(offset + p * ps));
		if (m == MAP_FAILED)
			return 1;
		e = mincore(m, len, vec);
		munmap(m, len);
		if (e != 0)
			return 1;
		for (size_t k = 0; k < step; k++)
			resident += vec[k] & 1;
	}
	return resident * 2 >= pages;
}

/* @return bytes read (short of @length only at the end of the file, or
 * where O_DIRECT stopped serving the file: the caller reads the rest
 * buffered), or -errno. */
static int64_t direct_read(struct raw *r, void *buf, uint64_t offset,
			   size_t length)
{
	size_t done = 0;
	while (done < length) {
		ssize_t n = pread(r->dfd, (char *)buf + done, length - done,
				  (off_t)(offset + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EINVAL || errno == EOPNOTSUPP) {
				/* accepted at open, not for reads */
				atomic_store(&r->direct, 0);
				break;
			}
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
		if (done % DIRECT_ALIGN)
			break; /* the end of the file */
	}
	return (int64_t)done;
}

/* Error unless the file still has the size it had at open: a backup
 * must not store zeros for what was cut off under it. */
static int check_size(struct raw *r)
{
	struct stat st;
	if (!r->regular)
		return 0;
	if (fstat(r->fd, &st) != 0)
		return vmb_error_set(VMB_EIO, "cannot stat %s: %s", r->path,
				     strerror(errno));
	if ((uint64_t)st.st_size < r->size)
		return vmb_error_set(VMB_EIO, "%s shrank from %llu to %llu "
				     "bytes while it was read", r->path,
				     (unsigned long long)r->size,
				     (unsigned long long)st.st_size);
	return 0;
}

static int raw_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	return 1;
}

static int raw_open(const char *path, const vmb_layer_open_options *o,
		    void **layer, vmb_layer_info *info)
{
	struct raw *r;
	struct stat st;
	int mode = direct_mode(), fd;
	if (mode < 0)
		return vmb_error_set(VMB_EINVAL, "VMB_DIRECT_READ must be 0, 1 "
				     "or auto");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "cannot open %s: %s", path,
				     strerror(errno));
	if (fstat(fd, &st) != 0) {
		close(fd);
		return vmb_error_set(VMB_EIO, "cannot stat %s", path);
	}
	r = vmb_calloc(1, sizeof *r);
	if (!r) {
		close(fd);
		return VMB_ENOMEM;
	}
	r->fd = fd;
	r->regular = S_ISREG(st.st_mode);
	r->dfd = r->regular && mode > 0
		 ? open(path, O_RDONLY | O_CLOEXEC | O_DIRECT) : -1;
	r->force = mode == 1;
	atomic_init(&r->direct, r->dfd >= 0);
	atomic_init(&r->cached, 0);
	r->size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz = 0;
		if (ioctl(fd, BLKGETSIZE64, &sz) == 0)
			r->size = sz;
	}
	r->path = vmb_strdup(path);
	info->virtual_size = r->size;
	*layer = r;
	return 0;
}

static int raw_map(void *layer, uint64_t offset, uint64_t length,
		   vmb_extent_fn fn, void *payload)
{
	struct raw *r = layer;
	uint64_t pos = offset, end = offset + length;
	int rc = check_size(r); /* past a cut, SEEK_DATA would say holes */
	if (rc)
		return rc;
	while (pos < end) {
		off_t data = lseek(r->fd, (off_t)pos, SEEK_DATA);
		off_t hole;
		vmb_extent e;
		if (data < 0 || (uint64_t)data >= end) {
			if (data < 0 && errno != ENXIO) {
				/* no SEEK_DATA support: all data */
				e = (vmb_extent){ pos, end - pos,
						  VMB_EXTENT_DATA, 0 };
				return fn(&e, payload) ? 1 : 0;
			}
			e = (vmb_extent){ pos, end - pos, VMB_EXTENT_HOLE, 0 };
			return fn(&e, payload) ? 1 : 0;
		}
		if ((uint64_t)data > pos) {
			e = (vmb_extent){ pos, (uint64_t)data - pos,
					  VMB_EXTENT_HOLE, 0 };
			if (fn(&e, payload))
				return 1;
			pos = (uint64_t)data;
		}
		hole = lseek(r->fd, (off_t)pos, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > end)
			hole = (off_t)end;
		if ((uint64_t)hole <= pos)
			hole = (off_t)end;
		e = (vmb_extent){ pos, (uint64_t)hole - pos, VMB_EXTENT_DATA, 0 };
		if (fn(&e, payload))
			return 1;
		pos = (uint64_t)hole;
	}
	return 0;
}

static int raw_read(void *layer, void *buf, uint64_t offset, size_t length)
{
	struct raw *r = layer;
	size_t body = length & ~(size_t)(DIRECT_ALIGN - 1);
	int64_t n = 0;
	if (body >= DIRECT_MIN && atomic_load(&r->direct) &&
	    !(((uintptr_t)buf | offset) & (DIRECT_ALIGN - 1)) &&
	    (r->force || (!atomic_load(&r->cached) &&
			  !mostly_cached(r, offset, body))))
		n = direct_read(r, buf, offset, body);
	if (n >= 0 && (size_t)n < length) {
		/* the tail, the rest, or all of it through the page cache */
		int64_t m = vmb_pread_full(r->fd, (char *)buf + n,
					   length - (size_t)n,
					   offset + (uint64_t)n);
		n = m < 0 ? m : n + m;
	}
	if (n < 0)
		return vmb_error_set(VMB_EIO, "cannot read %s at %llu: %s",
				     r->path, (unsigned long long)offset,
				     strerror((int)-n));
	if ((size_t)n < length) /* never zeros for what was cut off */
		return vmb_error_set(VMB_EIO, "%s shrank while it was read "
				     "(ends at %llu, was %llu bytes)", r->path,
				     (unsigned long long)(offset + (uint64_t)n),
				     (unsigned long long)r->size);
	return 0;
}

void vmb_disk__raw_prefer_cache(void *layer, int on)
{
	struct raw *r = layer;
	atomic_store(&r->cached, on != 0);
}

static void raw_close(void *layer)
{
	struct raw *r = layer;
	if (!r)
		return;
	if (r->dfd >= 0)
		close(r->dfd);
	close(r->fd);
	free(r->path);
	free(r);
}

/* writer */
struct raw_w {
	int fd;
	char *path;
	uint64_t size;
	int behind; /* start writeback of each write at once (see raw_write) */
};

static int raw_create(const char *path, uint64_t size,
		      const vmb_layer_create_options *o, void **writer)
{
	struct raw_w *w;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return vmb_error_set(errno == EEXIST ? VMB_EEXISTS : VMB_EIO,
				     "cannot create %s: %s", path,
				     strerror(errno));
	if (ftruncate(fd, (off_t)size) != 0) {
		int e = errno;
		close(fd);
		unlink(path);
		return vmb_error_set(e == ENOSPC || e == EFBIG ? VMB_ENOSPC
							      : VMB_EIO,
				     "cannot size %s: %s", path, strerror(e));
	}
	w = vmb_calloc(1, sizeof *w);
	if (!w || !(w->path = vmb_strdup(path))) {
		free(w);
		close(fd);
		unlink(path);
		return VMB_ENOMEM;
	}
	w->fd = fd;
	w->size = size;
	w->behind = !(o && o->version >= 2 &&
		      (o->flags & VMB_DISK_WRITER_NO_SYNC));
	*writer = w;
	return 0;
}

static int raw_write(void *writer, uint64_t offset, const void *buf,
		     size_t length)
{
	struct raw_w *w = writer;
	const uint8_t *p = buf;
	const size_t blk = 4096;
	size_t i = 0;
	/* write runs of non-zero 4 KiB blocks; zero blocks stay holes */
	while (i < length) {
		size_t n = VMB_MIN(blk, length - i), j;
		if (vmb_is_zero(p + i, n)) {
			i += n;
			continue;
		}
		j = i + n;
		while (j < length) {
			size_t m = VMB_MIN(blk, length - j);
			if (vmb_is_zero(p + j, m))
				break;
			j += m;
		}
		int r = vmb_pwrite_full(w->fd, p + i, j - i, offset + i);
		if (r < 0)
			return vmb_error_set(r == -ENOSPC ? VMB_ENOSPC : VMB_EIO,
					     "cannot write %s: %s", w->path,
					     strerror(-r));
		/* When the image will be fsync'd at the end, start writing
		 * this range to the disk now (asynchronously) instead of
		 * leaving all of it to the final fsync: the disk writes while
		 * the restore decodes the next chunks, and the fsync waits
		 * only for the tail.  Durability still comes from the fsync;
		 * a failure here is only a lost hint. */
		if (w->behind)
			(void)sync_file_range(w->fd, (off64_t)(offset + i),
					      (off64_t)(j - i),
					      SYNC_FILE_RANGE_WRITE);
		i = j;
	}
	return 0;
}

static void raw_abort(void *writer)
{
	struct raw_w *w = writer;
	if (!w)
		return;
	close(w->fd);
	unlink(w->path);
	free(w->path);
	free(w);
}

static int raw_finish(void *writer)
{
	struct raw_w *w = writer;
	int r = vmb_disk__sync_close(&w->fd, w->path);
	if (r) {
		raw_abort(w); /* removes the partial file */
		return r;
	}
	free(w->path);
	free(w);
	return 0;
}

const vmb_disk_format vmb_disk__raw_format = {
	.version = VMB_DISK_FORMAT_VERSION,
	.name = "raw",
	.extension = "img",
	.probe = raw_probe,
	.open = raw_open,
	.map = raw_map,
	.read = raw_read,
	.close = raw_close,
	.create = raw_create,
	.write = raw_write,
	.finish = raw_finish,
	.abort = raw_abort,
};
