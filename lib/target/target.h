/* Internal: built-in storage backends. */
#ifndef VMB_LIB_TARGET_TARGET_H
#define VMB_LIB_TARGET_TARGET_H

#include "vmbackup/sys/target.h"

extern const vmb_target_backend vmb_target__local_backend;
extern const vmb_target_backend vmb_target__nfs_backend;
extern const vmb_target_backend vmb_target__s3_backend;

/* Is this a valid object name (see sys/target.h)? */
int vmb_target__name_ok(const char *name);

/* Wrap @t in the fault-injecting target (fault.c) described by @spec
 * (VMB_FAULT); on success *t is the wrapper, which owns the old *t. */
int vmb_target__fault_wrap(const char *spec, vmb_target **t);

#endif
