/*
 * S3 backend: S3-compatible object stores through libcurl, which is
 * loaded at run time when the first s3: URL is opened (curl_dl.h).
 *
 * URL: s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX][?addressing=virtual|path]
 * [&region=R].  Credentials come from AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; the region from
 * AWS_DEFAULT_REGION (default us-east-1).  Requests are signed with SigV4
 * by libcurl (sigv4.c) and carry the payload's SHA-256.
 *
 * Atomicity: a single PUT is atomic in S3 (readers see the old object or
 * the new one); above the multipart threshold the object only appears when
 * CompleteMultipartUpload succeeds, which is atomic too, and a failed
 * upload is aborted.  Durability: S3 acknowledges a PUT only once it is
 * stored.  touch is a server-side copy of the object onto itself with
 * x-amz-metadata-directive: REPLACE (a new Last-Modified, no data moved);
 * servers that refuse it get a GET + PUT of the same bytes.
 *
 * Threads: each request borrows a CURL easy handle from a small pool; all
 * handles share one connection cache, DNS cache and TLS session cache
 * (curl share interface, locked with mutexes), so many requests can be in
 * flight from many threads while connections are reused.
 *
 * Retries: network errors, HTTP 5xx and 429 are retried with exponential
 * backoff and full jitter (100 ms doubling, capped at 5 s), at most
 * VMB_S3_RETRIES times (default 5).  4xx answers are final.  Connect
 * timeout 10 s (VMB_S3_CONNECT_TIMEOUT); a transfer slower than 1 byte/s
 * for 30 s (VMB_S3_LOW_SPEED_TIME) is abandoned.  TLS certificates are
 * always checked; VMB_S3_CA_FILE names an extra CA bundle.
 *
 * Tuning for tests: VMB_S3_MULTIPART_THRESHOLD (default 64M),
 * VMB_S3_PART_SIZE (default 16M, at least 5M), VMB_S3_LIST_PAGE (max-keys
 * of a list request, default 1000), VMB_S3_ADDRESSING=virtual.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <sodium.h>
#include "common/util.h"
/* libcurl is loaded on first use: curl_* are its function table */
#include "curl_dl.h"
#include "s3_xml.h"
#include "sigv4.h"
#include "target.h"

#define POOL_MAX 32
#define MAX_OBJECT (1ULL << 32)       /* same bound as the local backend */
#define MAX_LIST_RESPONSE (16u << 20) /* one list page */
#define MAX_ERROR_BODY (64u << 10)
#define MIN_PART (5ULL << 20)

struct s3 {
	vmb_target base;
	char *endpoint;  /* "http://host:port" (path style) or with bucket. */
	char *hostport;  /* "host:port" for messages */
	char *bucket;
	char *prefix;    /* "" or "some/prefix/" */
	int virtual_host;
	char *region, *access, *secret, *token;
	char *ca_file;
	vmb_sigv4 cred;
	int retries;
	long connect_timeout, low_speed_time;
	uint64_t mp_threshold, part_size;
	unsigned list_page;
	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	CURL *pool[POOL_MAX];
	int npool;
};

