/*
 * vmbackup: hypervisor plugins.
 *
 * A backup SOURCE is either a disk image path (the "file" plugin) or
 * PLUGIN:NAME ("libvirt:web1").  Plugins are shared objects found in a
 * plugin directory (VMB_PLUGIN_DIR, else vmb_hv_plugin_dir()) or linked
 * into the program and registered with vmb_hv_register(); the ABI they
 * implement is in vmbackup/sys/hv.h.  Everything here goes through that
 * one layer, so an image file and a running libvirt domain take the same
 * path through backup, restore and define.
 */
#ifndef VMBACKUP_HV_H
#define VMBACKUP_HV_H

#include "common.h"
#include "repo.h"
#include "vmfolder.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmb_hv vmb_hv;
typedef struct vmb_hv_plugin vmb_hv_plugin;

/** A VM's state, as a plugin sees it. */
typedef enum vmb_hv_vm_state {
	VMB_HV_STATE_UNKNOWN = 0,
	VMB_HV_STATE_OFF = 1,     /**< shut off: its disks are not in use */
	VMB_HV_STATE_RUNNING = 2,
	VMB_HV_STATE_PAUSED = 3,
	VMB_HV_STATE_SAVED = 4,   /**< suspended to a file */
} vmb_hv_vm_state;

/** @return "off", "running", ... for a vmb_hv_vm_state. */
VMB_EXTERN(const char *) vmb_hv_state_name(int state);

/** Called by list(): one VM.  Non-zero stops the walk. */
typedef int (*vmb_hv_vm_fn)(const char *name, int state, void *payload);
/** Called by snapshot_list(): one VM snapshot (time in seconds). */
typedef int (*vmb_hv_snapshot_fn)(const char *name, int64_t created,
				  void *payload);

/** What the parent snapshot recorded about one disk. */
typedef struct vmb_hv_parent_disk {
	const char *name;  /**< disk name in the parent snapshot */
	const char *state; /**< that disk's change-tracking state, or NULL */
} vmb_hv_parent_disk;

/** Flags for vmb_hv_backup_options.flags. */
#define VMB_HV_BACKUP_FULL      0x1u /**< ignore the parent: read all */
#define VMB_HV_BACKUP_QUIESCE   0x2u /**< fail if the guest cannot be
					  quiesced (default: note it) */
#define VMB_HV_BACKUP_CRASH_CONSISTENT 0x4u /**< back up a running VM
					  that cannot be frozen or snapshotted
					  (recorded as crash-consistent);
					  without it such a VM is refused */
#define VMB_HV_BACKUP_LIVE      0x8u /**< may take a hypervisor snapshot
					  of a running VM, read the images it
					  made read-only, and delete it */
