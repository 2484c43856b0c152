/*
 * The storage backend contract (include/vmbackup/sys/target.h), checked
 * the same way against every backend: the local one always (a temporary
 * folder), and the URLs in VMB_TEST_S3_URL, VMB_TEST_NFS3_URL and
 * VMB_TEST_NFS4_URL when they are set (tests/integration/targets.sh starts
 * the servers and sets them), plus any URL given on the command line.
 *
 * Each run works in a fresh sub-folder / sub-prefix of the URL ("run-XXXX")
 * and removes what it wrote at the end.  For S3 the binary lowers the list
 * page size (VMB_S3_LIST_PAGE=7) and the multipart threshold
 * (VMB_S3_MULTIPART_THRESHOLD=8M, parts of 5M) unless they are set, so
 * pagination and multipart uploads are exercised.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "testutil.h"
#include "vmbackup/target.h"
#include "common/util.h"

#define MiB (1024 * 1024)

static const char *cur_url;

/* Insert "/sub" into url before any "?query". */
static char *url_with_sub(const char *url, const char *sub)
{
	const char *q = strchr(url, '?');
	size_t n = q ? (size_t)(q - url) : strlen(url);
	char *out = malloc(strlen(url) + strlen(sub) + 3);
	while (n > 0 && url[n - 1] == '/')
		n--;
	sprintf(out, "%.*s/%s%s", (int)n, url, sub, q ? q : "");
	return out;
}

static int put_str(vmb_target *t, const char *name, const char *s)
{
	return vmb_target_put(t, name, s, strlen(s));
}

/* get and compare with an expected buffer */
static int get_eq(vmb_target *t, const char *name, const void *want,
		  size_t wlen)
{
	void *data = NULL;
	size_t len = 0;
	int r = vmb_target_get(t, name, &data, &len);
	if (r) {
		fprintf(stderr, "[%s] get %s: %s\n", cur_url, name,
			vmb_error_message());
		return 0;
	}
	int ok = len == wlen && (wlen == 0 || memcmp(data, want, wlen) == 0);
	if (!ok)
		fprintf(stderr, "[%s] get %s: %zu bytes, want %zu (or content "
			"differs)\n", cur_url, name, len, wlen);
	vmb_free(data);
	return ok;
}

/* ---- list helpers ---- */

struct names {
	char *v[512];
	uint64_t size[512];
	int n;
	int calls;
	int stop_after;
};

static int collect(const char *name, uint64_t size, int64_t mtime, void *p)
{
	struct names *ns = p;
	(void)mtime;
	ns->calls++;
	if (ns->n < 512) {
		ns->size[ns->n] = size;
		ns->v[ns->n++] = strdup(name);
	}
	return ns->stop_after && ns->calls >= ns->stop_after;
}

static void names_free(struct names *ns)
{
	for (int i = 0; i < ns->n; i++)
		free(ns->v[i]);
	ns->n = 0;
	ns->calls = 0;
}

static int names_has(const struct names *ns, const char *name)
{
	int c = 0;
	for (int i = 0; i < ns->n; i++)
		c += strcmp(ns->v[i], name) == 0;
	return c;
}

/* list prefix and compare with exactly the given NULL-terminated set */
static int list_is(vmb_target *t, const char *prefix, const char **want)
{
	struct names ns = { 0 };
	int ok = 1, nw = 0;
	if (vmb_target_list(t, prefix, collect, &ns) != 0) {
		fprintf(stderr, "[%s] list '%s': %s\n", cur_url, prefix,
			vmb_error_message());
		return 0;
	}
	for (; want[nw]; nw++)
		if (names_has(&ns, want[nw]) != 1) {
			fprintf(stderr, "[%s] list '%s': %s seen %d times\n",
				cur_url, prefix, want[nw],
				names_has(&ns, want[nw]));
			ok = 0;
		}
	if (ns.n != nw) {
		fprintf(stderr, "[%s] list '%s': %d names, want %d:", cur_url,
			prefix, ns.n, nw);
		for (int i = 0; i < ns.n; i++)
			fprintf(stderr, " %s", ns.v[i]);
		fprintf(stderr, "\n");
		ok = 0;
	}
	names_free(&ns);
	return ok;
}

/* ---- concurrency ---- */

