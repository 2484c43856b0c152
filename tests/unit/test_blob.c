/*
 * lib/store/blob: the framing of every stored object.  Round trips with
 * encrypted and plain keys; every damaged, truncated, extended, rebound or
 * retyped blob is refused and never decodes to anything.
 */
#include <sodium.h>
#include "testutil.h"
#include "store/blob.h"
#include "common/util.h"

static vmb_keys kenc, kplain, kother;
static uint8_t bind1[32], bind2[32];

static uint8_t *encode(const vmb_keys *k, int type, const uint8_t *bind,
		       size_t bindlen, const void *p, size_t len, int level,
		       size_t *outlen)
{
	uint8_t *out = malloc(vmb_blob_bound(len));
	if (vmb_blob_encode(k, type, bind, bindlen, p, len, level, NULL, out,
			    outlen) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Decode a private copy (decode works in place). */
static int decode(const vmb_keys *k, int type, const uint8_t *bind,
		  size_t bindlen, const uint8_t *blob, size_t len, void *out,
		  size_t cap, size_t *outlen)
{
	uint8_t *copy = malloc(len ? len : 1);
	int rc;
	memcpy(copy, blob, len);
	rc = vmb_blob_decode(k, type, bind, bindlen, copy, len, NULL, out, cap,
			     outlen, "test blob");
	free(copy);
	return rc;
}

static void fill_text(uint8_t *p, size_t len)
{
	static const char *words[] = { "lorem ", "ipsum ", "dolor ", "sit ",
				       "amet, ", "consectetur\n", "vm ",
				       "backup " };
	size_t i = 0, w = 0;
	while (i < len) {
		const char *s = words[(w * 7 + w / 3) % 8];
		for (; *s && i < len; s++)
			p[i++] = (uint8_t)*s;
		w++;
	}
}

static void roundtrip(const vmb_keys *k, const char *label,
		      const uint8_t *data, size_t len, int level,
		      int expect_zstd)
{
	size_t n = 0, got = 0;
	uint8_t *blob = encode(k, VMB_BLOB_CHUNK, bind1, 32, data, len, level,
			       &n);
	uint8_t *out = malloc(len + 1);
	CHECK(blob != NULL);
	if (!blob) {
		free(out);
		return;
	}
	CHECK(n <= vmb_blob_bound(len));
	CHECK(memcmp(blob, "VMBK", 4) == 0);
	CHECK(blob[4] == VMB_BLOB_VERSION);
	CHECK(blob[5] == VMB_BLOB_CHUNK);
	CHECK(!!(blob[6] & VMB_BLOB_F_ZSTD) == expect_zstd);
	CHECK(!!(blob[6] & VMB_BLOB_F_SEALED) == k->encrypted);
	CHECK(!!(blob[6] & VMB_BLOB_F_MAC) == !k->encrypted);
	CHECK(vmb_blob_plain_len(blob, n) == len);
	if (expect_zstd) {
		CHECK(n < len / 2); /* compressible data really shrank */
	} else {
		size_t over = k->encrypted ? 16 + 24 + 16 : 16 + 16;
		CHECK(n == len + over); /* stored raw */
	}
	memset(out, 0xee, len + 1);
	int rc = decode(k, VMB_BLOB_CHUNK, bind1, 32, blob, n, out, len, &got);
	if (rc)
		fprintf(stderr, "%s: decode failed\n", label);
	CHECK_OK(rc);
	CHECK(got == len);
	CHECK(len == 0 || memcmp(out, data, len) == 0);
	CHECK(out[len] == 0xee); /* nothing written past the plaintext */
	/* a larger capacity works too */
	{
		uint8_t *big = malloc(len + 4096);
		CHECK_OK(decode(k, VMB_BLOB_CHUNK, bind1, 32, blob, n, big,
				len + 4096, &got));
		CHECK(got == len && (len == 0 || memcmp(big, data, len) == 0));
		free(big);
	}
	free(blob);
	free(out);
}

static void test_roundtrips(void)
{
	size_t sizes[] = { 0, 1, 17, 4096, 65536, 1 << 20 };
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		size_t len = sizes[s];
		uint8_t *rnd = malloc(len + 1), *txt = malloc(len + 1);
		test_random(rnd, len, len + 3);
		fill_text(txt, len);
		for (int e = 0; e < 2; e++) {
			const vmb_keys *k = e ? &kenc : &kplain;
			roundtrip(k, "random", rnd, len, 1, 0);
			roundtrip(k, "random level 3", rnd, len, 3, 0);
			/* text compresses once it is a few hundred bytes */
			roundtrip(k, "text", txt, len, 1, len >= 4096);
			roundtrip(k, "text stored", txt, len, 0, 0);
		}
		free(rnd);
		free(txt);
	}
	/* all zeros compress to almost nothing */
	{
		size_t n;
		uint8_t *z = calloc(1, 4 << 20);
		uint8_t *b = encode(&kenc, VMB_BLOB_CHUNK, bind1, 32, z, 4 << 20,
				    1, &n);
		CHECK(b && n < 4096);
		free(b);
		free(z);
	}
	/* a caller-supplied compression context gives the same plaintext */
	{
		uint8_t txt[20000], out[20000];
		uint8_t *blob = malloc(vmb_blob_bound(sizeof txt));
		size_t n, got;
		ZSTD_CCtx *c = ZSTD_createCCtx();
		ZSTD_DCtx *d = ZSTD_createDCtx();
		fill_text(txt, sizeof txt);
		CHECK_OK(vmb_blob_encode(&kenc, VMB_BLOB_INDEX, bind1, 10, txt,
					 sizeof txt, 5, c, blob, &n));
		CHECK(blob[6] & VMB_BLOB_F_ZSTD);
		CHECK_OK(vmb_blob_decode(&kenc, VMB_BLOB_INDEX, bind1, 10, blob,
					 n, d, out, sizeof out, &got, "t"));
		CHECK(got == sizeof txt && memcmp(out, txt, got) == 0);
		ZSTD_freeCCtx(c);
		ZSTD_freeDCtx(d);
		free(blob);
	}
	/* objects over the limit are refused */
	{
		uint8_t one = 0, out[64];
		size_t n = 0;
		CHECK_ERR(vmb_blob_encode(&kenc, VMB_BLOB_CHUNK, bind1, 32, &one,
					  (size_t)VMB_BLOB_MAX_PLAIN + 1, 1, NULL,
					  out, &n), VMB_EINVAL);
	}
	/* long bindings (object names) work: AD past the stack buffer */
	{
		uint8_t name[300], txt[5000], out[5000];
		size_t n, got;
		memset(name, 'n', sizeof name);
		fill_text(txt, sizeof txt);
		uint8_t *b = encode(&kenc, VMB_BLOB_MANIFEST, name, sizeof name,
				    txt, sizeof txt, 1, &n);
		CHECK_OK(decode(&kenc, VMB_BLOB_MANIFEST, name, sizeof name, b,
				n, out, sizeof out, &got));
		name[299] = 'm';
		CHECK_ERR(decode(&kenc, VMB_BLOB_MANIFEST, name, sizeof name, b,
				 n, out, sizeof out, &got), VMB_ECORRUPT);
		free(b);
	}
}

/* Confidentiality: the plaintext shows in a plain blob, not in a sealed
 * one. */
static void test_confidential(void)
{
	uint8_t data[8192];
	const char marker[] = "SECRET-MARKER-0123456789";
	size_t n;
	test_random(data, sizeof data, 99);
	memcpy(data + 1000, marker, sizeof marker - 1);
	uint8_t *b = encode(&kenc, VMB_BLOB_CHUNK, bind1, 32, data, sizeof data,
			    1, &n);
	CHECK(b && !memmem(b, n, marker, sizeof marker - 1));
	free(b);
	b = encode(&kplain, VMB_BLOB_CHUNK, bind1, 32, data, sizeof data, 0,
		   &n);
	CHECK(b && memmem(b, n, marker, sizeof marker - 1));
	free(b);
}

/* Every byte of the blob matters: flip each with several masks. */
static void flip_all(const vmb_keys *k, const char *label,
		     const uint8_t *data, size_t len, int level)
{
	size_t n, got;
	uint8_t *blob = encode(k, VMB_BLOB_CHUNK, bind1, 32, data, len, level,
			       &n);
	uint8_t *out = malloc(len + 1);
	static const uint8_t masks[] = { 0x01, 0x80, 0xff, 0x10 };
	size_t bad_accept = 0, bad_code = 0, tried = 0;
	if (!blob) {
		CHECK(0);
		free(out);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t m = 0; m < sizeof masks; m++) {
			uint8_t *copy = malloc(n);
			int rc;
			memcpy(copy, blob, n);
			copy[i] ^= masks[m];
			rc = vmb_blob_decode(k, VMB_BLOB_CHUNK, bind1, 32, copy,
					     n, NULL, out, len, &got, "t");
			tried++;
			if (rc == 0) {
				if (bad_accept++ < 5)
					fprintf(stderr, "%s: flip %02x at %zu "
						"accepted\n", label, masks[m], i);
			} else if (rc != (i == 4 ? VMB_ENOTSUP : VMB_ECORRUPT)) {
				if (bad_code++ < 5)
					fprintf(stderr, "%s: flip at %zu gave %d\n",
						label, i, rc);
			}
			free(copy);
		}
	}
	CHECK(tried == n * sizeof masks);
	CHECK(bad_accept == 0);
	CHECK(bad_code == 0);

	/* truncation at every length, and one byte too many */
	bad_accept = 0;
	for (size_t t = 0; t < n; t++)
		if (decode(k, VMB_BLOB_CHUNK, bind1, 32, blob, t, out, len,
			   &got) != VMB_ECORRUPT)
			bad_accept++;
	CHECK(bad_accept == 0);
	{
		uint8_t *ext = malloc(n + 1);
		memcpy(ext, blob, n);
		ext[n] = 0;
		CHECK_ERR(decode(k, VMB_BLOB_CHUNK, bind1, 32, ext, n + 1, out,
				 len, &got), VMB_ECORRUPT);
		free(ext);
	}
	/* wrong binding (another chunk id), shorter binding, no binding */
	CHECK_ERR(decode(k, VMB_BLOB_CHUNK, bind2, 32, blob, n, out, len, &got),
		  VMB_ECORRUPT);
	CHECK_ERR(decode(k, VMB_BLOB_CHUNK, bind1, 31, blob, n, out, len, &got),
		  VMB_ECORRUPT);
	CHECK_ERR(decode(k, VMB_BLOB_CHUNK, NULL, 0, blob, n, out, len, &got),
		  VMB_ECORRUPT);
	/* wrong type */
	CHECK_ERR(decode(k, VMB_BLOB_INDEX, bind1, 32, blob, n, out, len, &got),
		  VMB_ECORRUPT);
	CHECK_ERR(decode(k, VMB_BLOB_MANIFEST, bind1, 32, blob, n, out, len,
			 &got), VMB_ECORRUPT);
	/* output capacity one byte too small */
	if (len)
		CHECK_ERR(decode(k, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
				 len - 1, &got), VMB_ECORRUPT);
	/* another repository's key, or the other mode */
	CHECK_ERR(decode(&kother, VMB_BLOB_CHUNK, bind1, 32, blob, n, out, len,
			 &got), VMB_ECORRUPT);
	CHECK_ERR(decode(k->encrypted ? &kplain : &kenc, VMB_BLOB_CHUNK, bind1,
			 32, blob, n, out, len, &got), VMB_ECORRUPT);
	/* still fine untouched */
	CHECK_OK(decode(k, VMB_BLOB_CHUNK, bind1, 32, blob, n, out, len, &got));
	CHECK(got == len && memcmp(out, data, len) == 0);
	free(blob);
	free(out);
}

