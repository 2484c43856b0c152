/* vmdk: placeholder until the reader/writer lands (probe never matches). */
#include "common/util.h"
#include "format.h"

static int vmdk_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	return 0;
}

static int vmdk_open(const char *path, const vmb_layer_open_options *o,
		     void **layer, vmb_layer_info *info)
{
	return vmb_error_set(VMB_ENOTSUP, "%s: vmdk is not supported yet", path);
}

static int vmdk_map(void *layer, uint64_t offset, uint64_t length,
		    vmb_extent_fn fn, void *payload)
{
	return VMB_ENOTSUP;
}

static int vmdk_read(void *layer, void *buf, uint64_t offset, size_t length)
{
	return VMB_ENOTSUP;
}

static void vmdk_close(void *layer)
{
}

const vmb_disk_format vmb_disk__vmdk_format = {
	.version = VMB_DISK_FORMAT_VERSION,
	.name = "vmdk",
	.extension = "vmdk",
	.probe = vmdk_probe,
	.open = vmdk_open,
	.map = vmdk_map,
	.read = vmdk_read,
	.close = vmdk_close,
};
