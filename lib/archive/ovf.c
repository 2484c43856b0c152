/*
 * The OVF descriptor of an OVA, read with libxml2: the VirtualSystem's id
 * or name, the References/File list (href, id, size) and the DiskSection's
 * disks (fileRef, capacity in bytes).  The descriptor comes from an
 * untrusted archive: no network, no DTD (a document type declaration, and
 * with it every entity definition, is refused outright), a node budget,
 * and every number parsed with overflow checks.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup/common.h"
#include "common/util.h"
#include "archive_internal.h"
#include "xml_dl.h"

#define OVF_MAX_NODES 200000u /* elements walked before giving up */
#define OVF_MAX_FILES 4096u   /* References/File and Disk entries */

static int is(const xmlNode *n, const char *local)
{
	return n->type == XML_ELEMENT_NODE &&
	       !strcmp((const char *)n->name, local);
}

/* The text of a node's children (an attribute's value, an element's
 * text), without libxml2's allocator: predefined entities are already
 * replaced, and documents with a DTD (other entities) are refused. */
static char *text_of(const xmlNode *children)
{
	vmb_buf b;
	vmb_buf_init(&b);
	for (const xmlNode *c = children; c; c = c->next)
		if ((c->type == XML_TEXT_NODE ||
		     c->type == XML_CDATA_SECTION_NODE) && c->content)
			vmb_buf_puts(&b, (const char *)c->content);
	if (b.failed) {
		vmb_buf_free(&b);
		return NULL;
	}
	if (!b.data)
		return vmb_strdup("");
	return vmb_buf_detach(&b);
}

/* An attribute by local name, whatever its namespace prefix. */
static char *attr(const xmlNode *n, const char *local)
{
	for (const xmlAttr *a = n->properties; a; a = a->next)
		if (!strcmp((const char *)a->name, local))
			return text_of(a->children);
	return NULL;
}

/* A decimal without sign, spaces or overflow. */
static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/*
 * ovf:capacityAllocationUnits as DSP0004 programmatic units ("byte",
 * "byte * 2^30", "byte * 10^3") or the older names some tools write
 * ("KiloBytes", "MegaBytes", "GigaBytes").  @return the multiplier, 0 if
 * unknown.
 */
static uint64_t unit_bytes(const char *u)
{
	char base[8];
	unsigned b, e;
	uint64_t m = 1;
	if (!u || !*u || !strcmp(u, "byte"))
		return 1;
	if (!strcmp(u, "KiloBytes"))
		return 1024;
	if (!strcmp(u, "MegaBytes"))
		return 1024 * 1024;
	if (!strcmp(u, "GigaBytes"))
		return 1024ull * 1024 * 1024;
	if (sscanf(u, "byte * %7[0-9]^%u", base, &e) != 2)
		return 0;
	b = (unsigned)strtoul(base, NULL, 10);
	if ((b != 2 && b != 10) || e > 60)
		return 0;
	while (e--) {
		if (m > UINT64_MAX / b)
			return 0;
		m *= b;
	}
	return m;
}

void vmb_archive__ovf_free(struct ovf *o)
{
	free(o->vm);
	for (size_t i = 0; i < o->nfiles; i++) {
		free(o->files[i].id);
		free(o->files[i].href);
	}
	free(o->files);
	for (size_t i = 0; i < o->ndisks; i++) {
		free(o->disks[i].id);
		free(o->disks[i].file_ref);
	}
	free(o->disks);
	memset(o, 0, sizeof *o);
}

struct walk {
	struct ovf *o;
	unsigned nodes;
	char *vs_id, *vs_name;
	int rc;
};

static int add_file(struct walk *w, const xmlNode *n)
{
	struct ovf *o = w->o;
	struct ovf_file *f;
	char *size;
	if (o->nfiles >= OVF_MAX_FILES)
		return vmb_error_set(VMB_EINVAL, "more than %u files in "
				     "References", OVF_MAX_FILES);
	f = vmb_realloc(o->files, (o->nfiles + 1) * sizeof *f);
	if (!f)
		return VMB_ENOMEM;
	o->files = f;
	f += o->nfiles;
	memset(f, 0, sizeof *f);
	f->href = attr(n, "href");
	f->id = attr(n, "id");
	o->nfiles++;
	if (!f->href || !*f->href)
		return vmb_error_set(VMB_EINVAL, "a References/File has no "
				     "ovf:href");
	if ((size = attr(n, "size")) != NULL) {
		int bad = parse_u64(size, &f->size);
		free(size);
		if (bad)
			return vmb_error_set(VMB_EINVAL, "the ovf:size of %s "
					     "is not a byte count", f->href);
		f->has_size = 1;
	}
	return 0;
}

