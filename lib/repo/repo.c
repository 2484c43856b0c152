/* Repository init/open, configuration, keys, object helpers, cache, lock. */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include "common/json.h"
#include "common/pool.h"
#include "vmbackup/sys/target.h"
#include "common/killpoint.h"
#include "common/util.h"
#include "vmbackup/keys.h"
#include "lease.h"
#include "repo_internal.h"

#define CONFIG_MAX (64 << 10)

/* ---- id set ---- */

static size_t slot_of(const uint8_t id[32], size_t cap)
{
	uint64_t h;
	memcpy(&h, id, 8);
	return (size_t)(h & (cap - 1));
}

static int idset_grow(vmb_idset *s)
{
	size_t ncap = s->cap ? s->cap * 2 : 1024;
	vmb_idset n = { vmb_malloc(ncap * 32), vmb_calloc(ncap, 1), ncap, 0 };
	if (!n.slots || !n.used) {
		free(n.slots);
		free(n.used);
		return VMB_ENOMEM;
	}
	for (size_t i = 0; i < s->cap; i++)
		if (s->used[i])
			vmb_idset_add(&n, s->slots[i]);
	vmb_idset_free(s);
	*s = n;
	return 0;
}

int vmb_idset_add(vmb_idset *s, const uint8_t id[32])
{
	size_t i;
	if ((s->count + 1) * 4 > s->cap * 3 && idset_grow(s))
		return VMB_ENOMEM;
	for (i = slot_of(id, s->cap); s->used[i]; i = (i + 1) & (s->cap - 1))
		if (memcmp(s->slots[i], id, 32) == 0)
			return 0;
	memcpy(s->slots[i], id, 32);
	s->used[i] = 1;
	s->count++;
	return 1;
}

int vmb_idset_has(const vmb_idset *s, const uint8_t id[32])
{
	if (!s->cap)
		return 0;
	for (size_t i = slot_of(id, s->cap); s->used[i];
	     i = (i + 1) & (s->cap - 1))
		if (memcmp(s->slots[i], id, 32) == 0)
			return 1;
	return 0;
}

void vmb_idset_free(vmb_idset *s)
{
	free(s->slots);
	free(s->used);
	memset(s, 0, sizeof *s);
}

/* ---- helpers ---- */

void vmb_chunk_name(const uint8_t id[32], char name[80])
{
	char hex[65];
	vmb_hex(id, 32, hex);
	snprintf(name, 80, "chunks/%.2s/%s", hex, hex);
}

int vmb_repo__valid_id(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return 0;
	return n == 32;
}

/*
 * A put that failed may still have left part of the object under its
 * name on a store that is not atomic (a torn or short write).  The next
 * backup would find that name with a stat and reuse it, and a snapshot
 * would refer to damage; so after a failed put, an object there that does
 * not decode is deleted.  One that decodes (ours, whole, or another
 * host's copy of the same content) stays.  The put's error is returned.
 */
int vmb_repo__put_object(vmb_repo *r, int type, const char *name,
			 const uint8_t *bind, size_t bindlen,
			 const void *blob, size_t n)
{
	int rc;
	char *msg;
	void *back = NULL;
	size_t blen = 0;
	/* nothing is written under a key not yet verified */
	if ((rc = vmb_repo_key_wait(r)))
		return rc;
	rc = vmb_target_put(r->t, name, blob, n);
	if (rc == 0)
		return 0;
	msg = vmb_strdup(vmb_error_message());
	if (vmb_target_get(r->t, name, &back, &blen) == 0) {
		size_t plen = vmb_blob_plain_len(back, blen), got;
		uint8_t *out = plen ? vmb_malloc(plen) : NULL;
		if (out && vmb_blob_decode(r->keys, type, bind, bindlen, back,
					   blen, NULL, out, plen, &got,
					   name) == 0) {
			free(out);
		} else {
			free(out);
			if (vmb_target_delete(r->t, name) == 0)
				vmb_log(VMB_LOG_INFO, "removed %s, left "
					"damaged by the failed write", name);
		}
		free(back);
	}
	if (msg) {
		vmb_error_set(rc, "%s", msg);
		free(msg);
	}
	return rc;
}