#define NTHREADS 8
#define NITER 6
#define OBJ 20000 /* above the NFSv4 write cut: several WRITEs per put */

struct worker {
	vmb_target *t;
	int id;
	atomic_int *failures;
};

static void make_obj(uint8_t *buf, size_t len, uint64_t seed)
{
	test_random(buf, len, seed);
	memcpy(buf, &seed, sizeof seed);
}

static int obj_valid(const uint8_t *buf, size_t len)
{
	uint64_t seed;
	uint8_t *want;
	int ok;
	if (len != OBJ)
		return 0;
	memcpy(&seed, buf, sizeof seed);
	want = malloc(len);
	make_obj(want, len, seed);
	ok = memcmp(want, buf, len) == 0;
	free(want);
	return ok;
}

static int torn_ok;
static atomic_int torn_reads;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t *buf = malloc(OBJ);
	char name[64];
	for (int i = 0; i < NITER; i++) {
		void *data = NULL;
		size_t len = 0;
		uint64_t seed = (uint64_t)w->id * 1000 + (uint64_t)i + 1;
		make_obj(buf, OBJ, seed);
		snprintf(name, sizeof name, "conc/t%d/obj%d", w->id, i);
		if (vmb_target_put(w->t, name, buf, OBJ) != 0) {
			fprintf(stderr, "[%s] thread %d put %s: %s\n", cur_url,
				w->id, name, vmb_error_message());
			atomic_fetch_add(w->failures, 1);
			continue;
		}
		if (vmb_target_get(w->t, name, &data, &len) != 0 ||
		    len != OBJ || memcmp(data, buf, OBJ) != 0) {
			fprintf(stderr, "[%s] thread %d get %s: %s\n", cur_url,
				w->id, name, vmb_error_message());
			atomic_fetch_add(w->failures, 1);
		}
		vmb_free(data);
		data = NULL;
		/* everyone writes the same name: readers see a whole object */
		if (vmb_target_put(w->t, "conc/shared", buf, OBJ) != 0) {
			fprintf(stderr, "[%s] thread %d put shared: %s\n",
				cur_url, w->id, vmb_error_message());
			atomic_fetch_add(w->failures, 1);
		}
		if (vmb_target_get(w->t, "conc/shared", &data, &len) != 0) {
			fprintf(stderr, "[%s] thread %d get shared: %s\n",
				cur_url, w->id, vmb_error_message());
			atomic_fetch_add(w->failures, 1);
		} else if (!obj_valid(data, len)) {
			if (torn_ok) {
				/* s3rver writes objects in place, not
				   atomically as S3 does: count, do not blame
				   the client */
				atomic_fetch_add(&torn_reads, 1);
			} else {
				fprintf(stderr, "[%s] thread %d get shared: "
					"%zu bytes, not one whole object\n",
					cur_url, w->id, len);
				atomic_fetch_add(w->failures, 1);
			}
		}
		vmb_free(data);
	}
	free(buf);
	return NULL;
}

static int del_cb(const char *name, uint64_t size, int64_t mtime, void *p)
{
	struct names *ns = p;
	(void)size;
	(void)mtime;
	if (ns->n < 512)
		ns->v[ns->n++] = strdup(name);
	return 0;
}

/* ---- the checks, for one URL ---- */