#define VMB_HV_BACKUP_DRY_RUN   0x10u /**< start and end the backup
					  without storing anything: plugins
					  change nothing on the hypervisor
					  and log (VMB_LOG_INFO, "would
					  run: ...") what they would do */

/** What a plugin's backup_begin() is told. */
typedef struct vmb_hv_backup_options {
	uint32_t struct_size;  /**< sizeof(vmb_hv_backup_options) */
	unsigned flags;        /**< VMB_HV_BACKUP_* */
	const char *parent;    /**< parent snapshot id, or NULL */
	size_t nparent;
	const vmb_hv_parent_disk *parent_disks;
	const char *scratch_dir; /**< where the plugin may put temporary
				      files (sockets, scratch images) */
	const char *repo_id;   /**< the repository's id, so a plugin can
				    keep one checkpoint chain per repository */
} vmb_hv_backup_options;

/** One restored disk, for define(). */
typedef struct vmb_hv_define_disk {
	const char *name;   /**< disk name in the snapshot ("vda") */
	const char *path;   /**< the restored image (absolute) */
	const char *format; /**< its format ("qcow2", "raw", ...) */
} vmb_hv_define_disk;

/** Flags for vmb_hv_define_request.flags. */
#define VMB_HV_DEFINE_KEEP_MACS 0x1u /**< keep the NICs' MAC addresses */
#define VMB_HV_DEFINE_KEEP_UUID 0x2u /**< keep the VM's UUID */

/** What define() is asked to do. */
typedef struct vmb_hv_define_request {
	uint32_t struct_size;      /**< sizeof(vmb_hv_define_request) */
	const char *config_format; /**< as stored ("libvirt-xml") */
	const char *config;        /**< the stored configuration */
	const char *name;          /**< new VM name, or NULL: as stored */
	const char *dir;           /**< folder the disks were restored to */
	size_t ndisks;
	const vmb_hv_define_disk *disks;
	unsigned flags;            /**< VMB_HV_DEFINE_* */
} vmb_hv_define_request;

/**
 * The folder plugins are loaded from: VMB_PLUGIN_DIR if set, else the
 * folder given to vmb_hv_set_plugin_dir(), else the one fixed at build
 * time (LIBDIR/vmbackup/plugins).
 */
VMB_EXTERN(const char *) vmb_hv_plugin_dir(void);
/** Set the default plugin folder (VMB_PLUGIN_DIR still wins).  NULL
 *  restores the built-in one.  Not thread-safe: call it at start-up. */
VMB_EXTERN(void) vmb_hv_set_plugin_dir(const char *dir);

/**
 * Register a plugin linked into the program (its init function, see
 * VMB_HV_REGISTER_PLUGIN); registered plugins are found before modules of
 * the same name.  The plugin is checked as a loaded module would be.
 */
VMB_EXTERN(int) vmb_hv_register(const vmb_hv_plugin *(*init)(void));

/**
 * Split a SOURCE into a plugin name and the rest: "libvirt:web1" gives
 * "libvirt" and "web1" when a plugin of that name is registered or in the
 * plugin folder; anything else (a path) gives "file" and the whole
 * string ("file:PATH" gives "file" and PATH).
 * @param[out] rest  points into @p source
 */
VMB_EXTERN(int) vmb_hv_parse_source(const char *source, char plugin[32],
				    const char **rest);

/**
 * Load plugin @p name (registered, or NAME.so in the plugin folder) and
 * connect it to @p uri (NULL: the plugin's default).  Errors name the
 * plugin ("libvirt plugin: ...").  @param[out] out  free with
 * vmb_hv_close()
 */
VMB_EXTERN(int) vmb_hv_open(const char *name, const char *uri,
			    vmb_hv **out);
/** Disconnect; accepts NULL. */
VMB_EXTERN(void) vmb_hv_close(vmb_hv *h);

/** The plugin's name, version, description and VMB_HV_F_* features. */
VMB_EXTERN(const char *) vmb_hv_name(const vmb_hv *h);
VMB_EXTERN(const char *) vmb_hv_version(const vmb_hv *h);
VMB_EXTERN(const char *) vmb_hv_description(const vmb_hv *h);
VMB_EXTERN(unsigned) vmb_hv_features(const vmb_hv *h);
/** The file the plugin was loaded from ("(built in)" if registered). */
VMB_EXTERN(const char *) vmb_hv_path(const vmb_hv *h);

/** List VMs (VMB_ENOTSUP if the plugin cannot). */
VMB_EXTERN(int) vmb_hv_list(vmb_hv *h, vmb_hv_vm_fn fn, void *payload);

/**
 * Describe VM @p vm as JSON: {"name","uuid","state","disks":[{"name",
 * "path","format","size"}],"config_format","config"}.
 * @param[out] json  free with vmb_free()
 */
VMB_EXTERN(int) vmb_hv_describe(vmb_hv *h, const char *vm, char **json);

/** Options for vmb_hv_backup(); start from VMB_HV_BACKUP_OPTS_INIT. */
typedef struct vmb_hv_backup_opts {
	unsigned version;          /**< VMB_HV_BACKUP_OPTS_VERSION */
	unsigned flags;            /**< VMB_HV_BACKUP_* */
	const char *scratch_dir;   /**< NULL: $TMPDIR or /tmp */
	/** the repository backup; its vm (NULL: the VM's name), full and
	    config fields are filled in from the plugin */
	vmb_backup_options backup;
} vmb_hv_backup_opts;

#define VMB_HV_BACKUP_OPTS_VERSION 1
#define VMB_HV_BACKUP_OPTS_INIT { VMB_HV_BACKUP_OPTS_VERSION, 0, NULL, \
				  VMB_BACKUP_OPTIONS_INIT }

/** One source of a multi-source backup. */
typedef struct vmb_hv_source {
	vmb_hv *hv;     /**< its plugin connection */
	const char *vm; /**< what follows the prefix (a path for "file") */
} vmb_hv_source;

/**
 * Back up VMs as one snapshot, through their plugins: for each source the
 * plugin starts a consistent backup (told what the parent snapshot
 * recorded, so it can start an incremental), every disk goes through
 * vmb_repo_backup(), and the plugins are told whether the snapshot was
 * written (so they keep or drop checkpoints).  The VM name is
 * opts->backup.vm, else the first source's VM name; the configuration is
 * the first source's.  Nothing is written to the repository when a
 * plugin fails to start.
 */
