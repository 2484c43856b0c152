/*
 * .vmx / .vmsd files and VMDK descriptors for the VMware plugin.  Every
 * input is hostile: lengths, line counts and entry counts are bounded,
 * escapes are checked, numbers are parsed with their range.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vmbackup.h"
#include "vmx.h"

static char *dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	return d;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

void vmx_free(struct vmx *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->n; i++) {
		free(x->l[i].key);
		free(x->l[i].value);
		free(x->l[i].raw);
	}
	free(x->l);
	x->l = NULL;
	x->n = 0;
}

static int key_ok(const char *k, size_t n)
{
	if (!n || n > 256)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)k[i]) || k[i] == '.' ||
		      k[i] == '_' || k[i] == ':' || k[i] == '-' ||
		      k[i] == '[' || k[i] == ']'))
			return 0;
	return 1;
}

/* Decode a value: |XX escapes (VMware writes '"' as |22, '|' as |7C). */
static char *decode(const char *s, size_t n, int *bad)
{
	char *out = malloc(n + 1);
	size_t o = 0;
	*bad = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '|' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
		    hexval(s[i + 2]) >= 0) {
			int c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
			if (c == 0) {
				*bad = 1;
				break;
			}
			out[o++] = (char)c;
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = 0;
	return out;
}

static int add_line(struct vmx *x, char *key, char *value, char *raw)
{
	struct vmx_line *nl;
	if (x->n >= VMX_MAX_LINES)
		return -1;
	nl = realloc(x->l, (x->n + 1) * sizeof *nl);
	if (!nl)
		return -1;
	x->l = nl;
	nl[x->n].key = key;
	nl[x->n].value = value;
	nl[x->n].raw = raw;
	x->n++;
	return 0;
}

int vmx_parse(const char *text, size_t len, const char *what, struct vmx *out)
{
	size_t pos = 0, lineno = 0;
	memset(out, 0, sizeof *out);
	if (len > VMX_MAX_FILE)
		return vmb_error_set(VMB_EFORMAT, "%s: larger than %u bytes",
				     what, VMX_MAX_FILE);
	/* a UTF-8 byte order mark is allowed */
	if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
		pos = 3;
	while (pos < len) {
		const char *ln = text + pos, *nl, *e, *eq, *k0, *k1, *v0, *v1;
		size_t n;
		char *key = NULL, *val = NULL;
		int bad = 0;
		nl = memchr(ln, '\n', len - pos);
		n = nl ? (size_t)(nl - ln) : len - pos;
		pos += n + (nl ? 1 : 0);
		if (++lineno > VMX_MAX_LINES)
			goto toomany;
		if (n > VMX_MAX_LINE) {
			vmx_free(out);
			return vmb_error_set(VMB_EFORMAT, "%s: line %zu is longer "
					     "than %u bytes", what, lineno,
					     VMX_MAX_LINE);
		}
		if (memchr(ln, 0, n)) {
			vmx_free(out);
			return vmb_error_set(VMB_EFORMAT, "%s: line %zu holds a "
					     "NUL byte", what, lineno);
		}
		e = ln + n;
		if (e > ln && e[-1] == '\r')
			e--;
		k0 = ln;
		while (k0 < e && (*k0 == ' ' || *k0 == '\t'))
			k0++;
		if (k0 == e || *k0 == '#') {
			char *raw = dupn(ln, (size_t)(e - ln));
			if (!raw || add_line(out, NULL, NULL, raw)) {
				free(raw);
				goto toomany;
			}
			continue;
		}
		eq = memchr(k0, '=', (size_t)(e - k0));
		if (!eq) {
			vmx_free(out);
			return vmb_error_set(VMB_EFORMAT, "%s: line %zu: expected "
					     "key = \"value\"", what, lineno);
		}
		k1 = eq;
		while (k1 > k0 && (k1[-1] == ' ' || k1[-1] == '\t'))
			k1--;
		if (!key_ok(k0, (size_t)(k1 - k0))) {
			vmx_free(out);
			return vmb_error_set(VMB_EFORMAT, "%s: line %zu: bad key",
					     what, lineno);
		}
		v0 = eq + 1;
		while (v0 < e && (*v0 == ' ' || *v0 == '\t'))
			v0++;
		if (v0 < e && *v0 == '"') {
			const char *q = memchr(v0 + 1, '"', (size_t)(e - v0 - 1));
			const char *t;
			if (!q) {
				vmx_free(out);
				return vmb_error_set(VMB_EFORMAT, "%s: line %zu: "
						     "unterminated quote", what,
						     lineno);
			}
			for (t = q + 1; t < e && (*t == ' ' || *t == '\t'); t++)
				;
			if (t < e && *t != '#') {
				vmx_free(out);
				return vmb_error_set(VMB_EFORMAT, "%s: line %zu: "
						     "text after the value",
						     what, lineno);
			}
			v1 = q;
			v0++;
		} else {
			v1 = e;
			while (v1 > v0 && (v1[-1] == ' ' || v1[-1] == '\t'))
				v1--;
		}
		key = dupn(k0, (size_t)(k1 - k0));
		val = decode(v0, (size_t)(v1 - v0), &bad);
		if (bad) {
			free(key);
			free(val);
			vmx_free(out);
			return vmb_error_set(VMB_EFORMAT, "%s: line %zu: an escape "
					     "gives a NUL byte", what, lineno);
		}
		if (!key || !val || add_line(out, key, val, NULL)) {
			free(key);
			free(val);
			goto toomany;
		}
	}
	return 0;
toomany:
	vmx_free(out);
	return vmb_error_set(VMB_EFORMAT, "%s: more than %u lines (or out of "
			     "memory)", what, VMX_MAX_LINES);
}

