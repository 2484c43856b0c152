/* Internal: a small, bounded JSON reader (DOM) for repository metadata.
 * Treats its input as hostile: depth, size and node count are limited. */
#ifndef VMB_LIB_COMMON_JSON_H
#define VMB_LIB_COMMON_JSON_H

#include <stddef.h>
#include <stdint.h>

enum { VMB_JSON_NULL, VMB_JSON_BOOL, VMB_JSON_NUM, VMB_JSON_STR,
       VMB_JSON_ARR, VMB_JSON_OBJ };

typedef struct vmb_json {
	int type;
	char *key;             /* member name inside an object */
	char *str;             /* VMB_JSON_STR (NUL-terminated, no NULs) */
	int boolean;
	int is_int;            /* number had no fraction/exponent */
	int neg;               /* integer is negative */
	uint64_t u;            /* |integer| when is_int */
	double d;
	struct vmb_json **items; /* ARR / OBJ children */
	size_t n;
} vmb_json;

#define VMB_JSON_MAX_DEPTH 64
#define VMB_JSON_MAX_INPUT (256u << 20)

/* Parse; on error returns VMB_ECORRUPT with a message naming @what. */
int vmb_json_parse(const char *text, size_t len, const char *what,
		   vmb_json **out);
void vmb_json_free(vmb_json *j);

/* Lookups return NULL when absent or of another type. */
const vmb_json *vmb_json_get(const vmb_json *obj, const char *key);
const char *vmb_json_str(const vmb_json *obj, const char *key);
/* 0 and *out set if key is a non-negative integer; else -1. */
int vmb_json_u64(const vmb_json *obj, const char *key, uint64_t *out);
int vmb_json_i64(const vmb_json *obj, const char *key, int64_t *out);
const vmb_json *vmb_json_arr(const vmb_json *obj, const char *key);

#endif