/* ---- libcurl share locks ---- */

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a,
		       void *p)
{
	struct s3 *s = p;
	(void)h;
	(void)a;
	if ((int)d >= 0 && d < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&s->share_locks[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *p)
{
	struct s3 *s = p;
	(void)h;
	if ((int)d >= 0 && d < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&s->share_locks[d]);
}

static CURL *handle_get(struct s3 *s)
{
	CURL *h = NULL;
	pthread_mutex_lock(&s->pool_lock);
	if (s->npool > 0)
		h = s->pool[--s->npool];
	pthread_mutex_unlock(&s->pool_lock);
	if (h) {
		curl_easy_reset(h);
		return h;
	}
	return curl_easy_init();
}

static void handle_put(struct s3 *s, CURL *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&s->pool_lock);
	if (s->npool < POOL_MAX) {
		s->pool[s->npool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s->pool_lock);
	if (h)
		curl_easy_cleanup(h);
}

/* ---- small helpers ---- */

static long env_long(const char *name, long def, long lo, long hi)
{
	const char *v = getenv(name);
	char *end;
	long x;
	if (!v || !*v)
		return def;
	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return def;
	return x;
}

static uint64_t env_size(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	uint64_t x;
	if (!v || !*v || vmb_parse_size(v, &x) != 0 || x == 0)
		return def;
	return x;
}

/* Append s percent-encoded per SigV4 (unreserved kept, '/' kept if
 * keep_slash). */
static int uri_encode(vmb_buf *b, const char *s, int keep_slash)
{
	static const char hexd[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		int r;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~' || (keep_slash && c == '/')) {
			r = vmb_buf_append(b, p, 1);
		} else {
			char e[3] = { '%', hexd[c >> 4], hexd[c & 15] };
			r = vmb_buf_append(b, e, 3);
		}
		if (r)
			return r;
	}
	return 0;
}

/* ---- one HTTP request, with retries ---- */

struct req {
	const char *method;  /* GET PUT HEAD DELETE POST */
	const char *key;     /* full object key (prefix included) or NULL */
	const char *query;   /* canonical query (sorted, encoded) or NULL */
	const void *body;
	size_t blen;
	const char *hdr[4];  /* extra header lines */
	const char *what;    /* "get chunks/ab" for messages */
	/* results */
	long status;
	vmb_buf resp;        /* response body */
	size_t resp_max;
	char etag[128];
	int64_t date;        /* the server's Date header, or -1 */
	curl_off_t length;
	int64_t mtime;
	int too_big;
};

static size_t on_write(char *p, size_t sz, size_t n, void *arg)
{
	struct req *q = arg;
	size_t len = sz * n;
	if (q->resp.len + len > q->resp_max) {
		q->too_big = 1;
		return 0;
	}
	if (vmb_buf_append(&q->resp, p, len))
		return 0;
	return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct req *q = arg;
	size_t len = sz * n;
	if (len > 5 && len < 200 && strncasecmp(p, "Date:", 5) == 0) {
		char d[200];
		memcpy(d, p + 5, len - 5);
		d[len - 5] = 0;
		q->date = (int64_t)curl_getdate(d, NULL);
	}
	if (len > 5 && strncasecmp(p, "ETag:", 5) == 0) {
		size_t i = 5, j = len;
		while (i < j && (p[i] == ' ' || p[i] == '\t'))
			i++;
		while (j > i && (p[j - 1] == '\r' || p[j - 1] == '\n' ||
				 p[j - 1] == ' '))
			j--;
		if (j - i < sizeof q->etag) {
			memcpy(q->etag, p + i, j - i);
			q->etag[j - i] = 0;
		}
	}
	return len;
}

static char *build_url(struct s3 *s, const char *key, const char *query)
{
	vmb_buf b;
	vmb_buf_init(&b);
	vmb_buf_puts(&b, s->endpoint);
	if (!s->virtual_host) {
		vmb_buf_puts(&b, "/");
		uri_encode(&b, s->bucket, 0);
	}
	vmb_buf_puts(&b, "/");
	if (key)
		uri_encode(&b, key, 1);
	if (query && *query) {
		vmb_buf_puts(&b, "?");
		vmb_buf_puts(&b, query);
	}
	if (b.failed) {
		vmb_buf_free(&b);
		return NULL;
	}
	return vmb_buf_detach(&b);
}

static int retryable_curl(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

static void backoff(int attempt)
{
	/* full jitter over 100 ms * 2^attempt, capped at 5 s */
	uint64_t cap_ms = 100ULL << (attempt < 6 ? attempt : 6);
	if (cap_ms > 5000)
		cap_ms = 5000;
	long base_ms = env_long("VMB_S3_RETRY_DELAY_MS", -1, 0, 60000);
	if (base_ms >= 0) {
		cap_ms = (uint64_t)base_ms << (attempt < 6 ? attempt : 6);
		if (cap_ms > 5000)
			cap_ms = 5000;
	}
	uint64_t ms = cap_ms ? randombytes_uniform((uint32_t)cap_ms + 1) : 0;
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* Error Code from an S3 error body, into out. */
static void error_code(const vmb_buf *b, char *out, size_t n)
{
	const char *vs, *ve;
	out[0] = 0;
	if (b->len && vmb_s3__xml_find(b->data, b->data + b->len, "Code", &vs, &ve) &&
	    (size_t)(ve - vs) < n) {
		memcpy(out, vs, (size_t)(ve - vs));
		out[ve - vs] = 0;
		for (char *c = out; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == '<')
				*c = '?';
	}
}

/*
 * Run a request.  Returns 0 when an HTTP answer arrived (q->status set,
 * whatever it is, after retries of 5xx/429), or an error (set) when the
 * server could not be reached.
 */
static int perform(struct s3 *s, struct req *q)
{
	char errbuf[CURL_ERROR_SIZE];
	char *url = build_url(s, q->key, q->query);
	int attempt, r = 0;
	CURLcode c = CURLE_OK;

	if (!url)
		return VMB_ENOMEM;
	if (!q->resp_max)
		q->resp_max = MAX_ERROR_BODY;
	for (attempt = 0;; attempt++) {
		struct curl_slist *hdrs = NULL;
		CURL *h = handle_get(s);
		if (!h) {
			r = vmb_error_set(VMB_ENOMEM, "%s: cannot create a "
					  "libcurl handle", s->base.url);
			break;
		}
		vmb_buf_free(&q->resp);
		q->status = 0;
		q->etag[0] = 0;
		q->date = -1;
		q->too_big = 0;
		q->length = -1;
		q->mtime = -1;
		errbuf[0] = 0;
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_SHARE, s->share);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, s->connect_timeout);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s->low_speed_time);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
		if (s->ca_file)
			curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
		curl_easy_setopt(h, CURLOPT_FILETIME, 1L);
		if (strcmp(q->method, "HEAD") == 0) {
			curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		} else if (strcmp(q->method, "GET") != 0) {
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
		}
		if (strcmp(q->method, "PUT") == 0 ||
		    strcmp(q->method, "POST") == 0) {
			/* the body straight from memory, no copy */
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)q->blen);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS,
					 q->body ? q->body : "");
			hdrs = curl_slist_append(hdrs, "Expect:");
			hdrs = curl_slist_append(
				hdrs, "Content-Type: application/octet-stream");
		}
		for (size_t i = 0; i < VMB_ARRAY_SIZE(q->hdr); i++)
			if (q->hdr[i])
				hdrs = curl_slist_append(hdrs, q->hdr[i]);
		if (!hdrs && (!strcmp(q->method, "PUT") ||
			      !strcmp(q->method, "POST"))) {
			handle_put(s, h);
			r = vmb_error_set(VMB_ENOMEM, "out of memory");
			break;
		}
		r = vmb_sigv4_setup(h, &s->cred, &hdrs, q->body, q->blen);
		if (r) {
			curl_slist_free_all(hdrs);
			handle_put(s, h);
			break;
		}
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		c = curl_easy_perform(h);
		if (c == CURLE_OK) {
			curl_off_t ft = -1, cl = -1;
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &q->status);
			if (curl_easy_getinfo(h, CURLINFO_FILETIME_T, &ft) ==
				    CURLE_OK && ft >= 0)
				q->mtime = (int64_t)ft;
			if (curl_easy_getinfo(h,
					      CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
					      &cl) == CURLE_OK)
				q->length = cl;
		}
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
		curl_easy_setopt(h, CURLOPT_SHARE, NULL);
		curl_slist_free_all(hdrs);
		handle_put(s, h);

		if (c == CURLE_WRITE_ERROR && q->too_big) {
			r = vmb_error_set(VMB_ECORRUPT,
					  "%s: %s: answer too large",
					  s->base.url, q->what);
			break;
		}
		if (c == CURLE_OK && q->status < 500 && q->status != 429)
			break;
		if (c != CURLE_OK && !retryable_curl(c)) {
			r = vmb_error_set(VMB_EIO, "%s: %s: %s", s->base.url,
					  q->what,
					  errbuf[0] ? errbuf
						    : curl_easy_strerror(c));
			break;
		}
		if (attempt >= s->retries) {
			if (c == CURLE_OK) {
				char code[64];
				error_code(&q->resp, code, sizeof code);
				r = vmb_error_set(
					VMB_EIO,
					"%s: %s: server error (HTTP %ld%s%s) "
					"after %d attempts",
					s->base.url, q->what, q->status,
					code[0] ? ", " : "", code, attempt + 1);
			} else if (c == CURLE_OPERATION_TIMEDOUT) {
				r = vmb_error_set(
					VMB_ETIMEOUT,
					"%s: %s: server %s timed out after %d "
					"attempts: %s",
					s->base.url, q->what, s->hostport,
					attempt + 1,
					errbuf[0] ? errbuf : curl_easy_strerror(c));
			} else {
				r = vmb_error_set(
					VMB_EIO,
					"%s: cannot connect to %s: %s "
					"(%d attempts)",
					s->base.url, s->hostport,
					errbuf[0] ? errbuf : curl_easy_strerror(c),
					attempt + 1);
			}
			break;
		}
		backoff(attempt);
	}
	free(url);
	return r;
}

