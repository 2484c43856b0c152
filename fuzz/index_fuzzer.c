/*
 * Fuzz target: the chunk index decoder (lib/store/index.c), patch
 * records (version 2) included.  An accepted index must be
 * self-consistent, and encoding then decoding it again must
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
	    ix.chunk_size == 0 || (ix.chunk_size & (ix.chunk_size - 1)))
		abort();
	uint64_t total = 0, want = VMB_INDEX_HEADER_BYTES +
				   ix.count * VMB_INDEX_ENTRY_BYTES;
	for (uint64_t i = 0; i < ix.count; i++) {
		const vmb_index_patch *p = vmb_index_patch_of(&ix, i);
		if (ix.e[i].kind > VMB_CHUNK_PATCH)
			abort();
		uint32_t cl = vmb_index_chunk_len(&ix, i);
		if (cl == 0 || cl > ix.chunk_size)
			abort();
		total += cl;
		if (!p)
			continue;
		/* runs: increasing, apart, non-empty, inside the chunk */
		if (!p->nruns || p->nruns > VMB_INDEX_MAX_RUNS)
			abort();
		for (uint32_t k = 0; k < p->nruns; k++)
			if (!p->runs[k].len ||
			    (uint64_t)p->runs[k].off + p->runs[k].len > cl ||
			    (k && p->runs[k].off <= p->runs[k - 1].off +
						    p->runs[k - 1].len))
				abort();
		if (vmb_index_patch_bytes(p) > cl)
			abort();
		want += 36 + 8ull * p->nruns;
	}
	if (total != ix.disk_size || size != want)
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
			if (ix.e[i].kind == VMB_CHUNK_PATCH) {
				const vmb_index_patch *p = vmb_index_patch_of(&ix, i);
				const vmb_index_patch *q =
					vmb_index_patch_of(&again, i);
				if (memcmp(again.e[i].id, ix.e[i].id, 32) ||
				    memcmp(p->base, q->base, 32) ||
				    p->nruns != q->nruns ||
				    memcmp(p->runs, q->runs,
					   p->nruns * sizeof *p->runs))
					abort();
			}
		}
		vmb_index_free(&again);
		free(buf);
	}
	vmb_index_free(&ix);
	return 0;
}
