/* The page and chunk fingerprint (XXH3-128 with the per-repository
 * secret) in xxhash's AVX2 code path.  This file alone is compiled with
 * -mavx2 (lib/CMakeLists.txt, x86-64 with GCC or Clang);
 * vmb_crypto_fingerprint() calls it only where the CPU has AVX2.  XXH3
 * gives the same value in every code path, so fingerprints written by
 * one build match another's; the AVX2 path hashes 4 KiB pages about 2x
 * faster than the SSE2 one (page maps of a backup, docs/cbt.md). */
#if defined(VMB_HAVE_FP_AVX2) && defined(__AVX2__)
#include <string.h>
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>
#include "crypto.h"

void vmb_crypto__fingerprint_avx2(const uint8_t *secret, size_t secret_len,
				  const void *data, size_t len,
				  uint8_t fp[16])
{
	XXH128_hash_t h = XXH3_128bits_withSecret(data, len, secret,
						  secret_len);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, h);
	memcpy(fp, c.digest, 16);
}
#else
typedef int vmb_fp_avx2_unused; /* ISO C: no empty translation unit */
#endif
