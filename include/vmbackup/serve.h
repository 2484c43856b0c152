/*
 * vmbackup: serve a snapshot's disks over NBD (docs/serve.md).
 *
 * A vmb_serve is our own small NBD server (fixed newstyle handshake,
 * NBD_OPT_GO/INFO/LIST, structured replies, the base:allocation meta
 * context) with one export per disk, named after the disk.  Reads go
 * straight to the repository through an LRU chunk cache (64 MiB by
 * default) with read-ahead for sequential readers; memory stays bounded
 * whatever the disk's size.  Holes and all-zero chunks are reported as
 * such (NBD_REPLY_TYPE_OFFSET_HOLE, NBD_STATE_HOLE|NBD_STATE_ZERO), so
 * `qemu-img convert` and `nbdcopy` skip them.
 *
 * Read-only by default.  With an overlay, writes go to a local overlay
 * file (never to the repository); vmb_serve_commit() later turns the
 * snapshot plus the overlay into a new snapshot, or the file is simply
 * deleted to throw the writes away.
 *
 * It listens on a Unix socket or on TCP at 127.0.0.1 only (no TLS: it
 * must not face a network).  Every client message is treated as hostile;
 * many clients may be connected at once, each on its own thread, and a
 * client that misbehaves or disappears ends only its own connection.
 */
#ifndef VMBACKUP_SERVE_H
#define VMBACKUP_SERVE_H

#include "common.h"
#include "disk.h"
#include "repo.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmb_serve vmb_serve;

/** Options for vmb_serve_open(); start from VMB_SERVE_OPTIONS_INIT. */
typedef struct vmb_serve_options {
	unsigned version;        /**< VMB_SERVE_OPTIONS_VERSION */
	const char *disk;        /**< export only this disk (a name, or a
				      0-based index as text); NULL: all */
	const char *socket_path; /**< listen on this Unix socket (a stale
				      socket there is replaced); NULL: TCP */
	int port;                /**< TCP port on 127.0.0.1 when
				      socket_path is NULL; 0: any free port
				      (see vmb_serve_port()) */
	const char *overlay;     /**< writable: keep writes in this overlay
				      file (created if missing, reused if it
				      belongs to the same disk); needs
				      exactly one exported disk.  NULL:
				      read-only */
	size_t cache_bytes;      /**< chunk cache size; 0: 64 MiB */
	int max_clients;         /**< connections at once; 0: 64.  More
				      are accepted and closed at once */
} vmb_serve_options;

#define VMB_SERVE_OPTIONS_VERSION 1
#define VMB_SERVE_OPTIONS_INIT { VMB_SERVE_OPTIONS_VERSION, NULL, NULL, 0, \
				 NULL, 0, 0 }

/**
 * Prepare a server for snapshot @p snap (any reference
 * vmb_repo_snapshot_find() takes) of repository @p r and start
 * listening; clients are served once vmb_serve_run() or
 * vmb_serve_start() is called (they wait in the listen queue until
 * then).  @p r must stay open until vmb_serve_free().
 * @return 0, or VMB_ENOTFOUND (snapshot, disk), VMB_EEXISTS (something
 *         other than a socket at socket_path), VMB_EIO (bind), VMB_EINVAL.
 */
VMB_EXTERN(int) vmb_serve_open(vmb_repo *r, const char *snap,
			       const vmb_serve_options *opts,
			       vmb_serve **out);

/**
 * The same for disks the caller opened (any vmb_disk, for instance one
 * from vmb_snapshot_disk_open()), exported as @p names[i].  The disks
 * are borrowed: keep them open until vmb_serve_free().  They are read
 * directly, without the chunk cache (a caller that wants one serves
 * through vmb_serve_open()).  opts->disk and opts->overlay are ignored.
 */
VMB_EXTERN(int) vmb_serve_open_disks(vmb_disk *const *disks,
				     const char *const *names, size_t n,
				     const vmb_serve_options *opts,
				     vmb_serve **out);

/** @return the number of exports. */
VMB_EXTERN(size_t) vmb_serve_export_count(const vmb_serve *s);
/** @return export @p i's name (the disk's name), or NULL. */
VMB_EXTERN(const char *) vmb_serve_export_name(const vmb_serve *s,
					       size_t i);
/** @return export @p i's NBD URI: `nbd+unix:///NAME?socket=PATH` or
 *  `nbd://127.0.0.1:PORT/NAME`, or NULL. */
VMB_EXTERN(const char *) vmb_serve_uri(const vmb_serve *s, size_t i);
/** @return the TCP port listened on, or 0 on a Unix socket. */
VMB_EXTERN(int) vmb_serve_port(const vmb_serve *s);

/**
 * Serve clients until vmb_serve_stop() (from another thread or a signal
 * handler); then every connection is closed and waited for.  @return 0.
 */
VMB_EXTERN(int) vmb_serve_run(vmb_serve *s);
/** Serve in a background thread; vmb_serve_free() stops it. */
VMB_EXTERN(int) vmb_serve_start(vmb_serve *s);
/**
 * Ask a running server to stop.  Returns at once; async-signal-safe.
 */
VMB_EXTERN(void) vmb_serve_stop(vmb_serve *s);

/** Counters of a server (for tests and `vmb serve --verbose`). */
typedef struct vmb_serve_stats {
	uint64_t connections;  /**< accepted since the start */
	uint64_t requests;     /**< transmission requests served */
	uint64_t cache_hits;   /**< block reads served by the cache */
	uint64_t cache_misses; /**< block reads that went to the repository */
	uint64_t cache_bytes;  /**< bytes the cache holds now */
} vmb_serve_stats;

VMB_EXTERN(void) vmb_serve_get_stats(vmb_serve *s, vmb_serve_stats *st);

/**
 * Stop (if running), close every connection, flush the overlay, release
 * everything and remove the Unix socket.  Accepts NULL.
 */
VMB_EXTERN(void) vmb_serve_free(vmb_serve *s);

/**
 * Commit an overlay written through a --writable export: a new snapshot
 * of the overlay's VM with every disk of the snapshot it was made from,
 * the overlay's disk with the writes applied (a normal backup, with the
 * parent snapshot's configuration and tags).  The overlay file is left
 * as it is (delete it afterwards, or keep writing to it).
 * @param opts  NULL, or backup options (vm, tags, progress ...); the
 *              configuration is taken from the base snapshot.
 */
VMB_EXTERN(int) vmb_serve_commit(vmb_repo *r, const char *overlay,
				 const vmb_backup_options *opts,
				 vmb_backup_result *result);

#ifdef __cplusplus
}
#endif
#endif
