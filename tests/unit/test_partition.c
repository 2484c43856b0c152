/*
 * The partition parser on the seed corpus (fuzz/corpora/partition/):
 * the tables sfdisk wrote come back with the right numbers, offsets,
 * types and names; damaged ones fall back or are refused as expected.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "guestfs/guestfs_internal.h"
#include "vmbackup/disk.h"

static int file_read(void *p, void *buf, uint64_t off, size_t len)
{
	FILE *f = p;
	memset(buf, 0, len);
	if (fseek(f, (long)off, SEEK_SET) != 0)
		return -1;
	(void)!fread(buf, 1, len, f);
	return 0;
}

static int parse(const char *name, int *scheme, vmb_partition **p, size_t *n)
{
	char path[4096];
	const char *src = getenv("SRCDIR");
	snprintf(path, sizeof path, "%s/fuzz/corpora/partition/%s",
		 src ? src : ".", name);
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "cannot open %s\n", path);
		return -1;
	}
	fseek(f, 0, SEEK_END);
	uint64_t size = (uint64_t)ftell(f);
	int rc = vmb_part__parse(file_read, f, size, scheme, p, n);
	fclose(f);
	return rc;
}

int main(void)
{
	vmb_partition *p;
	size_t n;
	int s;
	const char *what;

	/* MBR: two primaries (1, 3), the extended one (2) not listed, two
	 * logicals (5, 6), in number order */
	CHECK_OK(parse("mbr-logical.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_MBR);
	CHECK(n == 4);
	if (n == 4) {
		CHECK(p[0].number == 1 && p[0].offset == 4 * 512 &&
		      p[0].length == 16 * 512 && p[0].mbr_type == 0x83);
		CHECK(p[1].number == 3 && p[1].offset == 110 * 512 &&
		      p[1].mbr_type == 0x0c);
		CHECK(p[2].number == 5 && p[2].offset == 26 * 512 &&
		      p[2].length == 10 * 512 && p[2].mbr_type == 0x83);
		CHECK(p[3].number == 6 && p[3].offset == 40 * 512 &&
		      p[3].mbr_type == 0x07);
	}
	free(p);

	/* an EBR that links back to itself: the primaries and the first
	 * logical only, no endless walk */
	CHECK_OK(parse("mbr-ebr-loop.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_MBR && n == 3);
	free(p);

	/* entries past the end or overflowing: none */
	CHECK_OK(parse("mbr-far.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_MBR && n == 0);
	free(p);

	/* GPT */
	CHECK_OK(parse("gpt.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_GPT && n == 2);
	if (n == 2) {
		CHECK(p[0].number == 1 && p[0].offset == 34 * 512 &&
		      p[0].length == 20 * 512);
		CHECK(strcmp(p[0].gpt_type,
			     "0fc63daf-8483-4772-8e79-3d69d8477de4") == 0);
		CHECK(strcmp(p[0].name, "root") == 0);
		CHECK(p[1].number == 2 && p[1].offset == 60 * 512 &&
		      p[1].length == 30 * 512);
	}
	free(p);

	/* a damaged primary header: the backup gives the same table */
	CHECK_OK(parse("gpt-bad-primary.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_GPT && n == 2);
	free(p);
	/* the primary's entry array damaged: its CRC fails, the backup
	 * header has an array of its own */
	CHECK_OK(parse("gpt-bad-entries.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_GPT && n == 2);
	free(p);
	/* an entry count past the bound in the primary: the backup */
	CHECK_OK(parse("gpt-huge-count.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_GPT && n == 2);
	free(p);

	/* not tables */
	CHECK_OK(parse("fat.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_NONE && n == 0 && !p);
	CHECK_OK(parse("protective-only.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_NONE && n == 0);
	CHECK_OK(parse("empty.img", &s, &p, &n));
	CHECK(s == VMB_PARTITION_NONE && n == 0);

	/* signatures */
	{
		char path[4096];
		const char *src = getenv("SRCDIR");
		snprintf(path, sizeof path, "%s/fuzz/corpora/partition/gpt.img",
			 src ? src : ".");
		FILE *f = fopen(path, "rb");
		CHECK(f != NULL);
		if (f) {
			CHECK_OK(vmb_part__probe(file_read, f, 34 * 512,
						 20 * 512, &what));
			CHECK(what && strcmp(what, "ext") == 0);
			CHECK_OK(vmb_part__probe(file_read, f, 60 * 512,
						 30 * 512, &what));
			CHECK(what && strcmp(what, "NTFS") == 0);
			CHECK_OK(vmb_part__probe(file_read, f, 100 * 512,
						 20 * 512, &what));
			CHECK(what && strcmp(what, "blank") == 0);
			fclose(f);
		}
	}
	return test_done();
}
