/*
 * Partition tables (MBR with extended/logical partitions, GPT) and file
 * system signatures, read from a disk that is treated as hostile: every
 * offset is computed with checked arithmetic and checked against the
 * disk's size, GPT headers and entry arrays must have good CRCs, entry
 * counts and sizes are bounded, extended chains are followed a bounded
 * number of times.  Fuzzed by fuzz/partition_fuzzer.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "guestfs/guestfs_internal.h"
#include "common/util.h"

#define SECTOR 512u

struct plist {
	vmb_partition *v;
	size_t n, cap;
};

static int plist_add(struct plist *l, const vmb_partition *p)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		vmb_partition *v = vmb_realloc(l->v, cap * sizeof *v);
		if (!v)
			return VMB_ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *p;
	return 0;
}

/* [lba, lba+count) sectors of @ss bytes as bytes inside a disk of @size
 * bytes; false when it overflows or does not fit. */
static bool sectors_ok(uint64_t lba, uint64_t count, uint64_t ss,
		       uint64_t size, uint64_t *off, uint64_t *len)
{
	if (vmb_mul_overflow(lba, ss, off) || vmb_mul_overflow(count, ss, len))
		return false;
	return *len > 0 && vmb_range_ok(*off, *len, size);
}

/* ---- MBR ---- */

static bool mbr_is_extended(unsigned t)
{
	return t == 0x05 || t == 0x0f || t == 0x85;
}

/* Does sector 0 look like a partition table at all?  A FAT or NTFS boot
 * sector also ends in 55 AA, and its "entries" are boot code. */
static bool mbr_plausible(const uint8_t *s)
{
	if (s[510] != 0x55 || s[511] != 0xaa)
		return false;
	if (memcmp(s + 3, "NTFS    ", 8) == 0 ||
	    memcmp(s + 3, "EXFAT   ", 8) == 0 ||
	    memcmp(s + 54, "FAT", 3) == 0 || memcmp(s + 82, "FAT32", 5) == 0)
		return false;
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = s + 446 + 16 * i;
		if (e[0] != 0x00 && e[0] != 0x80)
			return false; /* boot flag: only these two exist */
	}
	return true;
}

static int mbr_logical(vmb_part_read_fn rd, void *pl, uint64_t size,
		       uint64_t ext_lba, uint64_t ext_len, struct plist *l)
{
	uint8_t s[SECTOR];
	uint64_t ebr = ext_lba; /* absolute LBA of the current EBR */
	unsigned number = 5;
	for (unsigned hop = 0; hop < VMB_PART_MAX_LOGICAL; hop++) {
		uint64_t off, len;
		int rc;
		if (!sectors_ok(ebr, 1, SECTOR, size, &off, &len))
			return 0;
		if ((rc = rd(pl, s, off, SECTOR)) != 0)
			return rc;
		if (s[510] != 0x55 || s[511] != 0xaa)
			return 0;
		const uint8_t *e0 = s + 446, *e1 = s + 462;
		uint64_t st = vmb_le32(e0 + 8), cnt = vmb_le32(e0 + 12);
		uint64_t abs;
		if (e0[4] && cnt && !vmb_add_overflow(ebr, st, &abs) &&
		    st && sectors_ok(abs, cnt, SECTOR, size, &off, &len)) {
			vmb_partition p;
			memset(&p, 0, sizeof p);
			p.number = number;
			p.offset = off;
			p.length = len;
			p.mbr_type = e0[4];
			if ((rc = plist_add(l, &p)) != 0)
				return rc;
		} else if (e0[4]) {
			vmb_log(VMB_LOG_DEBUG, "logical partition %u does not "
				"fit the disk; left out", number);
		}
		number++;
		/* the next EBR, relative to the extended partition's start,
		 * must lie inside it and after the current one */
		uint64_t next = vmb_le32(e1 + 8), nabs;
		if (!mbr_is_extended(e1[4]) || !next ||
		    vmb_add_overflow(ext_lba, next, &nabs) || nabs <= ebr ||
		    next >= ext_len)
			return 0;
		ebr = nabs;
	}
	vmb_log(VMB_LOG_WARN, "more than %u logical partitions: the rest "
		"is left out", VMB_PART_MAX_LOGICAL);
	return 0;
}

