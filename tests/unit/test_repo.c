/*
 * The repository through the public API (plus the repository's keys, to
 * name the chunk of a known block): init/open, backup, restore, snapshot
 * references, random-access reads, check, damage, and the maintenance lock.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "testutil.h"
#include "vmbackup/repo.h"
#include "vmbackup/target.h"
#include "common/util.h"
#include "repo/repo_internal.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define CS (64 * 1024) /* chunk size of the test repositories */

static const char *PASS = "unit-test-passphrase";

/* ---- helpers ---- */

/* test_path() returns one of a few rotating buffers: keep our own copies */
static char *paths[1024];
static size_t npaths;
static void free_paths(void)
{
	for (size_t i = 0; i < npaths; i++)
		free(paths[i]);
}
static const char *P(const char *name)
{
	if (npaths == 0)
		atexit(free_paths);
	if (npaths == sizeof paths / sizeof paths[0]) {
		fprintf(stderr, "too many paths\n");
		exit(1);
	}
	return paths[npaths++] = strdup(test_path(name));
}

static void pwrite_or_die(int fd, const void *p, size_t n, uint64_t off)
{
	if (vmb_pwrite_full(fd, p, n, off) != 0) {
		perror("pwrite");
		exit(1);
	}
}

static void fill_text(uint8_t *p, size_t len, unsigned seed)
{
	static const char *w[] = { "kernel ", "boot ", "disk ", "backup\n",
				   "the ", "quick ", "brown ", "fox " };
	size_t i = 0;
	unsigned k = seed;
	while (i < len) {
		const char *s = w[(k = k * 1103515245u + 12345u) >> 29];
		for (; *s && i < len; s++)
			p[i++] = (uint8_t)*s;
	}
}

/* Raw image with holes, text, random, allocated zeros and a repeat. */
static uint64_t make_mixed(const char *path)
{
	const uint64_t size = 8 * MiB + 12345;
	uint8_t *b = malloc(512 * KiB);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || !b)
		exit(1);
	if (ftruncate(fd, (off_t)size))
		exit(1);
	fill_text(b, 64 * KiB, 1);
	pwrite_or_die(fd, b, 64 * KiB, 0);
	test_random(b, 128 * KiB, 2);
	pwrite_or_die(fd, b, 128 * KiB, 64 * KiB);
	pwrite_or_die(fd, b, 64 * KiB, 5 * MiB); /* repeats chunk 1 */
	test_random(b, 4096, 3);
	pwrite_or_die(fd, b, 4096, 1 * MiB);
	memset(b, 0, 128 * KiB);
	pwrite_or_die(fd, b, 128 * KiB, 2 * MiB); /* allocated zeros */
	fill_text(b, 200000, 4);
	pwrite_or_die(fd, b, 200000, 3 * MiB + 100);
	test_random(b, 5000, 5);
	pwrite_or_die(fd, b, 5000, size - 5000);
	close(fd);
	free(b);
	return size;
}

static uint64_t file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? (uint64_t)st.st_size : UINT64_MAX;
}

