/*
 * Single-thread CPU cost of each stage of vmb's backup pipeline on one chunk:
 * zero check, keyed XXH3-128 fingerprint, keyed BLAKE2b-256 id, zstd at a
 * given level, XChaCha20-Poly1305 seal; on text-like and random chunks
 * taken from an image made by gen.c.
 *
 *   micro IMAGE [CHUNK_BYTES] [ZSTD_LEVEL]
 *
 * Prints a markdown row per data kind: compression ratio, then MiB of
 * plaintext per CPU second for XXH3, BLAKE2b, zstd and the seal (the seal
 * runs on the compressed payload), then CPU ms per chunk for all four.
 * Build (chunksize.sh does it):
 *   cc -O2 micro.c -lsodium -lzstd -lxxhash
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <zstd.h>
#define XXH_INLINE_ALL /* as lib/crypto/crypto.c */
#include <xxhash.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); /* CPU time: robust on a busy machine */
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int is_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static volatile int sink;

static void run(const char *what, const uint8_t *chunk, size_t len, int level)
{
	static uint8_t key[32], fpsecret[192], id[32];
	uint8_t *out = malloc(ZSTD_compressBound(len) + 64);
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	unsigned long long clen;
	uint8_t nonce[24] = { 0 };
	int reps = (int)(256.0 * 1024 * 1024 / len);
	double t, tf, tb, tc, ts;
	size_t n = 0;
	if (reps < 4)
		reps = 4;
	randombytes_buf(fpsecret, sizeof fpsecret);
	t = now();
	for (int i = 0; i < reps; i++)
		sink += (int)XXH3_128bits_withSecret(chunk, len, fpsecret,
						     sizeof fpsecret).low64;
	tf = now() - t;
	t = now();
	for (int i = 0; i < reps; i++)
		crypto_generichash(id, 32, chunk, len, key, 32);
	tb = now() - t;
	t = now();
	for (int i = 0; i < reps; i++)
		n = ZSTD_compressCCtx(cctx, out, ZSTD_compressBound(len), chunk,
				      len, level);
	tc = now() - t;
	if (n >= len)
		n = len;
	t = now();
	for (int i = 0; i < reps; i++)
		crypto_aead_xchacha20poly1305_ietf_encrypt(out, &clen, out, n,
							   key, 16, NULL,
							   nonce, key);
	ts = now() - t;
	double mb = (double)len * reps / 1048576.0;
	/* MiB of plaintext per CPU second; ms of CPU per chunk in total */
	printf("| %s | %zu KiB | %d | %.2f | %.0f | %.0f | %.0f | %.0f | %.2f |\n",
	       what, len / 1024, level, (double)len / n, mb / tf, mb / tb,
	       mb / tc, mb / ts, (tf + tb + tc + ts) * 1000 / reps);
	ZSTD_freeCCtx(cctx);
	free(out);
}

int main(int argc, char **argv)
{
	size_t len = argc > 2 ? strtoull(argv[2], NULL, 10) : 4 << 20;
	int level = argc > 3 ? atoi(argv[3]) : 1;
	int fd = argc > 1 ? open(argv[1], O_RDONLY) : -1;
	uint8_t *buf = malloc(len), *text = NULL, *rnd = NULL;
	if (fd < 0 || sodium_init() < 0) {
		fprintf(stderr, "usage: micro IMAGE [CHUNK_BYTES] [LEVEL]\n");
		return 2;
	}
	/* find a text chunk and a random chunk (gen.c: runs of 1 MiB pieces) */
	for (off_t off = 0; (!text || !rnd) &&
	     pread(fd, buf, len, off) == (ssize_t)len; off += (off_t)len) {
		size_t z = ZSTD_compress(malloc(ZSTD_compressBound(65536)),
					 ZSTD_compressBound(65536), buf, 65536, 1);
		if (is_zero(buf, len))
			continue;
		if (!text && z < 40000) {
			text = malloc(len);
			memcpy(text, buf, len);
		} else if (!rnd && z > 65000) {
			rnd = malloc(len);
			memcpy(rnd, buf, len);
		}
	}
	if (text)
		run("text", text, len, level);
	if (rnd)
		run("random", rnd, len, level);
	return 0;
}
