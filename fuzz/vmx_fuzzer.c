/*
 * Fuzz target: the VMware plugin's readers (plugins/vmware/vmx.c).  The
 * input is parsed as a .vmx / .vmsd file (key = "value" lines, |XX
 * escapes) and, when it parses, written back and parsed again (the writer
 * must give what the reader reads: same entries, same values); it is also
 * parsed as a VMDK descriptor.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "vmbackup.h"
#include "../plugins/vmware/vmx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmx x, y;
	struct vmdk_desc d;
	if (vmx_parse((const char *)data, size, "fuzz", &x) == 0) {
		size_t n;
		char *t = vmx_write(&x, &n);
		if (t) {
			if (vmx_parse(t, n, "fuzz2", &y) != 0)
				abort();
			for (size_t i = 0; i < x.n; i++)
				if (x.l[i].key &&
				    strcmp(vmx_get(&y, x.l[i].key),
					   vmx_get(&x, x.l[i].key)))
					abort();
			vmx_free(&y);
			free(t);
		}
		vmx_free(&x);
	}
	if (vmdk_desc_parse((const char *)data, size, "fuzz", &d) == 0)
		vmdk_desc_free(&d);
	vmb_error_clear();
	return 0;
}
