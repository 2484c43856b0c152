/*
 * lib/store/index (the per-disk chunk index) and lib/common/json (the
 * bounded JSON reader): round trips and hostile inputs.
 */
#include "testutil.h"
#include "store/index.h"
#include "common/json.h"
#include "common/util.h"

/* ---------------- index ---------------- */

static void fill_index(vmb_index *ix, uint64_t seed)
{
	for (uint64_t i = 0; i < ix->count; i++) {
		ix->e[i].kind = (i % 3 == 1) ? VMB_CHUNK_ZERO : VMB_CHUNK_DATA;
		test_random(ix->e[i].id, 32, seed + i);
		test_random(ix->e[i].fp, 16, seed + 1000 + i);
	}
}

static void test_index_roundtrip(void)
{
	static const struct { uint64_t size; uint32_t cs; uint64_t count; }
	cases[] = {
		{ 0, 65536, 0 },
		{ 1, 65536, 1 },
		{ 65536, 65536, 1 },
		{ 65537, 65536, 2 },
		{ (10u << 20) + 12345, 1u << 20, 11 },
		{ 1ull << 40, 16u << 20, 65536 },
	};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		vmb_index ix, back;
		uint8_t *buf = NULL;
		size_t len = 0;
		CHECK_OK(vmb_index_alloc(&ix, cases[c].size, cases[c].cs));
		CHECK(ix.count == cases[c].count);
		fill_index(&ix, c * 7);
		CHECK_OK(vmb_index_encode(&ix, &buf, &len));
		CHECK(len == VMB_INDEX_HEADER_BYTES +
			     ix.count * VMB_INDEX_ENTRY_BYTES);
		CHECK(buf && memcmp(buf, "VMBI", 4) == 0);
		CHECK_OK(vmb_index_decode(buf, len, "ix", &back));
		CHECK(back.count == ix.count);
		CHECK(back.disk_size == ix.disk_size);
		CHECK(back.chunk_size == ix.chunk_size);
		int same = 1;
		for (uint64_t i = 0; i < ix.count; i++) {
			if (back.e[i].kind != ix.e[i].kind)
				same = 0;
			if (ix.e[i].kind == VMB_CHUNK_DATA &&
			    (memcmp(back.e[i].id, ix.e[i].id, 32) ||
			     memcmp(back.e[i].fp, ix.e[i].fp, 16)))
				same = 0;
			/* zero entries carry no id or fingerprint */
			if (ix.e[i].kind == VMB_CHUNK_ZERO &&
			    (!vmb_is_zero(back.e[i].id, 32) ||
			     !vmb_is_zero(back.e[i].fp, 16)))
				same = 0;
		}
		CHECK(same);
		vmb_index_free(&back);
		vmb_index_free(&ix);
		free(buf);
	}
	{
		vmb_index ix;
		CHECK_OK(vmb_index_alloc(&ix, (10u << 20) + 12345, 1u << 20));
		CHECK(vmb_index_chunk_len(&ix, 0) == 1u << 20);
		CHECK(vmb_index_chunk_len(&ix, 9) == 1u << 20);
		CHECK(vmb_index_chunk_len(&ix, 10) == 12345);
		vmb_index_free(&ix);
	}
	/* too many chunks */
	{
		vmb_index ix;
		uint64_t n;
		CHECK_ERR(vmb_index_alloc(&ix, 1ull << 50, 65536), VMB_EINVAL);
		CHECK(vmb_index_count(1ull << 50, 65536, &n) == -1);
		CHECK(vmb_index_count(100, 0, &n) == -1);
		CHECK(vmb_index_count(VMB_INDEX_MAX_ENTRIES * 4096ull, 4096,
				      &n) == 0 && n == VMB_INDEX_MAX_ENTRIES);
		CHECK(vmb_index_count(VMB_INDEX_MAX_ENTRIES * 4096ull + 1, 4096,
				      &n) == -1);
	}
}

