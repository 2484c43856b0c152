/*
 * vmbackup: the vtables behind vmb_disk.
 *
 * Two seams:
 *  - vmb_disk_ops lets a program or plugin provide a whole disk (an NBD
 *    export, a snapshot inside a repository) through vmb_disk_new().
 *  - vmb_disk_format is one image format: it opens one file (one layer of
 *    a chain) and says where its backing file is; the core builds chains.
 * Weaker stability promise than the rest of the API: fields are only
 * appended, and `version` tells which fields exist.
 */
#ifndef VMBACKUP_SYS_DISK_FORMAT_H
#define VMBACKUP_SYS_DISK_FORMAT_H

#include "../disk.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMB_DISK_OPS_VERSION 2

/** A disk provided by the caller (see vmb_disk_new()). */
typedef struct vmb_disk_ops {
	unsigned version;   /**< VMB_DISK_OPS_VERSION */
	const char *format; /**< name reported by vmb_disk_format_name() */
	uint64_t (*size)(void *data);
	/** Must be safe to call from several threads at once. */
	int (*read)(void *data, void *buf, uint64_t offset, size_t length);
	/** Optional (NULL: everything is DATA). Layer numbers as in disk.h. */
	int (*map)(void *data, uint64_t offset, uint64_t length,
		   vmb_extent_fn fn, void *payload);
	/** Optional. */
	void (*close)(void *data);

	/* version >= 2 */
	/**
	 * Optional: the extents that changed since an earlier backup (a
	 * hypervisor's dirty bitmap).  @p parent_state is the text this
	 * disk returned as @p new_state at the parent snapshot (NULL: no
	 * parent, or the parent did not come from this kind of disk).
	 * Call @p fn for every changed extent, in increasing order (kind
	 * DATA; a changed range may read as zeros), set @p source to a
	 * static name ("libvirt") when the extents are exact, or leave it
	 * NULL when they are not known (then every allocated chunk is
	 * read and compared by fingerprint: never a wrong backup).  Set
	 * @p new_state (malloc'd, or NULL) to what the next backup needs.
	 */
	int (*changes)(void *data, const char *parent_state,
		       vmb_extent_fn fn, void *payload, const char **source,
		       char **new_state);
} vmb_disk_ops;

/** Wrap caller-provided callbacks as a vmb_disk (close is called once).
 *  @p ops must stay valid until then; version 1 ops (without changes)
 *  are accepted as they are. */
VMB_EXTERN(int) vmb_disk_new(const vmb_disk_ops *ops, void *data,
			     vmb_disk **out);

#define VMB_DISK_FORMAT_VERSION 1

/** What a format learns about one file when it opens it. */
typedef struct vmb_layer_info {
	uint64_t virtual_size;
	char *backing_path;   /**< malloc'd, as stored in the image (may be
				   relative to the image's folder); NULL if
				   none or if the parent is found by uuid */
	char *backing_format; /**< malloc'd format hint, or NULL */
	int has_uuid;         /**< uuid below is valid */
	uint8_t uuid[16];     /**< this image's uuid (VDI) */
	int parent_by_uuid;   /**< parent must be found by parent_uuid */
	uint8_t parent_uuid[16];
} vmb_layer_info;

/** Options passed to a format's open(). */
typedef struct vmb_layer_open_options {
	unsigned version;     /**< 1 */
	const char *snapshot; /**< qcow2 internal snapshot to view, or NULL */
} vmb_layer_open_options;

/** Options passed to a format's create(). */
typedef vmb_disk_writer_options vmb_layer_create_options;

/**
 * One image format.  A format's reader state ("layer") sees only its own
 * file; HOLE in its map means "not here: ask the backing file".
 */
typedef struct vmb_disk_format {
	unsigned version;      /**< VMB_DISK_FORMAT_VERSION */
	const char *name;      /**< "qcow2", "vmdk", "vdi", "raw" */
	const char *extension; /**< file extension for restores */
	/**
	 * @param head  the first min(file size, 64 KiB) bytes
	 * @return 0 if not this format, else a confidence 1..100
	 */
	int (*probe)(const uint8_t *head, size_t len, uint64_t file_size);
	/** Open one file. Errors via vmb_error_set(), naming the file. */
	int (*open)(const char *path, const vmb_layer_open_options *opts,
		    void **layer, vmb_layer_info *info);
	/** Allocation of this file only, increasing order, whole range. */
	int (*map)(void *layer, uint64_t offset, uint64_t length,
		   vmb_extent_fn fn, void *payload);
	/**
	 * Read a range.  The core only asks for ranges map() reported as
	 * DATA (reading other ranges may return anything).  Must be safe to
	 * call from several threads at once.
	 */
	int (*read)(void *layer, void *buf, uint64_t offset, size_t length);
	/**
	 * Optional: format-specific JSON members for `vmb inspect`, without
	 * the braces, e.g. "\"version\":3,\"cluster_size\":65536,...".
	 * @param[out] json  malloc'd string
	 */
	int (*describe)(void *layer, char **json);
	void (*close)(void *layer);

	/* writer; may be NULL for read-only formats */
	int (*create)(const char *path, uint64_t size,
		      const vmb_layer_create_options *opts, void **writer);
	/** Same contract as vmb_disk_writer_write(). */
	int (*write)(void *writer, uint64_t offset, const void *buf,
		     size_t length);
	/** Write metadata, fsync, free the writer state. */
	int (*finish)(void *writer);
	/** Free the writer state without finishing (file is removed). */
	void (*abort)(void *writer);
} vmb_disk_format;

#ifdef __cplusplus
}
#endif
#endif
