/*
 * vmbackup: disk images.
 *
 * A vmb_disk is the guest-visible view of a virtual disk: a byte array of
 * vmb_disk_size() bytes that can be read at any offset, plus an allocation
 * map.  It hides the image format (raw, qcow2, VMDK, VDI) and the chain of
 * backing/parent files.  It is also the one seam through which every image
 * access goes: a hypervisor plugin (for instance an NBD export of a running
 * VM) or a snapshot inside a repository provides a vmb_disk through
 * vmb_disk_new() and the rest of the library cannot tell the difference.
 */
#ifndef VMBACKUP_DISK_H
#define VMBACKUP_DISK_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmb_disk vmb_disk;

/** Kinds of extent in an allocation map. */
typedef enum vmb_extent_kind {
	VMB_EXTENT_DATA = 0, /**< allocated; must be read */
	VMB_EXTENT_ZERO = 1, /**< allocated or marked as zeros; reads as 0 */
	VMB_EXTENT_HOLE = 2, /**< not allocated; reads as 0 (in one layer of
				  a chain: falls through to the backing) */
} vmb_extent_kind;

/** One extent of an allocation map. */
typedef struct vmb_extent {
	uint64_t offset; /**< guest offset in bytes */
	uint64_t length; /**< length in bytes, > 0 */
	int kind;        /**< a vmb_extent_kind */
	int layer;       /**< chain layer owning it: 0 = top, 1 = its backing,
			      ...; -1 for holes of the whole chain */
} vmb_extent;

/** Called once per extent, in increasing offset order.  Non-zero stops. */
typedef int (*vmb_extent_fn)(const vmb_extent *e, void *payload);

/** Flags for vmb_disk_open(). */
#define VMB_DISK_OPEN_NO_BACKING 0x1u /**< open only the named file */
#define VMB_DISK_OPEN_RAW        0x2u /**< the file's bytes as a raw disk,
					    never probed (VM folder files) */

/**
 * Open a disk image of any supported format.  The format is probed from
 * the content, never from the file name; raw is the fallback.  Backing
 * files (qcow2 backing file, VMDK parentFileNameHint, VDI parent UUID) are
 * opened as a chain.
 *
 * @param path   image file
 * @param flags  VMB_DISK_OPEN_* flags
 * @param[out] out  the open disk; free it with vmb_disk_close()
 * @return 0 or a negative vmb_error (VMB_ENOTFOUND, VMB_ECORRUPT,
 *         VMB_ENOTSUP ...) with a message naming the file and the fault.
 */
VMB_EXTERN(int) vmb_disk_open(const char *path, unsigned flags,
			      vmb_disk **out);

/**
 * Open a chain whose layers are known from elsewhere (a VirtualBox media
 * registry: differencing images live in a Snapshots/ folder, away from
 * their parents): @p paths[0] is the top, each next one its parent, the
 * last the base.  Each link is checked against what the child's header
 * records (VDI parent uuid, qcow2/VMDK backing file): a mismatch is
 * VMB_EFORMAT naming the child, its recorded parent and the file given;
 * a base that still has a parent, or a layer that has none but is given
 * one, is refused the same way.
 * @param[out] out  free with vmb_disk_close()
 */
VMB_EXTERN(int) vmb_disk_open_layers(const char *const *paths, size_t n,
				     vmb_disk **out);

/** Close a disk; accepts NULL. */
VMB_EXTERN(void) vmb_disk_close(vmb_disk *d);

/** @return the guest-visible size in bytes. */
VMB_EXTERN(uint64_t) vmb_disk_size(const vmb_disk *d);

/** @return the format name of the top layer ("raw", "qcow2", ...). */
VMB_EXTERN(const char *) vmb_disk_format_name(const vmb_disk *d);

/** @return the number of layers in the chain (1 without backing). */
VMB_EXTERN(int) vmb_disk_layers(const vmb_disk *d);

/**
 * A layer's identity at open time: device, inode, size and modification
 * time, which survive a rename.  Two equal identities mean the file was
 * not written in between.  Layer 0 is the top.  VMB_ENOTSUP for disks
 * from vmb_disk_new() and for layers that are not regular files (block
 * devices keep their times when written).
 */
VMB_EXTERN(int) vmb_disk_layer_identity(const vmb_disk *d, int layer,
					char out[96]);
/** A layer's modification and status-change times (ns since the epoch),
 *  as they were when the disk was opened; regular files only. */
VMB_EXTERN(int) vmb_disk_layer_times(const vmb_disk *d, int layer,
				     int64_t *mtime_ns, int64_t *ctime_ns);
/** @return a layer's file name, or NULL. */
VMB_EXTERN(const char *) vmb_disk_layer_path(const vmb_disk *d, int layer);
/**
 * A layer's image uuid and, for a differencing image, its parent's
 * (lower-case text without braces, as VirtualBox prints them; @p parent
 * is "" without a parent link).  VMB_ENOTSUP for formats without uuids.
 */