/* A valid encoded index of @size bytes in chunks of @cs. */
static uint8_t *good_index(uint64_t size, uint32_t cs, size_t *len)
{
	vmb_index ix;
	uint8_t *buf = NULL;
	if (vmb_index_alloc(&ix, size, cs))
		return NULL;
	fill_index(&ix, 3);
	if (vmb_index_encode(&ix, &buf, len))
		buf = NULL;
	vmb_index_free(&ix);
	return buf;
}

static int dec(const uint8_t *buf, size_t len)
{
	vmb_index ix;
	int rc = vmb_index_decode(buf, len, "hostile index", &ix);
	if (rc == 0) {
		/* whatever is accepted must be self-consistent */
		uint64_t n;
		CHECK(vmb_index_count(ix.disk_size, ix.chunk_size, &n) == 0);
		CHECK(n == ix.count);
		uint64_t want = VMB_INDEX_HEADER_BYTES +
				ix.count * VMB_INDEX_ENTRY_BYTES;
		for (uint64_t i = 0; i < ix.count; i++) {
			const vmb_index_patch *p = vmb_index_patch_of(&ix, i);
			CHECK(ix.e[i].kind <= VMB_CHUNK_PATCH);
			if (!p)
				continue;
			want += 36 + 8ull * p->nruns;
			CHECK(p->nruns >= 1 && p->nruns <= VMB_INDEX_MAX_RUNS);
			for (uint32_t k = 0; k < p->nruns; k++) {
				CHECK(p->runs[k].len > 0);
				CHECK((uint64_t)p->runs[k].off + p->runs[k].len <=
				      vmb_index_chunk_len(&ix, i));
				CHECK(!k || p->runs[k].off >
					    p->runs[k - 1].off + p->runs[k - 1].len);
			}
		}
		CHECK(len == want);
		vmb_index_free(&ix);
	} else {
		CHECK(ix.e == NULL && ix.count == 0);
	}
	return rc;
}

