/* Small helpers: allocation, buffers, I/O loops, hex, sizes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "util.h"

bool vmb_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	/* check the first 16 bytes, then compare the buffer with itself
	   shifted by 16: all zero iff both hold */
	if (len < 16) {
		for (size_t i = 0; i < len; i++)
			if (p[i])
				return false;
		return true;
	}
	for (size_t i = 0; i < 16; i++)
		if (p[i])
			return false;
	return memcmp(p, p + 16, len - 16) == 0;
}

void *vmb_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		vmb_error_set(VMB_ENOMEM, "out of memory (%zu bytes)", n);
	return p;
}

void *vmb_calloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		vmb_error_set(VMB_ENOMEM, "out of memory");
	return p;
}

void *vmb_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		vmb_error_set(VMB_ENOMEM, "out of memory (%zu bytes)", n);
	return q;
}

char *vmb_strdup(const char *s)
{
	return s ? vmb_strndup(s, strlen(s)) : NULL;
}

char *vmb_strndup(const char *s, size_t n)
{
	char *p = vmb_malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

char *vmb_asprintf(const char *fmt, ...)
{
	va_list ap;
	char *out = NULL;
	va_start(ap, fmt);
	if (vasprintf(&out, fmt, ap) < 0) {
		out = NULL;
		vmb_error_set(VMB_ENOMEM, "out of memory");
	}
	va_end(ap);
	return out;
}

void vmb_buf_init(vmb_buf *b)
{
	memset(b, 0, sizeof *b);
}

void vmb_buf_free(vmb_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}

int vmb_buf_grow(vmb_buf *b, size_t extra)
{
	size_t need;
	if (b->failed)
		return VMB_ENOMEM;
	if (vmb_add_overflow(b->len, extra + 1, &need)) {
		b->failed = 1;
		return vmb_error_set(VMB_ENOMEM, "buffer too large");
	}
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	char *p = vmb_realloc(b->data, cap);
	if (!p) {
		b->failed = 1;
		return VMB_ENOMEM;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int vmb_buf_append(vmb_buf *b, const void *data, size_t len)
{
	int r = vmb_buf_grow(b, len);
	if (r)
		return r;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = 0;
	return 0;
}

int vmb_buf_puts(vmb_buf *b, const char *s)
{
	return vmb_buf_append(b, s, strlen(s));
}

int vmb_buf_printf(vmb_buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return vmb_error_set(VMB_EINVAL, "bad format");
	if ((size_t)n < sizeof small)
		return vmb_buf_append(b, small, (size_t)n);
	int r = vmb_buf_grow(b, (size_t)n);
	if (r)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int vmb_buf_json_str(vmb_buf *b, const char *s)
{
	int r = vmb_buf_append(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; !r && *p; p++) {
		switch (*p) {
		case '"': r = vmb_buf_puts(b, "\\\""); break;
		case '\\': r = vmb_buf_puts(b, "\\\\"); break;
		case '\n': r = vmb_buf_puts(b, "\\n"); break;
		case '\r': r = vmb_buf_puts(b, "\\r"); break;
		case '\t': r = vmb_buf_puts(b, "\\t"); break;
		default:
			if (*p < 0x20)
				r = vmb_buf_printf(b, "\\u%04x", *p);
			else
				r = vmb_buf_append(b, p, 1);
		}
	}
	return r ? r : vmb_buf_append(b, "\"", 1);
}

char *vmb_buf_detach(vmb_buf *b)
{
	char *p;
	if (b->failed) {
		vmb_buf_free(b);
		return NULL;
	}
	if (!b->data) {
		/* nothing was appended: hand back "" (terminated) */
		if (vmb_buf_grow(b, 0))
			return NULL;
		b->data[0] = 0;
	}
	p = b->data;
	memset(b, 0, sizeof *b);
	return p;
}

int64_t vmb_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int64_t)done;
}

int vmb_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

void vmb_hex(const uint8_t *in, size_t len, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * len] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

int vmb_unhex(const char *in, uint8_t *out, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		int hi = hexval(in[2 * i]), lo;
		if (hi < 0)
			return -1;
		lo = hexval(in[2 * i + 1]);
		if (lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return in[2 * len] == 0 ? 0 : -1;
}

int vmb_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;
	if (!s || !*s)
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (vmb_mul_overflow(v, 10, &v) ||
		    vmb_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return -1;
	}
	if (p == s)
		return -1;
	switch (*p) {
	case 0: break;
	case 'k': case 'K': mul = 1ULL << 10; p++; break;
	case 'm': case 'M': mul = 1ULL << 20; p++; break;
	case 'g': case 'G': mul = 1ULL << 30; p++; break;
	case 't': case 'T': mul = 1ULL << 40; p++; break;
	default: return -1;
	}
	if (*p == 'i' && mul > 1)
		p++;
	if ((*p == 'B' || *p == 'b') && mul > 1)
		p++;
	if (*p)
		return -1;
	if (vmb_mul_overflow(v, mul, &v))
		return -1;
	*out = v;
	return 0;
}

double vmb_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int vmb_mkdir_p(const char *path, unsigned mode)
{
	struct stat st;
	char *p;
	size_t n;
	int rc = 0;
	if (!path || !*path)
		return vmb_error_set(VMB_EINVAL, "empty folder name");
	if (!(p = vmb_strdup(path)))
		return VMB_ENOMEM;
	n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = 0;
	/* every prefix that ends before a '/', then the whole path */
	for (char *s = p + 1;; s++) {
		char c = *s;
		if (c != '/' && c != 0)
			continue;
		*s = 0;
		if (stat(p, &st) == 0) {
			if (!S_ISDIR(st.st_mode)) {
				rc = vmb_error_set(VMB_EINVAL, "cannot create %s: "
						   "%s is not a folder", path, p);
				break;
			}
		} else if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
			int e = errno;
			rc = vmb_error_set(e == EACCES || e == EPERM ? VMB_EACCES :
					   e == ENOSPC ? VMB_ENOSPC : VMB_EIO,
					   "cannot create %s: %s: %s", path, p,
					   strerror(e));
			break;
		}
		*s = c;
		if (!c)
			break;
		while (s[1] == '/')
			s++;
	}
	free(p);
	return rc;
}
