/* Bounded recursive-descent JSON parser. */
#include <stdlib.h>
#include <string.h>
#include "json.h"
#include "util.h"

struct parser {
	const char *p, *end;
	const char *what;
	size_t nodes;
	int err;
};

#define MAX_NODES 4000000u

static int perr(struct parser *ps, const char *msg)
{
	if (!ps->err)
		ps->err = vmb_error_set(VMB_ECORRUPT, "%s: malformed JSON: %s",
					ps->what, msg);
	return ps->err;
}

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
				   *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static vmb_json *new_node(struct parser *ps, int type)
{
	vmb_json *j;
	if (++ps->nodes > MAX_NODES) {
		perr(ps, "too many values");
		return NULL;
	}
	j = calloc(1, sizeof *j);
	if (!j) {
		ps->err = vmb_error_set(VMB_ENOMEM, "out of memory");
		return NULL;
	}
	j->type = type;
	return j;
}

static int hex4(const char *s, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
		else return -1;
	}
	*out = v;
	return 0;
}

static char *parse_string(struct parser *ps)
{
	vmb_buf b;
	vmb_buf_init(&b);
	if (ps->p >= ps->end || *ps->p != '"') {
		perr(ps, "expected string");
		return NULL;
	}
	ps->p++;
	while (ps->p < ps->end && *ps->p != '"') {
		unsigned char c = (unsigned char)*ps->p++;
		if (c < 0x20) {
			perr(ps, "control character in string");
			goto fail;
		}
		if (c != '\\') {
			vmb_buf_append(&b, &c, 1);
			continue;
		}
		if (ps->p >= ps->end)
			break;
		c = (unsigned char)*ps->p++;
		switch (c) {
		case '"': case '\\': case '/': vmb_buf_append(&b, &c, 1); break;
		case 'b': vmb_buf_append(&b, "\b", 1); break;
		case 'f': vmb_buf_append(&b, "\f", 1); break;
		case 'n': vmb_buf_append(&b, "\n", 1); break;
		case 'r': vmb_buf_append(&b, "\r", 1); break;
		case 't': vmb_buf_append(&b, "\t", 1); break;
		case 'u': {
			unsigned cp, lo;
			char u8[4];
			size_t n;
			if (ps->end - ps->p < 4 || hex4(ps->p, &cp)) {
				perr(ps, "bad \\u escape");
				goto fail;
			}
			ps->p += 4;
			if (cp >= 0xd800 && cp < 0xdc00) {
				if (ps->end - ps->p < 6 || ps->p[0] != '\\' ||
				    ps->p[1] != 'u' || hex4(ps->p + 2, &lo) ||
				    lo < 0xdc00 || lo > 0xdfff) {
					perr(ps, "bad surrogate pair");
					goto fail;
				}
				ps->p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				perr(ps, "lone surrogate");
				goto fail;
			}
			if (cp == 0) {
				perr(ps, "NUL in string");
				goto fail;
			}
			if (cp < 0x80) {
				u8[0] = (char)cp; n = 1;
			} else if (cp < 0x800) {
				u8[0] = (char)(0xc0 | cp >> 6);
				u8[1] = (char)(0x80 | (cp & 0x3f)); n = 2;
			} else if (cp < 0x10000) {
				u8[0] = (char)(0xe0 | cp >> 12);
				u8[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
				u8[2] = (char)(0x80 | (cp & 0x3f)); n = 3;
			} else {
				u8[0] = (char)(0xf0 | cp >> 18);
				u8[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
				u8[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
				u8[3] = (char)(0x80 | (cp & 0x3f)); n = 4;
			}
			vmb_buf_append(&b, u8, n);
			break;
		}
		default:
			perr(ps, "bad escape");
			goto fail;
		}
	}
	if (ps->p >= ps->end) {
		perr(ps, "unterminated string");
		goto fail;
	}
	ps->p++;
	if (b.failed) {
		ps->err = VMB_ENOMEM;
		goto fail;
	}
	{
		char *s = vmb_buf_detach(&b);
		if (!s)
			ps->err = VMB_ENOMEM;
		return s;
	}
fail:
	vmb_buf_free(&b);
	return NULL;
}

static vmb_json *parse_value(struct parser *ps, int depth);

static vmb_json *parse_container(struct parser *ps, int depth, int obj)
{
	vmb_json *j = new_node(ps, obj ? VMB_JSON_OBJ : VMB_JSON_ARR);
	size_t cap = 0;
	if (!j)
		return NULL;
	ps->p++; /* [ or { */
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) {
		ps->p++;
		return j;
	}
	for (;;) {
		char *key = NULL;
		vmb_json *v;
		skip_ws(ps);
		if (obj) {
			key = parse_string(ps);
			if (!key)
				goto fail;
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != ':') {
				free(key);
				perr(ps, "expected ':'");
				goto fail;
			}
			ps->p++;
		}
		v = parse_value(ps, depth + 1);
		if (!v) {
			free(key);
			goto fail;
		}
		v->key = key;
		if (j->n == cap) {
			size_t nc = cap ? cap * 2 : 8;
			vmb_json **ni = realloc(j->items, nc * sizeof *ni);
			if (!ni) {
				vmb_json_free(v);
				ps->err = vmb_error_set(VMB_ENOMEM, "out of memory");
				goto fail;
			}
			j->items = ni;
			cap = nc;
		}
		j->items[j->n++] = v;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == (obj ? '}' : ']')) {
			ps->p++;
			return j;
		}
		perr(ps, obj ? "expected ',' or '}'" : "expected ',' or ']'");
		goto fail;
	}
fail:
	vmb_json_free(j);
	return NULL;
}