VMB_EXTERN(int) vmb_hv_backup(vmb_repo *r, const vmb_hv_source *src,
			      size_t nsrc, const vmb_hv_backup_opts *opts,
			      vmb_backup_result *res);

/**
 * Called by vmb_hv_backup_each() when one VM is done: @p rc is 0 and
 * @p res its result, or a negative vmb_error and @p error its message
 * (then @p res is NULL).  @p vm is the VM's name when it could be read,
 * else NULL.  Non-zero stops the walk (the VMs not started are not
 * reported).
 */
typedef int (*vmb_hv_each_fn)(size_t index, const vmb_hv_source *src,
			      const char *vm, int rc, const char *error,
			      const vmb_backup_result *res, void *payload);

/**
 * Back up many VMs, one snapshot each (a classroom of VM folders): every
 * source is a VM of its own, named from its configuration, with its own
 * parent; a VM that fails (a missing disk, unreadable settings, a
 * running VM) is reported to @p fn and the others still go.
 * opts->backup.vm must be NULL.  @return 0 when every VM was backed up,
 * else the number of VMs that failed (> 0), or a negative vmb_error for
 * a fault that stopped the walk.
 */
VMB_EXTERN(int) vmb_hv_backup_each(vmb_repo *r, const vmb_hv_source *src,
				   size_t nsrc, const vmb_hv_backup_opts *opts,
				   vmb_hv_each_fn fn, void *payload);

/** VM snapshots on the hypervisor (VMB_ENOTSUP where not offered). */
VMB_EXTERN(int) vmb_hv_snapshot_create(vmb_hv *h, const char *vm,
				       const char *name);
VMB_EXTERN(int) vmb_hv_snapshot_list(vmb_hv *h, const char *vm,
				     vmb_hv_snapshot_fn fn, void *payload);
VMB_EXTERN(int) vmb_hv_snapshot_revert(vmb_hv *h, const char *vm,
				       const char *name);
VMB_EXTERN(int) vmb_hv_snapshot_delete(vmb_hv *h, const char *vm,
				       const char *name);

/**
 * Define a VM from a request (see vmb_hv_define_request).
 * @param[out] name  the defined VM's name; free with vmb_free()
 */
VMB_EXTERN(int) vmb_hv_define(vmb_hv *h, const vmb_hv_define_request *req,
			      char **name);

/** Options for vmb_hv_restore_define(). */
typedef struct vmb_hv_define_opts {
	unsigned version;  /**< VMB_HV_DEFINE_OPTS_VERSION */
	const char *name;  /**< new VM name, or NULL: as stored */
	unsigned flags;    /**< VMB_HV_DEFINE_* */
} vmb_hv_define_opts;

#define VMB_HV_DEFINE_OPTS_VERSION 1
#define VMB_HV_DEFINE_OPTS_INIT { VMB_HV_DEFINE_OPTS_VERSION, NULL, 0 }

/**
 * Restore snapshot @p snap into @p dir (as vmb_repo_restore()) and define
 * the VM on @p h from the snapshot's configuration, with the disks
 * pointing at the restored files.  If the define fails the restored files
 * stay (they are good) and the error says so.
 * @param[out] name  the defined VM's name (free with vmb_free()), or NULL
 */
VMB_EXTERN(int) vmb_hv_restore_define(vmb_repo *r, const char *snap,
				      const char *dir,
				      const vmb_restore_options *ropts,
				      vmb_hv *h,
				      const vmb_hv_define_opts *dopts,
				      vmb_restore_result *res, char **name);

/**
 * Instant recovery (docs/serve.md): define the VM of snapshot @p snap on
 * @p h with every disk on a new local qcow2 overlay DIR/<disk>.qcow2
 * whose backing file is the NBD export <disk> on the Unix socket
 * @p nbd_socket (a `vmb serve` of the same snapshot that keeps running),
 * start it, and begin moving the data into the overlays in the
 * background (the plugin's pull_start(): a libvirt block pull).  Returns
 * as soon as the VM runs; vmb_hv_instant_wait() waits for the copy, after
 * which the VM no longer needs the server.  A copy that fails leaves the
 * VM running on its overlay, consistent.  Existing files are never
 * overwritten.  Needs a plugin with VMB_HV_F_INSTANT.
 * @param[out] name  the defined VM's name (free with vmb_free()), or NULL
 */
VMB_EXTERN(int) vmb_hv_restore_instant(vmb_repo *r, const char *snap,
				       const char *dir,
				       const char *nbd_socket, vmb_hv *h,
				       const vmb_hv_define_opts *dopts,
				       char **name);

/** Wait for the background copy vmb_hv_restore_instant() started on VM
 *  @p vm; 0 once its disks no longer refer to the server. */
