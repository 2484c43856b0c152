/*
 * libvmbackup loads libcurl at run time (lib/target/curl_dl.c), the first
 * time an s3: URL is opened.  When it cannot be loaded, opening an S3
 * target or repository (init, open) fails with VMB_ENOTSUP and one message
 * naming libcurl and the package to install, and the rest of the library
 * works: a library file that does not exist, and a library that exists
 * but lacks libcurl's functions.  Local repositories never load libcurl.
 * Loading happens once per process, so the second case runs in a child.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"
#include "vmbackup.h"
#include "target/curl_dl.h"

/* nothing listens there; never contacted, as loading fails first */
#define S3_URL "s3:http://127.0.0.1:9/vmb-nolib/prefix"

static int curl_in_process(void)
{
	void *h = dlopen(VMB_CURL_SONAME, RTLD_NOW | RTLD_NOLOAD);
	if (h)
		dlclose(h);
	return h != NULL;
}

static void check_message(const char *detail)
{
	const char *m = vmb_error_message();
	CHECK(strstr(m, "S3 storage needs libcurl (libcurl.so.4)") != NULL);
	CHECK(strstr(m, "install the libcurl4 package") != NULL);
	CHECK(strstr(m, detail) != NULL);
	CHECK(strchr(m, '\n') == NULL);
}

/* S3 fails cleanly, local repository @u still works, a new one @again
 * can be made; @detail: from dlerror */
static void check_unavailable(const char *u, const char *again,
			      const char *detail)
{
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_check_result cr;
	vmb_target *t = NULL;
	vmb_repo *r = NULL;

	for (int i = 0; i < 2; i++) { /* the outcome is remembered */
		CHECK_ERR(vmb_target_open(S3_URL, &t), VMB_ENOTSUP);
		CHECK(t == NULL);
		check_message(detail);
	}
	CHECK_ERR(vmb_repo_init(S3_URL, "pw", &io), VMB_ENOTSUP);
	check_message(detail);
	CHECK_ERR(vmb_repo_open(S3_URL, "pw", &r), VMB_ENOTSUP);
	CHECK(r == NULL);
	check_message(detail);
	CHECK(!curl_in_process());

	/* everything else still works */
	CHECK_OK(vmb_repo_open(u, "pw", &r));
	if (!r)
		return;
	CHECK_OK(vmb_repo_check(r, &cr));
	CHECK(cr.errors == 0);
	vmb_repo_close(r);
	free(test_make_repo(again));
}

int main(void)
{
	int status = -1;
	pid_t pid;
	char *u;

	setenv("VMB_KDF_OPSLIMIT", "1", 1);
	setenv("VMB_KDF_MEMLIMIT", "8388608", 1);
	setenv("XDG_CACHE_HOME", test_path("cache"), 1);
	setenv("TMPDIR", test_tmpdir(), 1);
	/* so that only libcurl can be missing */
	setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", 1);

	/* not linked, and not loaded by local repositories */
	CHECK(!curl_in_process());

	/* a library without libcurl's functions (zlib: loaded anyway);
	 * forked before the library starts any thread */
	fflush(NULL);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		vmb_curl_set_path_for_tests("libz.so.1");
		char *u = test_make_repo("repo-nosym");
		CHECK(!curl_in_process());
		check_unavailable(u, "repo-nosym2", "undefined symbol: curl_");
		free(u);
		fflush(NULL);
		_exit(test_failures ? 1 : 0); /* no atexit: keep the tmpdir */
	}
	if (pid > 0)
		CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0);

	/* a library file that does not exist */
	vmb_curl_set_path_for_tests(test_path("no-such-dir/libcurl.so.4"));
	u = test_make_repo("repo");
	CHECK(!curl_in_process());
	check_unavailable(u, "repo2", "No such file or directory");
	free(u);
	return test_done();
}