static void test_damage(void)
{
	uint8_t rnd[3000], txt[16384];
	test_random(rnd, sizeof rnd, 5);
	fill_text(txt, sizeof txt);
	flip_all(&kenc, "enc random", rnd, sizeof rnd, 1);
	flip_all(&kenc, "enc text", txt, sizeof txt, 1);
	flip_all(&kplain, "plain random", rnd, sizeof rnd, 1);
	flip_all(&kplain, "plain text", txt, sizeof txt, 1);
	flip_all(&kenc, "enc empty", rnd, 0, 1);
	flip_all(&kplain, "plain empty", rnd, 0, 1);
}

/*
 * Hostile but correctly MAC'd plain blobs (someone who has the key, or a
 * bug in the writer): bad zstd payloads must still be caught.
 */
static size_t forge(uint8_t *out, int flags, uint32_t plain,
		    const uint8_t *payload, uint32_t plen)
{
	uint8_t ad[16 + 32];
	memcpy(out, "VMBK", 4);
	out[4] = 1;
	out[5] = VMB_BLOB_CHUNK;
	out[6] = (uint8_t)flags;
	out[7] = 0;
	vmb_put_le32(out + 8, plain);
	vmb_put_le32(out + 12, plen);
	memcpy(out + 16, payload, plen);
	memcpy(ad, out, 16);
	memcpy(ad + 16, bind1, 32);
	vmb_crypto_mac(&kplain, ad, sizeof ad, out + 16, plen, out + 16 + plen);
	return 16 + plen + 16;
}

