/*
 * Fuzz target: the OVF descriptor reader of OVA import (lib/archive/ovf.c).
 * Whatever the input, parsing must end with 0 or an error message, and on
 * success every File has an href and every size is what it says.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "archive/archive_internal.h"
#include "vmbackup/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ovf o;
	int rc = vmb_archive__ovf_parse((const char *)data, size, &o);
	if (rc) {
		if (!vmb_error_message()[0])
			abort();
		return 0;
	}
	for (size_t i = 0; i < o.nfiles; i++)
		if (!o.files[i].href || !o.files[i].href[0])
			abort();
	for (size_t i = 0; i < o.ndisks; i++)
		if (!o.disks[i].has_capacity && o.disks[i].capacity)
			abort();
	vmb_archive__ovf_free(&o);
	return 0;
}
