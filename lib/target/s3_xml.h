/*
 * Internal: the XML of S3 answers (ListObjectsV2 pages, error bodies,
 * CreateMultipartUpload, CopyObject).  The server is not trusted: every
 * reader stays inside [data, data + len), needs no NUL terminator, and
 * refuses malformed text instead of guessing (fuzz/s3_xml_fuzzer.c).
 */
#ifndef VMB_LIB_TARGET_S3_XML_H
#define VMB_LIB_TARGET_S3_XML_H

#include <stddef.h>
#include <stdint.h>

/* The first <tag>...</tag> in [p, end): 1 and the content span, else 0
 * (also when the first opening tag is never closed). */
int vmb_s3__xml_find(const char *p, const char *end, const char *tag,
		     const char **vs, const char **ve);

/* XML text with its entities decoded, malloc'd; NULL if malformed (an
 * unknown entity, a character reference of 0 or past U+10FFFF). */
char *vmb_s3__xml_text(const char *s, const char *e);

/* "2024-01-02T03:04:05.000Z" -> Unix seconds; -1 if malformed. */
int64_t vmb_s3__iso8601(const char *s);

typedef struct vmb_s3_entry {
	char *name;     /* object name below the repository prefix */
	uint64_t size;
	int64_t mtime;  /* 0 when absent or malformed */
} vmb_s3_entry;

typedef struct vmb_s3_list {
	vmb_s3_entry *e;
	size_t n;
	int truncated;  /* <IsTruncated>true</IsTruncated> */
	char *token;    /* NextContinuationToken when truncated, or NULL */
} vmb_s3_list;

/*
 * One ListObjectsV2 page.  Keys outside @full (the listed prefix, the
 * repository's prefix of @plen bytes included) or that are no valid object
 * names are left out.  0, or VMB_ECORRUPT / VMB_ENOMEM naming @url with
 * nothing in @out.  Free with vmb_s3__list_free().
 */
int vmb_s3__parse_list(const char *data, size_t len, const char *full,
		       size_t plen, const char *url, vmb_s3_list *out);
void vmb_s3__list_free(vmb_s3_list *l);

#endif
