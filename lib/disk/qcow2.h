/*
 * Internal: qcow2 functions beyond the vmb_disk_format vtable, for
 * changed-block tracking (persistent dirty bitmaps).
 *
 * A vmb_qcow2 is the same reader state the "qcow2" format uses for one
 * layer: one file, read-only, without its backing chain.
 */
#ifndef VMB_LIB_DISK_QCOW2_H
#define VMB_LIB_DISK_QCOW2_H

#include <stddef.h>
#include <stdint.h>
#include "vmbackup/sys/disk_format.h"

typedef struct vmb_qcow2 vmb_qcow2;

/** One persistent dirty bitmap, as stored in the bitmap directory. */
typedef struct vmb_qcow2_bitmap {
	const char *name;     /**< owned by the vmb_qcow2 */
	uint64_t granularity; /**< bytes per bit */
	int in_use;           /**< not saved cleanly: contents untrustworthy */
	int auto_;            /**< enabled: records every write */
	uint32_t flags;       /**< raw flags field */
	uint8_t type;         /**< 1 = dirty tracking */
} vmb_qcow2_bitmap;

/**
 * Open one qcow2 file read-only (no backing chain).
 * @param snapshot  internal snapshot (id or name) to view, or NULL
 */
int vmb_disk__qcow2_open(const char *path, const char *snapshot,
			 vmb_qcow2 **out);

/** Close; accepts NULL. */
void vmb_disk__qcow2_close(vmb_qcow2 *q);

/** @return the virtual size of the opened view. */
uint64_t vmb_disk__qcow2_size(const vmb_qcow2 *q);

/**
 * The bitmaps of the file.  The array stays valid until the vmb_qcow2 is
 * closed.  If the bitmaps extension is present but autoclear bit 0 is
 * clear (some program wrote the image without updating bitmaps), no
 * bitmap is listed and *consistent is set to 0.
 *
 * @param[out] consistent  may be NULL
 */
int vmb_disk__qcow2_bitmaps(vmb_qcow2 *q, const vmb_qcow2_bitmap **list,
			    size_t *count, int *consistent);

/** Called once per dirty range (guest bytes, increasing, coalesced). */
typedef int (*vmb_qcow2_dirty_fn)(uint64_t offset, uint64_t length,
				  void *payload);

/**
 * Walk the dirty ranges of the bitmap named @p name.  Ranges are clipped
 * to the virtual size.  A non-zero return from @p fn stops the walk and
 * is returned.
 *
 * @return 0, the callback's value, VMB_ENOTFOUND (no such bitmap),
 *         VMB_ECORRUPT (damaged, or in_use: not saved cleanly).
 */
int vmb_disk__qcow2_bitmap_dirty(vmb_qcow2 *q, const char *name,
				 vmb_qcow2_dirty_fn fn, void *payload);

/* ---- writing (lib/disk/qcow2_bitmap.c) ---- */

/*
 * Crash-test hook, compiled in always: if $VMB_TEST_CRASH_AT equals
 * @p step, the process leaves at once with _exit(99), as if killed.
 */
void vmb_disk__crash_point(const char *step);

/*
 * Open @p path read-write and take the locks QEMU takes (OFD write locks
 * on its permission bytes 100.. and 200..), so a running QEMU (which
 * holds shared locks there) makes this fail, and QEMU cannot open the
 * image while we hold it.
 *
 * @param[out] fd  the locked descriptor; closing it drops the lock
 * @return 0, VMB_ELOCKED (in use, e.g. by a running VM), VMB_EACCES,
 *         VMB_ENOTFOUND, VMB_EIO
 */
int vmb_disk__image_lock(const char *path, int *fd);

/* An edit of the persistent bitmaps of a qcow2 file. */
typedef struct vmb_qcow2_bitmap_edit {
	const char *add;            /**< new empty bitmap, or NULL */
	uint32_t add_granularity;   /**< bytes per bit (power of two) */
	int add_auto;               /**< set the auto flag (track writes) */
	const char *const *remove;  /**< names to drop (absent: ignored) */
	size_t nremove;
} vmb_qcow2_bitmap_edit;

/*
 * Apply @p e to the qcow2 file open (read-write, locked) as @p fd.
 * Crash-safe: new clusters are written and fsync'd first, then their
 * refcounts raised, then the header's bitmaps extension switched (one
 * sector write, or: clear autoclear bit 0, rewrite, set it), and only
 * then the old clusters' refcounts dropped.  A crash leaves at worst
 * leaked clusters, never a reference to an unreferenced cluster.
 *
 * @return 0; VMB_ENOTSUP (v2 image, dirty/corrupt bits, no room in the
 *         header, refcount table full), VMB_ECORRUPT, VMB_EIO
 */
int vmb_disk__qcow2_bitmaps_edit(int fd, const char *path,
				 const vmb_qcow2_bitmap_edit *e);

/*
 * Write a new qcow2 layer at @p path (must not exist) of @p size guest
 * bytes with an optional backing file (name stored as given, relative to
 * the new file's folder) and format.  With @p src, guest clusters that
 * the layers [0, @p keep) of @p src own (data or zeros) are copied (data
 * read through @p src, zeros as zero clusters); everything else is left
 * unallocated (falls through to the backing file).  Without @p src the
 * layer is an empty overlay.  The file is fsync'd; the caller renames it.
 * Crash point "layer-data-written" after the data.
 */
int vmb_disk__qcow2_write_layer(const char *path, uint64_t size,
				const char *backing, const char *backing_fmt,
				vmb_disk *src, int keep, unsigned mode);

/*
 * The backing file name and format stored in a qcow2 file's header, as
 * written (not resolved).  *backing and *fmt are malloc'd or NULL.
 */
int vmb_disk__qcow2_backing(const char *path, char **backing, char **fmt);

#endif
