/*
 * Reading one index entry's chunk: a whole chunk, or a patch applied to
 * its base (lib/store/index.h).  Restore, the snapshot disk reader and
 * anything else that needs a chunk's bytes go through here.
 */
#include <stdlib.h>
#include <string.h>
#include "common/util.h"
#include "repo_internal.h"

void vmb_repo__prefetch_entry(vmb_repo *r, const vmb_index *ix, uint64_t i)
{
	char name[80];
	if (i >= ix->count || ix->e[i].kind == VMB_CHUNK_ZERO)
		return;
	if (ix->e[i].kind == VMB_CHUNK_PATCH) {
		const vmb_index_patch *p = vmb_index_patch_of(ix, i);
		if (p && !vmb_index_id_is_zero(p->base)) {
			vmb_chunk_name(p->base, name);
			vmb_target_prefetch(r->t, name);
		}
	}
	vmb_chunk_name(ix->e[i].id, name);
	vmb_target_prefetch(r->t, name);
}

int vmb_repo__read_entry(vmb_repo *r, const vmb_index *ix, uint64_t i,
			 ZSTD_DCtx *dctx, uint8_t *out, size_t *len)
{
	const vmb_index_patch *p;
	uint32_t want = vmb_index_chunk_len(ix, i);
	uint64_t off = i * (uint64_t)ix->chunk_size, pbytes;
	uint8_t *data = NULL;
	size_t got = 0;
	int rc;

	*len = 0;
	if (ix->e[i].kind == VMB_CHUNK_ZERO) {
		memset(out, 0, want);
		*len = want;
		return 0;
	}
	if (ix->e[i].kind == VMB_CHUNK_DATA) {
		rc = vmb_repo__get_chunk(r, ix->e[i].id, dctx, out,
					 ix->chunk_size, &got);
		if (!rc && got != want)
			rc = vmb_error_set(VMB_ECORRUPT, "chunk for offset %llu "
					   "has %zu bytes, expected %u",
					   (unsigned long long)off, got, want);
		*len = got;
		return rc;
	}
	p = vmb_index_patch_of(ix, i);
	pbytes = vmb_index_patch_bytes(p);
	if (vmb_index_id_is_zero(p->base)) {
		memset(out, 0, want);
	} else {
		rc = vmb_repo__get_chunk(r, p->base, dctx, out, ix->chunk_size,
					 &got);
		if (rc)
			return vmb_error_prefix("base of the patch for offset "
						"%llu: ", (unsigned long long)off);
		if (got != want)
			return vmb_error_set(VMB_ECORRUPT, "base chunk for offset "
					     "%llu has %zu bytes, expected %u",
					     (unsigned long long)off, got, want);
	}
	if (!(data = vmb_malloc(pbytes ? pbytes : 1)))
		return VMB_ENOMEM;
	rc = vmb_repo__get_chunk(r, ix->e[i].id, dctx, data, pbytes, &got);
	if (rc)
		vmb_error_prefix("patch for offset %llu: ",
				 (unsigned long long)off);
	else if (got != pbytes)
		rc = vmb_error_set(VMB_ECORRUPT, "patch for offset %llu has %zu "
				   "bytes, expected %llu",
				   (unsigned long long)off, got,
				   (unsigned long long)pbytes);
	if (!rc) {
		const uint8_t *src = data;
		for (uint32_t k = 0; k < p->nruns; k++) {
			memcpy(out + p->runs[k].off, src, p->runs[k].len);
			src += p->runs[k].len;
		}
		*len = want;
	}
	free(data);
	return rc;
}