static void test_index_hostile(void)
{
	size_t len;
	const uint64_t size = 10 * 65536 + 100; /* 11 entries */
	uint8_t *good = good_index(size, 65536, &len), *b;
	CHECK(good != NULL);
	if (!good)
		return;
	b = malloc(len + 100);
#define RESET() memcpy(b, good, len)
	RESET();
	CHECK_OK(dec(b, len));

	/* magic, version */
	RESET(); b[0] = 'X';
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	RESET(); vmb_put_le32(b + 4, 3);
	CHECK_ERR(dec(b, len), VMB_ENOTSUP);
	/* entry size */
	RESET(); vmb_put_le32(b + 8, 48);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	RESET(); vmb_put_le32(b + 8, 50);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	RESET(); vmb_put_le32(b + 8, 0);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	/* chunk sizes: not a power of two, too small, too large, zero */
	static const uint32_t bad_cs[] = { 65535, 65537, 3 << 16, 0, 1, 2048,
					   128u << 20, 0x80000000u,
					   0xffffffffu };
	for (size_t i = 0; i < sizeof bad_cs / sizeof bad_cs[0]; i++) {
		RESET(); vmb_put_le32(b + 12, bad_cs[i]);
		CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	}
	/* a power of two whose count matches is fine: 131072 -> 6 entries
	 * would need a different length, so it is refused here */
	RESET(); vmb_put_le32(b + 12, 131072);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	/* count mismatches */
	RESET(); vmb_put_le64(b + 24, 10);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	RESET(); vmb_put_le64(b + 24, 12);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	RESET(); vmb_put_le64(b + 24, UINT64_MAX);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	RESET(); vmb_put_le64(b + 24, 0);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	/* disk size that needs another count, or absurdly many chunks */
	RESET(); vmb_put_le64(b + 16, size + 65536);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	RESET(); vmb_put_le64(b + 16, UINT64_MAX);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	/* a disk size within the last chunk is still consistent */
	RESET(); vmb_put_le64(b + 16, size + 1);
	CHECK_OK(dec(b, len));
	/* bad kinds */
	RESET(); b[VMB_INDEX_HEADER_BYTES] = 2;
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	RESET(); b[VMB_INDEX_HEADER_BYTES + 10 * VMB_INDEX_ENTRY_BYTES] = 0xff;
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	/* lengths: every truncation, extensions, not a multiple */
	RESET();
	int all = 1;
	for (size_t n = 0; n < len; n++)
		if (dec(b, n) != VMB_ECORRUPT)
			all = 0;
	CHECK(all);
	memset(b + len, 0, 100);
	CHECK_ERR(dec(b, len + 1), VMB_ECORRUPT);
	CHECK_ERR(dec(b, len + VMB_INDEX_ENTRY_BYTES), VMB_ECORRUPT);
	/* a huge count with a matching disk size but a short buffer */
	{
		uint8_t h[VMB_INDEX_HEADER_BYTES + VMB_INDEX_ENTRY_BYTES];
		memcpy(h, good, VMB_INDEX_HEADER_BYTES);
		vmb_put_le32(h + 12, 4096);
		vmb_put_le64(h + 16, VMB_INDEX_MAX_ENTRIES * 4096ull);
		vmb_put_le64(h + 24, VMB_INDEX_MAX_ENTRIES);
		memset(h + VMB_INDEX_HEADER_BYTES, 0, VMB_INDEX_ENTRY_BYTES);
		CHECK_ERR(dec(h, sizeof h), VMB_ECORRUPT);
	}
	/* an empty disk: header only */
	{
		uint8_t h[VMB_INDEX_HEADER_BYTES];
		memcpy(h, good, sizeof h);
		vmb_put_le64(h + 16, 0);
		vmb_put_le64(h + 24, 0);
		CHECK_OK(dec(h, sizeof h));
	}
	/* single-byte damage anywhere in the header never yields an
	 * inconsistent index (dec() checks what is accepted) */
	for (size_t i = 0; i < VMB_INDEX_HEADER_BYTES; i++)
		for (int bit = 0; bit < 8; bit++) {
			RESET();
			b[i] ^= (uint8_t)(1 << bit);
			dec(b, len);
		}
#undef RESET
	free(b);
	free(good);
}

/* ---------------- JSON ---------------- */

static vmb_json *parse_ok(const char *s)
{
	vmb_json *j = NULL;
	int rc = vmb_json_parse(s, strlen(s), "doc", &j);
	if (rc)
		fprintf(stderr, "parse failed: %s\n", s);
	CHECK_OK(rc);
	return j;
}

static void parse_bad(const char *s, size_t len)
{
	vmb_json *j = (vmb_json *)1;
	int rc = vmb_json_parse(s, len, "doc", &j);
	if (rc != VMB_ECORRUPT)
		fprintf(stderr, "accepted invalid JSON: %.*s\n",
			(int)(len > 80 ? 80 : len), s);
	CHECK(rc == VMB_ECORRUPT);
	CHECK(j == NULL);
	CHECK(strstr(vmb_error_message(), "doc") != NULL);
	vmb_json_free(j == (vmb_json *)1 ? NULL : j);
}
#define BAD(lit) parse_bad(lit, sizeof lit - 1)

