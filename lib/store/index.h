/*
 * Internal: the per-disk chunk index (plaintext layout, before framing).
 *
 *   0  4  magic "VMBI"
 *   4  4  version (1), LE
 *   8  4  entry size (49), LE
 *  12  4  chunk size, LE
 *  16  8  disk size in bytes, LE
 *  24  8  entry count, LE (= ceil(disk size / chunk size))
 *  32  8  reserved, 0
 *  40     entries: kind u8 (0 data, 1 zero), id[32], fingerprint[16];
 *         zero entries have id and fingerprint all zero.
 */
#ifndef VMB_LIB_STORE_INDEX_H
#define VMB_LIB_STORE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define VMB_INDEX_HEADER_BYTES 40
#define VMB_INDEX_ENTRY_BYTES 49
#define VMB_INDEX_MAX_ENTRIES (1ULL << 26) /* 64 Mi chunks */

enum { VMB_CHUNK_DATA = 0, VMB_CHUNK_ZERO = 1 };

typedef struct vmb_index_entry {
	uint8_t kind;
	uint8_t id[32];
	uint8_t fp[16];
} vmb_index_entry;

typedef struct vmb_index {
	uint64_t disk_size;
	uint32_t chunk_size;
	uint64_t count;
	vmb_index_entry *e;
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
/* Length of chunk i (the last one may be short). */
static inline uint32_t vmb_index_chunk_len(const vmb_index *ix, uint64_t i)
{
	uint64_t off = i * ix->chunk_size;
	uint64_t rest = ix->disk_size - off;
	return rest < ix->chunk_size ? (uint32_t)rest : ix->chunk_size;
}

#endif
