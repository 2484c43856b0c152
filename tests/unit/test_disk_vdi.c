/*
 * VDI reader and writer, checked against qemu-img: dynamic and fixed
 * images made by qemu-img, a hand-made differencing image on top of one,
 * images written by our writer (qemu-img check and compare), and a set of
 * malformed images that must fail quickly with a one-line message.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "common/util.h"
#include "disk/format.h"
#include "testutil.h"
#include "vmbackup/disk.h"

#define MiB (1024u * 1024u)
#define KiB 1024u

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(n > 0 ? (size_t)n : 1);
	if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static int spit(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	int ok;
	if (!f)
		return -1;
	ok = fwrite(buf, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

/*
 * A raw image of size bytes: random data, text-like data, zero runs and
 * holes, laid out so that blocks are in every state (whole, partial,
 * empty) relative to 1 MiB.
 */
static uint8_t *make_content(size_t size, uint64_t seed)
{
	uint8_t *b = calloc(1, size ? size : 1);
	static const char *words[] = { "disk ", "backup ", "sector ",
				       "VirtualBox ", "\n", "0123456789 " };
	size_t pos = 0;
	uint64_t x = seed;
	while (pos < size) {
		size_t n;
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		n = (size_t)((x >> 33) % (700 * KiB)) + 1;
		if (n > size - pos)
			n = size - pos;
		switch ((x >> 20) % 4) {
		case 0:
			test_random(b + pos, n, x);
			break;
		case 1:
			for (size_t i = 0; i < n;) {
				const char *w = words[(i / 7 + x) % 6];
				size_t l = strlen(w);
				if (l > n - i)
					l = n - i;
				memcpy(b + pos + i, w, l);
				i += l;
			}
			break;
		default:
			break; /* zeros */
		}
		pos += n;
	}
	return b;
}

/* Whole disk read through vmb_disk_read, in pieces of odd sizes. */
static uint8_t *read_disk(const char *path, unsigned flags, uint64_t *size,
			  int *layers)
{
	vmb_disk *d = NULL;
	uint8_t *buf;
	uint64_t pos = 0;
	size_t piece = 333 * KiB + 17;
	if (vmb_disk_open(path, flags, &d) < 0) {
		fprintf(stderr, "open %s: %s\n", path, vmb_error_message());
		return NULL;
	}
	*size = vmb_disk_size(d);
	if (layers)
		*layers = vmb_disk_layers(d);
	buf = malloc(*size ? *size : 1);
	/* one read of the whole disk, then again in odd pieces */
	if (vmb_disk_read(d, buf, 0, (size_t)*size) < 0) {
		fprintf(stderr, "read %s: %s\n", path, vmb_error_message());
		free(buf);
		buf = NULL;
	}
	while (buf && pos < *size) {
		size_t n = (size_t)VMB_MIN((uint64_t)piece, *size - pos);
		uint8_t *tmp = malloc(n);
		int ok = vmb_disk_read(d, tmp, pos, n) == 0 &&
			 memcmp(tmp, buf + pos, n) == 0;
		free(tmp);
		if (!ok) {
			fprintf(stderr, "piecewise read of %s differs at %llu\n",
				path, (unsigned long long)pos);
			free(buf);
			buf = NULL;
		}
		pos += n;
	}
	vmb_disk_close(d);
	return buf;
}

/* Disk read through vmb equals qemu-img's raw conversion. */
static void check_against_qemu(const char *vdi)
{
	char raw[600];
	uint8_t *want, *got;
	size_t wlen;
	uint64_t glen = 0;
	snprintf(raw, sizeof raw, "%s.raw", vdi);
	CHECK(test_sh("qemu-img convert -f vdi -O raw '%s' '%s'", vdi, raw) ==
	      0);
	want = slurp(raw, &wlen);
	got = read_disk(vdi, 0, &glen, NULL);
	CHECK(want && got);
	CHECK(glen == wlen);
	if (want && got && glen == wlen)
		CHECK(memcmp(want, got, wlen) == 0);
	free(want);
	free(got);
	unlink(raw);
}

