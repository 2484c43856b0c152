/*
 * Internal: VMDK functions beyond the vmb_disk_format vtable, for native
 * snapshot layers (lib/disk/image_snapshot.c).
 */
#ifndef VMB_LIB_DISK_VMDK_H
#define VMB_LIB_DISK_VMDK_H

#include <stdint.h>

/** What a snapshot needs to know about one VMDK file. */
typedef struct vmb_vmdk_info {
	int single_file;       /**< hosted sparse or stream file with its
				    descriptor inside: nothing else to move */
	int stream;            /**< streamOptimized (compressed grains) */
	int has_cid;
	uint32_t cid;          /**< content id (what a child's parentCID is) */
	int has_parent_cid;
	uint32_t parent_cid;
	char *parent_hint;     /**< parentFileNameHint as written, or NULL */
	char *create_type;     /**< malloc'd, or NULL */
	uint64_t grain;        /**< bytes, of the first sparse extent; or 0 */
} vmb_vmdk_info;

/** Open and check @p path as VMDK (this file only) and fill @p out. */
int vmb_disk__vmdk_info(const char *path, vmb_vmdk_info *out);
void vmb_disk__vmdk_info_free(vmb_vmdk_info *info);

/*
 * Start writing a new monolithicSparse VMDK at @p path (must not exist)
 * with @p grain byte grains; its descriptor's extent line names
 * @p extent_name (the name it will be renamed to; NULL: @p path's).  @p cid: its content id (NULL: a random
 * one).  @p parent_hint: NULL for a base image, else a delta whose
 * descriptor has parentFileNameHint=@p parent_hint and parentCID=
 * @p parent_cid.  Write with vmb_disk__vmdk_format.write, mark zero
 * grains with vmb_disk__vmdk_zero, then .finish (fsyncs) or .abort
 * (removes the file).
 */
int vmb_disk__vmdk_create_layer(const char *path, const char *extent_name,
				uint64_t size, uint64_t grain, const uint32_t *cid,
				const char *parent_hint, uint32_t parent_cid,
				void **writer);

/*
 * Mark the whole grains of [offset, offset+length) as zero grains (read
 * as zeros, hide the parent; the header gets version 2 and the zeroed-
 * grain flag).  Same ordering rules as writes.
 */
int vmb_disk__vmdk_zero(void *writer, uint64_t offset, uint64_t length);

#endif
