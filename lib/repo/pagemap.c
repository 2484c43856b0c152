/*
 * Page maps: a keyed 128-bit fingerprint of every 4 KiB page of a stored
 * disk, kept in the local cache beside the known-chunk set
 * ($XDG_CACHE_HOME/vmb/<repo id>/pages/<index id>), so that a later
 * backup can find which pages of a chunk differ from the same chunk of
 * a reference snapshot (its parent, or for a VM's first backup a similar
 * disk of another VM: the classroom of clones) without reading that
 * snapshot back, and store only those pages as a patch over it.
 * docs/cbt.md, "Pages like another snapshot's", has the why.
 *
 * The file is a cache: anything unexpected in it (size, geometry, magic)
 * makes it unusable, never an error.  Layout:
 *   0   8  magic "VMBPAGE1"
 *   8   4  chunk size (le32)    12  4  zero
 *   16  8  disk size (le64)     24  8  chunk count (le64)
 *   32 32  keyed BLAKE2b (the repository's chunk-id key, with a domain
 *          string) of the index id and everything from offset 64 on: a map that bit rot or
 *          anyone without the key changed is not used (a wrong map would
 *          make a backup leave out pages that changed)
 *   64  count bytes: 1 = the chunk's page fingerprints are valid
 *   then, from the next 4096-byte boundary, count * pages-per-chunk * 16
 *   bytes of fingerprints (vmb_crypto_fingerprint of each page; the last
 *   page of the disk may be short and is hashed as it is).
 * It is written through a shared mapping of a sparse temporary file and
 * renamed into place only after the snapshot's index is stored.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include "common/util.h"
#include "repo_internal.h"

#define PM_MAGIC "VMBPAGE1"
#define PM_HEAD 64

struct vmb_pagemap {
	uint8_t *map;
	size_t maplen;
	uint64_t count;
	uint32_t ppc;         /* pages per chunk */
	uint8_t *valid;
	uint8_t *fps;
	char *tmp;            /* a map being written: its temporary name */
};

static char *pm_dir(vmb_repo *r)
{
	const char *base = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	if (base && *base)
		return vmb_asprintf("%s/vmb/%s/pages", base, r->id);
	if (home && *home)
		return vmb_asprintf("%s/.cache/vmb/%s/pages", home, r->id);
	return NULL;
}

static char *pm_path(vmb_repo *r, const char *index)
{
	char *d = pm_dir(r), *p;
	if (!d)
		return NULL;
	p = vmb_asprintf("%s/%s", d, index);
	free(d);
	return p;
}

/* The geometry of a map; 0 if it is absurd. */
static int pm_geometry(uint64_t disk_size, uint32_t chunk_size,
		       uint64_t *count, uint32_t *ppc, size_t *fps_at,
		       size_t *len)
{
	uint64_t n, bytes;
	if (!chunk_size || vmb_index_count(disk_size, chunk_size, &n))
		return 0;
	*ppc = (chunk_size + VMB_PAGE_BYTES - 1) / VMB_PAGE_BYTES;
	*count = n;
	*fps_at = (size_t)((PM_HEAD + n + 4095) & ~(uint64_t)4095);
	if (n > (UINT64_MAX - *fps_at) / 16 / *ppc)
		return 0;
	bytes = *fps_at + n * *ppc * 16;
	if (bytes > SIZE_MAX)
		return 0;
	*len = (size_t)bytes;
	return 1;
}

/* The keyed hash of map @m for @index into @out (streamed: a map can be
 * hundreds of MiB for a large disk). */
static void pm_mac(vmb_repo *r, const struct vmb_pagemap *m,
		   const char *index, uint8_t out[32])
{
	static const char domain[] = "vmb page map 1";
	crypto_generichash_state st;
	crypto_generichash_init(&st, r->keys->id, sizeof r->keys->id, 32);
	crypto_generichash_update(&st, (const uint8_t *)domain, sizeof domain);
	crypto_generichash_update(&st, (const uint8_t *)index,
				  strlen(index) + 1);
	for (size_t off = PM_HEAD; off < m->maplen; off += 1u << 20) {
		size_t n = m->maplen - off < (1u << 20) ? m->maplen - off
							: 1u << 20;
		crypto_generichash_update(&st, m->map + off, n);
	}
	crypto_generichash_final(&st, out, 32);
}

static int pm_map(int fd, size_t len, int writable, struct vmb_pagemap *m,
		  size_t fps_at)
{
	m->map = mmap(NULL, len, writable ? PROT_READ | PROT_WRITE : PROT_READ,
		      MAP_SHARED, fd, 0);
	if (m->map == MAP_FAILED) {
		m->map = NULL;
		return -1;
	}
	m->maplen = len;
	m->valid = m->map + PM_HEAD;
	m->fps = m->map + fps_at;
	return 0;
}