static uint64_t allocated(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

static int exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static int same_file(const char *a, const char *b)
{
	return test_sh("cmp -s '%s' '%s'", a, b) == 0;
}

/* Distinct non-zero chunks of a file and their total length. */
static void count_chunks(const char *path, uint32_t cs, uint64_t *distinct,
			 uint64_t *distinct_bytes, uint64_t *zero,
			 uint64_t *total)
{
	uint64_t size = file_size(path);
	int fd = open(path, O_RDONLY);
	size_t n = 0, cap = 64;
	uint8_t (*fps)[32] = malloc(cap * 32);
	uint8_t *buf = malloc(cs);
	vmb_keys k;
	uint8_t m[32] = { 0 };
	vmb_crypto_derive(m, 0, &k);
	*distinct = *distinct_bytes = *zero = *total = 0;
	for (uint64_t off = 0; off < size; off += cs) {
		size_t len = (size_t)VMB_MIN((uint64_t)cs, size - off);
		uint8_t id[32];
		int seen = 0;
		(*total)++;
		if (vmb_pread_full(fd, buf, len, off) != (int64_t)len)
			exit(1);
		if (vmb_is_zero(buf, len)) {
			(*zero)++;
			continue;
		}
		vmb_crypto_chunk_id(&k, buf, len, id);
		for (size_t i = 0; i < n; i++)
			if (!memcmp(fps[i], id, 32))
				seen = 1;
		if (seen)
			continue;
		if (n == cap)
			fps = realloc(fps, (cap *= 2) * 32);
		memcpy(fps[n++], id, 32);
		(*distinct)++;
		*distinct_bytes += len;
	}
	close(fd);
	free(fps);
	free(buf);
}

static vmb_repo *open_repo(const char *url, const char *pass)
{
	vmb_repo *r = NULL;
	int rc = vmb_repo_open(url, pass, &r);
	CHECK_OK(rc);
	return rc ? NULL : r;
}

static int backup1(vmb_repo *r, const char *path, const char *vm,
		   vmb_backup_result *res)
{
	vmb_backup_source src = { path, NULL, NULL };
	vmb_backup_options o = VMB_BACKUP_OPTIONS_INIT;
	o.vm = vm;
	o.threads = 2;
	return vmb_repo_backup(r, &src, 1, &o, res);
}

static size_t count_snapshots(vmb_repo *r, const char *vm)
{
	vmb_snapshot **l = NULL;
	size_t n = 0;
	CHECK_OK(vmb_repo_snapshots(r, vm, &l, &n));
	vmb_snapshot_list_free(l, n);
	return n;
}

/* Name of the chunk holding @len bytes at @off of @path. */
static void chunk_file(vmb_repo *r, const char *repo, const char *path,
		       uint64_t off, size_t len, char *out, size_t outlen)
{
	uint8_t *buf = malloc(len), id[32];
	char name[80];
	int fd = open(path, O_RDONLY);
	if (vmb_pread_full(fd, buf, len, off) != (int64_t)len)
		exit(1);
	close(fd);
	vmb_crypto_chunk_id(r->keys, buf, len, id);
	vmb_chunk_name(id, name);
	snprintf(out, outlen, "%s/%s", repo, name);
	free(buf);
}

static void wait_next_second(void)
{
	time_t t = time(NULL);
	while (time(NULL) == t)
		usleep(20000);
}

/* Log capture */
static char logbuf[8192];
static void capture(vmb_log_level lvl, const char *msg, void *p)
{
	size_t n = strlen(logbuf);
	snprintf(logbuf + n, sizeof logbuf - n, "%d %s\n", (int)lvl, msg);
}

/* ---- tests ---- */

static void test_init_open(void)
{
	const char *enc = P("r-enc"), *none = P("r-none");
	vmb_repo_init_options o = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_repo *r = NULL;

	o.chunk_size = CS;
	CHECK_OK(vmb_repo_init(enc, PASS, &o));
	CHECK_ERR(vmb_repo_init(enc, PASS, &o), VMB_EEXISTS);
	CHECK_ERR(vmb_repo_init(enc, "other", NULL), VMB_EEXISTS);
	r = open_repo(enc, PASS);
	if (r) {
		CHECK(vmb_repo_chunk_size(r) == CS);
		CHECK(vmb_repo_encrypted(r) == 1);
		CHECK(vmb_repo__valid_id(vmb_repo_id(r)));
		vmb_repo_close(r);
	}
	r = (vmb_repo *)1;
	CHECK_ERR(vmb_repo_open(enc, "wrong", &r), VMB_EAUTH);
	CHECK(r == NULL);
	CHECK_ERR(vmb_repo_open(enc, NULL, &r), VMB_EAUTH);
	CHECK_ERR(vmb_repo_open(enc, "", &r), VMB_EAUTH);
	/* a file:// URL names the same repository */
	{
		char url[600];
		snprintf(url, sizeof url, "file://%s", enc);
		r = open_repo(url, PASS);
		vmb_repo_close(r);
	}

	/* unencrypted: no passphrase needed, any is ignored */
	o.encrypted = 0;
	o.chunk_size = 1 << 20;
	CHECK_OK(vmb_repo_init(none, NULL, &o));
	r = open_repo(none, NULL);
	if (r) {
		CHECK(vmb_repo_encrypted(r) == 0);
		CHECK(vmb_repo_chunk_size(r) == 1 << 20);
		vmb_repo_close(r);
	}
	r = open_repo(none, "anything");
	vmb_repo_close(r);

	/* default chunk size, and two repositories get different ids */
	{
		const char *d = P("r-default");
		vmb_repo *a, *b;
		CHECK_OK(vmb_repo_init(d, PASS, NULL));
		a = open_repo(d, PASS);
		b = open_repo(enc, PASS);
		if (a && b) {
			CHECK(vmb_repo_chunk_size(a) == VMB_DEFAULT_CHUNK_SIZE);
			CHECK(strcmp(vmb_repo_id(a), vmb_repo_id(b)) != 0);
		}
		vmb_repo_close(a);
		vmb_repo_close(b);
	}

	/* nothing there */
	test_sh("mkdir -p '%s'", P("empty"));
	CHECK_ERR(vmb_repo_open(P("empty"), PASS, &r), VMB_ENOTFOUND);
	CHECK_ERR(vmb_repo_open(P("no/such/dir"), PASS, &r),
		  VMB_ENOTFOUND);
	CHECK(!exists(P("no"))); /* opening creates nothing */

	/* bad options */
	o = (vmb_repo_init_options)VMB_REPO_INIT_OPTIONS_INIT;
	static const uint32_t bad_cs[] = { 3000, 32 * 1024, 32u << 20,
					   (64 * 1024) + 4096 };
	for (size_t i = 0; i < sizeof bad_cs / sizeof bad_cs[0]; i++) {
		o.chunk_size = bad_cs[i];
		CHECK_ERR(vmb_repo_init(P("r-bad"), PASS, &o),
			  VMB_EINVAL);
	}
	o.chunk_size = 0;
	CHECK_ERR(vmb_repo_init(P("r-bad"), NULL, &o), VMB_EINVAL);
	CHECK_ERR(vmb_repo_init(P("r-bad"), "", &o), VMB_EINVAL);
	CHECK(vmb_repo_open(P("r-bad"), PASS, &r) == VMB_ENOTFOUND);

	/* a damaged key file or config */
	{
		const char *d = P("r-dmg");
		CHECK_OK(vmb_repo_init(d, PASS, NULL));
		test_sh("printf '{\"version\":1,\"kdf\":\"argon2id13\"}' > '%s/keys/default'", d);
		CHECK_ERR(vmb_repo_open(d, PASS, &r), VMB_ECORRUPT);
		test_sh("printf 'garbage' > '%s/config'", d);
		CHECK_ERR(vmb_repo_open(d, PASS, &r), VMB_ECORRUPT);
	}
}

static char snap1[33], snap2[33], snap3[33], snapx[33];

static void test_backup_restore(void)
{
	const char *repo = P("r-enc");
	const char *img = P("mixed.img");
	const char *orig = P("mixed.orig");
	vmb_backup_result res, res2, res3;
	vmb_restore_result rr;
	vmb_restore_options ro = VMB_RESTORE_OPTIONS_INIT;
	uint64_t size = make_mixed(img), distinct, dbytes, zero, total;
	vmb_repo *r = open_repo(repo, PASS);
	vmb_snapshot *s = NULL;
	const char *tags[] = { "nightly", "t2" };
	if (!r)
		return;
	test_sh("cp --sparse=always '%s' '%s'", img, orig);
	count_chunks(img, CS, &distinct, &dbytes, &zero, &total);

	vmb_backup_source src = { img, NULL, NULL };
	vmb_backup_options o = VMB_BACKUP_OPTIONS_INIT;
	o.vm = "vm1";
	o.tags = tags;
	o.ntags = 2;
	o.threads = 2;
	CHECK_OK(vmb_repo_backup(r, &src, 1, &o, &res));
	CHECK(vmb_repo__valid_id(res.snapshot));
	CHECK(res.bytes_total == size);
	CHECK(res.chunks_total == total);
	CHECK(res.chunks_zero == zero);
	CHECK(res.chunks_new == distinct);
	CHECK(res.bytes_new == dbytes);
	CHECK(res.bytes_read > 0 && res.bytes_read <= allocated(img));
	CHECK(res.bytes_read < size);
	CHECK(res.bytes_stored > 0);
	CHECK(res.cbt && strcmp(res.cbt, "none") == 0);
	memcpy(snap1, res.snapshot, 33);

	/* the snapshot says what went in */
	CHECK_OK(vmb_repo_snapshot_find(r, snap1, &s));
	if (s) {
		CHECK(strcmp(vmb_snapshot_id(s), snap1) == 0);
		CHECK(strcmp(vmb_snapshot_vm(s), "vm1") == 0);
		CHECK(vmb_snapshot_parent(s) == NULL);
		CHECK(vmb_snapshot_tag_count(s) == 2 &&
		      strcmp(vmb_snapshot_tag(s, 1), "t2") == 0);
		CHECK(vmb_snapshot_tag(s, 2) == NULL);
		CHECK(vmb_snapshot_disk_count(s) == 1);
		CHECK(strcmp(vmb_snapshot_disk_name(s, 0), "mixed") == 0);
		CHECK(strcmp(vmb_snapshot_disk_format(s, 0), "raw") == 0);
		CHECK(vmb_snapshot_disk_size(s, 0) == size);
		CHECK(vmb_snapshot_disk_name(s, 1) == NULL);
		CHECK(llabs(vmb_snapshot_time(s) - (int64_t)time(NULL)) < 60);
		CHECK(vmb_snapshot_json(s) &&
		      strstr(vmb_snapshot_json(s), snap1));
		vmb_snapshot_free(s);
		s = NULL;
	}

	/* restore: byte-identical, sparse */
	ro.threads = 2;
	CHECK_OK(vmb_repo_restore(r, snap1, P("out1"), &ro, &rr));
	CHECK(rr.disks == 1 && rr.bytes_total == size);
	CHECK(rr.bytes_written <= dbytes + 64 * KiB /* the repeat */);
	CHECK(same_file(img, P("out1/mixed.img")));
	CHECK(allocated(P("out1/mixed.img")) < size / 2);

	/* an unchanged second backup: nothing new, fingerprints (the file
	 * is touched so its fresh timestamps cannot be trusted and it is read
	 * again; an untouched old file is skipped, see cli_unchanged.sh) */
	CHECK(utimensat(AT_FDCWD, img, NULL, 0) == 0);
	CHECK_OK(backup1(r, img, "vm1", &res2));
	CHECK(res2.bytes_new == 0);
	CHECK(res2.chunks_new == 0);
	CHECK(res2.cbt && strcmp(res2.cbt, "fingerprint") == 0);
	CHECK(res2.bytes_read == res.bytes_read);
	CHECK(res2.chunks_total == total);
	CHECK(strcmp(res2.snapshot, snap1) != 0);
	memcpy(snap2, res2.snapshot, 33);
	CHECK_OK(vmb_repo_snapshot_find(r, snap2, &s));
	if (s) {
		CHECK(vmb_snapshot_parent(s) &&
		      strcmp(vmb_snapshot_parent(s), snap1) == 0);
		CHECK(strcmp(vmb_snapshot_cbt(s), "fingerprint") == 0);
		vmb_snapshot_free(s);
		s = NULL;
	}
	/* another VM name does not use vm1's snapshots as parent */
	{
		vmb_backup_result rx;
		CHECK_OK(backup1(r, img, "other-vm", &rx));
		CHECK(strcmp(rx.cbt, "none") == 0);
		CHECK(rx.chunks_new == 0); /* but dedups against them */
		memcpy(snapx, rx.snapshot, 33);
	}

	/* change 10 bytes in one chunk: exactly one new object, which holds
	 * only the changed 4 KiB page (the parent's page map says which) */
	{
		int fd = open(img, O_RDWR);
		uint8_t x[10];
		test_random(x, sizeof x, 42);
		pwrite_or_die(fd, x, sizeof x, 64 * KiB + 5);
		close(fd);
	}
	wait_next_second(); /* "latest" needs a later time stamp */
	CHECK_OK(backup1(r, img, "vm1", &res3));
	CHECK(res3.chunks_new == 1);
	CHECK(res3.bytes_new == 4096);
	memcpy(snap3, res3.snapshot, 33);
	CHECK_OK(vmb_repo_restore(r, "vm1@latest", P("out3"), &ro,
				  &rr));
	CHECK(same_file(img, P("out3/mixed.img")));
	/* the first snapshot still restores the original bytes */
	CHECK_OK(vmb_repo_restore(r, snap1, P("out1b"), &ro, &rr));
	CHECK(same_file(orig, P("out1b/mixed.img")));

	/* restore never overwrites */
	CHECK_ERR(vmb_repo_restore(r, snap1, P("out3"), &ro, &rr),
		  VMB_EEXISTS);
	CHECK(same_file(img, P("out3/mixed.img")));
	test_sh("mkdir -p '%s' && printf hello > '%s'", P("out4"),
		P("out4/mixed.img"));
	CHECK_ERR(vmb_repo_restore(r, snap1, P("out4"), &ro, &rr),
		  VMB_EEXISTS);
	CHECK(file_size(P("out4/mixed.img")) == 5);
	/* a file where the folder should be */
	CHECK_ERR(vmb_repo_restore(r, snap1, P("out4/mixed.img"), &ro,
				   &rr), VMB_EINVAL);
	/* bad format and unknown disk */
	ro.format = "nosuchformat";
	CHECK_ERR(vmb_repo_restore(r, snap1, P("out5"), &ro, &rr),
		  VMB_EINVAL);
	ro.format = "raw";
	ro.disk = "nosuchdisk";
	CHECK(vmb_repo_restore(r, snap1, P("out5"), &ro, &rr) ==
	      VMB_ENOTFOUND);
	ro.disk = "mixed";
	CHECK_OK(vmb_repo_restore(r, snap1, P("out6"), &ro, &rr));
	CHECK(same_file(orig, P("out6/mixed.img")));

	/* an unencrypted repository round-trips too */
	{
		vmb_repo *rn = open_repo(P("r-none"), NULL);
		vmb_backup_result rb;
		vmb_restore_options ro2 = VMB_RESTORE_OPTIONS_INIT;
		if (rn) {
			CHECK_OK(backup1(rn, orig, NULL, &rb));
			CHECK(rb.chunks_total == (size + (1 << 20) - 1) >> 20);
			CHECK_OK(vmb_repo_restore(rn, "latest", P("outn"),
						  &ro2, &rr));
			CHECK(same_file(orig, P("outn/mixed.img")));
			/* the VM name defaults to the disk name */
			CHECK(count_snapshots(rn, "mixed") == 1);
			vmb_repo_close(rn);
		}
	}
	vmb_repo_close(r);
}

/*
 * Raw restores queue decoded chunks for one writer at a time (the others
 * go on decoding): any number of workers gives the same bytes.
 */
static void test_restore_threads(void)
{
	const char *orig = P("mixed.orig");
	vmb_repo *r = open_repo(P("r-enc"), PASS);
	vmb_restore_options ro = VMB_RESTORE_OPTIONS_INIT;
	vmb_restore_result rr;
	int threads[] = { 1, 3, 8 };
	char out[64];
	if (!r)
		return;
	ro.format = "raw";
	for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
		ro.threads = threads[i];
		snprintf(out, sizeof out, "outt%d", threads[i]);
		CHECK_OK(vmb_repo_restore(r, snap1, P(out), &ro, &rr));
		snprintf(out, sizeof out, "outt%d/mixed.img", threads[i]);
		CHECK(same_file(orig, P(out)));
		CHECK(allocated(P(out)) < file_size(orig) / 2); /* sparse */
	}
	vmb_repo_close(r);
}