static void test_json_valid(void)
{
	vmb_json *j;
	const vmb_json *v;
	uint64_t u;
	int64_t i;

	j = parse_ok(" { \"a\" : [1, 2, {\"b\": {\"c\": [[], {}, null]}}],"
		     "\"t\":true, \"f\" : false, \"s\":\"x\", \"n\":null,"
		     "\"neg\": -42, \"fl\": 1.5e3, \"e\": 2E-2 }\n\t\r ");
	CHECK(j && j->type == VMB_JSON_OBJ && j->n == 8);
	v = vmb_json_arr(j, "a");
	CHECK(v && v->n == 3 && v->items[0]->type == VMB_JSON_NUM &&
	      v->items[0]->u == 1 && v->items[0]->is_int);
	v = v ? vmb_json_get(v->items[2], "b") : NULL;
	v = v ? vmb_json_arr(v, "c") : NULL;
	CHECK(v && v->n == 3 && v->items[0]->type == VMB_JSON_ARR &&
	      v->items[0]->n == 0 && v->items[1]->type == VMB_JSON_OBJ &&
	      v->items[2]->type == VMB_JSON_NULL);
	v = vmb_json_get(j, "t");
	CHECK(v && v->type == VMB_JSON_BOOL && v->boolean == 1);
	v = vmb_json_get(j, "f");
	CHECK(v && v->type == VMB_JSON_BOOL && v->boolean == 0);
	CHECK(vmb_json_str(j, "s") && strcmp(vmb_json_str(j, "s"), "x") == 0);
	/* type-checked lookups */
	CHECK(vmb_json_str(j, "t") == NULL);
	CHECK(vmb_json_str(j, "missing") == NULL);
	CHECK(vmb_json_arr(j, "s") == NULL);
	CHECK(vmb_json_u64(j, "s", &u) == -1);
	CHECK(vmb_json_u64(j, "neg", &u) == -1);
	CHECK(vmb_json_i64(j, "neg", &i) == 0 && i == -42);
	CHECK(vmb_json_u64(j, "fl", &u) == -1);
	v = vmb_json_get(j, "fl");
	CHECK(v && !v->is_int && v->d == 1500.0);
	v = vmb_json_get(j, "e");
	CHECK(v && !v->is_int && v->d > 0.0199 && v->d < 0.0201);
	CHECK(vmb_json_get(v, "x") == NULL); /* not an object */
	vmb_json_free(j);

	/* escapes */
	j = parse_ok("{\"s\":\"q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\t\"}");
	CHECK(j && strcmp(vmb_json_str(j, "s"),
			  "q\"b\\s/b\bf\fn\nr\rt\t") == 0);
	vmb_json_free(j);
	j = parse_ok("[\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\\uDBFF\\uDFFF\"]");
	CHECK(j && j->n == 1 &&
	      strcmp(j->items[0]->str, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
				       "\xf4\x8f\xbf\xbf") == 0);
	vmb_json_free(j);
	/* raw UTF-8 passes through */
	j = parse_ok("\"h\xc3\xa9llo\"");
	CHECK(j && j->type == VMB_JSON_STR && strcmp(j->str, "h\xc3\xa9llo") == 0);
	vmb_json_free(j);
	/* empty strings and keys are terminated strings */
	j = parse_ok("{\"\":\"\",\"e\":[\"\",\"\"]}");
	CHECK(j && j->n == 2 && j->items[0]->key && j->items[0]->key[0] == 0);
	CHECK(j && vmb_json_str(j, "") && strcmp(vmb_json_str(j, ""), "") == 0);
	v = vmb_json_arr(j, "e");
	CHECK(v && v->n == 2 && strlen(v->items[1]->str) == 0);
	vmb_json_free(j);
	/* keys with escapes */
	j = parse_ok("{\"a\\nb\":1}");
	CHECK(j && vmb_json_u64(j, "a\nb", &u) == 0 && u == 1);
	vmb_json_free(j);

	/* big integers are exact */
	j = parse_ok("{\"max\":18446744073709551615,\"big\":9007199254740993,"
		     "\"over\":18446744073709551616,\"i\":9223372036854775807,"
		     "\"io\":9223372036854775808,\"imin\":-9223372036854775807,"
		     "\"z\":0,\"mz\":-0}");
	CHECK(vmb_json_u64(j, "max", &u) == 0 && u == UINT64_MAX);
	CHECK(vmb_json_u64(j, "big", &u) == 0 && u == 9007199254740993ull);
	CHECK(vmb_json_u64(j, "over", &u) == -1);
	CHECK(vmb_json_i64(j, "i", &i) == 0 && i == INT64_MAX);
	CHECK(vmb_json_i64(j, "io", &i) == -1);
	CHECK(vmb_json_i64(j, "imin", &i) == 0 && i == -INT64_MAX);
	CHECK(vmb_json_u64(j, "z", &u) == 0 && u == 0);
	CHECK(vmb_json_u64(j, "mz", &u) == 0 && u == 0);
	vmb_json_free(j);

	/* scalars at top level, depth up to the limit */
	j = parse_ok("7");
	CHECK(j && j->type == VMB_JSON_NUM && j->u == 7);
	vmb_json_free(j);
	j = parse_ok("null");
	CHECK(j && j->type == VMB_JSON_NULL);
	vmb_json_free(j);
	{
		char deep[2 * (VMB_JSON_MAX_DEPTH + 1) + 1];
		int d = VMB_JSON_MAX_DEPTH + 1; /* depths 0..64 */
		memset(deep, '[', (size_t)d);
		memset(deep + d, ']', (size_t)d);
		deep[2 * d] = 0;
		j = parse_ok(deep);
		vmb_json_free(j);
	}
	/* the length bounds the input: no NUL terminator needed */
	{
		const char s[] = "[12]xyz";
		CHECK_OK(vmb_json_parse(s, 4, "doc", &j));
		CHECK(j && j->n == 1 && j->items[0]->u == 12);
		vmb_json_free(j);
		parse_bad(s, 3);
		const char t[] = "123456";
		CHECK_OK(vmb_json_parse(t, 3, "doc", &j));
		CHECK(j && j->u == 123);
		vmb_json_free(j);
	}
	/* many members (the array grows) */
	{
		vmb_buf b;
		vmb_buf_init(&b);
		vmb_buf_puts(&b, "{");
		for (int k = 0; k < 5000; k++)
			vmb_buf_printf(&b, "%s\"k%d\":%d", k ? "," : "", k, k);
		vmb_buf_puts(&b, "}");
		j = parse_ok(b.data);
		CHECK(j && j->n == 5000 && vmb_json_u64(j, "k4999", &u) == 0 &&
		      u == 4999);
		vmb_json_free(j);
		vmb_buf_free(&b);
	}
	/* vmb_buf_json_str output reads back */
	{
		vmb_buf b;
		const char *nasty = "a\"b\\c\n\x01\x1f/\xc3\xa9";
		vmb_buf_init(&b);
		vmb_buf_json_str(&b, nasty);
		j = parse_ok(b.data);
		CHECK(j && j->type == VMB_JSON_STR && strcmp(j->str, nasty) == 0);
		vmb_json_free(j);
		vmb_buf_free(&b);
	}
}