struct thr {
	vmb_disk *d;
	const uint8_t *want;
	uint64_t size;
	int seed;
	int bad;
};

static void *thr_read(void *arg)
{
	struct thr *t = arg;
	uint8_t *buf = malloc(3 * MiB);
	uint64_t x = (uint64_t)t->seed + 1;
	for (int i = 0; i < 200 && buf; i++) {
		uint64_t off, len;
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		off = (x >> 16) % t->size;
		len = ((x >> 40) % (3 * MiB)) + 1;
		if (len > t->size - off)
			len = t->size - off;
		if (vmb_disk_read(t->d, buf, off, (size_t)len) != 0 ||
		    memcmp(buf, t->want + off, (size_t)len) != 0)
			t->bad++;
	}
	free(buf);
	return NULL;
}

static void test_threads(const char *vdi, const uint8_t *want, uint64_t size)
{
	vmb_disk *d = NULL;
	pthread_t th[4];
	struct thr t[4];
	CHECK_OK(vmb_disk_open(vdi, 0, &d));
	if (!d)
		return;
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){ d, want, size, i, 0 };
		pthread_create(&th[i], NULL, thr_read, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(t[i].bad == 0);
	}
	vmb_disk_close(d);
}

static void check_inspect(const char *vdi, const char *type)
{
	vmb_disk *d = NULL;
	char *json = NULL, want[64];
	CHECK_OK(vmb_disk_open(vdi, VMB_DISK_OPEN_NO_BACKING, &d));
	if (!d)
		return;
	CHECK(strcmp(vmb_disk_format_name(d), "vdi") == 0);
	CHECK_OK(vmb_disk_inspect_json(d, &json));
	snprintf(want, sizeof want, "\"image_type\":\"%s\"", type);
	CHECK(json && strstr(json, want));
	CHECK(json && strstr(json, "\"version\":\"1.1\""));
	CHECK(json && strstr(json, "\"block_size\":1048576"));
	if (json && !strstr(json, want))
		fprintf(stderr, "inspect: %s\n", json);
	vmb_free(json);
	vmb_disk_close(d);
}

static void test_qemu_images(void)
{
	static const size_t sizes[] = { 7 * MiB + 256 * KiB, 3 * MiB,
					1536 * 512 + 512, 0 };
	for (size_t i = 0; i < VMB_ARRAY_SIZE(sizes); i++) {
		size_t size = sizes[i];
		uint8_t *content = make_content(size, 100 + i);
		const char *raw = test_path("q.raw");
		const char *dyn = test_path("q-dyn.vdi");
		const char *fix = test_path("q-fix.vdi");
		const char *fmt = NULL;
		CHECK(spit(raw, content, size) == 0);
		/* punch some real holes too */
		if (size > 2 * MiB)
			CHECK(test_sh("fallocate -p -o %u -l %u '%s' 2>/dev/null"
				      " || true", MiB / 2, MiB, raw) == 0);
		CHECK(test_sh("qemu-img convert -f raw -O vdi '%s' '%s'", raw,
			      dyn) == 0);
		CHECK(test_sh("qemu-img convert -f raw -O vdi -o static=on "
			      "'%s' '%s'", raw, fix) == 0);
		CHECK_OK(vmb_disk_probe(dyn, &fmt));
		CHECK(fmt && strcmp(fmt, "vdi") == 0);
		check_against_qemu(dyn);
		check_against_qemu(fix);
		check_inspect(dyn, "dynamic");
		check_inspect(fix, "fixed");
		if (i == 0) {
			size_t l;
			uint8_t *want = slurp(raw, &l);
			if (want)
				test_threads(dyn, want, l);
			free(want);
		}
		unlink(raw);
		unlink(dyn);
		unlink(fix);
		free(content);
	}
}