static vmb_json *parse_number(struct parser *ps)
{
	const char *s = ps->p;
	vmb_json *j;
	int neg = 0, is_int = 1;
	uint64_t u = 0;
	int overflow = 0;
	char tmp[64];

	if (ps->p < ps->end && *ps->p == '-') {
		neg = 1;
		ps->p++;
	}
	if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
		perr(ps, "bad number");
		return NULL;
	}
	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
		if (vmb_mul_overflow(u, 10, &u) ||
		    vmb_add_overflow(u, (uint64_t)(*ps->p - '0'), &u))
			overflow = 1;
		ps->p++;
	}
	if (ps->p < ps->end && *ps->p == '.') {
		is_int = 0;
		ps->p++;
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		is_int = 0;
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
			ps->p++;
	}
	if (ps->p - s >= (long)sizeof tmp) {
		perr(ps, "number too long");
		return NULL;
	}
	j = new_node(ps, VMB_JSON_NUM);
	if (!j)
		return NULL;
	memcpy(tmp, s, (size_t)(ps->p - s));
	tmp[ps->p - s] = 0;
	j->d = strtod(tmp, NULL);
	j->is_int = is_int && !overflow;
	j->neg = neg;
	j->u = u;
	return j;
}

static int match(struct parser *ps, const char *lit)
{
	size_t n = strlen(lit);
	if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, lit, n) == 0) {
		ps->p += n;
		return 1;
	}
	return 0;
}

static vmb_json *parse_value(struct parser *ps, int depth)
{
	vmb_json *j;
	if (depth > VMB_JSON_MAX_DEPTH) {
		perr(ps, "nested too deeply");
		return NULL;
	}
	skip_ws(ps);
	if (ps->p >= ps->end) {
		perr(ps, "unexpected end");
		return NULL;
	}
	switch (*ps->p) {
	case '{': return parse_container(ps, depth, 1);
	case '[': return parse_container(ps, depth, 0);
	case '"':
		j = new_node(ps, VMB_JSON_STR);
		if (j && !(j->str = parse_string(ps))) {
			free(j);
			return NULL;
		}
		return j;
	case 't': case 'f': case 'n':
		if (match(ps, "true") || match(ps, "false")) {
			j = new_node(ps, VMB_JSON_BOOL);
			if (j)
				j->boolean = ps->p[-1] == 'e' && ps->p[-2] == 'u';
			return j;
		}
		if (match(ps, "null"))
			return new_node(ps, VMB_JSON_NULL);
		perr(ps, "bad literal");
		return NULL;
	default:
		return parse_number(ps);
	}
}

int vmb_json_parse(const char *text, size_t len, const char *what,
		   vmb_json **out)
{
	struct parser ps = { text, text + len, what, 0, 0 };
	vmb_json *j;
	*out = NULL;
	if (len > VMB_JSON_MAX_INPUT)
		return vmb_error_set(VMB_ECORRUPT, "%s: JSON too large", what);
	j = parse_value(&ps, 0);
	if (!j)
		return ps.err ? ps.err : perr(&ps, "invalid");
	skip_ws(&ps);
	if (ps.p != ps.end) {
		vmb_json_free(j);
		return perr(&ps, "trailing data");
	}
	*out = j;
	return 0;
}

void vmb_json_free(vmb_json *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++)
		vmb_json_free(j->items[i]);
	free(j->items);
	free(j->key);
	free(j->str);
	free(j);
}

const vmb_json *vmb_json_get(const vmb_json *obj, const char *key)
{
	if (!obj || obj->type != VMB_JSON_OBJ)
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (strcmp(obj->items[i]->key, key) == 0)
			return obj->items[i];
	return NULL;
}

const char *vmb_json_str(const vmb_json *obj, const char *key)
{
	const vmb_json *j = vmb_json_get(obj, key);
	return j && j->type == VMB_JSON_STR ? j->str : NULL;
}

int vmb_json_u64(const vmb_json *obj, const char *key, uint64_t *out)
{
	const vmb_json *j = vmb_json_get(obj, key);
	if (!j || j->type != VMB_JSON_NUM || !j->is_int || (j->neg && j->u))
		return -1;
	*out = j->u;
	return 0;
}

int vmb_json_i64(const vmb_json *obj, const char *key, int64_t *out)
{
	const vmb_json *j = vmb_json_get(obj, key);
	if (!j || j->type != VMB_JSON_NUM || !j->is_int ||
	    j->u > (uint64_t)INT64_MAX)
		return -1;
	*out = j->neg ? -(int64_t)j->u : (int64_t)j->u;
	return 0;
}

const vmb_json *vmb_json_arr(const vmb_json *obj, const char *key)
{
	const vmb_json *j = vmb_json_get(obj, key);
	return j && j->type == VMB_JSON_ARR ? j : NULL;
}