VMB_EXTERN(int) vmb_disk_layer_uuid(const vmb_disk *d, int layer,
				    char uuid[37], char parent[37]);
/** @return a layer's format name, or NULL. */
VMB_EXTERN(const char *) vmb_disk_layer_format(const vmb_disk *d, int layer);

/**
 * Read guest data.  Safe to call from several threads at once.
 * Reads past the end fail with VMB_EINVAL.
 */
VMB_EXTERN(int) vmb_disk_read(vmb_disk *d, void *buf, uint64_t offset,
			      size_t length);

/**
 * Walk the allocation map of [offset, offset+length) of the whole chain
 * without reading data.  Adjacent extents of the same kind and layer are
 * merged.  Holes of the whole chain are reported with layer -1.
 */
VMB_EXTERN(int) vmb_disk_map(vmb_disk *d, uint64_t offset, uint64_t length,
			     vmb_extent_fn fn, void *payload);

/**
 * Describe the image as a JSON object: format, version, virtual size,
 * cluster/grain/block size, allocated and zero bytes, chain, bitmaps,
 * snapshots.  @param[out] json  a string to free with vmb_free().
 */
VMB_EXTERN(int) vmb_disk_inspect_json(vmb_disk *d, char **json);

/** Probe a file's format without opening it as a disk ("qcow2", ...). */
VMB_EXTERN(int) vmb_disk_probe(const char *path, const char **format);

/* ---- writers, used by restores ---- */

typedef struct vmb_disk_writer vmb_disk_writer;

/** Options for vmb_disk_writer_create(); start from VMB_DISK_WRITER_INIT. */
typedef struct vmb_disk_writer_options {
	unsigned version;      /**< VMB_DISK_WRITER_OPTIONS_VERSION */
	const char *subformat; /**< vmdk: "monolithicSparse" (default) or
				    "streamOptimized"; others: NULL */
	uint32_t cluster_size; /**< 0 = the format's default */
	unsigned flags;        /**< VMB_DISK_WRITER_* (version >= 2) */
} vmb_disk_writer_options;

/** Do not fsync the image when finishing (as `qemu-img convert` does
 *  not): faster, but a crash soon after may lose part of the image. */
#define VMB_DISK_WRITER_NO_SYNC 0x1u

#define VMB_DISK_WRITER_OPTIONS_VERSION 2
#define VMB_DISK_WRITER_INIT { VMB_DISK_WRITER_OPTIONS_VERSION, NULL, 0, 0 }

/**
 * Create a new image of @p format ("raw", "qcow2", "vmdk", "vdi") and
 * @p size guest bytes.  Ranges never written read back as zeros and stay
 * unallocated (sparse).  Fails with VMB_EEXISTS if @p path exists.
 */
VMB_EXTERN(int) vmb_disk_writer_create(const char *path, const char *format,
				       uint64_t size,
				       const vmb_disk_writer_options *opts,
				       vmb_disk_writer **out);

/**
 * Write guest data.  Calls must come with increasing, non-overlapping
 * offsets.  @p offset is a multiple of 64 KiB and @p length a multiple of
 * 64 KiB, except that the last write may end at the image size.  Zero
 * blocks inside @p buf are detected and left unallocated.
 */
VMB_EXTERN(int) vmb_disk_writer_write(vmb_disk_writer *w, uint64_t offset,
				      const void *buf, size_t length);

/** Write the metadata and make the image durable (fsync). */
VMB_EXTERN(int) vmb_disk_writer_finish(vmb_disk_writer *w);

/** Free a writer; if not finished, the partial file is removed. NULL ok. */
VMB_EXTERN(void) vmb_disk_writer_free(vmb_disk_writer *w);

/**
 * Split a format as users write it: "raw", "qcow2", "vdi", "vmdk", or
 * "vmdk:SUBFORMAT" with SUBFORMAT monolithicSparse (the default),
 * streamOptimized (what ESXi and OVA consumers want) or monolithicFlat
 * (NAME.vmdk descriptor + NAME-flat.vmdk data); "vmdk:subformat=X", in
 * qemu-img's manner, is the same.  @param[out] format  the format name;
 * @param[out] subformat  a static string, or NULL when none was given.
 * @return 0, or VMB_EINVAL with a message naming what is wrong.
 */
VMB_EXTERN(int) vmb_disk_format_parse(const char *spec, char format[16],
				      const char **subformat);

/** @return the usual file extension for a format ("qcow2", "img" ...). */
VMB_EXTERN(const char *) vmb_disk_format_extension(const char *format);

#ifdef __cplusplus
}
#endif
#endif