static void test_json_invalid(void)
{
	BAD("");
	BAD("   ");
	BAD("{} x");
	BAD("{}{}");
	BAD("[1] 2");
	BAD("[1,2");
	BAD("[1,2,]");
	BAD("[,]");
	BAD("{\"a\":1");
	BAD("{\"a\":1,}");
	BAD("{\"a\" 1}");
	BAD("{\"a\":}");
	BAD("{a:1}");
	BAD("{1:2}");
	BAD("\"abc");
	BAD("\"abc\\");
	BAD("\"abc\\\"");
	BAD("\"a\x01" "b\"");
	BAD("\"a\nb\"");
	BAD("\"a\tb\"");
	BAD("\"\\x\"");
	BAD("\"\\u12\"");
	BAD("\"\\u12g4\"");
	BAD("\"\\u0000\"");
	BAD("\"\\udc00\"");        /* lone low surrogate */
	BAD("\"\\ud800\"");        /* lone high surrogate */
	BAD("\"\\ud800x\"");
	BAD("\"\\ud800\\u0041\""); /* high + not low */
	BAD("\"\\ud800\\ud800\"");
	BAD("tru");
	BAD("nul");
	BAD("True");
	BAD("-");
	BAD("+1");
	BAD(".5");
	BAD("[1 2]");
	BAD("{\"a\":1 \"b\":2}");
	BAD("\"a\0b\"");
	BAD("[\"a\"\0]");
	BAD("]");
	BAD("}");
	/* nesting: 100 deep, unterminated and terminated */
	{
		char deep[201];
		memset(deep, '[', 100);
		memset(deep + 100, ']', 100);
		deep[200] = 0;
		parse_bad(deep, 200);
		parse_bad(deep, 100);
	}
	{
		/* {"a":{"a":...}} 100 deep */
		char *s = malloc(100 * 6 + 2 + 100);
		size_t n = 0;
		for (int k = 0; k < 100; k++) {
			memcpy(s + n, "{\"a\":", 5);
			n += 5;
		}
		s[n++] = '1';
		memset(s + n, '}', 100);
		n += 100;
		parse_bad(s, n);
		free(s);
	}
	{
		char deep[2 * (VMB_JSON_MAX_DEPTH + 2)];
		int d = VMB_JSON_MAX_DEPTH + 2; /* one too deep */
		memset(deep, '[', (size_t)d);
		memset(deep + d, ']', (size_t)d);
		parse_bad(deep, sizeof deep);
	}
	/* a number longer than the parser's buffer */
	{
		char num[200];
		memset(num, '1', sizeof num);
		parse_bad(num, sizeof num);
	}
	/* every prefix of a valid document is invalid */
	{
		const char doc[] = "{\"a\":[1,true,null,\"x\\u00e9\"],\"b\":{}}";
		int all = 1;
		for (size_t n = 0; n < sizeof doc - 1; n++) {
			vmb_json *j = NULL;
			/* "{...}" prefixes that end in a digit inside are
			 * still unterminated: all must fail */
			if (vmb_json_parse(doc, n, "doc", &j) == 0) {
				all = 0;
				fprintf(stderr, "prefix %zu accepted\n", n);
				vmb_json_free(j);
			}
		}
		CHECK(all);
	}
}