int vmb_repo__put_blob(vmb_repo *r, int type, const char *name,
		       const uint8_t *bind, size_t bindlen, const void *plain,
		       size_t len, uint64_t *stored)
{
	size_t cap = vmb_blob_bound(len), n;
	uint8_t *buf = vmb_malloc(cap);
	int rc;
	if (!buf)
		return VMB_ENOMEM;
	rc = vmb_blob_encode(r->keys, type, bind, bindlen, plain, len,
			     r->zstd_level > 0 ? r->zstd_level : 0, NULL, buf,
			     &n);
	if (!rc)
		rc = vmb_repo__put_object(r, type, name, bind, bindlen, buf,
					  n);
	if (!rc && stored)
		*stored += n;
	free(buf);
	return rc;
}

int vmb_repo__get_blob(vmb_repo *r, int type, const char *name,
		       const uint8_t *bind, size_t bindlen, size_t max,
		       uint8_t **plain, size_t *len)
{
	void *raw = NULL;
	size_t rawlen, plen;
	uint8_t *out;
	char what[200];
	int rc;

	*plain = NULL;
	if ((rc = vmb_repo_key_wait(r)))
		return rc;
	rc = vmb_target_get(r->t, name, &raw, &rawlen);
	if (rc)
		return rc;
	snprintf(what, sizeof what, "%s: %s", vmb_target_url(r->t), name);
	plen = vmb_blob_plain_len(raw, rawlen);
	if (plen > max) {
		free(raw);
		return vmb_error_set(VMB_ECORRUPT, "%s: object too large", what);
	}
	out = vmb_malloc(plen + 1);
	if (!out) {
		free(raw);
		return VMB_ENOMEM;
	}
	rc = vmb_blob_decode(r->keys, type, bind, bindlen, raw, rawlen, NULL,
			     out, plen, len, what);
	free(raw);
	if (rc) {
		free(out);
		return rc;
	}
	out[*len] = 0;
	*plain = out;
	return 0;
}

int vmb_repo__get_chunk(vmb_repo *r, const uint8_t id[32], ZSTD_DCtx *dctx,
			void *out, size_t cap, size_t *len)
{
	char name[80], what[200];
	void *raw = NULL;
	size_t rawlen;
	int rc;
	if ((rc = vmb_repo_key_wait(r)))
		return rc;
	vmb_chunk_name(id, name);
	rc = vmb_target_get(r->t, name, &raw, &rawlen);
	if (rc == VMB_ENOTFOUND)
		return vmb_error_set(VMB_ECORRUPT, "%s: chunk %s is missing",
				     vmb_target_url(r->t), name + 10);
	if (rc)
		return rc;
	snprintf(what, sizeof what, "%s: chunk %s", vmb_target_url(r->t),
		 name + 10);
	rc = vmb_blob_decode(r->keys, VMB_BLOB_CHUNK, id, 32, raw, rawlen,
			     dctx, out, cap, len, what);
	free(raw);
	return rc;
}

/* ---- config ---- */

