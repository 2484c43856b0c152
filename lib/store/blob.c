/* Blob framing: compress, seal or MAC, and the reverse. */
#include <stdlib.h>
#include <string.h>
#include "common/util.h"
#include <sodium.h>
#include "blob.h"

static const uint8_t magic[4] = { 'V', 'M', 'B', 'K' };

size_t vmb_blob_bound(size_t len)
{
	return VMB_BLOB_HEADER_BYTES + VMB_SEAL_NONCE_BYTES +
	       ZSTD_compressBound(len) + VMB_SEAL_TAG_BYTES + VMB_MAC_BYTES;
}

/* AD = header || bind, in a small stack buffer when possible. */
static uint8_t *make_ad(const uint8_t *hdr, const uint8_t *bind,
			size_t bindlen, uint8_t *stack, size_t stacklen,
			size_t *adlen)
{
	uint8_t *ad = stack;
	*adlen = VMB_BLOB_HEADER_BYTES + bindlen;
	if (*adlen > stacklen && !(ad = malloc(*adlen)))
		return NULL;
	memcpy(ad, hdr, VMB_BLOB_HEADER_BYTES);
	if (bindlen)
		memcpy(ad + VMB_BLOB_HEADER_BYTES, bind, bindlen);
	return ad;
}

/* zstd hash table size for levels 1-2: 17 by default; VMB_ZSTD_HASHLOG
 * overrides it for benchmarks (0: zstd's own choice for the level). */
static int blob_hashlog(void)
{
	static int v = -1;
	if (v < 0) {
		const char *e = getenv("VMB_ZSTD_HASHLOG");
		int x = e ? (int)strtol(e, NULL, 10) : 17;
		v = (x == 0 || (x >= 10 && x <= 24)) ? x : 17;
	}
	return v;
}

int vmb_blob_compress(ZSTD_CCtx *cctx, int level, const void *plain,
		      size_t len, uint8_t *dst, size_t *n)
{
	ZSTD_CCtx *own = NULL;
	size_t z;

	*n = 0;
	if (level <= 0 || len == 0)
		return 0;
	if (!cctx && !(cctx = own = ZSTD_createCCtx()))
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	/* level 1 with a 2^17-entry hash table: 2% smaller output
	 * for ~15% more compression time (docs/benchmarks.md) */
	ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_hashLog,
			       level <= 2 ? blob_hashlog() : 0);
	z = ZSTD_compress2(cctx, dst, ZSTD_compressBound(len), plain, len);
	ZSTD_freeCCtx(own);
	if (!ZSTD_isError(z) && z < len)
		*n = z;
	return 0;
}

/* Frame and seal (or MAC) the payload already at its place in @out. */
static int blob_seal(const vmb_keys *k, int type, const uint8_t *bind,
		     size_t bindlen, size_t len, size_t plen, int flags,
		     uint8_t *out, size_t *outlen)
{
	uint8_t *payload, adstack[128], *ad;
	size_t adlen;

	payload = out + VMB_BLOB_HEADER_BYTES +
		  (k->encrypted ? VMB_SEAL_NONCE_BYTES : 0);
	flags |= k->encrypted ? VMB_BLOB_F_SEALED : VMB_BLOB_F_MAC;
	memcpy(out, magic, 4);
	out[4] = VMB_BLOB_VERSION;
	out[5] = (uint8_t)type;
	out[6] = (uint8_t)flags;
	/* the cipher is authenticated with the rest of the header */
	out[7] = k->encrypted ? (uint8_t)k->cipher : 0;
	vmb_put_le32(out + 8, (uint32_t)len);
	vmb_put_le32(out + 12, (uint32_t)plen);
	ad = make_ad(out, bind, bindlen, adstack, sizeof adstack, &adlen);
	if (!ad)
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	if (k->encrypted) {
		uint8_t *nonce = out + VMB_BLOB_HEADER_BYTES;
		/* in-place: the nonce sits right before the payload */
		vmb_crypto_seal(k, ad, adlen, payload, plen, nonce);
		*outlen = VMB_BLOB_HEADER_BYTES + VMB_SEAL_NONCE_BYTES + plen +
			  VMB_SEAL_TAG_BYTES;
	} else {
		vmb_crypto_mac(k, ad, adlen, payload, plen, payload + plen);
		*outlen = VMB_BLOB_HEADER_BYTES + plen + VMB_MAC_BYTES;
	}
	if (ad != adstack)
		free(ad);
	return 0;
}

int vmb_blob_encode(const vmb_keys *k, int type, const uint8_t *bind,
		    size_t bindlen, const void *plain, size_t len, int level,
		    ZSTD_CCtx *cctx, uint8_t *out, size_t *outlen)
{
	uint8_t *payload;
	size_t n;
	int rc;

	if (len > VMB_BLOB_MAX_PLAIN)
		return vmb_error_set(VMB_EINVAL, "object too large (%zu bytes)",
				     len);
	payload = out + VMB_BLOB_HEADER_BYTES +
		  (k->encrypted ? VMB_SEAL_NONCE_BYTES : 0);
	rc = vmb_blob_compress(cctx, level, plain, len, payload, &n);
	if (rc)
		return rc;
	if (!n && len)
		memcpy(payload, plain, len);
	return blob_seal(k, type, bind, bindlen, len, n ? n : len,
			 n ? VMB_BLOB_F_ZSTD : 0, out, outlen);
}

