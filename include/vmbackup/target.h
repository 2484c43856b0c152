/*
 * vmbackup: storage targets.
 *
 * A target is a flat store of named objects ("chunks/ab/ab12...",
 * "snapshots/0f3e...").  Repositories sit on top of one.  Backends: a local
 * directory (path or file:///path), NFS through libnfs (nfs://...), and
 * S3-compatible object stores through libcurl (s3:http[s]://...).
 */
#ifndef VMBACKUP_TARGET_H
#define VMBACKUP_TARGET_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmb_target vmb_target;

/**
 * Open a target from a URL: a directory path, file:///path,
 * nfs://HOST/EXPORT/PATH[?version=3|4&nfsport=N&mountport=M] or
 * s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX].  The target need not contain
 * anything yet (a local directory is created on the first put).
 */
VMB_EXTERN(int) vmb_target_open(const char *url, vmb_target **out);

/** Close a target; accepts NULL. */
VMB_EXTERN(void) vmb_target_close(vmb_target *t);

/** @return the URL the target was opened with (for messages). */
VMB_EXTERN(const char *) vmb_target_url(const vmb_target *t);

/** Store an object atomically and durably, replacing any old one. */
VMB_EXTERN(int) vmb_target_put(vmb_target *t, const char *name,
			       const void *data, size_t length);

/**
 * Fetch a whole object.  @param[out] data  free with vmb_free().
 * @return 0, VMB_ENOTFOUND, or another error.
 */
VMB_EXTERN(int) vmb_target_get(vmb_target *t, const char *name, void **data,
			       size_t *length);

/** Size and modification time (Unix seconds) of an object. */
VMB_EXTERN(int) vmb_target_stat(vmb_target *t, const char *name,
				uint64_t *size, int64_t *mtime);

/** Called for each object by vmb_target_list(); non-zero stops. */
typedef int (*vmb_target_list_fn)(const char *name, uint64_t size,
				  int64_t mtime, void *payload);

/** List the objects whose names start with @p prefix, in any order. */
VMB_EXTERN(int) vmb_target_list(vmb_target *t, const char *prefix,
				vmb_target_list_fn fn, void *payload);

/** Delete an object.  @return 0 or VMB_ENOTFOUND or another error. */
VMB_EXTERN(int) vmb_target_delete(vmb_target *t, const char *name);

/** Refresh an object's modification time (used by GC's protocol). */
VMB_EXTERN(int) vmb_target_touch(vmb_target *t, const char *name);

/**
 * Hint that @p name will be read soon, so the backend can start fetching
 * it in the background (the local backend asks the kernel to read the file
 * into the page cache).  Returns at once and reports nothing: a backend
 * without the operation, a bad name or a missing object are ignored and
 * left to vmb_target_get().  Restore uses it to keep several chunk reads in
 * flight ahead of its decoding workers.
 */
VMB_EXTERN(void) vmb_target_prefetch(vmb_target *t, const char *name);

#ifdef __cplusplus
}
#endif
#endif
