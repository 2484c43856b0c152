/* Internal: repository state shared by the files in lib/repo. */
#ifndef VMB_LIB_REPO_INTERNAL_H
#define VMB_LIB_REPO_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include "vmbackup/repo.h"
#include "vmbackup/target.h"
#include "crypto/crypto.h"
#include "store/blob.h"
#include "store/index.h"

/* A set of 32-byte ids (open addressing; ids are uniformly random). */
typedef struct vmb_idset {
	uint8_t (*slots)[32];
	uint8_t *used;
	size_t cap, count;
} vmb_idset;

int vmb_idset_add(vmb_idset *s, const uint8_t id[32]); /* 1 if new */
int vmb_idset_has(const vmb_idset *s, const uint8_t id[32]);
void vmb_idset_free(vmb_idset *s);

struct vmb_repo {
	vmb_target *t;
	char id[33];
	uint32_t chunk_size;
	int zstd_level;
	int cipher;         /* VMB_CIPHER_* of lib/crypto, from config */
	int config_encrypted; /* config says "encryption":"repokey" */
	vmb_keys *keys;     /* locked memory (vmb_crypto_keys_new) */
	pthread_mutex_t known_lock;
	vmb_idset known;    /* chunk ids known to be stored */
	int known_loaded;   /* the local cache was merged in */
	char gc_epoch[65];  /* "state/gc-epoch" when opened */
	char lock_token[33];
	char key_name[128];  /* the key file the passphrase opened */
	char *url;
	size_t damaged_manifests; /* seen by the last snapshot listing */
	char first_damaged[33];
	/* vmb_repo_open_async(): the key derivation's thread, which alone
	 * writes keys, key_name and gc_epoch until kdf_done */
	pthread_mutex_t kdf_lock;
	pthread_t kdf_tid;
	int kdf_started, kdf_joined, kdf_rc;
	atomic_int kdf_done;
	char *kdf_msg;  /* its error message (per-thread in the library) */
	char *kdf_pass; /* a secret copy, wiped when the thread is done */
	struct vmb_spec *spec; /* vmb_repo_prefetch()'s chunks (prefetch.c) */
};

/* 1 while vmb_repo_open_async()'s key derivation still runs. */
int vmb_repo__key_pending(const vmb_repo *r);
/* Free the prefetched chunks (accepts none). */
void vmb_repo__spec_free(vmb_repo *r);
/* The prefetched chunk of disk @path (size @size) at @off, @len, for
 * level @level: its plaintext copied into @buf, *bytes_read counted as
 * the read would have; @return its entry (valid until the backup ends),
 * or NULL (read it). */
struct vmb_spec_ent;
const struct vmb_spec_ent *vmb_repo__spec_take(vmb_repo *r, const char *path,
					       uint64_t size, uint64_t off,
					       uint32_t len, int level,
					       uint8_t *buf,
					       uint64_t *bytes_read);
/* An entry's compressed payload (*zlen 0: stored raw). */
const uint8_t *vmb_repo__spec_payload(const struct vmb_spec_ent *e,
				      size_t *zlen);

/* The members of `config` vmb uses (docs/repository-format.md). */
typedef struct vmb_repo_config {
	char id[33];
	uint32_t chunk_size;
	int zstd_level;
	int cipher;    /* VMB_CIPHER_* of lib/crypto */
	int encrypted; /* "encryption": "repokey" */
} vmb_repo_config;

/*
 * Parse `config` (hostile: anyone with write access to the target can
 * change it).  VMB_ECORRUPT naming @what when malformed, VMB_ENOTSUP for
 * a newer repository version, an unknown cipher or encryption.
 */
int vmb_repo__parse_config(const char *text, size_t len, const char *what,
			   vmb_repo_config *c);

/* One disk in a manifest. */
typedef struct vmb_mdisk {
	char *name;
	char *source;
	char *format;
	uint64_t size;
	uint32_t chunk_size;
	char index[65]; /* hex id of the index object */
	uint64_t chunks, zero_chunks;
	char *cbt;
	char **layers;     /* layer identities when backed up, top first */
	size_t nlayers;
	char *cbt_state;   /* change-tracking state for the next backup */
	char *top_stamp;   /* top layer's ctime, if trustworthy */
} vmb_mdisk;

struct vmb_snapshot {
	char id[33];
	char *vm, *host, *parent, *cbt;
	int64_t time;
	int64_t time_us; /* microseconds since the epoch; orders snapshots */
	char **tags;
	size_t ntags;
	vmb_mdisk *disks;
	size_t ndisks;
	char *config_format, *config;
	char *consistency;      /* "crash-consistent", "frozen", ... or NULL */
	char *consistency_note; /* why not better, or NULL */
	char *json;
	int protected_;
};

void vmb_chunk_name(const uint8_t id[32], char name[80]);

/* Encode and store / fetch and decode a framed object. */
/* vmb_target_put(), removing what a failed put left that does not
 * decode as a blob of @type bound to @bind (repo.c). */
int vmb_repo__put_object(vmb_repo *r, int type, const char *name,
			 const uint8_t *bind, size_t bindlen,
			 const void *blob, size_t n);
