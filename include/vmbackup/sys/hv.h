/*
 * vmbackup: the hypervisor plugin ABI.
 *
 * A hypervisor plugin knows one kind of VM source: plain image files
 * ("file"), libvirt domains ("libvirt"), and later VirtualBox or VMware
 * folders.  It is a shared object with one exported entry point,
 * vmb_hv_plugin_init(), returning a struct of callbacks; the loader in
 * libvmbackup (lib/hv/) checks the struct's size and API version and the
 * mandatory callbacks before it calls anything, and names the plugin in
 * every error it reports.  The same source file can also be linked
 * statically into a program (compile it with -DVMB_HV_STATIC and call
 * vmb_hv_register() with the plugin's init function).
 *
 * In the manner of nbdkit's plugin API:
 *  - the struct only grows: new callbacks are appended, `struct_size`
 *    tells the loader which ones a plugin was compiled with, and a plugin
 *    built against an older header keeps working;
 *  - `api_version` changes only when a callback's meaning changes; the
 *    loader refuses a plugin whose api_version it does not know;
 *  - optional operations are announced in `features` and their callbacks
 *    may be NULL; the loader refuses a plugin that announces a feature
 *    without its callback, so nothing is ever a stub.
 *
 * Plugins report errors with vmb_error_set() and log with vmb_log(); they
 * read disks through vmb_disk (vmb_disk_open() for image files,
 * vmb_disk_new() for anything else: an NBD export of a running VM), so
 * the backup pipeline, change tracking and restore treat every source
 * alike.  Symbols of libvmbackup are resolved from the program that loads
 * the plugin: a plugin does not link libvmbackup itself.
 */
#ifndef VMBACKUP_SYS_HV_H
#define VMBACKUP_SYS_HV_H

#include "../hv.h"
#include "disk_format.h"
#include "../vmfolder.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The API version this header describes. */
#define VMB_HV_API_VERSION 1

/* ---- what a plugin hands back ---- */

/** One disk of a VM, as a plugin describes it. */
typedef struct vmb_hv_disk_info {
	const char *name;   /**< stable name in the VM ("vda", "disk0") */
	const char *path;   /**< image file or device, or NULL */
	const char *format; /**< "qcow2", "raw", ...: as the VM uses it */
	uint64_t size;      /**< virtual size in bytes, 0 if unknown */
} vmb_hv_disk_info;

/** A VM, as describe() reports it.  Owned by the plugin until
 *  vm_info_free() (or, without that callback, until close()). */
typedef struct vmb_hv_vm_info {
	uint32_t struct_size;      /**< sizeof(vmb_hv_vm_info) */
	const char *name;          /**< canonical VM name */
	const char *uuid;          /**< or NULL */
	int state;                 /**< a vmb_hv_vm_state */
	size_t ndisks;
	const vmb_hv_disk_info *disks;
	const char *config_format; /**< "libvirt-xml", ... or NULL */
	const char *config;        /**< the configuration document, or NULL */
} vmb_hv_vm_info;

/** One disk of a running backup. */
typedef struct vmb_hv_backup_disk {
	const char *name;   /**< as in vmb_hv_disk_info */
	const char *path;   /**< recorded as the disk's source, or NULL */
	/**
	 * The read handle, owned by the plugin: data, allocation map, and,
	 * with vmb_disk_ops version 2, the changed extents since a parent
	 * backup (vmb_disk_ops.changes).  Valid until backup_end().
	 */
	vmb_disk *disk;
} vmb_hv_backup_disk;

/** A backup in progress, as backup_begin() returns it. */
typedef struct vmb_hv_backup_job {
	uint32_t struct_size;      /**< sizeof(vmb_hv_backup_job) */
	const char *vm;            /**< canonical VM name */
	size_t ndisks;
	const vmb_hv_backup_disk *disks;
	const char *config_format; /**< or NULL */
	const char *config;        /**< configuration at the backup, or NULL */
	/**
	 * How consistent the data is, recorded in the snapshot:
	 * "powered-off", "frozen" (guest file systems quiesced),
	 * "crash-consistent" (a running VM, not quiesced), ...
	 */
	const char *consistency;
	/** Why it is not better (e.g. "the guest agent did not answer"),
	 *  recorded with it; or NULL. */
	const char *consistency_note;
	void *plugin_data;         /**< the plugin's own */
} vmb_hv_backup_job;

/* ---- the plugin ---- */