/* Turn a non-2xx answer into an error. */
static int http_error(struct s3 *s, struct req *q, const char *name)
{
	char code[64];
	error_code(&q->resp, code, sizeof code);
	if (q->status == 403 || q->status == 401)
		return vmb_error_set(VMB_EACCES,
				     "%s: access denied (HTTP %ld%s%s)",
				     s->base.url, q->status,
				     code[0] ? ", " : "", code);
	if (q->status == 404 && strcmp(code, "NoSuchBucket") == 0)
		return vmb_error_set(VMB_ENOTFOUND,
				     "%s: bucket %s does not exist",
				     s->base.url, s->bucket);
	if (q->status == 404 && name)
		return vmb_error_set(VMB_ENOTFOUND, "%s: %s not found",
				     s->base.url, name);
	if (q->status == 507 || strcmp(code, "EntityTooLarge") == 0 ||
	    strcmp(code, "QuotaExceeded") == 0)
		return vmb_error_set(VMB_ENOSPC, "%s: %s: no space (HTTP %ld%s%s)",
				     s->base.url, q->what, q->status,
				     code[0] ? ", " : "", code);
	return vmb_error_set(VMB_EIO, "%s: %s failed (HTTP %ld%s%s)",
			     s->base.url, q->what, q->status,
			     code[0] ? ", " : "", code);
}

