#include <stdlib.h>
#include <string.h>
#include "common/util.h"
#include "index.h"

static const uint8_t magic[4] = { 'V', 'M', 'B', 'I' };

int vmb_index_count(uint64_t disk_size, uint32_t chunk_size, uint64_t *n)
{
	if (!chunk_size)
		return -1;
	*n = disk_size / chunk_size + (disk_size % chunk_size ? 1 : 0);
	return *n > VMB_INDEX_MAX_ENTRIES ? -1 : 0;
}

int vmb_index_alloc(vmb_index *ix, uint64_t disk_size, uint32_t chunk_size)
{
	memset(ix, 0, sizeof *ix);
	if (vmb_index_count(disk_size, chunk_size, &ix->count))
		return vmb_error_set(VMB_EINVAL, "disk of %llu bytes is too "
				     "large for chunks of %u bytes",
				     (unsigned long long)disk_size, chunk_size);
	ix->disk_size = disk_size;
	ix->chunk_size = chunk_size;
	ix->e = vmb_calloc(ix->count ? ix->count : 1, sizeof *ix->e);
	return ix->e ? 0 : VMB_ENOMEM;
}

void vmb_index_free(vmb_index *ix)
{
	if (ix) {
		for (uint32_t i = 0; i < ix->npatches; i++)
			free(ix->patches[i].runs);
		free(ix->patches);
		free(ix->e);
		memset(ix, 0, sizeof *ix);
	}
}

int vmb_index_id_is_zero(const uint8_t id[32])
{
	uint8_t acc = 0;
	for (int i = 0; i < 32; i++)
		acc |= id[i];
	return acc == 0;
}

uint64_t vmb_index_patch_bytes(const vmb_index_patch *p)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < p->nruns; i++)
		n += p->runs[i].len;
	return n;
}

int vmb_index_ids(const vmb_index *ix, uint64_t i, const uint8_t *ids[2])
{
	const vmb_index_entry *e = &ix->e[i];
	if (e->kind == VMB_CHUNK_DATA) {
		ids[0] = e->id;
		return 1;
	}
	if (e->kind == VMB_CHUNK_PATCH) {
		const uint8_t *b = ix->patches[e->patch].base;
		ids[0] = e->id;
		if (vmb_index_id_is_zero(b))
			return 1;
		ids[1] = b;
		return 2;
	}
	return 0;
}

/* Runs valid for a chunk of @len bytes: increasing, apart, non-empty. */
static int runs_valid(const vmb_index_run *r, uint32_t n, uint32_t len)
{
	uint64_t end = 0;
	if (n == 0 || n > VMB_INDEX_MAX_RUNS)
		return 0;
	for (uint32_t i = 0; i < n; i++) {
		if (r[i].len == 0 || (i && r[i].off <= end) ||
		    (uint64_t)r[i].off + r[i].len > len)
			return 0;
		end = (uint64_t)r[i].off + r[i].len;
	}
	return 1;
}

int vmb_index_set_patch(vmb_index *ix, uint64_t i, const uint8_t *base,
			const vmb_index_run *runs, uint32_t nruns)
{
	vmb_index_patch *p;
	if (i >= ix->count || !runs_valid(runs, nruns, vmb_index_chunk_len(ix, i)))
		return vmb_error_set(VMB_EINVAL, "invalid patch for chunk %llu",
				     (unsigned long long)i);
	if (ix->npatches == ix->patch_cap) {
		uint32_t cap = ix->patch_cap ? ix->patch_cap * 2 : 16;
		void *n = realloc(ix->patches, (size_t)cap * sizeof *p);
		if (!n)
			return vmb_error_set(VMB_ENOMEM, "out of memory");
		ix->patches = n;
		ix->patch_cap = cap;
	}
	p = &ix->patches[ix->npatches];
	memset(p, 0, sizeof *p);
	if (base)
		memcpy(p->base, base, 32);
	p->runs = vmb_malloc((size_t)nruns * sizeof *runs);
	if (!p->runs)
		return VMB_ENOMEM;
	memcpy(p->runs, runs, (size_t)nruns * sizeof *runs);
	p->nruns = nruns;
	ix->e[i].kind = VMB_CHUNK_PATCH;
	memset(ix->e[i].fp, 0, 16);
	ix->e[i].patch = ix->npatches++;
	return 0;
}

int vmb_index_copy_entry(vmb_index *dst, const vmb_index *src, uint64_t i)
{
	const vmb_index_patch *p = vmb_index_patch_of(src, i);
	if (p) {
		int rc = vmb_index_set_patch(dst, i, p->base, p->runs,
					     p->nruns);
		if (!rc)
			memcpy(dst->e[i].id, src->e[i].id, 32);
		return rc;
	}
	dst->e[i] = src->e[i];
	dst->e[i].patch = 0;
	return 0;
}

