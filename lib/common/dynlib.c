/* Opening optional shared libraries at run time: see dynlib.h. */
#include "dynlib.h"
#include <dlfcn.h>
#include <stdio.h>

static void why(char *err, size_t errlen, const char *s)
{
	snprintf(err, errlen, "%s", s && *s ? s : "unknown error");
}

int vmb_dynlib_open(const char *path, const char *const *names, void **out,
		    size_t n, char *err, size_t errlen)
{
	void *h;
	dlerror();
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		why(err, errlen, dlerror());
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		dlerror();
		out[i] = dlsym(h, names[i]);
		if (!out[i]) {
			const char *e = dlerror();
			if (e)
				why(err, errlen, e);
			else
				snprintf(err, errlen, "%s: %s is NULL", path,
					 names[i]);
			dlclose(h);
			return -1;
		}
	}
	return 0;
}
