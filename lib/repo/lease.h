/* Internal: expiring lock objects ("leases") in a repository. */
#ifndef VMB_LIB_REPO_LEASE_H
#define VMB_LIB_REPO_LEASE_H

#include "repo_internal.h"

/*
 * Take or renew the lease @name for @ttl seconds.  @token: "" to take a
 * new lease (filled in on success), or the token of a lease we hold to
 * renew it.  VMB_ELOCKED names the holder when someone else has it.
 */
int vmb_lease_take(vmb_repo *r, const char *name, int ttl, const char *what,
		   char token[33]);
/* This host's name as leases and session markers record it (JSON-safe). */
void vmb_lease_hostname(char host[256]);
/* Is the holder (@host, @pid) of a lease or session marker a process of
 * this host that no longer exists? */
int vmb_lease_dead(const char *host, int64_t pid);
/* Release a lease we hold (no-op if the token is empty). */
int vmb_lease_release(vmb_repo *r, const char *name, char token[33]);

#endif
