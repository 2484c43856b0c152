#include <stdarg.h>
#include <unistd.h>
#include <sys/wait.h>
#include <fcntl.h>
#include "vmbackup/repo.h"
#include "testutil.h"

int test_failures;
int test_checks;
static char tmpdir[256];

static void cleanup(void)
{
	if (tmpdir[0] && !getenv("VMB_KEEP_TMP")) {
		char cmd[300];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
		if (system(cmd)) {
		}
	}
}

const char *test_tmpdir(void)
{
	if (!tmpdir[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(tmpdir, sizeof tmpdir, "%s/vmbtest.XXXXXX",
			 base ? base : "/tmp");
		if (!mkdtemp(tmpdir)) {
			perror("mkdtemp");
			exit(1);
		}
		atexit(cleanup);
	}
	return tmpdir;
}

const char *test_path(const char *name)
{
	static char bufs[8][512];
	static int next;
	char *b = bufs[next++ % 8];
	snprintf(b, 512, "%s/%s", test_tmpdir(), name);
	return b;
}

void test_random(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

int test_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st == -1)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int test_done(void)
{
	printf("%d passed, %d failed\n", test_checks - test_failures,
	       test_failures);
	if (test_checks == 0) {
		fprintf(stderr, "no checks ran\n");
		return 1;
	}
	return test_failures ? 1 : 0;
}

void test_skip(const char *why)
{
	printf("SKIP: %s\n", why);
	exit(77);
}

char *test_make_repo(const char *name)
{
	char *u = strdup(test_path(name));
	char img[64];
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_backup_source src = { NULL, "disk", NULL };
	vmb_backup_result br;
	vmb_repo *r = NULL;
	char buf[4096];
	int fd;

	snprintf(img, sizeof img, "%s.img", name);
	src.path = test_path(img);
	fd = open(src.path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	test_random(buf, sizeof buf, 3);
	CHECK(pwrite(fd, buf, sizeof buf, 8192) == (ssize_t)sizeof buf);
	CHECK(ftruncate(fd, 1 << 20) == 0);
	close(fd);
	CHECK_OK(vmb_repo_init(u, "pw", &io));
	CHECK_OK(vmb_repo_open(u, "pw", &r));
	if (r)
		CHECK_OK(vmb_repo_backup(r, &src, 1, NULL, &br));
	vmb_repo_close(r);
	return u;
}