static void test_forged(void)
{
	uint8_t txt[10000], z[20000], blob[40000], out[20000];
	size_t zn, n, got;
	fill_text(txt, sizeof txt);
	zn = ZSTD_compress(z, sizeof z, txt, sizeof txt, 1);
	CHECK(!ZSTD_isError(zn));

	/* sanity: a forged, honest blob decodes */
	n = forge(blob, VMB_BLOB_F_MAC | VMB_BLOB_F_ZSTD, sizeof txt, z,
		  (uint32_t)zn);
	CHECK_OK(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
			sizeof out, &got));
	CHECK(got == sizeof txt && memcmp(out, txt, got) == 0);
	/* the frame holds more than the header claims */
	n = forge(blob, VMB_BLOB_F_MAC | VMB_BLOB_F_ZSTD, sizeof txt - 1, z,
		  (uint32_t)zn);
	CHECK_ERR(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
			 sizeof out, &got), VMB_ECORRUPT);
	/* ... or less */
	n = forge(blob, VMB_BLOB_F_MAC | VMB_BLOB_F_ZSTD, sizeof txt + 1, z,
		  (uint32_t)zn);
	CHECK_ERR(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
			 sizeof out, &got), VMB_ECORRUPT);
	/* a truncated frame */
	n = forge(blob, VMB_BLOB_F_MAC | VMB_BLOB_F_ZSTD, sizeof txt, z,
		  (uint32_t)zn - 5);
	CHECK_ERR(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
			 sizeof out, &got), VMB_ECORRUPT);
	/* garbage marked as zstd */
	{
		uint8_t g[500];
		test_random(g, sizeof g, 77);
		n = forge(blob, VMB_BLOB_F_MAC | VMB_BLOB_F_ZSTD, 1000, g,
			  sizeof g);
		CHECK_ERR(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n,
				 out, sizeof out, &got), VMB_ECORRUPT);
	}
	/* raw payload whose length disagrees with the plaintext length */
	n = forge(blob, VMB_BLOB_F_MAC, 100, txt, 99);
	CHECK_ERR(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
			 sizeof out, &got), VMB_ECORRUPT);
	/* unknown flag bits, reserved byte, both SEALED and MAC */
	n = forge(blob, VMB_BLOB_F_MAC | 8, 100, txt, 100);
	CHECK_ERR(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
			 sizeof out, &got), VMB_ECORRUPT);
	n = forge(blob, VMB_BLOB_F_MAC | VMB_BLOB_F_SEALED, 100, txt, 100);
	CHECK_ERR(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
			 sizeof out, &got), VMB_ECORRUPT);
	n = forge(blob, 0, 100, txt, 100);
	CHECK_ERR(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
			 sizeof out, &got), VMB_ECORRUPT);
	/* an absurd plaintext length in a header */
	n = forge(blob, VMB_BLOB_F_MAC | VMB_BLOB_F_ZSTD, 0xffffffffu, z,
		  (uint32_t)zn);
	CHECK(vmb_blob_plain_len(blob, n) == 0xffffffffu);
	CHECK_ERR(decode(&kplain, VMB_BLOB_CHUNK, bind1, 32, blob, n, out,
			 sizeof out, &got), VMB_ECORRUPT);
	/* vmb_blob_plain_len on junk */
	CHECK(vmb_blob_plain_len((const uint8_t *)"VMBK", 4) == 0);
	CHECK(vmb_blob_plain_len((const uint8_t *)"XMBK0123456789abcdef", 20)
	      == 0);
}

