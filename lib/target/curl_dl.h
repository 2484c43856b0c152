/*
 * libcurl, loaded at run time on first use (docs/storage.md, "libcurl is
 * loaded on first use").
 *
 * Only the S3 target (s3.c, sigv4.c) needs libcurl, and it pulls in some
 * thirty more shared libraries (OpenSSL, nghttp2, libssh2, LDAP, Kerberos,
 * GnuTLS, ...), which cost every other command tens of milliseconds with a
 * cold page cache.  So libvmbackup does not link it: vmb_curl_load()
 * dlopen()s VMB_CURL_SONAME once per process, resolves every function the
 * S3 target uses into vmb_curl_fn and calls curl_global_init() once.
 *
 * Types and constants still come from <curl/curl.h> at compile time.  A
 * file that includes this header after <curl/curl.h> calls libcurl as
 * usual: each curl_* name below is a macro for the matching table entry,
 * with the exact prototype from <curl/curl.h> (__typeof__; the variadic
 * ones, curl_easy_setopt, curl_easy_getinfo and curl_share_setopt, are
 * pointers to variadic functions and are called exactly like them).  It
 * must call vmb_curl_load() (and stop on failure) before the first of
 * them.  A libcurl function used without an entry here is an undefined
 * symbol when vmb links, as libcurl is not linked any more: add it to
 * VMB_CURL_FUNCS and to the macros below.
 *
 * curl's own GCC argument checks of curl_easy_setopt() and
 * curl_easy_getinfo() (curl/typecheck-gcc.h, macros too) are replaced by
 * these macros; with the headers in /usr/include they never warned anyway
 * (GCC silences warnings from system headers' macro expansions).
 */
#ifndef VMB_TARGET_CURL_DL_H
#define VMB_TARGET_CURL_DL_H

#include <curl/curl.h>

/* CURLOPT_AWS_SIGV4 (7.75) and CURLOPT_PROTOCOLS_STR (7.85) */
#if LIBCURL_VERSION_NUM < 0x075500
#error "libcurl 7.85 or later (soname libcurl.so.4) is needed"
#endif

/* the ABI of every libcurl 7.16 or later (Debian: package libcurl4) */
#define VMB_CURL_SONAME "libcurl.so.4"
#define VMB_CURL_PACKAGE "libcurl4"

#define VMB_CURL_FUNCS(X)        \
	X(curl_easy_cleanup)     \
	X(curl_easy_getinfo)     \
	X(curl_easy_init)        \
	X(curl_easy_perform)     \
	X(curl_easy_reset)       \
	X(curl_easy_setopt)      \
	X(curl_easy_strerror)    \
	X(curl_getdate)          \
	X(curl_global_init)      \
	X(curl_share_cleanup)    \
	X(curl_share_init)       \
	X(curl_share_setopt)     \
	X(curl_slist_append)     \
	X(curl_slist_free_all)

struct vmb_curl_fn {
#define VMB_CURL_FN_MEMBER(f) __typeof__(f) *p_##f;
	VMB_CURL_FUNCS(VMB_CURL_FN_MEMBER)
#undef VMB_CURL_FN_MEMBER
};

/* Filled by the first successful vmb_curl_load(); read-only after. */
extern struct vmb_curl_fn vmb_curl_fn;

/*
 * Loads libcurl and calls curl_global_init(CURL_GLOBAL_DEFAULT), once per
 * process (thread safe; later calls only return the first outcome).  0,
 * VMB_ENOTSUP with the error message "<what> needs libcurl (libcurl.so.4):
 * <why>; install the libcurl4 package" when the library or one of its
 * functions cannot be loaded, or VMB_EIO "<what>: cannot initialise
 * libcurl: <why>" when curl_global_init() fails.  @what names the user,
 * e.g. "S3 storage".
 */
int vmb_curl_load(const char *what);

/*
 * Tests only: open @path instead of VMB_CURL_SONAME.  Must be called
 * before the first vmb_curl_load() of the process, by one thread; later
 * calls have no effect.  Deliberately not an environment variable: nothing
 * outside the process can make libvmbackup load other code
 * (LD_LIBRARY_PATH, which ld.so ignores for set-uid programs, remains the
 * only way to pick another libcurl.so.4).  Not exported from the shared
 * library.
 */
void vmb_curl_set_path_for_tests(const char *path);

#ifndef VMB_CURL_DL_NO_MACROS
/* curl_easy_setopt, curl_easy_getinfo, curl_share_setopt (and others, in
 * some versions) are function-like macros in <curl/curl.h>: replace them */
#undef curl_easy_cleanup
#undef curl_easy_getinfo
#undef curl_easy_init
#undef curl_easy_perform
#undef curl_easy_reset
#undef curl_easy_setopt
#undef curl_easy_strerror
#undef curl_getdate
#undef curl_global_init
#undef curl_share_cleanup
#undef curl_share_init
#undef curl_share_setopt
#undef curl_slist_append
#undef curl_slist_free_all
#define curl_easy_cleanup (vmb_curl_fn.p_curl_easy_cleanup)
#define curl_easy_getinfo (vmb_curl_fn.p_curl_easy_getinfo)
#define curl_easy_init (vmb_curl_fn.p_curl_easy_init)
#define curl_easy_perform (vmb_curl_fn.p_curl_easy_perform)
#define curl_easy_reset (vmb_curl_fn.p_curl_easy_reset)
#define curl_easy_setopt (vmb_curl_fn.p_curl_easy_setopt)
#define curl_easy_strerror (vmb_curl_fn.p_curl_easy_strerror)
#define curl_getdate (vmb_curl_fn.p_curl_getdate)
#define curl_global_init (vmb_curl_fn.p_curl_global_init)
#define curl_share_cleanup (vmb_curl_fn.p_curl_share_cleanup)
#define curl_share_init (vmb_curl_fn.p_curl_share_init)
#define curl_share_setopt (vmb_curl_fn.p_curl_share_setopt)
#define curl_slist_append (vmb_curl_fn.p_curl_slist_append)
#define curl_slist_free_all (vmb_curl_fn.p_curl_slist_free_all)
#endif

#endif
