/*
 * Raw image reads (lib/disk/raw.c) with O_DIRECT forced on, off and
 * automatic (VMB_DIRECT_READ): the same bytes as a plain pread for
 * aligned and unaligned buffers, offsets and lengths, a size that is no
 * multiple of 4 KiB, holes; that the direct path really bypasses the page
 * cache (mincore after a read of an evicted file), that auto mode reads
 * through the cache when the disk is asked to prefer it (what a backup
 * with a parent does: vmb_disk__prefer_cache) and that a cached file
 * is read through the cache in auto mode (/proc/self/io); tmpfs; a bad
 * knob value; and a file cut short after open fails instead of reading
 * zeros.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/util.h"
#include "disk/format.h"
#include "testutil.h"
#include "vmbackup/disk.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define SIZE (4 * MiB + 4097) /* the last page holds 1 byte */

static uint8_t *ref; /* the image's bytes */

/* Random data at [0,1M) and [2M,SIZE) with a hole [1M,2M) and one at
 * [3M,3M+256K). */
static void make_image(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)SIZE))
		exit(1);
	memset(ref, 0, SIZE);
	test_random(ref, 1 * MiB, 1);
	test_random(ref + 2 * MiB, 1 * MiB, 2);
	test_random(ref + 3 * MiB + 256 * KiB, SIZE - 3 * MiB - 256 * KiB, 3);
	if (vmb_pwrite_full(fd, ref, 1 * MiB, 0) ||
	    vmb_pwrite_full(fd, ref + 2 * MiB, 1 * MiB, 2 * MiB) ||
	    vmb_pwrite_full(fd, ref + 3 * MiB + 256 * KiB,
			    SIZE - 3 * MiB - 256 * KiB, 3 * MiB + 256 * KiB) ||
	    fsync(fd))
		exit(1);
	close(fd);
}

static const struct { uint64_t off, len; } ranges[] = {
	{ 0, SIZE },                       /* all of it, tail included */
	{ 0, 1 * MiB },                    /* one data extent */
	{ 2 * MiB, SIZE - 2 * MiB },       /* aligned body + 4097-byte tail */
	{ 4096, 512 * KiB },
	{ 1 * MiB - 4096, 1 * MiB + 8192 }, /* across the hole */
	{ SIZE - 4097, 4097 },             /* only the tail */
	{ SIZE - 300 * KiB - 1, 300 * KiB + 1 },
	{ 3, 300 * KiB },                  /* unaligned offset */
	{ 8192, 256 * KiB + 1 },           /* unaligned length */
};

/* Every range, into an aligned and a misaligned buffer. */
static void check_reads(const char *path, const char *mode)
{
	vmb_disk *d = NULL;
	uint8_t *buf = NULL;
	setenv("VMB_DIRECT_READ", mode, 1);
	CHECK_OK(vmb_disk_open(path, 0, &d));
	if (!d || posix_memalign((void **)&buf, 4096, SIZE + 4096)) {
		vmb_disk_close(d);
		return;
	}
	CHECK(vmb_disk_size(d) == SIZE);
	for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
		for (int mis = 0; mis < 2; mis++) {
			uint8_t *p = buf + (mis ? 1 : 0);
			memset(p, 0xa5, ranges[i].len);
			CHECK_OK(vmb_disk_read(d, p, ranges[i].off,
					       ranges[i].len));
			if (memcmp(p, ref + ranges[i].off, ranges[i].len)) {
				fprintf(stderr, "mode %s range %zu%s differs\n",
					mode, i, mis ? " (misaligned)" : "");
				CHECK(0);
			}
		}
	}
	free(buf);
	vmb_disk_close(d);
}