static void test_random_reads(void)
{
	const char *img = P("mixed.orig");
	vmb_repo *r = open_repo(P("r-enc"), PASS);
	vmb_snapshot *s = NULL;
	vmb_disk *d = NULL;
	uint64_t size = file_size(img);
	uint8_t *a = malloc(300 * KiB), *b = malloc(300 * KiB);
	int fd = open(img, O_RDONLY), bad = 0;
	if (!r)
		return;
	CHECK_OK(vmb_repo_snapshot_find(r, snap1, &s));
	if (!s)
		goto out;
	CHECK_ERR(vmb_snapshot_disk_open(r, s, "nosuch", &d), VMB_ENOTFOUND);
	CHECK_OK(vmb_snapshot_disk_open(r, s, NULL, &d));
	if (!d)
		goto out;
	CHECK(vmb_disk_size(d) == size);
	/* chosen edges, then random ones */
	uint64_t offs[][2] = {
		{ 0, 1 }, { CS - 1, 2 }, { CS - 7, CS + 14 }, { 0, 300 * KiB },
		{ 3 * MiB + 50, 250 * KiB }, { size - 1, 1 },
		{ size - 6000, 6000 }, { 1 * MiB - 3, 4100 }, { 7 * MiB, 1 },
	};
	for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
		memset(a, 0xaa, offs[i][1]);
		CHECK_OK(vmb_disk_read(d, a, offs[i][0], offs[i][1]));
		vmb_pread_full(fd, b, offs[i][1], offs[i][0]);
		if (memcmp(a, b, offs[i][1])) {
			bad++;
			fprintf(stderr, "read at %llu+%llu differs\n",
				(unsigned long long)offs[i][0],
				(unsigned long long)offs[i][1]);
		}
	}
	uint64_t x = 12345;
	for (int i = 0; i < 400; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t off = (x >> 11) % size;
		size_t len = (size_t)((x >> 3) % (200 * KiB)) + 1;
		if (off + len > size)
			len = (size_t)(size - off);
		if (vmb_disk_read(d, a, off, len) != 0) {
			bad++;
			continue;
		}
		vmb_pread_full(fd, b, len, off);
		if (memcmp(a, b, len))
			bad++;
	}
	CHECK(bad == 0);
	CHECK(vmb_disk_read(d, a, size - 10, 11) < 0);
	CHECK(vmb_disk_read(d, a, size + CS, 1) < 0);
	vmb_disk_close(d);
