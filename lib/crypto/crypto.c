/* Key derivation, chunk ids, authenticated encryption, key wrapping. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "common/json.h"
#include "common/util.h"
#include "crypto.h"
#include "vmbackup/keys.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_ok;

static void do_init(void)
{
	init_ok = sodium_init() >= 0;
}

int vmb_crypto_init(void)
{
	pthread_once(&once, do_init);
	return init_ok ? 0 : vmb_error_set(VMB_EGENERIC,
					   "cannot initialise libsodium");
}

void vmb_crypto_random(void *out, size_t len)
{
	vmb_crypto_init();
	randombytes_buf(out, len);
}

void vmb_crypto_derive(const uint8_t master[VMB_MASTER_KEY_BYTES],
		       int encrypted, vmb_keys *k)
{
	static const char ctx[crypto_kdf_CONTEXTBYTES] = { 'v', 'm', 'b', 'k',
							   'e', 'y', 's', '1' };
	vmb_crypto_init();
	/* @master may be k->master itself: derive from there */
	if (master != k->master)
		memcpy(k->master, master, VMB_MASTER_KEY_BYTES);
	k->encrypted = encrypted;
	k->cipher = VMB_CIPHER_XCHACHA;
	crypto_kdf_derive_from_key(k->enc, sizeof k->enc, 1, ctx, k->master);
	crypto_kdf_derive_from_key(k->id, sizeof k->id, 2, ctx, k->master);
	crypto_kdf_derive_from_key(k->mac, sizeof k->mac, 3, ctx, k->master);
	for (int i = 0; i < 3; i++)
		crypto_kdf_derive_from_key(k->fp + 64 * i, 64, 4 + (uint64_t)i,
					   ctx, k->master);
}

vmb_keys *vmb_crypto_keys_new(void)
{
	vmb_keys *k;
	if (vmb_crypto_init())
		return NULL;
	/* guarded pages, mlock()ed (best effort) and MADV_DONTDUMP */
	k = sodium_malloc(sizeof *k);
	if (k)
		sodium_memzero(k, sizeof *k);
	return k;
}

void vmb_crypto_keys_free(vmb_keys *k)
{
	/* sodium_free() wipes the whole allocation before unmapping it */
	if (k)
		sodium_free(k);
}

VMB_EXTERN(char *) vmb_secret_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p;
	if (vmb_crypto_init())
		return NULL;
	p = sodium_malloc(n);
	if (p)
		memcpy(p, s, n);
	return p;
}

VMB_EXTERN(void) vmb_secret_free(char *s)
{
	if (s)
		sodium_free(s); /* wipes the whole allocation */
}

void vmb_crypto_chunk_id(const vmb_keys *k, const void *data, size_t len,
			 uint8_t id[VMB_ID_BYTES])
{
	crypto_generichash(id, VMB_ID_BYTES, data, len, k->id, sizeof k->id);
}

#ifdef VMB_HAVE_FP_AVX2
static int fp_avx2(void)
{
	static int have = -1; /* a benign race: every thread finds the same */
	if (have < 0)
		have = __builtin_cpu_supports("avx2") ? 1 : 0;
	return have;
}
#endif

void vmb_crypto_fingerprint(const vmb_keys *k, const void *data, size_t len,
			    uint8_t fp[16])
{
#ifdef VMB_HAVE_FP_AVX2
	if (fp_avx2()) {
		vmb_crypto__fingerprint_avx2(k->fp, sizeof k->fp, data, len,
					     fp);
		return;
	}
#endif
	XXH128_hash_t h = XXH3_128bits_withSecret(data, len, k->fp,
						  sizeof k->fp);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, h);
	memcpy(fp, c.digest, 16);
}

const char *vmb_crypto_cipher_name(int cipher)
{
	return cipher == VMB_CIPHER_AESGCM ? "aes256gcm" : "xchacha20poly1305";
}

