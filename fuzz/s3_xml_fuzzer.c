/*
 * Fuzz target: the XML of S3 answers (lib/target/s3_xml.c): list pages,
 * error bodies, upload ids, timestamps.  The server is hostile.  Every
 * listed name must be a valid object name below the listed prefix; the
 * reader must stay inside the buffer (the copy has no NUL after it, so
 * ASan sees any over-read).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "target/s3_xml.h"
#include "target/target.h"
#include "vmbackup/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const tags[] = { "Code", "UploadId", "Message",
					    "LastModified", "ETag" };
	char *buf = malloc(size ? size : 1), *str;
	vmb_s3_list l;
	const char *vs, *ve;
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (vmb_s3__parse_list(buf, size, "pre/fix/chunks/", 8, "s3:fuzz",
			       &l) == 0) {
		for (size_t i = 0; i < l.n; i++)
			if (!l.e[i].name || strncmp(l.e[i].name, "chunks/", 7) ||
			    !vmb_target__name_ok(l.e[i].name) || l.e[i].mtime < 0)
				abort();
		if (l.token && !l.truncated)
			abort();
		vmb_s3__list_free(&l);
	} else if (l.n || l.e || l.token) {
		abort();
	}
	vmb_error_clear();
	for (size_t t = 0; t < sizeof tags / sizeof *tags; t++)
		if (vmb_s3__xml_find(buf, buf + size, tags[t], &vs, &ve)) {
			if (vs < buf || ve > buf + size || vs > ve)
				abort();
			free(vmb_s3__xml_text(vs, ve));
		}
	free(vmb_s3__xml_text(buf, buf + size));
	/* timestamps are read from a NUL-terminated copy of <= 39 bytes */
	if (size < 40) {
		str = malloc(size + 1);
		if (str) {
			memcpy(str, data, size);
			str[size] = 0;
			(void)vmb_s3__iso8601(str);
			free(str);
		}
	}
	free(buf);
	return 0;
}