/** Optional operations a plugin offers (vmb_hv_plugin.features). */
#define VMB_HV_F_LIST      0x01u /**< list() */
#define VMB_HV_F_SNAPSHOT  0x02u /**< snapshot_create/_list/_revert/_delete */
#define VMB_HV_F_DEFINE    0x04u /**< define() */
#define VMB_HV_F_LIVE      0x08u /**< backs up running VMs */
#define VMB_HV_F_CBT       0x10u /**< its disks report changed extents */
#define VMB_HV_F_QUIESCE   0x20u /**< can quiesce a running guest */
#define VMB_HV_F_FOLDER    0x40u /**< backs up VM folders (vmfolder.h):
				     folder_fixup() */
/**
 * boot(): the plugin boots a snapshot's disk to verify it (a boot
 * runner: "kvm" for --runner builtin, "qemu").  A plugin that offers
 * VMB_HV_F_BOOT and has none of describe, backup_begin and backup_end is
 * a runner only: it is not a backup source.
 */
#define VMB_HV_F_BOOT      0x80u

/** What boot() is asked to do (vmb_hv_boot() fills it in). */
typedef struct vmb_hv_boot_request {
	uint32_t struct_size;    /**< sizeof(vmb_hv_boot_request) */
	/** the disk to boot, read-only, straight from the repository;
	 *  owned by the caller, valid during boot() */
	vmb_disk *disk;
	const char *disk_name;   /**< its name in the snapshot */
	const char *expect;      /**< POSIX extended regex the console must
				      show, or NULL (see vmb_boot_options) */
	double timeout;          /**< seconds, > 0 */
	const char *vcpu;        /**< runner-specific backend ("kvm",
				      "unicorn", "tcg"), or NULL: the best */
	uint32_t memory_mb;      /**< guest RAM, MiB */
	size_t console_limit;    /**< stop the guest past this much output */
	uint64_t max_instructions; /**< software backends: stop after
					this many, 0 = no limit */
	const char *scratch_dir; /**< for sockets and overlays */
} vmb_hv_boot_request;

/** What boot() reports.  The library zeroes it and sets struct_size;
 *  console and screen are malloc()'d by the plugin and freed by the
 *  library with free(). */
typedef struct vmb_hv_boot_report {
	uint32_t struct_size;    /**< sizeof(vmb_hv_boot_report) */
	int booted;              /**< 1: booted as expected */
	char reason[256];        /**< one line: why (either way) */
	char vcpu[16];           /**< the backend that ran it */
	char *console;           /**< serial and teletype output kept */
	size_t console_len;
	uint64_t console_total;  /**< bytes the guest printed in all */
	char *screen;            /**< text left in VGA memory, or NULL */
} vmb_hv_boot_report;
#define VMB_HV_F_INSTANT   0x100u /**< instant recovery: start(),
				     pull_start(), pull_wait() */

