/*
 * vmbackup: files out of a guest's file system, straight from a disk.
 *
 * A vmb_guestfs is an ext2/3/4 file system read through libext2fs over a
 * vmb_disk (an image file, or a snapshot disk read from the repository):
 * no kernel mount, no loop device, no temporary copy of the disk.  The
 * disk is read through an io_manager of ours that refuses every write.
 * The file system is found on the whole disk or in an MBR or GPT
 * partition (our own parser, vmb_guestfs_partitions()).  Everything read
 * from the guest is treated as hostile: names that could leave the
 * destination ('/', "..", "." or empty) are skipped, symlinks are made as
 * symlinks and never followed on the host, trees are bounded in depth and
 * entries.  See docs/instant.md, "Single-file restore".
 */
#ifndef VMBACKUP_GUESTFS_H
#define VMBACKUP_GUESTFS_H

#include "common.h"
#include "disk.h"
#include "repo.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- partition tables ---- */

/** Partition table kinds. */
typedef enum vmb_partition_scheme {
	VMB_PARTITION_NONE = 0, /**< no partition table */
	VMB_PARTITION_MBR = 1,  /**< DOS/MBR (primary, extended, logical) */
	VMB_PARTITION_GPT = 2,  /**< GUID partition table */
} vmb_partition_scheme;

/** One partition. */
typedef struct vmb_partition {
	unsigned number;    /**< as Linux numbers them: MBR primaries 1-4,
				 logical partitions from 5; GPT entries
				 from 1 in table order */
	uint64_t offset;    /**< start in bytes */
	uint64_t length;    /**< length in bytes (> 0, inside the disk) */
	unsigned mbr_type;  /**< MBR type byte (0x83 Linux ...), 0 on GPT */
	char gpt_type[37];  /**< GPT type GUID (lower case), "" on MBR */
	char name[72];      /**< GPT name (printable ASCII only), or "" */
} vmb_partition;

/**
 * Read the partition table of @p d.  A protective MBR leads to the GPT;
 * a GPT header must have a good CRC (the backup header at the disk's end
 * is used when the primary is damaged), entry counts and sizes are
 * bounded and every entry must lie inside the disk; extended MBR chains
 * are followed for at most 128 logical partitions.  Entries that do not
 * fit the disk are left out (and logged).
 * @param[out] scheme  a vmb_partition_scheme
 * @param[out] parts   the partitions (NULL if none); free with vmb_free()
 * @param[out] n       how many
 * @return 0 (also for a disk without a table: VMB_PARTITION_NONE, n 0),
 *         or a negative error (read failure, VMB_ENOMEM).
 */
VMB_EXTERN(int) vmb_guestfs_partitions(vmb_disk *d, int *scheme,
				       vmb_partition **parts, size_t *n);

/* ---- file systems ---- */

typedef struct vmb_guestfs vmb_guestfs;

/** vmb_guestfs_options.partition: find the file system (the default). */
#define VMB_GUESTFS_AUTO (-1)
/** vmb_guestfs_options.partition: the whole disk, no partition table. */
#define VMB_GUESTFS_WHOLE 0

/** Options for vmb_guestfs_open(); start from VMB_GUESTFS_OPTIONS_INIT. */
typedef struct vmb_guestfs_options {
	unsigned version;     /**< VMB_GUESTFS_OPTIONS_VERSION */
	/** VMB_GUESTFS_AUTO: the whole disk if it has an ext superblock at
	 *  byte 1024, else the one partition that has one (several: an
	 *  error that lists them); VMB_GUESTFS_WHOLE; or a partition
	 *  number as vmb_guestfs_partitions() gives it. */
	int partition;
	/** vmb_guestfs_open_snapshot(): chunk cache in bytes; 0: 64 MiB */
	uint64_t cache_bytes;
} vmb_guestfs_options;

#define VMB_GUESTFS_OPTIONS_VERSION 1
#define VMB_GUESTFS_OPTIONS_INIT { VMB_GUESTFS_OPTIONS_VERSION, \
				   VMB_GUESTFS_AUTO, 0 }

/**
 * Open the ext2/3/4 file system on @p d read-only.  @p d is borrowed and
 * must stay open until vmb_guestfs_close().
 * @param opts  NULL for the defaults
 * @param[out] out  free with vmb_guestfs_close()
 * @return 0; VMB_ENOTSUP when there is no ext2/3/4 file system where
 *         asked (the message names what was found instead, NTFS, XFS,
 *         FAT..., and points at `vmb mount`); VMB_EAMBIGUOUS with the
 *         partitions listed; VMB_ENOTFOUND for a partition number that
 *         does not exist; VMB_EFORMAT for a damaged file system or one
 *         with features libext2fs cannot read; a read error of the disk
 *         as it came (VMB_ECORRUPT, VMB_EVERIFY for damaged chunks).
 */
