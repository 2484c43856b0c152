/*
 * VirtualBox VDI images (header version 1.1): reader and writer.
 *
 * Layout: a 72-byte pre-header (informational text, signature 0xbeda107f
 * at 0x40, version at 0x44), the version-1 header from 0x48 (its own size
 * first), a block map of u32 entries at offBlocks and the data area at
 * offData.  Map entry values: a physical block index (data at offData +
 * index * (cbBlock + cbBlockExtra) + cbBlockExtra), 0xffffffff for a free
 * block (falls through to the parent in a differencing image) and
 * 0xfffffffe for a block that reads as zeros.  All integers little endian.
 *
 * The reader validates the whole header and block map at open, so reads
 * only need pread() and are safe from several threads.  The writer makes
 * dynamic images with 1 MiB blocks laid out like VirtualBox does (map at
 * 0x200, data area aligned to 1 MiB).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include "common/util.h"
#include "format.h"
#include "vdi.h"

#define VDI_SIGNATURE 0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define VDI_PREHEADER_SIZE 0x48u     /* text, signature, version */
#define VDI_HEADER1_SIZE 0x180u      /* VDIHEADER1 */
#define VDI_HEADER_END 0x1c8u        /* 0x48 + 0x180: fields we parse */
#define VDI_BLOCK_FREE 0xffffffffu
#define VDI_BLOCK_ZERO 0xfffffffeu
#define VDI_SECTOR 512u
#define VDI_MIN_BLOCK 512u
#define VDI_MAX_BLOCK (256u << 20)
#define VDI_DEFAULT_BLOCK (1u << 20)
#define VDI_DATA_ALIGN (1u << 20)    /* writer: data area alignment */

enum {
	VDI_TYPE_DYNAMIC = 1,
	VDI_TYPE_FIXED = 2,
	VDI_TYPE_UNDO = 3,
	VDI_TYPE_DIFF = 4,
};

/* header field offsets (from the start of the file) */
#define OFF_SIGNATURE 0x40
#define OFF_VERSION 0x44
#define OFF_HDR_SIZE 0x48
#define OFF_TYPE 0x4c
#define OFF_FLAGS 0x50
#define OFF_COMMENT 0x54
#define OFF_BLOCKS 0x154
#define OFF_DATA 0x158
#define OFF_SECTOR_SIZE 0x168
#define OFF_DISK_SIZE 0x170
#define OFF_BLOCK_SIZE 0x178
#define OFF_BLOCK_EXTRA 0x17c
#define OFF_NBLOCKS 0x180
#define OFF_NALLOC 0x184
#define OFF_UUID_CREATE 0x188
#define OFF_UUID_MODIFY 0x198
#define OFF_UUID_LINK 0x1a8
#define OFF_UUID_PARENT_MODIFY 0x1b8

struct vdi {
	int fd;
	char *path;
	uint64_t disk_size;
	uint32_t type;
	uint32_t block_size;
	uint32_t block_extra;
	uint32_t nblocks;      /* map entries that cover the disk */
	uint32_t nallocated;   /* map entries that are data */
	uint64_t off_data;
	uint32_t *map;         /* nblocks entries, host order */
	uint8_t uuid[16];
	uint8_t uuid_link[16];
};

static const char *const vdi_texts[] = {
	"<<< Oracle VM VirtualBox Disk Image >>>",
	"<<< Sun VirtualBox Disk Image >>>",
	"<<< Sun xVM VirtualBox Disk Image >>>",
	"<<< innotek VirtualBox Disk Image >>>",
	"<<< QEMU VM Virtual Disk Image >>>",
};

static int vdi_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
	if (len < VDI_PREHEADER_SIZE ||
	    vmb_le32(head + OFF_SIGNATURE) != VDI_SIGNATURE)
		return 0;
	for (size_t i = 0; i < VMB_ARRAY_SIZE(vdi_texts); i++)
		if (memcmp(head, vdi_texts[i], strlen(vdi_texts[i])) == 0)
			return 100;
	/* the text is informational; the signature alone is strong */
	if (memcmp(head, "<<< ", 4) == 0)
		return 90;
	return 60;
}

static const char *vdi_type_name(uint32_t type)
{
	switch (type) {
	case VDI_TYPE_DYNAMIC: return "dynamic";
	case VDI_TYPE_FIXED: return "fixed";
	case VDI_TYPE_UNDO: return "undo";
	case VDI_TYPE_DIFF: return "differencing";
	default: return "unknown";
	}
}