/* Patch entries (index version 2): round trip, copies, hostile tables. */
static void test_index_patches(void)
{
	vmb_index ix, back, copy;
	uint8_t *buf = NULL, *b, base[32];
	size_t len = 0;
	const uint8_t *ids[2];
	vmb_index_run r1[] = { { 0, 4096 }, { 65536, 65536 } };
	vmb_index_run r2[] = { { 100, 1 } };
	vmb_index_run bad_overlap[] = { { 0, 4096 }, { 4096, 10 } };
	vmb_index_run bad_out[] = { { 65530, 10 } };
	vmb_index_run bad_empty[] = { { 5, 0 } };

	test_random(base, 32, 77);
	CHECK_OK(vmb_index_alloc(&ix, 4 * 131072 + 65536, 131072)); /* 5 */
	fill_index(&ix, 9);
	CHECK_OK(vmb_index_set_patch(&ix, 0, base, r1, 2));
	CHECK_OK(vmb_index_set_patch(&ix, 4, NULL, r2, 1)); /* zero base */
	/* runs must be increasing, apart, non-empty, inside the chunk */
	CHECK_ERR(vmb_index_set_patch(&ix, 2, base, bad_overlap, 2),
		  VMB_EINVAL);
	CHECK_ERR(vmb_index_set_patch(&ix, 4, base, bad_out, 1), VMB_EINVAL);
	CHECK_ERR(vmb_index_set_patch(&ix, 2, base, bad_empty, 1), VMB_EINVAL);
	CHECK_ERR(vmb_index_set_patch(&ix, 2, base, r1, 0), VMB_EINVAL);
	CHECK(ix.e[2].kind != VMB_CHUNK_PATCH);
	test_random(ix.e[0].id, 32, 5);
	test_random(ix.e[4].id, 32, 6);
	CHECK(vmb_index_ids(&ix, 0, ids) == 2 && ids[1] != NULL &&
	      memcmp(ids[1], base, 32) == 0 && ids[0] == ix.e[0].id);
	CHECK(vmb_index_ids(&ix, 4, ids) == 1); /* a zero base is no object */
	CHECK(vmb_index_ids(&ix, 1, ids) == 0); /* fill_index: zero */
	CHECK(vmb_index_patch_bytes(vmb_index_patch_of(&ix, 0)) == 69632);
	CHECK_OK(vmb_index_encode(&ix, &buf, &len));
	CHECK(len == VMB_INDEX_HEADER_BYTES + 5 * VMB_INDEX_ENTRY_BYTES +
		     (36 + 16) + (36 + 8));
	CHECK(buf[4] == 2); /* version 2 only with patches */
	CHECK_OK(dec(buf, len));
	CHECK_OK(vmb_index_decode(buf, len, "ix", &back));
	CHECK(back.e[0].kind == VMB_CHUNK_PATCH &&
	      back.e[4].kind == VMB_CHUNK_PATCH);
	CHECK(memcmp(back.e[0].id, ix.e[0].id, 32) == 0);
	CHECK(memcmp(vmb_index_patch_of(&back, 0)->base, base, 32) == 0);
	CHECK(vmb_index_patch_of(&back, 0)->runs[1].off == 65536);
	CHECK(vmb_index_id_is_zero(vmb_index_patch_of(&back, 4)->base));
	/* copying entries carries the patch record */
	CHECK_OK(vmb_index_alloc(&copy, back.disk_size, back.chunk_size));
	for (uint64_t i = 0; i < back.count; i++)
		CHECK_OK(vmb_index_copy_entry(&copy, &back, i));
	{
		uint8_t *buf2 = NULL;
		size_t len2 = 0;
		CHECK_OK(vmb_index_encode(&copy, &buf2, &len2));
		CHECK(len2 == len && memcmp(buf2, buf, len) == 0);
		free(buf2);
	}
	vmb_index_free(&copy);
	vmb_index_free(&back);

	/* hostile patch tables */
	b = malloc(len + 16);
	size_t t0 = VMB_INDEX_HEADER_BYTES + 5 * VMB_INDEX_ENTRY_BYTES;
#define PRESET() memcpy(b, buf, len)
	PRESET(); CHECK_ERR(dec(b, len - 1), VMB_ECORRUPT);      /* truncated */
	PRESET(); CHECK_ERR(dec(b, t0), VMB_ECORRUPT);           /* no table */
	PRESET(); memset(b + len, 0, 8);
	CHECK_ERR(dec(b, len + 8), VMB_ECORRUPT);                /* stray */
	PRESET(); vmb_put_le32(b + t0 + 32, 0);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);                    /* no runs */
	PRESET(); vmb_put_le32(b + t0 + 32, 0xffffffffu);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);                    /* absurd */
	PRESET(); vmb_put_le32(b + t0 + 32, VMB_INDEX_MAX_RUNS + 1);
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	PRESET(); vmb_put_le32(b + t0 + 36 + 8, 2048);           /* overlap */
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	PRESET(); vmb_put_le32(b + t0 + 36 + 12, 131072);        /* past end */
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	PRESET(); vmb_put_le32(b + t0 + 36 + 4, 0);              /* empty */
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	PRESET(); vmb_put_le32(b + t0 + 52 + 36, 0xfffffff0u);   /* wraps */
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	PRESET(); vmb_put_le32(b + t0 + 52 + 36 + 4, 65537);     /* last */
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);  /* chunk 4 is 65536 bytes */
	PRESET(); b[VMB_INDEX_HEADER_BYTES + 2 * VMB_INDEX_ENTRY_BYTES] = 3;
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);                    /* kind 3 */
	PRESET(); b[4] = 1;   /* a version-1 index has no patch entries */
	CHECK_ERR(dec(b, len), VMB_ECORRUPT);
	PRESET(); b[4] = 3;
	CHECK_ERR(dec(b, len), VMB_ENOTSUP);
#undef PRESET
	free(b);
	free(buf);
	vmb_index_free(&ix);
}

int main(void)
{
	test_index_roundtrip();
	test_index_hostile();
	test_index_patches();
	test_json_valid();
	test_json_invalid();
	return test_done();
}
