/*
 * vmbackup: VM folders, the shared layer of the desktop-hypervisor plugins
 * (VMware Workstation/Player, VirtualBox).
 *
 * A VM on a desktop hypervisor is a folder: its configuration file(s), its
 * disks with their snapshot chains (every layer a file: VMDK deltas, VDI
 * differencing images, split extents), firmware variables and saved states.
 * A plugin lists those files here; every file becomes one entry of the
 * snapshot, stored byte for byte (opened as raw, so an unchanged file is
 * recognised by its identity and costs no read, and a changed one is
 * compared chunk by chunk), and a small JSON document (the snapshot's
 * configuration, format VMB_VMFOLDER_CONFIG_FORMAT) records which entry is
 * which file, its role, the path the configuration used for it, and each
 * drive's chain.  Restoring writes the folder back with the original names;
 * the plugin's folder_fixup() callback (vmbackup/sys/hv.h) then rewrites
 * its configuration through the view below (paths, --flatten, --new-uuid).
 * docs/vm-folders.md describes the whole protocol.
 */
#ifndef VMBACKUP_VMFOLDER_H
#define VMBACKUP_VMFOLDER_H

#include "common.h"
#include "repo.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The snapshot configuration format of a VM folder. */
#define VMB_VMFOLDER_CONFIG_FORMAT "vm-folder"

/** File roles (vmb_vmfolder_add_file()). */
#define VMB_VMFOLDER_ROLE_CONFIG   "config"   /**< rewritten on restore */
#define VMB_VMFOLDER_ROLE_DISK     "disk"     /**< a disk layer or extent;
						   replaced by --flatten */
#define VMB_VMFOLDER_ROLE_SNAPSHOT "snapshot" /**< only for a snapshot point
						   (its saved state, ...):
						   dropped by --flatten */
#define VMB_VMFOLDER_ROLE_FILE     "file"     /**< kept as is (NVRAM, the
						   current saved state) */

/** Limits (hostile configurations). */
#define VMB_VMFOLDER_MAX_FILES  4096
#define VMB_VMFOLDER_MAX_DRIVES 256
#define VMB_VMFOLDER_MAX_LAYERS 255

typedef struct vmb_vmfolder vmb_vmfolder;

/* ---- backup side: a plugin describes the folder ---- */

/**
 * Start describing the VM folder @p dir (the folder of the configuration
 * file) for plugin @p plugin ("vmware").  @param[out] out  free with
 * vmb_vmfolder_free(), or hand to vmb_vmfolder_job().
 */
VMB_EXTERN(int) vmb_vmfolder_new(const char *plugin, const char *dir,
				 vmb_vmfolder **out);
/** Free; accepts NULL. */
VMB_EXTERN(void) vmb_vmfolder_free(vmb_vmfolder *f);

/**
 * Add a file: @p path as the configuration wrote it (relative to the
 * folder, or absolute; it is kept for vmb_vmfolder_view_map()).  It must
 * be a regular file, not a symbolic link, and contain no ".." component
 * (VMB_EINVAL, naming it).  A file inside the folder is stored under its
 * path relative to the folder; one outside under its base name (made
 * unique).  Adding the same file again (same device and inode) returns
 * the first name and changes nothing.
 * @param role  a VMB_VMFOLDER_ROLE_*
 * @param[out] stored  the relative name it is restored as (belongs to
 *                     @p f), or NULL
 */
VMB_EXTERN(int) vmb_vmfolder_add_file(vmb_vmfolder *f, const char *path,
				      const char *role, const char **stored);

/**
 * Add a drive: @p name ("scsi0:0", "SATA-0-1"), the format of its chain
 * (@p format: "vmdk", "vdi", ...) and its layers' main files, top (the
 * current state) first, base last, each already added with
 * vmb_vmfolder_add_file() (the path as given there).  --flatten writes
 * the top's content as one image per drive.
 */
VMB_EXTERN(int) vmb_vmfolder_add_drive(vmb_vmfolder *f, const char *name,
				       const char *format,
				       const char *const *layers,
				       size_t nlayers);

