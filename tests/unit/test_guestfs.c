/*
 * The guestfs API on an image file (no repository): the io_manager
 * refuses every write (opening read-write, block writes, byte writes,
 * discard, zero-out, an inode write through libext2fs), the file system
 * is found whole and in a partition, extraction works, and the error
 * paths return the documented codes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ext2fs/ext2fs.h>
#include "testutil.h"
#include "guestfs/guestfs_internal.h"
#include "vmbackup/disk.h"

int main(void)
{
	char dir[] = "/tmp/vmb-test-guestfs.XXXXXX", img[512], out[600];
	char cmd[2048];
	vmb_disk *d = NULL;
	vmb_guestfs *g = NULL;
	vmb_guestfs_options go = VMB_GUESTFS_OPTIONS_INIT;
	vmb_guestfs_extract_result res;
	if (system("command -v mke2fs >/dev/null") != 0) {
		printf("SKIP: mke2fs (e2fsprogs) is needed\n");
		return 77;
	}
	if (!mkdtemp(dir))
		return 1;
	snprintf(img, sizeof img, "%s/fs.img", dir);
	snprintf(cmd, sizeof cmd, "mkdir -p %s/src/a && echo hello >%s/src/a/f"
		 " && mke2fs -q -t ext4 -d %s/src %s 8M", dir, dir, dir, img);
	CHECK(system(cmd) == 0);
	CHECK_OK(vmb_disk_open(img, VMB_DISK_OPEN_RAW, &d));
	if (!d)
		return test_done();

	/* read-write is refused at open */
	void *fsp = NULL;
	long e = vmb_guestfs__ext2fs_open(d, 0, vmb_disk_size(d),
					  EXT2_FLAG_RW | EXT2_FLAG_64BITS, &fsp);
	CHECK(e == EXT2_ET_RO_FILSYS && !fsp);
	/* read-only works, and every write entry point refuses */
	e = vmb_guestfs__ext2fs_open(d, 0, vmb_disk_size(d),
				     EXT2_FLAG_64BITS, &fsp);
	CHECK(e == 0 && fsp);
	if (fsp) {
		ext2_filsys fs = fsp;
		char blk[4096];
		struct ext2_inode in;
		memset(blk, 0, sizeof blk);
		CHECK(io_channel_write_blk64(fs->io, 1, 1, blk) ==
		      EXT2_ET_RO_FILSYS);
		CHECK(io_channel_write_blk(fs->io, 1, 1, blk) ==
		      EXT2_ET_RO_FILSYS);
		CHECK(io_channel_write_byte(fs->io, 0, 1, blk) ==
		      EXT2_ET_RO_FILSYS);
		CHECK(io_channel_discard(fs->io, 0, 1) == EXT2_ET_RO_FILSYS);
		CHECK(io_channel_zeroout(fs->io, 0, 1) == EXT2_ET_RO_FILSYS);
		CHECK(ext2fs_read_inode(fs, EXT2_ROOT_INO, &in) == 0);
		CHECK(ext2fs_write_inode(fs, EXT2_ROOT_INO, &in) != 0);
		/* a read past the volume's end is short, not out of bounds */
		CHECK(io_channel_read_blk64(fs->io, 1u << 30, 1, blk) != 0);
		ext2fs_close_free(&fs);
	}

	/* the public API: whole disk */
	CHECK_OK(vmb_guestfs_open(d, NULL, &g));
	CHECK(vmb_guestfs_partition(g) == 0);
	CHECK(g && strcmp(vmb_guestfs_type(g), "ext4") == 0);
	snprintf(out, sizeof out, "%s/out", dir);
	CHECK_ERR(vmb_guestfs_extract(g, "/a/nope", out, NULL, &res),
		  VMB_ENOTFOUND);
	CHECK_ERR(vmb_guestfs_extract(g, "/a/../a", out, NULL, &res),
		  VMB_EINVAL);
	CHECK_OK(vmb_guestfs_extract(g, "a/f", out, NULL, &res));
	CHECK(res.files == 1 && res.bytes == 6);
	snprintf(cmd, sizeof cmd, "cmp -s %s/src/a/f %s/f", dir, out);
	CHECK(system(cmd) == 0);
	CHECK_ERR(vmb_guestfs_extract(g, "/a", out, NULL, &res),
		  VMB_EEXISTS);
	vmb_guestfs_extract_options xo = VMB_GUESTFS_EXTRACT_OPTIONS_INIT;
	xo.flags = VMB_GUESTFS_FORCE;
	CHECK_OK(vmb_guestfs_extract(g, "/a", out, &xo, &res));
	CHECK(res.dirs == 1 && res.files == 1);
	/* limits */
	xo.max_entries = 1;
	snprintf(out, sizeof out, "%s/out2", dir);
	CHECK_ERR(vmb_guestfs_extract(g, "/", out, &xo, &res), VMB_ERANGE);
	vmb_guestfs_close(g);
	g = NULL;
	/* a partition number on a disk without a table */
	go.partition = 1;
	CHECK_ERR(vmb_guestfs_open(d, &go, &g), VMB_ENOTFOUND);
	vmb_guestfs_close(NULL); /* free accepts NULL */
	vmb_disk_close(d);

	/* a blank disk: not supported, one line naming vmb mount */
	snprintf(img, sizeof img, "%s/blank.img", dir);
	snprintf(cmd, sizeof cmd, "truncate -s 4M %s", img);
	CHECK(system(cmd) == 0);
	CHECK_OK(vmb_disk_open(img, VMB_DISK_OPEN_RAW, &d));
	CHECK_ERR(vmb_guestfs_open(d, NULL, &g), VMB_ENOTSUP);
	CHECK(strstr(vmb_error_message(), "vmb mount") != NULL);
	CHECK(strstr(vmb_error_message(), "blank") != NULL);
	vmb_disk_close(d);

	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return test_done();
}
