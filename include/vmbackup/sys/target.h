/*
 * vmbackup: the storage backend vtable.  A backend embeds struct
 * vmb_target as the first member of its own state.
 *
 * Object names are relative, '/'-separated, made of [A-Za-z0-9._-], never
 * empty components, never "." or "..".  Every operation may be called from
 * several threads at once.  Errors are reported with vmb_error_set(), with a
 * message that names the target and the cause ("s3:http://h/b: access
 * denied (HTTP 403)").  No repository operation relies on list() seeing a
 * put() that just finished (object stores may lag).
 */
#ifndef VMBACKUP_SYS_TARGET_H
#define VMBACKUP_SYS_TARGET_H

#include "../target.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VMB_TARGET_OPS_VERSION 2

typedef struct vmb_target_ops {
	unsigned version; /**< VMB_TARGET_OPS_VERSION */
	const char *name; /**< "local", "nfs", "s3" */
	/** Atomic (readers see the old or the new object, never a part)
	    and durable when it returns 0. */
	int (*put)(vmb_target *t, const char *name, const void *data,
		   size_t length);
	/** *data is malloc'd (the core frees it with free()). */
	int (*get)(vmb_target *t, const char *name, void **data,
		   size_t *length);
	int (*stat)(vmb_target *t, const char *name, uint64_t *size,
		    int64_t *mtime);
	int (*list)(vmb_target *t, const char *prefix, vmb_target_list_fn fn,
		    void *payload);
	int (*del)(vmb_target *t, const char *name);
	/** Optional: set the modification time to now. */
	int (*touch)(vmb_target *t, const char *name);
	/** Free everything, including the struct. */
	void (*close)(vmb_target *t);

	/* version >= 2 */
	/** Optional: a hint that @p name will be read soon; start fetching
	    it in the background and return at once.  No errors: an object
	    that is missing or cannot be fetched is left to get(). */
	void (*prefetch)(vmb_target *t, const char *name);
} vmb_target_ops;

struct vmb_target {
	const vmb_target_ops *ops;
	char *url; /**< malloc'd by the backend, freed by the core */
};

#define VMB_TARGET_BACKEND_VERSION 1

/** A backend factory, chosen by URL scheme. */
typedef struct vmb_target_backend {
	unsigned version;   /**< VMB_TARGET_BACKEND_VERSION */
	const char *scheme; /**< "file", "nfs", "s3" */
	/** Open; must set (*out)->ops and (*out)->url (strdup of url). */
	int (*open)(const char *url, vmb_target **out);
} vmb_target_backend;

#ifdef __cplusplus
}
#endif
#endif
