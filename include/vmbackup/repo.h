/*
 * vmbackup: repositories, backups, restores, snapshots and checks.
 *
 * A repository lives on a target (local directory, NFS, S3) and holds
 * deduplicated, compressed and (by default) encrypted chunks of disk
 * images, one index per backed-up disk and one manifest per snapshot.
 * See docs/repository-format.md for the bytes.
 */
#ifndef VMBACKUP_REPO_H
#define VMBACKUP_REPO_H

#include "common.h"
#include "disk.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmb_repo vmb_repo;
typedef struct vmb_snapshot vmb_snapshot;

#define VMB_DEFAULT_CHUNK_SIZE (4u << 20)
#define VMB_MIN_CHUNK_SIZE (64u << 10)
#define VMB_MAX_CHUNK_SIZE (16u << 20)

/** Options for vmb_repo_init(); start from VMB_REPO_INIT_OPTIONS_INIT. */
typedef struct vmb_repo_init_options {
	unsigned version;    /**< VMB_REPO_INIT_OPTIONS_VERSION */
	int encrypted;       /**< 1: "repokey" (default); 0: "none" */
	uint32_t chunk_size; /**< power of two, 64 KiB..16 MiB; 0: 4 MiB */
	int zstd_level;      /**< 0: default (1); -1: no compression */
	int cipher;          /**< VMB_CIPHER_* (version 2; ignored unencrypted) */
} vmb_repo_init_options;

/** Sealing ciphers of an encrypted repository. */
enum {
	VMB_CIPHER_AUTO = 0,              /**< AES-256-GCM where available */
	VMB_CIPHER_XCHACHA20POLY1305 = 1, /**< every repository before 2 */
	VMB_CIPHER_AES256GCM = 2          /**< needs AES-NI and PCLMUL */
};

#define VMB_REPO_INIT_OPTIONS_VERSION 2
#define VMB_REPO_INIT_OPTIONS_INIT \
	{ VMB_REPO_INIT_OPTIONS_VERSION, 1, 0, 0, VMB_CIPHER_AUTO }

/**
 * @return 1 if this machine can seal and open with @p cipher
 * (VMB_CIPHER_*; AES-256-GCM needs the CPU's AES-NI and PCLMUL, and
 * $VMB_TEST_NO_AESGCM=1 forces it off for tests), else 0.
 */
VMB_EXTERN(int) vmb_cipher_available(int cipher);

/**
 * Create a repository at @p url (path, file://, nfs://, s3:).  The master
 * key is random and wrapped with @p passphrase through Argon2id (ignored
 * when unencrypted).  Fails with VMB_EEXISTS if one is already there.
 */
VMB_EXTERN(int) vmb_repo_init(const char *url, const char *passphrase,
			      const vmb_repo_init_options *opts);

/**
 * Open a repository.  @return 0, VMB_ENOTFOUND (no repository there),
 * VMB_EAUTH (wrong passphrase), or another error.
 * @param[out] out  free with vmb_repo_close()
 */
VMB_EXTERN(int) vmb_repo_open(const char *url, const char *passphrase,
			      vmb_repo **out);

/**
 * Open a repository like vmb_repo_open(), but derive the key from
 * @p passphrase (Argon2id: a third of a second on one core at the default
 * cost) on a background thread, so the caller can do key-less work
 * meanwhile (vmb_repo_prefetch()).  The config is read before this
 * returns: a missing repository or a damaged config fails here, as does
 * anything when @p passphrase is NULL or empty (then this is
 * vmb_repo_open(), so "a passphrase is needed" is known at once).  The
 * key's verdict (VMB_EAUTH for a wrong passphrase, with the same message
 * as vmb_repo_open()) comes from vmb_repo_key_wait().  Until that returned
 * 0, only vmb_repo_prefetch(), vmb_repo_has_snapshots(),
 * vmb_repo_key_wait(), vmb_repo_backup() (which waits first) and
 * vmb_repo_close() may be called; nothing is written to the repository
 * before the key is verified.  The environment
 * variable VMB_NO_KDF_OVERLAP makes this the plain vmb_repo_open().
 * @param[out] out  free with vmb_repo_close()
 */
VMB_EXTERN(int) vmb_repo_open_async(const char *url, const char *passphrase,
				    vmb_repo **out);