static char *full_key(struct s3 *s, const char *name)
{
	return vmb_asprintf("%s%s", s->prefix, name);
}

/* A 200 answer can still carry an <Error> (copy, complete multipart). */
static int body_has_error(const struct req *q)
{
	const char *vs, *ve;
	return q->resp.len &&
	       vmb_s3__xml_find(q->resp.data, q->resp.data + q->resp.len, "Code", &vs,
			&ve) &&
	       strstr(q->resp.data, "<Error>") != NULL;
}

/* ---- multipart upload ---- */

static int multipart_put(struct s3 *s, const char *name, const char *key,
			 const uint8_t *data, size_t length)
{
	struct req q;
	char *upload_id = NULL, *query = NULL;
	vmb_buf done, enc;
	const char *vs, *ve;
	int r = 0, completed = 0;
	uint64_t part = s->part_size;
	size_t nparts = (length + part - 1) / part;

	vmb_buf_init(&done);
	vmb_buf_init(&enc);
	memset(&q, 0, sizeof q);
	q.method = "POST";
	q.key = key;
	q.query = "uploads=";
	q.what = "start multipart upload";
	q.resp_max = MAX_ERROR_BODY;
	r = perform(s, &q);
	if (r)
		goto out;
	if (q.status / 100 != 2) {
		r = http_error(s, &q, NULL);
		goto out;
	}
	if (!vmb_s3__xml_find(q.resp.data, q.resp.data + q.resp.len, "UploadId", &vs,
		      &ve) ||
	    !(upload_id = vmb_s3__xml_text(vs, ve)) || !*upload_id) {
		r = vmb_error_set(VMB_EIO, "%s: put %s: no UploadId in the "
				  "answer to a multipart upload", s->base.url,
				  name);
		goto out;
	}
	uri_encode(&enc, upload_id, 0);
	if (enc.failed) {
		r = VMB_ENOMEM;
		goto out;
	}
	vmb_buf_puts(&done, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < nparts; i++) {
		size_t off = i * part, n = VMB_MIN((size_t)part, length - off);
		char what[64];
		free(query);
		query = vmb_asprintf("partNumber=%zu&uploadId=%s", i + 1,
				     enc.data);
		if (!query) {
			r = VMB_ENOMEM;
			goto out;
		}
		vmb_buf_free(&q.resp);
		memset(&q, 0, sizeof q);
		snprintf(what, sizeof what, "upload part %zu", i + 1);
		q.method = "PUT";
		q.key = key;
		q.query = query;
		q.body = data + off;
		q.blen = n;
		q.what = what;
		r = perform(s, &q);
		if (r)
			goto out;
		if (q.status / 100 != 2) {
			r = http_error(s, &q, NULL);
			goto out;
		}
		if (!q.etag[0]) {
			r = vmb_error_set(VMB_EIO, "%s: put %s: no ETag for "
					  "part %zu", s->base.url, name, i + 1);
			goto out;
		}
		vmb_buf_printf(&done, "<Part><PartNumber>%zu</PartNumber>"
			       "<ETag>", i + 1);
		for (const char *e = q.etag; *e; e++) {
			if (*e == '"') vmb_buf_puts(&done, "&quot;");
			else if (*e == '&') vmb_buf_puts(&done, "&amp;");
			else if (*e == '<') vmb_buf_puts(&done, "&lt;");
			else vmb_buf_append(&done, e, 1);
		}
		vmb_buf_puts(&done, "</ETag></Part>");
	}
	vmb_buf_puts(&done, "</CompleteMultipartUpload>");
	if (done.failed) {
		r = VMB_ENOMEM;
		goto out;
	}
	free(query);
	query = vmb_asprintf("uploadId=%s", enc.data);
	if (!query) {
		r = VMB_ENOMEM;
		goto out;
	}
	vmb_buf_free(&q.resp);
	memset(&q, 0, sizeof q);
	q.method = "POST";
	q.key = key;
	q.query = query;
	q.body = done.data;
	q.blen = done.len;
	q.what = "complete multipart upload";
	r = perform(s, &q);
	if (r)
		goto out;
	if (q.status / 100 != 2 || body_has_error(&q)) {
		r = http_error(s, &q, NULL);
		goto out;
	}
	completed = 1;
out:
	if (!completed && upload_id && enc.data && query) {
		/* abort so no parts linger; the object never became visible */
		struct req a;
		char *aq = vmb_asprintf("uploadId=%s", enc.data);
		char msg[1024];
		snprintf(msg, sizeof msg, "%s", vmb_error_message());
		int code = vmb_error_code();
		if (aq) {
			memset(&a, 0, sizeof a);
			a.method = "DELETE";
			a.key = key;
			a.query = aq;
			a.what = "abort multipart upload";
			perform(s, &a);
			vmb_buf_free(&a.resp);
			free(aq);
		}
		vmb_error_set(code, "%s", msg);
	}
	vmb_buf_free(&q.resp);
	vmb_buf_free(&done);
	vmb_buf_free(&enc);
	free(query);
	free(upload_id);
	return r;
}