/* RTUUID layout: u32, u16, u16 little endian, then 8 bytes as they are. */
static void vdi_uuid_str(const uint8_t u[16], char out[37])
{
	snprintf(out, 37,
		 "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 vmb_le32(u), vmb_le16(u + 4), vmb_le16(u + 6), u[8], u[9],
		 u[10], u[11], u[12], u[13], u[14], u[15]);
}

static int uuid_is_null(const uint8_t u[16])
{
	for (int i = 0; i < 16; i++)
		if (u[i])
			return 0;
	return 1;
}

static void vdi_free(struct vdi *v)
{
	if (!v)
		return;
	if (v->fd >= 0)
		close(v->fd);
	free(v->map);
	free(v->path);
	free(v);
}

/*
 * Validate the header in h (VDI_HEADER_END bytes) against the file size
 * and fill v.  Every fault is one line naming the file.
 */
static int vdi_parse_header(struct vdi *v, const uint8_t *h,
			    uint64_t file_size, uint32_t *nblocks_total,
			    uint64_t *off_blocks, uint32_t *nalloc_hdr)
{
	const char *p = v->path;
	uint32_t version = vmb_le32(h + OFF_VERSION);
	uint32_t hdr_size = vmb_le32(h + OFF_HDR_SIZE);
	uint32_t ob = vmb_le32(h + OFF_BLOCKS);
	uint32_t od = vmb_le32(h + OFF_DATA);
	uint32_t nb = vmb_le32(h + OFF_NBLOCKS);
	uint64_t needed, map_end, stride;

	if (vmb_le32(h + OFF_SIGNATURE) != VDI_SIGNATURE)
		return vmb_error_set(VMB_ECORRUPT, "%s: not a VDI image "
				     "(bad signature)", p);
	if (version != VDI_VERSION_1_1)
		return vmb_error_set(VMB_ENOTSUP, "%s: unsupported VDI "
				     "version %u.%u (only 1.1)", p,
				     version >> 16, version & 0xffff);
	if (hdr_size < VDI_HEADER1_SIZE || hdr_size > 0x10000)
		return vmb_error_set(VMB_ECORRUPT, "%s: bad VDI header size "
				     "%u", p, hdr_size);
	v->type = vmb_le32(h + OFF_TYPE);
	if (v->type == VDI_TYPE_UNDO)
		return vmb_error_set(VMB_ENOTSUP, "%s: VDI undo images are "
				     "not supported", p);
	if (v->type != VDI_TYPE_DYNAMIC && v->type != VDI_TYPE_FIXED &&
	    v->type != VDI_TYPE_DIFF)
		return vmb_error_set(VMB_ECORRUPT, "%s: unknown VDI image "
				     "type %u", p, v->type);
	v->block_size = vmb_le32(h + OFF_BLOCK_SIZE);
	if (!vmb_is_pow2(v->block_size) || v->block_size < VDI_MIN_BLOCK ||
	    v->block_size > VDI_MAX_BLOCK)
		return vmb_error_set(VMB_ECORRUPT, "%s: bad VDI block size "
				     "%u (power of two from 512 to 256 MiB "
				     "expected)", p, v->block_size);
	v->block_extra = vmb_le32(h + OFF_BLOCK_EXTRA);
	if (v->block_extra % VDI_SECTOR || v->block_extra > v->block_size)
		return vmb_error_set(VMB_ECORRUPT, "%s: bad VDI extra block "
				     "data size %u", p, v->block_extra);
	v->disk_size = vmb_le64(h + OFF_DISK_SIZE);
	if (v->disk_size > VMB_DISK_MAX_SIZE)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI disk size %llu "
				     "is absurd", p,
				     (unsigned long long)v->disk_size);
	needed = v->disk_size / v->block_size +
		 (v->disk_size % v->block_size ? 1 : 0);
	if (nb < needed)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI block map has %u "
				     "entries but the disk needs %llu", p, nb,
				     (unsigned long long)needed);
	if (nb >= VDI_BLOCK_ZERO)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI block count %u "
				     "is absurd", p, nb);
	if (ob % VDI_SECTOR)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI block map offset "
				     "%u is not 512-aligned", p, ob);
	if (od % VDI_SECTOR)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI data offset %u is "
				     "not 512-aligned", p, od);
	if (ob < VDI_PREHEADER_SIZE + (uint64_t)hdr_size)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI block map offset "
				     "%u overlaps the header", p, ob);
	map_end = (uint64_t)ob + (uint64_t)nb * 4;
	if (map_end > file_size)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI block map (%u "
				     "entries at %u) extends past the end of "
				     "the file (%llu bytes)", p, nb, ob,
				     (unsigned long long)file_size);
	if (od < map_end)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI data offset %u "
				     "overlaps the block map", p, od);
	if (od > file_size)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI data offset %u is "
				     "past the end of the file", p, od);
	*nalloc_hdr = vmb_le32(h + OFF_NALLOC);
	if (*nalloc_hdr > nb)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI header says %u "
				     "blocks allocated of %u", p, *nalloc_hdr,
				     nb);
	stride = (uint64_t)v->block_size + v->block_extra;
	if (*nalloc_hdr && (uint64_t)(*nalloc_hdr - 1) * stride >
			   file_size - od)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI header says %u "
				     "blocks allocated but the file holds "
				     "fewer", p, *nalloc_hdr);
	memcpy(v->uuid, h + OFF_UUID_CREATE, 16);
	memcpy(v->uuid_link, h + OFF_UUID_LINK, 16);
	if (v->type == VDI_TYPE_DIFF && uuid_is_null(v->uuid_link))
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI differencing image "
				     "without a parent uuid", p);
	if (v->type == VDI_TYPE_DIFF &&
	    memcmp(v->uuid_link, v->uuid, 16) == 0)
		return vmb_error_set(VMB_ECORRUPT, "%s: VDI differencing image "
				     "is its own parent", p);
	v->nblocks = (uint32_t)needed;
	v->off_data = od;
	*nblocks_total = nb;
	*off_blocks = ob;
	return 0;
}

