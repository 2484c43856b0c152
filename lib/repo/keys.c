/*
 * Key management: change a passphrase, add one, export a key file.
 * Only key files are ever written here; data objects are never touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include "vmbackup/keys.h"
#include "common/util.h"
#include "repo_internal.h"

static int check_new_pass(const vmb_repo *r, const char *pass,
			  const char *what)
{
	if (!r->keys->encrypted)
		return vmb_error_set(VMB_ENOTSUP, "%s: the repository is not "
				     "encrypted: it has no passphrase to %s",
				     vmb_target_url(r->t), what);
	if (!pass || !*pass)
		return vmb_error_set(VMB_EINVAL, "the new passphrase is empty");
	return 0;
}

/* Write @json as @name and read it back: a target that silently dropped
 * the write must not leave us believing the passphrase changed. */
static int put_key(vmb_repo *r, const char *name, const char *json)
{
	void *back = NULL;
	size_t len = strlen(json), blen = 0;
	int rc = vmb_target_put(r->t, name, json, len);
	if (rc)
		return vmb_error_prefix("cannot write key file %s: ", name);
	rc = vmb_target_get(r->t, name, &back, &blen);
	if (rc)
		return vmb_error_prefix("cannot read back key file %s: ", name);
	if (blen != len || memcmp(back, json, len) != 0)
		rc = vmb_error_set(VMB_EIO, "%s: key file %s did not read back "
				   "as written", vmb_target_url(r->t), name);
	sodium_memzero(back, blen);
	free(back);
	return rc;
}

static void free_json(char *json)
{
	if (json) {
		sodium_memzero(json, strlen(json));
		free(json);
	}
}

VMB_EXTERN(int) vmb_repo_key_change(vmb_repo *r, const char *new_passphrase)
{
	char *json = NULL;
	int rc = check_new_pass(r, new_passphrase, "change");
	if (rc)
		return rc;
	rc = vmb_crypto_wrap_key(r->keys->master, new_passphrase,
				 strlen(new_passphrase), 1, &json);
	if (rc)
		return rc;
	/* vmb_target_put replaces atomically (rename, or one S3 PUT); a
	 * store that is not (a torn or short write) would leave no key at
	 * all, so on failure the old key file is put back */
	void *old = NULL;
	size_t oldlen = 0;
	int have_old = vmb_target_get(r->t, r->key_name, &old, &oldlen) == 0;
	rc = put_key(r, r->key_name, json);
	free_json(json);
	if (rc && have_old) {
		char *msg = vmb_strdup(vmb_error_message());
		if (vmb_target_put(r->t, r->key_name, old, oldlen) == 0)
			vmb_log(VMB_LOG_INFO, "%s put back: the passphrase is "
				"unchanged", r->key_name);
		if (msg) {
			vmb_error_set(rc, "%s", msg);
			free(msg);
		}
	}
	if (old) {
		sodium_memzero(old, oldlen);
		free(old);
	}
	return rc;
}

VMB_EXTERN(int) vmb_repo_key_add(vmb_repo *r, const char *passphrase,
				 char **key_name_out)
{
	uint8_t rnd[8];
	char hex[17], name[64], *json = NULL;
	uint64_t sz;
	int rc = check_new_pass(r, passphrase, "add");
	if (key_name_out)
		*key_name_out = NULL;
	if (rc)
		return rc;
	for (int tries = 0;; tries++) {
		vmb_crypto_random(rnd, sizeof rnd);
		vmb_hex(rnd, sizeof rnd, hex);
		snprintf(name, sizeof name, "keys/%s", hex);
		rc = vmb_target_stat(r->t, name, &sz, NULL);
		if (rc == VMB_ENOTFOUND)
			break;
		if (rc)
			return rc;
		if (tries > 8)
			return vmb_error_set(VMB_EEXISTS, "cannot pick a free "
					     "key file name");
	}
	vmb_error_clear();
	rc = vmb_crypto_wrap_key(r->keys->master, passphrase, strlen(passphrase), 1,
				 &json);
	if (rc)
		return rc;
	rc = put_key(r, name, json);
	free_json(json);
	if (rc)
		return rc;
	if (key_name_out && !(*key_name_out = vmb_strdup(name)))
		return VMB_ENOMEM;
	return 0;
}

VMB_EXTERN(int) vmb_repo_key_export(vmb_repo *r, const char *path)
{
	void *data = NULL;
	size_t len = 0;
	int fd, rc;

	if (!path || !*path)
		return vmb_error_set(VMB_EINVAL, "no file to export the key to");
	rc = vmb_target_get(r->t, r->key_name, &data, &len);
	if (rc)
		return vmb_error_prefix("cannot read key file %s: ",
					r->key_name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		rc = vmb_error_set(e == EEXIST ? VMB_EEXISTS :
				   e == EACCES ? VMB_EACCES : VMB_EIO,
				   "cannot create %s: %s%s", path, strerror(e),
				   e == EEXIST ? " (key exports never "
				   "overwrite a file)" : "");
		goto out;
	}
	/* the umask may not take bits away we want, but could add none */
	if (fchmod(fd, 0600) != 0 || vmb_pwrite_full(fd, data, len, 0) != 0 ||
	    fsync(fd) != 0) {
		int e = errno;
		close(fd);
		unlink(path);
		rc = vmb_error_set(VMB_EIO, "cannot write %s: %s", path,
				   strerror(e));
		goto out;
	}
	if (close(fd) != 0) {
		unlink(path);
		rc = vmb_error_set(VMB_EIO, "cannot write %s: %s", path,
				   strerror(errno));
	}
out:
	sodium_memzero(data, len);
	free(data);
	return rc;
}

VMB_EXTERN(const char *) vmb_repo_key_name(const vmb_repo *r)
{
	return r->key_name;
}