const char *vmx_get(const struct vmx *x, const char *key)
{
	/* the last one wins, as VMware reads it */
	for (size_t i = x->n; i-- > 0;)
		if (x->l[i].key && !strcasecmp(x->l[i].key, key))
			return x->l[i].value;
	return NULL;
}

int vmx_set(struct vmx *x, const char *key, const char *value)
{
	int found = 0;
	for (size_t i = 0; i < x->n; i++) {
		struct vmx_line *l = &x->l[i];
		if (!l->key || strcasecmp(l->key, key))
			continue;
		if (!value || found) {
			free(l->key);
			free(l->value);
			memmove(l, l + 1, (x->n - i - 1) * sizeof *l);
			x->n--;
			i--;
			continue;
		}
		free(l->value);
		l->value = strdup(value);
		if (!l->value)
			return VMB_ENOMEM;
		found = 1;
	}
	if (!value || found)
		return 0;
	{
		char *k = strdup(key), *v = strdup(value);
		if (!k || !v || add_line(x, k, v, NULL)) {
			free(k);
			free(v);
			return VMB_ENOMEM;
		}
	}
	return 0;
}

char *vmx_write(const struct vmx *x, size_t *len)
{
	size_t cap = 256, n = 0;
	char *o = malloc(cap);
	if (!o)
		return NULL;
	for (size_t i = 0; i < x->n; i++) {
		const struct vmx_line *l = &x->l[i];
		size_t need = (l->key ? strlen(l->key) + 3 * strlen(l->value) + 8
				      : strlen(l->raw) + 2);
		if (n + need + 1 > cap) {
			char *g;
			while (n + need + 1 > cap)
				cap *= 2;
			g = realloc(o, cap);
			if (!g) {
				free(o);
				return NULL;
			}
			o = g;
		}
		if (!l->key) {
			n += (size_t)snprintf(o + n, cap - n, "%s\n", l->raw);
			continue;
		}
		n += (size_t)snprintf(o + n, cap - n, "%s = \"", l->key);
		for (const unsigned char *c = (const unsigned char *)l->value; *c;
		     c++) {
			if (*c == '"' || *c == '|' || *c < 0x20 || *c == 0x7f)
				n += (size_t)snprintf(o + n, cap - n, "|%02X", *c);
			else
				o[n++] = (char)*c;
		}
		o[n++] = '"';
		o[n++] = '\n';
		o[n] = 0;
	}
	o[n] = 0;
	*len = n;
	return o;
}

static int read_small(const char *path, size_t max, char **text, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got;
	if (fd < 0)
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > max) {
		close(fd);
		return vmb_error_set(VMB_EFORMAT, "%s: not a regular file of at "
				     "most %zu bytes", path, max);
	}
	*text = malloc((size_t)st.st_size + 1);
	if (!*text) {
		close(fd);
		return VMB_ENOMEM;
	}
	got = pread(fd, *text, (size_t)st.st_size, 0);
	close(fd);
	if (got != st.st_size) {
		free(*text);
		return vmb_error_set(VMB_EIO, "cannot read %s", path);
	}
	(*text)[got] = 0;
	*len = (size_t)got;
	return 0;
}

int vmx_load(const char *path, struct vmx *out)
{
	char *t = NULL;
	size_t n = 0;
	int rc = read_small(path, VMX_MAX_FILE, &t, &n);
	if (rc)
		return rc;
	rc = vmx_parse(t, n, path, out);
	free(t);
	return rc;
}