/* ---- differencing image made by hand ---- */

static void test_differencing(void)
{
	const size_t size = 6 * MiB;
	uint8_t *base = make_content(size, 7), *child = calloc(1, size);
	uint8_t *want = malloc(size), *hb = NULL, *hc = NULL, *got;
	size_t lb = 0, lc = 0;
	uint64_t glen = 0;
	int layers = 0;
	char dir[512], braw[600], craw[600], bvdi[600], cvdi[600];
	uint32_t ob;
	vmb_disk *d = NULL;
	char *json = NULL;

	snprintf(dir, sizeof dir, "%s/diff", test_tmpdir());
	mkdir(dir, 0700);
	snprintf(braw, sizeof braw, "%s/../base.raw", dir);
	snprintf(craw, sizeof craw, "%s/../child.raw", dir);
	snprintf(bvdi, sizeof bvdi, "%s/base.vdi", dir);
	snprintf(cvdi, sizeof cvdi, "%s/child.vdi", dir);
	/* base: data in every block */
	for (size_t b = 0; b < size / MiB; b++)
		test_random(base + b * MiB + 4096, 8192, b + 1);
	/* child: data in blocks 1 and 4 only */
	test_random(child + 1 * MiB, MiB, 41);
	test_random(child + 4 * MiB + 12345, 1000, 44);
	CHECK(spit(braw, base, size) == 0 && spit(craw, child, size) == 0);
	CHECK(test_sh("qemu-img convert -f raw -O vdi '%s' '%s'", braw,
		      bvdi) == 0);
	CHECK(test_sh("qemu-img convert -f raw -O vdi '%s' '%s'", craw,
		      cvdi) == 0);
	hb = slurp(bvdi, &lb);
	hc = slurp(cvdi, &lc);
	CHECK(hb && hc && lb > 0x200 && lc > 0x200);
	if (!hb || !hc || lb <= 0x200 || lc <= 0x200)
		goto out;
	/* turn the child into a differencing image of the base */
	vmb_put_le32(hc + 0x4c, 4);
	memcpy(hc + 0x1a8, hb + 0x188, 16);
	ob = vmb_le32(hc + 0x154);
	CHECK(vmb_le32(hc + ob + 0) == 0xffffffffu);
	CHECK(vmb_le32(hc + ob + 4) != 0xffffffffu);
	/* block 2: explicitly zero in the child, hiding the base */
	vmb_put_le32(hc + ob + 8, 0xfffffffeu);
	CHECK(spit(cvdi, hc, lc) == 0);
	for (size_t b = 0; b < size / MiB; b++) {
		const uint8_t *src = b == 1 || b == 4 ? child : base;
		if (b == 2)
			memset(want + b * MiB, 0, MiB);
		else
			memcpy(want + b * MiB, src + b * MiB, MiB);
	}
	got = read_disk(cvdi, 0, &glen, &layers);
	CHECK(got && glen == size && layers == 2);
	if (got && glen == size)
		CHECK(memcmp(got, want, size) == 0);
	free(got);
	/* alone: the child's holes read as zeros */
	got = read_disk(cvdi, VMB_DISK_OPEN_NO_BACKING, &glen, &layers);
	CHECK(got && layers == 1);
	if (got && glen == size) {
		CHECK(memcmp(got + MiB, child + MiB, MiB) == 0);
		CHECK(vmb_is_zero(got, MiB));
	}
	free(got);
	CHECK_OK(vmb_disk_open(cvdi, VMB_DISK_OPEN_NO_BACKING, &d));
	if (d) {
		CHECK_OK(vmb_disk_inspect_json(d, &json));
		CHECK(json && strstr(json, "\"image_type\":\"differencing\""));
		CHECK(json && strstr(json, "\"parent_uuid\":\""));
		CHECK(json && strstr(json, "\"blocks_allocated\":2"));
		vmb_free(json);
		vmb_disk_close(d);
	}
	/* the parent's uuid is printed in RTUUID order: the first three
	 * fields are little endian */
	{
		char want_uuid[64], *pj = NULL;
		vmb_disk *bd = NULL;
		const uint8_t *u = hb + 0x188;
		snprintf(want_uuid, sizeof want_uuid,
			 "\"uuid\":\"%02x%02x%02x%02x-%02x%02x-%02x%02x-"
			 "%02x%02x-%02x%02x%02x%02x%02x%02x\"",
			 u[3], u[2], u[1], u[0], u[5], u[4], u[7], u[6], u[8],
			 u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
		CHECK_OK(vmb_disk_open(bvdi, 0, &bd));
		if (bd) {
			CHECK_OK(vmb_disk_inspect_json(bd, &pj));
			CHECK(pj && strstr(pj, want_uuid));
			vmb_free(pj);
			vmb_disk_close(bd);
		}
	}
	/* parent missing: a clear not-found error */
	CHECK(rename(bvdi, braw) == 0);
	d = NULL;
	CHECK_ERR(vmb_disk_open(cvdi, 0, &d), VMB_ENOTFOUND);
	CHECK(strstr(vmb_error_message(), "child.vdi") != NULL);
	vmb_disk_close(d);
out:
	unlink(braw);
	unlink(craw);
	free(base);
	free(child);
	free(want);
	free(hb);
	free(hc);
}

/* ---- hand-built images: small blocks, extra data, scattered blocks ---- */

/*
 * Build a VDI with block size bs, extra bytes per block, and the given map
 * (physical index or 0xffffffff / 0xfffffffe); data block k is filled with
 * test_random(seed k) and its extra prefix with 0xee.  Returns the image
 * and fills want with the expected disk content.
 */
static uint8_t *build_vdi(uint32_t bs, uint32_t extra, const uint32_t *map,
			  uint32_t n, uint64_t disk, size_t *len, uint8_t *want)
{
	uint32_t nalloc = 0, od;
	uint64_t stride = (uint64_t)bs + extra;
	uint8_t *img;
	for (uint32_t i = 0; i < n; i++)
		if (map[i] < 0xfffffffeu && map[i] + 1 > nalloc)
			nalloc = map[i] + 1;
	od = 0x200 + (n * 4 + 511) / 512 * 512;
	*len = od + nalloc * stride;
	img = calloc(1, *len);
	memcpy(img, "<<< Oracle VM VirtualBox Disk Image >>>\n", 40);
	vmb_put_le32(img + 0x40, 0xbeda107fu);
	vmb_put_le32(img + 0x44, 0x00010001u);
	vmb_put_le32(img + 0x48, 0x190);
	vmb_put_le32(img + 0x4c, 1);
	vmb_put_le32(img + 0x154, 0x200);
	vmb_put_le32(img + 0x158, od);
	vmb_put_le32(img + 0x168, 512);
	vmb_put_le64(img + 0x170, disk);
	vmb_put_le32(img + 0x178, bs);
	vmb_put_le32(img + 0x17c, extra);
	vmb_put_le32(img + 0x180, n);
	vmb_put_le32(img + 0x184, nalloc);
	test_random(img + 0x188, 16, bs + extra);
	for (uint32_t k = 0; k < nalloc; k++) {
		uint8_t *b = img + od + k * stride;
		memset(b, 0xee, extra);
		test_random(b + extra, bs, 1000 + k);
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = (uint64_t)i * bs;
		size_t m = (size_t)VMB_MIN((uint64_t)bs, disk > off ?
					   disk - off : 0);
		vmb_put_le32(img + 0x200 + 4 * i, map[i]);
		if (!m)
			continue;
		if (map[i] < 0xfffffffeu)
			memcpy(want + off, img + od + map[i] * stride + extra,
			       m);
		else
			memset(want + off, 0, m);
	}
	return img;
}

static void test_handmade(void)
{
	static const uint32_t F = 0xffffffffu, Z = 0xfffffffeu;
	/* in order (coalesced reads), reversed, gaps, zero, free */
	static const uint32_t map[] = { 0, 1, 2, F, 3, Z, 7, 6, 5, 4, 8, F,
					9, 10 };
	static const struct {
		uint32_t bs, extra;
	} cases[] = { { 4096, 0 }, { 4096, 512 }, { 512, 0 },
		      { 65536, 1024 } };
	for (size_t c = 0; c < VMB_ARRAY_SIZE(cases); c++) {
		uint32_t n = VMB_ARRAY_SIZE(map);
		uint64_t disk = (uint64_t)n * cases[c].bs - 100, glen = 0;
		uint8_t *want = calloc(1, (size_t)n * cases[c].bs), *img, *got;
		size_t len;
		const char *path = test_path("hand.vdi");
		img = build_vdi(cases[c].bs, cases[c].extra, map, n, disk, &len,
				want);
		CHECK(spit(path, img, len) == 0);
		got = read_disk(path, 0, &glen, NULL);
		CHECK(got && glen == disk);
		if (got && glen == disk)
			CHECK(memcmp(got, want, (size_t)disk) == 0);
		free(got);
		free(img);
		free(want);
		unlink(path);
	}
}

/* ---- writer ---- */

static void write_image(const char *path, const uint8_t *content,
			uint64_t size, int mode)
{
	vmb_disk_writer *w = NULL;
	const size_t piece = 64 * KiB;
	CHECK_OK(vmb_disk_writer_create(path, "vdi", size, NULL, &w));
	if (!w)
		return;
	if (mode == 0) {
		/* 64 KiB pieces, skipping a few that are zero anyway */
		for (uint64_t off = 0; off < size; off += piece) {
			size_t n = (size_t)VMB_MIN((uint64_t)piece, size - off);
			if (vmb_is_zero(content + off, n) && (off / piece) % 3)
				continue;
			CHECK_OK(vmb_disk_writer_write(w, off, content + off,
						       n));
		}
	} else {
		/* big writes of 5 MiB + 64 KiB */
		const size_t big = 5 * MiB + piece;
		for (uint64_t off = 0; off < size; off += big) {
			size_t n = (size_t)VMB_MIN((uint64_t)big, size - off);
			CHECK_OK(vmb_disk_writer_write(w, off, content + off,
						       n));
		}
	}
	CHECK_OK(vmb_disk_writer_finish(w));
	vmb_disk_writer_free(w);
}

static void test_writer(void)
{
	static const uint64_t sizes[] = { 9 * MiB + 192 * KiB + 512,
					  4 * MiB, 64 * KiB, 3 * MiB + 1000,
					  0 };
	for (size_t i = 0; i < VMB_ARRAY_SIZE(sizes); i++) {
		for (int mode = 0; mode < 2; mode++) {
			uint64_t size = sizes[i], glen = 0;
			uint8_t *content = make_content((size_t)size,
							 200 + i);
			const char *raw = test_path("w.raw");
			const char *vdi = test_path("w.vdi");
			uint8_t *got;
			CHECK(spit(raw, content, (size_t)size) == 0);
			write_image(vdi, content, size, mode);
			CHECK(test_sh("qemu-img check -q -f vdi '%s'", vdi) ==
			      0);
			CHECK(test_sh("qemu-img compare -q -f vdi -F raw "
				      "'%s' '%s'", vdi, raw) == 0);
			got = read_disk(vdi, 0, &glen, NULL);
			CHECK(got && glen == size);
			if (got && glen == size)
				CHECK(memcmp(got, content, (size_t)size) == 0);
			if (size > 4 * MiB)
				check_inspect(vdi, "dynamic");
			free(got);
			free(content);
			unlink(raw);
			unlink(vdi);
		}
	}
	/* an all-zero disk allocates nothing */
	{
		const char *vdi = test_path("z.vdi");
		uint8_t *zero = calloc(1, 2 * MiB);
		struct stat st;
		write_image(vdi, zero, 2 * MiB, 1);
		CHECK(stat(vdi, &st) == 0 && st.st_size <= (off_t)MiB);
		CHECK(test_sh("qemu-img check -q -f vdi '%s'", vdi) == 0);
		free(zero);
		unlink(vdi);
	}
	/* other block sizes through cluster_size (read back by us only:
	 * qemu-img accepts 1 MiB blocks only) */
	{
		const char *vdi = test_path("c.vdi");
		vmb_disk_writer_options o = VMB_DISK_WRITER_INIT;
		vmb_disk_writer *w = NULL;
		const uint64_t size = 3 * MiB + 64 * KiB;
		uint8_t *content = make_content((size_t)size, 77), *got;
		uint64_t glen = 0;
		o.cluster_size = 256 * KiB;
		CHECK_OK(vmb_disk_writer_create(vdi, "vdi", size, &o, &w));
		for (uint64_t off = 0; w && off < size; off += 64 * KiB)
			CHECK_OK(vmb_disk_writer_write(w, off, content + off,
						       64 * KiB));
		if (w)
			CHECK_OK(vmb_disk_writer_finish(w));
		vmb_disk_writer_free(w);
		got = read_disk(vdi, 0, &glen, NULL);
		CHECK(got && glen == size);
		if (got && glen == size)
			CHECK(memcmp(got, content, (size_t)size) == 0);
		free(got);
		free(content);
		unlink(vdi);
		o.cluster_size = 3000;
		w = NULL;
		CHECK_ERR(vmb_disk_writer_create(vdi, "vdi", size, &o, &w),
			  VMB_EINVAL);
		vmb_disk_writer_free(w);
		CHECK(access(vdi, F_OK) != 0);
	}
	/* abort removes the file; an existing file is refused */
	{
		const char *vdi = test_path("a.vdi");
		vmb_disk_writer *w = NULL;
		uint8_t blk[64 * KiB];
		memset(blk, 0x5a, sizeof blk);
		CHECK_OK(vmb_disk_writer_create(vdi, "vdi", 4 * MiB, NULL, &w));
		if (w)
			CHECK_OK(vmb_disk_writer_write(w, 0, blk, sizeof blk));
		vmb_disk_writer_free(w);
		CHECK(access(vdi, F_OK) != 0);
		CHECK(spit(vdi, "x", 1) == 0);
		w = NULL;
		CHECK_ERR(vmb_disk_writer_create(vdi, "vdi", MiB, NULL, &w),
			  VMB_EEXISTS);
		vmb_disk_writer_free(w);
		unlink(vdi);
	}
}

/* ---- malformed images ---- */

static int bad_count;

static void expect_bad(const uint8_t *img, size_t len, const char *what)
{
	char name[64];
	const char *path;
	vmb_disk *d = NULL;
	struct timespec t0, t1;
	const char *msg;
	int r;
	snprintf(name, sizeof name, "bad-%02d.vdi", bad_count++);
	path = test_path(name);
	CHECK(spit(path, img, len) == 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	r = vmb_disk_open(path, 0, &d);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	msg = vmb_error_message();
	if (r >= 0)
		fprintf(stderr, "malformed image accepted: %s\n", what);
	CHECK(r < 0);
	CHECK(d == NULL);
	CHECK(msg && strstr(msg, name) && !strchr(msg, '\n'));
	CHECK((t1.tv_sec - t0.tv_sec) * 1000 +
	      (t1.tv_nsec - t0.tv_nsec) / 1000000 < 2000);
	if (getenv("VMB_TEST_VERBOSE"))
		fprintf(stderr, "%s: %s\n", what, msg);
	vmb_disk_close(d);
	unlink(path);
}

static void test_malformed(void)
{
	const size_t size = 4 * MiB;
	uint8_t *content = calloc(1, size), *img, *m;
	const char *raw = test_path("m.raw"), *vdi = test_path("m.vdi");
	size_t len = 0;
	uint32_t ob, od;

	test_random(content + MiB, MiB, 1);
	test_random(content + 3 * MiB, 4096, 3);
	CHECK(spit(raw, content, size) == 0);
	CHECK(test_sh("qemu-img convert -f raw -O vdi '%s' '%s'", raw, vdi) ==
	      0);
	img = slurp(vdi, &len);
	CHECK(img && len > 2 * MiB);
	if (!img || len <= 2 * MiB)
		goto out;
	m = malloc(len);
	ob = vmb_le32(img + 0x154);
	od = vmb_le32(img + 0x158);
#define MUT(what, stmt) do { memcpy(m, img, len); stmt; \
			     expect_bad(m, len, what); } while (0)
	MUT("block map offset past end", vmb_put_le32(m + 0x154, 0x7ffffe00));
	MUT("block map offset inside header", vmb_put_le32(m + 0x154, 0));
	MUT("absurd disk size", vmb_put_le64(m + 0x170, 1ULL << 60));
	MUT("disk size larger than the map",
	    vmb_put_le64(m + 0x170, 64ULL << 30));
	MUT("block size 0", vmb_put_le32(m + 0x178, 0));
	MUT("block size 2^31", vmb_put_le32(m + 0x178, 0x80000000u));
	MUT("block size not a power of two", vmb_put_le32(m + 0x178, 3000));
	MUT("block count absurd", vmb_put_le32(m + 0x180, 0xfffffff0u));
	MUT("duplicate block map entries",
	    vmb_put_le32(m + ob + 12, vmb_le32(m + ob + 4)));
	MUT("map entry beyond allocated",
	    vmb_put_le32(m + ob + 12, 7));
	MUT("blocks allocated absurd", vmb_put_le32(m + 0x184, 0x10000000));
	MUT("wrong version 1.0", vmb_put_le32(m + 0x44, 0x00010000));
	MUT("wrong version 2.1", vmb_put_le32(m + 0x44, 0x00020001));
	MUT("header size too small", vmb_put_le32(m + 0x48, 0x100));
	MUT("unknown image type", vmb_put_le32(m + 0x4c, 9));
	MUT("undo image", vmb_put_le32(m + 0x4c, 3));
	MUT("differencing without parent", vmb_put_le32(m + 0x4c, 4));
	MUT("data offset unaligned", vmb_put_le32(m + 0x158, od + 1));
	MUT("data offset past end", vmb_put_le32(m + 0x158, 0x7ffffe00));
	MUT("data offset inside map", vmb_put_le32(m + 0x158, ob));
	MUT("extra block data", vmb_put_le32(m + 0x17c, 7));
	MUT("fixed with holes", vmb_put_le32(m + 0x4c, 2));
	MUT("random bytes behind a valid signature",
	    test_random(m + 0x44, len - 0x44, 9));
	MUT("random header behind signature and version",
	    test_random(m + 0x48, 0x200 - 0x48, 10));
	expect_bad(img, od + MiB / 2, "truncated in the first data block");
	expect_bad(img, od + MiB + MiB / 2, "truncated in the last data block");
	expect_bad(img, ob + 4, "truncated in the map");
	expect_bad(img, 0x100, "truncated header");
	free(m);
#undef MUT
out:
	free(img);
	free(content);
	unlink(raw);
	unlink(vdi);
}

int main(void)
{
	if (test_sh("qemu-img --version >/dev/null 2>&1") != 0)
		test_skip("qemu-img is not installed");
	test_qemu_images();
	test_differencing();
	test_handmade();
	test_writer();
	test_malformed();
	return test_done();
}