/*
 * Read and check the block map: every data entry below the allocated
 * count, used once, and its data (the part inside the disk) in the file.
 */
static int vdi_load_map(struct vdi *v, uint64_t off_blocks,
			uint32_t nb_total, uint32_t nalloc_hdr,
			uint64_t file_size)
{
	const char *p = v->path;
	uint64_t stride = (uint64_t)v->block_size + v->block_extra;
	uint8_t *raw = NULL, *seen = NULL;
	const size_t chunk = 65536; /* entries per pread */
	uint32_t i = 0;
	int r = 0;

	v->map = vmb_malloc(v->nblocks ? (size_t)v->nblocks * 4 : 4);
	raw = vmb_malloc(chunk * 4);
	seen = vmb_calloc((size_t)nalloc_hdr / 8 + 1, 1);
	if (!v->map || !raw || !seen) {
		r = VMB_ENOMEM;
		goto out;
	}
	/* entries past the disk's blocks are checked too (qemu-img check
	 * does), but not kept */
	while (i < nb_total) {
		size_t n = VMB_MIN(chunk, (size_t)(nb_total - i));
		int64_t got = vmb_pread_full(v->fd, raw, n * 4,
					     off_blocks + (uint64_t)i * 4);
		if (got < 0) {
			r = vmb_error_set(VMB_EIO, "cannot read %s: %s", p,
					  strerror((int)-got));
			goto out;
		}
		if ((size_t)got != n * 4) {
			r = vmb_error_set(VMB_ECORRUPT, "%s: VDI block map is "
					  "truncated", p);
			goto out;
		}
		for (size_t k = 0; k < n; k++, i++) {
			uint32_t e = vmb_le32(raw + 4 * k);
			if (e < VDI_BLOCK_ZERO) {
				uint64_t need, end;
				if (e >= nalloc_hdr) {
					r = vmb_error_set(VMB_ECORRUPT,
						"%s: VDI block %u maps to data "
						"block %u beyond the %u "
						"allocated", p, i, e,
						nalloc_hdr);
					goto out;
				}
				if (seen[e / 8] & (1u << (e % 8))) {
					r = vmb_error_set(VMB_ECORRUPT,
						"%s: VDI data block %u is "
						"used twice (block %u)", p, e,
						i);
					goto out;
				}
				seen[e / 8] |= (uint8_t)(1u << (e % 8));
				need = i < v->nblocks ?
				       VMB_MIN((uint64_t)v->block_size,
					       v->disk_size -
					       (uint64_t)i * v->block_size) :
				       0;
				end = v->off_data + (uint64_t)e * stride +
				      v->block_extra + need;
				if (end > file_size) {
					r = vmb_error_set(VMB_ECORRUPT,
						"%s: VDI block %u data (at "
						"%llu) is past the end of "
						"the file", p, i,
						(unsigned long long)(end -
								     need));
					goto out;
				}
				if (i < v->nblocks)
					v->nallocated++;
			}
			if (i < v->nblocks)
				v->map[i] = e;
		}
	}
	if (v->type == VDI_TYPE_FIXED && v->nallocated != v->nblocks) {
		r = vmb_error_set(VMB_ECORRUPT, "%s: fixed VDI image with "
				  "unallocated blocks", p);
		goto out;
	}
out:
	free(raw);
	free(seen);
	return r;
}