int vmb_blob_encode_compressed(const vmb_keys *k, int type,
			       const uint8_t *bind, size_t bindlen,
			       const void *plain, size_t len,
			       const void *zpayload, size_t zlen, uint8_t *out,
			       size_t *outlen)
{
	uint8_t *payload;

	if (len > VMB_BLOB_MAX_PLAIN || (zlen && zlen >= len))
		return vmb_error_set(VMB_EINVAL, "bad compressed payload (%zu "
				     "of %zu bytes)", zlen, len);
	payload = out + VMB_BLOB_HEADER_BYTES +
		  (k->encrypted ? VMB_SEAL_NONCE_BYTES : 0);
	if (zlen)
		memcpy(payload, zpayload, zlen);
	else if (len)
		memcpy(payload, plain, len);
	return blob_seal(k, type, bind, bindlen, len, zlen ? zlen : len,
			 zlen ? VMB_BLOB_F_ZSTD : 0, out, outlen);
}

size_t vmb_blob_plain_len(const uint8_t *blob, size_t bloblen)
{
	if (bloblen < VMB_BLOB_HEADER_BYTES || memcmp(blob, magic, 4) != 0)
		return 0;
	return vmb_le32(blob + 8);
}

int vmb_blob_decode(const vmb_keys *k, int type, const uint8_t *bind,
		    size_t bindlen, uint8_t *blob, size_t bloblen,
		    ZSTD_DCtx *dctx, void *out, size_t cap, size_t *outlen,
		    const char *what)
{
	uint8_t adstack[128], *ad, *payload;
	size_t adlen, plain, plen, expect;
	int flags, r = 0;

	if (bloblen < VMB_BLOB_HEADER_BYTES || memcmp(blob, magic, 4) != 0)
		return vmb_error_set(VMB_ECORRUPT, "%s: not a vmbackup object "
				     "(bad magic or truncated)", what);
	if (blob[4] != VMB_BLOB_VERSION)
		return vmb_error_set(VMB_ENOTSUP, "%s: object format version %u"
				     " is not supported", what, blob[4]);
	if (blob[5] != type)
		return vmb_error_set(VMB_ECORRUPT, "%s: wrong object type %u",
				     what, blob[5]);
	flags = blob[6];
	plain = vmb_le32(blob + 8);
	plen = vmb_le32(blob + 12);
	if (blob[7] != (k->encrypted ? k->cipher : 0)) {
		if (k->encrypted && blob[7] <= VMB_CIPHER_AESGCM)
			return vmb_error_set(VMB_ECORRUPT, "%s: sealed with "
					     "%s, but the repository uses %s",
					     what, vmb_crypto_cipher_name(
							   blob[7]),
					     vmb_crypto_cipher_name(k->cipher));
		return vmb_error_set(VMB_ECORRUPT, "%s: bad object flags", what);
	}
	if ((flags & ~7) ||
	    !!(flags & VMB_BLOB_F_SEALED) != !!k->encrypted ||
	    !!(flags & VMB_BLOB_F_MAC) == !!k->encrypted)
		return vmb_error_set(VMB_ECORRUPT, "%s: bad object flags", what);
	if (plain > cap || plain > VMB_BLOB_MAX_PLAIN ||
	    (!(flags & VMB_BLOB_F_ZSTD) && plen != plain))
		return vmb_error_set(VMB_ECORRUPT, "%s: bad object length",
				     what);
	expect = VMB_BLOB_HEADER_BYTES + plen +
		 (k->encrypted ? VMB_SEAL_NONCE_BYTES + VMB_SEAL_TAG_BYTES
			       : VMB_MAC_BYTES);
	if (bloblen != expect)
		return vmb_error_set(VMB_ECORRUPT, "%s: object is %s (%zu bytes,"
				     " expected %zu)", what,
				     bloblen < expect ? "truncated" : "too long",
				     bloblen, expect);
	ad = make_ad(blob, bind, bindlen, adstack, sizeof adstack, &adlen);
	if (!ad)
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	if (k->encrypted) {
		/* a compressed payload is decrypted in place, then
		 * decompressed into out; a stored one straight into out */
		payload = (flags & VMB_BLOB_F_ZSTD)
				  ? blob + VMB_BLOB_HEADER_BYTES +
					    VMB_SEAL_NONCE_BYTES
				  : out;
		if (vmb_crypto_open(k, ad, adlen, blob + VMB_BLOB_HEADER_BYTES,
				    bloblen - VMB_BLOB_HEADER_BYTES, payload))
			r = vmb_error_set(VMB_ECORRUPT, "%s: authentication "
					  "failed (damaged or tampered)", what);
	} else {
		uint8_t mac[VMB_MAC_BYTES];
		payload = blob + VMB_BLOB_HEADER_BYTES;
		vmb_crypto_mac(k, ad, adlen, payload, plen, mac);
		if (sodium_memcmp(mac, payload + plen, VMB_MAC_BYTES))
			r = vmb_error_set(VMB_ECORRUPT, "%s: checksum mismatch "
					  "(damaged or tampered)", what);
	}
	if (ad != adstack)
		free(ad);
	if (r)
		return r;
	if (flags & VMB_BLOB_F_ZSTD) {
		size_t n;
		ZSTD_DCtx *own = NULL;
		if (!dctx && !(dctx = own = ZSTD_createDCtx()))
			return vmb_error_set(VMB_ENOMEM, "out of memory");
		n = ZSTD_decompressDCtx(dctx, out, plain, payload, plen);
		ZSTD_freeDCtx(own);
		if (ZSTD_isError(n) || n != plain)
			return vmb_error_set(VMB_ECORRUPT, "%s: cannot "
					     "decompress", what);
	} else if (plain && payload != out) {
		memcpy(out, payload, plain);
	}
	*outlen = plain;
	return 0;
}
