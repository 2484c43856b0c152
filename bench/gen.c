/*
 * Benchmark image generator (deterministic for a given seed).
 *
 *   gen create IMAGE SIZE_MIB SEED
 *       A sparse raw image made of runs of 1..16 MiB (1 MiB pieces):
 *       ~40% holes, ~30% text-like data (log lines and source-like text,
 *       zstd -1 compresses it about 3-4x), ~30% random (incompressible).
 *       Every piece is unique, so nothing dedups inside one image.
 *
 *   gen modify IMAGE SEED PERCENT MODE
 *       Overwrite PERCENT % of the image's size in place, in the style of
 *       a guest between two backups:
 *         contiguous  one region
 *         scattered   4 KiB writes at random 4 KiB-aligned offsets
 *         mixed       90% of the bytes in 4 regions, 10% as 4 KiB writes
 *       The new data is text-like or random, half and half.
 *
 *   gen diffpages A B
 *       Write to stdout every 4 KiB page of B that differs from the same
 *       page of A (what B has of its own: the least any store must keep
 *       of B beside A; compress it to get that floor).
 *
 * Build: cc -O2 -o gen gen.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024 * 1024)

static uint64_t rng_s;

static uint64_t rnd(void) /* splitmix64 */
{
	uint64_t z = (rng_s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void fill_random(uint8_t *p, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t v = rnd();
		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static const char *hosts[] = { "web1", "web2", "db1", "cache3", "lb0",
			       "worker07", "worker12", "build4" };
static const char *procs[] = { "sshd", "nginx", "postgres", "systemd",
			       "kernel", "cron", "dockerd", "kubelet",
			       "haproxy", "redis-server" };
static const char *msgs[] = {
	"Accepted publickey for deploy from",
	"connection reset by peer while reading response header from",
	"checkpoint complete: wrote buffers; distance estimate",
	"Started Session of user root.",
	"GET /api/v2/orders?page=",
	"POST /login HTTP/1.1 200 client",
	"EXT4-fs (vda1): re-mounted. Opts: errors=remount-ro, duration",
	"Pulling image registry.example.com/app:",
	"health check failed for backend srv",
	"slow query detected: SELECT * FROM invoices WHERE customer_id =",
	"WARN  rate limit exceeded for key",
	"OOM killer invoked: killed process",
	"Failed password for invalid user admin from",
	"pg_stat_statements reset, entries",
	"cache miss ratio above threshold:",
};
static const char *words[] = {
	"static", "int", "return", "struct", "const", "char", "void", "if",
	"else", "for", "while", "buffer", "length", "offset", "error",
	"result", "config", "request", "handler", "payload", "index",
	"value", "count", "size_t", "uint64_t", "unsigned", "ctx", "data",
	"memcpy", "free", "malloc", "pthread_mutex_lock", "goto", "out",
	"the", "a", "of", "to", "and", "is", "in", "that", "file", "chunk",
};

#define NW (sizeof words / sizeof *words)

/* n bytes of text: log lines and source-like lines with random numbers. */
static void fill_text(uint8_t *p, size_t n)
{
	char line[512];
	size_t pos = 0;
	while (pos < n) {
		int len;
		if (below(3)) {
			len = snprintf(line, sizeof line,
				       "2024-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s[%u]: %s %u.%u.%u.%u port %u id=%08llx\n",
				       (int)below(12) + 1, (int)below(28) + 1,
				       (int)below(24), (int)below(60),
				       (int)below(60), (int)below(1000),
				       hosts[below(8)], procs[below(10)],
				       (unsigned)below(65536),
				       msgs[below(sizeof msgs / sizeof *msgs)],
				       (unsigned)below(256), (unsigned)below(256),
				       (unsigned)below(256), (unsigned)below(256),
				       (unsigned)below(65536),
				       (unsigned long long)below(1ULL << 32));
		} else {
			int k = (int)below(10) + 3;
			len = snprintf(line, sizeof line, "%*s", (int)below(4) * 8, "");
			for (int i = 0; i < k && len < 400; i++)
				len += snprintf(line + len, sizeof line - len,
						below(6) ? "%s " : "%s_%x ",
						words[below(NW)],
						(unsigned)below(4096));
			line[len++] = '\n';
		}
		if ((size_t)len > n - pos)
			len = (int)(n - pos);
		memcpy(p + pos, line, (size_t)len);
		pos += (size_t)len;
	}
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
	while (n) {
		ssize_t w = pwrite(fd, p, n, off);
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

static int create(const char *path, uint64_t mib, uint64_t seed)
{
	uint8_t *buf = malloc(MIB);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint64_t at = 0, kinds[3] = { 0, 0, 0 };
	if (fd < 0 || !buf) {
		perror(path);
		return 1;
	}
	rng_s = seed;
	while (at < mib) {
		uint64_t run = below(16) + 1, r = below(100);
		int kind = r < 40 ? 0 : r < 70 ? 1 : 2; /* hole, text, random */
		if (run > mib - at)
			run = mib - at;
		for (uint64_t i = 0; i < run; i++) {
			if (kind == 1)
				fill_text(buf, MIB);
			else if (kind == 2)
				fill_random(buf, MIB);
			if (kind && pwrite_all(fd, buf, MIB, (off_t)((at + i) * MIB))) {
				perror(path);
				return 1;
			}
		}
		kinds[kind] += run;
		at += run;
	}
	if (ftruncate(fd, (off_t)(mib * MIB)) || close(fd)) {
		perror(path);
		return 1;
	}
	fprintf(stderr, "%s: %llu MiB: %llu hole, %llu text, %llu random\n",
		path, (unsigned long long)mib, (unsigned long long)kinds[0],
		(unsigned long long)kinds[1], (unsigned long long)kinds[2]);
	free(buf);
	return 0;
}

static int write_new(int fd, uint8_t *buf, uint64_t off, size_t n)
{
	if (below(2))
		fill_text(buf, n);
	else
		fill_random(buf, n);
	return pwrite_all(fd, buf, n, (off_t)off);
}

static int modify(const char *path, uint64_t seed, double pct,
		  const char *mode)
{
	struct stat st;
	int fd = open(path, O_WRONLY);
	uint64_t size, bytes, region_bytes = 0, scatter_bytes = 0, regions = 0;
	uint8_t *buf = malloc(MIB);
	if (fd < 0 || fstat(fd, &st) || !buf) {
		perror(path);
		return 1;
	}
	size = (uint64_t)st.st_size;
	bytes = (uint64_t)(size * pct / 100.0) & ~4095ULL;
	rng_s = seed ^ 0x5eed5eed5eedULL;
	if (!strcmp(mode, "contiguous")) {
		region_bytes = bytes;
		regions = 1;
	} else if (!strcmp(mode, "scattered")) {
		scatter_bytes = bytes;
	} else if (!strcmp(mode, "mixed")) {
		scatter_bytes = (bytes / 10) & ~4095ULL;
		region_bytes = bytes - scatter_bytes;
		regions = 4;
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	for (uint64_t r = 0; r < regions; r++) {
		uint64_t len = (region_bytes / regions) & ~4095ULL;
		uint64_t off = below((size - len) / 4096) * 4096;
		for (uint64_t d = 0; d < len; d += MIB) {
			size_t n = (size_t)(len - d < MIB ? len - d : MIB);
			if (write_new(fd, buf, off + d, n)) {
				perror(path);
				return 1;
			}
		}
	}
	for (uint64_t d = 0; d < scatter_bytes; d += 4096)
		if (write_new(fd, buf, below(size / 4096) * 4096, 4096)) {
			perror(path);
			return 1;
		}
	if (close(fd)) {
		perror(path);
		return 1;
	}
	fprintf(stderr, "%s: %s change of %llu bytes (%.2f%%)\n", path, mode,
		(unsigned long long)bytes, pct);
	free(buf);
	return 0;
}

static int diffpages(const char *a, const char *b)
{
	static char pa[1 << 20], pb[1 << 20];
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	ssize_t na, nb;
	if (fa < 0 || fb < 0) {
		perror(fa < 0 ? a : b);
		return 1;
	}
	posix_fadvise(fa, 0, 0, POSIX_FADV_SEQUENTIAL);
	posix_fadvise(fb, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (;;) {
		nb = read(fb, pb, sizeof pb);
		if (nb < 0) {
			perror(b);
			return 1;
		}
		if (nb == 0)
			break;
		na = read(fa, pa, (size_t)nb);
		if (na < 0) {
			perror(a);
			return 1;
		}
		if (na < nb)
			memset(pa + na, 0, (size_t)(nb - na));
		for (ssize_t o = 0; o < nb; o += 4096) {
			size_t n = (size_t)(nb - o) < 4096 ? (size_t)(nb - o) : 4096;
			if (memcmp(pa + o, pb + o, n) &&
			    fwrite(pb + o, 1, n, stdout) != n) {
				perror("stdout");
				return 1;
			}
		}
	}
	close(fa);
	close(fb);
	return fflush(stdout) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "diffpages"))
		return diffpages(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "create"))
		return create(argv[2], strtoull(argv[3], NULL, 10),
			      strtoull(argv[4], NULL, 10));
	if (argc == 6 && !strcmp(argv[1], "modify"))
		return modify(argv[2], strtoull(argv[3], NULL, 10),
			      atof(argv[4]), argv[5]);
	fprintf(stderr, "usage: gen create IMAGE SIZE_MIB SEED\n"
			"       gen modify IMAGE SEED PERCENT "
			"contiguous|scattered|mixed\n"
			"       gen diffpages A B\n");
	return 2;
}
