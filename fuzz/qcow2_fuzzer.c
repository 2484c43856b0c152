/*
 * Fuzz the qcow2 reader: the input is one qcow2 file (no backing chain).
 * Opens it, maps the whole disk, reads a few bounded ranges and describes
 * it.  Work per input is capped so that huge virtual sizes stay fast.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "vmbackup/disk.h"
#include "disk/format.h"
#include "disk/qcow2.h"

#define MAX_EXTENTS 4096
#define READ_CAP (4u << 20) /* bytes read per input */

struct walk {
	uint64_t off[16];
	uint64_t len[16];
	int n;
	int count;
};

static int on_extent(const vmb_extent *e, void *p)
{
	struct walk *w = p;
	if (e->kind == VMB_EXTENT_DATA && w->n < 16) {
		w->off[w->n] = e->offset;
		w->len[w->n] = e->length;
		w->n++;
	}
	return ++w->count >= MAX_EXTENTS;
}

static int on_dirty(uint64_t off, uint64_t len, void *p)
{
	int *count = p;
	return ++*count >= MAX_EXTENTS;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	vmb_disk *d = NULL;
	vmb_qcow2 *q = NULL;
	struct walk w;
	uint8_t *buf;
	char *json = NULL;
	uint64_t budget = READ_CAP;
	int fd = memfd_create("qcow2-fuzz", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	memset(&w, 0, sizeof w);
	if (vmb_disk_open(path, VMB_DISK_OPEN_NO_BACKING, &d) == 0) {
		uint64_t dsize = vmb_disk_size(d);
		vmb_disk_map(d, 0, dsize, on_extent, &w);
		buf = malloc(1 << 20);
		for (int i = 0; buf && i < w.n && budget; i++) {
			uint64_t n = w.len[i];
			if (n > budget)
				n = budget;
			if (n > 1 << 20)
				n = 1 << 20;
			vmb_disk_read(d, buf, w.off[i], (size_t)n);
			/* an unaligned read inside the extent as well */
			if (w.len[i] > 3)
				vmb_disk_read(d, buf, w.off[i] + 1,
					      (size_t)(n > 2 ? n - 2 : 1));
			budget -= n;
		}
		if (buf && dsize) {
			uint64_t n = dsize < 65536 ? dsize : 65536;
			vmb_disk_read(d, buf, dsize - n, (size_t)n);
		}
		free(buf);
		vmb_disk_inspect_json(d, &json);
		free(json);
		vmb_disk_close(d);
	}
	/* the bitmap side */
	if (vmb_disk__qcow2_open(path, NULL, &q) == 0) {
		const vmb_qcow2_bitmap *list;
		size_t n = 0;
		vmb_disk__qcow2_bitmaps(q, &list, &n, NULL);
		for (size_t i = 0; i < n && i < 4; i++) {
			int count = 0;
			vmb_disk__qcow2_bitmap_dirty(q, list[i].name, on_dirty,
						     &count);
		}
		vmb_disk__qcow2_close(q);
	}
	close(fd);
	return 0;
}
