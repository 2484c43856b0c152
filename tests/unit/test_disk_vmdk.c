/*
 * VMDK reader and writer, checked against qemu-img: every subformat qemu-img
 * writes reads back byte-identical to `qemu-img convert -O raw`; images we
 * write pass `qemu-img compare` and `qemu-img check`; malformed images fail
 * quickly with a one-line message.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"
#include "vmbackup/disk.h"
#include "common/util.h"

#define MiB (1024ULL * 1024)
/* 70 MiB + 3 sectors: several grain tables, last grain partial */
#define SRC_SIZE (70 * MiB + 1536)

static uint8_t *src_buf;

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b;
	long n;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc(n > 0 ? (size_t)n : 1);
	if (b && n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

static int spew(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	int ok;
	if (!f)
		return -1;
	ok = fwrite(buf, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* The source disk: data, text, holes, partial grains, a partial tail. */
static void make_source(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t pos = 0;
	src_buf = calloc(1, SRC_SIZE);
	test_random(src_buf, 64 * 1024, 1);
	while (pos < 200 * 1024) {
		char line[128];
		int n = snprintf(line, sizeof line,
				 "The quick brown fox jumps over the lazy dog, line %zu\n",
				 pos);
		memcpy(src_buf + MiB + pos, line,
		       VMB_MIN((size_t)n, 200 * 1024 - pos));
		pos += (size_t)n;
	}
	memset(src_buf + 5 * MiB + 4096, 0xff, 512);
	test_random(src_buf + 33 * MiB, MiB, 2);
	test_random(src_buf + SRC_SIZE - 70000, 70000, 3);
	/* write only the non-zero 64 KiB blocks: the rest stays a hole */
	for (size_t o = 0; o < SRC_SIZE; o += 65536) {
		size_t n = VMB_MIN((size_t)65536, (size_t)(SRC_SIZE - o));
		if (!vmb_is_zero(src_buf + o, n) &&
		    pwrite(fd, src_buf + o, n, (off_t)o) != (ssize_t)n)
			abort();
	}
	if (ftruncate(fd, SRC_SIZE) != 0)
		abort();
	close(fd);
}

struct mapstat {
	uint64_t bytes[3];
	uint64_t next;
	int bad;
};

static int stat_cb(const vmb_extent *e, void *p)
{
	struct mapstat *m = p;
	if (e->offset != m->next || e->kind < 0 || e->kind > 2)
		m->bad = 1;
	m->next = e->offset + e->length;
	m->bytes[e->kind] += e->length;
	return 0;
}

struct kindq {
	uint64_t at;
	int kind, layer;
};

static int kind_cb(const vmb_extent *e, void *p)
{
	struct kindq *q = p;
	if (q->at >= e->offset && q->at < e->offset + e->length) {
		q->kind = e->kind;
		q->layer = e->layer;
		return 1;
	}
	return 0;
}

static int kind_at(vmb_disk *d, uint64_t at, int *layer)
{
	struct kindq q = { at, -1, -2 };
	vmb_disk_map(d, at, 512, kind_cb, &q);
	if (layer)
		*layer = q.layer;
	return q.kind;
}

/* Open img and compare every byte with ref (a raw file); odd chunking. */
static int same_as(const char *img, const char *ref, vmb_disk **keep)
{
	vmb_disk *d = NULL;
	size_t rlen = 0;
	uint8_t *r = slurp(ref, &rlen), *buf;
	int ok = 1;
	const size_t chunk = 3 * MiB + 4608;

	if (!r || vmb_disk_open(img, 0, &d) != 0) {
		fprintf(stderr, "cannot open %s: %s\n", img, vmb_error_message());
		free(r);
		return 0;
	}
	if (vmb_disk_size(d) != rlen) {
		fprintf(stderr, "%s: size %llu, want %zu\n", img,
			(unsigned long long)vmb_disk_size(d), rlen);
		ok = 0;
	}
	buf = malloc(chunk);
	for (size_t o = 0; ok && o < rlen; o += chunk) {
		size_t n = VMB_MIN(chunk, rlen - o);
		if (vmb_disk_read(d, buf, o, n) != 0) {
			fprintf(stderr, "%s: read at %zu: %s\n", img, o,
				vmb_error_message());
			ok = 0;
		} else if (memcmp(buf, r + o, n) != 0) {
			fprintf(stderr, "%s: differs in [%zu, +%zu)\n", img, o, n);
			ok = 0;
		}
	}
	free(buf);
	free(r);
	if (keep && ok)
		*keep = d;
	else
		vmb_disk_close(d);
	return ok;
}

static void check_map_covers(vmb_disk *d, struct mapstat *m)
{
	memset(m, 0, sizeof *m);
	CHECK_OK(vmb_disk_map(d, 0, vmb_disk_size(d), stat_cb, m));
	CHECK(!m->bad);
	CHECK(m->next == vmb_disk_size(d));
}

/* ---- concurrent reads ---- */

struct thr {
	vmb_disk *d;
	const uint8_t *ref;
	uint64_t size;
	int seed;
	int fails;
};

static void *reader(void *p)
{
	struct thr *t = p;
	uint8_t *buf = malloc(300 * 1024);
	uint64_t x = (uint64_t)t->seed * 7919 + 17;
	for (int i = 0; i < 200; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t len = (x >> 40) % (300 * 1024) + 1;
		uint64_t off = (x >> 7) % (t->size - len);
		if (vmb_disk_read(t->d, buf, off, len) != 0 ||
		    memcmp(buf, t->ref + off, len) != 0)
			t->fails++;
	}
	free(buf);
	return NULL;
}

static void check_threads(vmb_disk *d, const uint8_t *ref)
{
	pthread_t th[4];
	struct thr t[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){ d, ref, vmb_disk_size(d), i, 0 };
		pthread_create(&th[i], NULL, reader, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK(t[i].fails == 0);
	}
}

/* ---- qemu-img images ---- */

static void test_qemu_subformats(const char *src)
{
	static const char *const subs[] = {
		"monolithicSparse", "twoGbMaxExtentSparse", "monolithicFlat",
		"twoGbMaxExtentFlat", "streamOptimized",
	};
	for (size_t i = 0; i < VMB_ARRAY_SIZE(subs); i++) {
		char img[64], ref[64];
		vmb_disk *d = NULL;
		struct mapstat m;
		int sparse = strstr(subs[i], "Sparse") ||
			     strstr(subs[i], "stream");
		snprintf(img, sizeof img, "q-%s.vmdk", subs[i]);
		snprintf(ref, sizeof ref, "q-%s.raw", subs[i]);
		CHECK(test_sh("cd '%s' && qemu-img convert -f raw -O vmdk -o subformat=%s src.raw %s",
			      test_tmpdir(), subs[i], img) == 0);
		CHECK(test_sh("cd '%s' && qemu-img convert -f vmdk -O raw %s %s",
			      test_tmpdir(), img, ref) == 0);
		CHECK(same_as(test_path(img), test_path(ref), &d));
		if (!d)
			continue;
		CHECK(strcmp(vmb_disk_format_name(d), "vmdk") == 0);
		CHECK(vmb_disk_layers(d) == 1);
		check_map_covers(d, &m);
		CHECK(kind_at(d, 0, NULL) == VMB_EXTENT_DATA);
		CHECK(kind_at(d, 33 * MiB + 4096, NULL) == VMB_EXTENT_DATA);
		CHECK(kind_at(d, SRC_SIZE - 512, NULL) == VMB_EXTENT_DATA);
		if (sparse) {
			int layer;
			CHECK(kind_at(d, 20 * MiB, &layer) == VMB_EXTENT_HOLE);
			CHECK(layer == -1);
			CHECK(m.bytes[VMB_EXTENT_DATA] < 4 * MiB);
		}
		{
			char *json = NULL;
			char want[80];
			CHECK_OK(vmb_disk_inspect_json(d, &json));
			snprintf(want, sizeof want, "\"create_type\":\"%s\"",
				 subs[i]);
			CHECK(json && strstr(json, want));
			if (sparse)
				CHECK(json && strstr(json, "\"grain_size\":65536"));
			if (strstr(subs[i], "stream"))
				CHECK(json && strstr(json, "\"compressed\":true"));
			vmb_free(json);
		}
		if (i == 0 || i == 4)
			check_threads(d, src_buf);
		vmb_disk_close(d);
		{
			const char *fmt = NULL;
			CHECK_OK(vmb_disk_probe(test_path(img), &fmt));
			CHECK(fmt && strcmp(fmt, "vmdk") == 0);
		}
	}
}

/* Multi-extent images (> 2 GiB) written by qemu-io with patterns. */
static void test_two_gb(void)
{
	static const char *const subs[] = { "twoGbMaxExtentSparse",
					    "twoGbMaxExtentFlat" };
	static const struct { uint64_t off, len; int pat; } w[] = {
		{ 4096, 8192, 0x11 },
		{ 2 * 1024 * MiB - 64 * 1024, 256 * 1024, 0x22 },
		{ 4 * 1024 * MiB + 3 * MiB, MiB, 0x33 },
		{ 5 * 1024 * MiB - 65536, 65536, 0x44 },
	};
	for (size_t i = 0; i < VMB_ARRAY_SIZE(subs); i++) {
		char img[64];
		vmb_disk *d = NULL;
		struct mapstat m;
		uint8_t *buf = malloc(2 * MiB);
		snprintf(img, sizeof img, "big-%s.vmdk", subs[i]);
		CHECK(test_sh("cd '%s' && qemu-img create -q -f vmdk -o subformat=%s %s 5G",
			      test_tmpdir(), subs[i], img) == 0);
		for (size_t k = 0; k < VMB_ARRAY_SIZE(w); k++)
			CHECK(test_sh("cd '%s' && qemu-io -f vmdk -c 'write -q -P %d %llu %llu' %s",
				      test_tmpdir(), w[k].pat,
				      (unsigned long long)w[k].off,
				      (unsigned long long)w[k].len, img) == 0);
		CHECK_OK(vmb_disk_open(test_path(img), 0, &d));
		if (!d) {
			free(buf);
			continue;
		}
		CHECK(vmb_disk_size(d) == 5 * 1024 * MiB);
		for (size_t k = 0; k < VMB_ARRAY_SIZE(w); k++) {
			/* the pattern and zeros around it */
			uint64_t lo = w[k].off >= 65536 ? w[k].off - 65536 : 0;
			uint64_t hi = VMB_MIN(w[k].off + w[k].len + 65536,
					      5 * 1024 * MiB);
			int good = 1;
			CHECK_OK(vmb_disk_read(d, buf, lo, hi - lo));
			for (uint64_t o = lo; o < hi; o++) {
				int want = o >= w[k].off &&
					   o < w[k].off + w[k].len ? w[k].pat : 0;
				if (buf[o - lo] != want) {
					good = 0;
					break;
				}
			}
			CHECK(good);
		}
		check_map_covers(d, &m);
		if (strstr(subs[i], "Sparse")) {
			/* each write allocates whole 64 KiB grains */
			CHECK(m.bytes[VMB_EXTENT_DATA] == 64 * 1024 +
			      256 * 1024 + MiB + 64 * 1024);
		}
		{
			char *json = NULL;
			CHECK_OK(vmb_disk_inspect_json(d, &json));
			CHECK(json && (strstr(json, "-f003.vmdk") || strstr(json, "-s003.vmdk")));
			vmb_free(json);
		}
		vmb_disk_close(d);
		free(buf);
	}
}

static void test_delta(void)
{
	vmb_disk *d = NULL;
	int layer;
	/* base from the source; a delta on top with partial-grain writes */
	CHECK(test_sh("cd '%s' && qemu-img convert -f raw -O vmdk src.raw base.vmdk && "
		      "qemu-img create -q -f vmdk -o zeroed_grain=on -b base.vmdk -F vmdk delta.vmdk && "
		      "qemu-io -f vmdk -c 'write -q -P 0x5a 1M 64k' -c 'write -q -P 0x77 4100k 8k' "
		      "-c 'write -q -z 33M 64k' -c 'write -q -P 0x66 50M 4k' delta.vmdk && "
		      "qemu-img convert -f vmdk -O raw delta.vmdk delta.raw",
		      test_tmpdir()) == 0);
	CHECK(same_as(test_path("delta.vmdk"), test_path("delta.raw"), &d));
	if (!d)
		return;
	CHECK(vmb_disk_layers(d) == 2);
	CHECK(kind_at(d, MiB, &layer) == VMB_EXTENT_DATA && layer == 0);
	CHECK(kind_at(d, 0, &layer) == VMB_EXTENT_DATA && layer == 1);
	CHECK(kind_at(d, 33 * MiB, &layer) == VMB_EXTENT_ZERO && layer == 0);
	CHECK(kind_at(d, 20 * MiB, &layer) == VMB_EXTENT_HOLE);
	{
		char *json = NULL;
		CHECK_OK(vmb_disk_inspect_json(d, &json));
		CHECK(json && strstr(json, "\"parent_hint\":\"base.vmdk\""));
		vmb_free(json);
	}
	vmb_disk_close(d);
	/* without the backing file the delta alone still opens */
	CHECK_OK(vmb_disk_open(test_path("delta.vmdk"), VMB_DISK_OPEN_NO_BACKING,
			       &d));
	if (d) {
		CHECK(vmb_disk_layers(d) == 1);
		CHECK(kind_at(d, 0, NULL) == VMB_EXTENT_HOLE);
		vmb_disk_close(d);
	}
}

/* ---- writer ---- */

static void write_image(const char *path, const char *sub, uint32_t grain)
{
	vmb_disk_writer_options o = VMB_DISK_WRITER_INIT;
	vmb_disk_writer *w = NULL;
	uint64_t off = 0;
	int k = 0;
	o.subformat = sub;
	o.cluster_size = grain;
	CHECK_OK(vmb_disk_writer_create(path, "vmdk", SRC_SIZE, &o, &w));
	if (!w)
		return;
	/* chunks of varying sizes, skipping some zero ranges entirely */
	while (off < SRC_SIZE) {
		uint64_t n = (uint64_t)(1 + k % 5) * 64 * 1024 * (k % 3 ? 1 : 16);
		if (n > SRC_SIZE - off)
			n = SRC_SIZE - off;
		if (!(k % 4 == 3 && vmb_is_zero(src_buf + off, n)))
			CHECK_OK(vmb_disk_writer_write(w, off, src_buf + off, n));
		off += n;
		k++;
	}
	CHECK_OK(vmb_disk_writer_finish(w));
	vmb_disk_writer_free(w);
}

static void test_writer(void)
{
	static const char *const subs[] = { NULL, "monolithicSparse",
					    "streamOptimized" };
	for (size_t i = 0; i < VMB_ARRAY_SIZE(subs); i++) {
		char name[64];
		vmb_disk *d = NULL;
		struct mapstat m;
		uint32_t grain = i == 1 ? 16384 : 0;
		snprintf(name, sizeof name, "w-%zu.vmdk", i);
		write_image(test_path(name), subs[i], grain);
		CHECK(test_sh("cd '%s' && qemu-img compare -q -f raw -F vmdk src.raw %s",
			      test_tmpdir(), name) == 0);
		CHECK(test_sh("cd '%s' && qemu-img check -q %s", test_tmpdir(),
			      name) == 0);
		CHECK(test_sh("cd '%s' && qemu-img info %s | grep -q 'virtual size: .*(%llu bytes)'",
			      test_tmpdir(), name,
			      (unsigned long long)SRC_SIZE) == 0);
		CHECK(same_as(test_path(name), test_path("src.raw"), &d));
		if (!d)
			continue;
		check_map_covers(d, &m);
		CHECK(kind_at(d, 20 * MiB, NULL) == VMB_EXTENT_HOLE);
		CHECK(m.bytes[VMB_EXTENT_DATA] < 4 * MiB);
		vmb_disk_close(d);
	}
	/* the stream must look like VMware's: GD at the end, footer */
	{
		size_t len = 0;
		uint8_t *b = slurp(test_path("w-2.vmdk"), &len);
		CHECK(b && len > 2048 && vmb_le64(b + 56) == ~0ULL);
		CHECK(b && vmb_le32(b + len - 1536 + 12) == 3);
		CHECK(b && vmb_le32(b + len - 1024) == 0x564D444B);
		free(b);
	}
	/* qemu-img converts our stream onwards */
	CHECK(test_sh("cd '%s' && qemu-img convert -f vmdk -O qcow2 w-2.vmdk w-2.qcow2 && "
		      "qemu-img compare -q -f raw -F qcow2 src.raw w-2.qcow2",
		      test_tmpdir()) == 0);
	/* tiny, odd-sized disks */
	{
		static const uint64_t sizes[] = { 512, 65536 + 512, 3 * 512 };
		for (size_t i = 0; i < VMB_ARRAY_SIZE(sizes); i++) {
			for (int s = 0; s < 2; s++) {
				vmb_disk_writer_options o = VMB_DISK_WRITER_INIT;
				vmb_disk_writer *w = NULL;
				char name[64];
				uint8_t *data = malloc(sizes[i]);
				test_random(data, sizes[i], 40 + i);
				o.subformat = s ? "streamOptimized" : NULL;
				snprintf(name, sizeof name, "tiny-%zu-%d", i, s);
				spew(test_path(name), data, sizes[i]);
				snprintf(name, sizeof name, "tiny-%zu-%d.vmdk", i, s);
				CHECK_OK(vmb_disk_writer_create(test_path(name), "vmdk",
								sizes[i], &o, &w));
				if (w) {
					CHECK_OK(vmb_disk_writer_write(w, 0, data, sizes[i]));
					CHECK_OK(vmb_disk_writer_finish(w));
					vmb_disk_writer_free(w);
				}
				CHECK(test_sh("cd '%s' && qemu-img compare -q -f raw -F vmdk tiny-%zu-%d %s",
					      test_tmpdir(), i, s, name) == 0);
				CHECK(test_sh("cd '%s' && qemu-img check -q %s",
					      test_tmpdir(), name) == 0);
				free(data);
			}
		}
	}
	/* abort removes the file; existing files are not overwritten */
	{
		vmb_disk_writer *w = NULL;
		struct stat st;
		CHECK_OK(vmb_disk_writer_create(test_path("ab.vmdk"), "vmdk",
						MiB, NULL, &w));
		if (w) {
			CHECK_OK(vmb_disk_writer_write(w, 0, src_buf, 65536));
			vmb_disk_writer_free(w);
		}
		CHECK(stat(test_path("ab.vmdk"), &st) != 0 && errno == ENOENT);
		CHECK_ERR(vmb_disk_writer_create(test_path("src.raw"), "vmdk",
						 MiB, NULL, &w), VMB_EEXISTS);
		vmb_disk_writer_options o = VMB_DISK_WRITER_INIT;
		o.subformat = "twoGbMaxExtentFlat";
		CHECK(vmb_disk_writer_create(test_path("x.vmdk"), "vmdk", MiB,
					     &o, &w) < 0);
		CHECK(vmb_disk_writer_create(test_path("x.vmdk"), "vmdk",
					     MiB + 100, NULL, &w) < 0);
	}
}

/* ---- malformed images ---- */

static void expect_bad(const char *name, const void *data, size_t len)
{
	vmb_disk *d = NULL;
	const char *path = test_path(name);
	double t0 = vmb_now();
	int r;
	if (data)
		spew(path, data, len);
	r = vmb_disk_open(path, VMB_DISK_OPEN_NO_BACKING, &d);
	if (r == 0) {
		/* some faults only show when the grains are touched */
		struct mapstat m;
		uint8_t *buf = malloc(MiB);
		memset(&m, 0, sizeof m);
		r = vmb_disk_map(d, 0, vmb_disk_size(d), stat_cb, &m);
		for (uint64_t o = 0; r == 0 && o < vmb_disk_size(d); o += MiB)
			r = vmb_disk_read(d, buf, o,
					  VMB_MIN(MiB, vmb_disk_size(d) - o));
		free(buf);
		vmb_disk_close(d);
	}
	test_checks++;
	if (r >= 0) {
		test_failures++;
		fprintf(stderr, "%s: malformed image was accepted\n", name);
	} else {
		const char *msg = vmb_error_message();
		CHECK(msg && msg[0] && !strchr(msg, '\n'));
		CHECK(msg && strstr(msg, name));
		if (getenv("VMB_TEST_VERBOSE"))
			printf("%-20s -> %d %s\n", name, r, msg);
	}
	CHECK(vmb_now() - t0 < 5.0);
}

static void patch_and_expect(const uint8_t *img, size_t len, const char *name,
			     size_t at, const void *bytes, size_t n)
{
	uint8_t *b = malloc(len);
	memcpy(b, img, len);
	memcpy(b + at, bytes, n);
	expect_bad(name, b, len);
	free(b);
}

static void put64(uint8_t *p, uint64_t v) { vmb_put_le64(p, v); }

static void test_malformed(void)
{
	size_t len = 0, slen = 0;
	uint8_t *img, *st, v8[8], v4[4];
	char *txt;

	CHECK(test_sh("cd '%s' && qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse src.raw m.vmdk",
		      test_tmpdir()) == 0);
	img = slurp(test_path("m.vmdk"), &len);
	st = slurp(test_path("w-2.vmdk"), &slen);
	if (!img || !st) {
		CHECK(0);
		free(img);
		free(st);
		return;
	}
	/* gd and rgd past the end */
	put64(v8, 1ULL << 40);
	patch_and_expect(img, len, "bad-gd.vmdk", 56, v8, 8);
	/* absurd capacity */
	put64(v8, 1ULL << 62);
	patch_and_expect(img, len, "bad-cap.vmdk", 12, v8, 8);
	/* grain size 0, huge, not a power of two */
	put64(v8, 0);
	patch_and_expect(img, len, "grain0.vmdk", 20, v8, 8);
	put64(v8, 1ULL << 40);
	patch_and_expect(img, len, "grainhuge.vmdk", 20, v8, 8);
	put64(v8, 100);
	patch_and_expect(img, len, "grain100.vmdk", 20, v8, 8);
	/* too many GTEs per GT */
	vmb_put_le32(v4, 4096);
	patch_and_expect(img, len, "gtes.vmdk", 44, v4, 4);
	/* descriptor huge / outside the file */
	put64(v8, 1ULL << 30);
	patch_and_expect(img, len, "deschuge.vmdk", 36, v8, 8);
	/* newline check bytes damaged */
	patch_and_expect(img, len, "newline.vmdk", 75, "\n", 1);
	/* embedded descriptor capacity disagreeing with the header */
	{
		uint8_t *b = malloc(len);
		char *p;
		memcpy(b, img, len);
		p = memmem(b + 512, 10240, "RW 143363", 9);
		CHECK(p != NULL);
		if (p) {
			memcpy(p, "RW 143364", 9);
			expect_bad("descsize.vmdk", b, len);
		}
		free(b);
	}
	/* truncated file */
	expect_bad("trunc.vmdk", img, 70000);
	expect_bad("trunc2.vmdk", img, 600);
	/* random bytes behind the magic */
	{
		uint8_t *b = malloc(65536);
		for (int seed = 0; seed < 20; seed++) {
			char name[32];
			test_random(b, 65536, 100 + seed);
			memcpy(b, "KDMV", 4);
			snprintf(name, sizeof name, "rnd%d.vmdk", seed);
			expect_bad(name, b, 65536);
		}
		free(b);
	}
	/* random damage in the metadata: must never crash or hang; any
	   failure is a one-line message */
	{
		uint8_t *b = malloc(len);
		uint64_t x = 99;
		int accepted = 0;
		for (int it = 0; it < 150; it++) {
			vmb_disk *d = NULL;
			double t0 = vmb_now();
			int r;
			memcpy(b, img, len);
			for (int k = 0; k < 1 + it % 8; k++) {
				x = x * 6364136223846793005ULL + 1;
				size_t at = (size_t)((x >> 33) % VMB_MIN(len, (size_t)65536));
				b[at] = (uint8_t)(x >> 20);
			}
			spew(test_path("mut.vmdk"), b, len);
			r = vmb_disk_open(test_path("mut.vmdk"),
					  VMB_DISK_OPEN_NO_BACKING, &d);
			if (r == 0) {
				struct mapstat m;
				uint8_t *buf = malloc(MiB);
				memset(&m, 0, sizeof m);
				r = vmb_disk_map(d, 0, vmb_disk_size(d), stat_cb, &m);
				if (r == 0 && vmb_disk_size(d) >= MiB)
					r = vmb_disk_read(d, buf, 0, MiB);
				free(buf);
				vmb_disk_close(d);
				accepted += r == 0;
			}
			if (r < 0)
				CHECK(!strchr(vmb_error_message(), '\n'));
			CHECK(vmb_now() - t0 < 5.0);
		}
		free(b);
		CHECK(accepted < 150);
	}
	/* a grain table entry pointing past the end of the file */
	{
		uint8_t *b = malloc(len);
		uint64_t gd = vmb_le64(img + 56);
		uint32_t gt0 = vmb_le32(img + gd * 512);
		memcpy(b, img, len);
		vmb_put_le32(b + gt0 * 512, 0x7fffffff);
		expect_bad("gte.vmdk", b, len);
		/* into the header */
		vmb_put_le32(b + gt0 * 512, 3);
		expect_bad("gte2.vmdk", b, len);
		free(b);
	}
	/* stream: damaged compressed data, bad marker size, bad footer */
	{
		uint8_t *b = malloc(slen);
		memcpy(b, st, slen);
		for (size_t o = 128 * 512 + 40; o < 128 * 512 + 400; o++)
			b[o] ^= 0x5a;
		expect_bad("zdata.vmdk", b, slen);
		memcpy(b, st, slen);
		vmb_put_le32(b + 128 * 512 + 8, 0x7fffffff);
		expect_bad("zmarker.vmdk", b, slen);
		memcpy(b, st, slen);
		vmb_put_le64(b + 128 * 512, 12345);
		expect_bad("zlba.vmdk", b, slen);
		memcpy(b, st, slen);
		b[slen - 1536 + 12] = 7;
		expect_bad("zfooter.vmdk", b, slen);
		expect_bad("ztrunc.vmdk", st, slen - 700);
		free(b);
	}
	/* descriptors escaping their folder, bad sizes, huge files */
	spew(test_path("ok-flat.bin"), src_buf, 4 * MiB);
	txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"
	      "RW 2048 FLAT \"../../etc/passwd\" 0\n";
	expect_bad("dotdot.vmdk", txt, strlen(txt));
	txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"
	      "RW 2 FLAT \"/etc/passwd\" 0\n";
	expect_bad("abs.vmdk", txt, strlen(txt));
	txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"
	      "RW 2 FLAT \"sub/../../x\" 0\n";
	expect_bad("dotdot2.vmdk", txt, strlen(txt));
	if (symlink("/etc", test_path("etclink")) == 0) {
		txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"
		      "RW 2 FLAT \"etclink/passwd\" 0\n";
		expect_bad("symlink.vmdk", txt, strlen(txt));
	}
	txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"
	      "RW 20000 FLAT \"ok-flat.bin\" 0\n";
	expect_bad("flatshort.vmdk", txt, strlen(txt));
	txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"twoGbMaxExtentSparse\"\n"
	      "RW 1000 SPARSE \"m.vmdk\"\n";
	expect_bad("sparsesize.vmdk", txt, strlen(txt));
	txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"
	      "RW 99999999999999999999 FLAT \"ok-flat.bin\" 0\n";
	expect_bad("bignum.vmdk", txt, strlen(txt));
	txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"vmfsSparse\"\n"
	      "RW 2048 VMFSSPARSE \"ok-flat.bin\"\n";
	expect_bad("cowd.vmdk", txt, strlen(txt));
	txt = "# Disk DescriptorFile\nversion=1\n"
	      "RW 2048 FLAT \"ok-flat.bin\" 0\n";
	expect_bad("notype.vmdk", txt, strlen(txt));
	txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n";
	expect_bad("noext.vmdk", txt, strlen(txt));
	{
		size_t n = 2 * MiB;
		char *big = malloc(n);
		memset(big, '#', n);
		memcpy(big, "# Disk DescriptorFile\n", 22);
		for (size_t o = 100; o < n; o += 80)
			big[o] = '\n';
		/* a text file this large is no descriptor: never probed as
		   one (a guest could write one into a raw disk) */
		{
			const char *fmt = NULL;
			spew(test_path("bigdesc.vmdk"), big, n);
			CHECK_OK(vmb_disk_probe(test_path("bigdesc.vmdk"), &fmt));
			CHECK(fmt && strcmp(fmt, "raw") == 0);
		}
		/* one very long line */
		memset(big, 'a', 20000);
		memcpy(big, "# Disk DescriptorFile\ncreateType=\"", 34);
		expect_bad("longline.vmdk", big, 20000);
		free(big);
	}
	/* a good flat descriptor still opens (sanity for the above) */
	{
		vmb_disk *d = NULL;
		uint8_t *buf = malloc(MiB);
		txt = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"
		      "RW 2048 FLAT \"ok-flat.bin\" 2048\nRDONLY 100 ZERO\n"
		      "NOACCESS 4 FLAT \"ok-flat.bin\" 0\n";
		spew(test_path("good.vmdk"), txt, strlen(txt));
		CHECK_OK(vmb_disk_open(test_path("good.vmdk"), 0, &d));
		if (d) {
			CHECK(vmb_disk_size(d) == (2048 + 100 + 4) * 512);
			CHECK_OK(vmb_disk_read(d, buf, 0, MiB));
			CHECK(memcmp(buf, src_buf + MiB, MiB) == 0);
			CHECK(kind_at(d, MiB + 512, NULL) == VMB_EXTENT_ZERO);
			vmb_disk_close(d);
		}
		free(buf);
	}
	free(img);
	free(st);
}

int main(void)
{
	if (test_sh("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1") != 0)
		test_skip("qemu-img/qemu-io not installed");
	make_source(test_path("src.raw"));
	test_qemu_subformats("src.raw");
	test_two_gb();
	test_delta();
	test_writer();
	test_malformed();
	free(src_buf);
	return test_done();
}