/**
 * Wait for vmb_repo_open_async()'s key derivation.  @return 0 (the key is
 * verified; returns 0 at once for a vmb_repo_open() handle), or the error
 * vmb_repo_open() would have returned (VMB_EAUTH: wrong passphrase), the
 * same each time it is called; then only vmb_repo_close() is left to do.
 */
VMB_EXTERN(int) vmb_repo_key_wait(vmb_repo *r);

/**
 * While vmb_repo_open_async()'s key derivation runs, read the first chunks
 * of the disk image @p path (as vmb_repo_backup() would) and compress them
 * on the calling thread (compression needs no key), keeping up to 64 MiB
 * of them; stops as soon as the key is ready.  A following
 * vmb_repo_backup() of the same path takes them instead of reading and
 * compressing them again (vmb_backup_result.precompressed_chunks), and
 * drops what it does not need (duplicates, chunks its plan does not read);
 * the snapshot and the chunks stored are the same as without.  Does
 * nothing when the key is already there.  Errors are not reported (the
 * backup meets them): @return the number of chunks kept.
 */
VMB_EXTERN(int) vmb_repo_prefetch(vmb_repo *r, const char *path);

/**
 * Whether the repository holds any snapshot, from the names of its
 * snapshot objects alone: needs no key, so it may be called while
 * vmb_repo_open_async()'s key derivation runs (the CLI prefetches for a
 * first backup into an empty repository, which reads every chunk, as it
 * does for --full).  @return 1, 0 (none), or a negative error.
 */
VMB_EXTERN(int) vmb_repo_has_snapshots(vmb_repo *r);

/** Close a repository; accepts NULL. */
VMB_EXTERN(void) vmb_repo_close(vmb_repo *r);

/** @return the repository id (32 hex characters). */
VMB_EXTERN(const char *) vmb_repo_id(const vmb_repo *r);
/** @return the chunk size new backups use. */
VMB_EXTERN(uint32_t) vmb_repo_chunk_size(const vmb_repo *r);
/** @return 1 if the repository encrypts its data. */
VMB_EXTERN(int) vmb_repo_encrypted(const vmb_repo *r);
/** @return the repository's sealing cipher: "xchacha20poly1305",
 * "aes256gcm", or "none" when unencrypted (static storage). */
VMB_EXTERN(const char *) vmb_repo_cipher(const vmb_repo *r);

/** One disk to back up. */
typedef struct vmb_backup_source {
	const char *path; /**< image file (format probed), or NULL if disk */
	const char *name; /**< disk name in the snapshot; NULL: from path */
	vmb_disk *disk;   /**< an already open disk (plugins), or NULL */
} vmb_backup_source;

/**
 * The disk name a backup gives image @p path when the source has none:
 * the file name without its extension, other characters than
 * [A-Za-z0-9._-] replaced by '_'.  @return malloc'd (vmb_free()), or NULL.
 */
VMB_EXTERN(char *) vmb_repo_disk_name(const char *path);

/** Options for vmb_repo_backup(); start from VMB_BACKUP_OPTIONS_INIT. */
typedef struct vmb_backup_options {
	unsigned version;        /**< VMB_BACKUP_OPTIONS_VERSION */
	const char *vm;          /**< VM name; NULL: first disk's name */
	const char *const *tags; /**< tags, or NULL */
	size_t ntags;
	int full;                /**< ignore the parent snapshot */
	int threads;             /**< worker threads; 0: one per core */
	vmb_progress_fn progress;
	void *progress_payload;
	const char *config_format; /**< e.g. "libvirt-xml", or NULL */
	const char *config;        /**< VM configuration to keep, or NULL */
	/* version >= 2 */
	const char *consistency;   /**< recorded as is ("frozen", ...), or
					NULL */
	const char *consistency_note; /**< why not better, or NULL */
} vmb_backup_options;

#define VMB_BACKUP_OPTIONS_VERSION 2
#define VMB_BACKUP_OPTIONS_INIT { VMB_BACKUP_OPTIONS_VERSION, NULL, NULL, 0, \
				  0, 0, NULL, NULL, NULL, NULL, NULL, NULL }

