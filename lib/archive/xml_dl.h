/*
 * libxml2, loaded at run time on first use, as libarchive is
 * (archive_dl.h): Debian's libxml2 pulls in ICU (a 30 MiB data library)
 * and libstdc++, which every other vmb command would pay for at start-up.
 * Only the OVF reader of `vmb import`, the configuration reader of
 * `vmb export --ova` and the VirtualBox plugin (which compiles this file
 * into its module) need it.  Types come from the headers; each xml*
 * name below is a macro for its table entry once this header is included
 * (after the libxml2 headers), and vmb_xml_load() must succeed first.
 *
 * The helpers at the end are the one way untrusted XML is read here: no
 * network, no document type declaration (and with it no entity
 * definitions, internal or external), a size and a node budget.
 */
#ifndef VMB_XML_DL_H
#define VMB_XML_DL_H

#include <stddef.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#define VMB_XML_SONAME "libxml2.so.2"
#define VMB_XML_PACKAGE "libxml2"

#define VMB_XML_FUNCS(X)      \
	X(xmlInitParser)          \
	X(xmlReadMemory)          \
	X(xmlFreeDoc)             \
	X(xmlGetIntSubset)        \
	X(xmlDocGetRootElement)   \
	X(xmlGetLastError)        \
	X(xmlSetProp)             \
	X(xmlUnsetProp)           \
	X(xmlUnlinkNode)          \
	X(xmlFreeNode)            \
	X(xmlDocDump)

struct vmb_xml_fn {
#define VMB_XML_FN_MEMBER(f) __typeof__(f) *p_##f;
	VMB_XML_FUNCS(VMB_XML_FN_MEMBER)
#undef VMB_XML_FN_MEMBER
};

extern struct vmb_xml_fn vmb_xml_fn;

/* Load libxml2 once per process: 0, or VMB_ENOTSUP "<what> needs
 * libxml2 (libxml2.so.2): <why>; install the libxml2 package". */
int vmb_xml_load(const char *what);

/*
 * Parse @p len bytes of untrusted XML (loading libxml2 first): no
 * network, entities left unexpanded, a document with a DTD refused,
 * at most @p max_len bytes and @p max_nodes nodes (0: no node limit;
 * libxml2 itself refuses nesting deeper than 256).  Errors name the
 * document as @p what ("the descriptor is not well-formed XML (line
 * 3)").  @param[out] out  free with xmlFreeDoc()
 */
int vmb_xml_parse(const char *text, size_t len, size_t max_len,
		  unsigned max_nodes, const char *what, xmlDoc **out);

/* Is @p n an element of local name @p local (any namespace)? */
int vmb_xml_is(const xmlNode *n, const char *local);
/* The first element child of @p n named @p local, or NULL. */
const xmlNode *vmb_xml_child(const xmlNode *n, const char *local);
/* The text of a node's children (an attribute's value, an element's
 * text), malloc'd (free()); NULL when out of memory. */
char *vmb_xml_text(const xmlNode *children);
/* An attribute by local name, whatever its namespace prefix, malloc'd;
 * NULL when absent. */
char *vmb_xml_attr(const xmlNode *n, const char *local);

#ifndef VMB_XML_DL_NO_MACROS
#define xmlInitParser (*vmb_xml_fn.p_xmlInitParser)
#define xmlReadMemory (*vmb_xml_fn.p_xmlReadMemory)
#define xmlFreeDoc (*vmb_xml_fn.p_xmlFreeDoc)
#define xmlGetIntSubset (*vmb_xml_fn.p_xmlGetIntSubset)
#define xmlDocGetRootElement (*vmb_xml_fn.p_xmlDocGetRootElement)
#define xmlGetLastError (*vmb_xml_fn.p_xmlGetLastError)
#define xmlSetProp (*vmb_xml_fn.p_xmlSetProp)
#define xmlUnsetProp (*vmb_xml_fn.p_xmlUnsetProp)
#define xmlUnlinkNode (*vmb_xml_fn.p_xmlUnlinkNode)
#define xmlFreeNode (*vmb_xml_fn.p_xmlFreeNode)
#define xmlDocDump (*vmb_xml_fn.p_xmlDocDump)
#endif

#endif
