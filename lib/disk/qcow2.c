/* qcow2: placeholder until the reader/writer lands (probe never matches). */
#include "common/util.h"
#include "format.h"

static int qcow2_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	return 0;
}

static int qcow2_open(const char *path, const vmb_layer_open_options *o,
		     void **layer, vmb_layer_info *info)
{
	return vmb_error_set(VMB_ENOTSUP, "%s: qcow2 is not supported yet", path);
}

static int qcow2_map(void *layer, uint64_t offset, uint64_t length,
		    vmb_extent_fn fn, void *payload)
{
	return VMB_ENOTSUP;
}

static int qcow2_read(void *layer, void *buf, uint64_t offset, size_t length)
{
	return VMB_ENOTSUP;
}

static void qcow2_close(void *layer)
{
}

const vmb_disk_format vmb_disk__qcow2_format = {
	.version = VMB_DISK_FORMAT_VERSION,
	.name = "qcow2",
	.extension = "qcow2",
	.probe = qcow2_probe,
	.open = qcow2_open,
	.map = qcow2_map,
	.read = qcow2_read,
	.close = qcow2_close,
};
