/* Per-thread last error and logging. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util.h"

#define VMB_ERRMSG_MAX 1024

static _Thread_local int err_code;
static _Thread_local char err_msg[VMB_ERRMSG_MAX];

VMB_EXTERN(const char *) vmb_version(void)
{
	return "0.1.0";
}

VMB_EXTERN(const char *) vmb_error_name(int code)
{
	switch (code) {
	case VMB_OK: return "success";
	case VMB_EGENERIC: return "error";
	case VMB_EINVAL: return "invalid argument";
	case VMB_ENOMEM: return "out of memory";
	case VMB_EIO: return "input/output error";
	case VMB_ENOTFOUND: return "not found";
	case VMB_EEXISTS: return "already exists";
	case VMB_ECORRUPT: return "corrupt data";
	case VMB_EAUTH: return "authentication failed";
	case VMB_ENOTSUP: return "not supported";
	case VMB_ELOCKED: return "locked";
	case VMB_EAMBIGUOUS: return "ambiguous";
	case VMB_ETIMEOUT: return "timed out";
	case VMB_ENOSPC: return "no space left";
	case VMB_EACCES: return "permission denied";
	case VMB_ECANCELED: return "cancelled";
	case VMB_EVERIFY: return "verification failed";
	case VMB_ERANGE: return "value out of range";
	case VMB_EFORMAT: return "malformed disk image";
	default: return "unknown error";
	}
}

static void sanitize_line(char *s)
{
	/* one line: newlines and control characters become spaces */
	for (; *s; s++)
		if ((unsigned char)*s < 0x20)
			*s = ' ';
}

VMB_EXTERN(int) vmb_error_set(int code, const char *fmt, ...)
{
	va_list ap;
	char tmp[VMB_ERRMSG_MAX];

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	sanitize_line(tmp);
	memcpy(err_msg, tmp, sizeof tmp);
	err_code = code ? code : VMB_EGENERIC;
	return err_code;
}

VMB_EXTERN(int) vmb_error_prefix(const char *fmt, ...)
{
	va_list ap;
	char pre[VMB_ERRMSG_MAX], tmp[VMB_ERRMSG_MAX];

	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	snprintf(tmp, sizeof tmp, "%.500s%.500s", pre, err_msg);
	sanitize_line(tmp);
	memcpy(err_msg, tmp, sizeof tmp);
	if (!err_code)
		err_code = VMB_EGENERIC;
	return err_code;
}

VMB_EXTERN(const char *) vmb_error_message(void)
{
	return err_msg;
}

VMB_EXTERN(int) vmb_error_code(void)
{
	return err_code;
}

VMB_EXTERN(void) vmb_error_clear(void)
{
	err_code = 0;
	err_msg[0] = 0;
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static vmb_log_fn log_fn;
static void *log_payload;
static vmb_log_level log_max = VMB_LOG_WARN;

VMB_EXTERN(void) vmb_log_set(vmb_log_fn fn, void *payload,
			     vmb_log_level max_level)
{
	pthread_mutex_lock(&log_lock);
	log_fn = fn;
	log_payload = payload;
	log_max = max_level;
	pthread_mutex_unlock(&log_lock);
}

VMB_EXTERN(void) vmb_log(vmb_log_level level, const char *fmt, ...)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	char msg[VMB_ERRMSG_MAX];
	va_list ap;

	pthread_mutex_lock(&log_lock);
	if (level > log_max) {
		pthread_mutex_unlock(&log_lock);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	sanitize_line(msg);
	if (log_fn)
		log_fn(level, msg, log_payload);
	else
		fprintf(stderr, "vmb: %s: %s\n",
			names[(unsigned)level < 4 ? level : 3], msg);
	pthread_mutex_unlock(&log_lock);
}

VMB_EXTERN(void) vmb_free(void *p)
{
	free(p);
}
