/* Internal: partition tables and file system signatures (partition.c),
 * shared with the fuzz target. */
#ifndef VMB_LIB_GUESTFS_INTERNAL_H
#define VMB_LIB_GUESTFS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "vmbackup/guestfs.h"

/* Read exactly @len bytes at @off (the caller keeps it inside the disk):
 * 0 or a negative vmb error. */
typedef int (*vmb_part_read_fn)(void *payload, void *buf, uint64_t off,
				size_t len);

#define VMB_PART_MAX_LOGICAL 128u     /* logical partitions followed */
#define VMB_PART_MAX_GPT_ENTRIES 4096u
#define VMB_PART_MAX_GPT_BYTES (4u << 20) /* entry array read at most */

/* The partition table of a disk of @size bytes read through @rd; as
 * vmb_guestfs_partitions(). */
int vmb_part__parse(vmb_part_read_fn rd, void *payload, uint64_t size,
		    int *scheme, vmb_partition **out, size_t *n);

/* What file system (or volume) [off, off+len) holds, from its magic
 * numbers: "ext" (an ext2/3/4 superblock at 1024), "NTFS", "FAT", "exFAT",
 * "XFS", "Btrfs", "LVM", "LUKS", "swap", "ISO 9660", "HFS+"; NULL for
 * none known or all zeros ("blank"); a read error is returned negative. */
int vmb_part__probe(vmb_part_read_fn rd, void *payload, uint64_t off,
		    uint64_t len, const char **what);

/* The libext2fs handle of an open vmb_guestfs (an ext2_filsys), for
 * tests that check the io_manager refuses writes. */
void *vmb_guestfs__fs(vmb_guestfs *g);

/* Open @d's volume [off, off+len) with libext2fs through our io_manager
 * with @flags (EXT2_FLAG_*), as vmb_guestfs_open() does: an errcode_t. */
long vmb_guestfs__ext2fs_open(vmb_disk *d, uint64_t off, uint64_t len,
			      int flags, void **fs);

#endif