out:
	vmb_snapshot_free(s);
	vmb_repo_close(r);
	close(fd);
	free(a);
	free(b);
}

static void test_sparse(void)
{
	const char *img = P("sparse.img");
	vmb_repo *r = open_repo(P("r-enc"), PASS);
	vmb_backup_result res;
	vmb_restore_result rr;
	uint8_t *b = malloc(MiB);
	int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (!r || fd < 0)
		return;
	if (ftruncate(fd, (off_t)(256 * MiB)))
		exit(1);
	for (int i = 0; i < 4; i++) {
		test_random(b, MiB, 100 + (uint64_t)i);
		pwrite_or_die(fd, b, MiB - 4096 * (size_t)i,
			      (uint64_t)i * 61 * MiB + 8192);
	}
	close(fd);
	uint64_t alloc = allocated(img);
	CHECK(alloc < 8 * MiB);
	CHECK_OK(backup1(r, img, "sparse", &res));
	CHECK(res.bytes_total == 256 * MiB);
	CHECK(res.bytes_read <= alloc);
	CHECK(res.bytes_read >= 4 * MiB - 6 * 4096);
	CHECK(res.chunks_total == 256 * MiB / CS);
	CHECK(res.chunks_zero >= res.chunks_total - 4 * (MiB / CS + 1));
	CHECK_OK(vmb_repo_restore(r, res.snapshot, P("outs"), NULL,
				  &rr));
	CHECK(same_file(img, P("outs/sparse.img")));
	CHECK(allocated(P("outs/sparse.img")) < 16 * MiB);
	vmb_repo_close(r);
	free(b);
}

static void test_refs(void)
{
	const char *repo = P("r-refs");
	const char *img = P("tiny.img");
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_backup_result res;
	vmb_snapshot *s = NULL;
	char ids[20][33], last_alpha[33], beta[33];
	int n = 0, dup = -1;
	uint8_t buf[CS];

	io.chunk_size = CS;
	CHECK_OK(vmb_repo_init(repo, PASS, &io));
	vmb_repo *r = open_repo(repo, PASS);
	if (!r)
		return;
	CHECK_ERR(vmb_repo_snapshot_find(r, "latest", &s), VMB_ENOTFOUND);
	test_random(buf, sizeof buf, 9);
	{
		int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
		pwrite_or_die(fd, buf, sizeof buf, 0);
		close(fd);
	}
	/* back up until two ids share their first hex digit (<= 17) */
	while (dup < 0 && n < 17) {
		CHECK_OK(backup1(r, img, "alpha", &res));
		memcpy(ids[n], res.snapshot, 33);
		for (int i = 0; i < n; i++)
			if (ids[i][0] == ids[n][0])
				dup = i;
		n++;
	}
	CHECK(dup >= 0);
	wait_next_second();
	CHECK_OK(backup1(r, img, "alpha", &res));
	memcpy(last_alpha, res.snapshot, 33);
	wait_next_second();
	CHECK_OK(backup1(r, img, "beta", &res));
	memcpy(beta, res.snapshot, 33);

	/* full id, prefixes */
	CHECK_OK(vmb_repo_snapshot_find(r, ids[0], &s));
	CHECK(s && strcmp(vmb_snapshot_id(s), ids[0]) == 0);
	vmb_snapshot_free(s);
	{
		char pre[13];
		memcpy(pre, ids[0], 12);
		pre[12] = 0;
		CHECK_OK(vmb_repo_snapshot_find(r, pre, &s));
		CHECK(s && strcmp(vmb_snapshot_id(s), ids[0]) == 0);
		vmb_snapshot_free(s);
		/* upper case is not an id */
		for (int i = 0; i < 12; i++)
			if (pre[i] >= 'a')
				pre[i] = (char)(pre[i] - 32);
		if (strcmp(pre, ids[0]) != 0 && strpbrk(pre, "ABCDEF"))
			CHECK_ERR(vmb_repo_snapshot_find(r, pre, &s),
				  VMB_ENOTFOUND);
	}
	/* latest, VM@latest */
	CHECK_OK(vmb_repo_snapshot_find(r, "latest", &s));
	CHECK(s && strcmp(vmb_snapshot_id(s), beta) == 0);
	vmb_snapshot_free(s);
	CHECK_OK(vmb_repo_snapshot_find(r, "alpha@latest", &s));
	CHECK(s && strcmp(vmb_snapshot_id(s), last_alpha) == 0);
	vmb_snapshot_free(s);
	CHECK_OK(vmb_repo_snapshot_find(r, "beta@latest", &s));
	CHECK(s && strcmp(vmb_snapshot_id(s), beta) == 0);
	vmb_snapshot_free(s);
	/* ambiguous */
	{
		char pre[2] = { ids[dup][0], 0 };
		s = (vmb_snapshot *)1;
		CHECK_ERR(vmb_repo_snapshot_find(r, pre, &s), VMB_EAMBIGUOUS);
		CHECK(s == NULL);
		CHECK(strstr(vmb_error_message(), pre) != NULL);
	}
	/* unknown */
	{
		char fake[33];
		int used[256] = { 0 };
		snprintf(fake, sizeof fake, "%s", ids[0]);
		fake[31] = fake[31] == '0' ? '1' : '0';
		CHECK_ERR(vmb_repo_snapshot_find(r, fake, &s), VMB_ENOTFOUND);
		/* a two-digit prefix no id starts with */
		vmb_snapshot **l;
		size_t cnt;
		CHECK_OK(vmb_repo_snapshots(r, NULL, &l, &cnt));
		CHECK(cnt == (size_t)n + 2);
		for (size_t i = 0; i < cnt; i++) {
			unsigned v;
			sscanf(vmb_snapshot_id(l[i]), "%2x", &v);
			used[v] = 1;
			if (i)
				CHECK(vmb_snapshot_time(l[i - 1]) <=
				      vmb_snapshot_time(l[i]));
		}
		CHECK(cnt && strcmp(vmb_snapshot_id(l[cnt - 1]), beta) == 0);
		vmb_snapshot_list_free(l, cnt);
		for (int v = 0; v < 256; v++)
			if (!used[v]) {
				char pre[3];
				snprintf(pre, sizeof pre, "%02x", v);
				CHECK_ERR(vmb_repo_snapshot_find(r, pre, &s),
					  VMB_ENOTFOUND);
				break;
			}
	}
	CHECK_ERR(vmb_repo_snapshot_find(r, "nosuchvm@latest", &s),
		  VMB_ENOTFOUND);
	CHECK_ERR(vmb_repo_snapshot_find(r, "xyz", &s), VMB_ENOTFOUND);
	CHECK_ERR(vmb_repo_snapshot_find(r, "../../config", &s), VMB_ENOTFOUND);
	CHECK_ERR(vmb_repo_snapshot_find(r, "", &s), VMB_EINVAL);
	{
		char longer[40];
		snprintf(longer, sizeof longer, "%s0", ids[0]);
		CHECK(vmb_repo_snapshot_find(r, longer, &s) == VMB_ENOTFOUND);
	}
	CHECK(count_snapshots(r, "alpha") == (size_t)n + 1);
	CHECK(count_snapshots(r, "beta") == 1);
	CHECK(count_snapshots(r, "gamma") == 0);

	/* backup failures leave no snapshot and no session behind */
	{
		vmb_backup_source src = { P("no-such.img"), NULL, NULL };
		vmb_backup_options o = VMB_BACKUP_OPTIONS_INIT;
		size_t before = count_snapshots(r, NULL);
		CHECK(vmb_repo_backup(r, &src, 1, &o, &res) < 0);
		CHECK(vmb_repo_backup(r, &src, 0, &o, &res) == VMB_EINVAL);
		CHECK(count_snapshots(r, NULL) == before);
		CHECK(test_sh("test -z \"$(ls -A '%s/sessions' 2>/dev/null)\"",
			      repo) == 0);
	}
	vmb_repo_close(r);
}

