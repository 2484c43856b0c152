/*
 * qcow2 reader and writer against qemu-img: every image variant QEMU
 * makes is read back byte for byte and its map compared with
 * `qemu-img map`; images we write must pass `qemu-img check` and
 * `qemu-img compare`; damaged images must fail quickly with one line.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "testutil.h"
#include "vmbackup/disk.h"
#include "common/util.h"
#include "disk/format.h"
#include "disk/qcow2.h"

#define SH(...) CHECK(test_sh(__VA_ARGS__) == 0)

static const char *Q = "qemu-img";
static const char *QIO = "qemu-io -f qcow2";

/* ---- helpers ---- */

/* test_path() returns one of a small ring of buffers: keep our own
 * copy, one per name, for the whole run */
static char tp_names[64][512];

static const char *tp(const char *name)
{
	const char *p = test_path(name);
	for (size_t i = 0; i < VMB_ARRAY_SIZE(tp_names); i++) {
		if (!tp_names[i][0])
			snprintf(tp_names[i], sizeof tp_names[i], "%s", p);
		if (!strcmp(tp_names[i], p))
			return tp_names[i];
	}
	fprintf(stderr, "tp: too many names\n");
	exit(1);
}

static uint8_t *slurp(const char *path, uint64_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *buf;
	*len = 0;
	if (fd < 0 || fstat(fd, &st) != 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (buf && vmb_pread_full(fd, buf, (size_t)st.st_size, 0) !=
			   (int64_t)st.st_size) {
		free(buf);
		buf = NULL;
	}
	close(fd);
	*len = (uint64_t)st.st_size;
	return buf;
}

/* A raw file with a mix of random, zero and half-zero 64 KiB blocks. */
static void make_source(const char *path, uint64_t size, uint64_t seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	uint8_t *blk = malloc(65536);
	CHECK(fd >= 0 && blk);
	if (fd < 0 || !blk) {
		free(blk);
		return;
	}
	CHECK(ftruncate(fd, (off_t)size) == 0);
	for (uint64_t off = 0, i = 0; off < size; off += 65536, i++) {
		uint64_t n = VMB_MIN(65536, size - off);
		unsigned mode = (unsigned)((i * 2654435761u + seed) % 5);
		if (mode == 0 || mode == 4)
			continue; /* hole */
		test_random(blk, 65536, seed * 1000 + i);
		if (mode == 2)
			memset(blk + 4096, 0, 65536 - 4096);
		CHECK(vmb_pwrite_full(fd, blk, (size_t)n, off) == 0);
	}
	close(fd);
	free(blk);
}

struct ext_list {
	vmb_extent *e;
	size_t n, cap;
};

static int collect(const vmb_extent *e, void *p)
{
	struct ext_list *l = p;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->e = realloc(l->e, l->cap * sizeof *l->e);
	}
	l->e[l->n++] = *e;
	return 0;
}

/* Compare our composed map with `qemu-img map`: data iff qemu says data. */
static void check_map(vmb_disk *d, const char *img, const char *label)
{
	struct ext_list ours = { 0 };
	uint64_t len, mismatches = 0, covered = 0;
	const char *map = tp("map.json");
	char *txt, *p;

	CHECK_OK(vmb_disk_map(d, 0, vmb_disk_size(d), collect, &ours));
	for (size_t i = 1; i < ours.n; i++)
		CHECK(ours.e[i].offset ==
		      ours.e[i - 1].offset + ours.e[i - 1].length);
	CHECK(test_sh("%s map --output=json '%s' > '%s'", Q, img, map) == 0);
	txt = (char *)slurp(map, &len);
	CHECK(txt != NULL);
	if (!txt)
		goto out;
	txt = realloc(txt, len + 1);
	txt[len] = 0;
	for (p = txt; (p = strstr(p, "\"start\":")) != NULL;) {
		unsigned long long start = 0, length = 0;
		char *obj_end = strchr(p, '}');
		char *dp;
		int data;
		sscanf(p, "\"start\": %llu, \"length\": %llu", &start, &length);
		dp = strstr(p, "\"data\":");
		data = dp && (!obj_end || dp < obj_end) &&
		       strncmp(dp, "\"data\": true", 12) == 0;
		covered += length;
		for (size_t i = 0; i < ours.n; i++) {
			vmb_extent *e = &ours.e[i];
			if (e->offset + e->length <= start ||
			    e->offset >= start + length)
				continue;
			if ((e->kind == VMB_EXTENT_DATA) != data) {
				if (mismatches++ < 3)
					fprintf(stderr, "%s: map differs at %llu+%llu: qemu data=%d, ours kind %d at %llu+%llu\n",
						label, start, length, data,
						e->kind,
						(unsigned long long)e->offset,
						(unsigned long long)e->length);
			}
		}
		p++;
	}
	CHECK(mismatches == 0);
	CHECK(covered == vmb_disk_size(d));
out:
	free(txt);
	free(ours.e);
}

/* Read the disk in pieces of `chunk` bytes and at random places and
 * compare with the reference raw file. */
