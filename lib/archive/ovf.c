/*
 * A minimal OVF descriptor reader for OVA import: the VirtualSystem's id
 * or name, and the hrefs of References/File.
 */
#include <stdlib.h>
#include <string.h>
#include "vmbackup/common.h"
#include "common/util.h"
#include "archive_internal.h"

static char *xml_unescape(const char *s, size_t n)
{
	char *o = vmb_malloc(n + 1), *w = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n;) {
		static const struct { const char *e; char c; } ents[] = {
			{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
			{ "&quot;", '"' }, { "&apos;", '\'' } };
		int hit = 0;
		if (s[i] == '&')
			for (size_t k = 0; k < 5; k++) {
				size_t l = strlen(ents[k].e);
				if (i + l <= n && !strncmp(s + i, ents[k].e, l)) {
					*w++ = ents[k].c;
					i += l;
					hit = 1;
					break;
				}
			}
		if (!hit)
			*w++ = s[i++];
	}
	*w = 0;
	return o;
}

/* Local name of the tag at s (after '<'): its length, and *end. */
static const char *tag_local(const char *s, size_t *len)
{
	const char *e = s, *colon = NULL;
	while (*e && *e != ' ' && *e != '\t' && *e != '\r' && *e != '\n' &&
	       *e != '>' && *e != '/') {
		if (*e == ':')
			colon = e;
		e++;
	}
	*len = (size_t)(e - (colon ? colon + 1 : s));
	return colon ? colon + 1 : s;
}

/* Attribute whose local name is @name inside the tag [s, end). */
static char *tag_attr(const char *s, const char *end, const char *name)
{
	size_t nl = strlen(name);
	const char *p = s;
	while (p < end) {
		const char *a, *colon = NULL, *eq;
		char q;
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' ||
				   *p == '\n'))
			p++;
		a = p;
		while (p < end && *p != '=' && *p != ' ' && *p != '>' &&
		       *p != '/') {
			if (*p == ':')
				colon = p;
			p++;
		}
		eq = p;
		if (p >= end || *p != '=') {
			p++;
			continue;
		}
		p++;
		if (p >= end || (*p != '"' && *p != '\''))
			continue;
		q = *p++;
		const char *v = p;
		while (p < end && *p != q)
			p++;
		if (p >= end)
			return NULL;
		const char *ln = colon ? colon + 1 : a;
		if ((size_t)(eq - ln) == nl && !strncmp(ln, name, nl))
			return xml_unescape(v, (size_t)(p - v));
		p++;
	}
	return NULL;
}

void vmb_archive__ovf_free(struct ovf *o)
{
	free(o->vm);
	for (size_t i = 0; i < o->nhrefs; i++)
		free(o->hrefs[i]);
	free(o->hrefs);
}

int vmb_archive__ovf_parse(const char *text, struct ovf *o)
{
	const char *p = text;
	int in_vs = 0, in_refs = 0;
	char *id = NULL, *name = NULL;
	memset(o, 0, sizeof *o);
	while ((p = strchr(p, '<')) != NULL) {
		const char *end, *ln;
		size_t ll;
		int closing;
		if (!strncmp(p, "<!--", 4)) {
			const char *e = strstr(p + 4, "-->");
			if (!e)
				break;
			p = e + 3;
			continue;
		}
		if (p[1] == '?' || p[1] == '!') {
			p = strchr(p, '>');
			if (!p)
				break;
			continue;
		}
		closing = p[1] == '/';
		end = strchr(p, '>');
		if (!end)
			break;
		ln = tag_local(p + 1 + closing, &ll);
#define IS(t) (ll == strlen(t) && !strncmp(ln, t, ll))
		if (closing) {
			if (IS("References"))
				in_refs = 0;
			if (IS("VirtualSystem"))
				in_vs = 0;
		} else if (IS("References")) {
			in_refs = 1;
		} else if (IS("File") && in_refs) {
			char *h = tag_attr(ln + ll, end, "href");
			if (h) {
				char **nh = vmb_realloc(o->hrefs, (o->nhrefs + 1)
							* sizeof *nh);
				if (!nh) {
					free(h);
					goto nomem;
				}
				o->hrefs = nh;
				o->hrefs[o->nhrefs++] = h;
			}
		} else if (IS("VirtualSystem") && !id) {
			in_vs = 1;
			id = tag_attr(ln + ll, end, "id");
		} else if (IS("Name") && in_vs && !name && end[-1] != '/') {
			const char *t = end + 1, *te = strchr(t, '<');
			if (te)
				name = xml_unescape(t, (size_t)(te - t));
		}
#undef IS
		p = end + 1;
	}
	if (id && *id) {
		o->vm = id;
		free(name);
	} else {
		free(id);
		o->vm = name;
	}
	return 0;
nomem:
	free(id);
	free(name);
	return VMB_ENOMEM;
}