/** What a backup did (the fields of `vmb backup --json`). */
typedef struct vmb_backup_result {
	char snapshot[33];     /**< new snapshot id */
	uint64_t bytes_total;  /**< virtual size of all disks */
	uint64_t bytes_read;   /**< data bytes read from the sources (holes
				    and unchanged chunks are not read) */
	uint64_t bytes_new;    /**< plaintext size of the chunks that were not
				    yet in the repository, counted whole
				    (holes inside them too): <= allocated */
	uint64_t bytes_stored; /**< bytes written to the target */
	uint64_t chunks_total; /**< chunks in the snapshot, zero ones too */
	uint64_t chunks_new;   /**< chunks written */
	uint64_t chunks_zero;  /**< all-zero or unallocated chunks */
	double seconds;
	const char *cbt;       /**< static: "libvirt", "qcow2-bitmap",
				    "overlay", "fingerprint", "none" */
	uint64_t bytes_allocated; /**< size of the chunks that held data
				       and were read, counted whole: the
				       reads' span, so read <= allocated
				       and new <= allocated */
	uint64_t precompressed_chunks; /**< chunks stored from what
					    vmb_repo_prefetch() compressed */
} vmb_backup_result;

/**
 * Back up disks as one new snapshot.  Chunks are written first; the
 * snapshot manifest is written last, atomically, so an interrupted backup
 * leaves no snapshot (only unreferenced chunks that the next backup
 * reuses).  The parent is the latest snapshot of the same VM.
 */
VMB_EXTERN(int) vmb_repo_backup(vmb_repo *r, const vmb_backup_source *src,
				size_t nsrc, const vmb_backup_options *opts,
				vmb_backup_result *result);

/** Options for vmb_repo_restore(); start from VMB_RESTORE_OPTIONS_INIT. */
typedef struct vmb_restore_options {
	unsigned version;   /**< VMB_RESTORE_OPTIONS_VERSION */
	const char *format; /**< "raw", "qcow2", "vmdk", "vdi"; NULL: as the
				 source was */
	const char *disk;   /**< restore only this disk; NULL: all */
	int threads;        /**< 0: one per core */
	vmb_progress_fn progress;
	void *progress_payload;
	int no_sync;        /**< do not fsync the images (version >= 2) */
} vmb_restore_options;

#define VMB_RESTORE_OPTIONS_VERSION 2
#define VMB_RESTORE_OPTIONS_INIT { VMB_RESTORE_OPTIONS_VERSION, NULL, NULL, \
				   0, NULL, NULL, 0 }

typedef struct vmb_restore_result {
	uint64_t bytes_total;   /**< virtual bytes restored */
	uint64_t bytes_written; /**< data bytes written (holes excluded) */
	size_t disks;
	double seconds;
} vmb_restore_result;

/**
 * Restore a snapshot into folder @p dir as DIR/<disk>.<ext> per disk, and
 * the VM configuration beside them.  Existing files are never
 * overwritten.  Every chunk is authenticated; a damaged one fails the
 * restore with VMB_ECORRUPT and the partial file is removed.
 */
VMB_EXTERN(int) vmb_repo_restore(vmb_repo *r, const char *snap,
				 const char *dir,
				 const vmb_restore_options *opts,
				 vmb_restore_result *result);

/**
 * Find a snapshot by reference: a full id, a unique id prefix, "latest",
 * or "VM@latest".  VMB_ENOTFOUND / VMB_EAMBIGUOUS otherwise.
 */
VMB_EXTERN(int) vmb_repo_snapshot_find(vmb_repo *r, const char *ref,
				       vmb_snapshot **out);

/**
 * List snapshots, oldest first, optionally only those of VM @p vm.
 * Damaged manifests are skipped, logged and counted (see
 * vmb_repo_damaged_manifests()), so one bad manifest hides nothing else.
 * @param[out] list  free with vmb_snapshot_list_free()
 */
VMB_EXTERN(int) vmb_repo_snapshots(vmb_repo *r, const char *vm,
				   vmb_snapshot ***list, size_t *count);
VMB_EXTERN(void) vmb_snapshot_list_free(vmb_snapshot **list, size_t count);

/**
 * Damaged manifests the last vmb_repo_snapshots() call skipped (each was
 * logged as an error).  @param[out] first  id of the first one, or NULL.
 */
VMB_EXTERN(size_t) vmb_repo_damaged_manifests(const vmb_repo *r,
					      const char **first);
VMB_EXTERN(void) vmb_snapshot_free(vmb_snapshot *s);

