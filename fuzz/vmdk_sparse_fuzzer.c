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
#include "fuzz_disk.h"

static char path[256];

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
	if (!path[0])
		setup();
	fuzz_disk_exercise(path, data, size);
	return 0;
}
