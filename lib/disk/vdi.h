/*
 * Internal: VDI functions beyond the vmb_disk_format vtable, for native
 * snapshot layers (lib/disk/image_snapshot.c).
 */
#ifndef VMB_LIB_DISK_VDI_H
#define VMB_LIB_DISK_VDI_H

#include <stdint.h>

/** The identity fields of a VDI file's header. */
typedef struct vmb_vdi_ids {
	uint32_t type;            /**< 1 dynamic, 2 fixed, 4 differencing */
	uint32_t block_size;
	uint64_t disk_size;
	uint8_t uuid[16];         /**< creation uuid: what children link to */
	uint8_t modify[16];       /**< modification uuid */
	uint8_t parent[16];       /**< differencing: the parent's uuid */
	uint8_t parent_modify[16];
} vmb_vdi_ids;

/** Open and check @p path as VDI and read its ids. */
int vmb_disk__vdi_ids(const char *path, vmb_vdi_ids *out);

/*
 * Start writing a new VDI at @p path (must not exist) with blocks of
 * @p block_size bytes.  @p uuid: its creation uuid (NULL: a fresh one).
 * @p parent: NULL for a dynamic image, else it is a differencing image
 * (type 4) whose parent has uuid @p parent and modification uuid
 * @p parent_modify (may be NULL).  Write with vmb_disk__vdi_format.write,
 * mark zero blocks with vmb_disk__vdi_zero, then .finish (fsyncs) or
 * .abort (removes the file).
 */
int vmb_disk__vdi_create_layer(const char *path, uint64_t size,
			       uint32_t block_size, const uint8_t *uuid,
			       const uint8_t *parent,
			       const uint8_t *parent_modify, void **writer);

/*
 * Mark the whole blocks of [offset, offset+length) as zero blocks
 * (0xfffffffe: read as zeros, hide the parent).  Same ordering rules as
 * writes.
 */
int vmb_disk__vdi_zero(void *writer, uint64_t offset, uint64_t length);

#endif