/* Snapshot getters: the strings belong to the snapshot. */
VMB_EXTERN(const char *) vmb_snapshot_id(const vmb_snapshot *s);
VMB_EXTERN(const char *) vmb_snapshot_vm(const vmb_snapshot *s);
VMB_EXTERN(const char *) vmb_snapshot_host(const vmb_snapshot *s);
VMB_EXTERN(int64_t) vmb_snapshot_time(const vmb_snapshot *s);
VMB_EXTERN(const char *) vmb_snapshot_parent(const vmb_snapshot *s);
VMB_EXTERN(const char *) vmb_snapshot_cbt(const vmb_snapshot *s);
VMB_EXTERN(size_t) vmb_snapshot_tag_count(const vmb_snapshot *s);
VMB_EXTERN(const char *) vmb_snapshot_tag(const vmb_snapshot *s, size_t i);
VMB_EXTERN(size_t) vmb_snapshot_disk_count(const vmb_snapshot *s);
VMB_EXTERN(const char *) vmb_snapshot_disk_name(const vmb_snapshot *s,
						 size_t i);
VMB_EXTERN(const char *) vmb_snapshot_disk_format(const vmb_snapshot *s,
						   size_t i);
VMB_EXTERN(uint64_t) vmb_snapshot_disk_size(const vmb_snapshot *s, size_t i);
/** @return the chunk size of disk @p i (0 if there is no such disk). */
VMB_EXTERN(uint32_t) vmb_snapshot_disk_chunk_size(const vmb_snapshot *s,
						  size_t i);
/** @return the snapshot's manifest as JSON (belongs to the snapshot). */
VMB_EXTERN(const char *) vmb_snapshot_json(const vmb_snapshot *s);
/** @return what change tracking recorded for disk @p i for the next
 *  backup (opaque text, plugin-specific), or NULL. */
VMB_EXTERN(const char *) vmb_snapshot_disk_cbt_state(const vmb_snapshot *s,
						      size_t i);
/** @return how disk @p i's changes were found ("libvirt", ...). */
VMB_EXTERN(const char *) vmb_snapshot_disk_cbt(const vmb_snapshot *s,
						size_t i);
/** @return how consistent the data is ("frozen", "crash-consistent",
 *  "powered-off"), or NULL when the backup did not say (image files). */
VMB_EXTERN(const char *) vmb_snapshot_consistency(const vmb_snapshot *s);
/** @return why the consistency is not better ("the VM was running"), or
 *  NULL. */
VMB_EXTERN(const char *) vmb_snapshot_consistency_note(const vmb_snapshot *s);
/** @return the stored VM configuration, or NULL; @p format (if not NULL)
 *  gets its format ("libvirt-xml", ...). */
VMB_EXTERN(const char *) vmb_snapshot_config(const vmb_snapshot *s,
					     const char **format);

/**
 * Open one disk of a snapshot for random-access reads, straight from the
 * repository (no restore).  Chunks are fetched and authenticated on
 * demand.  @p disk NULL picks the first disk.
 */
VMB_EXTERN(int) vmb_snapshot_disk_open(vmb_repo *r, const vmb_snapshot *s,
				       const char *disk, vmb_disk **out);

/** What vmb_repo_check() looked at and found. */
typedef struct vmb_check_result {
	uint64_t snapshots;
	uint64_t indexes;
	uint64_t chunks_referenced;
	uint64_t chunks_missing;
	uint64_t errors; /**< every problem, each also logged as an error */
} vmb_check_result;

/**
 * Fast metadata check: every manifest and index decodes and
 * authenticates, every referenced chunk exists.  Problems are logged with
 * vmb_log(VMB_LOG_ERROR, ...); returns VMB_EVERIFY if any was found.
 */
VMB_EXTERN(int) vmb_repo_check(vmb_repo *r, vmb_check_result *result);

/**
 * What the repository is expected to hold, for vmb_repo_check_expect():
 * the way to notice what authentication cannot show, the deletion of
 * whole snapshots or a rollback of the repository to an older copy (see
 * docs/threat-model.md).  Start from VMB_EXPECT_OPTIONS_INIT.
 */