int vmb_repo__parse_config(const char *text, size_t len, const char *what,
			   vmb_repo_config *c)
{
	vmb_json *j = NULL;
	const char *id, *cipher, *enc;
	uint64_t ver, cs, lvl;
	int rc;

	memset(c, 0, sizeof *c);
	if (len > CONFIG_MAX)
		return vmb_error_set(VMB_ECORRUPT, "%s: too large", what);
	rc = vmb_json_parse(text, len, what, &j);
	if (rc)
		return rc;
	rc = vmb_error_set(VMB_ECORRUPT, "%s: not a vmbackup repository "
			   "configuration", what);
	if (vmb_json_u64(j, "vmbackup_repository", &ver))
		goto out;
	if (ver != 1 && ver != 2) {
		rc = vmb_error_set(VMB_ENOTSUP, "%s: repository version %llu "
				   "is newer than this vmb supports", what,
				   (unsigned long long)ver);
		goto out;
	}
	id = vmb_json_str(j, "id");
	if (!id || !vmb_repo__valid_id(id) ||
	    vmb_json_u64(j, "chunk_size", &cs) || !vmb_is_pow2(cs) ||
	    cs < VMB_MIN_CHUNK_SIZE || cs > VMB_MAX_CHUNK_SIZE)
		goto out;
	if (vmb_json_u64(j, "zstd_level", &lvl) || lvl > 19)
		lvl = 1;
	/* no member: a repository from before the choice, XChaCha20 */
	cipher = vmb_json_str(j, "cipher");
	c->cipher = VMB_CIPHER_XCHACHA;
	if (cipher && strcmp(cipher, "aes256gcm") == 0) {
		c->cipher = VMB_CIPHER_AESGCM;
	} else if (cipher && strcmp(cipher, "xchacha20poly1305") != 0 &&
		   strcmp(cipher, "none") != 0) {
		rc = vmb_error_set(VMB_ENOTSUP, "%s: unknown cipher '%.40s'",
				   what, cipher);
		goto out;
	}
	/* every repository ever made says; the key file must agree */
	enc = vmb_json_str(j, "encryption");
	if (!enc || (strcmp(enc, "repokey") && strcmp(enc, "none"))) {
		rc = vmb_error_set(VMB_ENOTSUP, "%s: unknown encryption "
				   "'%.40s'", what, enc ? enc : "");
		goto out;
	}
	c->encrypted = strcmp(enc, "repokey") == 0;
	memcpy(c->id, id, 33);
	c->chunk_size = (uint32_t)cs;
	c->zstd_level = (int)lvl;
	rc = 0;
out:
	vmb_json_free(j);
	if (!rc)
		vmb_error_clear();
	return rc;
}

static int read_config(vmb_repo *r)
{
	void *data = NULL;
	size_t len;
	vmb_repo_config c;
	char what[300];
	int rc = vmb_target_get(r->t, "config", &data, &len);
	if (rc == VMB_ENOTFOUND)
		return vmb_error_set(VMB_ENOTFOUND, "%s: no repository there "
				     "(run vmb init first)",
				     vmb_target_url(r->t));
	if (rc)
		return vmb_error_prefix("cannot open repository: ");
	snprintf(what, sizeof what, "%s: config", vmb_target_url(r->t));
	rc = vmb_repo__parse_config(data, len, what, &c);
	free(data);
	if (rc)
		return rc;
	if (c.cipher == VMB_CIPHER_AESGCM && c.encrypted &&
	    !vmb_crypto_aesgcm_available())
		return vmb_error_set(VMB_ENOTSUP, "%s: the repository is "
				     "sealed with AES-256-GCM, which this "
				     "machine lacks (no AES-NI/PCLMUL)",
				     vmb_target_url(r->t));
	memcpy(r->id, c.id, 33);
	r->chunk_size = c.chunk_size;
	r->zstd_level = c.zstd_level;
	r->cipher = c.cipher;
	r->config_encrypted = c.encrypted;
	return 0;
}

