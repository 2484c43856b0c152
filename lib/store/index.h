/*
 * Internal: the per-disk chunk index (plaintext layout, before framing).
 *
 *   0  4  magic "VMBI"
 *   4  4  version (1, or 2 when a patch entry is present), LE
 *   8  4  entry size (49), LE
 *  12  4  chunk size, LE
 *  16  8  disk size in bytes, LE
 *  24  8  entry count, LE (= ceil(disk size / chunk size))
 *  32  8  reserved, 0
 *  40     entries: kind u8 (0 data, 1 zero, 2 patch), id[32],
 *         fingerprint[16]; zero entries have id and fingerprint all zero,
 *         patch entries a zero fingerprint.
 *  then   (version 2) one record per patch entry, in entry order:
 *         base id[32] (all zero: the base is zeros), run count u32,
 *         runs: offset u32, length u32 (bytes in the chunk; increasing,
 *         not touching, non-empty, inside the chunk).
 *
 * A patch entry's chunk is its base chunk with the runs replaced by the
 * bytes of the chunk object named by its id (the runs' bytes, in order).
 * Backups that change-block tracking tells only a few small ranges of a
 * chunk changed store such a patch instead of the whole chunk; a patch's
 * base is always a whole chunk (patches never stack).
 */
#ifndef VMB_LIB_STORE_INDEX_H
#define VMB_LIB_STORE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define VMB_INDEX_HEADER_BYTES 40
#define VMB_INDEX_ENTRY_BYTES 49
#define VMB_INDEX_MAX_ENTRIES (1ULL << 26) /* 64 Mi chunks */
/* At most this many runs in one patch (a 4 MiB chunk at 4 KiB per bit). */
#define VMB_INDEX_MAX_RUNS 1024

enum { VMB_CHUNK_DATA = 0, VMB_CHUNK_ZERO = 1, VMB_CHUNK_PATCH = 2 };

typedef struct vmb_index_entry {
	uint8_t kind;
	uint8_t id[32];
	uint8_t fp[16];
	uint32_t patch; /* kind PATCH: position in vmb_index.patches */
} vmb_index_entry;

typedef struct vmb_index_run {
	uint32_t off, len;
} vmb_index_run;

typedef struct vmb_index_patch {
	uint8_t base[32];     /* all zero: a zero base */
	uint32_t nruns;
	vmb_index_run *runs;  /* malloc'd */
} vmb_index_patch;

typedef struct vmb_index {
	uint64_t disk_size;
	uint32_t chunk_size;
	uint64_t count;
	vmb_index_entry *e;
	vmb_index_patch *patches;
	uint32_t npatches, patch_cap;
} vmb_index;

/* Number of chunks for a disk; -1 if the count is absurd. */
int vmb_index_count(uint64_t disk_size, uint32_t chunk_size, uint64_t *n);
int vmb_index_alloc(vmb_index *ix, uint64_t disk_size, uint32_t chunk_size);
void vmb_index_free(vmb_index *ix);
/* Serialize; *out is malloc'd. */
int vmb_index_encode(const vmb_index *ix, uint8_t **out, size_t *len);
/* Parse hostile bytes; VMB_ECORRUPT naming @what on any fault. */
int vmb_index_decode(const uint8_t *buf, size_t len, const char *what,
		     vmb_index *ix);

/*
 * Make entry @i a patch over @base (NULL: zeros) with @nruns runs (copied;
 * they must be valid as the format says).  The entry's id is set later.
 */
int vmb_index_set_patch(vmb_index *ix, uint64_t i, const uint8_t *base,
			const vmb_index_run *runs, uint32_t nruns);

/* Copy entry @i of @src (same geometry) into @dst, patch record too. */
int vmb_index_copy_entry(vmb_index *dst, const vmb_index *src, uint64_t i);

/* The patch record of entry @i, or NULL when it is not a patch. */
static inline const vmb_index_patch *vmb_index_patch_of(const vmb_index *ix,
							 uint64_t i)
{
	return ix->e[i].kind == VMB_CHUNK_PATCH ? &ix->patches[ix->e[i].patch]
						 : NULL;
}

/* 1 if @id is all zero (a patch's zero base). */
int vmb_index_id_is_zero(const uint8_t id[32]);

/*
 * The chunk objects entry @i needs: 0 (zero), 1 (data) or 2 (a patch and
 * its base, patch first; a zero base is not an object).
 */
int vmb_index_ids(const vmb_index *ix, uint64_t i, const uint8_t *ids[2]);

/* Length of chunk i (the last one may be short). */
static inline uint32_t vmb_index_chunk_len(const vmb_index *ix, uint64_t i)
{
	uint64_t off = i * ix->chunk_size;
	uint64_t rest = ix->disk_size - off;
	return rest < ix->chunk_size ? (uint32_t)rest : ix->chunk_size;
}

/* Sum of the run lengths of a patch. */
uint64_t vmb_index_patch_bytes(const vmb_index_patch *p);

#endif