static int vdi_open(const char *path, const vmb_layer_open_options *o,
		    void **layer, vmb_layer_info *info)
{
	struct vdi *v;
	struct stat st;
	uint8_t h[VDI_HEADER_END];
	uint64_t off_blocks = 0;
	uint32_t nb_total = 0, nalloc_hdr = 0;
	int64_t n;
	int r;

	v = vmb_calloc(1, sizeof *v);
	if (!v)
		return VMB_ENOMEM;
	v->fd = -1;
	v->path = vmb_strdup(path);
	if (!v->path) {
		r = VMB_ENOMEM;
		goto out;
	}
	v->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (v->fd < 0) {
		int e = errno;
		r = vmb_error_set(e == ENOENT ? VMB_ENOTFOUND :
				  e == EACCES ? VMB_EACCES : VMB_EIO,
				  "cannot open %s: %s", path, strerror(e));
		goto out;
	}
	if (fstat(v->fd, &st) != 0) {
		r = vmb_error_set(VMB_EIO, "cannot stat %s: %s", path,
				  strerror(errno));
		goto out;
	}
	n = vmb_pread_full(v->fd, h, sizeof h, 0);
	if (n < 0) {
		r = vmb_error_set(VMB_EIO, "cannot read %s: %s", path,
				  strerror((int)-n));
		goto out;
	}
	if ((size_t)n < sizeof h) {
		r = vmb_error_set(VMB_ECORRUPT, "%s: VDI header is truncated "
				  "(%lld bytes)", path, (long long)n);
		goto out;
	}
	r = vdi_parse_header(v, h, (uint64_t)st.st_size, &nb_total,
			     &off_blocks, &nalloc_hdr);
	if (r)
		goto out;
	r = vdi_load_map(v, off_blocks, nb_total, nalloc_hdr,
			 (uint64_t)st.st_size);
	if (r)
		goto out;
	info->virtual_size = v->disk_size;
	info->has_uuid = 1;
	memcpy(info->uuid, v->uuid, 16);
	if (v->type == VDI_TYPE_DIFF) {
		info->parent_by_uuid = 1;
		memcpy(info->parent_uuid, v->uuid_link, 16);
	}
	*layer = v;
	v = NULL;
out:
	vdi_free(v);
	return r;
}

static int vdi_kind(uint32_t e)
{
	if (e == VDI_BLOCK_FREE)
		return VMB_EXTENT_HOLE;
	if (e == VDI_BLOCK_ZERO)
		return VMB_EXTENT_ZERO;
	return VMB_EXTENT_DATA;
}

static int vdi_map(void *layer, uint64_t offset, uint64_t length,
		   vmb_extent_fn fn, void *payload)
{
	struct vdi *v = layer;
	uint64_t pos = offset, end;

	if (!vmb_range_ok(offset, length, v->disk_size))
		return vmb_error_set(VMB_EINVAL, "%s: map beyond the end of "
				     "the disk", v->path);
	end = offset + length;
	while (pos < end) {
		uint64_t b = pos / v->block_size;
		int kind = vdi_kind(v->map[b]);
		uint64_t stop = (b + 1) * v->block_size;
		vmb_extent e;
		/* merge following blocks of the same kind */
		while (stop < end && vdi_kind(v->map[stop / v->block_size]) ==
				     kind)
			stop += v->block_size;
		if (stop > end)
			stop = end;
		e = (vmb_extent){ pos, stop - pos, kind, 0 };
		if (fn(&e, payload))
			return 1;
		pos = stop;
	}
	return 0;
}

