/*
 * Fuzz target: vmb restore --file on a hostile disk.  The input is a raw
 * disk (a memfd opened as a raw image); vmb_guestfs_open() finds the ext
 * file system (partition parser, signature probe, libext2fs through our
 * io_manager) and vmb_guestfs_extract() copies "/" into a fresh temporary
 * folder with small limits.  Nothing may be written outside that folder:
 * its parent is checked to hold nothing but it afterwards.
 */
#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vmbackup/disk.h"
#include "vmbackup/guestfs.h"

static int rm_cb(const char *p, const struct stat *st, int flag,
		 struct FTW *ftw)
{
	(void)st; (void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		chmod(p, 0700);
	return remove(p);
}

static void quiet(vmb_log_level l, const char *m, void *p)
{
	(void)l; (void)m; (void)p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], jail[] = "/tmp/vmb-guestfs-fuzz.XXXXXX", out[64];
	vmb_disk *d = NULL;
	vmb_guestfs *g = NULL;
	vmb_guestfs_extract_options xo = VMB_GUESTFS_EXTRACT_OPTIONS_INIT;
	int fd = memfd_create("guestfs-fuzz", MFD_CLOEXEC);
	vmb_log_set(quiet, NULL, VMB_LOG_ERROR);
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size)
		goto out;
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	if (vmb_disk_open(path, VMB_DISK_OPEN_RAW, &d) != 0)
		goto out;
	if (vmb_guestfs_open(d, NULL, &g) != 0)
		goto out;
	if (!mkdtemp(jail))
		abort();
	snprintf(out, sizeof out, "%s/out", jail);
	xo.max_depth = 16;
	xo.max_entries = 2000;
	xo.flags = VMB_GUESTFS_NO_OWNERS;
	(void)vmb_guestfs_extract(g, "/", out, &xo, NULL);
	/* the jail holds "out" and nothing else */
	DIR *dir = opendir(jail);
	struct dirent *e;
	if (!dir)
		abort();
	while ((e = readdir(dir)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    strcmp(e->d_name, "out"))
			abort();
	closedir(dir);
	nftw(jail, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
out:
	vmb_guestfs_close(g);
	vmb_disk_close(d);
	close(fd);
	return 0;
}