int vmb_crypto_aesgcm_available(void)
{
	const char *e = getenv("VMB_TEST_NO_AESGCM");
	vmb_crypto_init();
	if (e && *e && strcmp(e, "0") != 0)
		return 0;
	return crypto_aead_aes256gcm_is_available();
}

void vmb_crypto_aesgcm_subkey(const uint8_t enc[32],
			      const uint8_t field[VMB_SEAL_NONCE_BYTES],
			      uint8_t subkey[32], uint8_t nonce[12])
{
	static const uint8_t personal[16] = "vmb-aes256gcm-v1";
	/* BLAKE2b's own salt and personalisation parameters (as
	 * crypto_kdf does): one compression for 32 bytes of output */
	crypto_generichash_blake2b_salt_personal(subkey, 32, NULL, 0, enc, 32,
						 field, personal);
	memcpy(nonce, field + VMB_AESGCM_SALT_BYTES,
	       VMB_SEAL_NONCE_BYTES - VMB_AESGCM_SALT_BYTES);
	memset(nonce + VMB_SEAL_NONCE_BYTES - VMB_AESGCM_SALT_BYTES, 0,
	       12 - (VMB_SEAL_NONCE_BYTES - VMB_AESGCM_SALT_BYTES));
}

/* beforenm expands the subkey's AES schedule and GHASH table once; the
 * state is wiped afterwards with the subkey. */
static int aesgcm(int seal, const uint8_t enc[32], const uint8_t *field,
		  const uint8_t *ad, size_t adlen, const uint8_t *in,
		  size_t inlen, uint8_t *out)
{
	crypto_aead_aes256gcm_state st;
	uint8_t subkey[32], nonce[12];
	unsigned long long n;
	int r = 0;
	vmb_crypto_aesgcm_subkey(enc, field, subkey, nonce);
	crypto_aead_aes256gcm_beforenm(&st, subkey);
	if (seal)
		crypto_aead_aes256gcm_encrypt_afternm(out, &n, in, inlen, ad,
						      adlen, NULL, nonce, &st);
	else
		r = crypto_aead_aes256gcm_decrypt_afternm(out, &n, NULL, in,
							  inlen, ad, adlen,
							  nonce, &st);
	sodium_memzero(&st, sizeof st);
	sodium_memzero(subkey, sizeof subkey);
	return r;
}

void vmb_crypto_seal(const vmb_keys *k, const uint8_t *ad, size_t adlen,
		     const uint8_t *in, size_t len, uint8_t *out)
{
	unsigned long long clen;
	randombytes_buf(out, VMB_SEAL_NONCE_BYTES);
	if (k->cipher == VMB_CIPHER_AESGCM) {
		aesgcm(1, k->enc, out, ad, adlen, in, len,
		       out + VMB_SEAL_NONCE_BYTES);
		return;
	}
	crypto_aead_xchacha20poly1305_ietf_encrypt(
		out + VMB_SEAL_NONCE_BYTES, &clen, in, len, ad, adlen, NULL,
		out, k->enc);
}

int vmb_crypto_open(const vmb_keys *k, const uint8_t *ad, size_t adlen,
		    const uint8_t *in, size_t inlen, uint8_t *out)
{
	unsigned long long mlen;
	if (inlen < VMB_SEAL_NONCE_BYTES + VMB_SEAL_TAG_BYTES)
		return VMB_EAUTH;
	if (k->cipher == VMB_CIPHER_AESGCM)
		return aesgcm(0, k->enc, in, ad, adlen,
			      in + VMB_SEAL_NONCE_BYTES,
			      inlen - VMB_SEAL_NONCE_BYTES, out)
			       ? VMB_EAUTH
			       : 0;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		    out, &mlen, NULL, in + VMB_SEAL_NONCE_BYTES,
		    inlen - VMB_SEAL_NONCE_BYTES, ad, adlen, in, k->enc) != 0)
		return VMB_EAUTH;
	return 0;
}

