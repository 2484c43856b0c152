/*
 * Fuzz target: the object framing decoder (lib/store/blob.c) with fixed
 * keys derived from a constant master key (see fuzz/corpora/blob/).
 *
 * Input: one mode byte, then the object.
 *   mode & 3 == 0: decode the bytes as they are, encrypted key
 *   mode & 3 == 1: decode the bytes as they are, plain (MAC) key
 *   mode & 3 == 2: the bytes are header || payload; append the correct MAC
 *                  first, so the fuzzer gets past authentication and
 *                  reaches the length checks and zstd
 *   mode & 3 == 3: the bytes are header || payload; seal the payload with
 *                  the encrypted key first (same reason)
 *   (mode >> 2) & 3: object type - 1 (chunk, index, manifest, meta)
 * Anything that decodes must have the length its header claims.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup/common.h"
#include "store/blob.h"

#define CAP (4u << 20)

static vmb_keys kenc, kplain;
static uint8_t *out;
static const uint8_t bind[32] = "fuzz-binding-0123456789abcdefgh";

static void setup(void)
{
	uint8_t master[VMB_MASTER_KEY_BYTES];
	for (int i = 0; i < VMB_MASTER_KEY_BYTES; i++)
		master[i] = (uint8_t)i;
	vmb_crypto_init();
	vmb_crypto_derive(master, 1, &kenc);
	vmb_crypto_derive(master, 0, &kplain);
	out = malloc(CAP);
	if (!out)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const vmb_keys *k;
	uint8_t *blob;
	size_t bloblen, got = 0;
	int mode, type, rc;

	if (!out)
		setup();
	if (size < 1)
		return 0;
	mode = data[0] & 3;
	type = ((data[0] >> 2) & 3) + 1;
	data++;
	size--;
	if (size > CAP)
		return 0;
	blob = malloc(size + VMB_SEAL_NONCE_BYTES + VMB_SEAL_TAG_BYTES +
		      VMB_MAC_BYTES + 1);
	if (!blob)
		return 0;
	k = (mode == 0 || mode == 3) ? &kenc : &kplain;
	if (mode < 2 || size < VMB_BLOB_HEADER_BYTES) {
		memcpy(blob, data, size);
		bloblen = size;
	} else {
		uint8_t ad[VMB_BLOB_HEADER_BYTES + sizeof bind];
		size_t plen = size - VMB_BLOB_HEADER_BYTES;
		memcpy(ad, data, VMB_BLOB_HEADER_BYTES);
		memcpy(ad + VMB_BLOB_HEADER_BYTES, bind, sizeof bind);
		memcpy(blob, data, VMB_BLOB_HEADER_BYTES);
		if (mode == 2) {
			memcpy(blob + VMB_BLOB_HEADER_BYTES, data +
			       VMB_BLOB_HEADER_BYTES, plen);
			vmb_crypto_mac(k, ad, sizeof ad,
				       blob + VMB_BLOB_HEADER_BYTES, plen,
				       blob + VMB_BLOB_HEADER_BYTES + plen);
			bloblen = size + VMB_MAC_BYTES;
		} else {
			vmb_crypto_seal(k, ad, sizeof ad,
					data + VMB_BLOB_HEADER_BYTES, plen,
					blob + VMB_BLOB_HEADER_BYTES);
			bloblen = size + VMB_SEAL_NONCE_BYTES +
				  VMB_SEAL_TAG_BYTES;
		}
	}
	size_t claimed = vmb_blob_plain_len(blob, bloblen);
	rc = vmb_blob_decode(k, type, bind, sizeof bind, blob, bloblen, NULL,
			     out, CAP, &got, "fuzz");
	if (rc == 0 && (got != claimed || got > CAP))
		abort();
	if (rc != 0 && rc != VMB_ECORRUPT && rc != VMB_ENOTSUP &&
	    rc != VMB_ENOMEM)
		abort();
	free(blob);
	return 0;
}