static int mbr_parse(vmb_part_read_fn rd, void *pl, uint64_t size,
		     const uint8_t *s, struct plist *l)
{
	int rc, ext_done = 0;
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = s + 446 + 16 * i;
		uint64_t st = vmb_le32(e + 8), cnt = vmb_le32(e + 12), off, len;
		if (!e[4] || !cnt)
			continue;
		if (!st || !sectors_ok(st, cnt, SECTOR, size, &off, &len)) {
			vmb_log(VMB_LOG_DEBUG, "partition %d does not fit the "
				"disk; left out", i + 1);
			continue;
		}
		if (mbr_is_extended(e[4])) {
			if (!ext_done++ &&
			    (rc = mbr_logical(rd, pl, size, st, cnt, l)) != 0)
				return rc;
			continue;
		}
		vmb_partition p;
		memset(&p, 0, sizeof p);
		p.number = (unsigned)i + 1;
		p.offset = off;
		p.length = len;
		p.mbr_type = e[4];
		if ((rc = plist_add(l, &p)) != 0)
			return rc;
	}
	/* logical partitions were found after the primaries that follow
	 * the extended one: keep the list in number order */
	for (size_t i = 1; i < l->n; i++)
		for (size_t j = i; j > 0 && l->v[j - 1].number >
		     l->v[j].number; j--) {
			vmb_partition t = l->v[j];
			l->v[j] = l->v[j - 1];
			l->v[j - 1] = t;
		}
	return 0;
}

/* ---- GPT ---- */

static void guid_text(const uint8_t *g, char out[37])
{
	snprintf(out, 37, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 vmb_le32(g), vmb_le16(g + 4), vmb_le16(g + 6), g[8], g[9],
		 g[10], g[11], g[12], g[13], g[14], g[15]);
}

static bool is_zero_guid(const uint8_t *g)
{
	return vmb_is_zero(g, 16);
}

/* Check the GPT header in @h (one sector of @ss bytes, read from LBA
 * @lba) and read its entries.  1: parsed, 0: not a valid header. */
