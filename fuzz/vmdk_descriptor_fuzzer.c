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
#include "fuzz_disk.h"

static char dir[] = "/tmp/vmdk_desc_fuzz.XXXXXX";
static char path[256];

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
	if (!path[0])
		setup();
	fuzz_disk_exercise(path, data, size);
	return 0;
}