int vmb_index_encode(const vmb_index *ix, uint8_t **out, size_t *len)
{
	size_t n = VMB_INDEX_HEADER_BYTES +
		   (size_t)ix->count * VMB_INDEX_ENTRY_BYTES;
	uint64_t npatch = 0;
	uint8_t *b, *p;
	for (uint64_t i = 0; i < ix->count; i++) {
		const vmb_index_patch *pp = vmb_index_patch_of(ix, i);
		if (pp) {
			npatch++;
			n += 36 + (size_t)pp->nruns * 8;
		}
	}
	if (!(b = vmb_calloc(1, n)))
		return VMB_ENOMEM;
	memcpy(b, magic, 4);
	vmb_put_le32(b + 4, npatch ? 2 : 1);
	vmb_put_le32(b + 8, VMB_INDEX_ENTRY_BYTES);
	vmb_put_le32(b + 12, ix->chunk_size);
	vmb_put_le64(b + 16, ix->disk_size);
	vmb_put_le64(b + 24, ix->count);
	p = b + VMB_INDEX_HEADER_BYTES;
	for (uint64_t i = 0; i < ix->count; i++, p += VMB_INDEX_ENTRY_BYTES) {
		p[0] = ix->e[i].kind;
		if (ix->e[i].kind == VMB_CHUNK_DATA)
			memcpy(p + 33, ix->e[i].fp, 16);
		if (ix->e[i].kind != VMB_CHUNK_ZERO)
			memcpy(p + 1, ix->e[i].id, 32);
	}
	for (uint64_t i = 0; i < ix->count; i++) {
		const vmb_index_patch *pp = vmb_index_patch_of(ix, i);
		if (!pp)
			continue;
		memcpy(p, pp->base, 32);
		vmb_put_le32(p + 32, pp->nruns);
		p += 36;
		for (uint32_t k = 0; k < pp->nruns; k++, p += 8) {
			vmb_put_le32(p, pp->runs[k].off);
			vmb_put_le32(p + 4, pp->runs[k].len);
		}
	}
	*out = b;
	*len = n;
	return 0;
}

int vmb_index_decode(const uint8_t *buf, size_t len, const char *what,
		     vmb_index *ix)
{
	uint64_t count, want, size;
	uint32_t cs, ver;
	size_t body;
	const uint8_t *p, *end = buf + len;

	memset(ix, 0, sizeof *ix);
	if (len < VMB_INDEX_HEADER_BYTES || memcmp(buf, magic, 4) != 0)
		return vmb_error_set(VMB_ECORRUPT, "%s: not a chunk index", what);
	ver = vmb_le32(buf + 4);
	if (ver != 1 && ver != 2)
		return vmb_error_set(VMB_ENOTSUP, "%s: index version %u is not "
				     "supported", what, ver);
	cs = vmb_le32(buf + 12);
	size = vmb_le64(buf + 16);
	count = vmb_le64(buf + 24);
	if (vmb_le32(buf + 8) != VMB_INDEX_ENTRY_BYTES || !vmb_is_pow2(cs) ||
	    cs < 4096 || cs > (64u << 20) ||
	    vmb_index_count(size, cs, &want) || count != want ||
	    (len - VMB_INDEX_HEADER_BYTES) / VMB_INDEX_ENTRY_BYTES < count ||
	    (ver == 1 && (len - VMB_INDEX_HEADER_BYTES) !=
			 count * VMB_INDEX_ENTRY_BYTES))
		return vmb_error_set(VMB_ECORRUPT, "%s: inconsistent index "
				     "header", what);
	if (vmb_index_alloc(ix, size, cs))
		return VMB_ENOMEM;
	p = buf + VMB_INDEX_HEADER_BYTES;
	for (uint64_t i = 0; i < count; i++, p += VMB_INDEX_ENTRY_BYTES) {
		if (p[0] > (ver == 2 ? VMB_CHUNK_PATCH : VMB_CHUNK_ZERO)) {
			vmb_index_free(ix);
			return vmb_error_set(VMB_ECORRUPT, "%s: bad entry %llu",
					     what, (unsigned long long)i);
		}
		ix->e[i].kind = p[0];
		memcpy(ix->e[i].id, p + 1, 32);
		memcpy(ix->e[i].fp, p + 33, 16);
	}
	body = (size_t)(end - p);
	for (uint64_t i = 0; i < count && ver == 2; i++) {
		vmb_index_run runs[VMB_INDEX_MAX_RUNS];
		uint32_t nruns;
		if (ix->e[i].kind != VMB_CHUNK_PATCH)
			continue;
		if (body < 36)
			goto bad_patch;
		nruns = vmb_le32(p + 32);
		if (nruns == 0 || nruns > VMB_INDEX_MAX_RUNS ||
		    (body - 36) / 8 < nruns)
			goto bad_patch;
		for (uint32_t k = 0; k < nruns; k++) {
			runs[k].off = vmb_le32(p + 36 + 8 * (size_t)k);
			runs[k].len = vmb_le32(p + 40 + 8 * (size_t)k);
		}
		if (vmb_index_set_patch(ix, i, p, runs, nruns)) {
			if (vmb_error_code() == VMB_ENOMEM) {
				vmb_index_free(ix);
				return VMB_ENOMEM;
			}
			goto bad_patch;
		}
		p += 36 + 8 * (size_t)nruns;
		body -= 36 + 8 * (size_t)nruns;
		continue;
	bad_patch:
		vmb_index_free(ix);
		return vmb_error_set(VMB_ECORRUPT, "%s: bad patch record for "
				     "entry %llu", what, (unsigned long long)i);
	}
	if (body) {
		vmb_index_free(ix);
		return vmb_error_set(VMB_ECORRUPT, "%s: %zu stray bytes after "
				     "the entries", what, body);
	}
	return 0;
}