typedef struct vmb_expect_options {
	unsigned version;       /**< VMB_EXPECT_OPTIONS_VERSION */
	const char *vm;         /**< only this VM (it must have snapshots);
				     NULL: every VM in the repository, each
				     on its own, and at least one snapshot */
	uint64_t min_snapshots; /**< each VM holds at least this many
				     readable snapshots; 0: no such rule */
	int64_t max_age;        /**< each VM's newest snapshot is at most
				     this many seconds old; 0: no such rule */
	int64_t now;            /**< seconds since the epoch to measure ages
				     against; 0: the system clock */
} vmb_expect_options;

#define VMB_EXPECT_OPTIONS_VERSION 1
#define VMB_EXPECT_OPTIONS_INIT { VMB_EXPECT_OPTIONS_VERSION, NULL, 0, 0, 0 }

/** What vmb_repo_check_expect() found about the expectations. */
typedef struct vmb_expect_result {
	uint64_t vms;           /**< VMs held to the rules */
	uint64_t snapshots;     /**< their readable snapshots */
	uint64_t fewest;        /**< the smallest count of one VM */
	int64_t oldest_latest;  /**< the oldest of the VMs' newest snapshot
				     times (seconds since the epoch); 0: no
				     snapshot */
	uint64_t failures;      /**< expectations not met (each is also a
				     problem in vmb_check_result.errors) */
} vmb_expect_result;

/**
 * vmb_repo_check(), and in the same pass the expectations of @p o (NULL:
 * none).  A snapshot whose manifest does not authenticate counts as
 * missing.  Each expectation not met is a problem logged like the
 * others, one line naming the VM, the count or the age and what was
 * expected ("VM web1: 2 snapshots, expected at least 7").  @return 0,
 * VMB_EVERIFY if any problem was found (the error message names the
 * first), VMB_EINVAL for bad options, or another error.
 * @param[out] eres  may be NULL
 */
VMB_EXTERN(int) vmb_repo_check_expect(vmb_repo *r,
				      const vmb_expect_options *o,
				      vmb_check_result *result,
				      vmb_expect_result *eres);

/**
 * Take the repository's maintenance lock (prune, GC) for @p ttl seconds.
 * The lock is a lease: it expires unless renewed, so a crashed holder
 * never blocks the repository for good.  VMB_ELOCKED if someone else
 * holds a live lease.
 */
VMB_EXTERN(int) vmb_repo_lock(vmb_repo *r, int ttl);
/** Release the maintenance lock if this handle holds it. */
VMB_EXTERN(int) vmb_repo_unlock(vmb_repo *r);


/* ---- retention, space, verification ---- */

/** Options for vmb_repo_prune(); start from VMB_PRUNE_OPTIONS_INIT. */
typedef struct vmb_prune_options {
	unsigned version; /**< VMB_PRUNE_OPTIONS_VERSION */
	const char *vm;   /**< only this VM; NULL: every VM, each on its own */
	int keep_last;    /**< keep the N newest snapshots */
	int keep_hourly;  /**< the newest of each of the last N hours ... */
	int keep_daily;
	int keep_weekly;  /**< ISO weeks */
	int keep_monthly;
	int keep_yearly;
	int dry_run;      /**< decide and report, delete nothing */
} vmb_prune_options;

#define VMB_PRUNE_OPTIONS_VERSION 1
#define VMB_PRUNE_OPTIONS_INIT { VMB_PRUNE_OPTIONS_VERSION, NULL, 0, 0, 0, \
				 0, 0, 0, 0 }

/**
 * Called once per snapshot considered by prune, oldest first: @p keep is
 * 1 when it stays, @p reason says which rules keep it ("last, daily") or
 * why it goes ("no rule keeps it").
 */
typedef void (*vmb_prune_fn)(const vmb_snapshot *s, int keep,
			     const char *reason, void *payload);

/**
 * Remove snapshots that no keep rule selects (the rules restic, Borg and
 * Proxmox document: each period rule keeps the newest snapshot of each of
 * the last N periods that have one; periods are in local time).  Rules
 * apply per VM.  Protected snapshots are never removed.  Refuses to run
 * with no rule at all (VMB_EINVAL).  Takes the maintenance lease.  Only
 * manifests are removed; vmb_repo_gc() frees the space.
 * @param[out] removed  number of snapshots removed (or that would be)
 */
VMB_EXTERN(int) vmb_repo_prune(vmb_repo *r, const vmb_prune_options *o,
			       vmb_prune_fn fn, void *payload,
			       size_t *removed);