/* ---- the vtable ---- */

static int s3_put(vmb_target *t, const char *name, const void *data,
		  size_t length)
{
	struct s3 *s = (struct s3 *)t;
	char *key = full_key(s, name);
	char what[64];
	struct req q;
	int r;

	if (!key)
		return VMB_ENOMEM;
	if (length > s->mp_threshold) {
		r = multipart_put(s, name, key, data, length);
		free(key);
		return r;
	}
	memset(&q, 0, sizeof q);
	snprintf(what, sizeof what, "put %.50s", name);
	q.method = "PUT";
	q.key = key;
	q.body = data;
	q.blen = length;
	q.what = what;
	r = perform(s, &q);
	if (!r && q.status / 100 != 2)
		r = http_error(s, &q, NULL);
	vmb_buf_free(&q.resp);
	free(key);
	return r;
}

static int s3_get(vmb_target *t, const char *name, void **data,
		  size_t *length)
{
	struct s3 *s = (struct s3 *)t;
	char *key = full_key(s, name);
	char what[64];
	struct req q;
	int r;

	if (!key)
		return VMB_ENOMEM;
	memset(&q, 0, sizeof q);
	snprintf(what, sizeof what, "get %.50s", name);
	q.method = "GET";
	q.key = key;
	q.what = what;
	q.resp_max = MAX_OBJECT;
	r = perform(s, &q);
	if (!r && q.status / 100 != 2)
		r = http_error(s, &q, name);
	if (!r && q.length >= 0 && (uint64_t)q.length != q.resp.len)
		r = vmb_error_set(VMB_EIO, "%s: get %s: short answer (%zu of "
				  "%lld bytes)", s->base.url, name, q.resp.len,
				  (long long)q.length);
	if (!r) {
		if (!q.resp.data) {
			q.resp.data = malloc(1);
			if (!q.resp.data)
				r = vmb_error_set(VMB_ENOMEM, "out of memory");
		}
		*data = q.resp.data;
		*length = q.resp.len;
		q.resp.data = NULL;
	}
	vmb_buf_free(&q.resp);
	free(key);
	return r;
}

static int s3_stat(vmb_target *t, const char *name, uint64_t *size,
		   int64_t *mtime)
{
	struct s3 *s = (struct s3 *)t;
	char *key = full_key(s, name);
	char what[64];
	struct req q;
	int r;

	if (!key)
		return VMB_ENOMEM;
	memset(&q, 0, sizeof q);
	snprintf(what, sizeof what, "stat %.50s", name);
	q.method = "HEAD";
	q.key = key;
	q.what = what;
	r = perform(s, &q);
	if (!r && q.status / 100 != 2)
		r = http_error(s, &q, name);
	if (!r) {
		*size = q.length >= 0 ? (uint64_t)q.length : 0;
		*mtime = q.mtime >= 0 ? q.mtime : 0;
	}
	vmb_buf_free(&q.resp);
	free(key);
	return r;
}

static int s3_list(vmb_target *t, const char *prefix, vmb_target_list_fn fn,
		   void *payload)
{
	struct s3 *s = (struct s3 *)t;
	char *full = vmb_asprintf("%s%s", s->prefix, prefix);
	char *token = NULL;
	size_t plen = strlen(s->prefix);
	int r = 0, stop = 0, pages = 0;

	if (!full)
		return VMB_ENOMEM;
	while (!r && !stop) {
		struct req q;
		vmb_buf qs;
		vmb_s3_list pg;
		vmb_s3_entry *ents = NULL;
		size_t nents = 0;
		int truncated = 0;

		if (++pages > 1000000) {
			r = vmb_error_set(VMB_EIO, "%s: list: too many pages",
					  s->base.url);
			break;
		}
		/* canonical query: parameters sorted by name */
		vmb_buf_init(&qs);
		if (token) {
			vmb_buf_puts(&qs, "continuation-token=");
			uri_encode(&qs, token, 0);
			vmb_buf_puts(&qs, "&");
		}
		vmb_buf_printf(&qs, "list-type=2&max-keys=%u&prefix=",
			       s->list_page);
		uri_encode(&qs, full, 0);
		if (qs.failed) {
			vmb_buf_free(&qs);
			r = VMB_ENOMEM;
			break;
		}
		memset(&q, 0, sizeof q);
		q.method = "GET";
		q.key = NULL;
		q.query = qs.data;
		q.what = "list";
		q.resp_max = MAX_LIST_RESPONSE;
		r = perform(s, &q);
		vmb_buf_free(&qs);
		if (!r && q.status / 100 != 2)
			r = http_error(s, &q, NULL);
		if (r) {
			vmb_buf_free(&q.resp);
			break;
		}
		free(token);
		token = NULL;
		r = vmb_s3__parse_list(q.resp.data, q.resp.len, full, plen,
				       s->base.url, &pg);
		truncated = pg.truncated;
		token = pg.token;
		pg.token = NULL;
		ents = pg.e;
		nents = pg.n;
		vmb_buf_free(&q.resp);
		/* callbacks run without any handle or lock held */
		for (size_t i = 0; i < nents; i++) {
			if (!r && !stop &&
			    fn(ents[i].name, ents[i].size, ents[i].mtime, payload))
				stop = 1;
			free(ents[i].name);
		}
		free(ents);
		if (!truncated)
			break;
		if (!r && !token) {
			r = vmb_error_set(VMB_EIO, "%s: list: truncated answer "
					  "without a continuation token",
					  s->base.url);
		}
	}
	free(token);
	free(full);
	return r;
}

