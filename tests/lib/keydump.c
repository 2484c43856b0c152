/* Test helper for tests/cli/cli_keymem.sh: unwraps a repository key file
 * with $VMB_PASSPHRASE, derives the keys as vmb_repo_open() does and
 * prints each secret as hex, one per line ("master HEX", "enc HEX", ...),
 * so the test can search core dumps and logs for them, with the key of
 * the archives it exports ("export HEX").  With --archive FILE: the key
 * of a self-contained encrypted archive ("archive HEX"), unwrapped from
 * its key block with $VMB_PASSPHRASE.  Never installed; the library
 * itself has no way to print a key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "vmbackup/common.h"
#include "crypto/crypto.h"

static void hex(const char *name, const uint8_t *p, size_t n)
{
	printf("%s ", name);
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
	printf("\n");
}

int main(int argc, char **argv)
{
	static char json[65536];
	const char *pass = getenv("VMB_PASSPHRASE");
	vmb_keys *k;
	FILE *f;
	size_t n;
	int enc = 0;

	int archive = argc == 3 && strcmp(argv[1], "--archive") == 0;
	const char *file = argv[argc - 1];

	if ((argc != 2 && !archive) || !pass) {
		fprintf(stderr, "usage: VMB_PASSPHRASE=... %s [--archive] "
			"FILE\n", argv[0]);
		return 2;
	}
	f = fopen(file, "rb");
	if (!f) {
		perror(file);
		return 1;
	}
	n = fread(json, 1, sizeof json - 1, f);
	fclose(f);
	if (archive) { /* "VMBX", version 2, ..., key block length at 28 */
		size_t kb;
		if (n < 32 || memcmp(json, "VMBX", 4) != 0 || json[4] != 2) {
			fprintf(stderr, "%s: not a self-contained archive\n",
				file);
			return 1;
		}
		kb = (size_t)(uint8_t)json[28] | (size_t)(uint8_t)json[29] << 8;
		if (json[30] || json[31] || 32 + kb > n) {
			fprintf(stderr, "%s: bad key block\n", file);
			return 1;
		}
		memmove(json, json + 32, kb);
		n = kb;
	}
	k = vmb_crypto_keys_new();
	if (!k || vmb_crypto_unwrap_key(json, n, pass, strlen(pass), file,
					k->master, &enc) != 0) {
		fprintf(stderr, "%s: cannot unwrap: %s\n", file,
			vmb_error_message());
		return 1;
	}
	if (archive) {
		hex("archive", k->master, sizeof k->master);
		vmb_crypto_keys_free(k);
		return 0;
	}
	vmb_crypto_derive(k->master, enc, k);
	hex("master", k->master, sizeof k->master);
	hex("enc", k->enc, sizeof k->enc);
	hex("id", k->id, sizeof k->id);
	hex("mac", k->mac, sizeof k->mac);
	{ /* lib/archive/util.c: vmb_archive__export_key() */
		uint8_t x[32];
		crypto_kdf_derive_from_key(x, 32, 16, "vmbexpt1", k->master);
		hex("export", x, 32);
		sodium_memzero(x, sizeof x);
	}
	for (int i = 0; i < 6; i++) { /* the xxh3 secret, 32 bytes a line */
		char name[8];
		snprintf(name, sizeof name, "fp%d", i);
		hex(name, k->fp + 32 * i, 32);
	}
	vmb_crypto_keys_free(k);
	return 0;
}