static void run_contract(const char *base_url)
{
	char sub[32], longname[256], deep[256], name[64];
	uint8_t rnd[8];
	vmb_target *t = NULL;
	void *data;
	size_t len;
	uint64_t size;
	int64_t mtime, m0, m1;
	int before = test_failures;
	double t0 = vmb_now();

	test_random(rnd, sizeof rnd, (uint64_t)time(NULL) ^ (uint64_t)getpid());
	snprintf(sub, sizeof sub, "run-%02x%02x%02x%02x", rnd[0], rnd[1],
		 rnd[2], rnd[3]);
	char *url = url_with_sub(base_url, sub);
	cur_url = url;
	printf("# contract: %s\n", url);
	fflush(stdout);

	CHECK_OK(vmb_target_open(url, &t));
	if (!t) {
		free(url);
		return;
	}
	CHECK(strcmp(vmb_target_url(t), url) == 0);

	/* put / get / stat */
	CHECK_OK(put_str(t, "hello", "hello world"));
	CHECK(get_eq(t, "hello", "hello world", 11));
	size = 0;
	mtime = 0;
	CHECK_OK(vmb_target_stat(t, "hello", &size, &mtime));
	CHECK(size == 11);
	CHECK(llabs((long long)(mtime - (int64_t)time(NULL))) < 3600);

	/* missing objects: VMB_ENOTFOUND, message names the target */
	data = NULL;
	CHECK_ERR(vmb_target_get(t, "missing/object", &data, &len),
		  VMB_ENOTFOUND);
	CHECK(data == NULL);
	CHECK(strstr(vmb_error_message(), url) != NULL);
	CHECK_ERR(vmb_target_stat(t, "missing", &size, &mtime), VMB_ENOTFOUND);
	CHECK_ERR(vmb_target_delete(t, "missing"), VMB_ENOTFOUND);
	CHECK_ERR(vmb_target_get(t, "../escape", &data, &len), VMB_EINVAL);

	/* empty object */
	CHECK_OK(vmb_target_put(t, "empty", "", 0));
	CHECK(get_eq(t, "empty", "", 0));
	CHECK_OK(vmb_target_stat(t, "empty", &size, &mtime));
	CHECK(size == 0);

	/* overwrite, longer then shorter */
	CHECK_OK(put_str(t, "ow", "first"));
	CHECK_OK(put_str(t, "ow", "second, longer"));
	CHECK(get_eq(t, "ow", "second, longer", 14));
	CHECK_OK(put_str(t, "ow", "x"));
	CHECK(get_eq(t, "ow", "x", 1));

	/* names at the edges */
	memset(longname, 'L', 200);
	memcpy(longname, "long/", 5);
	longname[200] = 0;
	CHECK_OK(put_str(t, longname, "long"));
	CHECK(get_eq(t, longname, "long", 4));
	deep[0] = 0;
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof name, "d%d/", i);
		strcat(deep, name);
	}
	strcat(deep, "leaf");
	CHECK_OK(put_str(t, deep, "deep"));
	CHECK(get_eq(t, deep, "deep", 4));
	const char *odd[] = { "edge/a.b", "edge/a-b", "edge/a_b", "edge/a..b",
			      "edge/a..", "edge/-", "edge/x.tmp", "edge/A.B-C_d.e",
			      NULL };
	for (int i = 0; odd[i]; i++) {
		CHECK_OK(put_str(t, odd[i], odd[i]));
		CHECK(get_eq(t, odd[i], odd[i], strlen(odd[i])));
	}
	CHECK(list_is(t, "edge/", odd));

	/* prefix listing is a string prefix; no siblings */
	CHECK_OK(put_str(t, "pl/ab", "1"));
	CHECK_OK(put_str(t, "pl/abc", "22"));
	CHECK_OK(put_str(t, "pl/a/b", "333"));
	CHECK_OK(put_str(t, "pl/a/bc/d", "4444"));
	CHECK_OK(put_str(t, "plx", "5"));
	{
		const char *w1[] = { "pl/a/b", "pl/a/bc/d", NULL };
		const char *w2[] = { "pl/ab", "pl/abc", NULL };
		const char *w3[] = { "pl/abc", NULL };
		const char *w4[] = { "pl/ab", "pl/abc", "pl/a/b", "pl/a/bc/d",
				     NULL };
		const char *w5[] = { NULL };
		const char *w6[] = { "pl/ab", "pl/abc", "pl/a/b", "pl/a/bc/d",
				     "plx", NULL };
		const char *w7[] = { "pl/a/bc/d", NULL };
		CHECK(list_is(t, "pl/a/b", w1));
		CHECK(list_is(t, "pl/ab", w2));
		CHECK(list_is(t, "pl/abc", w3));
		CHECK(list_is(t, "pl/", w4));
		CHECK(list_is(t, "pl/a/b/", w5));
		CHECK(list_is(t, "pl", w6));
		CHECK(list_is(t, "pl/a/bc/", w7));
		CHECK(list_is(t, "nothing-here/", w5));
	}
	/* sizes in a listing; a callback that stops */
	{
		struct names ns = { 0 };
		CHECK_OK(vmb_target_list(t, "pl/a/", collect, &ns));
		CHECK(ns.n == 2);
		for (int i = 0; i < ns.n; i++)
			CHECK(ns.size[i] ==
			      (strcmp(ns.v[i], "pl/a/b") == 0 ? 3u : 4u));
		names_free(&ns);
		ns.stop_after = 1;
		CHECK_OK(vmb_target_list(t, "pl/", collect, &ns));
		CHECK(ns.calls == 1);
		names_free(&ns);
	}

	/* delete */
	CHECK_OK(vmb_target_delete(t, "pl/abc"));
	CHECK_ERR(vmb_target_get(t, "pl/abc", &data, &len), VMB_ENOTFOUND);
	{
		const char *w[] = { "pl/ab", NULL };
		CHECK(list_is(t, "pl/ab", w));
	}

	/* touch moves the modification time forward, keeps the data */
	CHECK_OK(put_str(t, "touched", "keep me"));
	CHECK_OK(vmb_target_stat(t, "touched", &size, &m0));
	sleep(3); /* Last-Modified has 1 s steps; s3rver needs a 2 s gap */
	CHECK_OK(vmb_target_touch(t, "touched"));
	CHECK_OK(vmb_target_stat(t, "touched", &size, &m1));
	CHECK(m1 > m0);
	CHECK(size == 7);
	CHECK(get_eq(t, "touched", "keep me", 7));
	CHECK_ERR(vmb_target_touch(t, "not-there"), VMB_ENOTFOUND);

	/* prefetch is a hint: the object reads the same after it, and a
	 * missing object is left to get() */
	vmb_target_prefetch(t, "touched");
	vmb_target_prefetch(t, "not-there");
	CHECK(get_eq(t, "touched", "keep me", 7));
	CHECK_ERR(vmb_target_get(t, "not-there", &(void *){ NULL },
				 &(size_t){ 0 }), VMB_ENOTFOUND);

	/* large objects (multipart on S3 with the lowered threshold) */
	{
		size_t big = 20 * MiB + 12345;
		uint8_t *b = malloc(big);
		test_random(b, big, 42);
		CHECK_OK(vmb_target_put(t, "big/one", b, big));
		CHECK(get_eq(t, "big/one", b, big));
		CHECK_OK(vmb_target_stat(t, "big/one", &size, &mtime));
		CHECK(size == big);
		/* overwrite with a smaller one: no stale tail */
		CHECK_OK(vmb_target_put(t, "big/one", b + 7, 9 * MiB));
		CHECK(get_eq(t, "big/one", b + 7, 9 * MiB));
		free(b);
	}

	/* pagination: more objects than one list page */
	{
		struct names ns = { 0 };
		for (int i = 0; i < 40; i++) {
			snprintf(name, sizeof name, "page/%03d", i);
			CHECK_OK(put_str(t, name, name));
		}
		CHECK_OK(vmb_target_list(t, "page/", collect, &ns));
		CHECK(ns.n == 40);
		for (int i = 0; i < 40; i++) {
			snprintf(name, sizeof name, "page/%03d", i);
			CHECK(names_has(&ns, name) == 1);
		}
		names_free(&ns);
	}

	/* concurrent writers and readers */
	{
		pthread_t th[NTHREADS];
		struct worker w[NTHREADS];
		atomic_int failures = 0;
		struct names ns = { 0 };
		const char *srv = getenv("VMB_TEST_S3_SERVER");
		torn_ok = strncmp(url, "s3:", 3) == 0 && srv &&
			  strcmp(srv, "s3rver") == 0;
		atomic_store(&torn_reads, 0);
		for (int i = 0; i < NTHREADS; i++) {
			w[i] = (struct worker){ t, i, &failures };
			pthread_create(&th[i], NULL, worker_main, &w[i]);
		}
		for (int i = 0; i < NTHREADS; i++)
			pthread_join(th[i], NULL);
		CHECK(atomic_load(&failures) == 0);
		if (atomic_load(&torn_reads))
			printf("# %d torn reads of a shared name (s3rver is "
			       "not atomic; tolerated)\n",
			       atomic_load(&torn_reads));
		CHECK_OK(vmb_target_list(t, "conc/t", collect, &ns));
		CHECK(ns.n == NTHREADS * NITER);
		names_free(&ns);
		CHECK_OK(vmb_target_get(t, "conc/shared", &data, &len));
		CHECK(obj_valid(data, len));
		vmb_free(data);
	}

	/* a second handle on the same URL sees the objects */
	{
		vmb_target *t2 = NULL;
		CHECK_OK(vmb_target_open(url, &t2));
		if (t2) {
			CHECK(get_eq(t2, "hello", "hello world", 11));
			vmb_target_close(t2);
		}
	}

	/* clean up: delete everything this run wrote */
	{
		struct names ns = { 0 };
		int rounds = 0;
		do {
			names_free(&ns);
			CHECK_OK(vmb_target_list(t, "", del_cb, &ns));
			for (int i = 0; i < ns.n; i++)
				CHECK_OK(vmb_target_delete(t, ns.v[i]));
		} while (ns.n == 512 && ++rounds < 10);
		names_free(&ns);
		const char *none[] = { NULL };
		CHECK(list_is(t, "", none));
	}

	vmb_target_close(t);
	printf("# %s: %s in %.1f s\n", url,
	       test_failures == before ? "ok" : "FAILED",
	       vmb_now() - t0);
	free(url);
}