VMB_EXTERN(int) vmb_hv_instant_wait(vmb_hv *h, const char *vm,
				    vmb_progress_fn fn, void *payload);

/**
 * Restore the VM folder of snapshot @p snap (vmb_vmfolder_is()) into
 * @p dir with vmb_vmfolder_restore(), and let the plugin that made it
 * (opened here by name) rewrite the configuration (folder_fixup()).
 */
VMB_EXTERN(int) vmb_hv_folder_restore(vmb_repo *r, const char *snap,
				      const char *dir,
				      const vmb_vmfolder_restore_opts *o,
				      vmb_restore_result *res);

/** Options for vmb_hv_boot(); start from VMB_BOOT_OPTIONS_INIT. */
typedef struct vmb_boot_options {
	unsigned version;         /**< VMB_BOOT_OPTIONS_VERSION */
	/** "builtin" (the kvm plugin's minimal runner, the default) or
	 *  "qemu" (a whole OS under QEMU); any other name is a plugin */
	const char *runner;
	const char *disk;         /**< disk to boot; NULL: the first */
	/**
	 * POSIX extended regex that must appear on the console (serial
	 * port and BIOS teletype, or the VGA text screen).  NULL: the boot
	 * sector must run without a fault and print something.
	 */
	const char *expect;
	double timeout;           /**< seconds; 0: 30 */
	const char *vcpu;         /**< builtin: "kvm" or "unicorn"; qemu:
				       "kvm" or "tcg"; NULL: the best there is */
	uint32_t memory_mb;       /**< guest RAM; 0: 256 MiB */
	size_t console_limit;     /**< a guest printing more is stopped
				       (a flood); 0: 1 MiB */
	uint64_t max_instructions;/**< unicorn only; 0: no limit */
	const char *scratch_dir;  /**< NULL: $TMPDIR or /tmp */
} vmb_boot_options;

#define VMB_BOOT_OPTIONS_VERSION 1
#define VMB_BOOT_OPTIONS_INIT { VMB_BOOT_OPTIONS_VERSION, NULL, NULL, NULL, \
				0, NULL, 0, 0, 0, NULL }

/** The verdict of vmb_hv_boot().  Free with vmb_boot_result_free(). */
typedef struct vmb_boot_result {
	int booted;              /**< 1: booted as expected */
	char reason[256];        /**< one line saying why, either way */
	char runner[32];         /**< plugin that ran it ("kvm", "qemu") */
	char vcpu[16];           /**< backend ("kvm", "unicorn", "tcg") */
	char snapshot[80];       /**< the snapshot's full id */
	char disk[64];           /**< the disk booted */
	char *console;           /**< the console output kept (NUL-ended) */
	size_t console_len;
	uint64_t console_total;  /**< bytes printed in all */
	char *screen;            /**< VGA text left on screen, or NULL */
	double seconds;
} vmb_boot_result;

/**
 * Boot a snapshot's disk to prove it boots, without a restore: the disk
 * is read from the repository chunk by chunk as the guest asks, writes go
 * to a throw-away overlay.  The boot sector's 0x55AA signature is checked
 * first.  @return 0 when the boot ran (res->booted is the verdict), an
 * error when it could not run (no such snapshot or runner, no backend).
 */
VMB_EXTERN(int) vmb_hv_boot(vmb_repo *r, const char *snap,
			    const vmb_boot_options *o, vmb_boot_result *res);
/** Free what vmb_hv_boot() put in @p res; accepts NULL. */
VMB_EXTERN(void) vmb_boot_result_free(vmb_boot_result *res);

/**
 * Restore the VM folder of snapshot @p snap as vmb_hv_folder_restore()
 * does, flattened (one image per drive, in @p o->format, qcow2 if NULL),
 * and define it on @p h (the libvirt plugin) from the neutral hardware
 * description the folder's plugin stored (docs/vm-folders.md: CPUs,
 * memory, BIOS or EFI, each drive's bus, NICs).  If the define fails the
 * restored folder stays and the error says where it is.
 * @param[out] name    the defined VM's name; free with vmb_free()
 * @param[out] report  what has no equivalent on @p h ("NICs: user-mode
 *                     networking; ..."), or NULL; free with vmb_free()
 */
VMB_EXTERN(int) vmb_hv_folder_restore_define(vmb_repo *r, const char *snap,
					     const char *dir,
					     const vmb_vmfolder_restore_opts *o,
					     vmb_hv *h,
					     const vmb_hv_define_opts *dopts,
					     vmb_restore_result *res,
					     char **name, char **report);

#ifdef __cplusplus
}
#endif
#endif
