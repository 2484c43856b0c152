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

#endif
