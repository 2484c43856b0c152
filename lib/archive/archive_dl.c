/*
 * Loads libarchive at run time: see archive_dl.h and docs/archives.md.
 */
#define VMB_ARCHIVE_DL_NO_MACROS
#include "archive_dl.h"
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "vmbackup/common.h"
#include "common/dynlib.h"

struct vmb_archive_fn vmb_archive_fn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *test_path; /* vmb_archive_set_path_for_tests() */
static int load_failed;
static char load_error[512]; /* why loading failed, for every caller */

static void load(void)
{
	const char *path = test_path ? test_path : VMB_ARCHIVE_SONAME;
	struct vmb_archive_fn t;
	static const char *const names[] = {
#define VMB_ARCHIVE_FN_NAME(f) #f,
		VMB_ARCHIVE_FUNCS(VMB_ARCHIVE_FN_NAME)
#undef VMB_ARCHIVE_FN_NAME
	};
	void *p[sizeof names / sizeof names[0]];
	size_t i = 0;

	load_failed = 1;
	if (vmb_dynlib_open(path, names, p, sizeof names / sizeof names[0],
			    load_error, sizeof load_error))
		return;
#define VMB_ARCHIVE_FN_SET(f) t.p_##f = (__typeof__(t.p_##f))p[i++];
	VMB_ARCHIVE_FUNCS(VMB_ARCHIVE_FN_SET)
#undef VMB_ARCHIVE_FN_SET
	/* never closed: the table stays valid for the life of the process */
	vmb_archive_fn = t;
	load_failed = 0;
}

int vmb_archive_load(const char *what)
{
	if (pthread_once(&load_once, load) != 0)
		return vmb_error_set(VMB_ENOTSUP, "%s needs libarchive (%s): "
				     "pthread_once failed", what,
				     VMB_ARCHIVE_SONAME);
	if (load_failed)
		return vmb_error_set(VMB_ENOTSUP, "%s needs libarchive (%s): "
				     "%s; install the %s package", what,
				     VMB_ARCHIVE_SONAME, load_error,
				     VMB_ARCHIVE_PACKAGE);
	return 0;
}

void vmb_archive_set_path_for_tests(const char *path)
{
	test_path = path;
}