static void check_read(vmb_disk *d, const uint8_t *ref, uint64_t size,
		       const char *label)
{
	size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk);
	uint64_t bad = 0, x = 12345;
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t n = (size_t)VMB_MIN(chunk, size - off);
		int r = vmb_disk_read(d, buf, off, n);
		if (r < 0 || memcmp(buf, ref + off, n) != 0) {
			if (bad++ < 3)
				fprintf(stderr, "%s: read at %llu differs (%d %s)\n",
					label, (unsigned long long)off, r,
					vmb_error_message());
		}
	}
	/* unaligned reads */
	for (int i = 0; i < 50 && size; i++) {
		uint64_t off, n;
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		off = (x >> 11) % size;
		n = VMB_MIN((x >> 40) % 300000 + 1, size - off);
		if (vmb_disk_read(d, buf, off, (size_t)n) < 0 ||
		    memcmp(buf, ref + off, (size_t)n) != 0) {
			if (bad++ < 3)
				fprintf(stderr, "%s: read %llu+%llu differs\n",
					label, (unsigned long long)off,
					(unsigned long long)n);
		}
	}
	CHECK(bad == 0);
	free(buf);
}

/* Open img, compare reads with `qemu-img convert -O raw` and the map
 * with `qemu-img map`. */
static void check_image(const char *img, const char *label)
{
	const char *raw = tp("ref.raw");
	vmb_disk *d = NULL;
	uint8_t *ref;
	uint64_t size;

	unlink(raw);
	CHECK(test_sh("%s convert -O raw '%s' '%s'", Q, img, raw) == 0);
	ref = slurp(raw, &size);
	CHECK(ref != NULL);
	CHECK_OK(vmb_disk_open(img, 0, &d));
	if (!d || !ref) {
		fprintf(stderr, "%s: cannot open\n", label);
		free(ref);
		return;
	}
	CHECK(strcmp(vmb_disk_format_name(d), "qcow2") == 0);
	CHECK(vmb_disk_size(d) == size);
	if (vmb_disk_size(d) == size) {
		check_read(d, ref, size, label);
		check_map(d, img, label);
	}
	vmb_disk_close(d);
	free(ref);
}

static char *inspect(const char *img)
{
	vmb_disk *d = NULL;
	char *json = NULL;
	if (vmb_disk_open(img, 0, &d) == 0)
		vmb_disk_inspect_json(d, &json);
	vmb_disk_close(d);
	return json;
}

/* ---- reader: every variant ---- */

static void test_variants(void)
{
	static const char *compat[] = { "0.10", "1.1" };
	static const unsigned cs[] = { 512, 4096, 65536, 2 << 20 };
	const char *src = tp("src.raw");
	uint64_t size = (6ULL << 20) + 1536; /* not a cluster multiple */

	make_source(src, size, 1);
	for (int v = 0; v < 2; v++) {
		for (size_t c = 0; c < VMB_ARRAY_SIZE(cs); c++) {
			char label[64];
			const char *img = tp("var.qcow2");
			unlink(img);
			snprintf(label, sizeof label, "compat=%s cs=%u",
				 compat[v], cs[c]);
			SH("%s convert -O qcow2 -o compat=%s,cluster_size=%u '%s' '%s'",
			   Q, compat[v], cs[c], src, img);
			SH("%s -c 'write -z 1M 192k' -c 'write -P 0xab 3M 4k' "
			   "-c 'write -z 4100k 8k' -c 'discard 2M 64k' '%s' >/dev/null",
			   QIO, img);
			check_image(img, label);
		}
	}
	/* describe */
	{
		const char *img = tp("desc.qcow2");
		char *json;
		SH("%s create -q -f qcow2 '%s' 1M", Q, img);
		json = inspect(img);
		CHECK(json && strstr(json, "\"format\":\"qcow2\""));
		CHECK(json && strstr(json, "\"version\":3,\"cluster_size\":65536"));
		CHECK(json && strstr(json, "\"compression_type\":\"zlib\""));
		CHECK(json && strstr(json, "\"extended_l2\":false"));
		CHECK(json && strstr(json, "\"bitmaps\":[]"));
		CHECK(json && strstr(json, "\"snapshots\":[]"));
		vmb_free(json);
	}
}

static void test_extended_l2(void)
{
	const char *base = tp("xbase.raw");
	const char *img = tp("x.qcow2");
	const char *ov = tp("xov.qcow2");
	char *json;

	for (int i = 0; i < 2; i++) {
		unsigned cs = i ? 16384 : 65536;
		char label[64];
		snprintf(label, sizeof label, "extended_l2 cs=%u", cs);
		unlink(img);
		SH("%s create -q -f qcow2 -o extended_l2=on,cluster_size=%u '%s' 4M",
		   Q, cs, img);
		SH("%s -c 'write -P 1 0 4k' -c 'write -P 2 70k 3k' "
		   "-c 'write -z 140k 8k' -c 'write -P 3 1M 64k' "
		   "-c 'write -z 2M 64k' -c 'write -P 4 3000k 1k' '%s' >/dev/null",
		   QIO, img);
		check_image(img, label);
	}
	json = inspect(img);
	CHECK(json && strstr(json, "\"extended_l2\":true"));
	vmb_free(json);

	/* unallocated subclusters fall through to the backing file */
	make_source(base, 4 << 20, 7);
	SH("%s create -q -f qcow2 -o extended_l2=on -b '%s' -F raw '%s'",
	   Q, base, ov);
	SH("%s -c 'write -P 9 1k 1k' -c 'write -z 66k 2k' "
	   "-c 'write -P 8 200k 5k' -c 'write -z 1M 64k' '%s' >/dev/null",
	   QIO, ov);
	check_image(ov, "extended_l2 overlay");
}