static int gpt_try(vmb_part_read_fn rd, void *pl, uint64_t size,
		   uint32_t ss, uint8_t *h, uint64_t lba, struct plist *l)
{
	uint32_t hs = vmb_le32(h + 12), crc = vmb_le32(h + 16);
	uint64_t my = vmb_le64(h + 24), elba = vmb_le64(h + 72);
	uint32_t count = vmb_le32(h + 80), esize = vmb_le32(h + 84);
	uint32_t ecrc = vmb_le32(h + 88);
	uint64_t bytes, off, len, sectors;
	uint8_t *ents;
	int rc;
	if (memcmp(h, "EFI PART", 8) != 0 || hs < 92 || hs > ss || my != lba)
		return 0;
	memset(h + 16, 0, 4);
	if ((uint32_t)crc32(0L, h, hs) != crc) {
		vmb_log(VMB_LOG_DEBUG, "GPT header at LBA %llu: bad CRC",
			(unsigned long long)lba);
		return 0;
	}
	if (!count || count > VMB_PART_MAX_GPT_ENTRIES || esize < 128 ||
	    esize > 4096 || esize % 8)
		return 0;
	bytes = (uint64_t)count * esize; /* <= 16 MiB: no overflow */
	if (bytes > VMB_PART_MAX_GPT_BYTES)
		return 0;
	sectors = (bytes + ss - 1) / ss;
	if (!sectors_ok(elba, sectors, ss, size, &off, &len))
		return 0;
	if (!(ents = vmb_malloc((size_t)bytes)))
		return VMB_ENOMEM;
	if ((rc = rd(pl, ents, off, (size_t)bytes)) != 0) {
		free(ents);
		return rc;
	}
	if ((uint32_t)crc32(0L, ents, (uInt)bytes) != ecrc) {
		vmb_log(VMB_LOG_DEBUG, "GPT entries at LBA %llu: bad CRC",
			(unsigned long long)elba);
		free(ents);
		return 0;
	}
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = ents + (size_t)i * esize;
		uint64_t first = vmb_le64(e + 32), last = vmb_le64(e + 40);
		vmb_partition p;
		if (is_zero_guid(e))
			continue;
		if (last < first || !sectors_ok(first, last - first + 1, ss,
						size, &off, &len)) {
			vmb_log(VMB_LOG_DEBUG, "GPT partition %u does not fit "
				"the disk; left out", i + 1);
			continue;
		}
		memset(&p, 0, sizeof p);
		p.number = i + 1;
		p.offset = off;
		p.length = len;
		guid_text(e, p.gpt_type);
		/* the name: UTF-16LE, up to 36 units in 128-byte entries;
		 * printable ASCII kept, anything else becomes '?' */
		size_t k = 0;
		for (size_t u = 0; u < 36 && k + 1 < sizeof p.name; u++) {
			uint16_t c = vmb_le16(e + 56 + 2 * u);
			if (!c)
				break;
			p.name[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
		p.name[k] = 0;
		if ((rc = plist_add(l, &p)) != 0) {
			free(ents);
			return rc;
		}
	}
	free(ents);
	return 1;
}

/* 1 and the partitions when a valid GPT (primary, else backup header)
 * with sectors of @ss bytes is found, 0 when none, or an error. */
static int gpt_parse(vmb_part_read_fn rd, void *pl, uint64_t size,
		     uint32_t ss, struct plist *l)
{
	uint8_t *h;
	uint64_t off, len;
	int rc = 0;
	if (size / ss < 3)
		return 0;
	if (!(h = vmb_malloc(ss)))
		return VMB_ENOMEM;
	uint64_t where[2] = { 1, size / ss - 1 };
	for (int i = 0; i < 2 && rc == 0; i++) {
		if (!sectors_ok(where[i], 1, ss, size, &off, &len))
			continue;
		if ((rc = rd(pl, h, off, ss)) != 0)
			break;
		rc = gpt_try(rd, pl, size, ss, h, where[i], l);
		if (rc == 1 && i == 1)
			vmb_log(VMB_LOG_WARN, "the primary GPT header is "
				"damaged; using the backup at the disk's end");
	}
	free(h);
	return rc;
}

int vmb_part__parse(vmb_part_read_fn rd, void *pl, uint64_t size,
		    int *scheme, vmb_partition **out, size_t *n)
{
	uint8_t s[SECTOR];
	struct plist l = { NULL, 0, 0 };
	bool protective = false;
	int rc;
	*scheme = VMB_PARTITION_NONE;
	*out = NULL;
	*n = 0;
	if (size < SECTOR)
		return 0;
	if ((rc = rd(pl, s, 0, SECTOR)) != 0)
		return rc;
	if (!mbr_plausible(s))
		return 0;
	for (int i = 0; i < 4; i++)
		protective |= s[446 + 16 * i + 4] == 0xee;
	if (protective) {
		static const uint32_t sizes[2] = { 512, 4096 };
		for (int i = 0; i < 2; i++) {
			rc = gpt_parse(rd, pl, size, sizes[i], &l);
			if (rc < 0)
				goto fail;
			if (rc == 1) {
				*scheme = VMB_PARTITION_GPT;
				goto done;
			}
		}
		vmb_log(VMB_LOG_WARN, "protective MBR without a valid GPT");
		return 0;
	}
	if ((rc = mbr_parse(rd, pl, size, s, &l)) != 0)
		goto fail;
	*scheme = VMB_PARTITION_MBR;
done:
	*out = l.v;
	*n = l.n;
	return 0;
fail:
	free(l.v);
	return rc;
}

/* ---- signatures ---- */

#define PROBE_BYTES (68u << 10) /* up to Btrfs' superblock at 64 KiB */

int vmb_part__probe(vmb_part_read_fn rd, void *pl, uint64_t off,
		    uint64_t len, const char **what)
{
	size_t n = len < PROBE_BYTES ? (size_t)len : PROBE_BYTES;
	uint8_t *b;
	int rc;
	*what = NULL;
	if (n < SECTOR)
		return 0;
	if (!(b = vmb_malloc(n)))
		return VMB_ENOMEM;
	if ((rc = rd(pl, b, off, n)) != 0)
		goto out;
	if (n >= 1024 + 1024 && vmb_le16(b + 1024 + 56) == 0xef53)
		*what = "ext";
	else if (memcmp(b + 3, "NTFS    ", 8) == 0)
		*what = "NTFS";
	else if (memcmp(b + 3, "EXFAT   ", 8) == 0)
		*what = "exFAT";
	else if (b[510] == 0x55 && b[511] == 0xaa &&
		 (memcmp(b + 54, "FAT", 3) == 0 ||
		  memcmp(b + 82, "FAT32", 5) == 0))
		*what = "FAT";
	else if (memcmp(b, "XFSB", 4) == 0)
		*what = "XFS";
	else if (memcmp(b, "LUKS\xba\xbe", 6) == 0)
		*what = "LUKS";
	else if (n >= 1024 && memcmp(b + 512 + 0, "LABELONE", 8) == 0)
		*what = "LVM";
	else if (n >= 4096 && memcmp(b + 4086, "SWAPSPACE2", 10) == 0)
		*what = "swap";
	else if (n >= 0x10048 && memcmp(b + 0x10040, "_BHRfS_M", 8) == 0)
		*what = "Btrfs";
	else if (n >= 0x8006 && memcmp(b + 0x8001, "CD001", 5) == 0)
		*what = "ISO 9660";
	else if (n >= 1026 && (memcmp(b + 1024, "H+", 2) == 0 ||
			       memcmp(b + 1024, "HX", 2) == 0))
		*what = "HFS+";
	else if (vmb_is_zero(b, n))
		*what = "blank";
out:
	free(b);
	return rc;
}