/** Protect a snapshot from prune (@p on = 1) or lift the protection. */
VMB_EXTERN(int) vmb_repo_protect(vmb_repo *r, const char *snap, int on);
/** @return 1 if protected, 0 if not, or a negative error. */
VMB_EXTERN(int) vmb_repo_is_protected(vmb_repo *r, const char *snap_id);

/** Options for vmb_repo_gc(); start from VMB_GC_OPTIONS_INIT. */
typedef struct vmb_gc_options {
	unsigned version;      /**< VMB_GC_OPTIONS_VERSION */
	int dry_run;           /**< count, delete nothing */
	uint64_t memory_limit; /**< bytes for the mark set; 0: 256 MiB */
	int64_t grace;         /**< also keep chunks younger than this many
				    seconds (for stores whose listings lag) */
} vmb_gc_options;

#define VMB_GC_OPTIONS_VERSION 1
#define VMB_GC_OPTIONS_INIT { VMB_GC_OPTIONS_VERSION, 0, 0, 0 }

/** What vmb_repo_gc() found and did. */
typedef struct vmb_gc_result {
	uint64_t chunks_total;      /**< chunk objects listed */
	uint64_t chunks_referenced; /**< kept: a snapshot uses them */
	uint64_t chunks_young;      /**< kept: unreferenced but too new */
	uint64_t chunks_deleted;    /**< deleted (or would be, dry run) */
	uint64_t bytes_freed;       /**< stored bytes of deleted chunks */
	uint64_t indexes_deleted;
	uint64_t sessions_running;  /**< backups running during the GC */
	uint64_t sessions_stale;    /**< dead backups' markers removed */
	unsigned passes;            /**< mark passes (memory bound) */
	double seconds;
} vmb_gc_result;

/**
 * Mark and sweep: delete chunks and indexes no snapshot references.  Safe
 * while backups run: see docs/gc.md for the protocol (a new GC epoch,
 * session markers, a cut-off at the oldest running backup, and backups
 * that verify and repair after a concurrent GC).  Memory for the mark set
 * stays under memory_limit: with more chunks the mark runs in several
 * passes over disjoint id ranges.  Takes the maintenance lease.
 */
VMB_EXTERN(int) vmb_repo_gc(vmb_repo *r, const vmb_gc_options *o,
			    vmb_gc_result *res);

/** Options for vmb_repo_verify(); start from VMB_VERIFY_OPTIONS_INIT. */
typedef struct vmb_verify_options {
	unsigned version;     /**< VMB_VERIFY_OPTIONS_VERSION */
	const char *snapshot; /**< a snapshot reference, or NULL for all */
	int data;             /**< read, authenticate, decompress and
				   re-hash every chunk (else: existence) */
	double sample;        /**< percent of chunks to read (0 = 100) */
	int threads;          /**< 0: one per core */
	vmb_progress_fn progress;
	void *progress_payload;
} vmb_verify_options;

#define VMB_VERIFY_OPTIONS_VERSION 1
#define VMB_VERIFY_OPTIONS_INIT { VMB_VERIFY_OPTIONS_VERSION, NULL, 0, 0, \
				  0, NULL, NULL }

/**
 * Called for each damage found: a damaged chunk once per place it breaks
 * (snapshot, disk, guest offset), or a damaged manifest/index (disk NULL
 * or offset UINT64_MAX).  @p what says what is wrong.
 */
typedef void (*vmb_verify_fn)(const char *snapshot, const char *vm,
			      const char *disk, uint64_t offset,
			      const char *chunk, const char *what,
			      void *payload);

typedef struct vmb_verify_result {
	uint64_t snapshots;
	uint64_t chunks_checked;
	uint64_t chunks_damaged; /**< damaged or missing chunks */
	uint64_t bytes_checked;
	uint64_t problems;       /**< callback calls */
	double seconds;
} vmb_verify_result;

/**
 * Verify snapshots.  Damaged chunks are recorded in the repository
 * (damaged/<id>) so the next backup that produces the same data rewrites
 * them ("healing").  @return 0, VMB_EVERIFY if anything is damaged, or
 * another error if the verification could not run.
 */
VMB_EXTERN(int) vmb_repo_verify(vmb_repo *r, const vmb_verify_options *o,
				vmb_verify_fn fn, void *payload,
				vmb_verify_result *res);

#ifdef __cplusplus
}
#endif
#endif
