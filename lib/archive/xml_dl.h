/*
 * libxml2, loaded at run time on first use, as libarchive is
 * (archive_dl.h): Debian's libxml2 pulls in ICU (a 30 MiB data library)
 * and libstdc++, which every other vmb command would pay for at start-up.
 * Only the OVF reader of `vmb import` and the configuration reader of
 * `vmb export --ova` need it.  Types come from the headers; each xml*
 * name below is a macro for its table entry once this header is included
 * (after the libxml2 headers), and vmb_xml_load() must succeed first.
 */
#ifndef VMB_XML_DL_H
#define VMB_XML_DL_H

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
	X(xmlGetLastError)

struct vmb_xml_fn {
#define VMB_XML_FN_MEMBER(f) __typeof__(f) *p_##f;
	VMB_XML_FUNCS(VMB_XML_FN_MEMBER)
#undef VMB_XML_FN_MEMBER
};

extern struct vmb_xml_fn vmb_xml_fn;

/* Load libxml2 once per process: 0, or VMB_ENOTSUP "<what> needs
 * libxml2 (libxml2.so.2): <why>; install the libxml2 package". */
int vmb_xml_load(const char *what);

#ifndef VMB_XML_DL_NO_MACROS
#define xmlInitParser (*vmb_xml_fn.p_xmlInitParser)
#define xmlReadMemory (*vmb_xml_fn.p_xmlReadMemory)
#define xmlFreeDoc (*vmb_xml_fn.p_xmlFreeDoc)
#define xmlGetIntSubset (*vmb_xml_fn.p_xmlGetIntSubset)
#define xmlDocGetRootElement (*vmb_xml_fn.p_xmlDocGetRootElement)
#define xmlGetLastError (*vmb_xml_fn.p_xmlGetLastError)
#endif

#endif