VMB_EXTERN(int) vmb_repo_init(const char *url, const char *passphrase,
			      const vmb_repo_init_options *opts)
{
	vmb_repo_init_options def = VMB_REPO_INIT_OPTIONS_INIT;
	uint8_t rid[16];
	char hid[33], *keyjson = NULL;
	vmb_keys *mk = NULL;
	vmb_target *t = NULL;
	uint64_t sz;
	vmb_buf b;
	int rc, level, cipher, aes;

	if (!opts)
		opts = &def;
	cipher = opts->version >= 2 ? opts->cipher : VMB_CIPHER_AUTO;
	if (cipher == VMB_CIPHER_AUTO)
		cipher = vmb_cipher_available(VMB_CIPHER_AES256GCM)
				 ? VMB_CIPHER_AES256GCM
				 : VMB_CIPHER_XCHACHA20POLY1305;
	if (cipher != VMB_CIPHER_AES256GCM &&
	    cipher != VMB_CIPHER_XCHACHA20POLY1305)
		return vmb_error_set(VMB_EINVAL, "unknown cipher %d", cipher);
	if (opts->encrypted && !vmb_cipher_available(cipher))
		return vmb_error_set(VMB_ENOTSUP, "AES-256-GCM is not available "
				     "on this machine (no AES-NI/PCLMUL)");
	if (vmb_crypto_init())
		return VMB_EGENERIC;
	uint32_t cs = opts->chunk_size ? opts->chunk_size
				       : VMB_DEFAULT_CHUNK_SIZE;
	if (!vmb_is_pow2(cs) || cs < VMB_MIN_CHUNK_SIZE ||
	    cs > VMB_MAX_CHUNK_SIZE)
		return vmb_error_set(VMB_EINVAL, "chunk size must be a power of "
				     "two from 64K to 16M");
	if (opts->encrypted && (!passphrase || !*passphrase))
		return vmb_error_set(VMB_EINVAL, "an encrypted repository "
				     "needs a passphrase");
	level = opts->zstd_level == 0 ? 1 : opts->zstd_level < 0 ? 0
				      : opts->zstd_level;
	if (level > 19)
		return vmb_error_set(VMB_EINVAL, "zstd level must be 1..19");
	rc = vmb_target_open(url, &t);
	if (rc)
		return rc;
	rc = vmb_target_stat(t, "config", &sz, NULL);
	if (rc == 0) {
		rc = vmb_error_set(VMB_EEXISTS, "%s: a repository already "
				   "exists there", url);
		goto out;
	}
	if (rc != VMB_ENOTFOUND)
		goto out;
	if (!(mk = vmb_crypto_keys_new())) {
		rc = vmb_error_set(VMB_ENOMEM, "cannot allocate locked memory "
				   "for the master key");
		goto out;
	}
	vmb_crypto_random(mk->master, sizeof mk->master);
	vmb_crypto_random(rid, sizeof rid);
	vmb_hex(rid, sizeof rid, hid);
	rc = vmb_crypto_wrap_key(mk->master, passphrase ? passphrase : "",
				 passphrase ? strlen(passphrase) : 0,
				 opts->encrypted, &keyjson);
	vmb_crypto_keys_free(mk);
	mk = NULL;
	if (rc)
		goto out;
	/* the key first: a config without a key would be a broken repo */
	rc = vmb_target_put(t, "keys/default", keyjson, strlen(keyjson));
	if (rc)
		goto out;
	vmb_buf_init(&b);
	/* version 2 only for AES-GCM: an older vmb, which knows only
	 * XChaCha20, refuses it instead of calling every chunk damaged */
	aes = opts->encrypted && cipher == VMB_CIPHER_AES256GCM;
	vmb_buf_printf(&b, "{\"vmbackup_repository\":%d,\"id\":\"%s\","
		       "\"chunk_size\":%u,\"encryption\":\"%s\","
		       "\"cipher\":\"%s\","
		       "\"compression\":\"%s\",\"zstd_level\":%d,"
		       "\"created\":%lld}\n", aes ? 2 : 1, hid, cs,
		       opts->encrypted ? "repokey" : "none",
		       !opts->encrypted ? "none"
		       : aes ? "aes256gcm" : "xchacha20poly1305",
		       level ? "zstd" : "none", level, (long long)time(NULL));
	if (b.failed) {
		vmb_buf_free(&b);
		rc = VMB_ENOMEM;
		goto out;
	}
	rc = vmb_target_put(t, "config", b.data, b.len);
	vmb_buf_free(&b);
out:
	vmb_crypto_keys_free(mk);
	if (keyjson) {
		sodium_memzero(keyjson, strlen(keyjson));
		free(keyjson);
	}
	vmb_target_close(t);
	return rc;
}

struct key_try {
	vmb_repo *r;
	const char *pass;
	uint8_t *master;
	int *encrypted;
	int found;
	int err;
};

static int try_key_file(vmb_repo *r, const char *name, const char *pass,
			uint8_t *master, int *encrypted)
{
	void *data = NULL;
	size_t len;
	char what[300];
	int rc = vmb_target_get(r->t, name, &data, &len);
	if (rc)
		return rc;
	snprintf(what, sizeof what, "%s: %s", vmb_target_url(r->t), name);
	if (len > CONFIG_MAX)
		rc = vmb_error_set(VMB_ECORRUPT, "%s: too large", what);
	else
		rc = vmb_crypto_unwrap_key(data, len, pass ? pass : "",
					   pass ? strlen(pass) : 0, what,
					   master, encrypted);
	sodium_memzero(data, len);
	free(data);
	return rc;
}

