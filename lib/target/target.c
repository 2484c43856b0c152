/* Target dispatch: URL scheme -> backend, and argument checks. */
#include <stdlib.h>
#include <string.h>
#include "common/killpoint.h"
#include "common/util.h"
#include "target.h"

int vmb_target__name_ok(const char *name)
{
	const char *p = name, *seg = name;
	if (!name || !*name || strlen(name) > 1024)
		return 0;
	for (;; p++) {
		if (*p == '/' || *p == 0) {
			size_t n = (size_t)(p - seg);
			if (n == 0 || (n == 1 && seg[0] == '.') ||
			    (n == 2 && seg[0] == '.' && seg[1] == '.'))
				return 0;
			if (!*p)
				return 1;
			seg = p + 1;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
		      *p == '-'))
			return 0;
	}
}

/* Listing prefixes may end with '/' or be empty. */
static int prefix_ok(const char *prefix)
{
	for (const char *p = prefix; *p; p++)
		if (*p == '\\' || (unsigned char)*p < 0x20 ||
		    (p[0] == '.' && p[1] == '.'))
			return 0;
	return 1;
}

VMB_EXTERN(int) vmb_target_open(const char *url, vmb_target **out)
{
	const vmb_target_backend *be = &vmb_target__local_backend;
	int r;
	*out = NULL;
	if (!url || !*url)
		return vmb_error_set(VMB_EINVAL, "empty repository location");
	if (strncmp(url, "s3:", 3) == 0)
		be = &vmb_target__s3_backend;
	else if (strncmp(url, "nfs://", 6) == 0)
		be = &vmb_target__nfs_backend;
	else if (strstr(url, "://") && strncmp(url, "file://", 7) != 0)
		return vmb_error_set(VMB_ENOTSUP,
				     "%s: unsupported URL scheme (use a path, "
				     "file://, nfs:// or s3:)", url);
	r = be->open(url, out);
	if (r == 0 && (!*out || !(*out)->ops || !(*out)->url)) {
		*out = NULL;
		return vmb_error_set(VMB_EGENERIC,
				     "%s backend returned an incomplete target",
				     be->scheme);
	}
	/* a test tool: inject the faults VMB_FAULT describes (fault.c) */
	const char *fault = getenv("VMB_FAULT");
	if (r == 0 && fault && *fault &&
	    (r = vmb_target__fault_wrap(fault, out)) != 0) {
		vmb_target_close(*out);
		*out = NULL;
	}
	return r;
}

VMB_EXTERN(void) vmb_target_close(vmb_target *t)
{
	if (t)
		t->ops->close(t);
}

VMB_EXTERN(const char *) vmb_target_url(const vmb_target *t)
{
	return t->url;
}

#define CHECK_NAME(t, name)                                               \
	do {                                                              \
		if (!vmb_target__name_ok(name))                           \
			return vmb_error_set(VMB_EINVAL,                  \
					     "%s: invalid object name '%s'", \
					     (t)->url, (name) ? (name) : ""); \
	} while (0)

VMB_EXTERN(int) vmb_target_put(vmb_target *t, const char *name,
			       const void *data, size_t length)
{
	int r;
	CHECK_NAME(t, name);
	vmb__kill_point("put", name, 1);
	r = t->ops->put(t, name, data, length);
	vmb__kill_point("put", name, 0);
	return r;
}

VMB_EXTERN(int) vmb_target_get(vmb_target *t, const char *name, void **data,
			       size_t *length)
{
	*data = NULL;
	*length = 0;
	CHECK_NAME(t, name);
	return t->ops->get(t, name, data, length);
}

VMB_EXTERN(int) vmb_target_stat(vmb_target *t, const char *name,
				uint64_t *size, int64_t *mtime)
{
	uint64_t s;
	int64_t m;
	CHECK_NAME(t, name);
	return t->ops->stat(t, name, size ? size : &s, mtime ? mtime : &m);
}

VMB_EXTERN(int) vmb_target_list(vmb_target *t, const char *prefix,
				vmb_target_list_fn fn, void *payload)
{
	if (!prefix)
		prefix = "";
	if (!prefix_ok(prefix))
		return vmb_error_set(VMB_EINVAL, "%s: invalid prefix", t->url);
	return t->ops->list(t, prefix, fn, payload);
}

VMB_EXTERN(int) vmb_target_delete(vmb_target *t, const char *name)
{
	int r;
	CHECK_NAME(t, name);
	vmb__kill_point("delete", name, 1);
	r = t->ops->del(t, name);
	vmb__kill_point("delete", name, 0);
	return r;
}

VMB_EXTERN(void) vmb_target_prefetch(vmb_target *t, const char *name)
{
	if (!t || !vmb_target__name_ok(name) ||
	    t->ops->version < 2 || !t->ops->prefetch)
		return;
	t->ops->prefetch(t, name);
}

VMB_EXTERN(int) vmb_target_touch(vmb_target *t, const char *name)
{
	CHECK_NAME(t, name);
	if (!t->ops->touch)
		return vmb_error_set(VMB_ENOTSUP, "%s: touch not supported",
				     t->url);
	vmb__kill_point("touch", name, 1);
	int r = t->ops->touch(t, name);
	vmb__kill_point("touch", name, 0);
	return r;
}