/*
 * --probe URL [SECONDS]: open the target and put/get/list/delete small
 * objects (for SECONDS, default one round); on the first failure print the
 * error as one line on stderr and exit 1.  tests/integration/targets.sh
 * uses it for fault injection.
 */
static int probe(const char *url, double secs)
{
	vmb_target *t = NULL;
	double end = vmb_now() + secs;
	char name[64], body[64];
	int i = 0, r;

	r = vmb_target_open(url, &t);
	if (r)
		goto fail;
	do {
		void *data = NULL;
		size_t len;
		struct names ns = { 0 };
		snprintf(name, sizeof name, "probe/obj%d", i % 50);
		snprintf(body, sizeof body, "probe body %d", i);
		r = put_str(t, name, body);
		if (!r)
			r = vmb_target_get(t, name, &data, &len);
		if (!r && (len != strlen(body) || memcmp(data, body, len) != 0))
			r = vmb_error_set(VMB_ECORRUPT, "%s: probe read back "
					  "wrong data", url);
		vmb_free(data);
		if (!r)
			r = vmb_target_list(t, "probe/", collect, &ns);
		names_free(&ns);
		i++;
	} while (!r && vmb_now() < end);
	if (r)
		goto fail;
	vmb_target_close(t);
	printf("probe ok: %d rounds\n", i);
	return 0;
fail:
	fprintf(stderr, "probe: %s\n", vmb_error_message());
	vmb_target_close(t);
	return 1;
}

