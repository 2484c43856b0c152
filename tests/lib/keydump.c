/* Test helper for tests/cli/cli_keymem.sh: unwraps a repository key file
 * with $VMB_PASSPHRASE, derives the keys as vmb_repo_open() does and
 * prints each secret as hex, one per line ("master HEX", "enc HEX", ...),
 * so the test can search core dumps and logs for them.  Never installed;
 * the library itself has no way to print a key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

	if (argc != 2 || !pass) {
		fprintf(stderr, "usage: VMB_PASSPHRASE=... %s KEYFILE\n",
			argv[0]);
		return 2;
	}
	f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	n = fread(json, 1, sizeof json - 1, f);
	fclose(f);
	k = vmb_crypto_keys_new();
	if (!k || vmb_crypto_unwrap_key(json, n, pass, strlen(pass), argv[1],
					k->master, &enc) != 0) {
		fprintf(stderr, "%s: cannot unwrap: %s\n", argv[1],
			vmb_error_message());
		return 1;
	}
	vmb_crypto_derive(k->master, enc, k);
	hex("master", k->master, sizeof k->master);
	hex("enc", k->enc, sizeof k->enc);
	hex("id", k->id, sizeof k->id);
	hex("mac", k->mac, sizeof k->mac);
	for (int i = 0; i < 6; i++) { /* the xxh3 secret, 32 bytes a line */
		char name[8];
		snprintf(name, sizeof name, "fp%d", i);
		hex(name, k->fp + 32 * i, 32);
	}
	vmb_crypto_keys_free(k);
	return 0;
}