int vmb_repo__put_blob(vmb_repo *r, int type, const char *name,
		       const uint8_t *bind, size_t bindlen, const void *plain,
		       size_t len, uint64_t *stored);
int vmb_repo__get_blob(vmb_repo *r, int type, const char *name,
		       const uint8_t *bind, size_t bindlen, size_t max,
		       uint8_t **plain, size_t *len);

/* Chunk fetch+decode into out (capacity cap). */
int vmb_repo__get_chunk(vmb_repo *r, const uint8_t id[32], ZSTD_DCtx *dctx,
			void *out, size_t cap, size_t *len);

/*
 * The bytes of entry @i of @ix into @out (capacity ix->chunk_size): zero
 * entries give zeros, patches are applied to their base.  *len is the
 * chunk's length.  Errors name the disk offset.
 */
/* Where a chunk's data is: up to 64 data extents, or overflow (too
 * fragmented: read the whole chunk).  Backup and the key-derivation
 * prefetch read chunks the same way through these two. */
struct chunk_map {
	vmb_extent ext[64];
	int n;
	int overflow;
	int has_data;
};
/* Fill *m (zeroed first) for [off, off+len) of d. */
int vmb_repo__chunk_map(vmb_disk *d, uint64_t off, uint32_t len,
			struct chunk_map *m);
/* The bytes vmb_repo__chunk_read() reads from the disk for *m. */
uint64_t vmb_repo__chunk_map_bytes(const struct chunk_map *m, uint32_t len);
/* Read what *m says into buf (holes zeroed); *bytes_read (may be NULL)
 * gets vmb_repo__chunk_map_bytes(). */
int vmb_repo__chunk_read(vmb_disk *d, const struct chunk_map *m, uint64_t off,
			 uint32_t len, uint8_t *buf, uint64_t *bytes_read);

/* Hint the target to start fetching entry i's object(s) (restore reads
 * ahead of its workers with it); never fails. */
void vmb_repo__prefetch_entry(vmb_repo *r, const vmb_index *ix, uint64_t i);
int vmb_repo__read_entry(vmb_repo *r, const vmb_index *ix, uint64_t i,
			 ZSTD_DCtx *dctx, uint8_t *out, size_t *len);

int vmb_repo__load_index(vmb_repo *r, const char *hexid, vmb_index *ix);
/* strict: fail on a damaged manifest (GC); else skip and count it. */
int vmb_repo__snapshots(vmb_repo *r, const char *vm, int strict,
			vmb_snapshot ***list, size_t *count);
int vmb_repo__load_snapshot(vmb_repo *r, const char *id, vmb_snapshot **out);
/*
 * Parse a manifest's plaintext (hostile: it comes from the repository);
 * @id is the name it was stored under and must match.  VMB_ECORRUPT
 * naming @what on any fault.
 */
int vmb_repo__parse_manifest(const char *id, const char *text, size_t len,
			     const char *what, vmb_snapshot **out);
char *vmb_repo__manifest_json(const vmb_snapshot *s, const char *stats);

/* Known-chunk cache under $XDG_CACHE_HOME/vmb/<repo id>/. */
void vmb_repo__cache_load(vmb_repo *r);
void vmb_repo__cache_save(vmb_repo *r);

int vmb_repo__valid_id(const char *s);
/* Worker threads for a pipeline on this repository's target. */
int vmb_repo__threads(const vmb_repo *r, int requested);

/*
 * Page maps (pagemap.c): a fingerprint of each 4 KiB page of a stored
 * disk, in the local cache, named by the disk's index id.  Only a cache:
 * open and create give *out = NULL (and no error) when there is none or
 * it cannot be made.
 */
#define VMB_PAGE_BYTES 4096u
typedef struct vmb_pagemap vmb_pagemap;
int vmb_pagemap_open(vmb_repo *r, const char *index, uint64_t disk_size,
		     uint32_t chunk_size, vmb_pagemap **out);
/* 1 if a map for @index of that geometry is in the cache (not checked
 * further: vmb_pagemap_open() authenticates it). */
int vmb_pagemap_present(vmb_repo *r, const char *index, uint64_t disk_size,
			uint32_t chunk_size);
int vmb_pagemap_create(vmb_repo *r, uint64_t disk_size, uint32_t chunk_size,
		       vmb_pagemap **out);
/* Chunk @i's page fingerprints (16 bytes a page), or NULL if unknown. */
const uint8_t *vmb_pagemap_get(const vmb_pagemap *m, uint64_t i);
/* Where a map being written keeps chunk @i's; then set_valid(1). */
uint8_t *vmb_pagemap_slot(vmb_pagemap *m, uint64_t i);
void vmb_pagemap_set_valid(vmb_pagemap *m, uint64_t i, int valid);
/* The page fingerprints of @len bytes of a chunk into @out. */
void vmb_pagemap_hash(const vmb_keys *k, const uint8_t *buf, uint32_t len,
		      uint8_t *out);
/* Name a map being written after @index (the disk's stored index):
 * 1 done, 0 not (the map is then dropped at close). */
int vmb_pagemap_commit(vmb_repo *r, vmb_pagemap *m, const char *index);
void vmb_pagemap_remove(vmb_repo *r, const char *index);
void vmb_pagemap_close(vmb_pagemap *m); /* NULL is fine */

#endif
