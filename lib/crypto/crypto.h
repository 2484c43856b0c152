/* Internal: keys, chunk ids, sealing and key wrapping (libsodium only). */
#ifndef VMB_LIB_CRYPTO_CRYPTO_H
#define VMB_LIB_CRYPTO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define VMB_MASTER_KEY_BYTES 32
#define VMB_ID_BYTES 32
#define VMB_FP_SECRET_BYTES 192
#define VMB_SEAL_NONCE_BYTES 24
#define VMB_SEAL_TAG_BYTES 16
#define VMB_MAC_BYTES 16

/* Sealing ciphers; the value is byte 7 of a sealed blob's header. */
#define VMB_CIPHER_XCHACHA 0  /* XChaCha20-Poly1305 (the default before) */
#define VMB_CIPHER_AESGCM 1   /* AES-256-GCM under a per-object subkey */

/* Per-object AES-256-GCM subkey: BLAKE2b-256 keyed with the encryption
 * key, salt = the first 16 bytes of the object's 24-byte nonce field,
 * personalisation "vmb-aes256gcm-v1"; the GCM nonce is the field's last
 * 8 bytes followed by 4 zero bytes (docs/repository-format.md). */
#define VMB_AESGCM_SALT_BYTES 16

/*
 * Every copy of key material lives in one of these, allocated with
 * vmb_crypto_keys_new(): libsodium's guarded heap (mlock()ed, excluded
 * from core dumps with MADV_DONTDUMP, wiped by vmb_crypto_keys_free()).
 * Never on the stack or in plain malloc()ed memory, never in a log.
 */
typedef struct vmb_keys {
	int encrypted;                      /* seal blobs with enc */
	int cipher;                         /* VMB_CIPHER_* */
	uint8_t master[VMB_MASTER_KEY_BYTES]; /* for key management */
	uint8_t enc[32];                    /* sealing key (both ciphers) */
	uint8_t id[32];                     /* keyed BLAKE2b for chunk ids */
	uint8_t mac[32];                    /* keyed BLAKE2b MAC (plain repos) */
	uint8_t fp[VMB_FP_SECRET_BYTES];    /* xxh3 secret */
} vmb_keys;

/* sodium_init() once; returns 0 or VMB_EGENERIC. */
int vmb_crypto_init(void);

/* A zeroed vmb_keys in locked memory (see above), or NULL. */
vmb_keys *vmb_crypto_keys_new(void);
/* Wipe and free; accepts NULL. */
void vmb_crypto_keys_free(vmb_keys *k);

/* Fill @out with random bytes. */
void vmb_crypto_random(void *out, size_t len);

/* Copy @master into k->master (it may be k->master already) and derive
 * the subkeys from it; k->cipher is reset to XChaCha20. */
void vmb_crypto_derive(const uint8_t master[VMB_MASTER_KEY_BYTES],
		       int encrypted, vmb_keys *k);

/* Chunk id: keyed BLAKE2b-256 of the plaintext. */
void vmb_crypto_chunk_id(const vmb_keys *k, const void *data, size_t len,
			 uint8_t id[VMB_ID_BYTES]);

/* Fingerprint: XXH3-128 with the per-repository secret. */
void vmb_crypto_fingerprint(const vmb_keys *k, const void *data, size_t len,
			    uint8_t fp[16]);
/* The same in xxhash's AVX2 code path (fp_avx2.c); only where the CPU
 * has AVX2 (vmb_crypto_fingerprint decides). */
void vmb_crypto__fingerprint_avx2(const uint8_t *secret, size_t secret_len,
				  const void *data, size_t len,
				  uint8_t fp[16]);

/* 1 if AES-256-GCM can run here (AES-NI and PCLMUL), and the test hook
 * $VMB_TEST_NO_AESGCM does not force it off. */
int vmb_crypto_aesgcm_available(void);

/* "xchacha20poly1305" or "aes256gcm". */
const char *vmb_crypto_cipher_name(int cipher);

/* The AES-256-GCM subkey and 12-byte nonce of one object, from the
 * encryption key and its 24-byte nonce field. */
void vmb_crypto_aesgcm_subkey(const uint8_t enc[32],
			      const uint8_t field[VMB_SEAL_NONCE_BYTES],
			      uint8_t subkey[32], uint8_t nonce[12]);

/* Seal with k->cipher; in may equal out + VMB_SEAL_NONCE_BYTES (in
 * place): out gets nonce || ciphertext || tag
 * (len + VMB_SEAL_NONCE_BYTES + VMB_SEAL_TAG_BYTES bytes). */
void vmb_crypto_seal(const vmb_keys *k, const uint8_t *ad, size_t adlen,
		     const uint8_t *in, size_t len, uint8_t *out);
/* Open: in is nonce || ciphertext || tag; out may be
 * in + VMB_SEAL_NONCE_BYTES (in place).  Returns 0 or VMB_EAUTH. */
int vmb_crypto_open(const vmb_keys *k, const uint8_t *ad, size_t adlen,
		    const uint8_t *in, size_t inlen, uint8_t *out);

/* Keyed MAC (unencrypted repositories). */
void vmb_crypto_mac(const vmb_keys *k, const uint8_t *ad, size_t adlen,
		    const uint8_t *data, size_t len,
		    uint8_t mac[VMB_MAC_BYTES]);

/* Key files.  Argon2id parameters: opslimit/memlimit of 0 pick defaults
 * (or $VMB_KDF_OPSLIMIT / $VMB_KDF_MEMLIMIT for tests). */
int vmb_crypto_wrap_key(const uint8_t master[VMB_MASTER_KEY_BYTES],
			const char *pass, size_t passlen, int encrypted,
			char **json);
/* A key file's members (docs/repository-format.md, "Keys"). */
typedef struct vmb_key_file {
	int encrypted;               /* 0: kdf "none", the key is in @key */
	uint64_t opslimit, memlimit; /* Argon2id, within the caps */
	uint8_t salt[16];
	uint8_t sealed[VMB_SEAL_NONCE_BYTES + VMB_MASTER_KEY_BYTES +
		       VMB_SEAL_TAG_BYTES];
	uint8_t key[VMB_MASTER_KEY_BYTES];
} vmb_key_file;

/* Parse a key file (hostile input): VMB_ECORRUPT naming @what unless
 * every member is there, well formed, and the KDF parameters are within
 * the caps (opslimit <= 64, memlimit <= 4 GiB).  The caller wipes @kf. */
int vmb_crypto_parse_key_file(const char *json, size_t len, const char *what,
			      vmb_key_file *kf);

/* VMB_EAUTH for a wrong passphrase, VMB_ECORRUPT for a damaged file.
 * @master should be in a vmb_keys (locked memory). */
int vmb_crypto_unwrap_key(const char *json, size_t len, const char *pass,
			  size_t passlen, const char *what,
			  uint8_t master[VMB_MASTER_KEY_BYTES], int *encrypted);

#endif
