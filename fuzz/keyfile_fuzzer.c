/*
 * Fuzz target: key files (keys/NAME of a repository, the key block of a
 * format-2 archive), lib/crypto/crypto.c.  Anyone with write access to
 * the target can write one.  An accepted file must be within the KDF caps;
 * when the caps are small enough to run here, unwrapping it with a wrong
 * passphrase must fail as a wrong passphrase, never succeed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "crypto/crypto.h"
#include "vmbackup/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmb_key_file kf;
	vmb_keys *k;
	int enc = -1, rc;

	if (size > (64u << 10))
		return 0;
	rc = vmb_crypto_parse_key_file((const char *)data, size, "fuzz", &kf);
	if (rc) {
		if (rc != VMB_ECORRUPT)
			abort();
		vmb_error_clear();
		return 0;
	}
	if (kf.encrypted && (kf.opslimit > 64 || kf.memlimit > (4ULL << 30) ||
			     kf.opslimit < 1 || kf.memlimit < 8192))
		abort();
	/* Argon2id itself only with parameters that take milliseconds */
	if (kf.encrypted && (kf.opslimit > 2 || kf.memlimit > (1u << 20))) {
		sodium_memzero(&kf, sizeof kf);
		return 0;
	}
	k = vmb_crypto_keys_new();
	if (!k)
		abort();
	rc = vmb_crypto_unwrap_key((const char *)data, size, "fuzz", 4,
				   "fuzz", k->master, &enc);
	if (kf.encrypted ? rc != VMB_EAUTH : (rc != 0 || enc != 0 ||
		memcmp(k->master, kf.key, sizeof kf.key) != 0))
		abort();
	vmb_crypto_keys_free(k);
	sodium_memzero(&kf, sizeof kf);
	vmb_error_clear();
	return 0;
}
