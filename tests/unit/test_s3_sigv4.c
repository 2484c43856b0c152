/*
 * The S3 backend's request signing, checked against AWS's published
 * Signature Version 4 examples ("Signature Calculations for the
 * Authorization Header: Transferring Payload in a Single Chunk", S3 API
 * reference): the GET object and GET bucket (list) requests for
 * examplebucket with the AKIAIOSFODNN7EXAMPLE key at 20130524T000000Z.
 *
 * libcurl computes the signature, so the test sends the exact example
 * request to a tiny listener on 127.0.0.1 (the Host header stays
 * examplebucket.s3.amazonaws.com through CURLOPT_CONNECT_TO), captures the
 * Authorization header it receives and compares it with AWS's value.
 * s3rver does not check signatures; this test is the proof they are right.
 * libcurl is not linked: like the S3 target, the test calls it through
 * the table vmb_curl_load() fills (lib/target/curl_dl.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <curl/curl.h>
#include "testutil.h"
#include "target/sigv4.h"
/* libcurl as libvmbackup loads it at run time: curl_* are its table */
#include "target/curl_dl.h"

static const vmb_sigv4 cred = {
	"us-east-1", "AKIAIOSFODNN7EXAMPLE",
	"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", NULL
};

struct listener {
	int fd;
	char request[8192];
};

static void *serve_one(void *arg)
{
	struct listener *l = arg;
	size_t n = 0;
	int c = accept(l->fd, NULL, NULL);
	if (c < 0)
		return NULL;
	struct timeval tv = { 5, 0 };
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while (n < sizeof l->request - 1) {
		ssize_t k = recv(c, l->request + n, sizeof l->request - 1 - n, 0);
		if (k <= 0)
			break;
		n += (size_t)k;
		l->request[n] = 0;
		if (strstr(l->request, "\r\n\r\n"))
			break;
	}
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
			   "Connection: close\r\n\r\n";
	if (send(c, resp, strlen(resp), 0) < 0) {
	}
	close(c);
	return NULL;
}

/* Send the request; return the Authorization header's value (static). */
static const char *capture(const char *path_query, const char *extra_header)
{
	static char auth[1024];
	struct listener l = { 0 };
	struct sockaddr_in a = { 0 };
	socklen_t al = sizeof a;
	pthread_t th;
	char connect_to[128], url[512];
	struct curl_slist *hdrs = NULL, *ct = NULL;
	CURL *h;

	auth[0] = 0;
	l.fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l.fd < 0 || bind(l.fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    listen(l.fd, 1) != 0 ||
	    getsockname(l.fd, (struct sockaddr *)&a, &al) != 0) {
		perror("listener");
		return auth;
	}
	pthread_create(&th, NULL, serve_one, &l);
	snprintf(connect_to, sizeof connect_to,
		 "examplebucket.s3.amazonaws.com:80:127.0.0.1:%u",
		 (unsigned)ntohs(a.sin_port));
	snprintf(url, sizeof url, "http://examplebucket.s3.amazonaws.com%s",
		 path_query);
	h = curl_easy_init();
	ct = curl_slist_append(NULL, connect_to);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CONNECT_TO, ct);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	/* the example's fixed date; libcurl signs with it when it is set */
	hdrs = curl_slist_append(hdrs, "x-amz-date: 20130524T000000Z");
	if (extra_header)
		hdrs = curl_slist_append(hdrs, extra_header);
	CHECK_OK(vmb_sigv4_setup(h, &cred, &hdrs, NULL, 0));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	CURLcode rc = curl_easy_perform(h);
	CHECK(rc == CURLE_OK);
	pthread_join(th, NULL);
	close(l.fd);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	curl_slist_free_all(ct);

	const char *p = strcasestr(l.request, "\r\nAuthorization: ");
	if (p) {
		/* copy the value; drop the optional blanks after commas
		   (libcurl writes ", ", AWS's example ",": same header) */
		size_t n = 0;
		for (p += strlen("\r\nAuthorization: ");
		     *p && *p != '\r' && *p != '\n' && n < sizeof auth - 1; p++)
			if (!(*p == ' ' && n && auth[n - 1] == ','))
				auth[n++] = *p;
		auth[n] = 0;
	} else {
		fprintf(stderr, "no Authorization header in:\n%s\n", l.request);
	}
	return auth;
}

int main(void)
{
	const char *got;
	char hex[65];

	/* dlopen()s libcurl.so.4 and runs curl_global_init(), as opening an
	   s3: repository does */
	CHECK_OK(vmb_curl_load("test_s3_sigv4"));
	if (test_failures)
		return test_done();

	/* payload hash helper: SHA-256 of the empty string */
	vmb_sigv4_sha256_hex(NULL, 0, hex);
	CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);

	/* GET object, Range: bytes=0-9 */
	got = capture("/test.txt", "Range: bytes=0-9");
	printf("GET object: %s\n", got);
	CHECK(strcmp(got,
		     "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
		     "us-east-1/s3/aws4_request,SignedHeaders=host;range;"
		     "x-amz-content-sha256;x-amz-date,Signature="
		     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41") == 0);

	/* GET bucket (list objects): ?max-keys=2&prefix=J */
	got = capture("/?max-keys=2&prefix=J", NULL);
	printf("GET bucket: %s\n", got);
	CHECK(strcmp(got,
		     "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
		     "us-east-1/s3/aws4_request,SignedHeaders=host;"
		     "x-amz-content-sha256;x-amz-date,Signature="
		     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == 0);

	/* GET bucket lifecycle: ?lifecycle (an empty-valued parameter) */
	got = capture("/?lifecycle=", NULL);
	printf("GET lifecycle: %s\n", got);
	CHECK(strcmp(got,
		     "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
		     "us-east-1/s3/aws4_request,SignedHeaders=host;"
		     "x-amz-content-sha256;x-amz-date,Signature="
		     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543") == 0);

	return test_done();
}