static void test_compressed(void)
{
	const char *src = tp("csrc.raw");
	const char *img = tp("c.qcow2");
	char *json;

	make_source(src, (5ULL << 20) + 512, 3);
	unlink(img);
	SH("%s convert -c -O qcow2 '%s' '%s'", Q, src, img);
	check_image(img, "compressed zlib");
	unlink(img);
	SH("%s convert -c -O qcow2 -o cluster_size=4096 '%s' '%s'", Q, src, img);
	check_image(img, "compressed zlib 4k");
	unlink(img);
	SH("%s convert -c -O qcow2 -o compression_type=zstd,cluster_size=2M '%s' '%s'",
	   Q, src, img);
	check_image(img, "compressed zstd 2M");
	unlink(img);
	SH("%s convert -c -O qcow2 -o compression_type=zstd '%s' '%s'", Q, src,
	   img);
	SH("%s -c 'write -P 5 64k 64k' -c 'write -P 6 300k 10k' '%s' >/dev/null",
	   QIO, img);
	check_image(img, "compressed zstd + overwrite");
	json = inspect(img);
	CHECK(json && strstr(json, "\"compression_type\":\"zstd\""));
	vmb_free(json);
}

static void test_backing(void)
{
	const char *base = tp("base.raw");
	const char *mid = tp("mid.qcow2");
	const char *top = tp("top.qcow2");
	const char *big = tp("big.qcow2");
	vmb_disk *d = NULL;
	char *json;

	make_source(base, 6 << 20, 11);
	/* relative backing path, raw backing format */
	SH("cd '%s' && %s create -q -f qcow2 -b base.raw -F raw mid.qcow2",
	   test_tmpdir(), Q);
	SH("%s -c 'write -P 0x11 0 64k' -c 'write -P 0x12 1M 100k' "
	   "-c 'write -z 2M 128k' '%s' >/dev/null", QIO, mid);
	/* absolute backing path, qcow2 backing format, 4K clusters */
	SH("%s create -q -f qcow2 -o cluster_size=4096 -b '%s' -F qcow2 '%s'",
	   Q, mid, top);
	SH("%s -c 'write -P 0x21 32k 8k' -c 'write -z 1M 16k' "
	   "-c 'write -P 0x22 5M 4k' '%s' >/dev/null", QIO, top);
	check_image(top, "backing chain");
	CHECK_OK(vmb_disk_open(top, 0, &d));
	CHECK(d && vmb_disk_layers(d) == 3);
	vmb_disk_close(d);
	d = NULL;
	CHECK_OK(vmb_disk_open(top, VMB_DISK_OPEN_NO_BACKING, &d));
	CHECK(d && vmb_disk_layers(d) == 1);
	vmb_disk_close(d);
	json = inspect(top);
	CHECK(json && strstr(json, "\"backing_format\":\"qcow2\""));
	vmb_free(json);
	json = inspect(mid);
	CHECK(json && strstr(json, "\"backing_file\":\"base.raw\""));
	vmb_free(json);

	/* layer info straight from the format */
	{
		void *st = NULL;
		vmb_layer_info info;
		vmb_layer_open_options o = { 1, NULL };
		memset(&info, 0, sizeof info);
		CHECK_OK(vmb_disk__qcow2_format.open(mid, &o, &st, &info));
		CHECK(info.backing_path && !strcmp(info.backing_path, "base.raw"));
		CHECK(info.backing_format && !strcmp(info.backing_format, "raw"));
		CHECK(info.virtual_size == 6 << 20);
		if (st)
			vmb_disk__qcow2_format.close(st);
		vmb_disk__layer_info_free(&info);
	}

	/* overlay larger than its backing file: the tail reads as zeros */
	SH("%s create -q -f qcow2 -b '%s' -F qcow2 '%s' 9M", Q, mid, big);
	SH("%s -c 'write -P 0x33 8M 64k' '%s' >/dev/null", QIO, big);
	check_image(big, "overlay larger than backing");
}

/* Read a snapshot through the format vtable. */
static void check_snapshot(const char *img, const char *snap,
			   const char *qemu_snap)
{
	const char *raw = tp("snap.raw");
	vmb_layer_open_options o = { 1, snap };
	vmb_layer_info info;
	void *st = NULL;
	uint8_t *ref, *buf;
	uint64_t size;

	unlink(raw);
	SH("%s convert -l '%s' -O raw '%s' '%s'", Q, qemu_snap, img, raw);
	ref = slurp(raw, &size);
	memset(&info, 0, sizeof info);
	CHECK_OK(vmb_disk__qcow2_format.open(img, &o, &st, &info));
	if (!st || !ref) {
		free(ref);
		return;
	}
	CHECK(info.virtual_size == size);
	buf = malloc(size ? size : 1);
	if (info.virtual_size == size) {
		struct ext_list l = { 0 };
		memset(buf, 0xee, size);
		CHECK_OK(vmb_disk__qcow2_format.map(st, 0, size, collect, &l));
		for (size_t i = 0; i < l.n; i++) {
			vmb_extent *e = &l.e[i];
			if (e->kind == VMB_EXTENT_DATA)
				CHECK_OK(vmb_disk__qcow2_format.read(
					st, buf + e->offset, e->offset,
					(size_t)e->length));
			else
				memset(buf + e->offset, 0, (size_t)e->length);
		}
		CHECK(memcmp(buf, ref, size) == 0);
		free(l.e);
	}
	free(buf);
	free(ref);
	vmb_disk__qcow2_format.close(st);
	vmb_disk__layer_info_free(&info);
}