int vmb_pagemap_open(vmb_repo *r, const char *index, uint64_t disk_size,
		     uint32_t chunk_size, vmb_pagemap **out)
{
	struct vmb_pagemap *m;
	uint64_t count;
	uint32_t ppc;
	size_t fps_at, len;
	struct stat st;
	char *p;
	int fd;

	*out = NULL;
	if (!pm_geometry(disk_size, chunk_size, &count, &ppc, &fps_at, &len) ||
	    !(p = pm_path(r, index)))
		return 0;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return 0;
	m = vmb_calloc(1, sizeof *m);
	if (!m || fstat(fd, &st) || (uint64_t)st.st_size != len ||
	    pm_map(fd, len, 0, m, fps_at)) {
		close(fd);
		free(m);
		return 0;
	}
	close(fd);
	m->count = count;
	m->ppc = ppc;
	uint8_t mac[32];
	if (memcmp(m->map, PM_MAGIC, 8) == 0)
		pm_mac(r, m, index, mac);
	if (memcmp(m->map, PM_MAGIC, 8) != 0 ||
	    vmb_le32(m->map + 8) != chunk_size ||
	    vmb_le64(m->map + 16) != disk_size ||
	    vmb_le64(m->map + 24) != count ||
	    sodium_memcmp(mac, m->map + 32, 32) != 0) {
		vmb_log(VMB_LOG_INFO, "page map %s in the cache is not "
			"usable; not comparing pages with it", index);
		vmb_pagemap_close(m);
		return 0;
	}
	*out = m;
	return 0;
}

int vmb_pagemap_present(vmb_repo *r, const char *index, uint64_t disk_size,
			uint32_t chunk_size)
{
	uint64_t count;
	uint32_t ppc;
	size_t fps_at, len;
	struct stat st;
	char *p;
	int ok;
	if (!pm_geometry(disk_size, chunk_size, &count, &ppc, &fps_at, &len) ||
	    !(p = pm_path(r, index)))
		return 0;
	ok = stat(p, &st) == 0 && S_ISREG(st.st_mode) &&
	     (uint64_t)st.st_size == len;
	free(p);
	return ok;
}

int vmb_pagemap_create(vmb_repo *r, uint64_t disk_size, uint32_t chunk_size,
		       vmb_pagemap **out)
{
	struct vmb_pagemap *m = NULL;
	uint64_t count;
	uint32_t ppc;
	size_t fps_at, len;
	char *d = NULL, *tmp = NULL;
	int fd = -1;

	*out = NULL;
	if (!pm_geometry(disk_size, chunk_size, &count, &ppc, &fps_at, &len) ||
	    !(d = pm_dir(r)) || vmb_mkdir_p(d, 0700) ||
	    !(tmp = vmb_asprintf("%s/.new-%d-%p", d, (int)getpid(),
				 (void *)&m)) ||
	    (fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 ||
	    ftruncate(fd, (off_t)len) || !(m = vmb_calloc(1, sizeof *m)) ||
	    pm_map(fd, len, 1, m, fps_at)) {
		/* only a cache: no map, no error */
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		free(m);
		free(tmp);
		free(d);
		vmb_error_clear();
		return 0;
	}
	close(fd);
	free(d);
	memcpy(m->map, PM_MAGIC, 8);
	vmb_put_le32(m->map + 8, chunk_size);
	vmb_put_le64(m->map + 16, disk_size);
	vmb_put_le64(m->map + 24, count);
	m->count = count;
	m->ppc = ppc;
	m->tmp = tmp;
	*out = m;
	return 0;
}

const uint8_t *vmb_pagemap_get(const vmb_pagemap *m, uint64_t i)
{
	if (!m || i >= m->count || m->valid[i] != 1)
		return NULL;
	return m->fps + (size_t)i * m->ppc * 16;
}

uint8_t *vmb_pagemap_slot(vmb_pagemap *m, uint64_t i)
{
	if (!m || !m->tmp || i >= m->count)
		return NULL;
	return m->fps + (size_t)i * m->ppc * 16;
}

void vmb_pagemap_set_valid(vmb_pagemap *m, uint64_t i, int valid)
{
	if (m && m->tmp && i < m->count)
		m->valid[i] = valid ? 1 : 0;
}

void vmb_pagemap_hash(const vmb_keys *k, const uint8_t *buf, uint32_t len,
		      uint8_t *out)
{
	for (uint32_t off = 0, p = 0; off < len; off += VMB_PAGE_BYTES, p++)
		vmb_crypto_fingerprint(k, buf + off, len - off < VMB_PAGE_BYTES
				       ? len - off : VMB_PAGE_BYTES,
				       out + (size_t)p * 16);
}

int vmb_pagemap_commit(vmb_repo *r, vmb_pagemap *m, const char *index)
{
	char *p;
	int done = 0;
	if (!m || !m->tmp)
		return 0;
	p = pm_path(r, index);
	pm_mac(r, m, index, m->map + 32);
	if (p && msync(m->map, m->maplen, MS_SYNC) == 0 &&
	    rename(m->tmp, p) == 0) {
		free(m->tmp);
		m->tmp = NULL;
		done = 1;
	}
	free(p);
	return done;
}

void vmb_pagemap_remove(vmb_repo *r, const char *index)
{
	char *p = pm_path(r, index);
	if (p)
		unlink(p);
	free(p);
}

void vmb_pagemap_close(vmb_pagemap *m)
{
	if (!m)
		return;
	if (m->map)
		munmap(m->map, m->maplen);
	if (m->tmp) {
		unlink(m->tmp);
		free(m->tmp);
	}
	free(m);
}