int vmx_true(const char *v)
{
	return v && (!strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
		     !strcmp(v, "1"));
}

/* ---- VMDK descriptors ---- */

void vmdk_desc_free(struct vmdk_desc *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->next; i++)
		free(d->ext[i].file);
	free(d->ext);
	free(d->text);
	free(d->parent_hint);
	memset(d, 0, sizeof *d);
}

static int parse_hex32(const char *s, size_t n, uint32_t *out)
{
	uint64_t v = 0;
	if (!n || n > 8)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int h = hexval(s[i]);
		if (h < 0)
			return -1;
		v = v * 16 + (uint64_t)h;
	}
	*out = (uint32_t)v;
	return 0;
}

/* value of a descriptor line "key = value" or "key="value"" */
static void unquote(const char **v0, const char **v1)
{
	while (*v0 < *v1 && (**v0 == ' ' || **v0 == '\t'))
		(*v0)++;
	while (*v1 > *v0 && ((*v1)[-1] == ' ' || (*v1)[-1] == '\t'))
		(*v1)--;
	if (*v1 - *v0 >= 2 && **v0 == '"' && (*v1)[-1] == '"') {
		(*v0)++;
		(*v1)--;
	}
}

int vmdk_desc_parse(const char *text, size_t len, const char *what,
		    struct vmdk_desc *out)
{
	size_t pos = 0, lineno = 0;
	memset(out, 0, sizeof *out);
	if (len > VMDK_MAX_DESC)
		return vmb_error_set(VMB_EFORMAT, "%s: descriptor larger than "
				     "%u bytes", what, VMDK_MAX_DESC);
	out->text = dupn(text, len);
	if (!out->text)
		return VMB_ENOMEM;
	while (pos < len) {
		const char *ln = text + pos, *nl = memchr(ln, '\n', len - pos);
		const char *e, *s, *eq;
		size_t n = nl ? (size_t)(nl - ln) : len - pos;
		pos += n + (nl ? 1 : 0);
		if (++lineno > VMX_MAX_LINES)
			goto bad;
		e = ln + n;
		if (e > ln && e[-1] == '\r')
			e--;
		for (s = ln; s < e && (*s == ' ' || *s == '\t'); s++)
			;
		if (s == e || *s == '#')
			continue;
		if ((e - s > 3 && !strncmp(s, "RW ", 3)) ||
		    (e - s > 7 && !strncmp(s, "RDONLY ", 7)) ||
		    (e - s > 9 && !strncmp(s, "NOACCESS ", 9))) {
			/* ACCESS SECTORS TYPE ["FILE" [OFFSET]] */
			struct vmdk_extent x, *g;
			const char *p = strchr(s, ' ') + 1, *q;
			char *end;
			uint64_t sec;
			memset(&x, 0, sizeof x);
			if (out->next >= VMDK_MAX_EXTENTS)
				goto bad;
			errno = 0;
			sec = strtoull(p, &end, 10);
			if (end == p || errno || end >= e || *end != ' ' ||
			    sec > (UINT64_C(1) << 41))
				goto bad;
			p = end + 1;
			for (q = p; q < e && *q != ' '; q++)
				;
			if (q == p || (size_t)(q - p) >= sizeof x.type)
				goto bad;
			memcpy(x.type, p, (size_t)(q - p));
			x.sectors = sec;
			if (q < e) {
				const char *f0 = q + 1, *f1;
				if (f0 >= e || *f0 != '"')
					goto bad;
				f1 = memchr(f0 + 1, '"', (size_t)(e - f0 - 1));
				if (!f1 || f1 == f0 + 1)
					goto bad;
				x.file = dupn(f0 + 1, (size_t)(f1 - f0 - 1));
				if (!x.file)
					goto bad;
			} else if (strcmp(x.type, "ZERO")) {
				goto bad;
			}
			g = realloc(out->ext, (out->next + 1) * sizeof *g);
			if (!g) {
				free(x.file);
				goto bad;
			}
			out->ext = g;
			g[out->next++] = x;
			continue;
		}
		eq = memchr(s, '=', (size_t)(e - s));
		if (!eq)
			continue; /* tolerated, as VMware does */
		{
			const char *k1 = eq, *v0 = eq + 1, *v1 = e;
			size_t kl;
			while (k1 > s && (k1[-1] == ' ' || k1[-1] == '\t'))
				k1--;
			kl = (size_t)(k1 - s);
			unquote(&v0, &v1);
			if (kl == 3 && !strncasecmp(s, "CID", 3)) {
				if (parse_hex32(v0, (size_t)(v1 - v0), &out->cid))
					goto badcid;
				out->has_cid = 1;
			} else if (kl == 9 && !strncasecmp(s, "parentCID", 9)) {
				if (parse_hex32(v0, (size_t)(v1 - v0),
						&out->parent_cid))
					goto badcid;
				out->has_parent_cid = 1;
			} else if (kl == 10 && !strncasecmp(s, "createType", 10)) {
				if ((size_t)(v1 - v0) >= sizeof out->create_type)
					goto bad;
				memcpy(out->create_type, v0, (size_t)(v1 - v0));
				out->create_type[v1 - v0] = 0;
			} else if (kl == 18 &&
				   !strncasecmp(s, "parentFileNameHint", 18)) {
				free(out->parent_hint);
				out->parent_hint = v1 > v0 ?
					dupn(v0, (size_t)(v1 - v0)) : NULL;
			}
		}
	}
	if (!out->next) {
		vmdk_desc_free(out);
		return vmb_error_set(VMB_EFORMAT, "%s: VMDK descriptor without "
				     "extents", what);
	}
	return 0;
badcid:
	vmdk_desc_free(out);
	return vmb_error_set(VMB_EFORMAT, "%s: line %zu: CID/parentCID is not "
			     "8 hex digits", what, lineno);
bad:
	vmdk_desc_free(out);
	return vmb_error_set(VMB_EFORMAT, "%s: line %zu of the VMDK descriptor "
			     "is malformed", what, lineno);
}

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int vmdk_desc_load(const char *path, struct vmdk_desc *out)
{
	uint8_t h[512];
	struct stat st;
	ssize_t got;
	int fd, rc;
	memset(out, 0, sizeof *out);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmb_error_set(errno == ENOENT ? VMB_ENOTFOUND : VMB_EIO,
				     "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return vmb_error_set(VMB_EFORMAT, "%s is not a regular file",
				     path);
	}
	got = pread(fd, h, sizeof h, 0);
	if (got >= 64 && !memcmp(h, "KDMV", 4)) {
		uint64_t off = le64(h + 28), sz = le64(h + 36);
		char *t;
		if (!off || !sz) {
			close(fd);
			return vmb_error_set(VMB_EFORMAT, "%s: a sparse extent "
					     "without a descriptor (open its "
					     "descriptor file instead)", path);
		}
		if (sz > VMDK_MAX_DESC / 512 || off > (UINT64_C(1) << 40) ||
		    (off + sz) * 512 > (uint64_t)st.st_size) {
			close(fd);
			return vmb_error_set(VMB_EFORMAT, "%s: embedded "
					     "descriptor out of bounds", path);
		}
		t = calloc(1, (size_t)sz * 512 + 1);
		if (!t) {
			close(fd);
			return VMB_ENOMEM;
		}
		got = pread(fd, t, (size_t)sz * 512, (off_t)(off * 512));
		close(fd);
		if (got != (ssize_t)(sz * 512)) {
			free(t);
			return vmb_error_set(VMB_EIO, "cannot read %s", path);
		}
		rc = vmdk_desc_parse(t, strlen(t), path, out);
		free(t);
		if (!rc) {
			out->embedded = 1;
			out->text_off = off * 512;
			out->text_max = sz * 512;
		}
		return rc;
	}
	close(fd);
	if (got >= 4 && !memcmp(h, "COWD", 4))
		return vmb_error_set(VMB_ENOTSUP, "%s: this VMDK kind is not "
				     "supported", path);
	{
		char *t = NULL;
		size_t n = 0;
		rc = read_small(path, VMDK_MAX_DESC, &t, &n);
		if (rc) {
			vmb_error_set(VMB_EFORMAT, "%s is neither a VMDK "
				      "descriptor nor a sparse VMDK", path);
			return VMB_EFORMAT;
		}
		/* a descriptor may be NUL-padded (QEMU pads it to a sector) */
		if (memchr(t, 0, n)) {
			size_t z = (size_t)((char *)memchr(t, 0, n) - t);
			for (size_t i = z; i < n; i++)
				if (t[i])
					z = SIZE_MAX;
			if (z == SIZE_MAX) {
				free(t);
				return vmb_error_set(VMB_EFORMAT, "%s is neither "
						     "a VMDK descriptor nor a "
						     "sparse VMDK", path);
			}
			n = z;
		}
		if (!strstr(t, "createType")) {
			free(t);
			return vmb_error_set(VMB_EFORMAT, "%s is neither a VMDK "
					     "descriptor nor a sparse VMDK",
					     path);
		}
		rc = vmdk_desc_parse(t, n, path, out);
		free(t);
		return rc;
	}
}

