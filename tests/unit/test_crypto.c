/*
 * lib/crypto: key wrapping, subkey derivation, chunk ids, fingerprints,
 * sealing and MACs.  Argon2id runs with the cheapest parameters
 * (VMB_KDF_OPSLIMIT / VMB_KDF_MEMLIMIT) so the test stays fast.
 */
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
/* xxhash's code path of this file's flags (no -mavx2): the reference
 * for the library's fingerprint, which may take the AVX2 path */
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "testutil.h"
#include "crypto/crypto.h"
#include "common/util.h"

static const char *PASS = "correct horse battery staple";

/* Copy of @json with the value of "key" replaced by @value (raw JSON). */
static char *set_field(const char *json, const char *key, const char *value)
{
	char pat[64];
	const char *p, *v, *e;
	char *out;
	snprintf(pat, sizeof pat, "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return NULL;
	v = p + strlen(pat);
	e = v;
	if (*e == '"') {
		e = strchr(e + 1, '"') + 1;
	} else {
		while (*e && *e != ',' && *e != '}')
			e++;
	}
	out = malloc(strlen(json) + strlen(value) + 1);
	sprintf(out, "%.*s%s%s", (int)(v - json), json, value, e);
	return out;
}

/* The string value of "key" (points into json, up to the quote). */
static const char *field_str(const char *json, const char *key, size_t *len)
{
	char pat[64];
	const char *p;
	snprintf(pat, sizeof pat, "\"%s\":\"", key);
	p = strstr(json, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	*len = (size_t)(strchr(p, '"') - p);
	return p;
}

static int unwrap(const char *json, const char *pass, uint8_t *master,
		  int *enc)
{
	return vmb_crypto_unwrap_key(json, strlen(json), pass, strlen(pass),
				     "test key", master, enc);
}

static void test_wrap(void)
{
	uint8_t master[32], got[32];
	char *json = NULL, *bad;
	int enc = -1;

	vmb_crypto_random(master, sizeof master);
	CHECK_OK(vmb_crypto_wrap_key(master, PASS, strlen(PASS), 1, &json));
	CHECK(json != NULL);
	if (!json)
		return;
	/* the key file never holds the master key in the clear */
	{
		char hex[65];
		vmb_hex(master, 32, hex);
		CHECK(strstr(json, hex) == NULL);
		CHECK(strstr(json, "argon2id13") != NULL);
	}
	memset(got, 0, sizeof got);
	CHECK_OK(unwrap(json, PASS, got, &enc));
	CHECK(memcmp(got, master, 32) == 0);
	CHECK(enc == 1);

	/* wrong passphrases */
	CHECK_ERR(unwrap(json, "correct horse battery stapl", got, &enc),
		  VMB_EAUTH);
	CHECK_ERR(unwrap(json, "", got, &enc), VMB_EAUTH);
	CHECK_ERR(unwrap(json, "Correct horse battery staple", got, &enc),
		  VMB_EAUTH);
	/* the passphrase length counts, not a C string */
	CHECK_ERR(vmb_crypto_unwrap_key(json, strlen(json), PASS,
					strlen(PASS) - 1, "k", got, &enc),
		  VMB_EAUTH);

	/* two wraps of one key differ (random salt and nonce) */
	{
		char *json2 = NULL;
		size_t l1, l2;
		CHECK_OK(vmb_crypto_wrap_key(master, PASS, strlen(PASS), 1,
					     &json2));
		const char *s1 = field_str(json, "salt", &l1);
		const char *s2 = field_str(json2, "salt", &l2);
		CHECK(s1 && s2 && l1 == l2 && memcmp(s1, s2, l1) != 0);
		s1 = field_str(json, "sealed_key", &l1);
		s2 = field_str(json2, "sealed_key", &l2);
		CHECK(s1 && s2 && l1 == l2 && memcmp(s1, s2, l1) != 0);
		free(json2);
	}

	/* a valid-hex but altered sealed key or salt: authentication fails */
	{
		size_t l;
		const char *s = field_str(json, "sealed_key", &l);
		char *copy = strdup(json);
		size_t pos = (size_t)(s - json) + l / 2;
		copy[pos] = copy[pos] == '0' ? '1' : '0';
		CHECK_ERR(unwrap(copy, PASS, got, &enc), VMB_EAUTH);
		free(copy);
		s = field_str(json, "salt", &l);
		copy = strdup(json);
		pos = (size_t)(s - json);
		copy[pos] = copy[pos] == '0' ? '1' : '0';
		CHECK_ERR(unwrap(copy, PASS, got, &enc), VMB_EAUTH);
		free(copy);
	}

	/* damaged key files: VMB_ECORRUPT, before any Argon2id */
	{
		size_t l;
		const char *s = field_str(json, "sealed_key", &l);
		char *copy = strdup(json);
		copy[(size_t)(s - json) + 3] = 'g'; /* not hex */
		CHECK_ERR(unwrap(copy, PASS, got, &enc), VMB_ECORRUPT);
		free(copy);
		copy = strdup(json);
		memmove(copy + (s - json) + l - 2, copy + (s - json) + l,
			strlen(copy + (s - json) + l) + 1); /* one byte short */
		CHECK_ERR(unwrap(copy, PASS, got, &enc), VMB_ECORRUPT);
		free(copy);
	}
	{
		static const struct { const char *key, *val; } cases[] = {
			{ "opslimit", "1000" },
			{ "opslimit", "0" },
			{ "opslimit", "-1" },
			{ "opslimit", "1.5" },
			{ "opslimit", "\"3\"" },
			{ "memlimit", "1099511627776" }, /* 1 TiB */
			{ "memlimit", "18446744073709551615" },
			{ "memlimit", "1" },
			{ "kdf", "\"scrypt\"" },
			{ "kdf", "7" },
			{ "version", "2" },
			{ "version", "\"1\"" },
			{ "salt", "\"00\"" },
			{ "salt", "\"\"" },
			{ "sealed_key", "null" },
		};
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			bad = set_field(json, cases[i].key, cases[i].val);
			CHECK(bad != NULL);
			if (!bad)
				continue;
			int rc = unwrap(bad, PASS, got, &enc);
			if (rc != VMB_ECORRUPT)
				fprintf(stderr, "case %s=%s\n", cases[i].key,
					cases[i].val);
			CHECK_ERR(rc, VMB_ECORRUPT);
			free(bad);
		}
	}
	/* bad JSON: truncated at every length, garbage, empty */
	for (size_t n = 0; n < strlen(json) - 2; n += 7) {
		int rc = vmb_crypto_unwrap_key(json, n, PASS, strlen(PASS), "k",
					       got, &enc);
		CHECK(rc == VMB_ECORRUPT);
	}
	CHECK_ERR(unwrap("not json at all", PASS, got, &enc), VMB_ECORRUPT);
	CHECK_ERR(unwrap("[1,2,3]", PASS, got, &enc), VMB_ECORRUPT);
	CHECK_ERR(unwrap("{}", PASS, got, &enc), VMB_ECORRUPT);
	CHECK_ERR(unwrap("", PASS, got, &enc), VMB_ECORRUPT);
	free(json);

	/* unencrypted key files: the key itself, no passphrase needed */
	json = NULL;
	CHECK_OK(vmb_crypto_wrap_key(master, "", 0, 0, &json));
	CHECK(json && strstr(json, "\"none\""));
	if (json) {
		memset(got, 0, sizeof got);
		enc = -1;
		CHECK_OK(unwrap(json, "", got, &enc));
		CHECK(memcmp(got, master, 32) == 0);
		CHECK(enc == 0);
		bad = set_field(json, "key", "\"abcd\"");
		CHECK_ERR(unwrap(bad, "", got, &enc), VMB_ECORRUPT);
		free(bad);
		bad = set_field(json, "key", "\"zz00000000000000000000000000000"
				"0000000000000000000000000000000000\"");
		CHECK_ERR(unwrap(bad, "", got, &enc), VMB_ECORRUPT);
		free(bad);
		free(json);
	}
}

static void test_ids(void)
{
	uint8_t m1[32], m2[32], a[32], b[32];
	vmb_keys k1, k1b, k2;
	uint8_t data[4096], data2[4096];

	test_random(data, sizeof data, 1);
	memcpy(data2, data, sizeof data);
	data2[4095] ^= 1;
	vmb_crypto_random(m1, 32);
	vmb_crypto_random(m2, 32);
	CHECK(memcmp(m1, m2, 32) != 0);
	vmb_crypto_derive(m1, 1, &k1);
	vmb_crypto_derive(m1, 1, &k1b);
	vmb_crypto_derive(m2, 1, &k2);
	CHECK(k1.encrypted == 1);
	/* derivation is deterministic and the subkeys are distinct */
	CHECK(memcmp(&k1, &k1b, sizeof k1) == 0);
	CHECK(memcmp(k1.enc, k1.id, 32) != 0);
	CHECK(memcmp(k1.id, k1.mac, 32) != 0);
	CHECK(memcmp(k1.enc, k1.mac, 32) != 0);
	CHECK(memcmp(k1.fp, k1.fp + 64, 64) != 0);
	CHECK(memcmp(k1.enc, k2.enc, 32) != 0);
	CHECK(memcmp(k1.fp, k2.fp, sizeof k1.fp) != 0);
	{
		vmb_keys kp;
		vmb_crypto_derive(m1, 0, &kp);
		CHECK(kp.encrypted == 0);
		CHECK(memcmp(kp.id, k1.id, 32) == 0);
	}

	/* chunk ids: deterministic per key, differ across keys and data */
	vmb_crypto_chunk_id(&k1, data, sizeof data, a);
	vmb_crypto_chunk_id(&k1b, data, sizeof data, b);
	CHECK(memcmp(a, b, 32) == 0);
	vmb_crypto_chunk_id(&k2, data, sizeof data, b);
	CHECK(memcmp(a, b, 32) != 0);
	vmb_crypto_chunk_id(&k1, data2, sizeof data2, b);
	CHECK(memcmp(a, b, 32) != 0);
	vmb_crypto_chunk_id(&k1, data, sizeof data - 1, b);
	CHECK(memcmp(a, b, 32) != 0);
	/* keyed: not the plain BLAKE2b-256 of the data */
	crypto_generichash(b, 32, data, sizeof data, NULL, 0);
	CHECK(memcmp(a, b, 32) != 0);

	/* fingerprints: same rules */
	uint8_t f1[16], f2[16];
	vmb_crypto_fingerprint(&k1, data, sizeof data, f1);
	vmb_crypto_fingerprint(&k1b, data, sizeof data, f2);
	CHECK(memcmp(f1, f2, 16) == 0);
	vmb_crypto_fingerprint(&k2, data, sizeof data, f2);
	CHECK(memcmp(f1, f2, 16) != 0);
	vmb_crypto_fingerprint(&k1, data2, sizeof data2, f2);
	CHECK(memcmp(f1, f2, 16) != 0);
	{
		/* only the secret differs: one byte of it changes the result */
		vmb_keys k3 = k1;
		k3.fp[100] ^= 0x40;
		vmb_crypto_fingerprint(&k3, data, sizeof data, f2);
		CHECK(memcmp(f1, f2, 16) != 0);
	}
	/* an all-zero buffer fingerprints differently per repository */
	{
		uint8_t z[65536] = { 0 };
		vmb_crypto_fingerprint(&k1, z, sizeof z, f1);
		vmb_crypto_fingerprint(&k2, z, sizeof z, f2);
		CHECK(memcmp(f1, f2, 16) != 0);
	}
}

static void test_seal(int cipher)
{
	uint8_t master[32], other[32];
	vmb_keys k, k2;
	uint8_t msg[333], sealed[333 + 40], sealed2[333 + 40], out[333];
	const uint8_t ad[] = "chunks/ab/abcdef";
	size_t slen = sizeof msg + VMB_SEAL_NONCE_BYTES + VMB_SEAL_TAG_BYTES;

	vmb_crypto_random(master, 32);
	vmb_crypto_random(other, 32);
	vmb_crypto_derive(master, 1, &k);
	vmb_crypto_derive(other, 1, &k2);
	k.cipher = k2.cipher = cipher;
	test_random(msg, sizeof msg, 7);
	vmb_crypto_seal(&k, ad, sizeof ad - 1, msg, sizeof msg, sealed);
	memset(out, 0, sizeof out);
	CHECK_OK(vmb_crypto_open(&k, ad, sizeof ad - 1, sealed, slen, out));
	CHECK(memcmp(out, msg, sizeof msg) == 0);
	/* the ciphertext does not contain the plaintext */
	CHECK(memcmp(sealed + VMB_SEAL_NONCE_BYTES, msg, sizeof msg) != 0);
	/* a second seal uses a fresh nonce */
	vmb_crypto_seal(&k, ad, sizeof ad - 1, msg, sizeof msg, sealed2);
	CHECK(memcmp(sealed, sealed2, VMB_SEAL_NONCE_BYTES) != 0);
	CHECK(memcmp(sealed + 24, sealed2 + 24, sizeof msg) != 0);

	/* in place, as blobs do: the plaintext right after the nonce */
	{
		uint8_t ip[333 + 40];
		memcpy(ip + VMB_SEAL_NONCE_BYTES, msg, sizeof msg);
		vmb_crypto_seal(&k, ad, sizeof ad - 1, ip + VMB_SEAL_NONCE_BYTES,
				sizeof msg, ip);
		CHECK(memcmp(ip + VMB_SEAL_NONCE_BYTES, msg, sizeof msg) != 0);
		CHECK_OK(vmb_crypto_open(&k, ad, sizeof ad - 1, ip, slen, out));
		CHECK(memcmp(out, msg, sizeof msg) == 0);
		CHECK_OK(vmb_crypto_open(&k, ad, sizeof ad - 1, ip, slen,
					 ip + VMB_SEAL_NONCE_BYTES));
		CHECK(memcmp(ip + VMB_SEAL_NONCE_BYTES, msg, sizeof msg) == 0);
	}
	/* the other cipher under the same key cannot open it */
	{
		vmb_keys ko = k;
		ko.cipher = cipher == VMB_CIPHER_AESGCM ? VMB_CIPHER_XCHACHA
							: VMB_CIPHER_AESGCM;
		if (ko.cipher != VMB_CIPHER_AESGCM ||
		    vmb_crypto_aesgcm_available())
			CHECK_ERR(vmb_crypto_open(&ko, ad, sizeof ad - 1, sealed,
						  slen, out), VMB_EAUTH);
	}

	/* every flipped bit fails */
	int all = 1;
	for (size_t i = 0; i < slen; i++)
		for (int bit = 0; bit < 8; bit++) {
			sealed[i] ^= (uint8_t)(1 << bit);
			if (vmb_crypto_open(&k, ad, sizeof ad - 1, sealed, slen,
					    out) != VMB_EAUTH)
				all = 0;
			sealed[i] ^= (uint8_t)(1 << bit);
		}
	CHECK(all);
	CHECK_OK(vmb_crypto_open(&k, ad, sizeof ad - 1, sealed, slen, out));
	/* wrong, shorter, longer or no associated data */
	CHECK_ERR(vmb_crypto_open(&k, (const uint8_t *)"chunks/ab/abcdeg",
				  16, sealed, slen, out), VMB_EAUTH);
	CHECK_ERR(vmb_crypto_open(&k, ad, sizeof ad - 2, sealed, slen, out),
		  VMB_EAUTH);
	CHECK_ERR(vmb_crypto_open(&k, ad, sizeof ad, sealed, slen, out),
		  VMB_EAUTH);
	CHECK_ERR(vmb_crypto_open(&k, NULL, 0, sealed, slen, out), VMB_EAUTH);
	/* wrong key */
	CHECK_ERR(vmb_crypto_open(&k2, ad, sizeof ad - 1, sealed, slen, out),
		  VMB_EAUTH);
	/* truncated */
	all = 1;
	for (size_t n = 0; n < slen; n++)
		if (vmb_crypto_open(&k, ad, sizeof ad - 1, sealed, n, out) !=
		    VMB_EAUTH)
			all = 0;
	CHECK(all);
	/* an empty message seals and opens */
	vmb_crypto_seal(&k, ad, sizeof ad - 1, msg, 0, sealed);
	CHECK_OK(vmb_crypto_open(&k, ad, sizeof ad - 1, sealed, 40, out));
	sealed[30] ^= 1;
	CHECK_ERR(vmb_crypto_open(&k, ad, sizeof ad - 1, sealed, 40, out),
		  VMB_EAUTH);

	/* MACs: keyed, cover AD and data */
	uint8_t m1[16], m2[16];
	vmb_crypto_mac(&k, ad, sizeof ad - 1, msg, sizeof msg, m1);
	vmb_crypto_mac(&k, ad, sizeof ad - 1, msg, sizeof msg, m2);
	CHECK(memcmp(m1, m2, 16) == 0);
	vmb_crypto_mac(&k2, ad, sizeof ad - 1, msg, sizeof msg, m2);
	CHECK(memcmp(m1, m2, 16) != 0);
	vmb_crypto_mac(&k, ad, sizeof ad - 2, msg, sizeof msg, m2);
	CHECK(memcmp(m1, m2, 16) != 0);
	msg[0] ^= 1;
	vmb_crypto_mac(&k, ad, sizeof ad - 1, msg, sizeof msg, m2);
	CHECK(memcmp(m1, m2, 16) != 0);
}

/* The per-object AES-256-GCM subkey and its documented layout
 * (docs/repository-format.md, "Ciphers"). */
static void test_aesgcm_subkey(void)
{
	uint8_t enc[32], field[24], f2[24], sk[32], sk2[32], n[12], n2[12];
	uint8_t want[32];
	static const uint8_t personal[16] = "vmb-aes256gcm-v1";

	for (int i = 0; i < 32; i++)
		enc[i] = (uint8_t)i;
	for (int i = 0; i < 24; i++)
		field[i] = (uint8_t)(100 + i);
	vmb_crypto_aesgcm_subkey(enc, field, sk, n);
	/* known answer, from Python's hashlib.blake2b(key=enc,
	 * salt=field[:16], person=b"vmb-aes256gcm-v1", digest_size=32) */
	CHECK_OK(vmb_unhex("a65eb7c4baf033f49c630c97e386c418"
			   "bcca78ec68b8d24306cbc02d24a28fd2", want, 32));
	CHECK(memcmp(sk, want, 32) == 0);
	/* the layout: BLAKE2b salt = field[0..16], nonce = field[16..24]
	 * then four zero bytes */
	crypto_generichash_blake2b_salt_personal(want, 32, NULL, 0, enc, 32,
						 field, personal);
	CHECK(memcmp(sk, want, 32) == 0);
	CHECK(memcmp(n, field + 16, 8) == 0);
	CHECK(n[8] == 0 && n[9] == 0 && n[10] == 0 && n[11] == 0);
	/* same inputs, same subkey */
	vmb_crypto_aesgcm_subkey(enc, field, sk2, n2);
	CHECK(memcmp(sk, sk2, 32) == 0 && memcmp(n, n2, 12) == 0);
	/* each salt byte changes the subkey; the nonce bytes do not */
	int all = 1;
	for (int i = 0; i < 24; i++) {
		memcpy(f2, field, 24);
		f2[i] ^= 0x80;
		vmb_crypto_aesgcm_subkey(enc, f2, sk2, n2);
		if (i < 16 && (memcmp(sk, sk2, 32) == 0 || memcmp(n, n2, 12)))
			all = 0;
		if (i >= 16 && (memcmp(sk, sk2, 32) || !memcmp(n, n2, 12)))
			all = 0;
	}
	CHECK(all);
	/* another encryption key, another subkey */
	enc[5] ^= 1;
	vmb_crypto_aesgcm_subkey(enc, field, sk2, n2);
	CHECK(memcmp(sk, sk2, 32) != 0);
	enc[5] ^= 1;
	/* random salts: a thousand seals, a thousand subkeys */
	{
		static uint8_t seen[1000][32];
		int dup = 0;
		for (int i = 0; i < 1000; i++) {
			vmb_crypto_random(f2, 24);
			vmb_crypto_aesgcm_subkey(enc, f2, seen[i], n2);
			for (int j = 0; j < i; j++)
				if (!memcmp(seen[i], seen[j], 32))
					dup = 1;
		}
		CHECK(!dup);
	}
	if (!vmb_crypto_aesgcm_available()) {
		printf("# no AES-GCM here: known-answer seal skipped\n");
		return;
	}
	/* known answer of a whole seal (Python cryptography's AESGCM with
	 * that subkey and nonce): nonce field || ciphertext || tag */
	{
		vmb_keys k;
		uint8_t out[24 + 15 + 16], back[15], exp[31];
		memset(&k, 0, sizeof k);
		k.encrypted = 1;
		k.cipher = VMB_CIPHER_AESGCM;
		memcpy(k.enc, enc, 32);
		CHECK_OK(vmb_unhex("9d0fd2746c580384a9889be63f0066cf"
				   "e91c13e5cebeb931ff5419468f21cb", exp, 31));
		memcpy(out, field, 24);
		CHECK_OK(vmb_crypto_open(&k, (const uint8_t *)"header+bind", 11,
					 (memcpy(out + 24, exp, 31), out),
					 sizeof out, back));
		CHECK(memcmp(back, "vmbackup object", 15) == 0);
		/* and the forced-off hook reports it missing */
		setenv("VMB_TEST_NO_AESGCM", "1", 1);
		CHECK(!vmb_crypto_aesgcm_available());
		unsetenv("VMB_TEST_NO_AESGCM");
		CHECK(vmb_crypto_aesgcm_available());
	}
}

/* the library's fingerprint (AVX2 path where the CPU has it,
 * lib/crypto/fp_avx2.c) equals XXH3-128 with the secret computed here,
 * for lengths around xxh3's internal boundaries, a page and a chunk */
static void test_fingerprint_paths(void)
{
	static const size_t lens[] = { 0,    1,	   3,	 4,    8,    9,
				       16,   17,   128,	 129,  240,  241,
				       1024, 1025, 4095, 4096, 4097, 65536,
				       4u << 20 };
	vmb_keys k;
	uint8_t master[32], got[16];
	size_t max = 4u << 20;
	uint8_t *buf = malloc(max + 1);
	CHECK(buf != NULL);
	if (!buf)
		return;
	vmb_crypto_random(master, 32);
	vmb_crypto_derive(master, 1, &k);
	vmb_crypto_random(buf, max + 1);
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		for (size_t off = 0; off < 2; off++) { /* aligned, unaligned */
			XXH128_hash_t h = XXH3_128bits_withSecret(
				buf + off, lens[i], k.fp, sizeof k.fp);
			XXH128_canonical_t c;
			XXH128_canonicalFromHash(&c, h);
			vmb_crypto_fingerprint(&k, buf + off, lens[i], got);
			CHECK(memcmp(got, c.digest, 16) == 0);
		}
	}
	free(buf);
}

int main(void)
{
	setenv("VMB_KDF_OPSLIMIT", "1", 1);
	setenv("VMB_KDF_MEMLIMIT", "8388608", 1);
	CHECK_OK(vmb_crypto_init());
	test_wrap();
	test_ids();
	test_fingerprint_paths();
	test_seal(VMB_CIPHER_XCHACHA);
	if (vmb_crypto_aesgcm_available())
		test_seal(VMB_CIPHER_AESGCM);
	else
		printf("# no AES-NI/PCLMUL: AES-GCM seal test skipped\n");
	test_aesgcm_subkey();
	return test_done();
}