VMB_EXTERN(int) vmb_guestfs_open(vmb_disk *d, const vmb_guestfs_options *opts,
				 vmb_guestfs **out);

/**
 * As vmb_guestfs_open(), on disk @p disk (NULL: the first) of snapshot
 * @p s, read from the repository through a bounded chunk cache (owned by
 * the handle).  @p r must stay open until vmb_guestfs_close().
 */
VMB_EXTERN(int) vmb_guestfs_open_snapshot(vmb_repo *r, const vmb_snapshot *s,
					  const char *disk,
					  const vmb_guestfs_options *opts,
					  vmb_guestfs **out);

/** @return the partition number the file system is in (0: whole disk). */
VMB_EXTERN(unsigned) vmb_guestfs_partition(const vmb_guestfs *g);

/** @return the file system's type: "ext2", "ext3" or "ext4". */
VMB_EXTERN(const char *) vmb_guestfs_type(const vmb_guestfs *g);

/** vmb_guestfs_extract_options.flags */
#define VMB_GUESTFS_FORCE  0x1u /**< DIR may be non-empty: an entry of the
				    same name is replaced (a folder is
				    merged into) */
#define VMB_GUESTFS_OWNERS 0x2u /**< set owners and groups (needs root;
				    set by default when euid is 0) */
#define VMB_GUESTFS_NO_OWNERS 0x4u /**< never set owners, even as root */

/** Options for vmb_guestfs_extract(); start from
 *  VMB_GUESTFS_EXTRACT_OPTIONS_INIT. */
typedef struct vmb_guestfs_extract_options {
	unsigned version;     /**< VMB_GUESTFS_EXTRACT_OPTIONS_VERSION */
	unsigned flags;       /**< VMB_GUESTFS_* */
	unsigned max_depth;   /**< folder nesting below PATH; 0: 256 */
	uint64_t max_entries; /**< entries in all; 0: 10 million */
	vmb_progress_fn progress; /**< or NULL */
	void *payload;
} vmb_guestfs_extract_options;

#define VMB_GUESTFS_EXTRACT_OPTIONS_VERSION 1
#define VMB_GUESTFS_EXTRACT_OPTIONS_INIT \
	{ VMB_GUESTFS_EXTRACT_OPTIONS_VERSION, 0, 0, 0, NULL, NULL }

/** What vmb_guestfs_extract() wrote. */
typedef struct vmb_guestfs_extract_result {
	uint64_t files;    /**< regular files */
	uint64_t dirs;     /**< folders (PATH itself included) */
	uint64_t symlinks;
	uint64_t skipped;  /**< entries left out (unsafe names, devices,
			       FIFOs, sockets, loops), each logged */
	uint64_t bytes;    /**< file data bytes (apparent sizes) */
	double seconds;
} vmb_guestfs_extract_result;

/**
 * Copy @p path (absolute, inside the guest; symlinks on the way are
 * followed inside the guest, the last component is not) into folder
 * @p dir: a regular file becomes DIR/NAME (sparse where it reads as
 * zeros), a symlink DIR/NAME with the same target, a folder DIR/NAME with
 * everything under it ("/" fills DIR itself).  Modes (set-user/group-id
 * bits only with owners) and modification times are kept; owners as
 * root (VMB_GUESTFS_OWNERS).  DIR is created like `mkdir -p` with mode
 * 0700 and must be new or empty unless VMB_GUESTFS_FORCE.  Nothing is
 * ever written outside DIR: every file is made relative to an open
 * folder with O_NOFOLLOW and O_EXCL, from names checked one by one.
 * Hard links become separate copies; devices, FIFOs and sockets are
 * skipped (counted in skipped).
 * @param opts  NULL for the defaults
 * @param[out] res  may be NULL
 * @return 0; VMB_ENOTFOUND when @p path does not exist; VMB_EEXISTS for
 *         a non-empty DIR; VMB_ERANGE when the depth or entry limit is
 *         reached; VMB_EFORMAT for damaged file system structures; write
 *         errors (VMB_ENOSPC, VMB_EACCES, VMB_EIO).
 */
VMB_EXTERN(int) vmb_guestfs_extract(vmb_guestfs *g, const char *path,
				    const char *dir,
				    const vmb_guestfs_extract_options *opts,
				    vmb_guestfs_extract_result *res);

/** Close the file system (and the disk, for vmb_guestfs_open_snapshot());
 *  accepts NULL. */
VMB_EXTERN(void) vmb_guestfs_close(vmb_guestfs *g);

#ifdef __cplusplus
}
#endif
#endif