static int cancel_cb(const vmb_progress *p, void *payload)
{
	(*(int *)payload)++;
	return 1;
}

static void test_cancel(void)
{
	vmb_repo *r = open_repo(P("r-refs"), PASS);
	vmb_backup_source src = { P("mixed.orig"), NULL, NULL };
	vmb_backup_options o = VMB_BACKUP_OPTIONS_INIT;
	vmb_backup_result res;
	int calls = 0;
	if (!r)
		return;
	size_t before = count_snapshots(r, NULL);
	o.progress = cancel_cb;
	o.progress_payload = &calls;
	o.vm = "cancelled";
	CHECK_ERR(vmb_repo_backup(r, &src, 1, &o, &res), VMB_ECANCELED);
	CHECK(calls >= 1);
	CHECK(count_snapshots(r, NULL) == before);
	CHECK(count_snapshots(r, "cancelled") == 0);
	/* and the next backup completes */
	o.progress = NULL;
	CHECK_OK(vmb_repo_backup(r, &src, 1, &o, &res));
	CHECK(count_snapshots(r, "cancelled") == 1);
	vmb_repo_close(r);
}

/* The image is cut short while it is backed up (on the first progress
 * report, after the first chunk was queued): the backup fails naming the
 * file, with direct reads and without, and records no snapshot. */
static int shrink_cb(const vmb_progress *p, void *payload)
{
	const char *path = payload;
	(void)p;
	if (truncate(path, (off_t)(1 * MiB)) != 0)
		exit(1);
	return 0;
}

static void test_shrink(void)
{
	static const char *modes[] = { "1", "0", "auto" };
	vmb_repo *r = open_repo(P("r-refs"), PASS);
	if (!r)
		return;
	for (int i = 0; i < 3; i++) {
		vmb_backup_source src = { P("shrinking.img"), NULL, NULL };
		vmb_backup_options o = VMB_BACKUP_OPTIONS_INIT;
		vmb_backup_result res;
		make_mixed(src.path);
		setenv("VMB_DIRECT_READ", modes[i], 1);
		o.progress = shrink_cb;
		o.progress_payload = (void *)src.path;
		o.vm = "shrinking";
		o.threads = 2;
		CHECK_ERR(vmb_repo_backup(r, &src, 1, &o, &res), VMB_EIO);
		CHECK(strstr(vmb_error_message(), "shrank") != NULL);
		CHECK(strstr(vmb_error_message(), "shrinking.img") != NULL);
		CHECK(count_snapshots(r, "shrinking") == 0);
	}
	unsetenv("VMB_DIRECT_READ");
	vmb_repo_close(r);
}

