/* AWS SigV4 set-up for libcurl (see sigv4.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "common/util.h"
#include "sigv4.h"
/* after <curl/curl.h> (sigv4.h): curl_* are the loaded function table;
   the caller (s3_open, via vmb_curl_load) has loaded libcurl */
#include "curl_dl.h"

void vmb_sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
	uint8_t h[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(h, data ? data : (const void *)"", len);
	vmb_hex(h, sizeof h, out);
}

static int add_header(struct curl_slist **hdrs, const char *line)
{
	struct curl_slist *n = curl_slist_append(*hdrs, line);
	if (!n)
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	*hdrs = n;
	return 0;
}

int vmb_sigv4_setup(CURL *h, const vmb_sigv4 *cred, struct curl_slist **hdrs,
		    const void *body, size_t len)
{
	char provider[128], line[128], hex[65];
	int r;

	if (!cred->region || !*cred->region || strlen(cred->region) > 64 ||
	    strchr(cred->region, ':'))
		return vmb_error_set(VMB_EINVAL, "invalid S3 region '%s'",
				     cred->region ? cred->region : "");
	/* provider1:provider2:region:service */
	snprintf(provider, sizeof provider, "aws:amz:%s:s3", cred->region);
	if (curl_easy_setopt(h, CURLOPT_AWS_SIGV4, provider) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_USERNAME, cred->access_key) !=
		    CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_PASSWORD, cred->secret_key) !=
		    CURLE_OK)
		return vmb_error_set(VMB_ENOTSUP,
				     "libcurl lacks AWS SigV4 support");
	if (body == VMB_SIGV4_UNSIGNED) {
		r = add_header(hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	} else {
		vmb_sigv4_sha256_hex(body, len, hex);
		snprintf(line, sizeof line, "x-amz-content-sha256: %s", hex);
		r = add_header(hdrs, line);
	}
	if (!r && cred->token && *cred->token) {
		char *t = vmb_asprintf("x-amz-security-token: %s", cred->token);
		if (!t)
			return VMB_ENOMEM;
		r = add_header(hdrs, t);
		free(t);
	}
	return r;
}