static void test_snapshots(void)
{
	const char *src = tp("ssrc.raw");
	const char *img = tp("snap.qcow2");
	vmb_layer_open_options o = { 1, "nope" };
	vmb_layer_info info;
	void *st = NULL;
	char *json;

	make_source(src, 4 << 20, 5);
	SH("%s convert -O qcow2 '%s' '%s'", Q, src, img);
	SH("%s snapshot -c s1 '%s'", Q, img);
	SH("%s -c 'write -P 0x41 0 128k' -c 'write -z 1M 64k' '%s' >/dev/null",
	   QIO, img);
	SH("%s snapshot -c s2 '%s'", Q, img);
	SH("%s -c 'write -P 0x42 2M 64k' '%s' >/dev/null", QIO, img);
	check_image(img, "active state with snapshots");
	check_snapshot(img, "s1", "snapshot.name=s1");
	check_snapshot(img, "2", "snapshot.id=2");
	json = inspect(img);
	CHECK(json && strstr(json, "\"snapshots\":[{\"id\":\"1\",\"name\":\"s1\",\"virtual_size\":4194304"));
	CHECK(json && strstr(json, "\"name\":\"s2\""));
	vmb_free(json);
	memset(&info, 0, sizeof info);
	CHECK_ERR(vmb_disk__qcow2_format.open(img, &o, &st, &info),
		  VMB_ENOTFOUND);
	CHECK(strstr(vmb_error_message(), "nope") != NULL);
}

struct range {
	uint64_t off, len;
};

struct ranges {
	struct range r[64];
	int n;
};

static int dirty_cb(uint64_t off, uint64_t len, void *p)
{
	struct ranges *rs = p;
	if (rs->n < 64)
		rs->r[rs->n] = (struct range){ off, len };
	rs->n++;
	return 0;
}

static void test_bitmaps(void)
{
	const char *img = tp("bm.qcow2");
	const char *img2 = tp("bm2.qcow2");
	vmb_qcow2 *q = NULL;
	const vmb_qcow2_bitmap *list = NULL;
	size_t n = 0;
	int consistent = 0;
	struct ranges rs;
	char *json;

	SH("%s create -q -f qcow2 '%s' 16M", Q, img);
	SH("%s bitmap --add -g 65536 '%s' b1", Q, img);
	SH("%s -c 'write -P 1 1M 64k' -c 'write -P 2 5M 200k' "
	   "-c 'write -P 3 16320k 64k' '%s' >/dev/null", QIO, img);
	SH("%s bitmap --add -g 4096 '%s' b2", Q, img);
	SH("%s bitmap --disable '%s' b2", Q, img);
	SH("%s -c 'write -P 4 8M 4k' '%s' >/dev/null", QIO, img);
	check_image(img, "bitmaps");

	CHECK_OK(vmb_disk__qcow2_open(img, NULL, &q));
	if (!q)
		return;
	CHECK_OK(vmb_disk__qcow2_bitmaps(q, &list, &n, &consistent));
	CHECK(n == 2 && consistent);
	if (n == 2) {
		CHECK(!strcmp(list[0].name, "b1") && list[0].granularity == 65536);
		CHECK(list[0].auto_ && !list[0].in_use);
		CHECK(!strcmp(list[1].name, "b2") && list[1].granularity == 4096);
		CHECK(!list[1].auto_ && !list[1].in_use);
	}
	memset(&rs, 0, sizeof rs);
	CHECK_OK(vmb_disk__qcow2_bitmap_dirty(q, "b1", dirty_cb, &rs));
	CHECK(rs.n == 4);
	CHECK(rs.r[0].off == 1 << 20 && rs.r[0].len == 65536);
	CHECK(rs.r[1].off == 5 << 20 && rs.r[1].len == 256 << 10);
	CHECK(rs.r[2].off == 8 << 20 && rs.r[2].len == 65536);
	CHECK(rs.r[3].off == 16320 << 10 && rs.r[3].len == 64 << 10);
	memset(&rs, 0, sizeof rs);
	CHECK_OK(vmb_disk__qcow2_bitmap_dirty(q, "b2", dirty_cb, &rs));
	CHECK(rs.n == 0);
	CHECK_ERR(vmb_disk__qcow2_bitmap_dirty(q, "b3", dirty_cb, &rs),
		  VMB_ENOTFOUND);
	vmb_disk__qcow2_close(q);
	q = NULL;

	json = inspect(img);
	CHECK(json && strstr(json, "\"bitmaps\":[{\"name\":\"b1\",\"granularity\":65536,\"in_use\":false,\"auto\":true},{\"name\":\"b2\",\"granularity\":4096,\"in_use\":false,\"auto\":false}]"));
	vmb_free(json);

	/* bitmaps copied by convert; a fully dirty bitmap */
	SH("%s convert -q --bitmaps -O qcow2 '%s' '%s'", Q, img, img2);
	SH("%s bitmap --add -g 1M '%s' all", Q, img2);
	SH("%s bitmap --merge b1 '%s' all", Q, img2);
	CHECK_OK(vmb_disk__qcow2_open(img2, NULL, &q));
	if (q) {
		memset(&rs, 0, sizeof rs);
		CHECK_OK(vmb_disk__qcow2_bitmap_dirty(q, "b1", dirty_cb, &rs));
		CHECK(rs.n == 4 && rs.r[1].len == 256 << 10);
		memset(&rs, 0, sizeof rs);
		CHECK_OK(vmb_disk__qcow2_bitmap_dirty(q, "all", dirty_cb, &rs));
		CHECK(rs.n == 4 && rs.r[0].off == 1 << 20 && rs.r[3].off == 15 << 20 &&
		      rs.r[0].len == 1 << 20);
		vmb_disk__qcow2_close(q);
	}
}