static int s3_del(vmb_target *t, const char *name)
{
	struct s3 *s = (struct s3 *)t;
	char *key = full_key(s, name);
	char what[64];
	struct req q;
	int r;
	uint64_t sz;
	int64_t mt;

	if (!key)
		return VMB_ENOMEM;
	/* S3 answers 204 for missing keys too; the contract wants
	   VMB_ENOTFOUND, so look first (a race only loses that detail) */
	r = s3_stat(t, name, &sz, &mt);
	if (r) {
		free(key);
		return r;
	}
	memset(&q, 0, sizeof q);
	snprintf(what, sizeof what, "delete %.50s", name);
	q.method = "DELETE";
	q.key = key;
	q.what = what;
	r = perform(s, &q);
	if (!r && q.status / 100 != 2)
		r = http_error(s, &q, name);
	vmb_buf_free(&q.resp);
	free(key);
	return r;
}

static int s3_touch(vmb_target *t, const char *name)
{
	struct s3 *s = (struct s3 *)t;
	char *key = full_key(s, name);
	char *src = NULL, *hsrc = NULL;
	char what[64];
	struct req q;
	vmb_buf b;
	int r;

	if (!key)
		return VMB_ENOMEM;
	vmb_buf_init(&b);
	vmb_buf_puts(&b, "/");
	uri_encode(&b, s->bucket, 0);
	vmb_buf_puts(&b, "/");
	uri_encode(&b, key, 1);
	src = b.failed ? NULL : vmb_buf_detach(&b);
	vmb_buf_free(&b);
	hsrc = src ? vmb_asprintf("x-amz-copy-source: %s", src) : NULL;
	if (!hsrc) {
		free(src);
		free(key);
		return VMB_ENOMEM;
	}
	memset(&q, 0, sizeof q);
	snprintf(what, sizeof what, "touch %.50s", name);
	q.method = "PUT";
	q.key = key;
	q.what = what;
	q.hdr[0] = hsrc;
	q.hdr[1] = "x-amz-metadata-directive: REPLACE";
	r = perform(s, &q);
	if (!r && q.status / 100 == 2 && !body_has_error(&q)) {
		/* Some servers (s3rver) accept the copy but keep the old
		   Last-Modified: compare it with the answer's Date (both are
		   the server's clock) and rewrite the object if it stayed. */
		const char *vs, *ve;
		int64_t lm = -1;
		if (q.resp.len && vmb_s3__xml_find(q.resp.data, q.resp.data + q.resp.len,
					   "LastModified", &vs, &ve) &&
		    ve - vs < 40) {
			char d[40];
			memcpy(d, vs, (size_t)(ve - vs));
			d[ve - vs] = 0;
			lm = vmb_s3__iso8601(d);
		}
		if (lm >= 0 && q.date >= 0 && lm + 1 < q.date)
			q.status = 501;
	}
	if (!r && (q.status == 400 || q.status == 501)) {
		/* no copy onto itself here: write the same bytes again */
		void *data;
		size_t len;
		vmb_buf_free(&q.resp);
		r = s3_get(t, name, &data, &len);
		if (!r) {
			r = s3_put(t, name, data, len);
			free(data);
		}
	} else if (!r && (q.status / 100 != 2 || body_has_error(&q))) {
		r = http_error(s, &q, name);
	}
	vmb_buf_free(&q.resp);
	free(hsrc);
	free(src);
	free(key);
	return r;
}

