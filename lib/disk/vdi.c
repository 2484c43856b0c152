/* vdi: placeholder until the reader/writer lands (probe never matches). */
#include "common/util.h"
#include "format.h"

static int vdi_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	return 0;
}

static int vdi_open(const char *path, const vmb_layer_open_options *o,
		     void **layer, vmb_layer_info *info)
{
	return vmb_error_set(VMB_ENOTSUP, "%s: vdi is not supported yet", path);
}

static int vdi_map(void *layer, uint64_t offset, uint64_t length,
		    vmb_extent_fn fn, void *payload)
{
	return VMB_ENOTSUP;
}

static int vdi_read(void *layer, void *buf, uint64_t offset, size_t length)
{
	return VMB_ENOTSUP;
}

static void vdi_close(void *layer)
{
}

const vmb_disk_format vmb_disk__vdi_format = {
	.version = VMB_DISK_FORMAT_VERSION,
	.name = "vdi",
	.extension = "vdi",
	.probe = vdi_probe,
	.open = vdi_open,
	.map = vdi_map,
	.read = vdi_read,
	.close = vdi_close,
};