static int key_list_cb(const char *name, uint64_t size, int64_t mtime,
		       void *payload)
{
	struct key_try *k = payload;
	if (strcmp(name, "keys/default") == 0)
		return 0;
	int rc = try_key_file(k->r, name, k->pass, k->master, k->encrypted);
	if (rc == 0) {
		k->found = 1;
		snprintf(k->r->key_name, sizeof k->r->key_name, "%s", name);
		return 1;
	}
	if (rc != VMB_EAUTH)
		k->err = rc;
	return 0;
}

/* Allocate @r and read its config: everything of an open but the key. */
static int open_start(const char *url, vmb_repo **out)
{
	vmb_repo *r;
	int rc;

	*out = NULL;
	if (vmb_crypto_init())
		return VMB_EGENERIC;
	r = vmb_calloc(1, sizeof *r);
	if (!r)
		return VMB_ENOMEM;
	pthread_mutex_init(&r->known_lock, NULL);
	pthread_mutex_init(&r->kdf_lock, NULL);
	/* the master key is unwrapped straight into locked memory */
	if (!(r->keys = vmb_crypto_keys_new())) {
		pthread_mutex_destroy(&r->kdf_lock);
		pthread_mutex_destroy(&r->known_lock);
		free(r);
		return vmb_error_set(VMB_ENOMEM, "cannot allocate locked "
				     "memory for the keys");
	}
	rc = vmb_target_open(url, &r->t);
	if (!rc)
		rc = read_config(r);
	if (!rc && !(r->url = vmb_strdup(url)))
		rc = VMB_ENOMEM;
	if (rc) {
		vmb_repo_close(r);
		return rc;
	}
	*out = r;
	return 0;
}

/* Unwrap the master key with @passphrase (Argon2id), derive the subkeys,
 * read the GC epoch.  Touches only @r's key state, key_name, gc_epoch. */
static int open_keys(vmb_repo *r, const char *passphrase)
{
	const char *url = r->url;
	uint8_t *master = r->keys->master;
	int rc, encrypted = 0;
	void *ep = NULL;
	size_t eplen;

	snprintf(r->key_name, sizeof r->key_name, "keys/default");
	rc = try_key_file(r, "keys/default", passphrase, master, &encrypted);
	if (rc == VMB_EAUTH || rc == VMB_ENOTFOUND) {
		/* other passphrases added with `vmb key add` */
		struct key_try k = { r, passphrase, master, &encrypted, 0, 0 };
		int lr = vmb_target_list(r->t, "keys/", key_list_cb, &k);
		if (k.found)
			rc = 0;
		else if (rc == VMB_ENOTFOUND)
			rc = vmb_error_set(VMB_ECORRUPT, "%s: the repository "
					   "has no key file", url);
		else if (lr)
			rc = lr;
		else
			rc = vmb_error_set(VMB_EAUTH, "%s: wrong passphrase",
					   url);
	} else if (rc == 0 && encrypted && (!passphrase || !*passphrase)) {
		rc = vmb_error_set(VMB_EAUTH, "%s: a passphrase is needed",
				   url);
	}
	/* the config and the key file must agree: a key file swapped for
	 * an unencrypted one must not turn the next backups into plain
	 * text under a key the attacker chose (docs/threat-model.md) */
	if (rc == 0 && encrypted != r->config_encrypted)
		rc = vmb_error_set(VMB_ECORRUPT, "%s: key file %s is %s, but "
				   "the config says the repository is %s: "
				   "refusing a replaced key file or config",
				   url, r->key_name,
				   encrypted ? "encrypted" : "unencrypted",
				   r->config_encrypted ? "encrypted"
						       : "unencrypted");
	if (rc)
		return rc;
	vmb_crypto_derive(master, encrypted, r->keys);
	r->keys->cipher = r->cipher;
	/* the GC epoch decides whether the local chunk cache is valid */
	snprintf(r->gc_epoch, sizeof r->gc_epoch, "0");
	if (vmb_target_get(r->t, "state/gc-epoch", &ep, &eplen) == 0) {
		size_t n = eplen < 64 ? eplen : 64;
		memcpy(r->gc_epoch, ep, n);
		r->gc_epoch[n] = 0;
		for (size_t i = 0; i < n; i++)
			if (r->gc_epoch[i] < '0' || r->gc_epoch[i] > 'z')
				r->gc_epoch[i] = '_';
		free(ep);
	}
	return 0;
}

