/*
 * Speculative reading and compression of a backup's first chunks while
 * vmb_repo_open_async() derives the key (docs/design-notes/kdf-overlap.md).
 * Compression needs no key; everything that names or seals a chunk does,
 * so only the plaintext and the zstd payload are kept here, and
 * vmb_repo_backup() hashes and seals them as any other chunk.
 */
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include "vmbackup/disk.h"
#include "common/util.h"
#include "repo_internal.h"

#define SPEC_MAX_BYTES (64u << 20) /* plaintext kept, at most */
#define SPEC_MAX_CHUNKS 64

struct vmb_spec_ent {
	uint64_t off;
	uint32_t len;
	uint64_t bytes_read; /* what the extents the backup reads add up to */
	uint8_t *plain;      /* freed once taken */
	uint8_t *z;          /* the zstd payload, or NULL: stored raw */
	size_t zlen;
	int taken;
};

struct vmb_spec {
	char *path;
	uint64_t size;
	uint32_t chunk_size;
	int level;
	int n;
	struct vmb_spec_ent e[SPEC_MAX_CHUNKS];
};

/* Read a chunk as backup_disk() does: its data extents, holes zeroed (the
 * whole chunk when too fragmented).  @return 0, -1 no data, or an error. */
static int spec_read(vmb_disk *d, uint64_t off, uint32_t len, uint8_t *buf,
		     uint64_t *bytes_read)
{
	struct chunk_map m;
	int rc;
	*bytes_read = 0;
	if ((rc = vmb_repo__chunk_map(d, off, len, &m)))
		return rc;
	if (!m.has_data)
		return -1;
	return vmb_repo__chunk_read(d, &m, off, len, buf, bytes_read);
}

void vmb_repo__spec_free(vmb_repo *r)
{
	struct vmb_spec *s = r ? r->spec : NULL;
	if (!s)
		return;
	for (int i = 0; i < s->n; i++) {
		free(s->e[i].plain);
		free(s->e[i].z);
	}
	free(s->path);
	free(s);
	r->spec = NULL;
}

VMB_EXTERN(int) vmb_repo_prefetch(vmb_repo *r, const char *path)
{
	struct vmb_spec *s;
	vmb_disk *d = NULL;
	ZSTD_CCtx *cctx = NULL;
	uint8_t *zbuf = NULL;
	uint32_t cs;
	int max;

	if (!r || !path || r->spec || !vmb_repo__key_pending(r))
		return 0;
	cs = r->chunk_size;
	max = (int)(SPEC_MAX_BYTES / cs);
	if (max < 1)
		max = 1;
	if (max > SPEC_MAX_CHUNKS)
		max = SPEC_MAX_CHUNKS;
	if (!(s = vmb_calloc(1, sizeof *s)) || !(s->path = vmb_strdup(path)) ||
	    vmb_disk_open(path, 0, &d)) {
		if (s)
			free(s->path);
		free(s);
		vmb_error_clear(); /* the backup reports it */
		return 0;
	}
	s->size = vmb_disk_size(d);
	s->chunk_size = cs;
	s->level = r->zstd_level;
	if (s->level > 0) {
		cctx = ZSTD_createCCtx();
		zbuf = vmb_malloc(ZSTD_compressBound(cs));
	}
	for (uint64_t off = 0; off < s->size && s->n < max &&
	     vmb_repo__key_pending(r) && (s->level <= 0 || (cctx && zbuf));
	     off += cs) {
		struct vmb_spec_ent *e = &s->e[s->n];
		uint32_t len = s->size - off < cs ? (uint32_t)(s->size - off)
						  : cs;
		int rc;
		if (!(e->plain = vmb_malloc(len)))
			break;
		rc = spec_read(d, off, len, e->plain, &e->bytes_read);
		if (rc == 0 && vmb_is_zero(e->plain, len))
			rc = -1; /* the backup does not compress a zero chunk */
		if (rc == 0)
			rc = vmb_blob_compress(cctx, s->level, e->plain, len,
					       zbuf, &e->zlen);
		if (rc == 0 && e->zlen && !(e->z = vmb_malloc(e->zlen)))
			rc = VMB_ENOMEM;
		if (rc) {
			free(e->plain);
			e->plain = NULL;
			e->zlen = 0;
			if (rc == -1)
				continue;
			break;
		}
		if (e->z)
			memcpy(e->z, zbuf, e->zlen);
		e->off = off;
		e->len = len;
		s->n++;
	}
	ZSTD_freeCCtx(cctx);
	free(zbuf);
	vmb_disk_close(d);
	vmb_error_clear();
	r->spec = s;
	vmb_log(VMB_LOG_DEBUG, "prefetched %d chunks of %s while the key "
		"was derived", s->n, path);
	return s->n;
}

const struct vmb_spec_ent *vmb_repo__spec_take(vmb_repo *r, const char *path,
					       uint64_t size, uint64_t off,
					       uint32_t len, int level,
					       uint8_t *buf,
					       uint64_t *bytes_read)
{
	struct vmb_spec *s = r->spec;
	if (!s || !path || strcmp(path, s->path) || size != s->size ||
	    level != s->level || s->chunk_size != r->chunk_size)
		return NULL;
	for (int i = 0; i < s->n; i++) {
		struct vmb_spec_ent *e = &s->e[i];
		if (e->taken || e->off != off || e->len != len)
			continue;
		memcpy(buf, e->plain, len);
		free(e->plain);
		e->plain = NULL;
		*bytes_read += e->bytes_read;
		e->taken = 1;
		return e;
	}
	return NULL;
}

const uint8_t *vmb_repo__spec_payload(const struct vmb_spec_ent *e,
				      size_t *zlen)
{
	*zlen = e->zlen;
	return e->z;
}
