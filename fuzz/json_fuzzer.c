/*
 * Fuzz target: the bounded JSON reader (lib/common/json.c) that parses
 * every manifest, key file, config and lock.  Accepted documents are
 * walked through the typed lookups; anything inconsistent aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "common/json.h"

static size_t walk(const vmb_json *j, int depth)
{
	size_t n = 1;
	if (depth > VMB_JSON_MAX_DEPTH + 1)
		abort(); /* the depth limit did not hold */
	switch (j->type) {
	case VMB_JSON_STR:
		if (!j->str)
			abort();
		n += strlen(j->str);
		break;
	case VMB_JSON_ARR:
	case VMB_JSON_OBJ:
		if (j->n && !j->items)
			abort();
		for (size_t i = 0; i < j->n; i++) {
			const vmb_json *c = j->items[i];
			if (!c || (j->type == VMB_JSON_OBJ) != (c->key != NULL))
				abort(); /* members have keys, items do not */
			if (j->type == VMB_JSON_OBJ &&
			    vmb_json_get(j, c->key) == NULL)
				abort();
			n += walk(c, depth + 1);
		}
		break;
	case VMB_JSON_NULL:
	case VMB_JSON_BOOL:
	case VMB_JSON_NUM:
		break;
	default:
		abort();
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmb_json *j = NULL;
	uint64_t u;
	int64_t i;
	/* not NUL-terminated: the parser must respect the length */
	char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (vmb_json_parse(copy, size, "fuzz", &j) == 0) {
		if (!j)
			abort();
		walk(j, 0);
		/* the lookups the repository code does */
		static const char *keys[] = { "version", "id", "vm", "time",
					      "disks", "tags", "kdf", "opslimit",
					      "memlimit", "salt", "expires", "" };
		for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
			const vmb_json *v = vmb_json_get(j, keys[k]);
			const char *s = vmb_json_str(j, keys[k]);
			if (s && (!v || v->type != VMB_JSON_STR))
				abort();
			if (vmb_json_u64(j, keys[k], &u) == 0 &&
			    (!v || v->type != VMB_JSON_NUM || !v->is_int))
				abort();
			if (vmb_json_i64(j, keys[k], &i) == 0 &&
			    (v->neg ? i > 0 : i < 0))
				abort();
			vmb_json_arr(j, keys[k]);
		}
		vmb_json_free(j);
	} else if (j) {
		abort(); /* a failed parse hands nothing back */
	}
	free(copy);
	return 0;
}
