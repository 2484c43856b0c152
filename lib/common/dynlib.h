/*
 * Internal: opening an optional shared library at run time (libarchive
 * for export/import, libcurl for S3), so that every other command starts
 * without loading it and its dependencies.
 */
#ifndef VMB_LIB_COMMON_DYNLIB_H
#define VMB_LIB_COMMON_DYNLIB_H

#include <stddef.h>

/*
 * dlopen() @path (RTLD_NOW | RTLD_LOCAL) and look up the @n symbols
 * @names into @out.  On success the library is never closed: the pointers
 * stay valid for the life of the process.  On failure it is closed, @err
 * holds why (dlerror's text, or "<path>: <symbol> is NULL") and -1 is
 * returned.
 */
int vmb_dynlib_open(const char *path, const char *const *names, void **out,
		    size_t n, char *err, size_t errlen);

#endif