static int vdi_read(void *layer, void *buf, uint64_t offset, size_t length)
{
	struct vdi *v = layer;
	uint8_t *out = buf;
	uint64_t pos = offset, end;
	uint64_t stride = (uint64_t)v->block_size + v->block_extra;

	if (!vmb_range_ok(offset, length, v->disk_size))
		return vmb_error_set(VMB_EINVAL, "%s: read beyond the end of "
				     "the disk", v->path);
	end = offset + length;
	while (pos < end) {
		uint64_t b = pos / v->block_size;
		uint64_t in = pos % v->block_size;
		uint64_t stop = VMB_MIN((b + 1) * v->block_size, end);
		uint32_t e = v->map[b];
		uint64_t host;
		int64_t got;

		if (e >= VDI_BLOCK_ZERO) {
			/* not data: the core does not ask; read as zeros */
			memset(out + (pos - offset), 0, (size_t)(stop - pos));
			pos = stop;
			continue;
		}
		host = v->off_data + (uint64_t)e * stride + v->block_extra + in;
		/* coalesce blocks that follow each other in the file */
		while (stop < end && !v->block_extra) {
			uint32_t ne = v->map[stop / v->block_size];
			if (ne >= VDI_BLOCK_ZERO ||
			    ne != e + (uint32_t)((stop - pos + in) /
						 v->block_size))
				break;
			stop = VMB_MIN(stop + v->block_size, end);
		}
		got = vmb_pread_full(v->fd, out + (pos - offset),
				     (size_t)(stop - pos), host);
		if (got < 0)
			return vmb_error_set(VMB_EIO, "cannot read %s at %llu: "
					     "%s", v->path,
					     (unsigned long long)host,
					     strerror((int)-got));
		if ((uint64_t)got != stop - pos)
			return vmb_error_set(VMB_EIO, "%s: VDI file shrank "
					     "(short read at %llu)", v->path,
					     (unsigned long long)(host +
						(uint64_t)got));
		pos = stop;
	}
	return 0;
}

static int vdi_describe(void *layer, char **json)
{
	struct vdi *v = layer;
	char u[37], pu[37];
	vmb_buf b;

	vdi_uuid_str(v->uuid, u);
	vmb_buf_init(&b);
	vmb_buf_printf(&b, "\"version\":\"1.1\",\"image_type\":\"%s\","
		       "\"block_size\":%u,\"blocks_allocated\":%u,"
		       "\"uuid\":\"%s\"", vdi_type_name(v->type),
		       v->block_size, v->nallocated, u);
	if (v->block_extra)
		vmb_buf_printf(&b, ",\"block_extra\":%u", v->block_extra);
	if (v->type == VDI_TYPE_DIFF) {
		vdi_uuid_str(v->uuid_link, pu);
		vmb_buf_printf(&b, ",\"parent_uuid\":\"%s\"", pu);
	}
	*json = vmb_buf_detach(&b);
	return *json ? 0 : VMB_ENOMEM;
}

static void vdi_close(void *layer)
{
	vdi_free(layer);
}

/* ---- writer ---- */

struct vdi_w {
	int fd;
	char *path;
	uint64_t size;
	uint32_t block_size;
	uint32_t nblocks;
	uint32_t nalloc;
	uint64_t off_data;
	uint32_t *map;   /* physical index + 1; 0 = free (calloc'd, lazy) */
	uint8_t *buf;    /* the block being assembled */
	int64_t cur;     /* its index, or -1 */
	int cur_data;    /* it holds non-zero bytes */
	/* vmb_disk__vdi_create_layer */
	int has_uuid, diff;
	uint8_t uuid[16], parent[16], parent_modify[16];
};

#define VDI_W_ZERO 0xffffffffu /* map: a zero block (vmb_disk__vdi_zero) */

static int vdi_w_error(struct vdi_w *w, int e)
{
	return vmb_error_set(e == ENOSPC || e == EFBIG ? VMB_ENOSPC : VMB_EIO,
			     "cannot write %s: %s", w->path, strerror(e));
}

static void vdi_w_free(struct vdi_w *w, int remove)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (remove && w->path)
		unlink(w->path);
	free(w->map);
	free(w->buf);
	free(w->path);
	free(w);
}