void vmb_crypto_mac(const vmb_keys *k, const uint8_t *ad, size_t adlen,
		    const uint8_t *data, size_t len,
		    uint8_t mac[VMB_MAC_BYTES])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, k->mac, sizeof k->mac, VMB_MAC_BYTES);
	crypto_generichash_update(&st, ad, adlen);
	crypto_generichash_update(&st, data, len);
	crypto_generichash_final(&st, mac, VMB_MAC_BYTES);
}

static const uint8_t key_ad[] = "vmbackup master key v1";

static void kdf_params(unsigned long long *ops, size_t *mem)
{
	const char *o = getenv("VMB_KDF_OPSLIMIT");
	const char *m = getenv("VMB_KDF_MEMLIMIT");
	*ops = crypto_pwhash_OPSLIMIT_MODERATE;        /* 3 */
	*mem = crypto_pwhash_MEMLIMIT_INTERACTIVE * 2; /* 128 MiB */
	if (o) {
		char *end;
		unsigned long long v = strtoull(o, &end, 10);
		if (!*end && v >= crypto_pwhash_OPSLIMIT_MIN && v <= 64)
			*ops = v;
	}
	if (m && strtoull(m, NULL, 10) >= crypto_pwhash_MEMLIMIT_MIN)
		*mem = (size_t)strtoull(m, NULL, 10);
}

int vmb_crypto_wrap_key(const uint8_t master[VMB_MASTER_KEY_BYTES],
			const char *pass, size_t passlen, int encrypted,
			char **json)
{
	uint8_t salt[crypto_pwhash_SALTBYTES];
	uint8_t sealed[VMB_SEAL_NONCE_BYTES + VMB_MASTER_KEY_BYTES +
		       VMB_SEAL_TAG_BYTES];
	char hsalt[2 * sizeof salt + 1], hsealed[2 * sizeof sealed + 1];
	char hkey[2 * VMB_MASTER_KEY_BYTES + 1];
	unsigned long long ops;
	size_t mem;
	vmb_buf b;
	vmb_keys *k;

	*json = NULL;
	vmb_crypto_init();
	vmb_buf_init(&b);
	if (!encrypted) {
		vmb_hex(master, VMB_MASTER_KEY_BYTES, hkey);
		vmb_buf_printf(&b, "{\"version\":1,\"kdf\":\"none\","
			       "\"key\":\"%s\",\"created\":%lld}\n", hkey,
			       (long long)time(NULL));
		sodium_memzero(hkey, sizeof hkey);
		*json = vmb_buf_detach(&b);
		return *json ? 0 : VMB_ENOMEM;
	}
	kdf_params(&ops, &mem);
	randombytes_buf(salt, sizeof salt);
	/* the key-encrypting key is as secret as the master key */
	if (!(k = vmb_crypto_keys_new()))
		return vmb_error_set(VMB_ENOMEM, "cannot allocate locked "
				     "memory for a key");
	if (crypto_pwhash(k->enc, sizeof k->enc, pass, passlen, salt, ops,
			  mem, crypto_pwhash_ALG_ARGON2ID13) != 0) {
		vmb_crypto_keys_free(k);
		return vmb_error_set(VMB_ENOMEM,
				     "not enough memory for Argon2id (%zu bytes)",
				     mem);
	}
	vmb_crypto_seal(k, key_ad, sizeof key_ad - 1, master,
			VMB_MASTER_KEY_BYTES, sealed);
	vmb_crypto_keys_free(k);
	vmb_hex(salt, sizeof salt, hsalt);
	vmb_hex(sealed, sizeof sealed, hsealed);
	vmb_buf_printf(&b, "{\"version\":1,\"kdf\":\"argon2id13\","
		       "\"opslimit\":%llu,\"memlimit\":%zu,\"salt\":\"%s\","
		       "\"sealed_key\":\"%s\",\"created\":%lld}\n",
		       ops, mem, hsalt, hsealed, (long long)time(NULL));
	*json = vmb_buf_detach(&b);
	return *json ? 0 : VMB_ENOMEM;
}