static void test_multidisk(void)
{
	const char *repo = P("r-refs");
	vmb_repo *r = open_repo(repo, PASS);
	vmb_backup_result res;
	vmb_restore_result rr;
	vmb_restore_options ro = VMB_RESTORE_OPTIONS_INIT;
	vmb_snapshot *s = NULL;
	const char *p[3] = { P("d1/disk.img"), P("d2/disk.img"),
			     P("d3/disk-2.img") };
	uint8_t buf[3 * CS];
	if (!r)
		return;
	test_sh("mkdir -p '%s' '%s' '%s'", P("d1"), P("d2"),
		P("d3"));
	for (int i = 0; i < 3; i++) {
		int fd = open(p[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
		test_random(buf, sizeof buf, 500 + (uint64_t)i);
		pwrite_or_die(fd, buf, sizeof buf - (size_t)i * 1000, 0);
		close(fd);
	}
	vmb_backup_source src[3] = { { p[0], NULL, NULL }, { p[1], NULL, NULL },
				     { p[2], NULL, NULL } };
	vmb_backup_options o = VMB_BACKUP_OPTIONS_INIT;
	o.vm = "multi";
	CHECK_OK(vmb_repo_backup(r, src, 3, &o, &res));
	CHECK(res.bytes_total == 3 * sizeof buf - 3000);
	CHECK_OK(vmb_repo_snapshot_find(r, res.snapshot, &s));
	if (!s) {
		vmb_repo_close(r);
		return;
	}
	CHECK(vmb_snapshot_disk_count(s) == 3);
	const char *n0 = vmb_snapshot_disk_name(s, 0);
	const char *n1 = vmb_snapshot_disk_name(s, 1);
	const char *n2 = vmb_snapshot_disk_name(s, 2);
	CHECK(n0 && n1 && n2);
	if (!n0 || !n1 || !n2)
		goto out;
	CHECK(strcmp(n0, "disk") == 0);
	CHECK(strcmp(n0, n1) && strcmp(n0, n2) && strcmp(n1, n2));
	/* one disk, as raw */
	ro.disk = n1;
	ro.format = "raw";
	CHECK_OK(vmb_repo_restore(r, res.snapshot, P("outm1"), &ro,
				  &rr));
	CHECK(rr.disks == 1);
	{
		char want[600];
		snprintf(want, sizeof want, "%s/%s.img", P("outm1"), n1);
		CHECK(same_file(p[1], want));
		CHECK(test_sh("test $(ls '%s' | wc -l) = 1",
			      P("outm1")) == 0);
	}
	/* all disks, and random access by name */
	ro.disk = NULL;
	CHECK_OK(vmb_repo_restore(r, "multi@latest", P("outm"), &ro,
				  &rr));
	CHECK(rr.disks == 3);
	for (int i = 0; i < 3; i++) {
		char want[600];
		snprintf(want, sizeof want, "%s/%s.img", P("outm"),
			 vmb_snapshot_disk_name(s, (size_t)i));
		CHECK(same_file(p[i], want));
	}
	{
		vmb_disk *d = NULL;
		uint8_t a[100], b[100];
		CHECK_OK(vmb_snapshot_disk_open(r, s, n2, &d));
		if (d) {
			CHECK(vmb_disk_size(d) == sizeof buf - 2000);
			CHECK_OK(vmb_disk_read(d, a, CS - 50, 100));
			int fd = open(p[2], O_RDONLY);
			vmb_pread_full(fd, b, 100, CS - 50);
			close(fd);
			CHECK(memcmp(a, b, 100) == 0);
			vmb_disk_close(d);
		}
	}
out:
	vmb_snapshot_free(s);
	vmb_repo_close(r);
}

static void test_check_and_damage(void)
{
	const char *src = P("r-enc");
	const char *repo = P("r-dam");
	const char *img = P("mixed.orig");
	vmb_check_result cr;
	vmb_restore_result rr;
	char chunk[1024], chunk2[1024];
	vmb_repo *r;

	r = open_repo(src, PASS);
	if (!r)
		return;
	CHECK_OK(vmb_repo_check(r, &cr));
	CHECK(cr.snapshots == 5); /* 3 of vm1, other-vm, sparse */
	CHECK(cr.indexes >= 3);
	CHECK(cr.chunks_referenced > 0);
	CHECK(cr.chunks_missing == 0 && cr.errors == 0);
	vmb_repo_close(r);

	test_sh("cp -a '%s' '%s'", src, repo);
	r = open_repo(repo, PASS);
	if (!r)
		return;
	/* the chunk at offset 0 (text) only in the original image's
	 * snapshots; chunk 1 (random) was changed in snap3 */
	chunk_file(r, repo, img, 0, CS, chunk, sizeof chunk);
	chunk_file(r, repo, img, 3 * MiB, CS, chunk2, sizeof chunk2);
	CHECK(exists(chunk) && exists(chunk2));

	/* flipped byte: restore fails, no image is left */
	test_sh("cp '%s' '%s.bak'", chunk, chunk);
	test_sh("python3 -c \"import sys;p=sys.argv[1];b=bytearray(open(p,'rb')"
		".read());b[len(b)//2]^=1;open(p,'wb').write(b)\" '%s'", chunk);
	CHECK_ERR(vmb_repo_restore(r, snap1, P("outd1"), NULL, &rr),
		  VMB_ECORRUPT);
	CHECK(!exists(P("outd1/mixed.img")));
	CHECK(strstr(vmb_error_message(), "mixed") != NULL);
	{
		/* random access fails on that chunk only */
		vmb_snapshot *s = NULL;
		vmb_disk *d = NULL;
		uint8_t a[16];
		CHECK_OK(vmb_repo_snapshot_find(r, snap1, &s));
		if (s && vmb_snapshot_disk_open(r, s, NULL, &d) == 0) {
			CHECK_ERR(vmb_disk_read(d, a, 100, 16), VMB_ECORRUPT);
			CHECK_OK(vmb_disk_read(d, a, 3 * MiB + 200, 16));
			vmb_disk_close(d);
		}
		vmb_snapshot_free(s);
	}
	/* check only looks at metadata: still clean */
	CHECK_OK(vmb_repo_check(r, &cr));
	/* truncated */
	test_sh("cp '%s.bak' '%s' && truncate -s 100 '%s'", chunk, chunk, chunk);
	CHECK_ERR(vmb_repo_restore(r, snap1, P("outd2"), NULL, &rr),
		  VMB_ECORRUPT);
	CHECK(!exists(P("outd2/mixed.img")));
	/* extended, a little and by more than a whole chunk */
	test_sh("cp '%s.bak' '%s' && printf 'xyz' >> '%s'", chunk, chunk,
		chunk);
	CHECK_ERR(vmb_repo_restore(r, snap1, P("outd2b"), NULL, &rr),
		  VMB_ECORRUPT);
	CHECK(strstr(vmb_error_message(), "too long") != NULL);
	CHECK(!exists(P("outd2b/mixed.img")));
	test_sh("cp '%s.bak' '%s' && head -c %d /dev/zero >> '%s'", chunk,
		chunk, 2 * CS, chunk);
	CHECK_ERR(vmb_repo_restore(r, snap1, P("outd2c"), NULL, &rr),
		  VMB_ECORRUPT);
	CHECK(strstr(vmb_error_message(), "too long") != NULL);
	CHECK(!exists(P("outd2c/mixed.img")));
	/* swapped for another valid chunk: the binding catches it */
	test_sh("cp '%s' '%s'", chunk2, chunk);
	CHECK_ERR(vmb_repo_restore(r, snap1, P("outd3"), NULL, &rr),
		  VMB_ECORRUPT);
	CHECK(!exists(P("outd3/mixed.img")));
	/* restored from the backup copy: fine again */
	test_sh("cp '%s.bak' '%s' && rm '%s.bak'", chunk, chunk, chunk);
	CHECK_OK(vmb_repo_restore(r, snap1, P("outd4"), NULL, &rr));
	CHECK(same_file(img, P("outd4/mixed.img")));

	/* deleted: check finds it and names a snapshot */
	test_sh("rm '%s'", chunk);
	logbuf[0] = 0;
	vmb_log_set(capture, NULL, VMB_LOG_WARN);
	CHECK_ERR(vmb_repo_check(r, &cr), VMB_EVERIFY);
	vmb_log_set(NULL, NULL, VMB_LOG_WARN);
	CHECK(cr.chunks_missing == 1);
	CHECK(cr.errors >= 1);
	/* reported once, for one of the snapshots that use it */
	CHECK(strstr(logbuf, snap1) || strstr(logbuf, snap2) ||
	      strstr(logbuf, snap3) || strstr(logbuf, snapx));
	CHECK(strstr(logbuf, "missing") != NULL);
	CHECK_ERR(vmb_repo_restore(r, snap1, P("outd5"), NULL, &rr),
		  VMB_ECORRUPT);
	CHECK(!exists(P("outd5/mixed.img")));
	/* other snapshots without that chunk still restore: the sparse one */
	CHECK_OK(vmb_repo_restore(r, "sparse@latest", P("outd6"), NULL,
				  &rr));

	/* a damaged manifest: check reports it */
	{
		char m[1024];
		snprintf(m, sizeof m, "%s/snapshots/%s", repo, snap2);
		test_sh("truncate -s 50 '%s'", m);
		logbuf[0] = 0;
		vmb_log_set(capture, NULL, VMB_LOG_WARN);
		CHECK_ERR(vmb_repo_check(r, &cr), VMB_EVERIFY);
		vmb_log_set(NULL, NULL, VMB_LOG_WARN);
		CHECK(strstr(logbuf, snap2) != NULL);
		CHECK(cr.errors >= 2);
		vmb_snapshot *s = NULL;
		CHECK_ERR(vmb_repo_snapshot_find(r, snap2, &s), VMB_ECORRUPT);
	}
	vmb_repo_close(r);

	/* a wrong passphrase never gets to the data */
	CHECK_ERR(vmb_repo_open(repo, "nope", &r), VMB_EAUTH);
}

static void test_lock(void)
{
	const char *repo = P("r-refs");
	vmb_repo *a = open_repo(repo, PASS), *b = open_repo(repo, PASS);
	vmb_target *t = NULL;
	if (!a || !b)
		return;
	CHECK_OK(vmb_repo_lock(a, 60));
	CHECK_ERR(vmb_repo_lock(b, 60), VMB_ELOCKED);
	CHECK_OK(vmb_repo_lock(a, 60)); /* the holder renews */
	CHECK_OK(vmb_repo_unlock(b));   /* not ours: a no-op */
	CHECK_ERR(vmb_repo_lock(b, 60), VMB_ELOCKED);
	CHECK_OK(vmb_repo_unlock(a));
	CHECK_OK(vmb_repo_lock(b, 60));
	CHECK_ERR(vmb_repo_lock(a, 60), VMB_ELOCKED);
	CHECK_OK(vmb_repo_unlock(b));
	CHECK_OK(vmb_repo_unlock(b)); /* twice is fine */
	CHECK_OK(vmb_repo_lock(a, 60));
	/* closing the handle releases the lock */
	vmb_repo_close(a);
	a = NULL;
	CHECK_OK(vmb_repo_lock(b, 60));
	CHECK_OK(vmb_repo_unlock(b));

	/* an expired lease (a crashed holder) can be taken over; a live one
	 * written by someone else cannot */
	CHECK_OK(vmb_target_open(repo, &t));
	if (t) {
		char buf[300];
		snprintf(buf, sizeof buf, "{\"token\":\"0123456789abcdef0123456789"
			 "abcdef\",\"host\":\"dead-host\",\"pid\":1,"
			 "\"expires\":%lld}\n", (long long)time(NULL) - 10);
		CHECK_OK(vmb_target_put(t, "locks/maintenance", buf,
					strlen(buf)));
		CHECK_OK(vmb_repo_lock(b, 60));
		CHECK_OK(vmb_repo_unlock(b));
		snprintf(buf, sizeof buf, "{\"token\":\"0123456789abcdef0123456789"
			 "abcdef\",\"host\":\"live-host\",\"pid\":1,"
			 "\"expires\":%lld}\n", (long long)time(NULL) + 600);
		CHECK_OK(vmb_target_put(t, "locks/maintenance", buf,
					strlen(buf)));
		CHECK_ERR(vmb_repo_lock(b, 60), VMB_ELOCKED);
		CHECK(strstr(vmb_error_message(), "live-host") != NULL);
		/* someone else's lease is not removed by our unlock */
		CHECK_OK(vmb_repo_unlock(b));
		{
			uint64_t sz;
			CHECK_OK(vmb_target_stat(t, "locks/maintenance", &sz,
						 NULL));
		}
		CHECK_OK(vmb_target_delete(t, "locks/maintenance"));
		CHECK_OK(vmb_repo_lock(b, 60));
		vmb_target_close(t);
	}
	vmb_repo_close(b);
}

/* Store @len bytes as a chunk object; its id in @id. */
static void put_chunk(vmb_repo *r, const uint8_t *data, size_t len,
		      uint8_t id[32])
{
	char name[80];
	uint64_t stored = 0;
	vmb_crypto_chunk_id(r->keys, data, len, id);
	vmb_chunk_name(id, name);
	CHECK_OK(vmb_repo__put_blob(r, VMB_BLOB_CHUNK, name, id, 32, data,
				    len, &stored));
}

/*
 * The entry reader (lib/repo/entry.c) on hand-made patch entries: a patch
 * over a stored base and over zeros gives the base with the runs
 * replaced; a patch object longer or shorter than its runs, a base of the
 * wrong length, a missing patch object or base: VMB_ECORRUPT naming the
 * patch or base and the disk offset, never bytes from the wrong place.
 */
static void test_patch_entries(void)
{
	const char *url = P("r-patch");
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_repo *r;
	vmb_index ix;
	uint8_t *base = malloc(CS), *want = malloc(CS), *out = malloc(CS);
	uint8_t patch[3 * 4096], bid[32], pid[32], sid[32], lid[32], gone[32];
	vmb_index_run runs[] = { { 0, 4096 }, { 8192, 8192 } };
	size_t len = 0;

	io.chunk_size = CS;
	CHECK_OK(vmb_repo_init(url, PASS, &io));
	if (!(r = open_repo(url, PASS)) || !base || !want || !out)
		goto out;
	fill_text(base, CS, 11);
	fill_text(patch, sizeof patch, 12);
	put_chunk(r, base, CS, bid);
	put_chunk(r, patch, sizeof patch, pid);
	put_chunk(r, patch, 4096, sid);           /* too short for the runs */
	put_chunk(r, base, CS - 1000, lid);       /* base of the wrong size */
	memset(gone, 0x5a, sizeof gone);          /* never stored */
	CHECK_OK(vmb_index_alloc(&ix, 2 * (uint64_t)CS, CS));

	/* a patch over a stored base */
	CHECK_OK(vmb_index_set_patch(&ix, 1, bid, runs, 2));
	memcpy(ix.e[1].id, pid, 32);
	memcpy(want, base, CS);
	memcpy(want, patch, 4096);
	memcpy(want + 8192, patch + 4096, 8192);
	memset(out, 0xee, CS);
	CHECK_OK(vmb_repo__read_entry(r, &ix, 1, NULL, out, &len));
	CHECK(len == CS && memcmp(out, want, CS) == 0);
	/* a whole-chunk entry and a zero entry beside it */
	ix.e[0].kind = VMB_CHUNK_ZERO;
	CHECK_OK(vmb_repo__read_entry(r, &ix, 0, NULL, out, &len));
	CHECK(len == CS && vmb_is_zero(out, CS));
	vmb_index_free(&ix);

	/* over zeros */
	CHECK_OK(vmb_index_alloc(&ix, 2 * (uint64_t)CS, CS));
	CHECK_OK(vmb_index_set_patch(&ix, 0, NULL, runs, 2));
	memcpy(ix.e[0].id, pid, 32);
	memset(want, 0, CS);
	memcpy(want, patch, 4096);
	memcpy(want + 8192, patch + 4096, 8192);
	CHECK_OK(vmb_repo__read_entry(r, &ix, 0, NULL, out, &len));
	CHECK(len == CS && memcmp(out, want, CS) == 0);
	vmb_index_free(&ix);

	struct { const uint8_t *base, *patch; const char *says; } bad[] = {
		{ bid, sid, "patch for offset" },      /* 4096 of 12288 */
		{ lid, pid, "base chunk for offset" }, /* CS - 1000 bytes */
		{ bid, gone, "patch for offset" },     /* missing patch */
		{ gone, pid, "base of the patch for offset" },
	};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		CHECK_OK(vmb_index_alloc(&ix, 2 * (uint64_t)CS, CS));
		CHECK_OK(vmb_index_set_patch(&ix, 1, bad[k].base, runs, 2));
		memcpy(ix.e[1].id, bad[k].patch, 32);
		CHECK_ERR(vmb_repo__read_entry(r, &ix, 1, NULL, out, &len),
			  VMB_ECORRUPT);
		char at[64];
		snprintf(at, sizeof at, "offset %u", CS); /* entry 1 */
		CHECK(strstr(vmb_error_message(), bad[k].says) != NULL);
		CHECK(strstr(vmb_error_message(), at) != NULL);
		vmb_index_free(&ix);
	}
	/* a patch longer than its runs: runs of 4096 bytes, object 12288 */
	{
		vmb_index_run one[] = { { 4096, 4096 } };
		CHECK_OK(vmb_index_alloc(&ix, 2 * (uint64_t)CS, CS));
		CHECK_OK(vmb_index_set_patch(&ix, 1, bid, one, 1));
		memcpy(ix.e[1].id, pid, 32);
		CHECK_ERR(vmb_repo__read_entry(r, &ix, 1, NULL, out, &len),
			  VMB_ECORRUPT);
		CHECK(strstr(vmb_error_message(), "patch for offset") != NULL);
		vmb_index_free(&ix);
	}
	vmb_repo_close(r);
out:
	free(base);
	free(want);
	free(out);
}

/* expectations: counts per VM and the newest snapshot's age against a
 * given clock (what rollback or deletion of whole snapshots changes) */
static void test_expect(void)
{
	vmb_expect_options eo = VMB_EXPECT_OPTIONS_INIT;
	vmb_expect_result er;
	vmb_check_result cr;
	vmb_repo *r = open_repo(P("r-enc"), PASS);
	int64_t newest;

	if (!r)
		return;
	eo.vm = "vm1";
	eo.min_snapshots = 3;
	CHECK_OK(vmb_repo_check_expect(r, &eo, &cr, &er));
	CHECK(er.vms == 1 && er.snapshots == 3 && er.fewest == 3);
	CHECK(er.failures == 0 && cr.errors == 0);
	newest = er.oldest_latest;
	CHECK(newest > 0);
	eo.min_snapshots = 4;
	CHECK_ERR(vmb_repo_check_expect(r, &eo, &cr, &er), VMB_EVERIFY);
	CHECK(er.failures == 1 && cr.errors == 1);
	CHECK(strstr(vmb_error_message(),
		     "VM vm1: 3 snapshots, expected at least 4") != NULL);
	/* age against a clock 100 s after the newest snapshot */
	eo.min_snapshots = 0;
	eo.now = newest + 100;
	eo.max_age = 100;
	CHECK_OK(vmb_repo_check_expect(r, &eo, &cr, &er));
	eo.max_age = 99;
	CHECK_ERR(vmb_repo_check_expect(r, &eo, &cr, &er), VMB_EVERIFY);
	CHECK(strstr(vmb_error_message(), "is 1m 40s old") != NULL);
	CHECK(strstr(vmb_error_message(), "expected within 99s") != NULL);
	/* a VM with nothing, and every VM on its own */
	eo.vm = "no-such-vm";
	eo.max_age = 86400;
	CHECK_ERR(vmb_repo_check_expect(r, &eo, &cr, &er), VMB_EVERIFY);
	CHECK(strstr(vmb_error_message(), "VM no-such-vm: no snapshot, "
		     "expected one within 1d") != NULL);
	eo.vm = NULL;
	eo.min_snapshots = 1;
	eo.max_age = 0;
	CHECK_OK(vmb_repo_check_expect(r, &eo, &cr, &er));
	CHECK(er.vms >= 2 && er.snapshots == 5 && er.fewest == 1);
	eo.min_snapshots = 2; /* other-vm has one */
	CHECK_ERR(vmb_repo_check_expect(r, &eo, &cr, &er), VMB_EVERIFY);
	CHECK(er.failures == er.vms - 1);
	eo.max_age = -1;
	CHECK_ERR(vmb_repo_check_expect(r, &eo, &cr, &er), VMB_EINVAL);
	/* no expectations: the plain check */
	CHECK_OK(vmb_repo_check_expect(r, NULL, &cr, NULL));
	CHECK(cr.snapshots == 5);
	vmb_repo_close(r);
}

int main(void)
{
	setenv("VMB_KDF_OPSLIMIT", "1", 1);
	setenv("VMB_KDF_MEMLIMIT", "8388608", 1);
	setenv("XDG_CACHE_HOME", P("cache"), 1);
	test_init_open();
	test_backup_restore();
	test_restore_threads();
	test_random_reads();
	test_sparse();
	test_refs();
	test_cancel();
	test_shrink();
	test_multidisk();
	test_check_and_damage();
	test_expect();
	test_lock();
	test_patch_entries();
	return test_done();
}