/* Make the IPRT-layout bytes of a fresh random (version 4) uuid. */
static void vdi_new_uuid(uint8_t u[16])
{
	uint8_t t;
	randombytes_buf(u, 16);
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	/* RFC byte order to RTUUID: first three fields little endian */
	t = u[0]; u[0] = u[3]; u[3] = t;
	t = u[1]; u[1] = u[2]; u[2] = t;
	t = u[4]; u[4] = u[5]; u[5] = t;
	t = u[6]; u[6] = u[7]; u[7] = t;
}

static int vdi_create(const char *path, uint64_t size,
		      const vmb_layer_create_options *o, void **writer)
{
	struct vdi_w *w;
	uint32_t bs = VDI_DEFAULT_BLOCK;
	uint64_t nb, map_end, off_data;
	int r;

	if (o && o->cluster_size) {
		if (!vmb_is_pow2(o->cluster_size) ||
		    o->cluster_size < 65536 || o->cluster_size > (64u << 20))
			return vmb_error_set(VMB_EINVAL, "%s: VDI block size "
					     "%u must be a power of two from "
					     "64 KiB to 64 MiB", path,
					     o->cluster_size);
		bs = o->cluster_size;
	}
	nb = size / bs + (size % bs ? 1 : 0);
	if (size > VMB_DISK_MAX_SIZE || nb > 0x3fffffffu)
		return vmb_error_set(VMB_EINVAL, "%s: disk too large for VDI",
				     path);
	/* data area aligned to 1 MiB like VirtualBox, 512 if it must be */
	map_end = 0x200 + nb * 4;
	off_data = (map_end + VDI_DATA_ALIGN - 1) / VDI_DATA_ALIGN *
		   VDI_DATA_ALIGN;
	if (off_data > UINT32_MAX)
		off_data = (map_end + VDI_SECTOR - 1) / VDI_SECTOR * VDI_SECTOR;
	if (off_data > UINT32_MAX)
		return vmb_error_set(VMB_EINVAL, "%s: disk too large for VDI",
				     path);
	if (sodium_init() < 0)
		return vmb_error_set(VMB_EGENERIC, "cannot initialise "
				     "libsodium");
	w = vmb_calloc(1, sizeof *w);
	if (!w)
		return VMB_ENOMEM;
	w->fd = -1;
	w->cur = -1;
	w->size = size;
	w->block_size = bs;
	w->nblocks = (uint32_t)nb;
	w->off_data = off_data;
	w->path = vmb_strdup(path);
	w->map = vmb_calloc(nb ? (size_t)nb : 1, sizeof *w->map);
	w->buf = vmb_malloc(bs);
	if (!w->path || !w->map || !w->buf) {
		vdi_w_free(w, 0);
		return VMB_ENOMEM;
	}
	w->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		int e = errno;
		r = vmb_error_set(e == EEXIST ? VMB_EEXISTS :
				  e == EACCES ? VMB_EACCES : VMB_EIO,
				  "cannot create %s: %s", path, strerror(e));
		vdi_w_free(w, 0);
		return r;
	}
	*writer = w;
	return 0;
}

/* Allocate data blocks for count whole blocks from src and write them. */
static int vdi_w_put(struct vdi_w *w, uint64_t first, uint32_t count,
		     const uint8_t *src)
{
	uint64_t host = w->off_data + (uint64_t)w->nalloc * w->block_size;
	int r = vmb_pwrite_full(w->fd, src, (size_t)count * w->block_size,
				host);
	if (r < 0)
		return vdi_w_error(w, -r);
	for (uint32_t i = 0; i < count; i++)
		w->map[first + i] = ++w->nalloc;
	return 0;
}

static int vdi_w_flush(struct vdi_w *w)
{
	int r = 0;
	if (w->cur >= 0 && w->cur_data)
		r = vdi_w_put(w, (uint64_t)w->cur, 1, w->buf);
	w->cur = -1;
	w->cur_data = 0;
	return r;
}

