/*
 * Internal: the framing of every object a repository stores (chunks,
 * indexes, manifests).  See docs/repository-format.md.
 *
 *   0  4  magic "VMBK"
 *   4  1  format version (1)
 *   5  1  type (VMB_BLOB_*)
 *   6  1  flags: 1 = zstd, 2 = sealed, 4 = MAC
 *   7  1  cipher when sealed (VMB_CIPHER_*: 0 XChaCha20-Poly1305,
 *           1 AES-256-GCM), else 0
 *   8  4  plaintext length (LE)
 *  12  4  payload length (LE): bytes after compression, before sealing
 *  16     sealed: nonce[24] | ciphertext[payload] | tag[16]
 *         else:   payload | mac[16] (keyed BLAKE2b-128)
 * Associated data for the seal or MAC: the 16-byte header, then the
 * object's binding (chunk id, or the object name for other blobs), so a
 * blob cannot be swapped for another or have its header altered.
 */
#ifndef VMB_LIB_STORE_BLOB_H
#define VMB_LIB_STORE_BLOB_H

#include <stddef.h>
#include <stdint.h>
#include <zstd.h>
#include "crypto/crypto.h"

#define VMB_BLOB_HEADER_BYTES 16
#define VMB_BLOB_VERSION 1
enum { VMB_BLOB_CHUNK = 1, VMB_BLOB_INDEX = 2, VMB_BLOB_MANIFEST = 3,
       VMB_BLOB_META = 4 };
#define VMB_BLOB_F_ZSTD 1
#define VMB_BLOB_F_SEALED 2
#define VMB_BLOB_F_MAC 4
#define VMB_BLOB_MAX_PLAIN (1u << 30)

/* Worst-case encoded size for @len plaintext bytes. */
size_t vmb_blob_bound(size_t len);

/*
 * Encode @plain into @out (capacity vmb_blob_bound(len)).  @cctx may be
 * NULL (one is made); @level is the zstd level (0 = store raw).
 */
int vmb_blob_encode(const vmb_keys *k, int type, const uint8_t *bind,
		    size_t bindlen, const void *plain, size_t len, int level,
		    ZSTD_CCtx *cctx, uint8_t *out, size_t *outlen);

/*
 * The compression step of vmb_blob_encode() alone (no key needed): zstd at
 * @level into @dst (capacity ZSTD_compressBound(len)).  *n is the
 * compressed size, or 0 when the object is stored raw (level 0, empty, or
 * zstd did not make it smaller).  @cctx may be NULL.
 */
int vmb_blob_compress(ZSTD_CCtx *cctx, int level, const void *plain,
		      size_t len, uint8_t *dst, size_t *n);

/*
 * vmb_blob_encode() for a payload vmb_blob_compress() already made from
 * @plain (@zpayload, @zlen bytes; @zlen 0: stored raw from @plain): the
 * same blob, byte for byte but for the random nonce.
 */
int vmb_blob_encode_compressed(const vmb_keys *k, int type,
			       const uint8_t *bind, size_t bindlen,
			       const void *plain, size_t len,
			       const void *zpayload, size_t zlen, uint8_t *out,
			       size_t *outlen);

/*
 * Decode @blob (modified in place) into @out (capacity @cap, not
 * overlapping @blob).  Checks the frame, authenticates, decompresses; the
 * plaintext length must be <= cap.  On failure @out may have been written.
 * @what names the object in messages.  VMB_ECORRUPT on any damage.
 */
int vmb_blob_decode(const vmb_keys *k, int type, const uint8_t *bind,
		    size_t bindlen, uint8_t *blob, size_t bloblen,
		    ZSTD_DCtx *dctx, void *out, size_t cap, size_t *outlen,
		    const char *what);

/* Read just the plaintext length from a header (0 on a bad header). */
size_t vmb_blob_plain_len(const uint8_t *blob, size_t bloblen);

#endif
