/*
 * Leases: lock objects with an expiry time.  Object stores have no atomic
 * create, so a taker writes its token and reads it back; a holder renews
 * before expiry; a crashed holder's lease simply runs out.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common/json.h"
#include "common/util.h"
#include "lease.h"

void vmb_lease_hostname(char host[256])
{
	memset(host, 0, 256);
	gethostname(host, 255);
	for (char *p = host; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '_';
}

int vmb_lease_dead(const char *host, int64_t pid)
{
	char me[256];
	vmb_lease_hostname(me);
	return host && strcmp(host, me) == 0 && pid > 0 &&
	       pid != (int64_t)getpid() && kill((pid_t)pid, 0) != 0 &&
	       errno == ESRCH;
}

int vmb_lease_take(vmb_repo *r, const char *name, int ttl, const char *what,
		   char token[33])
{
	void *data = NULL;
	size_t len;
	vmb_json *j = NULL;
	char host[256] = "", buf[600], tok[33];
	uint8_t rnd[16];
	int rc;

	if (ttl <= 0)
		ttl = 600;
	vmb_lease_hostname(host);
	rc = vmb_target_get(r->t, name, &data, &len);
	if (rc == 0) {
		int64_t exp = 0, pid = 0;
		const char *who = NULL, *holder = NULL;
		if (len < 4096 && vmb_json_parse(data, len, name, &j) == 0) {
			vmb_json_i64(j, "expires", &exp);
			vmb_json_i64(j, "pid", &pid);
			who = vmb_json_str(j, "host");
			holder = vmb_json_str(j, "token");
		}
		/* a holder on this host whose process is gone is dead */
		int dead = vmb_lease_dead(who, pid);
		if (exp > (int64_t)time(NULL) && !dead &&
		    !(holder && token[0] && strcmp(holder, token) == 0)) {
			char until[32];
			time_t t = (time_t)exp;
			strftime(until, sizeof until, "%Y-%m-%d %H:%M:%S",
				 localtime(&t));
			rc = vmb_error_set(VMB_ELOCKED, "%s: %s is locked by %s "
					   "(pid %lld) until %s",
					   vmb_target_url(r->t), what,
					   who ? who : "?", (long long)pid, until);
			vmb_json_free(j);
			free(data);
			return rc;
		}
		vmb_json_free(j);
		free(data);
	} else if (rc != VMB_ENOTFOUND) {
		return rc;
	}
	if (token[0]) {
		memcpy(tok, token, 33);
	} else {
		vmb_crypto_random(rnd, sizeof rnd);
		vmb_hex(rnd, sizeof rnd, tok);
	}
	snprintf(buf, sizeof buf, "{\"token\":\"%s\",\"host\":\"%s\","
		 "\"pid\":%d,\"expires\":%lld}\n", tok, host, (int)getpid(),
		 (long long)time(NULL) + ttl);
	rc = vmb_target_put(r->t, name, buf, strlen(buf));
	if (rc)
		return rc;
	rc = vmb_target_get(r->t, name, &data, &len);
	if (rc)
		return rc;
	if (!memmem(data, len, tok, 32)) {
		free(data);
		return vmb_error_set(VMB_ELOCKED, "%s: lost the race for the "
				     "lock on %s", vmb_target_url(r->t), what);
	}
	free(data);
	memcpy(token, tok, 33);
	return 0;
}

int vmb_lease_release(vmb_repo *r, const char *name, char token[33])
{
	void *data = NULL;
	size_t len;
	int rc = 0;
	if (!token[0])
		return 0;
	if (vmb_target_get(r->t, name, &data, &len) == 0) {
		if (memmem(data, len, token, 32))
			rc = vmb_target_delete(r->t, name);
		free(data);
	}
	token[0] = 0;
	return rc == VMB_ENOTFOUND ? 0 : rc;
}