static int vdi_write(void *writer, uint64_t offset, const void *buf,
		     size_t length)
{
	struct vdi_w *w = writer;
	const uint8_t *p = buf;
	uint64_t bs = w->block_size;
	uint64_t pos = offset, end;
	int r;

	if (!vmb_range_ok(offset, length, w->size))
		return vmb_error_set(VMB_EINVAL, "%s: write beyond the end of "
				     "the disk", w->path);
	end = offset + length;
	while (pos < end) {
		uint64_t b = pos / bs, in = pos % bs;
		uint64_t stop = VMB_MIN((b + 1) * bs, end);

		if ((int64_t)b != w->cur && (r = vdi_w_flush(w)) != 0)
			return r;
		if (w->map[b])
			return vmb_error_set(VMB_EINVAL, "%s: VDI block %llu "
					     "written twice", w->path,
					     (unsigned long long)b);
		if (!in && stop - pos == bs) {
			/* whole blocks straight from the caller's buffer:
			 * a run of non-zero ones goes out in one write */
			uint64_t run = pos;
			while (run + bs <= end &&
			       !vmb_is_zero(p + (run - offset), (size_t)bs))
				run += bs;
			if (run > pos) {
				r = vdi_w_put(w, b, (uint32_t)((run - pos) / bs),
					      p + (pos - offset));
				if (r)
					return r;
				pos = run;
			} else {
				pos += bs; /* an all-zero block stays free */
			}
			continue;
		}
		/* part of a block: assemble it in the buffer */
		if (w->cur != (int64_t)b) {
			memset(w->buf, 0, (size_t)bs);
			w->cur = (int64_t)b;
			w->cur_data = 0;
		}
		memcpy(w->buf + in, p + (pos - offset), (size_t)(stop - pos));
		if (!vmb_is_zero(p + (pos - offset), (size_t)(stop - pos)))
			w->cur_data = 1;
		pos = stop;
		if (pos % bs == 0 || pos == w->size) {
			if ((r = vdi_w_flush(w)) != 0)
				return r;
		}
	}
	return 0;
}

static void vdi_abort(void *writer)
{
	vdi_w_free(writer, 1);
}

static int vdi_finish(void *writer)
{
	struct vdi_w *w = writer;
	uint8_t h[0x200], *chunk = NULL;
	const size_t per = 16384; /* map entries per write */
	uint64_t file_end;
	int r;

	if ((r = vdi_w_flush(w)) != 0)
		goto fail;
	/* block map */
	chunk = vmb_malloc(per * 4);
	if (!chunk) {
		r = VMB_ENOMEM;
		goto fail;
	}
	for (uint64_t i = 0; i < w->nblocks; i += per) {
		size_t n = (size_t)VMB_MIN((uint64_t)per, w->nblocks - i);
		for (size_t k = 0; k < n; k++) {
			uint32_t m = w->map[i + k];
			vmb_put_le32(chunk + 4 * k, m == VDI_W_ZERO ?
				     VDI_BLOCK_ZERO : m ? m - 1 :
				     VDI_BLOCK_FREE);
		}
		r = vmb_pwrite_full(w->fd, chunk, n * 4, 0x200 + i * 4);
		if (r < 0) {
			r = vdi_w_error(w, -r);
			goto fail;
		}
	}
	/* header */
	memset(h, 0, sizeof h);
	memcpy(h, vdi_texts[0], strlen(vdi_texts[0]));
	h[strlen(vdi_texts[0])] = '\n';
	vmb_put_le32(h + OFF_SIGNATURE, VDI_SIGNATURE);
	vmb_put_le32(h + OFF_VERSION, VDI_VERSION_1_1);
	vmb_put_le32(h + OFF_HDR_SIZE, VDI_HEADER1_SIZE);
	vmb_put_le32(h + OFF_TYPE, w->diff ? VDI_TYPE_DIFF : VDI_TYPE_DYNAMIC);
	vmb_put_le32(h + OFF_FLAGS, 0);
	vmb_put_le32(h + OFF_BLOCKS, 0x200);
	vmb_put_le32(h + OFF_DATA, (uint32_t)w->off_data);
	vmb_put_le32(h + OFF_SECTOR_SIZE, VDI_SECTOR);
	vmb_put_le64(h + OFF_DISK_SIZE, w->size);
	vmb_put_le32(h + OFF_BLOCK_SIZE, w->block_size);
	vmb_put_le32(h + OFF_BLOCK_EXTRA, 0);
	vmb_put_le32(h + OFF_NBLOCKS, w->nblocks);
	vmb_put_le32(h + OFF_NALLOC, w->nalloc);
	if (w->has_uuid)
		memcpy(h + OFF_UUID_CREATE, w->uuid, 16);
	else
		vdi_new_uuid(h + OFF_UUID_CREATE);
	vdi_new_uuid(h + OFF_UUID_MODIFY);
	if (w->diff) {
		memcpy(h + OFF_UUID_LINK, w->parent, 16);
		memcpy(h + OFF_UUID_PARENT_MODIFY, w->parent_modify, 16);
	}
	r = vmb_pwrite_full(w->fd, h, sizeof h, 0);
	if (r < 0) {
		r = vdi_w_error(w, -r);
		goto fail;
	}
	file_end = w->off_data + (uint64_t)w->nalloc * w->block_size;
	if (ftruncate(w->fd, (off_t)file_end) != 0) {
		r = vdi_w_error(w, errno);
		goto fail;
	}
	r = vmb_disk__sync_close(&w->fd, w->path);
	if (r)
		goto fail;
	free(chunk);
	vdi_w_free(w, 0);
	return 0;
fail:
	free(chunk);
	vdi_w_free(w, 1);
	return r;
}