int vmdk_desc_rewrite(const char *path, int set_cid, uint32_t cid,
		      uint32_t parent_cid, const char *hint,
		      const char *(*map_ext)(const char *file, void *payload),
		      void *payload)
{
	struct vmdk_desc d;
	size_t cap, n = 0, pos = 0, len;
	char *o;
	int rc = vmdk_desc_load(path, &d);
	if (rc)
		return rc;
	len = strlen(d.text);
	cap = len * 2 + 4096;
	o = malloc(cap);
	if (!o) {
		vmdk_desc_free(&d);
		return VMB_ENOMEM;
	}
	while (pos < len) {
		const char *ln = d.text + pos, *nl = memchr(ln, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - ln) : len - pos;
		char line[8192];
		pos += ll + (nl ? 1 : 0);
		if (ll >= sizeof line - 1 || n + sizeof line * 2 > cap) {
			char *g = realloc(o, cap = cap * 2 + ll * 2 + 16384);
			if (!g) {
				free(o);
				vmdk_desc_free(&d);
				return VMB_ENOMEM;
			}
			o = g;
		}
		if (ll >= sizeof line - 1) {
			memcpy(o + n, ln, ll);
			n += ll;
			o[n++] = '\n';
			continue;
		}
		memcpy(line, ln, ll);
		line[ll] = 0;
		if (set_cid && !strncasecmp(line, "CID=", 4)) {
			n += (size_t)snprintf(o + n, cap - n, "CID=%08x\n", cid);
		} else if (set_cid && !strncasecmp(line, "parentCID=", 10)) {
			n += (size_t)snprintf(o + n, cap - n, "parentCID=%08x\n",
					     parent_cid);
		} else if (hint && !strncasecmp(line, "parentFileNameHint", 18)) {
			n += (size_t)snprintf(o + n, cap - n,
					      "parentFileNameHint=\"%s\"\n", hint);
		} else if (map_ext && (!strncmp(line, "RW ", 3) ||
				       !strncmp(line, "RDONLY ", 7) ||
				       !strncmp(line, "NOACCESS ", 9)) &&
			   strchr(line, '"')) {
			char *q0 = strchr(line, '"'), *q1 = strchr(q0 + 1, '"');
			const char *to;
			if (q1) {
				*q1 = 0;
				to = map_ext(q0 + 1, payload);
				*q0 = 0;
				n += (size_t)snprintf(o + n, cap - n,
						      "%s\"%s\"%s\n", line,
						      to ? to : q0 + 1, q1 + 1);
			} else {
				n += (size_t)snprintf(o + n, cap - n, "%s\n", line);
			}
		} else {
			n += (size_t)snprintf(o + n, cap - n, "%s\n", line);
		}
	}
	if (d.embedded) {
		int fd;
		if (n >= d.text_max) {
			rc = vmb_error_set(VMB_EFORMAT, "%s: the rewritten "
					   "descriptor does not fit its %llu "
					   "bytes", path,
					   (unsigned long long)d.text_max);
			goto out;
		}
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = vmb_error_set(VMB_EIO, "%s: %s", path,
					   strerror(errno));
			goto out;
		}
		{
			char *pad = calloc(1, (size_t)d.text_max);
			if (!pad) {
				close(fd);
				rc = VMB_ENOMEM;
				goto out;
			}
			memcpy(pad, o, n);
			if (pwrite(fd, pad, (size_t)d.text_max,
				   (off_t)d.text_off) != (ssize_t)d.text_max ||
			    fsync(fd) != 0)
				rc = vmb_error_set(VMB_EIO, "cannot write %s: %s",
						   path, strerror(errno));
			free(pad);
		}
		close(fd);
	} else {
		char tmp[4200];
		FILE *fp;
		snprintf(tmp, sizeof tmp, "%s.vmbtmp", path);
		fp = fopen(tmp, "wbx");
		if (!fp || fwrite(o, 1, n, fp) != n || fflush(fp) ||
		    fsync(fileno(fp))) {
			rc = vmb_error_set(VMB_EIO, "cannot write %s: %s", tmp,
					   strerror(errno));
			if (fp)
				fclose(fp);
			unlink(tmp);
			goto out;
		}
		fclose(fp);
		if (rename(tmp, path) != 0) {
			rc = vmb_error_set(VMB_EIO, "cannot rename %s: %s", tmp,
					   strerror(errno));
			unlink(tmp);
		}
	}
out:
	free(o);
	vmdk_desc_free(&d);
	return rc;
}
