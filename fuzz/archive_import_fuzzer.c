/*
 * Fuzz target: archive import as `vmb import` runs it (lib/archive/
 * import.c): the encrypted-archive header ("VMBX", both formats), the tar
 * headers as libarchive reads them for us (names, types, sizes, pax and
 * GNU sparse maps), the entry rules (no absolute or ".." names, links,
 * devices, nesting, too many or too large entries), manifest.json and its
 * checksums, and the OVA path (.ovf descriptor, .mf digests, disk
 * references).  The OVF grammar alone is fuzz/ovf_fuzzer.c.
 *
 * Each input is written to a file and imported into an unencrypted
 * repository made once per process.  Whatever the input: the import ends
 * with a snapshot and a VM name, or with an error message; and the
 * private extraction folder under $TMPDIR is gone afterwards.
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "vmbackup/archive.h"
#include "vmbackup/common.h"
#include "vmbackup/repo.h"

static char base[64];
static char input[128], tmpdir[128];
static vmb_repo *repo;

static int rm_cb(const char *p, const struct stat *st, int flag,
		 struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

static void cleanup(void)
{
	vmb_repo_close(repo);
	if (base[0])
		nftw(base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void quiet(vmb_log_level level, const char *msg, void *payload)
{
	(void)level; (void)msg; (void)payload;
}

static void setup(void)
{
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	char path[128], cache[128];
	snprintf(base, sizeof base, "/tmp/vmb-import-fuzz.XXXXXX");
	if (!mkdtemp(base))
		abort();
	atexit(cleanup);
	snprintf(path, sizeof path, "%s/repo", base);
	snprintf(cache, sizeof cache, "%s/cache", base);
	snprintf(tmpdir, sizeof tmpdir, "%s/tmp", base);
	snprintf(input, sizeof input, "%s/input.tar", base);
	if (mkdir(tmpdir, 0700) != 0)
		abort();
	setenv("XDG_CACHE_HOME", cache, 1);
	setenv("TMPDIR", tmpdir, 1);
	setenv("VMB_THREADS", "1", 1);
	io.encrypted = 0;
	io.chunk_size = 64u << 10;
	vmb_log_set(quiet, NULL, VMB_LOG_ERROR);
	if (vmb_repo_init(path, NULL, &io) != 0 ||
	    vmb_repo_open(path, NULL, &repo) != 0) {
		fprintf(stderr, "cannot make the repository: %s\n",
			vmb_error_message());
		abort();
	}
}

static int tmpdir_empty(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	int empty = 1;
	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	vmb_import_options o = VMB_IMPORT_OPTIONS_INIT;
	vmb_backup_result res;
	char *vm = NULL;
	int fd, rc;

	if (!repo)
		setup();
	fd = open(input, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	close(fd);
	o.threads = 1;
	rc = vmb_repo_import(repo, input, &o, &res, &vm);
	if (rc == 0) {
		char man[200];
		if (!vm || !vm[0] || strlen(res.snapshot) != 32)
			abort();
		/* forget it, or every later import lists one more manifest
		 * to find its parent */
		snprintf(man, sizeof man, "%s/repo/snapshots/%s", base,
			 res.snapshot);
		if (unlink(man) != 0)
			abort();
	} else if (!vmb_error_message()[0]) {
		abort();
	}
	vmb_free(vm);
	if (!tmpdir_empty()) {
		fprintf(stderr, "import left files in %s\n", tmpdir);
		abort();
	}
	return 0;
}
