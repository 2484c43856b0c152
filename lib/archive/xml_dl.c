/* Loads libxml2 at run time: see xml_dl.h. */
#define VMB_XML_DL_NO_MACROS
#include "xml_dl.h"
#include <pthread.h>
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
