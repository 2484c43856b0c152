/*
 * vmbackup: a repository's snapshots as a read-only FUSE file system.
 *
 * Every snapshot's disks appear as raw image files,
 *
 *     DIR/VM/SNAPSHOT-ID/DISK.raw     (mode 0444, mtime = snapshot time)
 *     DIR/VM/latest -> SNAPSHOT-ID    (the VM's newest snapshot)
 *
 * read on demand straight from the repository: nothing is restored, each
 * open file reads through a bounded LRU chunk cache with read-ahead (the
 * one of vmb serve), all-zero chunks cost no fetch, and lseek()
 * SEEK_DATA / SEEK_HOLE report the stored allocation, so `cp --sparse`,
 * `qemu-img convert`, `mount -o ro,loop` and `debugfs` work on the files.
 * The snapshot list is read once, when the file system is mounted.
 * See docs/instant.md.
 */
#ifndef VMBACKUP_MOUNT_H
#define VMBACKUP_MOUNT_H

#include "common.h"
#include "repo.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Options for vmb_mount_run(); start from VMB_MOUNT_OPTIONS_INIT. */
typedef struct vmb_mount_options {
	unsigned version;     /**< VMB_MOUNT_OPTIONS_VERSION */
	const char *snapshot; /**< only this snapshot (a reference as in
				   vmb_repo_snapshot_find()); NULL: all */
	const char *vm;       /**< only this VM's snapshots; NULL: all */
	int foreground;       /**< 0: detach (fork, setsid) once the file
				   system is mounted; 1: serve in the
				   calling process */
	int allow_other;      /**< let other users read (FUSE allow_other;
				   needs user_allow_other unless root) */
	uint64_t cache_bytes; /**< chunk cache per open disk file; 0: 64 MiB
				   (at least four chunks are kept) */
	int debug;            /**< FUSE debug output on stderr */
	/** Called once the file system is mounted (before detaching), or
	 *  NULL. */
	void (*ready)(const char *dir, void *payload);
	void *payload;
} vmb_mount_options;

#define VMB_MOUNT_OPTIONS_VERSION 1
#define VMB_MOUNT_OPTIONS_INIT { VMB_MOUNT_OPTIONS_VERSION, NULL, NULL, 0, \
				 0, 0, 0, NULL, NULL }

/**
 * Check that @p dir can be a mount point for vmb_mount_run(): /dev/fuse
 * can be opened, and DIR is an existing, empty folder.
 * @return 0, or VMB_ENOTSUP (no FUSE), VMB_ENOTFOUND, VMB_EINVAL (not a
 * folder, not empty), with a one-line message saying what to do.
 */
VMB_EXTERN(int) vmb_mount_check(const char *dir);

/**
 * Mount the snapshots of @p r read-only on @p dir and serve them until
 * the file system is unmounted (vmb_mount_stop(), `fusermount3 -u`,
 * `umount`) or the process gets SIGINT, SIGTERM or SIGHUP.  With
 * foreground 0 the process forks once the mount is ready: the call
 * returns 1 at once in the parent, which should then exit without
 * touching the repository, and serves on in the child (a new session,
 * standard streams on /dev/null, same working directory).  The
 * repository must stay open until the call returns.
 * @return 0 after a clean unmount (in the serving process), 1 in the
 * parent of a detached server, or a negative error (mount point, FUSE,
 * snapshot not found) before anything was mounted.
 */
VMB_EXTERN(int) vmb_mount_run(vmb_repo *r, const char *dir,
			      const vmb_mount_options *opts);

/**
 * Unmount a file system that vmb_mount_run() mounted on @p dir (through
 * fusermount3 -u, or umount(2) when that is missing and we are root).
 * @return 0, VMB_EINVAL if nothing of ours is mounted there, or VMB_EIO.
 */
VMB_EXTERN(int) vmb_mount_stop(const char *dir);

#ifdef __cplusplus
}
#endif
#endif
