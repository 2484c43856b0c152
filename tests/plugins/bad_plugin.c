/*
 * Plugin modules with one defect each, for tests/cli/cli_plugins.sh: the
 * loader must refuse every one with a line naming it (built once per
 * BAD_* define by tests/CMakeLists.txt).
 */
#include <stddef.h>
#include "vmbackup.h"
#include "vmbackup/sys/hv.h"

static int b_open(const char *uri, void **h) { (void)uri; *h = NULL; return 0; }
static void b_close(void *h) { (void)h; }
static int b_describe(void *h, const char *vm, vmb_hv_vm_info **out)
{
	(void)h; (void)out;
	return vmb_error_set(VMB_ENOTFOUND, "no VM %s here", vm);
}
static int b_begin(void *h, const char *vm, const vmb_hv_backup_options *o,
		   vmb_hv_backup_job **out)
{
	(void)h; (void)vm; (void)o; (void)out;
	return vmb_error_set(VMB_EIO, "cannot begin");
}
static int b_end(void *h, vmb_hv_backup_job *b, int c)
{
	(void)h; (void)b; (void)c;
	return 0;
}

static vmb_hv_plugin plugin = {
	.struct_size = sizeof(vmb_hv_plugin),
	.api_version = VMB_HV_API_VERSION,
	.name = PLUGIN_NAME,
	.version = "1",
	.open = b_open,
	.close = b_close,
	.describe = b_describe,
	.backup_begin = b_begin,
	.backup_end = b_end,
};

#if defined(BAD_NO_ENTRY)
/* no vmb_hv_plugin_init at all */
const vmb_hv_plugin *some_other_name(void);
const vmb_hv_plugin *some_other_name(void) { return &plugin; }
#else
__attribute__((visibility("default")))
const vmb_hv_plugin *vmb_hv_plugin_init(void);
__attribute__((visibility("default")))
const vmb_hv_plugin *vmb_hv_plugin_init(void)
{
#if defined(BAD_VERSION)
	plugin.api_version = 99;
#elif defined(BAD_NO_BEGIN)
	plugin.backup_begin = NULL;
#elif defined(BAD_FEATURE)
	plugin.features = VMB_HV_F_LIST; /* without list() */
#elif defined(BAD_NAME)
	plugin.name = "somethingelse";
#endif
	return &plugin;
}
#endif
