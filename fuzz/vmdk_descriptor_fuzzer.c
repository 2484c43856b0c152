/*
 * Fuzz target: the input is a VMDK text descriptor.  It sits in a private
 * folder beside a few extent files it may name (flat.bin, sparse.vmdk,
 * stream.vmdk); it is opened without its backing chain, mapped whole and
 * read in a few bounded ranges.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "vmbackup/disk.h"

static char dir[] = "/tmp/vmdk_desc_fuzz.XXXXXX";
static char path[256];

static int count_cb(const vmb_extent *e, void *p)
{
	(void)e;
	return ++*(int *)p > 100000; /* bound the walk */
}

static void cleanup(void)
{
	static const char *const names[] = { "flat.bin", "sparse.vmdk",
					     "stream.vmdk", "input.vmdk" };
	char p[300];
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(p, sizeof p, "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
}

static void make_extent(const char *name, const char *sub, const uint8_t *src)
{
	char p[300];
	vmb_disk_writer_options o = VMB_DISK_WRITER_INIT;
	vmb_disk_writer *w = NULL;
	snprintf(p, sizeof p, "%s/%s", dir, name);
	o.subformat = sub;
	if (!sub) {
		FILE *f = fopen(p, "wb");
		if (!f || fwrite(src, 1, 1 << 20, f) != 1 << 20)
			abort();
		fclose(f);
		return;
	}
	if (vmb_disk_writer_create(p, "vmdk", 1 << 20, &o, &w) != 0 ||
	    vmb_disk_writer_write(w, 0, src, 1 << 20) != 0 ||
	    vmb_disk_writer_finish(w) != 0)
		abort();
	vmb_disk_writer_free(w);
}

static void setup(void)
{
	uint8_t *src = calloc(1, 1 << 20);
	uint32_t x = 12345;
	if (!src || !mkdtemp(dir))
		abort();
	for (size_t i = 0; i < 65536; i++) {
		x = x * 1103515245u + 12345u;
		src[i] = (uint8_t)(x >> 16);
	}
	memcpy(src + 300000, "some text in the middle", 23);
	make_extent("flat.bin", NULL, src);
	make_extent("sparse.vmdk", "monolithicSparse", src);
	make_extent("stream.vmdk", "streamOptimized", src);
	free(src);
	snprintf(path, sizeof path, "%s/input.vmdk", dir);
	atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[65536];
	vmb_disk *d = NULL;
	FILE *f;

	if (!path[0])
		setup();
	f = fopen(path, "wb");
	if (!f)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	if (vmb_disk_open(path, VMB_DISK_OPEN_NO_BACKING, &d) == 0) {
		uint64_t n = vmb_disk_size(d);
		uint64_t at[4] = { 0, n / 2, n > 65536 ? n - 65536 : 0,
				   n / 3 + 1000 };
		int count = 0;
		char *json = NULL;
		vmb_disk_map(d, 0, n, count_cb, &count);
		for (int i = 0; i < 4; i++) {
			uint64_t len = n - at[i] < sizeof buf ? n - at[i]
							      : sizeof buf;
			if (at[i] < n)
				vmb_disk_read(d, buf, at[i], (size_t)len);
		}
		if (vmb_disk_inspect_json(d, &json) == 0)
			vmb_free(json);
		vmb_disk_close(d);
	}
	return 0;
}
