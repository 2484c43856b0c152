/*
 * Loads libcurl at run time: see curl_dl.h and docs/storage.md.
 */
#define VMB_CURL_DL_NO_MACROS
#include "curl_dl.h"
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "vmbackup/common.h"
#include "common/dynlib.h"

struct vmb_curl_fn vmb_curl_fn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *test_path; /* vmb_curl_set_path_for_tests() */
static int load_failed;       /* dlopen() or dlsym() failed */
static int init_failed;       /* curl_global_init() failed */
static char load_error[512];  /* why, for every caller */

static void why(const char *s)
{
	snprintf(load_error, sizeof load_error, "%s",
		 s && *s ? s : "unknown error");
}

static void load(void)
{
	const char *path = test_path ? test_path : VMB_CURL_SONAME;
	struct vmb_curl_fn t;
	CURLcode c;
	static const char *const names[] = {
#define VMB_CURL_FN_NAME(f) #f,
		VMB_CURL_FUNCS(VMB_CURL_FN_NAME)
#undef VMB_CURL_FN_NAME
	};
	void *p[sizeof names / sizeof names[0]];
	size_t i = 0;

	load_failed = 1;
	if (vmb_dynlib_open(path, names, p, sizeof names / sizeof names[0],
			    load_error, sizeof load_error))
		return;
#define VMB_CURL_FN_SET(f) t.p_##f = (__typeof__(t.p_##f))p[i++];
	VMB_CURL_FUNCS(VMB_CURL_FN_SET)
#undef VMB_CURL_FN_SET
	load_failed = 0;
	/*
	 * Before any other libcurl function, once per process: here, inside
	 * pthread_once, so that no two threads run it at the same time (it
	 * is not thread safe in every libcurl version).  Never undone with
	 * curl_global_cleanup(), and the library is never closed: the table
	 * stays valid for the life of the process.
	 */
	c = t.p_curl_global_init(CURL_GLOBAL_DEFAULT);
	if (c != CURLE_OK) {
		const char *e = t.p_curl_easy_strerror(c);
		why(e);
		init_failed = 1;
		return;
	}
	vmb_curl_fn = t;
}

int vmb_curl_load(const char *what)
{
	if (pthread_once(&load_once, load) != 0)
		return vmb_error_set(VMB_ENOTSUP, "%s needs libcurl (%s): "
				     "pthread_once failed", what,
				     VMB_CURL_SONAME);
	if (load_failed)
		return vmb_error_set(VMB_ENOTSUP, "%s needs libcurl (%s): "
				     "%s; install the %s package", what,
				     VMB_CURL_SONAME, load_error,
				     VMB_CURL_PACKAGE);
	if (init_failed)
		return vmb_error_set(VMB_EIO, "%s: cannot initialise libcurl: "
				     "%s", what, load_error);
	return 0;
}

void vmb_curl_set_path_for_tests(const char *path)
{
	test_path = path;
}
