/* Raw images: the file is the disk.  Holes come from SEEK_DATA/SEEK_HOLE. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/util.h"
#include "format.h"

struct raw {
	int fd;
	uint64_t size;
	char *path;
};

static int raw_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	return 1;
}

static int raw_open(const char *path, const vmb_layer_open_options *o,
		    void **layer, vmb_layer_info *info)
{
	struct raw *r;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
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
	int64_t n = vmb_pread_full(r->fd, buf, length, offset);
	if (n < 0)
		return vmb_error_set(VMB_EIO, "cannot read %s at %llu: %s",
				     r->path, (unsigned long long)offset,
				     strerror((int)-n));
	if ((size_t)n < length) /* file shrank under us */
		memset((char *)buf + n, 0, length - (size_t)n);
	return 0;
}

static void raw_close(void *layer)
{
	struct raw *r = layer;
	if (!r)
		return;
	close(r->fd);
	free(r->path);
	free(r);
}

/* writer */
struct raw_w {
	int fd;
	char *path;
	uint64_t size;
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
