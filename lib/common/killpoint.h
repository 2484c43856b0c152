/*
 * Deterministic kill points for crash-consistency tests
 * (docs/reliability.md).  Every operation that changes durable state (a
 * target put, delete or touch, the write, fsync and rename inside a local
 * put, a step of an image snapshot) calls vmb__kill_point().  With
 *   VMB_KILL_AT=N            the Nth counted operation is the last thing
 *                            the process does (SIGKILL);
 *   VMB_KILL_OPS=k1,k2       count only these kinds (default: every kind:
 *                            put delete touch write fsync rename step);
 *   VMB_KILL_WHEN=before     kill just before the Nth operation instead
 *                            of just after it;
 *   VMB_KILL_TRACE=FILE      append "N kind name" per counted operation,
 *                            so a clean run tells how many there are.
 * Without these variables a kill point costs one branch.
 */
#ifndef VMB_LIB_COMMON_KILLPOINT_H
#define VMB_LIB_COMMON_KILLPOINT_H

/* Call with before = 1 just before the operation, 0 just after it (also
 * when it failed); a point that is between operations calls it once with
 * before = -1 (counted in both modes). */
void vmb__kill_point(const char *kind, const char *name, int before);

#endif