/*
 * The local backend writes large page-aligned objects with O_DIRECT and
 * cuts the padded last block (lib/target/local.c): every size around
 * the block and threshold boundaries, aligned and unaligned buffers,
 * replacing a longer object with a shorter one, and the buffered path
 * (also what filesystems without O_DIRECT, like tmpfs, get).
 */
static void test_local_direct(const char *dir)
{
	static const size_t sizes[] = { 262143, 262144, 262145, 266240,
					266241, 1048576, 1048575,
					4194304 + 4096 + 33 };
	uint8_t *buf = NULL;
	vmb_target *t;
	char url[600];
	snprintf(url, sizeof url, "%s/direct", dir);
	cur_url = url;
	CHECK_OK(vmb_target_open(url, &t));
	CHECK(posix_memalign((void **)&buf, 4096, (5u << 20) + 4096) == 0);
	if (!buf)
		return;
	for (int pass = 0; pass < 2; pass++) {
		/* pass 1: unaligned buffer (one byte in): the buffered path */
		uint8_t *p = buf + pass;
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			char name[64];
			size_t n = sizes[i];
			make_obj(p, n, 1000 + i + 100 * (uint64_t)pass);
			snprintf(name, sizeof name, "chunks/d%d/%zu", pass, n);
			CHECK_OK(vmb_target_put(t, name, p, n));
			CHECK(get_eq(t, name, p, n));
			/* replace with a shorter object of the same name */
			CHECK_OK(vmb_target_put(t, name, p, n - 5000));
			CHECK(get_eq(t, name, p, n - 5000));
		}
	}
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			char name[64];
			snprintf(name, sizeof name, "chunks/d%d/%zu", pass,
				 sizes[i]);
			CHECK_OK(vmb_target_delete(t, name));
		}
	vmb_target_close(t);
	free(buf);
	for (int pass = 0; pass < 2; pass++) {
		snprintf(url, sizeof url, "%s/direct/chunks/d%d", dir, pass);
		rmdir(url);
	}
	snprintf(url, sizeof url, "%s/direct/chunks", dir);
	rmdir(url);
	snprintf(url, sizeof url, "%s/direct", dir);
	rmdir(url);
}

