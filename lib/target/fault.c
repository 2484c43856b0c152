/*
 * Fault-injecting target, a test tool (docs/reliability.md).  When
 * VMB_FAULT is set, vmb_target_open() wraps whatever backend the URL names
 * (local, NFS, S3) in this one, behind the same vtable:
 *
 *   VMB_FAULT="KIND [on=N | from=N] [prefix=P] [ms=MS] [lag=S]"
 *
 *   torn      a put stores the first half of the object under its name,
 *             then fails (a store that is not atomic, cut off mid-write)
 *   short     a put stores all but the last byte, then fails
 *   eio-write a put fails with an I/O error, storing nothing
 *   eio-read  a get fails with an I/O error
 *   enospc    a put fails: no space left, storing nothing
 *   norename  a put writes the data but the final rename fails: nothing
 *             becomes visible, and the put reports the failed rename
 *   slow      a put waits ms=MS (default 200) milliseconds first
 *   lag       listings miss objects younger than lag=S seconds (default
 *             30), as an eventually consistent object store may
 *
 * on=N faults only the Nth operation of that kind whose object name starts
 * with prefix=P (default: every name); from=N faults the Nth and every
 * later one; neither means from=1.  A spec that does not parse makes
 * vmb_target_open() fail with one line, so a test cannot silently run
 * without its fault.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/util.h"
#include "target.h"

enum kind { F_TORN, F_SHORT, F_EIO_WRITE, F_EIO_READ, F_ENOSPC,
	    F_NORENAME, F_SLOW, F_LAG };

static const char *const kind_names[] = {
	"torn", "short", "eio-write", "eio-read", "enospc", "norename",
	"slow", "lag"
};

struct fault {
	vmb_target base;
	vmb_target *in;
	enum kind kind;
	unsigned long on, from;
	char prefix[256];
	long ms, lag;
	pthread_mutex_t lock;
	unsigned long seen;
};

/* Does this operation (of the fault's kind) get the fault? */
static int hit(struct fault *f, const char *name)
{
	unsigned long n;
	if (strncmp(name, f->prefix, strlen(f->prefix)) != 0)
		return 0;
	pthread_mutex_lock(&f->lock);
	n = ++f->seen;
	pthread_mutex_unlock(&f->lock);
	return f->on ? n == f->on : n >= f->from;
}

static int injected(struct fault *f, int code, const char *what,
		    const char *name)
{
	return vmb_error_set(code, "%s: cannot %s %s: %s (injected fault)",
			     f->base.url, what, name,
			     code == VMB_ENOSPC ? "No space left on device" :
			     "Input/output error");
}

static int f_put(vmb_target *t, const char *name, const void *data,
		 size_t length)
{
	struct fault *f = (struct fault *)t;
	int rc;
	switch (f->kind) {
	case F_TORN:
	case F_SHORT:
		if (!hit(f, name))
			break;
		rc = f->in->ops->put(f->in, name, data, f->kind == F_TORN ?
				     length / 2 : length ? length - 1 : 0);
		if (rc)
			return rc;
		return vmb_error_set(VMB_EIO, "%s: cannot write %s: %s "
				     "(injected fault)", t->url, name,
				     f->kind == F_TORN ? "torn write" :
				     "short write");
	case F_EIO_WRITE:
		if (hit(f, name))
			return injected(f, VMB_EIO, "write", name);
		break;
	case F_ENOSPC:
		if (hit(f, name))
			return injected(f, VMB_ENOSPC, "write", name);
		break;
	case F_NORENAME:
		if (hit(f, name))
			return injected(f, VMB_EIO, "rename", name);
		break;
	case F_SLOW:
		if (hit(f, name)) {
			struct timespec ts = { f->ms / 1000,
					       (f->ms % 1000) * 1000000L };
			nanosleep(&ts, NULL);
		}
		break;
	default:
		break;
	}
	return f->in->ops->put(f->in, name, data, length);
}

static int f_get(vmb_target *t, const char *name, void **data,
		 size_t *length)
{
	struct fault *f = (struct fault *)t;
	if (f->kind == F_EIO_READ && hit(f, name))
		return injected(f, VMB_EIO, "read", name);
	return f->in->ops->get(f->in, name, data, length);
}

