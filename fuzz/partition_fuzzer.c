/*
 * Fuzz target: the partition table parser and the file system signature
 * probe of vmb restore --file (lib/guestfs/partition.c).  The input is
 * the start of a disk; it is parsed twice, once as the whole disk and
 * once as the start of a disk 4096 times larger (reads past the input
 * give zeros), so entries that point far out are reached too.  Every
 * partition found must lie inside the disk, and each is probed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "guestfs/guestfs_internal.h"

struct mem {
	const uint8_t *data;
	size_t size;     /* bytes of input */
	uint64_t disk;   /* the disk's size */
};

static int mem_read(void *p, void *buf, uint64_t off, size_t len)
{
	const struct mem *m = p;
	if (off > m->disk || len > m->disk - off)
		abort(); /* the parser must stay inside the disk */
	memset(buf, 0, len);
	if (off < m->size) {
		size_t n = m->size - (size_t)off;
		memcpy(buf, m->data + off, n < len ? n : len);
	}
	return 0;
}

static void run(struct mem *m)
{
	vmb_partition *p = NULL;
	size_t n = 0;
	int scheme;
	const char *what;
	if (vmb_part__parse(mem_read, m, m->disk, &scheme, &p, &n) != 0)
		return;
	if (n && !p)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (!p[i].length || p[i].offset > m->disk ||
		    p[i].length > m->disk - p[i].offset)
			abort();
		if (i < 16)
			vmb_part__probe(mem_read, m, p[i].offset, p[i].length,
					&what);
	}
	vmb_part__probe(mem_read, m, 0, m->disk, &what);
	free(p);
}

static void quiet(vmb_log_level l, const char *msg, void *p)
{
	(void)l; (void)msg; (void)p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mem m = { data, size, size };
	vmb_log_set(quiet, NULL, VMB_LOG_ERROR);
	run(&m);
	m.disk = (uint64_t)size * 4096;
	run(&m);
	return 0;
}