static void s3_close(vmb_target *t)
{
	struct s3 *s = (struct s3 *)t;
	if (!s)
		return;
	for (int i = 0; i < s->npool; i++)
		curl_easy_cleanup(s->pool[i]);
	if (s->share) {
		curl_share_cleanup(s->share);
		for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
			pthread_mutex_destroy(&s->share_locks[i]);
	}
	pthread_mutex_destroy(&s->pool_lock);
	free(s->endpoint);
	free(s->hostport);
	free(s->bucket);
	free(s->prefix);
	free(s->region);
	if (s->secret)
		sodium_memzero(s->secret, strlen(s->secret));
	free(s->access);
	free(s->secret);
	free(s->token);
	free(s->ca_file);
	free(s->base.url);
	free(s);
}

static const vmb_target_ops s3_ops = {
	VMB_TARGET_OPS_VERSION, "s3", s3_put, s3_get, s3_stat,
	s3_list, s3_del, s3_touch, s3_close, NULL /* prefetch */,
};

static int bucket_ok(const char *b, size_t n)
{
	if (n < 3 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') ||
		      b[i] == '-' || b[i] == '.' || b[i] == '_' ||
		      (b[i] >= 'A' && b[i] <= 'Z')))
			return 0;
	return 1;
}

/* Parse the URL into s; returns 0 or an error (set). */
static int parse_url(struct s3 *s, const char *url)
{
	const char *u = url + 3, *hs, *he, *path, *q;
	const char *scheme;
	size_t slen;

	if (strncmp(u, "http://", 7) == 0) {
		scheme = "http";
		slen = 7;
	} else if (strncmp(u, "https://", 8) == 0) {
		scheme = "https";
		slen = 8;
	} else {
		return vmb_error_set(VMB_EINVAL, "%s: S3 URLs look like "
				     "s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]",
				     url);
	}
	hs = u + slen;
	he = hs + strcspn(hs, "/?#");
	if (he == hs || memchr(hs, '@', (size_t)(he - hs)))
		return vmb_error_set(VMB_EINVAL, "%s: missing or invalid host "
				     "(credentials go in AWS_ACCESS_KEY_ID and "
				     "AWS_SECRET_ACCESS_KEY)", url);
	if (*he != '/')
		return vmb_error_set(VMB_EINVAL, "%s: missing bucket name", url);
	path = he + 1;
	q = path + strcspn(path, "?#");
	size_t blen = strcspn(path, "/?#");
	if (!bucket_ok(path, blen))
		return vmb_error_set(VMB_EINVAL, "%s: invalid bucket name", url);
	s->bucket = vmb_strndup(path, blen);
	s->hostport = vmb_strndup(hs, (size_t)(he - hs));
	if (!s->bucket || !s->hostport)
		return VMB_ENOMEM;
	/* prefix: the rest of the path, without empty components */
	{
		const char *ps = path + blen;
		vmb_buf b;
		vmb_buf_init(&b);
		while (ps < q) {
			while (ps < q && *ps == '/')
				ps++;
			const char *pe = ps;
			while (pe < q && *pe != '/')
				pe++;
			if (pe > ps) {
				if ((pe - ps == 1 && ps[0] == '.') ||
				    (pe - ps == 2 && ps[0] == '.' && ps[1] == '.')) {
					vmb_buf_free(&b);
					return vmb_error_set(VMB_EINVAL,
							     "%s: invalid prefix",
							     url);
				}
				vmb_buf_append(&b, ps, (size_t)(pe - ps));
				vmb_buf_puts(&b, "/");
			}
			ps = pe;
		}
		vmb_buf_puts(&b, "");
		if (b.failed) {
			vmb_buf_free(&b);
			return VMB_ENOMEM;
		}
		s->prefix = vmb_buf_detach(&b);
		vmb_buf_free(&b);
		if (!s->prefix)
			return VMB_ENOMEM;
	}
	/* options */
	const char *addr = getenv("VMB_S3_ADDRESSING");
	s->virtual_host = addr && strcmp(addr, "virtual") == 0;
	if (*q == '?') {
		const char *o = q + 1;
		while (*o && *o != '#') {
			size_t n = strcspn(o, "&#");
			if (n == 18 && !strncmp(o, "addressing=virtual", n))
				s->virtual_host = 1;
			else if (n == 15 && !strncmp(o, "addressing=path", n))
				s->virtual_host = 0;
			else if (n > 7 && !strncmp(o, "region=", 7)) {
				free(s->region);
				s->region = vmb_strndup(o + 7, n - 7);
				if (!s->region)
					return VMB_ENOMEM;
			} else
				return vmb_error_set(VMB_EINVAL,
						     "%s: unknown option '%.*s' "
						     "(addressing=virtual|path, "
						     "region=R)", url, (int)n, o);
			o += n;
			if (*o == '&')
				o++;
		}
	}
	if (s->virtual_host)
		s->endpoint = vmb_asprintf("%s://%s.%s", scheme, s->bucket,
					   s->hostport);
	else
		s->endpoint = vmb_asprintf("%s://%s", scheme, s->hostport);
	return s->endpoint ? 0 : VMB_ENOMEM;
}

