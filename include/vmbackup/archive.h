/*
 * vmbackup: self-contained archives of one snapshot, and imports.
 *
 * vmb_repo_export() writes one snapshot as a pax tar: each disk as one
 * (sparse) file, the VM configuration if the snapshot has one, and a
 * manifest.json with a SHA-256 of every file.  When the repository is
 * encrypted the whole tar stream is encrypted too (libsodium
 * secretstream, key derived from the repository's master key), so only a
 * repository with the same master key can import it.
 *
 * vmb_repo_import() reads such an archive, or an OVA (a tar holding an
 * .ovf descriptor and its disks, as VirtualBox and VMware export them),
 * and backs the disks up as one new snapshot.  Archives are treated as
 * hostile: see docs/archives.md for the rules.
 */
#ifndef VMBACKUP_ARCHIVE_H
#define VMBACKUP_ARCHIVE_H

#include "common.h"
#include "repo.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Options for vmb_repo_export(); start from VMB_EXPORT_OPTIONS_INIT. */
typedef struct vmb_export_options {
	unsigned version;   /**< VMB_EXPORT_OPTIONS_VERSION */
	const char *format; /**< disk format in the archive: "raw", "qcow2",
				 "vmdk", "vdi"; NULL: each disk's source
				 format (raw when that cannot be written) */
	int encrypt;        /**< 1 (default): encrypt the archive when the
				 repository is encrypted; 0: plain tar */
	vmb_progress_fn progress;
	void *progress_payload;
	/* version >= 2 */
	/**
	 * Passphrase of an encrypted archive: the archive then carries its
	 * own random key wrapped under it (Argon2id), so it can be imported
	 * anywhere with the passphrase alone (docs/archives.md, format 2).
	 * NULL (and version 1 options): the archive is sealed under a key
	 * derived from the repository's master key instead (format 1), and
	 * only a repository sharing that key can import it.
	 */
	const char *passphrase;
	int ova;            /**< write an OVA for VMware and VirtualBox (a
				 plain tar: OVF descriptor, manifest,
				 streamOptimized VMDKs); see vmb_repo_export() */
} vmb_export_options;

#define VMB_EXPORT_OPTIONS_VERSION 2
#define VMB_EXPORT_OPTIONS_INIT { VMB_EXPORT_OPTIONS_VERSION, NULL, 1, \
				  NULL, NULL, NULL, 0 }

/** What an export wrote. */
typedef struct vmb_export_result {
	char snapshot[33];     /**< the exported snapshot's id */
	size_t disks;
	uint64_t bytes_total;  /**< virtual size of all disks */
	uint64_t bytes_written;/**< size of the archive file */
	int encrypted;         /**< 1 if the archive is encrypted */
	double seconds;
} vmb_export_result;

/**
 * Write snapshot @p snap_ref (id, prefix, "latest", "VM@latest") to the
 * archive file @p out_tar.  The archive is built as OUT.tmp and renamed
 * into place only when complete; on failure nothing is left behind.
 * Fails with VMB_EEXISTS if @p out_tar exists.  Temporary images (for
 * qcow2, VMDK and VDI output) are written in the folder of @p out_tar.
 *
 * @param opts    NULL for the defaults
 * @param result  may be NULL
 */
VMB_EXTERN(int) vmb_repo_export(vmb_repo *r, const char *snap_ref,
				const char *out_tar,
				const vmb_export_options *opts,
				vmb_export_result *result);

/** Options for vmb_repo_import(); start from VMB_IMPORT_OPTIONS_INIT. */
typedef struct vmb_import_options {
	unsigned version;  /**< VMB_IMPORT_OPTIONS_VERSION */
	const char *vm;    /**< VM name; NULL: from the archive's manifest,
				the OVF, or the archive's file name */
	const char *const *tags; /**< tags for the new snapshot, or NULL */
	size_t ntags;
	int threads;       /**< backup worker threads; 0: one per core */
	vmb_progress_fn progress;
	void *progress_payload;
	/* version >= 2 */
	const char *passphrase; /**< of a self-contained encrypted archive
				     (format 2); NULL: VMB_EAUTH if it is one */
} vmb_import_options;

#define VMB_IMPORT_OPTIONS_VERSION 2
#define VMB_IMPORT_OPTIONS_INIT { VMB_IMPORT_OPTIONS_VERSION, NULL, NULL, 0, \
				  0, NULL, NULL, NULL }

/**
 * Import archive @p archive (a vmb export, plain or encrypted, or an OVA)
 * as one new snapshot.  The disks are extracted into a private temporary
 * folder under $TMPDIR (default /tmp), checked against the archive's
 * manifest (SHA-256) when it has one, and backed up with
 * vmb_repo_backup().  A hostile or damaged archive (absolute or ".."
 * paths, links, devices, nested folders, absurd sizes, too many entries,
 * checksum mismatches) is refused before anything is imported.
 *
 * @param result  the backup's result (snapshot id, byte counts); may be
 *                NULL
 * @param vm_out  if not NULL, the VM name used; free with vmb_free()
 * An encrypted archive of format 2 (what vmb_repo_export() writes with
 * a passphrase) opens with opts->passphrase alone, into any repository;
 * one of format 1 only with the key of the repository that wrote it.
 *
 * @return 0; VMB_EINVAL for a refused archive; VMB_EVERIFY for a checksum
 *         mismatch; VMB_EAUTH for a wrong or missing passphrase, or a
 *         format-1 archive this repository's key cannot open; or another
 *         error.
 */
VMB_EXTERN(int) vmb_repo_import(vmb_repo *r, const char *archive,
				const vmb_import_options *opts,
				vmb_backup_result *result, char **vm_out);

#ifdef __cplusplus
}
#endif
#endif
