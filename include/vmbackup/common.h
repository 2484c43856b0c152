/*
 * vmbackup: common definitions: version, error codes, per-thread last error,
 * logging and progress reporting.
 *
 * Every public function that can fail returns 0 (or a non-negative count) on
 * success and a negative vmb_error code on failure.  The failing call also
 * stores a one-line, human-readable message in a per-thread slot that
 * vmb_error_message() returns until the next failing call on that thread.
 */
#ifndef VMBACKUP_COMMON_H
#define VMBACKUP_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(VMB_BUILDING_LIBRARY) && defined(__GNUC__)
#define VMB_EXTERN(type) __attribute__((visibility("default"))) type
#else
#define VMB_EXTERN(type) type
#endif

#if defined(__GNUC__)
#define VMB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VMB_PRINTF(a, b)
#endif

#define VMB_VERSION_MAJOR 0
#define VMB_VERSION_MINOR 1
#define VMB_VERSION_PATCH 0
#define VMB_VERSION_NUMBER \
	(VMB_VERSION_MAJOR * 10000 + VMB_VERSION_MINOR * 100 + VMB_VERSION_PATCH)

/** @return the library's version as "MAJOR.MINOR.PATCH". */
VMB_EXTERN(const char *) vmb_version(void);

/*
 * Error codes.  Append only: values are never renumbered.
 */
typedef enum vmb_error {
	VMB_OK = 0,
	VMB_EGENERIC = -1,   /**< unclassified failure */
	VMB_EINVAL = -2,     /**< invalid argument or usage */
	VMB_ENOMEM = -3,     /**< out of memory */
	VMB_EIO = -4,        /**< input/output error (local or remote) */
	VMB_ENOTFOUND = -5,  /**< object, file or snapshot does not exist */
	VMB_EEXISTS = -6,    /**< already exists */
	VMB_ECORRUPT = -7,   /**< damaged or malformed data */
	VMB_EAUTH = -8,      /**< wrong passphrase, failed authentication */
	VMB_ENOTSUP = -9,    /**< unsupported feature or format */
	VMB_ELOCKED = -10,   /**< a lock is held by someone else */
	VMB_EAMBIGUOUS = -11,/**< a snapshot prefix matches several */
	VMB_ETIMEOUT = -12,  /**< a remote did not answer in time */
	VMB_ENOSPC = -13,    /**< no space left on the target */
	VMB_EACCES = -14,    /**< permission denied */
	VMB_ECANCELED = -15, /**< the operation was cancelled */
	VMB_EVERIFY = -16,   /**< verification found damage */
	VMB_ERANGE = -17,    /**< value out of range / arithmetic overflow */
	VMB_EFORMAT = -18,   /**< malformed or hostile disk image (input) */
} vmb_error;

/** @return a static name for an error code ("corrupt data", ...). */
VMB_EXTERN(const char *) vmb_error_name(int code);

/**
 * Record an error for the calling thread and return @p code, so callers can
 * write `return vmb_error_set(VMB_EIO, "cannot read %s: %s", p, why);`.
 * Plugins and storage backends use it too.
 */
VMB_EXTERN(int) vmb_error_set(int code, const char *fmt, ...)
	VMB_PRINTF(2, 3);

/**
 * Prefix the current thread's message with context ("opening X: " + old).
 * @return the current error code (so it can be returned directly).
 */
VMB_EXTERN(int) vmb_error_prefix(const char *fmt, ...) VMB_PRINTF(1, 2);

/** @return the calling thread's last error message ("" if none). */
VMB_EXTERN(const char *) vmb_error_message(void);

/** @return the calling thread's last error code (0 if none). */
VMB_EXTERN(int) vmb_error_code(void);

/** Forget the calling thread's last error. */
VMB_EXTERN(void) vmb_error_clear(void);

/* Logging. */
typedef enum vmb_log_level {
	VMB_LOG_ERROR = 0,
	VMB_LOG_WARN = 1,
	VMB_LOG_INFO = 2,
	VMB_LOG_DEBUG = 3,
} vmb_log_level;

/** A log sink.  Called from any thread; must be thread safe. */
typedef void (*vmb_log_fn)(vmb_log_level level, const char *msg,
			   void *payload);

/**
 * Install a log sink (NULL restores the default, which writes
 * "vmb: warning: ..." lines to stderr) and the most verbose level to pass.
 */
VMB_EXTERN(void) vmb_log_set(vmb_log_fn fn, void *payload,
			     vmb_log_level max_level);

/** Emit a log message through the installed sink. */
VMB_EXTERN(void) vmb_log(vmb_log_level level, const char *fmt, ...)
	VMB_PRINTF(2, 3);

/** Progress of a long operation, passed to a vmb_progress_fn. */
typedef struct vmb_progress {
	const char *phase;      /**< "backup", "restore", "verify", ... */
	const char *item;       /**< current disk name or NULL */
	uint64_t bytes_done;    /**< virtual bytes processed so far */
	uint64_t bytes_total;   /**< virtual bytes to process */
	uint64_t bytes_read;    /**< bytes read from the source */
	uint64_t bytes_written; /**< bytes written to the destination */
} vmb_progress;

/**
 * Progress callback.  Called from the thread that started the operation,
 * at most a few times per second.  Return non-zero to cancel (the
 * operation then fails with VMB_ECANCELED).
 */
typedef int (*vmb_progress_fn)(const vmb_progress *p, void *payload);

/** Release memory the library handed to the caller (strings, arrays). */
VMB_EXTERN(void) vmb_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
