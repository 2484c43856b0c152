/*
 * AWS Signature Version 4 for the S3 backend.  libcurl computes the
 * signature itself (CURLOPT_AWS_SIGV4); this module prepares an easy handle
 * for it: the provider string, the key pair, the payload hash header
 * (x-amz-content-sha256, which S3 requires) and the session token.
 * tests/unit/test_s3_sigv4.c checks the result against AWS's published
 * example signature.
 */
#ifndef VMB_LIB_TARGET_SIGV4_H
#define VMB_LIB_TARGET_SIGV4_H

#include <stddef.h>
#include <curl/curl.h>

typedef struct vmb_sigv4 {
	const char *region;     /* "us-east-1" */
	const char *access_key; /* AWS_ACCESS_KEY_ID */
	const char *secret_key; /* AWS_SECRET_ACCESS_KEY */
	const char *token;      /* AWS_SESSION_TOKEN or NULL */
} vmb_sigv4;

#define VMB_SIGV4_UNSIGNED ((const void *)-1)

/*
 * Set up @p h to sign its next request and append the signing headers to
 * *hdrs.  @p body / @p len is the exact payload (NULL, 0 for none), or
 * body == VMB_SIGV4_UNSIGNED to send "UNSIGNED-PAYLOAD".  libcurl is
 * loaded at run time: vmb_curl_load() (curl_dl.h) must have succeeded.
 * @return 0 or VMB_ENOMEM / VMB_EINVAL (error set).
 */
int vmb_sigv4_setup(CURL *h, const vmb_sigv4 *cred, struct curl_slist **hdrs,
		    const void *body, size_t len);

/* Hex SHA-256 of a buffer into out[65]. */
void vmb_sigv4_sha256_hex(const void *data, size_t len, char out[65]);

#endif