static int s3_open(const char *url, vmb_target **out)
{
	struct s3 *s;
	const char *ak, *sk, *tk, *rg, *ca;
	int r;

	/* loads libcurl and runs curl_global_init() once per process
	   (curl_dl.c); VMB_ENOTSUP, one line, when it is not installed */
	r = vmb_curl_load("S3 storage");
	if (r)
		return r;
	s = vmb_calloc(1, sizeof *s);
	if (!s)
		return VMB_ENOMEM;
	pthread_mutex_init(&s->pool_lock, NULL);
	s->base.ops = &s3_ops;
	s->base.url = vmb_strdup(url);
	if (!s->base.url) {
		s3_close(&s->base);
		return VMB_ENOMEM;
	}
	r = parse_url(s, url);
	if (r) {
		s3_close(&s->base);
		return r;
	}
	ak = getenv("AWS_ACCESS_KEY_ID");
	sk = getenv("AWS_SECRET_ACCESS_KEY");
	tk = getenv("AWS_SESSION_TOKEN");
	rg = getenv("AWS_DEFAULT_REGION");
	ca = getenv("VMB_S3_CA_FILE");
	if (!ak || !*ak || !sk || !*sk) {
		s3_close(&s->base);
		return vmb_error_set(VMB_EACCES, "%s: no S3 credentials (set "
				     "AWS_ACCESS_KEY_ID and "
				     "AWS_SECRET_ACCESS_KEY)", url);
	}
	s->access = vmb_strdup(ak);
	s->secret = vmb_strdup(sk);
	s->token = tk && *tk ? vmb_strdup(tk) : NULL;
	if (!s->region)
		s->region = vmb_strdup(rg && *rg ? rg : "us-east-1");
	s->ca_file = ca && *ca ? vmb_strdup(ca) : NULL;
	if (!s->access || !s->secret || !s->region || (tk && *tk && !s->token)) {
		s3_close(&s->base);
		return VMB_ENOMEM;
	}
	s->cred.region = s->region;
	s->cred.access_key = s->access;
	s->cred.secret_key = s->secret;
	s->cred.token = s->token;
	s->retries = (int)env_long("VMB_S3_RETRIES", 5, 0, 100);
	s->connect_timeout = env_long("VMB_S3_CONNECT_TIMEOUT", 10, 1, 600);
	s->low_speed_time = env_long("VMB_S3_LOW_SPEED_TIME", 30, 1, 3600);
	s->mp_threshold = env_size("VMB_S3_MULTIPART_THRESHOLD", 64ULL << 20);
	s->part_size = env_size("VMB_S3_PART_SIZE", 16ULL << 20);
	if (s->part_size < MIN_PART)
		s->part_size = MIN_PART;
	if (s->part_size > (1ULL << 30))
		s->part_size = 1ULL << 30;
	s->list_page = (unsigned)env_long("VMB_S3_LIST_PAGE", 1000, 1, 1000);

	s->share = curl_share_init();
	if (!s->share) {
		s3_close(&s->base);
		return vmb_error_set(VMB_ENOMEM, "out of memory");
	}
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&s->share_locks[i], NULL);
	curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(s->share, CURLSHOPT_USERDATA, s);
	curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(s->share, CURLSHOPT_SHARE,
			  CURL_LOCK_DATA_SSL_SESSION);

	/* fail early on a missing bucket or a bad key: a one-key list
	   (its error body names the cause, which HEAD's would not) */
	{
		struct req q;
		vmb_buf qs;
		vmb_buf_init(&qs);
		vmb_buf_puts(&qs, "list-type=2&max-keys=1&prefix=");
		uri_encode(&qs, s->prefix, 0);
		if (qs.failed) {
			vmb_buf_free(&qs);
			s3_close(&s->base);
			return VMB_ENOMEM;
		}
		memset(&q, 0, sizeof q);
		q.method = "GET";
		q.query = qs.data;
		q.what = "open";
		r = perform(s, &q);
		if (!r && q.status / 100 != 2) {
			char code[64];
			error_code(&q.resp, code, sizeof code);
			if (q.status == 404 && !code[0])
				r = vmb_error_set(VMB_ENOTFOUND,
						  "%s: bucket %s does not exist",
						  url, s->bucket);
			else
				r = http_error(s, &q, NULL);
		}
		vmb_buf_free(&q.resp);
		vmb_buf_free(&qs);
		if (r) {
			s3_close(&s->base);
			return r;
		}
	}
	*out = &s->base;
	return 0;
}

const vmb_target_backend vmb_target__s3_backend = {
	VMB_TARGET_BACKEND_VERSION, "s3", s3_open
};
