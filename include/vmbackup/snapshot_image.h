/*
 * vmbackup: external snapshots of disk images ("snapshot before you change
 * anything").  Not backups: a snapshot lives next to the image, on the
 * same disk (README.md, "Snapshots are not backups").
 *
 * create NAME freezes the image's current content in a read-only layer
 * file IMAGE.NAME and turns IMAGE (the path the VM uses) into an empty
 * overlay over IMAGE.NAME: a qcow2 overlay (relative backing name) for
 * qcow2 and raw images, a VMDK delta (parentFileNameHint, parentCID) for
 * VMDK, a VDI differencing image (parent uuid) for VDI.  The
 * names and creation times are kept in IMAGE.vmbsnap.json (written
 * atomically); a layer named IMAGE.X without an entry there (after a
 * crash) is listed as snapshot X with its file's time.
 *
 * Every step is crash-safe: new files are written, fsync'd and renamed
 * into place, so a kill at any point leaves an image QEMU opens with the
 * data intact (at worst a leftover IMAGE.vmbtmp or an orphan layer).
 * All functions refuse an image in use by a running QEMU (VMB_ELOCKED).
 */
#ifndef VMBACKUP_SNAPSHOT_IMAGE_H
#define VMBACKUP_SNAPSHOT_IMAGE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One snapshot of an image. */
typedef struct vmb_image_snapshot {
	char *name;
	char *file;       /**< the layer file holding the state at NAME */
	int64_t created;  /**< seconds since the epoch */
	int layer;        /**< its position in the chain (0 = IMAGE) */
} vmb_image_snapshot;

/**
 * Freeze IMAGE's current state as snapshot @p name ([A-Za-z0-9_.-],
 * 1..64 characters, not starting with '.' or "vmb").
 * @param format  the overlay's format: NULL for the default (qcow2 for
 *                qcow2 and raw images, the native differencing/delta
 *                image for vdi and vmdk), "qcow2", or the image's own
 *                format "vdi"/"vmdk".  Multi-file VMDKs (flat, split)
 *                need "qcow2" (VMB_ENOTSUP otherwise).
 */
VMB_EXTERN(int) vmb_image_snapshot_create(const char *image,
					  const char *name,
					  const char *format);

/** The snapshots of IMAGE, oldest first.  Free with _list_free(). */
VMB_EXTERN(int) vmb_image_snapshot_list(const char *image,
					vmb_image_snapshot **list,
					size_t *count);
VMB_EXTERN(void) vmb_image_snapshot_list_free(vmb_image_snapshot *list,
					      size_t count);

/**
 * Discard every change since snapshot @p name: IMAGE becomes a fresh
 * empty overlay over NAME's layer.  Snapshots newer than NAME are
 * discarded too (their layers are removed).
 */
VMB_EXTERN(int) vmb_image_snapshot_revert(const char *image,
					  const char *name);

/**
 * Delete snapshot @p name, keeping the current state and every other
 * snapshot: NAME's layer and the layer above it are merged into a new
 * file that replaces the layer above (write, fsync, rename).
 */
VMB_EXTERN(int) vmb_image_snapshot_delete(const char *image,
					  const char *name);

#ifdef __cplusplus
}
#endif
#endif
