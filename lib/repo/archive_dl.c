/*
 * Loads libarchive at run time: see archive_dl.h and docs/archives.md.
 */
#define VMB_ARCHIVE_DL_NO_MACROS
#include "archive_dl.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "vmbackup/common.h"

struct vmb_archive_fn vmb_archive_fn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *test_path; /* vmb_archive_set_path_for_tests() */
static int load_failed;
static char load_error[512]; /* why loading failed, for every caller */

static void why(const char *s)
{
	snprintf(load_error, sizeof load_error, "%s",
		 s && *s ? s : "unknown error");
}

static void load(void)
{
	const char *path = test_path ? test_path : VMB_ARCHIVE_SONAME;
	struct vmb_archive_fn t;
	void *h;

	load_failed = 1;
	dlerror();
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		why(dlerror());
		return;
	}
#define VMB_ARCHIVE_FN_LOAD(f)                                          \
	dlerror();                                                       \
	t.p_##f = (__typeof__(t.p_##f))dlsym(h, #f);                    \
	if (!t.p_##f) {                                                  \
		const char *e = dlerror();                               \
		if (e)                                                   \
			why(e);                                          \
		else                                                     \
			snprintf(load_error, sizeof load_error,          \
				 "%s: %s is NULL", path, #f);            \
		dlclose(h);                                              \
		return;                                                  \
	}
	VMB_ARCHIVE_FUNCS(VMB_ARCHIVE_FN_LOAD)
#undef VMB_ARCHIVE_FN_LOAD
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
