/* Internal helpers shared by every module (not installed). */
#ifndef VMB_LIB_COMMON_UTIL_H
#define VMB_LIB_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "vmbackup/common.h"

/* Checked arithmetic: return true on overflow. */
#define vmb_add_overflow(a, b, r) __builtin_add_overflow((a), (b), (r))
#define vmb_mul_overflow(a, b, r) __builtin_mul_overflow((a), (b), (r))
#define vmb_sub_overflow(a, b, r) __builtin_sub_overflow((a), (b), (r))

#define VMB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VMB_MAX(a, b) ((a) > (b) ? (a) : (b))
#define VMB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Is [off, off+len) inside [0, size)?  Overflow-safe. */
static inline bool vmb_range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

static inline bool vmb_is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

/* Little/big endian loads and stores on unaligned memory. */
static inline uint16_t vmb_le16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | (b[1] << 8));
}
static inline uint32_t vmb_le32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] | ((uint32_t)b[1] << 8) |
	       ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}
static inline uint64_t vmb_le64(const void *p)
{
	const uint8_t *b = p;
	return (uint64_t)vmb_le32(b) | ((uint64_t)vmb_le32(b + 4) << 32);
}
static inline uint16_t vmb_be16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)((b[0] << 8) | b[1]);
}
static inline uint32_t vmb_be32(const void *p)
{
	const uint8_t *b = p;
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) |
	       ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}
static inline uint64_t vmb_be64(const void *p)
{
	const uint8_t *b = p;
	return ((uint64_t)vmb_be32(b) << 32) | vmb_be32(b + 4);
}
static inline void vmb_put_le16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8);
}
static inline void vmb_put_le32(void *p, uint32_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static inline void vmb_put_le64(void *p, uint64_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}
static inline void vmb_put_be16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)(v >> 8); b[1] = (uint8_t)v;
}
static inline void vmb_put_be32(void *p, uint32_t v)
{
	uint8_t *b = p;
	for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (24 - 8 * i));
}
static inline void vmb_put_be64(void *p, uint64_t v)
{
	vmb_put_be32(p, (uint32_t)(v >> 32));
	vmb_put_be32((uint8_t *)p + 4, (uint32_t)v);
}

/* True if the buffer is all zero bytes (fast path for aligned blocks). */
bool vmb_is_zero(const void *buf, size_t len);

/* Allocation that sets VMB_ENOMEM on failure. */
void *vmb_malloc(size_t n);
void *vmb_calloc(size_t n, size_t m);
void *vmb_realloc(void *p, size_t n);
char *vmb_strdup(const char *s);
char *vmb_strndup(const char *s, size_t n);
/* malloc'd printf; NULL (and VMB_ENOMEM set) on failure. */
char *vmb_asprintf(const char *fmt, ...) VMB_PRINTF(1, 2);

/* Growable byte/string buffer. */
typedef struct vmb_buf {
	char *data;
	size_t len;
	size_t cap;
	int failed; /* an allocation failed; data is unusable */
} vmb_buf;

void vmb_buf_init(vmb_buf *b);
void vmb_buf_free(vmb_buf *b);
int vmb_buf_grow(vmb_buf *b, size_t extra);
int vmb_buf_append(vmb_buf *b, const void *data, size_t len);
int vmb_buf_puts(vmb_buf *b, const char *s);
int vmb_buf_printf(vmb_buf *b, const char *fmt, ...) VMB_PRINTF(2, 3);
/* Append s as a JSON string literal (with quotes and escapes). */
int vmb_buf_json_str(vmb_buf *b, const char *s);
/* Take ownership of the NUL-terminated contents; the buffer is reset. */
char *vmb_buf_detach(vmb_buf *b);

/* pread/pwrite loops that retry on EINTR and short counts.
 * vmb_pread_full: returns bytes read (short only at EOF) or -errno. */
int64_t vmb_pread_full(int fd, void *buf, size_t len, uint64_t off);
int vmb_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Hex encoding. out must hold 2*len+1 bytes. */
void vmb_hex(const uint8_t *in, size_t len, char *out);
/* Decode exactly 2*len hex chars; -1 on bad input. */
int vmb_unhex(const char *in, uint8_t *out, size_t len);

/* Parse "4M", "64K", "1G", "512" into bytes; -1 on bad input. */
int vmb_parse_size(const char *s, uint64_t *out);

/* Create folder @path and every missing parent (mode @mode, as mkdir -p;
 * relative paths and trailing slashes are fine).  Errors name the part
 * that failed: VMB_EINVAL when it exists but is not a folder, VMB_EACCES
 * or VMB_EIO otherwise. */
int vmb_mkdir_p(const char *path, unsigned mode);

/* Monotonic seconds. */
double vmb_now(void);

#endif
