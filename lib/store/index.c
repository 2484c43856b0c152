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
		free(ix->e);
		memset(ix, 0, sizeof *ix);
	}
}

int vmb_index_encode(const vmb_index *ix, uint8_t **out, size_t *len)
{
	size_t n = VMB_INDEX_HEADER_BYTES +
		   (size_t)ix->count * VMB_INDEX_ENTRY_BYTES;
	uint8_t *b = vmb_calloc(1, n), *p;
	if (!b)
		return VMB_ENOMEM;
	memcpy(b, magic, 4);
	vmb_put_le32(b + 4, 1);
	vmb_put_le32(b + 8, VMB_INDEX_ENTRY_BYTES);
	vmb_put_le32(b + 12, ix->chunk_size);
	vmb_put_le64(b + 16, ix->disk_size);
	vmb_put_le64(b + 24, ix->count);
	p = b + VMB_INDEX_HEADER_BYTES;
	for (uint64_t i = 0; i < ix->count; i++, p += VMB_INDEX_ENTRY_BYTES) {
		p[0] = ix->e[i].kind;
		if (ix->e[i].kind == VMB_CHUNK_DATA) {
			memcpy(p + 1, ix->e[i].id, 32);
			memcpy(p + 33, ix->e[i].fp, 16);
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
	uint32_t cs;
	const uint8_t *p;

	memset(ix, 0, sizeof *ix);
	if (len < VMB_INDEX_HEADER_BYTES || memcmp(buf, magic, 4) != 0)
		return vmb_error_set(VMB_ECORRUPT, "%s: not a chunk index", what);
	if (vmb_le32(buf + 4) != 1)
		return vmb_error_set(VMB_ENOTSUP, "%s: index version %u is not "
				     "supported", what, vmb_le32(buf + 4));
	cs = vmb_le32(buf + 12);
	size = vmb_le64(buf + 16);
	count = vmb_le64(buf + 24);
	if (vmb_le32(buf + 8) != VMB_INDEX_ENTRY_BYTES || !vmb_is_pow2(cs) ||
	    cs < 4096 || cs > (64u << 20) ||
	    vmb_index_count(size, cs, &want) || count != want ||
	    (len - VMB_INDEX_HEADER_BYTES) / VMB_INDEX_ENTRY_BYTES != count ||
	    (len - VMB_INDEX_HEADER_BYTES) % VMB_INDEX_ENTRY_BYTES)
		return vmb_error_set(VMB_ECORRUPT, "%s: inconsistent index "
				     "header", what);
	if (vmb_index_alloc(ix, size, cs))
		return VMB_ENOMEM;
	p = buf + VMB_INDEX_HEADER_BYTES;
	for (uint64_t i = 0; i < count; i++, p += VMB_INDEX_ENTRY_BYTES) {
		if (p[0] > VMB_CHUNK_ZERO) {
			vmb_index_free(ix);
			return vmb_error_set(VMB_ECORRUPT, "%s: bad entry %llu",
					     what, (unsigned long long)i);
		}
		ix->e[i].kind = p[0];
		memcpy(ix->e[i].id, p + 1, 32);
		memcpy(ix->e[i].fp, p + 33, 16);
	}
	return 0;
}