VMB_EXTERN(int) vmb_repo_open(const char *url, const char *passphrase,
			      vmb_repo **out)
{
	vmb_repo *r;
	int rc = open_start(url, &r);
	*out = NULL;
	if (rc)
		return rc;
	rc = open_keys(r, passphrase);
	if (rc) {
		vmb_repo_close(r);
		return rc;
	}
	vmb_error_clear();
	*out = r;
	return 0;
}

/* The background thread of vmb_repo_open_async(). */
static void *kdf_thread(void *arg)
{
	vmb_repo *r = arg;
	int rc = open_keys(r, r->kdf_pass);
	if (rc)
		r->kdf_msg = vmb_strdup(vmb_error_message());
	r->kdf_rc = rc;
	vmb_secret_free(r->kdf_pass);
	r->kdf_pass = NULL;
	atomic_store(&r->kdf_done, 1);
	return NULL;
}

VMB_EXTERN(int) vmb_repo_open_async(const char *url, const char *passphrase,
				    vmb_repo **out)
{
	vmb_repo *r;
	int rc;

	*out = NULL;
	/* nothing to overlap without a passphrase: no Argon2id to wait
	 * for, or a "passphrase needed" to report right away */
	if (!passphrase || !*passphrase || getenv("VMB_NO_KDF_OVERLAP"))
		return vmb_repo_open(url, passphrase, out);
	rc = open_start(url, &r);
	if (rc)
		return rc;
	if (!(r->kdf_pass = vmb_secret_strdup(passphrase))) {
		vmb_repo_close(r);
		return VMB_ENOMEM;
	}
	if (pthread_create(&r->kdf_tid, NULL, kdf_thread, r) != 0) {
		/* no thread: the plain open, here */
		rc = open_keys(r, r->kdf_pass);
		vmb_secret_free(r->kdf_pass);
		r->kdf_pass = NULL;
		if (rc) {
			vmb_repo_close(r);
			return rc;
		}
		vmb_error_clear();
		*out = r;
		return 0;
	}
	r->kdf_started = 1;
	vmb_error_clear();
	*out = r;
	return 0;
}

VMB_EXTERN(int) vmb_repo_key_wait(vmb_repo *r)
{
	int rc;
	if (!r->kdf_started)
		return 0;
	pthread_mutex_lock(&r->kdf_lock);
	if (!r->kdf_joined) {
		pthread_join(r->kdf_tid, NULL);
		r->kdf_joined = 1;
	}
	rc = r->kdf_rc;
	pthread_mutex_unlock(&r->kdf_lock);
	if (rc)
		return vmb_error_set(rc, "%s", r->kdf_msg ? r->kdf_msg
				     : vmb_error_name(rc));
	return 0;
}

int vmb_repo__key_pending(const vmb_repo *r)
{
	return r->kdf_started && !atomic_load(&r->kdf_done);
}

VMB_EXTERN(void) vmb_repo_close(vmb_repo *r)
{
	if (!r)
		return;
	if (r->kdf_started && !r->kdf_joined)
		pthread_join(r->kdf_tid, NULL);
	/* a lock needs the key (only taken after vmb_repo_key_wait()) */
	if (r->lock_token[0] && !r->kdf_rc)
		vmb_repo_unlock(r);
	vmb_repo__spec_free(r);
	free(r->kdf_msg);
	vmb_target_close(r->t);
	vmb_idset_free(&r->known);
	pthread_mutex_destroy(&r->known_lock);
	pthread_mutex_destroy(&r->kdf_lock);
	vmb_crypto_keys_free(r->keys);
	free(r->url);
	free(r);
}

VMB_EXTERN(const char *) vmb_repo_id(const vmb_repo *r)
{
	return r->id;
}

VMB_EXTERN(uint32_t) vmb_repo_chunk_size(const vmb_repo *r)
{
	return r->chunk_size;
}

VMB_EXTERN(int) vmb_repo_encrypted(const vmb_repo *r)
{
	return r->keys->encrypted;
}

VMB_EXTERN(const char *) vmb_repo_cipher(const vmb_repo *r)
{
	return !r->keys->encrypted ? "none"
				  : vmb_crypto_cipher_name(r->keys->cipher);
}