int main(void)
{
	uint8_t m1[32], m2[32];
	vmb_crypto_init();
	test_random(m1, 32, 1);
	test_random(m2, 32, 2);
	vmb_crypto_derive(m1, 1, &kenc);
	vmb_crypto_derive(m1, 0, &kplain);
	vmb_crypto_derive(m2, 0, &kother);
	kother.encrypted = 0;
	test_random(bind1, 32, 10);
	memcpy(bind2, bind1, 32);
	bind2[31] ^= 1;
	test_roundtrips();
	test_confidential();
	test_damage();
	test_forged();
	/* kother as an encrypted key too */
	vmb_crypto_derive(m2, 1, &kother);
	{
		uint8_t d[5000];
		test_random(d, sizeof d, 3);
		flip_all(&kenc, "enc vs other enc", d, sizeof d, 1);
	}
	/* AES-256-GCM blobs: the same frame, byte 7 = 1, every tamper
	 * found, and never opened as XChaCha20 (or the reverse) */
	if (vmb_crypto_aesgcm_available()) {
		vmb_keys kaes = kenc;
		uint8_t d[70000], back[70000], *b;
		size_t bl, ol;
		kaes.cipher = VMB_CIPHER_AESGCM;
		fill_text(d, sizeof d);
		roundtrip(&kaes, "aes-gcm text", d, sizeof d, 1, 1);
		test_random(d, 5000, 4);
		flip_all(&kaes, "aes-gcm", d, 5000, 1);
		b = encode(&kaes, VMB_BLOB_CHUNK, bind1, 32, d, 5000, 1, &bl);
		CHECK(b && b[7] == 1);
		CHECK_ERR(decode(&kenc, VMB_BLOB_CHUNK, bind1, 32, b, bl, back,
				 sizeof back, &ol), VMB_ECORRUPT);
		CHECK(strstr(vmb_error_message(), "sealed with aes256gcm"));
		free(b);
		b = encode(&kenc, VMB_BLOB_CHUNK, bind1, 32, d, 5000, 1, &bl);
		CHECK(b && b[7] == 0);
		CHECK_ERR(decode(&kaes, VMB_BLOB_CHUNK, bind1, 32, b, bl, back,
				 sizeof back, &ol), VMB_ECORRUPT);
		/* the header's cipher byte is authenticated too */
		b[7] = 1;
		CHECK_ERR(decode(&kaes, VMB_BLOB_CHUNK, bind1, 32, b, bl, back,
				 sizeof back, &ol), VMB_ECORRUPT);
		free(b);
	} else {
		printf("# no AES-NI/PCLMUL: AES-GCM blob tests skipped\n");
	}
	return test_done();
}