/* Pages of @path in the page cache, or -1. */
static long resident(const char *path)
{
	int fd = open(path, O_RDONLY);
	unsigned char *vec;
	long n = -1, ps = sysconf(_SC_PAGESIZE);
	size_t pages = (SIZE + (size_t)ps - 1) / (size_t)ps;
	void *m = fd < 0 ? MAP_FAILED
			 : mmap(NULL, SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (m != MAP_FAILED && (vec = malloc(pages))) {
		if (mincore(m, SIZE, vec) == 0) {
			n = 0;
			for (size_t k = 0; k < pages; k++)
				n += vec[k] & 1;
		}
		free(vec);
	}
	if (m != MAP_FAILED)
		munmap(m, SIZE);
	if (fd >= 0)
		close(fd);
	return n;
}

static long evict(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	return resident(path);
}

/* Bytes this process read from storage so far, or -1. */
static long long storage_reads(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	long long v = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "read_bytes: %lld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* @prefer: -1 as opened, else vmb_disk__prefer_cache(d, prefer) */
static void read_all_pref(const char *path, const char *mode, int prefer)
{
	vmb_disk *d = NULL;
	uint8_t *buf = NULL;
	setenv("VMB_DIRECT_READ", mode, 1);
	CHECK_OK(vmb_disk_open(path, 0, &d));
	if (d && prefer >= 0)
		vmb_disk__prefer_cache(d, prefer);
	if (d && !posix_memalign((void **)&buf, 4096, 4 * MiB)) {
		/* like a backup: 4 MiB chunks, the short last one */
		CHECK_OK(vmb_disk_read(d, buf, 0, 4 * MiB));
		CHECK_OK(vmb_disk_read(d, buf, 4 * MiB, SIZE - 4 * MiB));
	}
	free(buf);
	vmb_disk_close(d);
}

static void read_all(const char *path, const char *mode)
{
	read_all_pref(path, mode, -1);
}

/* Which path the reads take, seen from the page cache. */
static void check_paths(const char *path)
{
	long all = (long)((SIZE + 4095) / 4096), r;
	long long before;
	if (evict(path) > 16) {
		printf("SKIP cache checks: the page cache keeps %s after "
		       "POSIX_FADV_DONTNEED\n", path);
		return;
	}
	/* direct: the data does not come into the cache (the 1-byte tail
	 * page is read buffered; opening reads the head and the end of the
	 * file to probe the format: with readahead, up to 66 pages here);
	 * a backup that will mostly hash and drop asks for the page cache
	 * (prefer 1): auto then reads buffered, forced direct stays direct,
	 * and clearing the wish (prefer 0) reads direct again */
	static const struct {
		const char *mode, *what;
		int prefer, cached; /* cached: all of it, else nearly none */
	} cases[] = {
		{ "1", "forced direct", -1, 0 },
		{ "auto", "auto", -1, 0 },
		{ "0", "buffered", -1, 1 },
		{ "auto", "auto, page cache preferred", 1, 1 },
		{ "1", "forced direct, page cache preferred", 1, 0 },
		{ "auto", "auto, preference cleared", 0, 0 },
	};
	for (size_t i = 0; i < VMB_ARRAY_SIZE(cases); i++) {
		evict(path);
		read_all_pref(path, cases[i].mode, cases[i].prefer);
		r = resident(path);
		printf("%s, cold: %ld of %ld pages cached after\n",
		       cases[i].what, r, all);
		CHECK(cases[i].cached ? r >= all - 16 : r >= 0 && r <= 96);
	}
	read_all(path, "0");
	/* now cached: auto reads it from the cache, forced direct does not */
	before = storage_reads();
	read_all(path, "auto");
	long long hot_auto = storage_reads() - before;
	before = storage_reads();
	read_all(path, "1");
	long long hot_direct = storage_reads() - before;
	printf("cached file: auto read %lld bytes from storage, forced "
	       "direct %lld\n", hot_auto, hot_direct);
	if (before < 0 || hot_direct < (long long)(2 * MiB)) {
		printf("SKIP: /proc/self/io does not count direct reads here\n");
		return;
	}
	CHECK(hot_auto < (long long)(256 * KiB));
}

/* Cut short after open: an error naming the file, never zeros. */
static void check_shrink(const char *path, const char *mode)
{
	vmb_disk *d = NULL;
	uint8_t *buf = NULL;
	int rc;
	make_image(path);
	setenv("VMB_DIRECT_READ", mode, 1);
	CHECK_OK(vmb_disk_open(path, 0, &d));
	if (!d || posix_memalign((void **)&buf, 4096, 4 * MiB)) {
		vmb_disk_close(d);
		return;
	}
	CHECK(truncate(path, (off_t)(3 * MiB)) == 0);
	rc = vmb_disk_read(d, buf, 2 * MiB, 2 * MiB);
	CHECK_ERR(rc, VMB_EIO);
	CHECK(strstr(vmb_error_message(), "shrank") != NULL);
	CHECK(strchr(vmb_error_message(), '\n') == NULL);
	printf("mode %s: %s\n", mode, vmb_error_message());
	/* also where the map would now say "hole" */
	rc = vmb_disk_read(d, buf, 3 * MiB + 256 * KiB, 512 * KiB);
	CHECK_ERR(rc, VMB_EIO);
	free(buf);
	vmb_disk_close(d);
}

int main(void)
{
	const char *img = test_path("odd.img");
	char shm[64];
	vmb_disk *d = NULL;
	ref = malloc(SIZE);
	if (!ref)
		return 1;
	make_image(img);
	check_reads(img, "0");
	check_reads(img, "1");
	check_reads(img, "auto");
	check_paths(img);

	setenv("VMB_DIRECT_READ", "yes", 1);
	CHECK_ERR(vmb_disk_open(img, 0, &d), VMB_EINVAL);
	CHECK(strstr(vmb_error_message(), "VMB_DIRECT_READ") != NULL);
	vmb_disk_close(d);

	check_shrink(test_path("cut.img"), "1");
	check_shrink(test_path("cut2.img"), "0");

	/* tmpfs (O_DIRECT refused on older kernels): same bytes */
	snprintf(shm, sizeof shm, "/dev/shm/vmb-test-raw-%ld", (long)getpid());
	if (access("/dev/shm", W_OK) == 0) {
		make_image(shm);
		check_reads(shm, "1");
		check_reads(shm, "auto");
		unlink(shm);
	} else {
		printf("SKIP tmpfs: /dev/shm is not writable\n");
	}
	unsetenv("VMB_DIRECT_READ");
	free(ref);
	return test_done();
}