/* ---- native snapshot layers (vdi.h) ---- */

int vmb_disk__vdi_ids(const char *path, vmb_vdi_ids *out)
{
	vmb_layer_open_options o = { 1, NULL };
	vmb_layer_info info;
	void *l = NULL;
	struct vdi *v;
	int64_t n;
	int r;

	memset(out, 0, sizeof *out);
	memset(&info, 0, sizeof info);
	if ((r = vdi_open(path, &o, &l, &info)))
		return r;
	v = l;
	out->type = v->type;
	out->block_size = v->block_size;
	out->disk_size = v->disk_size;
	memcpy(out->uuid, v->uuid, 16);
	if (v->type == VDI_TYPE_DIFF)
		memcpy(out->parent, v->uuid_link, 16);
	n = vmb_pread_full(v->fd, out->modify, 16, OFF_UUID_MODIFY);
	if (n == 16 && v->type == VDI_TYPE_DIFF)
		n = vmb_pread_full(v->fd, out->parent_modify, 16,
				   OFF_UUID_PARENT_MODIFY);
	if (n != 16)
		r = vmb_error_set(VMB_EIO, "cannot read %s", path);
	vdi_close(l);
	vmb_disk__layer_info_free(&info);
	return r;
}

int vmb_disk__vdi_create_layer(const char *path, uint64_t size,
			       uint32_t block_size, const uint8_t *uuid,
			       const uint8_t *parent,
			       const uint8_t *parent_modify, void **writer)
{
	vmb_layer_create_options o = VMB_DISK_WRITER_INIT;
	struct vdi_w *w;
	int r;

	o.cluster_size = block_size;
	if ((r = vdi_create(path, size, &o, writer)))
		return r;
	w = *writer;
	if (uuid) {
		w->has_uuid = 1;
		memcpy(w->uuid, uuid, 16);
	}
	if (parent) {
		w->diff = 1;
		memcpy(w->parent, parent, 16);
		if (parent_modify)
			memcpy(w->parent_modify, parent_modify, 16);
	}
	return 0;
}

int vmb_disk__vdi_zero(void *writer, uint64_t offset, uint64_t length)
{
	struct vdi_w *w = writer;
	int r;

	if (!vmb_range_ok(offset, length, w->size) || offset % w->block_size ||
	    (length % w->block_size && offset + length != w->size))
		return vmb_error_set(VMB_EINVAL, "%s: zero range not in whole "
				     "blocks", w->path);
	if ((r = vdi_w_flush(w)))
		return r;
	for (uint64_t b = offset / w->block_size;
	     b * w->block_size < offset + length; b++) {
		if (w->map[b])
			return vmb_error_set(VMB_EINVAL, "%s: VDI block %llu "
					     "written twice", w->path,
					     (unsigned long long)b);
		w->map[b] = VDI_W_ZERO;
	}
	return 0;
}

const vmb_disk_format vmb_disk__vdi_format = {
	.version = VMB_DISK_FORMAT_VERSION,
	.name = "vdi",
	.extension = "vdi",
	.probe = vdi_probe,
	.open = vdi_open,
	.map = vdi_map,
	.read = vdi_read,
	.describe = vdi_describe,
	.close = vdi_close,
	.create = vdi_create,
	.write = vdi_write,
	.finish = vdi_finish,
	.abort = vdi_abort,
};
