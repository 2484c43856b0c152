/*
 * libvmbackup loads libarchive at run time (lib/archive/archive_dl.c).  When
 * it cannot be loaded, export and import fail with VMB_ENOTSUP and one
 * message naming libarchive and the package to install, leave nothing
 * behind, and the rest of the library works: a library file that does
 * not exist, and a library that exists but lacks libarchive's functions.
 * Loading happens once per process, so the second case runs in a child.
 */
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"
#include "vmbackup.h"
#include "archive/archive_dl.h"

static size_t count_snaps(vmb_repo *r)
{
	vmb_snapshot **l = NULL;
	size_t n = 0;
	CHECK_OK(vmb_repo_snapshots(r, NULL, &l, &n));
	vmb_snapshot_list_free(l, n);
	return n;
}

static void check_message(const char *what, const char *detail)
{
	const char *m = vmb_error_message();
	char want[64];
	snprintf(want, sizeof want, "%s needs libarchive (libarchive.so.13)",
		 what);
	CHECK(strstr(m, want) != NULL);
	CHECK(strstr(m, "install the libarchive13 package") != NULL);
	CHECK(strstr(m, detail) != NULL);
	CHECK(strchr(m, '\n') == NULL);
}

/* export and import of repository @u fail cleanly; @detail: from dlerror */
static void check_unavailable(const char *u, const char *tag,
			      const char *detail)
{
	vmb_check_result cr;
	vmb_repo *r = NULL;
	char out[64], imp[64];
	size_t before;

	snprintf(out, sizeof out, "%s.tar", tag);
	snprintf(imp, sizeof imp, "%s-in.tar", tag);
	CHECK_OK(vmb_repo_open(u, "pw", &r));
	if (!r)
		return;
	before = count_snaps(r);
	for (int i = 0; i < 2; i++) { /* the outcome is remembered */
		CHECK_ERR(vmb_repo_export(r, "latest", test_path(out), NULL,
					  NULL), VMB_ENOTSUP);
		check_message("export", detail);
	}
	CHECK(access(test_path(out), F_OK) != 0);
	snprintf(out, sizeof out, "%s.tar.tmp", tag);
	CHECK(access(test_path(out), F_OK) != 0);

	/* any file will do: the archive is not even opened */
	CHECK(test_sh("printf 'not a tar' > '%s'", test_path(imp)) == 0);
	CHECK_ERR(vmb_repo_import(r, test_path(imp), NULL, NULL, NULL),
		  VMB_ENOTSUP);
	check_message("import", detail);
	CHECK(count_snaps(r) == before);

	/* everything else still works */
	CHECK_OK(vmb_repo_check(r, &cr));
	CHECK(cr.errors == 0);
	vmb_repo_close(r);
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

	/* a library without libarchive's functions (zlib: loaded anyway);
	 * forked before the library starts any thread */
	fflush(NULL);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		vmb_archive_set_path_for_tests("libz.so.1");
		char *u = test_make_repo("repo-nosym");
		check_unavailable(u, "nosym", "undefined symbol: archive_");
		free(u);
		fflush(NULL);
		_exit(test_failures ? 1 : 0); /* no atexit: keep the tmpdir */
	}
	if (pid > 0)
		CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		      WEXITSTATUS(status) == 0);

	/* a library file that does not exist */
	vmb_archive_set_path_for_tests(test_path("no-such-dir/libarchive.so.13"));
	u = test_make_repo("repo");
	check_unavailable(u, "nofile", "No such file or directory");
	free(u);
	return test_done();
}