/**
 * Set one of the plugin's own strings, kept in the snapshot and given
 * back by vmb_vmfolder_view_meta().  The layer itself reads "name" (the
 * VM's name: the snapshot's VM), "config" (the main configuration file,
 * as added), "consistency" and "consistency_note" (recorded in the
 * snapshot).  @p value NULL removes the key.
 */
VMB_EXTERN(int) vmb_vmfolder_set(vmb_vmfolder *f, const char *key,
				 const char *value);

/**
 * Turn the description into a backup job for a plugin's backup_begin():
 * every file is opened (as raw bytes) and becomes one disk of the job,
 * the configuration is the folder's JSON.  Takes @p f over, also on
 * failure.  @param[out] out  free with vmb_vmfolder_job_free() in
 * backup_end().
 */
struct vmb_hv_backup_job;
VMB_EXTERN(int) vmb_vmfolder_job(vmb_vmfolder *f,
				 struct vmb_hv_backup_job **out);
/** Free a job made by vmb_vmfolder_job(); accepts NULL. */
VMB_EXTERN(void) vmb_vmfolder_job_free(struct vmb_hv_backup_job *b);

/* ---- restore side ---- */

/** Flags for vmb_vmfolder_restore_opts.flags. */
#define VMB_VMFOLDER_FLATTEN  0x1u /**< current state only: one image per
					drive, snapshot-only files dropped */
#define VMB_VMFOLDER_NEW_UUID 0x2u /**< the plugin gives the copy new
					identities (VM, disks, MACs) */

/** Options for vmb_vmfolder_restore(); start from
 *  VMB_VMFOLDER_RESTORE_OPTS_INIT. */
typedef struct vmb_vmfolder_restore_opts {
	unsigned version;   /**< VMB_VMFOLDER_RESTORE_OPTS_VERSION */
	unsigned flags;     /**< VMB_VMFOLDER_* */
	const char *format; /**< --flatten's image format ("qcow2",
				 "vmdk:monolithicSparse"); NULL: each drive's
				 own */
	vmb_progress_fn progress;
	void *progress_payload;
	int no_sync;        /**< do not fsync the files */
} vmb_vmfolder_restore_opts;

#define VMB_VMFOLDER_RESTORE_OPTS_VERSION 1
#define VMB_VMFOLDER_RESTORE_OPTS_INIT \
	{ VMB_VMFOLDER_RESTORE_OPTS_VERSION, 0, NULL, NULL, NULL, 0 }

/** A restored folder, as a plugin's folder_fixup() sees it. */
typedef struct vmb_vmfolder_view vmb_vmfolder_view;

/** Called once the files are in place, to rewrite the configuration. */
typedef int (*vmb_vmfolder_fixup_fn)(vmb_vmfolder_view *v, void *payload);

/**
 * @return 1 if snapshot @p s holds a VM folder (its configuration format
 * is VMB_VMFOLDER_CONFIG_FORMAT and its document names a plugin), and
 * then @p plugin (if not NULL) gets that plugin's name; else 0.
 */
VMB_EXTERN(int) vmb_vmfolder_is(const vmb_snapshot *s, char plugin[32]);

/**
 * Restore the VM folder of snapshot @p snap into @p dir (created if
 * missing; it must be empty): every file under its original name, or,
 * with VMB_VMFOLDER_FLATTEN, each drive as one image (the base layer's
 * name; its extension changed when @p o->format is another format) and
 * no snapshot-only files.  Then @p fixup rewrites the configuration.  If
 * anything fails, every file written is removed (and @p dir if it was
 * made here).  Plugins are not needed here: vmb_hv_folder_restore() finds
 * the plugin and passes its folder_fixup().
 */
VMB_EXTERN(int) vmb_vmfolder_restore(vmb_repo *r, const char *snap,
				     const char *dir,
				     const vmb_vmfolder_restore_opts *o,
				     vmb_vmfolder_fixup_fn fixup,
				     void *payload, vmb_restore_result *res);