typedef struct vmb_hv_plugin {
	uint32_t struct_size;    /**< sizeof(vmb_hv_plugin) as compiled */
	uint32_t api_version;    /**< VMB_HV_API_VERSION */
	const char *name;        /**< source prefix: "libvirt" for
				      "libvirt:DOMAIN"; [a-z][a-z0-9_]* */
	const char *version;     /**< the plugin's own version */
	const char *description; /**< one line */
	uint32_t features;       /**< VMB_HV_F_* */

	/** Optional: once, after the checks, before anything else. */
	int (*load)(void);
	/** Optional: once, when the plugin is unloaded. */
	void (*unload)(void);

	/**
	 * Mandatory: connect.  @p uri is the user's --connect (NULL: the
	 * plugin's default, e.g. LIBVIRT_DEFAULT_URI).
	 */
	int (*open)(const char *uri, void **handle);
	/** Mandatory: disconnect and free everything still owned. */
	void (*close)(void *handle);

	/**
	 * Mandatory: describe a VM (@p vm as the user wrote it after the
	 * prefix).  VMB_ENOTFOUND when there is no such VM.
	 */
	int (*describe)(void *handle, const char *vm, vmb_hv_vm_info **out);
	/** Optional: free what describe() returned. */
	void (*vm_info_free)(void *handle, vmb_hv_vm_info *info);

	/**
	 * Mandatory: start a backup of @p vm.  The plugin makes the data
	 * consistent if it can (quiesce, a checkpoint), and opens a read
	 * handle per disk.  @p o says what the parent snapshot recorded for
	 * each disk (the `state` its disks' changes() returned), so the
	 * plugin can start an incremental from there.  Nothing may be
	 * written to the repository by a plugin.
	 */
	int (*backup_begin)(void *handle, const char *vm,
			    const vmb_hv_backup_options *o,
			    vmb_hv_backup_job **out);
	/**
	 * Mandatory: finish a backup.  @p committed is 1 when the snapshot
	 * was written (the plugin may now drop what only the parent
	 * needed, e.g. an older checkpoint), 0 when it failed or was
	 * aborted (the plugin undoes what begin created, so the parent
	 * stays usable).  Frees @p b.
	 */
	int (*backup_end)(void *handle, vmb_hv_backup_job *b, int committed);

	/** VMB_HV_F_LIST: call @p fn for every VM. */
	int (*list)(void *handle, vmb_hv_vm_fn fn, void *payload);

	/** VMB_HV_F_SNAPSHOT: VM snapshots on the hypervisor itself. */
	int (*snapshot_create)(void *handle, const char *vm, const char *name);
	int (*snapshot_list)(void *handle, const char *vm,
			     vmb_hv_snapshot_fn fn, void *payload);
	int (*snapshot_revert)(void *handle, const char *vm, const char *name);
	int (*snapshot_delete)(void *handle, const char *vm, const char *name);

	/**
	 * VMB_HV_F_DEFINE: make a VM from a stored configuration whose
	 * disks were restored to new files (paths, formats, name, identity
	 * rewritten as @p req says).  @param[out] name  the new VM's name,
	 * malloc'd.
	 */
	int (*define)(void *handle, const vmb_hv_define_request *req,
		      char **name);

	/**
	 * VMB_HV_F_FOLDER: a VM folder this plugin backed up
	 * (vmb_vmfolder_job()) was restored; rewrite its configuration and
	 * disk headers through @p v: every path to the file's new place
	 * (vmb_vmfolder_view_map()), with VMB_VMFOLDER_FLATTEN the drives
	 * to their one image and no snapshot tree, with
	 * VMB_VMFOLDER_NEW_UUID new identities, consistently.  An error
	 * undoes the whole restore.
	 */
	int (*folder_fixup)(void *handle, vmb_vmfolder_view *v);

	/**
	 * VMB_HV_F_BOOT: boot @p req->disk, read-only (writes go to a
	 * throw-away overlay), until @p req->expect shows on the console,
	 * the guest stops or faults, or @p req->timeout.  Returns 0 when the
	 * boot ran, whatever the verdict (in @p rep); an error only when it
	 * could not run (no /dev/kvm and no software backend, no QEMU).
	 */
	int (*boot)(void *handle, const vmb_hv_boot_request *req,
		    vmb_hv_boot_report *rep);
	/* ---- VMB_HV_F_INSTANT (instant recovery, docs/serve.md) ---- */
	/** Start VM @p vm (as define() named it). */
	int (*start)(void *handle, const char *vm);
	/**
	 * Start copying, in the background, the backing data of every
	 * disk of running VM @p vm into its top image, so that the image
	 * no longer needs its backing file when the copy is done (libvirt:
	 * a block pull).  The VM runs on as before meanwhile; a failed or
	 * interrupted copy leaves it on its overlay and backing file.
	 */
	int (*pull_start)(void *handle, const char *vm);
	/**
	 * Wait until the copies pull_start() began have ended.  @return 0
	 * once no disk of @p vm refers to a backing file any more, else an
	 * error saying which disk is still on it.  @p fn (may be NULL)
	 * gets the progress in bytes.
	 */
	int (*pull_wait)(void *handle, const char *vm, vmb_progress_fn fn,
			 void *payload);
} vmb_hv_plugin;

/** The entry point's type and name. */
typedef const vmb_hv_plugin *(*vmb_hv_plugin_init_fn)(void);
#define VMB_HV_PLUGIN_ENTRY "vmb_hv_plugin_init"

/**
 * Declare a plugin's entry point:
 *     static const vmb_hv_plugin plugin = { sizeof plugin, ... };
 *     VMB_HV_REGISTER_PLUGIN(file, plugin)
 * A loadable module exports vmb_hv_plugin_init(); built with
 * -DVMB_HV_STATIC the function is vmb_hv_plugin_init_<NAME>() instead, for
 * vmb_hv_register().
 */
#ifdef VMB_HV_STATIC
#define VMB_HV_REGISTER_PLUGIN(NAME, P)                                  \
	const vmb_hv_plugin *vmb_hv_plugin_init_##NAME(void);            \
	const vmb_hv_plugin *vmb_hv_plugin_init_##NAME(void) { return &(P); }
#else
#define VMB_HV_REGISTER_PLUGIN(NAME, P)                                  \
	__attribute__((visibility("default")))                           \
	const vmb_hv_plugin *vmb_hv_plugin_init(void);                   \
	__attribute__((visibility("default")))                           \
	const vmb_hv_plugin *vmb_hv_plugin_init(void) { return &(P); }
#endif

#ifdef __cplusplus
}
#endif
#endif
