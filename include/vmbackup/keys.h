/*
 * vmbackup: repository key management.
 *
 * An encrypted repository has one random 32-byte master key.  Key files
 * (keys/default, keys/<16 hex>) each hold that master key wrapped by one
 * passphrase through Argon2id; vmb_repo_open() tries keys/default first,
 * then every other file under keys/.  Changing or adding a passphrase
 * rewrites or writes one small key file and never touches the data:
 * chunks, indexes and snapshots stay byte-for-byte as they were.
 */
#ifndef VMBACKUP_KEYS_H
#define VMBACKUP_KEYS_H

#include "common.h"
#include "repo.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Replace the passphrase of the key file that opened @p r (keys/default,
 * or the keys/<hex> file the passphrase matched).  The same master key is
 * wrapped again with @p new_passphrase (fresh salt, Argon2id) and the file
 * is replaced atomically on the target; the old passphrase stops working
 * for that file at once.  Other key files and all data stay untouched.
 *
 * @return 0; VMB_ENOTSUP for an unencrypted repository; VMB_EINVAL for an
 *         empty passphrase; or a target error (the old file then stays).
 */
VMB_EXTERN(int) vmb_repo_key_change(vmb_repo *r, const char *new_passphrase);

/**
 * A copy of passphrase @p s in memory kept out of core dumps and swap
 * (libsodium's guarded heap: MADV_DONTDUMP, mlock()ed where allowed), for
 * programs that hold a passphrase while they call the library.
 * @return the copy, to free with vmb_secret_free(), or NULL (no memory).
 */
VMB_EXTERN(char *) vmb_secret_strdup(const char *s);
/** Wipe and free a vmb_secret_strdup() copy; accepts NULL. */
VMB_EXTERN(void) vmb_secret_free(char *s);

/**
 * Add another passphrase: write keys/<16 random hex> holding the master
 * key wrapped by @p passphrase.  Both the old and the new passphrase then
 * open the repository.
 *
 * @param[out] key_name_out  if not NULL, the new object's name
 *                           ("keys/0123456789abcdef"); free with vmb_free()
 * @return 0; VMB_ENOTSUP for an unencrypted repository; VMB_EINVAL for an
 *         empty passphrase; or a target error.
 */
VMB_EXTERN(int) vmb_repo_key_add(vmb_repo *r, const char *passphrase,
				 char **key_name_out);

/**
 * Copy the wrapped key file that opened @p r to the local file @p path,
 * for safekeeping away from the target.  The copy is still protected by
 * its passphrase; putting it back as keys/default (or any keys/ name)
 * restores access with that passphrase, even after the passphrase was
 * changed or the key files on the target were lost.  The file is created
 * with mode 0600 and is never overwritten (VMB_EEXISTS).  For an
 * unencrypted repository the file holds the plain master key.
 */
VMB_EXTERN(int) vmb_repo_key_export(vmb_repo *r, const char *path);

/** @return the name of the key file that opened @p r ("keys/default"). */
VMB_EXTERN(const char *) vmb_repo_key_name(const vmb_repo *r);

#ifdef __cplusplus
}
#endif
#endif
