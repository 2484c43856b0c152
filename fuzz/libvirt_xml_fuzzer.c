/*
 * Fuzz target: the libvirt plugin's domain XML reader and the rewrite that
 * defines a restored domain (plugins/libvirt/xml.c).  The XML comes from
 * libvirt or from a snapshot's configuration: hostile.  An accepted domain
 * must have a name and plain, unique disk names; a rewrite of it must
 * parse again, with the new name and every restored disk at its new path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../plugins/libvirt/lv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lv_domain_xml x, y;
	char *xml, *out = NULL;
	if (size > (1u << 20))
		return 0;
	xml = malloc(size + 1);
	if (!xml)
		return 0;
	memcpy(xml, data, size);
	xml[size] = 0;
	if (lv_xml_parse(xml, &x) == 0) {
		vmb_hv_define_disk dd[LV_MAX_DISKS];
		vmb_hv_define_request req;
		if (!x.name || !*x.name || x.ndisks > LV_MAX_DISKS)
			abort();
		for (size_t i = 0; i < x.ndisks; i++) {
			if (!x.disks[i].target || !*x.disks[i].target ||
			    strchr(x.disks[i].target, '/'))
				abort();
			for (size_t k = 0; k < i; k++)
				if (!strcmp(x.disks[i].target, x.disks[k].target))
					abort();
			dd[i].name = x.disks[i].target;
			dd[i].path = "/restored/disk.qcow2";
			dd[i].format = "qcow2";
		}
		memset(&req, 0, sizeof req);
		req.struct_size = sizeof req;
		req.config_format = "libvirt-xml";
		req.config = xml;
		req.name = "restored-copy";
		req.dir = "/restored";
		req.ndisks = x.ndisks;
		req.disks = dd;
		if (lv_xml_rewrite(&req, &out) == 0) {
			if (lv_xml_parse(out, &y) != 0)
				abort();
			if (strcmp(y.name, "restored-copy") != 0 || y.uuid ||
			    y.ndisks != x.ndisks)
				abort();
			for (size_t i = 0; i < y.ndisks; i++)
				if (!y.disks[i].path ||
				    strcmp(y.disks[i].path, "/restored/disk.qcow2"))
					abort();
			lv_xml_free(&y);
			free(out);
		}
		lv_xml_free(&x);
	}
	vmb_error_clear();
	free(xml);
	return 0;
}