static int f_stat(vmb_target *t, const char *name, uint64_t *size,
		  int64_t *mtime)
{
	struct fault *f = (struct fault *)t;
	return f->in->ops->stat(f->in, name, size, mtime);
}

struct lagged {
	struct fault *f;
	vmb_target_list_fn fn;
	void *payload;
	int64_t cut;
};

static int lag_cb(const char *name, uint64_t size, int64_t mtime,
		  void *payload)
{
	struct lagged *l = payload;
	if (mtime > l->cut && hit(l->f, name))
		return 0; /* not listed yet */
	return l->fn(name, size, mtime, l->payload);
}

static int f_list(vmb_target *t, const char *prefix, vmb_target_list_fn fn,
		  void *payload)
{
	struct fault *f = (struct fault *)t;
	if (f->kind == F_LAG) {
		struct lagged l = { f, fn, payload,
				    (int64_t)time(NULL) - f->lag };
		return f->in->ops->list(f->in, prefix, lag_cb, &l);
	}
	return f->in->ops->list(f->in, prefix, fn, payload);
}

static int f_del(vmb_target *t, const char *name)
{
	struct fault *f = (struct fault *)t;
	return f->in->ops->del(f->in, name);
}

static void f_prefetch(vmb_target *t, const char *name)
{
	vmb_target_prefetch(((struct fault *)t)->in, name);
}

static int f_touch(vmb_target *t, const char *name)
{
	struct fault *f = (struct fault *)t;
	if (!f->in->ops->touch)
		return vmb_error_set(VMB_ENOTSUP, "%s: touch not supported",
				     t->url);
	return f->in->ops->touch(f->in, name);
}

static void f_close(vmb_target *t)
{
	struct fault *f = (struct fault *)t;
	vmb_target_close(f->in);
	pthread_mutex_destroy(&f->lock);
	free(t->url);
	free(f);
}

static const vmb_target_ops fault_ops = {
	VMB_TARGET_OPS_VERSION, "fault", f_put, f_get, f_stat, f_list, f_del,
	f_touch, f_close, f_prefetch
};

static int parse(struct fault *f, const char *spec)
{
	char buf[512], *save = NULL, *w;
	int first = 1;
	size_t sl = strlen(spec);
	if (sl >= sizeof buf)
		return -1;
	memcpy(buf, spec, sl + 1);
	f->from = 1;
	f->ms = 200;
	f->lag = 30;
	for (w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '='), *end = NULL;
		if (first) {
			size_t k;
			for (k = 0; k < sizeof kind_names / sizeof *kind_names; k++)
				if (strcmp(w, kind_names[k]) == 0)
					break;
			if (k == sizeof kind_names / sizeof *kind_names)
				return -1;
			f->kind = (enum kind)k;
			first = 0;
			continue;
		}
		if (!eq)
			return -1;
		*eq++ = 0;
		if (strcmp(w, "prefix") == 0) {
			size_t pl = strlen(eq);
			if (pl >= sizeof f->prefix)
				return -1;
			memcpy(f->prefix, eq, pl + 1);
			continue;
		}
		long v = strtol(eq, &end, 10);
		if (!*eq || *end || v < 0 || v > 100000000)
			return -1;
		if (strcmp(w, "on") == 0 && v > 0)
			f->on = (unsigned long)v, f->from = 0;
		else if (strcmp(w, "from") == 0 && v > 0)
			f->from = (unsigned long)v, f->on = 0;
		else if (strcmp(w, "ms") == 0)
			f->ms = v;
		else if (strcmp(w, "lag") == 0)
			f->lag = v;
		else
			return -1;
	}
	return first ? -1 : 0;
}

int vmb_target__fault_wrap(const char *spec, vmb_target **t)
{
	struct fault *f = vmb_calloc(1, sizeof *f);
	if (!f)
		return VMB_ENOMEM;
	if (parse(f, spec) != 0) {
		free(f);
		return vmb_error_set(VMB_EINVAL, "VMB_FAULT: cannot parse "
				     "'%s' (want KIND [on=N|from=N] "
				     "[prefix=P] [ms=MS] [lag=S])", spec);
	}
	if (!(f->base.url = vmb_strdup((*t)->url))) {
		free(f);
		return VMB_ENOMEM;
	}
	pthread_mutex_init(&f->lock, NULL);
	f->base.ops = &fault_ops;
	f->in = *t;
	*t = &f->base;
	return 0;
}
