/*
 * Fuzz target: the repository's `config` (lib/repo/repo.c), plaintext
 * JSON that anyone with write access to the target can change.  An
 * accepted config must give a valid id, a chunk size the rest of the
 * library accepts, a known cipher and a zstd level it can use.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "repo/repo_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmb_repo_config c;
	int rc = vmb_repo__parse_config((const char *)data, size, "fuzz", &c);
	if (rc) {
		if (rc != VMB_ECORRUPT && rc != VMB_ENOTSUP)
			abort();
		vmb_error_clear();
		return 0;
	}
	if (!vmb_repo__valid_id(c.id) || c.chunk_size < VMB_MIN_CHUNK_SIZE ||
	    c.chunk_size > VMB_MAX_CHUNK_SIZE ||
	    (c.chunk_size & (c.chunk_size - 1)) || c.zstd_level < 0 ||
	    c.zstd_level > 19 ||
	    (c.cipher != VMB_CIPHER_XCHACHA && c.cipher != VMB_CIPHER_AESGCM) ||
	    (c.encrypted != 0 && c.encrypted != 1))
		abort();
	return 0;
}
