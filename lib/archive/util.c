/*
 * Helpers shared by archive export and import (archive_internal.h).
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>
#include "common/util.h"
#include "repo/repo_internal.h"
#include "archive_internal.h"

const uint8_t vmb_archive__zeros[1 << 20];

void vmb_archive__hash_zeros(crypto_hash_sha256_state *h, uint64_t n)
{
	while (n) {
		size_t k = n < sizeof vmb_archive__zeros
				   ? (size_t)n : sizeof vmb_archive__zeros;
		crypto_hash_sha256_update(h, vmb_archive__zeros, k);
		n -= k;
	}
}

void vmb_archive__hash_hex(crypto_hash_sha256_state *h, char hex[65])
{
	uint8_t d[32];
	crypto_hash_sha256_final(h, d);
	vmb_hex(d, 32, hex);
}

void vmb_archive__export_key(const vmb_repo *r, uint8_t key[32])
{
	crypto_kdf_derive_from_key(key, 32, X_SUBKEY, X_CONTEXT, r->keys->master);
}

struct vmb_archive_secret *vmb_archive__secret_new(void)
{
	struct vmb_archive_secret *s = sodium_malloc(sizeof *s);
	if (!s) {
		vmb_error_set(VMB_ENOMEM, "cannot allocate locked memory for "
			      "the archive key");
		return NULL;
	}
	sodium_memzero(s, sizeof *s);
	return s;
}

void vmb_archive__secret_free(struct vmb_archive_secret *s)
{
	if (s)
		sodium_free(s); /* wipes the whole allocation */
}

char *vmb_archive__safe_name(const char *s, const char *fallback)
{
	size_t n = s ? strlen(s) : 0;
	char *o;
	if (!n) {
		s = fallback;
		n = strlen(s);
	}
	if (n > 100)
		n = 100;
	o = vmb_strndup(s, n);
	if (!o)
		return NULL;
	for (char *p = o; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
		      *p == '-'))
			*p = '_';
	if (o[0] == '.')
		o[0] = '_';
	return o;
}

void vmb_archive__shown_name(const char *s, char out[120])
{
	size_t i = 0;
	if (!s)
		s = "(undecodable)";
	for (; *s && i < 116; s++)
		out[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
	if (*s) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = 0;
}

void vmb_archive__remove_tree(const char *dir)
{
	DIR *d;
	struct dirent *e;
	if (!dir || !(d = opendir(dir)))
		return;
	while ((e = readdir(d)) != NULL) {
		char *p;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		p = vmb_asprintf("%s/%s", dir, e->d_name);
		if (p) {
			unlink(p); /* the folders we make hold files only */
			free(p);
		}
	}
	closedir(d);
	rmdir(dir);
}