int vmb_crypto_parse_key_file(const char *json, size_t len, const char *what,
			      vmb_key_file *kf)
{
	vmb_json *j;
	const char *kdf, *hsalt, *hsealed;
	uint64_t ver;
	int r;

	memset(kf, 0, sizeof *kf);
	r = vmb_json_parse(json, len, what, &j);
	if (r)
		return r;
	r = VMB_ECORRUPT;
	if (vmb_json_u64(j, "version", &ver) || ver != 1 ||
	    !(kdf = vmb_json_str(j, "kdf"))) {
		vmb_error_set(VMB_ECORRUPT, "%s: not a vmbackup key file",
			      what);
		goto out;
	}
	if (strcmp(kdf, "none") == 0) {
		const char *hk = vmb_json_str(j, "key");
		if (!hk || vmb_unhex(hk, kf->key, sizeof kf->key)) {
			vmb_error_set(VMB_ECORRUPT, "%s: damaged key", what);
			goto out;
		}
		r = 0;
		goto out;
	}
	if (strcmp(kdf, "argon2id13") != 0 ||
	    vmb_json_u64(j, "opslimit", &kf->opslimit) ||
	    vmb_json_u64(j, "memlimit", &kf->memlimit) ||
	    !(hsalt = vmb_json_str(j, "salt")) ||
	    !(hsealed = vmb_json_str(j, "sealed_key")) ||
	    vmb_unhex(hsalt, kf->salt, sizeof kf->salt) ||
	    vmb_unhex(hsealed, kf->sealed, sizeof kf->sealed)) {
		vmb_error_set(VMB_ECORRUPT, "%s: damaged key file", what);
		goto out;
	}
	/* refuse parameters that would let a hostile key file exhaust us */
	if (kf->opslimit < crypto_pwhash_OPSLIMIT_MIN || kf->opslimit > 64 ||
	    kf->memlimit < crypto_pwhash_MEMLIMIT_MIN ||
	    kf->memlimit > (4ULL << 30)) {
		vmb_error_set(VMB_ECORRUPT,
			      "%s: key file has unreasonable KDF parameters",
			      what);
		goto out;
	}
	kf->encrypted = 1;
	r = 0;
out:
	vmb_json_free(j);
	if (r)
		sodium_memzero(kf, sizeof *kf);
	return r;
}

int vmb_crypto_unwrap_key(const char *json, size_t len, const char *pass,
			  size_t passlen, const char *what,
			  uint8_t master[VMB_MASTER_KEY_BYTES], int *encrypted)
{
	vmb_key_file kf;
	vmb_keys *k;
	int r;

	vmb_crypto_init();
	r = vmb_crypto_parse_key_file(json, len, what, &kf);
	if (r)
		return r;
	if (!kf.encrypted) {
		memcpy(master, kf.key, VMB_MASTER_KEY_BYTES);
		*encrypted = 0;
		goto out;
	}
	/* the key-encrypting key is as secret as the master key */
	k = vmb_crypto_keys_new();
	if (!k) {
		r = vmb_error_set(VMB_ENOMEM, "cannot allocate locked memory "
				  "for a key");
		goto out;
	}
	if (crypto_pwhash(k->enc, sizeof k->enc, pass, passlen, kf.salt,
			  kf.opslimit, (size_t)kf.memlimit,
			  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		r = vmb_error_set(VMB_ENOMEM,
				  "not enough memory for Argon2id");
	} else if (vmb_crypto_open(k, key_ad, sizeof key_ad - 1, kf.sealed,
				   sizeof kf.sealed, master) != 0) {
		r = vmb_error_set(VMB_EAUTH, "wrong passphrase");
	} else {
		*encrypted = 1;
	}
	vmb_crypto_keys_free(k);
out:
	sodium_memzero(&kf, sizeof kf);
	return r;
}