static int add_disk(struct walk *w, const xmlNode *n)
{
	struct ovf *o = w->o;
	struct ovf_disk *d;
	char *cap, *units;
	uint64_t v, m;
	if (o->ndisks >= OVF_MAX_FILES)
		return vmb_error_set(VMB_EINVAL, "more than %u disks in "
				     "DiskSection", OVF_MAX_FILES);
	d = vmb_realloc(o->disks, (o->ndisks + 1) * sizeof *d);
	if (!d)
		return VMB_ENOMEM;
	o->disks = d;
	d += o->ndisks;
	memset(d, 0, sizeof *d);
	d->id = attr(n, "diskId");
	d->file_ref = attr(n, "fileRef");
	o->ndisks++;
	cap = attr(n, "capacity");
	if (!cap)
		return 0;
	units = attr(n, "capacityAllocationUnits");
	/* "${prop}": set at deployment, nothing to check against */
	if (cap[0] == '$') {
		free(cap);
		free(units);
		return 0;
	}
	m = unit_bytes(units);
	if (parse_u64(cap, &v) || !m || v > UINT64_MAX / m) {
		int rc = vmb_error_set(VMB_EINVAL, "disk %s: ovf:capacity "
				       "'%.40s' in units '%.40s' is not a size",
				       d->id ? d->id : "?", cap,
				       units ? units : "byte");
		free(cap);
		free(units);
		return rc;
	}
	free(cap);
	free(units);
	d->capacity = v * m;
	d->has_capacity = 1;
	return 0;
}

static void walk(struct walk *w, const xmlNode *n, int in_refs, int in_disks)
{
	for (; n && !w->rc; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (++w->nodes > OVF_MAX_NODES) {
			w->rc = vmb_error_set(VMB_EINVAL, "more than %u "
					      "elements", OVF_MAX_NODES);
			return;
		}
		if (in_refs && is(n, "File"))
			w->rc = add_file(w, n);
		else if (in_disks && is(n, "Disk"))
			w->rc = add_disk(w, n);
		else if (is(n, "VirtualSystem") && !w->vs_id && !w->vs_name) {
			w->vs_id = attr(n, "id");
			if (!w->vs_id || !*w->vs_id) {
				free(w->vs_id);
				w->vs_id = NULL;
				for (const xmlNode *c = n->children; c;
				     c = c->next)
					if (is(c, "Name")) {
						w->vs_name = text_of(c->children);
						break;
					}
			}
		}
		if (w->rc)
			return;
		/* bounded depth: libxml2 refuses documents nested deeper
		 * than 256 levels without XML_PARSE_HUGE */
		walk(w, n->children, is(n, "References"),
		     is(n, "DiskSection"));
	}
}

int vmb_archive__ovf_parse(const char *text, size_t len, struct ovf *o)
{
	struct walk w;
	xmlDoc *doc;
	memset(o, 0, sizeof *o);
	if (vmb_xml_load("reading an OVF descriptor"))
		return vmb_error_code();
	if (len > INT_MAX)
		return vmb_error_set(VMB_EINVAL, "the descriptor is too large");
	doc = xmlReadMemory(text, (int)len, "descriptor.ovf", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR |
			    XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
	if (!doc) {
		const xmlError *e = xmlGetLastError();
		return vmb_error_set(VMB_EINVAL, "the descriptor is not "
				     "well-formed XML (line %d)",
				     e ? e->line : 0);
	}
	if (xmlGetIntSubset(doc)) {
		xmlFreeDoc(doc);
		return vmb_error_set(VMB_EINVAL, "the descriptor has a "
				     "document type declaration (entities are "
				     "refused)");
	}
	memset(&w, 0, sizeof w);
	w.o = o;
	walk(&w, xmlDocGetRootElement(doc), 0, 0);
	xmlFreeDoc(doc);
	if (w.vs_id) {
		o->vm = w.vs_id;
		free(w.vs_name);
	} else {
		o->vm = w.vs_name;
	}
	if (w.rc)
		vmb_archive__ovf_free(o);
	return w.rc;
}
