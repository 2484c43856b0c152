/* Internal: the built-in image formats. */
#ifndef VMB_LIB_DISK_FORMAT_H
#define VMB_LIB_DISK_FORMAT_H

#include "vmbackup/sys/disk_format.h"

extern const vmb_disk_format vmb_disk__raw_format;
extern const vmb_disk_format vmb_disk__qcow2_format;
extern const vmb_disk_format vmb_disk__vmdk_format;
extern const vmb_disk_format vmb_disk__vdi_format;

/* Limits every reader enforces. */
#define VMB_DISK_MAX_CHAIN 64                 /* layers in a chain */
#define VMB_DISK_MAX_SIZE (1ULL << 50)        /* 1 PiB virtual size */
#define VMB_DISK_PROBE_BYTES 65536

/* Look up a built-in format by name ("qcow2"); NULL if unknown. */
const vmb_disk_format *vmb_disk__format_by_name(const char *name);

/* A custom disk's changes() (vmb_disk_ops version 2), see disk_format.h.
 * @return 1 when the disk has none (image files, version 1 ops), else 0
 * or a negative error. */
int vmb_disk__changes(vmb_disk *d, const char *parent_state,
		      vmb_extent_fn fn, void *payload, const char **source,
		      char **new_state);

/* Does this writer accept writes in any order, from several threads at
 * once (raw)?  Then vmb_disk__writer_write_at() may be used. */
int vmb_disk__writer_unordered(const vmb_disk_writer *w);
int vmb_disk__writer_write_at(vmb_disk_writer *w, uint64_t offset,
			      const void *buf, size_t length);

/* fsync for writers' finish(): skipped when the writer was created with
 * VMB_DISK_WRITER_NO_SYNC. */
int vmb_disk__fsync(int fd);

/* The end of every writer's finish(): fsync (as above) and close *fd,
 * which is -1 afterwards whatever happens.  One-line errors name @path. */
int vmb_disk__sync_close(int *fd, const char *path);

/* Whether reads of @d's raw layers should go through the page cache
 * even where VMB_DIRECT_READ=auto would read around it: set by a backup
 * that will mostly hash and drop what it reads (an incremental, a clone
 * compared with other snapshots), cleared for one that compresses it
 * all.  VMB_DIRECT_READ=1 and 0 keep their meaning.  No effect on
 * custom disks and other formats. */
void vmb_disk__prefer_cache(vmb_disk *d, int on);
void vmb_disk__raw_prefer_cache(void *layer, int on);

/* Free the strings inside a vmb_layer_info. */
void vmb_disk__layer_info_free(vmb_layer_info *info);

#endif
