/* Loads libxml2 at run time and reads untrusted XML: see xml_dl.h. */
#define VMB_XML_DL_NO_MACROS
#include "xml_dl.h"
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup/common.h"
#include "common/dynlib.h"

struct vmb_xml_fn vmb_xml_fn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_failed;
static char load_error[512];

static void load(void)
{
	static const char *const names[] = {
#define VMB_XML_FN_NAME(f) #f,
		VMB_XML_FUNCS(VMB_XML_FN_NAME)
#undef VMB_XML_FN_NAME
	};
	void *p[sizeof names / sizeof names[0]];
	struct vmb_xml_fn t;
	size_t i = 0;

	load_failed = 1;
	if (vmb_dynlib_open(VMB_XML_SONAME, names, p,
			    sizeof names / sizeof names[0], load_error,
			    sizeof load_error))
		return;
#define VMB_XML_FN_SET(f) t.p_##f = (__typeof__(t.p_##f))p[i++];
	VMB_XML_FUNCS(VMB_XML_FN_SET)
#undef VMB_XML_FN_SET
	t.p_xmlInitParser();
	vmb_xml_fn = t;
	load_failed = 0;
}

int vmb_xml_load(const char *what)
{
	if (pthread_once(&load_once, load) != 0 || load_failed)
		return vmb_error_set(VMB_ENOTSUP, "%s needs libxml2 (%s): %s; "
				     "install the %s package", what,
				     VMB_XML_SONAME, load_failed ? load_error
				     : "pthread_once failed", VMB_XML_PACKAGE);
	return 0;
}

/* Count every node, without recursion; stop past @max. */
static unsigned count_nodes(const xmlNode *root, unsigned max)
{
	unsigned n = 0;
	const xmlNode *c = root;
	while (c && n <= max) {
		n++;
		for (const xmlAttr *a = c->type == XML_ELEMENT_NODE ?
		     c->properties : NULL; a && n <= max; a = a->next)
			n++;
		if (c->children) {
			c = c->children;
			continue;
		}
		while (c && c != root && !c->next)
			c = c->parent;
		if (!c || c == root)
			break;
		c = c->next;
	}
	return n;
}

int vmb_xml_parse(const char *text, size_t len, size_t max_len,
		  unsigned max_nodes, const char *what, xmlDoc **out)
{
	xmlDoc *doc;
	*out = NULL;
	if (vmb_xml_load(what))
		return vmb_error_code();
	if (len > INT_MAX || (max_len && len > max_len))
		return vmb_error_set(VMB_EINVAL, "%s is too large (%zu bytes)",
				     what, len);
	doc = vmb_xml_fn.p_xmlReadMemory(text, (int)len, "document.xml",
					 NULL, XML_PARSE_NONET |
					 XML_PARSE_NOERROR |
					 XML_PARSE_NOWARNING |
					 XML_PARSE_NOCDATA);
	if (!doc) {
		const xmlError *e = vmb_xml_fn.p_xmlGetLastError();
		return vmb_error_set(VMB_EINVAL, "%s is not well-formed XML "
				     "(line %d)", what, e ? e->line : 0);
	}
	if (vmb_xml_fn.p_xmlGetIntSubset(doc)) {
		vmb_xml_fn.p_xmlFreeDoc(doc);
		return vmb_error_set(VMB_EINVAL, "%s has a document type "
				     "declaration (entities are refused)",
				     what);
	}
	if (max_nodes && count_nodes(vmb_xml_fn.p_xmlDocGetRootElement(doc),
				     max_nodes) > max_nodes) {
		vmb_xml_fn.p_xmlFreeDoc(doc);
		return vmb_error_set(VMB_EINVAL, "%s has more than %u XML "
				     "nodes", what, max_nodes);
	}
	*out = doc;
	return 0;
}

int vmb_xml_is(const xmlNode *n, const char *local)
{
	return n && n->type == XML_ELEMENT_NODE &&
	       !strcmp((const char *)n->name, local);
}

const xmlNode *vmb_xml_child(const xmlNode *n, const char *local)
{
	for (const xmlNode *c = n ? n->children : NULL; c; c = c->next)
		if (vmb_xml_is(c, local))
			return c;
	return NULL;
}

/* Predefined entities are already replaced, and documents with a DTD
 * (other entities) are refused, so text and CDATA nodes are all. */
char *vmb_xml_text(const xmlNode *children)
{
	size_t len = 0;
	char *s;
	for (const xmlNode *c = children; c; c = c->next)
		if ((c->type == XML_TEXT_NODE ||
		     c->type == XML_CDATA_SECTION_NODE) && c->content)
			len += strlen((const char *)c->content);
	s = malloc(len + 1);
	if (!s)
		return NULL;
	len = 0;
	for (const xmlNode *c = children; c; c = c->next)
		if ((c->type == XML_TEXT_NODE ||
		     c->type == XML_CDATA_SECTION_NODE) && c->content) {
			size_t k = strlen((const char *)c->content);
			memcpy(s + len, c->content, k);
			len += k;
		}
	s[len] = 0;
	return s;
}

char *vmb_xml_attr(const xmlNode *n, const char *local)
{
	for (const xmlAttr *a = n ? n->properties : NULL; a; a = a->next)
		if (!strcmp((const char *)a->name, local))
			return vmb_xml_text(a->children);
	return NULL;
}
