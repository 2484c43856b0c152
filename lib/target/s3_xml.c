/* The XML of S3 answers: see s3_xml.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/util.h"
#include "s3_xml.h"
#include "target.h"

/* Find <tag>...</tag> in [p, end); returns the content span. */
int vmb_s3__xml_find(const char *p, const char *end, const char *tag,
		     const char **vs, const char **ve)
{
	char open[64], close[64];
	size_t ol, cl;
	snprintf(open, sizeof open, "<%s>", tag);
	snprintf(close, sizeof close, "</%s>", tag);
	ol = strlen(open);
	cl = strlen(close);
	for (const char *q = p; q + ol <= end; q++) {
		if (*q != '<' || memcmp(q, open, ol) != 0)
			continue;
		const char *s = q + ol;
		for (const char *e = s; e + cl <= end; e++) {
			if (*e == '<' && memcmp(e, close, cl) == 0) {
				*vs = s;
				*ve = e;
				return 1;
			}
		}
		return 0;
	}
	return 0;
}

/* Decode XML text (entities) into a malloc'd string; NULL if malformed. */
char *vmb_s3__xml_text(const char *s, const char *e)
{
	char *out = malloc((size_t)(e - s) + 1), *o = out;
	if (!out)
		return NULL;
	while (s < e) {
		if (*s != '&') {
			*o++ = *s++;
			continue;
		}
		const char *semi = memchr(s, ';', (size_t)(e - s));
		size_t n;
		if (!semi || semi - s > 10)
			goto bad;
		n = (size_t)(semi - s - 1);
		if (n == 3 && !memcmp(s + 1, "amp", 3)) *o++ = '&';
		else if (n == 2 && !memcmp(s + 1, "lt", 2)) *o++ = '<';
		else if (n == 2 && !memcmp(s + 1, "gt", 2)) *o++ = '>';
		else if (n == 4 && !memcmp(s + 1, "quot", 4)) *o++ = '"';
		else if (n == 4 && !memcmp(s + 1, "apos", 4)) *o++ = '\'';
		else if (n >= 2 && s[1] == '#') {
			unsigned long cp = 0;
			int hex = s[2] == 'x' || s[2] == 'X';
			const char *d = s + (hex ? 3 : 2);
			if (d >= semi)
				goto bad;
			for (; d < semi; d++) {
				int v;
				if (*d >= '0' && *d <= '9') v = *d - '0';
				else if (hex && *d >= 'a' && *d <= 'f') v = *d - 'a' + 10;
				else if (hex && *d >= 'A' && *d <= 'F') v = *d - 'A' + 10;
				else goto bad;
				cp = cp * (hex ? 16 : 10) + (unsigned long)v;
				if (cp > 0x10FFFF)
					goto bad;
			}
			if (cp == 0)
				goto bad;
			/* UTF-8 encode */
			if (cp < 0x80) {
				*o++ = (char)cp;
			} else if (cp < 0x800) {
				*o++ = (char)(0xC0 | (cp >> 6));
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else if (cp < 0x10000) {
				*o++ = (char)(0xE0 | (cp >> 12));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else {
				*o++ = (char)(0xF0 | (cp >> 18));
				*o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			}
		} else {
			goto bad;
		}
		s = semi + 1;
	}
	*o = 0;
	return out;
bad:
	free(out);
	return NULL;
}

/* "2024-01-02T03:04:05.000Z" -> Unix seconds; -1 if malformed. */
int64_t vmb_s3__iso8601(const char *s)
{
	struct tm tm;
	int y, mo, d, h, mi, se;
	memset(&tm, 0, sizeof tm);
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &se) != 6)
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    se > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	return (int64_t)timegm(&tm);
}

void vmb_s3__list_free(vmb_s3_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->e[i].name);
	free(l->e);
	free(l->token);
	memset(l, 0, sizeof *l);
}

int vmb_s3__parse_list(const char *data, size_t len, const char *full,
		       size_t plen, const char *url, vmb_s3_list *out)
{
	const char *p = data ? data : "", *end = p + (data ? len : 0);
	const char *vs, *ve;
	size_t cap = 0, flen = strlen(full);
	int r = 0;

	memset(out, 0, sizeof *out);
	if (vmb_s3__xml_find(p, end, "IsTruncated", &vs, &ve))
		out->truncated = ve - vs == 4 && !memcmp(vs, "true", 4);
	if (out->truncated &&
	    vmb_s3__xml_find(p, end, "NextContinuationToken", &vs, &ve) &&
	    !(out->token = vmb_s3__xml_text(vs, ve)))
		r = vmb_error_set(VMB_ECORRUPT, "%s: list: malformed "
				  "continuation token in the answer", url);
	/* each <Contents> block */
	while (!r && vmb_s3__xml_find(p, end, "Contents", &vs, &ve)) {
		const char *ks, *ke, *ss, *se, *ms, *me;
		vmb_s3_entry e = { NULL, 0, 0 };
		char *key;
		p = ve + strlen("</Contents>");
		if (!vmb_s3__xml_find(vs, ve, "Key", &ks, &ke))
			continue;
		key = vmb_s3__xml_text(ks, ke);
		if (!key) {
			r = vmb_error_set(VMB_ECORRUPT, "%s: list: malformed "
					  "key in the answer", url);
			break;
		}
		if (strlen(key) < plen || strncmp(key, full, flen) != 0 ||
		    !vmb_target__name_ok(key + plen)) {
			free(key); /* not ours (or not an object name) */
			continue;
		}
		if (vmb_s3__xml_find(vs, ve, "Size", &ss, &se)) {
			char num[32];
			size_t n = VMB_MIN((size_t)(se - ss), sizeof num - 1);
			memcpy(num, ss, n);
			num[n] = 0;
			e.size = strtoull(num, NULL, 10);
		}
		if (vmb_s3__xml_find(vs, ve, "LastModified", &ms, &me)) {
			char d[40];
			size_t n = VMB_MIN((size_t)(me - ms), sizeof d - 1);
			memcpy(d, ms, n);
			d[n] = 0;
			e.mtime = vmb_s3__iso8601(d);
			if (e.mtime < 0)
				e.mtime = 0;
		}
		e.name = vmb_strdup(key + plen);
		free(key);
		if (!e.name) {
			r = VMB_ENOMEM;
			break;
		}
		if (out->n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			vmb_s3_entry *ne = realloc(out->e, nc * sizeof *ne);
			if (!ne) {
				free(e.name);
				r = vmb_error_set(VMB_ENOMEM, "out of memory");
				break;
			}
			out->e = ne;
			cap = nc;
		}
		out->e[out->n++] = e;
	}
	if (r)
		vmb_s3__list_free(out);
	return r;
}