/* ---- several threads reading at once ---- */

struct thr {
	const char *img;
	vmb_disk *d;
	const uint8_t *ref;
	uint64_t size;
	uint64_t seed;
	int bad;
};

static void *reader(void *p)
{
	struct thr *t = p;
	uint8_t *buf = malloc(1 << 20);
	uint64_t x = t->seed;
	for (int i = 0; i < 300; i++) {
		uint64_t off, n;
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		off = (x >> 11) % t->size;
		n = VMB_MIN((x >> 33) % (1 << 20) + 1, t->size - off);
		if (vmb_disk_read(t->d, buf, off, (size_t)n) < 0 ||
		    memcmp(buf, t->ref + off, (size_t)n) != 0)
			t->bad++;
	}
	free(buf);
	return NULL;
}

static void test_threads(void)
{
	const char *src = tp("tsrc.raw");
	const char *img = tp("t.qcow2");
	const char *ov = tp("tov.qcow2");
	struct thr t[6];
	pthread_t th[6];
	vmb_disk *d = NULL;
	uint8_t *ref;
	uint64_t size;

	make_source(src, 8 << 20, 9);
	SH("%s convert -c -O qcow2 -o cluster_size=4096 '%s' '%s'", Q, src, img);
	SH("%s create -q -f qcow2 -b '%s' -F qcow2 '%s'", Q, img, ov);
	SH("%s -c 'write -P 7 1M 3M' -c 'write -z 6M 64k' '%s' >/dev/null",
	   QIO, ov);
	unlink(tp("ref.raw"));
	SH("%s convert -O raw '%s' '%s'", Q, ov, tp("ref.raw"));
	ref = slurp(tp("ref.raw"), &size);
	CHECK_OK(vmb_disk_open(ov, 0, &d));
	if (!d || !ref) {
		free(ref);
		vmb_disk_close(d);
		return;
	}
	for (int i = 0; i < 6; i++) {
		t[i] = (struct thr){ ov, d, ref, size, 77 + i, 0 };
		pthread_create(&th[i], NULL, reader, &t[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		CHECK(t[i].bad == 0);
	}
	vmb_disk_close(d);
	free(ref);
}

/* ---- writer ---- */

static void write_image(const char *src, const char *dst, uint32_t cs,
			int gaps)
{
	vmb_disk_writer_options o = VMB_DISK_WRITER_INIT;
	vmb_disk_writer *w = NULL;
	uint64_t size, off = 0;
	uint8_t *data = slurp(src, &size);
	int i = 0;

	o.cluster_size = cs;
	CHECK(data != NULL);
	CHECK_OK(vmb_disk_writer_create(dst, "qcow2", size, &o, &w));
	if (!w || !data) {
		free(data);
		vmb_disk_writer_free(w);
		return;
	}
	while (off < size) {
		static const uint64_t lens[] = { 65536, 196608, 1 << 20, 131072 };
		uint64_t n = VMB_MIN(lens[i++ % 4], size - off);
		/* skip all-zero pieces now and then: never-written ranges */
		if (!(gaps && vmb_is_zero(data + off, (size_t)n) && (i & 1)))
			CHECK_OK(vmb_disk_writer_write(w, off, data + off,
						       (size_t)n));
		off += n;
	}
	CHECK_OK(vmb_disk_writer_finish(w));
	vmb_disk_writer_free(w);
	free(data);
}

static void test_writer(void)
{
	static const uint32_t cs[] = { 0, 512, 4096, 2 << 20 };
	static const uint64_t sizes[] = { (7ULL << 20) + 1536, 3ULL << 20,
					  512 * 3 };
	const char *src = tp("wsrc.raw");
	const char *dst = tp("w.qcow2");

	for (size_t s = 0; s < VMB_ARRAY_SIZE(sizes); s++) {
		make_source(src, sizes[s], 20 + s);
		if (sizes[s] < 65536) {
			/* tiny disk: all data */
			uint8_t b[1536];
			int fd = open(src, O_WRONLY);
			test_random(b, sizeof b, 5);
			CHECK(fd >= 0 && vmb_pwrite_full(fd, b, sizeof b, 0) == 0);
			close(fd);
		}
		for (size_t c = 0; c < VMB_ARRAY_SIZE(cs); c++) {
			char label[64];
			snprintf(label, sizeof label, "writer size=%llu cs=%u",
				 (unsigned long long)sizes[s], cs[c]);
			unlink(dst);
			write_image(src, dst, cs[c], (int)c & 1);
			if (test_sh("%s check -q '%s'", Q, dst) != 0) {
				CHECK(label == NULL);
				test_sh("%s check '%s' | head -5 >&2", Q, dst);
			}
			if (test_sh("%s compare -q -f raw -F qcow2 '%s' '%s'",
				    Q, src, dst) != 0) {
				CHECK(label == NULL);
				fprintf(stderr, "%s: compare failed\n", label);
			}
			check_image(dst, label);
		}
	}
	/* an empty disk */
	{
		vmb_disk_writer *w = NULL;
		unlink(dst);
		CHECK_OK(vmb_disk_writer_create(dst, "qcow2", 0, NULL, &w));
		if (w)
			CHECK_OK(vmb_disk_writer_finish(w));
		vmb_disk_writer_free(w);
		SH("%s check -q '%s'", Q, dst);
		check_image(dst, "writer empty disk");
	}
	/* sparse: a 1 GiB disk with two written blocks stays small */
	{
		vmb_disk_writer *w = NULL;
		uint8_t *blk = calloc(1, 65536);
		struct stat st;
		unlink(dst);
		test_random(blk, 4096, 1);
		CHECK_OK(vmb_disk_writer_create(dst, "qcow2", 1ULL << 30, NULL, &w));
		if (w) {
			CHECK_OK(vmb_disk_writer_write(w, 0, blk, 65536));
			CHECK_OK(vmb_disk_writer_write(w, 700 << 20, blk, 65536));
			CHECK_OK(vmb_disk_writer_finish(w));
			vmb_disk_writer_free(w);
		}
		CHECK(stat(dst, &st) == 0 && st.st_size < (1 << 20));
		SH("%s check -q '%s'", Q, dst);
		check_image(dst, "writer sparse 1G");
		free(blk);
	}
	/* abort removes the partial file; existing files are refused */
	{
		vmb_disk_writer *w = NULL;
		uint8_t blk[65536];
		memset(blk, 1, sizeof blk);
		unlink(dst);
		CHECK_OK(vmb_disk_writer_create(dst, "qcow2", 1 << 20, NULL, &w));
		if (w)
			CHECK_OK(vmb_disk_writer_write(w, 0, blk, sizeof blk));
		vmb_disk_writer_free(w);
		CHECK(access(dst, F_OK) != 0);
		SH("touch '%s'", dst);
		w = NULL;
		CHECK_ERR(vmb_disk_writer_create(dst, "qcow2", 1 << 20, NULL, &w),
			  VMB_EEXISTS);
		unlink(dst);
		{
			vmb_disk_writer_options o = VMB_DISK_WRITER_INIT;
			o.cluster_size = 3000;
			CHECK_ERR(vmb_disk_writer_create(dst, "qcow2", 1 << 20,
							 &o, &w), VMB_EINVAL);
		}
	}
}

/* ---- damaged images ---- */

static void patch(const char *path, uint64_t off, const void *bytes,
		  size_t n)
{
	int fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && vmb_pwrite_full(fd, bytes, n, off) == 0);
	close(fd);
}

static void patch_be32(const char *path, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	vmb_put_be32(b, v);
	patch(path, off, b, 4);
}

static void patch_be64(const char *path, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	vmb_put_be64(b, v);
	patch(path, off, b, 8);
}

static uint64_t peek_be64(const char *path, uint64_t off)
{
	uint8_t b[8] = { 0 };
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		if (vmb_pread_full(fd, b, 8, off) != 8)
			memset(b, 0, 8);
		close(fd);
	}
	return vmb_be64(b);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Opening and reading the whole image must fail with want (or any error
 * if want is 0), quickly, with one line naming the file. */
static void expect_bad(const char *img, int want, const char *label)
{
	vmb_disk *d = NULL;
	double t0 = now();
	int r = vmb_disk_open(img, 0, &d);
	if (r == 0) {
		uint64_t size = vmb_disk_size(d);
		uint8_t *buf = malloc(1 << 20);
		for (uint64_t off = 0; r == 0 && off < size; off += 1 << 20)
			r = vmb_disk_read(d, buf, off,
					  (size_t)VMB_MIN(1 << 20, size - off));
		free(buf);
		vmb_disk_close(d);
	}
	if (r >= 0 || (want && r != want))
		fprintf(stderr, "%s: got %d (%s), want %d\n", label, r,
			vmb_error_message(), want);
	CHECK(r < 0);
	if (want)
		CHECK(r == want);
	CHECK(strchr(vmb_error_message(), '\n') == NULL);
	CHECK(strlen(vmb_error_message()) > 0);
	CHECK(strstr(vmb_error_message(), img) != NULL ||
	      strstr(vmb_error_message(), "bad") != NULL);
	CHECK(now() - t0 < 5.0);
	if (getenv("VMB_TEST_VERBOSE"))
		fprintf(stderr, "%s: %s\n", label, vmb_error_message());
}

static void fresh(const char *good, const char *bad)
{
	unlink(bad);
	SH("cp '%s' '%s'", good, bad);
}

static void test_malformed(void)
{
	const char *src = tp("msrc.raw");
	const char *good = tp("good.qcow2");
	const char *comp = tp("goodc.qcow2");
	const char *bad = tp("bad.qcow2");
	const char *a = tp("loopa.qcow2");
	const char *b = tp("loopb.qcow2");
	uint64_t l1, l2, fsize;
	struct stat st;

	make_source(src, 2 << 20, 2);
	SH("%s convert -O qcow2 '%s' '%s'", Q, src, good);
	SH("%s convert -c -O qcow2 '%s' '%s'", Q, src, comp);
	CHECK(stat(good, &st) == 0);
	fsize = (uint64_t)st.st_size;
	l1 = peek_be64(good, 40);
	l2 = peek_be64(good, l1) & 0x00fffffffffffe00ULL;
	CHECK(l1 && l2);

	fresh(good, bad);
	patch_be64(bad, 40, fsize + (1 << 20));
	expect_bad(bad, VMB_EFORMAT, "L1 offset past EOF");
	fresh(good, bad);
	patch_be32(bad, 36, 0x7fffffff);
	expect_bad(bad, VMB_EFORMAT, "absurd l1_size");
	fresh(good, bad);
	patch_be32(bad, 20, 30);
	expect_bad(bad, VMB_EFORMAT, "cluster_bits 30");
	fresh(good, bad);
	patch_be32(bad, 20, 8);
	expect_bad(bad, VMB_EFORMAT, "cluster_bits 8");
	fresh(good, bad);
	CHECK(truncate(bad, 100) == 0);
	expect_bad(bad, VMB_EFORMAT, "truncated to 100 bytes");
	fresh(good, bad);
	CHECK(truncate(bad, 50) == 0);
	expect_bad(bad, VMB_EFORMAT, "truncated to 50 bytes");
	fresh(good, bad);
	CHECK(truncate(bad, (off_t)(l2 + 65536)) == 0);
	expect_bad(bad, VMB_EFORMAT, "truncated after the L2 table");
	fresh(good, bad);
	patch_be64(bad, 72, 1ULL << 5);
	expect_bad(bad, VMB_ENOTSUP, "unknown incompatible bit");
	fresh(good, bad);
	patch_be64(bad, 72, 1ULL << 2);
	expect_bad(bad, VMB_ENOTSUP, "external data file bit");
	fresh(good, bad);
	patch_be32(bad, 32, 1);
	expect_bad(bad, VMB_ENOTSUP, "crypt_method 1");
	fresh(good, bad);
	patch_be32(bad, 4, 4);
	expect_bad(bad, VMB_ENOTSUP, "version 4");
	fresh(good, bad);
	patch_be32(bad, 96, 7);
	expect_bad(bad, VMB_EFORMAT, "refcount order 7");
	fresh(good, bad);
	patch_be32(bad, 100, 0x10000000);
	expect_bad(bad, VMB_EFORMAT, "header length huge");
	fresh(good, bad);
	patch_be32(bad, 56, 0);
	expect_bad(bad, VMB_EFORMAT, "no refcount table");
	fresh(good, bad);
	patch_be64(bad, 48, 12345);
	expect_bad(bad, VMB_EFORMAT, "refcount table unaligned");
	fresh(good, bad);
	patch_be32(bad, 60, 100000);
	patch_be64(bad, 64, 65536);
	expect_bad(bad, VMB_EFORMAT, "too many snapshots");
	fresh(good, bad);
	patch_be32(bad, 60, 3);
	patch_be64(bad, 64, fsize);
	expect_bad(bad, VMB_EFORMAT, "snapshot table past EOF");
	fresh(good, bad);
	patch_be64(bad, 24, 1ULL << 60);
	expect_bad(bad, VMB_EFORMAT, "absurd virtual size");
	fresh(good, bad);
	patch_be64(bad, 24, 1ULL << 40);
	expect_bad(bad, VMB_EFORMAT, "L1 too small for size");
	fresh(good, bad);
	patch_be64(bad, 8, 70000);
	patch_be32(bad, 16, 100);
	expect_bad(bad, VMB_EFORMAT, "backing name past cluster 0");
	/* extension whose length runs past the header cluster */
	fresh(good, bad);
	patch_be32(bad, 112, 0x12345678);
	patch_be32(bad, 116, 0x7ffffff0);
	expect_bad(bad, VMB_EFORMAT, "extension length");
	fresh(good, bad);
	patch_be32(bad, 112, 0x23852875); /* bitmaps, wrong length */
	patch_be32(bad, 116, 8);
	expect_bad(bad, VMB_EFORMAT, "bitmaps extension length");
	/* L1 entry pointing past EOF, L2 entry past EOF, unaligned */
	fresh(good, bad);
	patch_be64(bad, l1, (fsize + (64 << 20)) | (1ULL << 63));
	expect_bad(bad, VMB_EFORMAT, "L2 table past EOF");
	fresh(good, bad);
	patch_be64(bad, l1, 4096 | (1ULL << 63));
	expect_bad(bad, VMB_EFORMAT, "L2 table unaligned");
	fresh(good, bad);
	patch_be64(bad, l1, l1 | (1ULL << 63));
	expect_bad(bad, VMB_EFORMAT, "L2 table is the L1 table");
	fresh(good, bad);
	patch_be64(bad, l2 + 8, (fsize + (1ULL << 30)) | (1ULL << 63));
	expect_bad(bad, VMB_EFORMAT, "data cluster past EOF");
	fresh(good, bad);
	patch_be64(bad, l2 + 8, 0x10200 | (1ULL << 63));
	expect_bad(bad, VMB_EFORMAT, "data cluster unaligned");
	fresh(good, bad);
	patch_be64(bad, l2 + 8, (1ULL << 62) | 0x3fffffffffffffULL);
	expect_bad(bad, VMB_EFORMAT, "compressed cluster past EOF");
	/* compressed stream damaged */
	{
		uint64_t cl1 = peek_be64(comp, 40);
		uint64_t cl2 = peek_be64(comp, cl1) & 0x00fffffffffffe00ULL;
		uint64_t e = 0;
		for (int i = 0; i < 64 && !(e >> 62 & 1); i++)
			e = peek_be64(comp, cl2 + 8 * i);
		CHECK(e >> 62 & 1);
		if (e >> 62 & 1) {
			uint8_t junk[64];
			uint64_t coff = e & ((1ULL << 54) - 1);
			memset(junk, 0xff, sizeof junk);
			fresh(comp, bad);
			patch(bad, coff, junk, sizeof junk);
			expect_bad(bad, VMB_EFORMAT, "compressed garbage");
			/* a valid stream cut short: inflates to < 1 cluster */
			fresh(comp, bad);
			patch_be64(bad, cl2 + 8 * 0,
				   (e & ~(0xffULL << 54)) | (1ULL << 62));
			expect_bad(bad, VMB_EFORMAT, "compressed stream cut short");
		}
	}
	/* random bytes behind a valid magic */
	for (int seed = 1; seed <= 30; seed++) {
		uint8_t junk[8192];
		int fd;
		char label[32];
		test_random(junk, sizeof junk, (uint64_t)seed);
		vmb_put_be32(junk, 0x514649FB);
		if (seed & 1) {
			vmb_put_be32(junk + 4, 3);
			vmb_put_be32(junk + 20, 16);
		}
		unlink(bad);
		fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0 && vmb_pwrite_full(fd, junk, sizeof junk, 0) == 0);
		close(fd);
		snprintf(label, sizeof label, "random %d", seed);
		expect_bad(bad, 0, label);
	}
	/* random words written over the metadata (header, tables): any
	 * result is fine as long as it is quick, and errors are one line */
	for (int seed = 1; seed <= 40; seed++) {
		uint64_t x = (uint64_t)seed * 0x9E3779B97F4A7C15ULL;
		vmb_disk *d = NULL;
		double t0 = now();
		int r;
		fresh(seed & 1 ? good : comp, bad);
		for (int i = 0; i < 8; i++) {
			uint64_t v;
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			v = x;
			if (i & 1) /* plausible small values too */
				v >>= 40;
			patch_be64(bad, (x >> 20) % (6 * 65536) & ~7ULL, v);
		}
		r = vmb_disk_open(bad, VMB_DISK_OPEN_NO_BACKING, &d);
		if (r == 0) {
			uint8_t *buf = malloc(1 << 20);
			uint64_t size = VMB_MIN(vmb_disk_size(d), 64 << 20);
			for (uint64_t off = 0; r == 0 && off < size; off += 1 << 20)
				r = vmb_disk_read(d, buf, off,
						  (size_t)VMB_MIN(1 << 20, size - off));
			free(buf);
			vmb_disk_close(d);
		}
		if (r < 0)
			CHECK(strchr(vmb_error_message(), '\n') == NULL &&
			      vmb_error_message()[0]);
		CHECK(now() - t0 < 5.0);
	}
	/* backing loop a -> b -> a */
	SH("%s create -q -f qcow2 '%s' 1M", Q, b);
	SH("%s create -q -f qcow2 -b '%s' -F qcow2 '%s'", Q, b, a);
	SH("%s rebase -q -u -b '%s' -F qcow2 '%s'", Q, a, b);
	expect_bad(a, VMB_EFORMAT, "backing loop");
	/* backing file that does not exist */
	unlink(b);
	expect_bad(a, VMB_ENOTFOUND, "missing backing file");
	/* real encrypted image */
	unlink(bad);
	if (test_sh("%s create -q -f qcow2 --object secret,id=s0,data=pw "
		    "-o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 '%s' 1M",
		    Q, bad) == 0)
		expect_bad(bad, VMB_ENOTSUP, "luks encrypted");
	/* external data file */
	unlink(bad);
	SH("%s create -q -f qcow2 -o data_file='%s.data' '%s' 1M", Q, bad, bad);
	expect_bad(bad, VMB_ENOTSUP, "external data file");
}

int main(void)
{
	if (test_sh("command -v qemu-img >/dev/null && command -v qemu-io >/dev/null") != 0)
		test_skip("qemu-img or qemu-io not installed");
	test_variants();
	test_extended_l2();
	test_compressed();
	test_backing();
	test_snapshots();
	test_bitmaps();
	test_threads();
	test_writer();
	test_malformed();
	return test_done();
}
