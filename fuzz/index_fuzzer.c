/*
 * Fuzz target: the chunk index decoder (lib/store/index.c).  An accepted
 * index must be self-consistent, and encoding then decoding it again must
 * give the same index.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "store/index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmb_index ix, again;
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t n;

	if (vmb_index_decode(data, size, "fuzz", &ix) != 0) {
		if (ix.e || ix.count)
			abort(); /* a refused index holds nothing */
		return 0;
	}
	if (vmb_index_count(ix.disk_size, ix.chunk_size, &n) != 0 ||
	    n != ix.count ||
	    size != VMB_INDEX_HEADER_BYTES + ix.count * VMB_INDEX_ENTRY_BYTES ||
	    ix.chunk_size == 0 || (ix.chunk_size & (ix.chunk_size - 1)))
		abort();
	uint64_t total = 0;
	for (uint64_t i = 0; i < ix.count; i++) {
		if (ix.e[i].kind > VMB_CHUNK_ZERO)
			abort();
		uint32_t cl = vmb_index_chunk_len(&ix, i);
		if (cl == 0 || cl > ix.chunk_size)
			abort();
		total += cl;
	}
	if (total != ix.disk_size)
		abort();
	if (vmb_index_encode(&ix, &buf, &len) == 0) {
		if (len != size || vmb_index_decode(buf, len, "again", &again))
			abort();
		if (again.count != ix.count || again.disk_size != ix.disk_size ||
		    again.chunk_size != ix.chunk_size)
			abort();
		for (uint64_t i = 0; i < ix.count; i++) {
			if (again.e[i].kind != ix.e[i].kind)
				abort();
			if (ix.e[i].kind == VMB_CHUNK_DATA &&
			    (memcmp(again.e[i].id, ix.e[i].id, 32) ||
			     memcmp(again.e[i].fp, ix.e[i].fp, 16)))
				abort();
		}
		vmb_index_free(&again);
		free(buf);
	}
	vmb_index_free(&ix);
	return 0;
}
