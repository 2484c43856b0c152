/*
 * Fuzz target: the input is a VMDK sparse extent (monolithicSparse,
 * streamOptimized, delta).  Opened without its backing chain, mapped
 * whole and read in a few bounded ranges.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "vmbackup/disk.h"

static char path[256];

static int count_cb(const vmb_extent *e, void *p)
{
	(void)e;
	return ++*(int *)p > 100000; /* bound the walk */
}

static char dir[] = "/tmp/vmdk_sparse_fuzz.XXXXXX";

static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

static void setup(void)
{
	if (!mkdtemp(dir))
		abort();
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
