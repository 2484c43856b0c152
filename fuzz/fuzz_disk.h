/* Shared by the disk-format fuzz targets: write an input to a file and
 * drive the public disk API over it with bounded work. */
#ifndef VMB_FUZZ_DISK_H
#define VMB_FUZZ_DISK_H

#include <stdio.h>
#include <stdlib.h>
#include "vmbackup/disk.h"

static int fuzz_disk__count(const vmb_extent *e, void *p)
{
	(*(int *)p)++;
	return *(int *)p > 100000; /* bounded walk */
}

/* Replace @path with the input, then open (no backing), map, read four
 * bounded ranges and describe it.  Any crash or hang is the finding. */
static inline void fuzz_disk_exercise(const char *path, const uint8_t *data,
				      size_t size)
{
	static uint8_t buf[65536];
	vmb_disk *d = NULL;
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	if (vmb_disk_open(path, VMB_DISK_OPEN_NO_BACKING, &d) != 0)
		return;
	uint64_t n = vmb_disk_size(d);
	uint64_t at[4] = { 0, n / 2, n > 65536 ? n - 65536 : 0, n / 3 + 1000 };
	int count = 0;
	char *json = NULL;
	vmb_disk_map(d, 0, n, fuzz_disk__count, &count);
	for (int i = 0; i < 4; i++) {
		uint64_t len = n - at[i] < sizeof buf ? n - at[i] : sizeof buf;
		if (at[i] < n)
			vmb_disk_read(d, buf, at[i], (size_t)len);
	}
	if (vmb_disk_inspect_json(d, &json) == 0)
		vmb_free(json);
	vmb_disk_close(d);
}

#endif