VMB_EXTERN(int) vmb_cipher_available(int cipher)
{
	if (cipher == VMB_CIPHER_AES256GCM)
		return vmb_crypto_aesgcm_available();
	return cipher == VMB_CIPHER_XCHACHA20POLY1305 ||
	       cipher == VMB_CIPHER_AUTO;
}

int vmb_repo__threads(const vmb_repo *r, int requested)
{
	int n;
	if (requested > 0)
		return requested;
	n = vmb_pool_default_threads();
	/* remote targets spend most of a request waiting: keep more in
	 * flight than there are cores (unless VMB_THREADS says otherwise) */
	if (!getenv("VMB_THREADS") && strcmp(r->t->ops->name, "local") != 0) {
		n *= 4;
		if (n < 8)
			n = 8;
		if (n > 16)
			n = 16;
	}
	return n;
}

/* ---- known-chunk cache ---- */

static char *cache_path(vmb_repo *r)
{
	const char *base = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	if (base && *base)
		return vmb_asprintf("%s/vmb/%s/known-chunks", base, r->id);
	if (home && *home)
		return vmb_asprintf("%s/.cache/vmb/%s/known-chunks", home, r->id);
	return NULL;
}

#define CACHE_MAGIC "VMBCACHE1\n"

void vmb_repo__cache_load(vmb_repo *r)
{
	char *p = cache_path(r);
	FILE *f;
	char epoch[80];
	uint8_t id[32];
	if (!p)
		return;
	f = fopen(p, "rb");
	free(p);
	if (!f)
		return;
	char magic[sizeof CACHE_MAGIC];
	if (fread(magic, 1, sizeof CACHE_MAGIC - 1, f) == sizeof CACHE_MAGIC - 1 &&
	    memcmp(magic, CACHE_MAGIC, sizeof CACHE_MAGIC - 1) == 0 &&
	    fgets(epoch, sizeof epoch, f)) {
		epoch[strcspn(epoch, "\n")] = 0;
		/* stale after a GC: chunks it knew of may be gone */
		if (strcmp(epoch, r->gc_epoch) == 0) {
			pthread_mutex_lock(&r->known_lock);
			while (fread(id, 1, 32, f) == 32)
				if (vmb_idset_add(&r->known, id) < 0)
					break;
			pthread_mutex_unlock(&r->known_lock);
		}
	}
	fclose(f);
	r->known_loaded = 1;
}

void vmb_repo__cache_save(vmb_repo *r)
{
	char *p = cache_path(r), *tmp, *dir, *slash;
	FILE *f;
	if (!p)
		return;
	dir = vmb_strdup(p);
	slash = dir ? strrchr(dir, '/') : NULL;
	if (slash) {
		*slash = 0;
		if (vmb_mkdir_p(dir, 0700))
			vmb_error_clear(); /* the cache is only a cache */
	}
	free(dir);
	tmp = vmb_asprintf("%s.tmp%d", p, (int)getpid());
	if (!tmp || !(f = fopen(tmp, "wb"))) {
		free(tmp);
		free(p);
		return; /* a cache is optional */
	}
	fputs(CACHE_MAGIC, f);
	fprintf(f, "%s\n", r->gc_epoch);
	pthread_mutex_lock(&r->known_lock);
	for (size_t i = 0; i < r->known.cap; i++)
		if (r->known.used[i])
			fwrite(r->known.slots[i], 1, 32, f);
	pthread_mutex_unlock(&r->known_lock);
	if (fclose(f) == 0) {
		vmb__kill_point("cache", "known-chunks", 1);
		rename(tmp, p);
		vmb__kill_point("cache", "known-chunks", 0);
	} else
		unlink(tmp);
	free(tmp);
	free(p);
}

/* ---- maintenance lock (lease) ---- */

VMB_EXTERN(int) vmb_repo_lock(vmb_repo *r, int ttl)
{
	return vmb_lease_take(r, "locks/maintenance", ttl,
			      "the repository (maintenance)", r->lock_token);
}

VMB_EXTERN(int) vmb_repo_unlock(vmb_repo *r)
{
	return vmb_lease_release(r, "locks/maintenance", r->lock_token);
}