/* Pages of @p path in the page cache (mincore over a mapping). */
static size_t resident_pages(const char *path, size_t *total)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	size_t n = 0, pages;
	unsigned char *vec;
	void *m;
	*total = 0;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	pages = ((size_t)st.st_size + 4095) / 4096;
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	vec = malloc(pages);
	if (m != MAP_FAILED && vec && mincore(m, (size_t)st.st_size, vec) == 0)
		for (size_t i = 0; i < pages; i++)
			n += vec[i] & 1;
	if (m != MAP_FAILED)
		munmap(m, (size_t)st.st_size);
	free(vec);
	close(fd);
	*total = pages;
	return n;
}

/*
 * vmb_target_prefetch on the local backend reads the object into the page
 * cache: a 4 MiB object dropped from the cache (POSIX_FADV_DONTNEED of the
 * clean file) is resident again soon after the hint, without a get().
 */
static void test_local_prefetch(const char *dir)
{
	char url[600], path[700];
	size_t n = 4u << 20, res = 0, total = 0;
	uint8_t *buf = malloc(n);
	vmb_target *t;
	int fd;
	snprintf(url, sizeof url, "%s/prefetch", dir);
	cur_url = url;
	CHECK_OK(vmb_target_open(url, &t));
	CHECK(buf != NULL);
	if (!buf)
		return;
	make_obj(buf, n, 77);
	CHECK_OK(vmb_target_put(t, "chunks/pf/obj", buf, n));
	snprintf(path, sizeof path, "%s/chunks/pf/obj", url);
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	if (fd >= 0) {
		fsync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	res = resident_pages(path, &total);
	if (total && res * 2 > total) {
		/* the filesystem keeps it (tmpfs): nothing to observe */
		fprintf(stderr, "prefetch: %s keeps the file cached; "
			"residency not checked here\n", dir);
	} else {
		vmb_target_prefetch(t, "chunks/pf/obj");
		for (int i = 0; i < 200; i++) { /* up to 2 s */
			res = resident_pages(path, &total);
			if (total && res == total)
				break;
			usleep(10000);
		}
		CHECK(total > 0 && res == total);
	}
	/* hints for missing objects, bad names and NULLs are ignored */
	vmb_target_prefetch(t, "chunks/pf/missing");
	vmb_target_prefetch(t, "../escape");
	vmb_target_prefetch(t, NULL);
	vmb_target_prefetch(NULL, "chunks/pf/obj");
	CHECK(get_eq(t, "chunks/pf/obj", buf, n));
	CHECK_OK(vmb_target_delete(t, "chunks/pf/obj"));
	vmb_target_close(t);
	free(buf);
	snprintf(path, sizeof path, "%s/chunks/pf", url);
	rmdir(path);
	snprintf(path, sizeof path, "%s/chunks", url);
	rmdir(path);
	rmdir(url);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--probe") == 0)
		return probe(argv[2], argc >= 4 ? atof(argv[3]) : 0);

	const char *envs[] = { "VMB_TEST_S3_URL", "VMB_TEST_NFS3_URL",
			       "VMB_TEST_NFS4_URL" };
	char local[600];

	setenv("VMB_S3_LIST_PAGE", "7", 0);
	setenv("VMB_S3_MULTIPART_THRESHOLD", "8M", 0);
	setenv("VMB_S3_PART_SIZE", "5M", 0);

	snprintf(local, sizeof local, "%s/local", test_tmpdir());
	run_contract(local);
	snprintf(local, sizeof local, "file://%s/local2", test_tmpdir());
	run_contract(local);
	test_local_direct(test_tmpdir());
	test_local_prefetch(test_tmpdir());
	{
		char shm[] = "/dev/shm/vmbtest.XXXXXX"; /* tmpfs: no O_DIRECT */
		if (mkdtemp(shm)) {
			test_local_direct(shm);
			rmdir(shm);
		}
	}
	for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
		const char *u = getenv(envs[i]);
		if (u && *u)
			run_contract(u);
	}
	for (int i = 1; i < argc; i++)
		run_contract(argv[i]);
	return test_done();
}