/** The restore folder (absolute). */
VMB_EXTERN(const char *) vmb_vmfolder_view_dir(const vmb_vmfolder_view *v);
/** The original folder (absolute), as the backup saw it. */
VMB_EXTERN(const char *) vmb_vmfolder_view_orig_dir(const vmb_vmfolder_view *v);
/** VMB_VMFOLDER_* flags of the restore. */
VMB_EXTERN(unsigned) vmb_vmfolder_view_flags(const vmb_vmfolder_view *v);
/** A plugin string set with vmb_vmfolder_set(), or NULL. */
VMB_EXTERN(const char *) vmb_vmfolder_view_meta(const vmb_vmfolder_view *v,
						const char *key);

/** Files of the snapshot (dropped ones too). */
VMB_EXTERN(size_t) vmb_vmfolder_view_files(const vmb_vmfolder_view *v);
/** File @p i's stored (relative) name. */
VMB_EXTERN(const char *) vmb_vmfolder_view_file(const vmb_vmfolder_view *v,
						size_t i);
/** File @p i's path as the configuration wrote it. */
VMB_EXTERN(const char *) vmb_vmfolder_view_file_orig(const vmb_vmfolder_view *v,
						     size_t i);
/** File @p i's role (VMB_VMFOLDER_ROLE_*). */
VMB_EXTERN(const char *) vmb_vmfolder_view_file_role(const vmb_vmfolder_view *v,
						     size_t i);
/** Where file @p i is now (absolute), or NULL when it was dropped
 *  (--flatten: layers and snapshot-only files). */
VMB_EXTERN(const char *) vmb_vmfolder_view_file_path(const vmb_vmfolder_view *v,
						     size_t i);

/** Drives of the snapshot. */
VMB_EXTERN(size_t) vmb_vmfolder_view_drives(const vmb_vmfolder_view *v);
VMB_EXTERN(const char *) vmb_vmfolder_view_drive(const vmb_vmfolder_view *v,
						 size_t i);
/** Drive @p i's layer count and layer @p k (0 = top) as stored name. */
VMB_EXTERN(size_t) vmb_vmfolder_view_drive_layers(const vmb_vmfolder_view *v,
						  size_t i);
VMB_EXTERN(const char *) vmb_vmfolder_view_drive_layer(const vmb_vmfolder_view *v,
						       size_t i, size_t k);
/** With --flatten: drive @p i's one image (absolute) and its format
 *  ("vmdk", "qcow2", ...); else NULL. */
VMB_EXTERN(const char *) vmb_vmfolder_view_drive_flat(const vmb_vmfolder_view *v,
						      size_t i,
						      const char **format);

/**
 * Map a path as the configuration wrote it (relative to the original
 * folder or absolute; in the original's configuration, or in another
 * stored file's) to where that file is now: an absolute path inside the
 * restore folder; for a dropped layer of a flattened drive, the drive's
 * image.  @return NULL when no stored file had that path.
 */
VMB_EXTERN(const char *) vmb_vmfolder_view_map(const vmb_vmfolder_view *v,
					       const char *path);
/** As vmb_vmfolder_view_map(), but relative to the restore folder
 *  (what a configuration that travels with its folder wants). */
VMB_EXTERN(const char *) vmb_vmfolder_view_map_rel(const vmb_vmfolder_view *v,
						   const char *path);

/**
 * Write @p len bytes as file @p rel of the restore folder (relative; a
 * stored configuration is replaced), atomically (temporary file, fsync,
 * rename), and remember it so a failed restore removes it too.
 */
VMB_EXTERN(int) vmb_vmfolder_view_write(vmb_vmfolder_view *v,
					const char *rel, const void *data,
					size_t len);
/** Remove stored file @p i (a plugin's own choice on --flatten). */
VMB_EXTERN(int) vmb_vmfolder_view_drop(vmb_vmfolder_view *v, size_t i);

#ifdef __cplusplus
}
#endif
#endif
