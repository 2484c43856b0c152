/*
 * Fuzz target: the VDI reader.  The input becomes a memfd that is opened
 * through /proc/self/fd/N as one layer (no parent lookup); the whole disk
 * is mapped and a few bounded ranges are read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "vmbackup/disk.h"

#define READ_MAX (4u << 20)

struct stats {
	uint64_t extents;
	uint64_t data_start, data_len; /* first data extent */
	int has_data;
};

static int count_cb(const vmb_extent *e, void *payload)
{
	struct stats *s = payload;
	if (e->kind == VMB_EXTENT_DATA && !s->has_data) {
		s->has_data = 1;
		s->data_start = e->offset;
		s->data_len = e->length;
	}
	return ++s->extents > 100000; /* stop after many extents */
}

static void read_range(vmb_disk *d, uint8_t *buf, uint64_t off, uint64_t len)
{
	uint64_t size = vmb_disk_size(d);
	if (off >= size)
		return;
	if (len > size - off)
		len = size - off;
	if (len > READ_MAX)
		len = READ_MAX;
	(void)vmb_disk_read(d, buf, off, (size_t)len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	vmb_disk *d = NULL;
	uint8_t *buf = NULL;
	struct stats st = { 0, 0, 0, 0 };
	const char *fmt = NULL;
	int fd = memfd_create("vdi-fuzz", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size)
		goto out;
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	/* only VDI: other formats have fuzzers of their own */
	if (vmb_disk_probe(path, &fmt) != 0 || strcmp(fmt, "vdi") != 0)
		goto out;
	if (vmb_disk_open(path, VMB_DISK_OPEN_NO_BACKING, &d) != 0)
		goto out;
	(void)vmb_disk_map(d, 0, vmb_disk_size(d), count_cb, &st);
	buf = malloc(READ_MAX);
	if (!buf)
		goto out;
	read_range(d, buf, 0, 65536);
	if (st.has_data)
		read_range(d, buf, st.data_start, st.data_len);
	read_range(d, buf, vmb_disk_size(d) / 2, 1 << 20);
	if (vmb_disk_size(d) > 8192)
		read_range(d, buf, vmb_disk_size(d) - 8192 + 3, 8189);
	{
		char *json = NULL;
		if (vmb_disk_inspect_json(d, &json) == 0)
			vmb_free(json);
	}
out:
	free(buf);
	vmb_disk_close(d);
	close(fd);
	return 0;
}
