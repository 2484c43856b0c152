/* GC: exact results with a memory limit that forces several mark passes,
 * dry runs that delete nothing, prune rules, and protection. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"
#include "vmbackup.h"

static void write_file(const char *path, size_t len, uint64_t seed)
{
	uint8_t *b = malloc(len);
	FILE *f = fopen(path, "wb");
	test_random(b, len, seed);
	fwrite(b, 1, len, f);
	fclose(f);
	free(b);
}

static int count_files(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "test $(find '%s' -type f | wc -l) -gt 0 && "
		 "exit $(find '%s' -type f | wc -l)", dir, dir);
	return test_sh("%s", cmd);
}

struct gc_during {
	vmb_repo *r;
	int runs;
};

/* Progress of a backup: once it has read everything (the last call comes
 * after its indexes are stored, just before its manifest), run a GC from
 * another handle, as another host would. */
static int gc_when_done(const vmb_progress *p, void *payload)
{
	struct gc_during *g = payload;
	vmb_gc_options go = VMB_GC_OPTIONS_INIT;
	vmb_gc_result gr;
	if (p->bytes_done >= p->bytes_total && g->runs < 8) {
		CHECK_OK(vmb_repo_gc(g->r, &go, &gr));
		g->runs++;
	}
	return 0;
}

static char logbuf[4096];
static void capture(vmb_log_level lvl, const char *msg, void *payload)
{
	size_t n = strlen(logbuf);
	(void)lvl;
	(void)payload;
	snprintf(logbuf + n, sizeof logbuf - n, "%s\n", msg);
}

int main(void)
{
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_backup_options bo = VMB_BACKUP_OPTIONS_INIT;
	vmb_backup_source src = { NULL, NULL, NULL };
	vmb_backup_result a, b;
	vmb_gc_options go = VMB_GC_OPTIONS_INIT;
	vmb_gc_result gr;
	vmb_restore_result rr;
	vmb_check_result cr;
	vmb_repo *r = NULL;
	char *repo = strdup(test_path("repo")); /* test_path: one buffer */
	char chunks[600], man[600];

	setenv("VMB_KDF_OPSLIMIT", "1", 1);
	setenv("VMB_KDF_MEMLIMIT", "8388608", 1);
	setenv("XDG_CACHE_HOME", test_path("cache"), 1);
	io.chunk_size = 64 << 10;
	CHECK_OK(vmb_repo_init(repo, "pw", &io));
	CHECK_OK(vmb_repo_open(repo, "pw", &r));
	if (!r) {
		free(repo);
		return test_done();
	}

	write_file(test_path("a.img"), 4 << 20, 1);
	write_file(test_path("b.img"), 4 << 20, 2);
	src.path = test_path("a.img");
	bo.vm = "a";
	CHECK_OK(vmb_repo_backup(r, &src, 1, &bo, &a));
	src.path = test_path("b.img");
	bo.vm = "b";
	CHECK_OK(vmb_repo_backup(r, &src, 1, &bo, &b));
	CHECK(a.chunks_new == 64 && b.chunks_new == 64);
	snprintf(chunks, sizeof chunks, "%s/chunks", repo);
	CHECK(count_files(chunks) == 128);

	/* make a's chunks garbage */
	snprintf(man, sizeof man, "%s/snapshots/%s", repo, a.snapshot);
	CHECK(unlink(man) == 0);
	sleep(1); /* chunks must be older than the GC's start second */

	/* dry run: counts, deletes nothing */
	go.dry_run = 1;
	CHECK_OK(vmb_repo_gc(r, &go, &gr));
	CHECK(gr.chunks_deleted == 64);
	CHECK(gr.chunks_referenced == 64);
	CHECK(count_files(chunks) == 128);

	/* room for 8 ids per pass: 64 referenced ids need 8 passes */
	go.dry_run = 0;
	go.memory_limit = 96 * 8;
	CHECK_OK(vmb_repo_gc(r, &go, &gr));
	CHECK(gr.passes == 8);
	CHECK(gr.chunks_total == 128);
	CHECK(gr.chunks_referenced == 64);
	CHECK(gr.chunks_deleted == 64);
	CHECK(gr.bytes_freed > (4u << 20));
	CHECK(gr.indexes_deleted == 1);
	CHECK(count_files(chunks) == 64);
	CHECK_OK(vmb_repo_check(r, &cr));
	CHECK(cr.chunks_missing == 0);
	CHECK_OK(vmb_repo_restore(r, "b@latest", test_path("out"), NULL, &rr));
	CHECK(test_sh("cmp -s '%s' '%s/b.img'", test_path("b.img"),
		      test_path("out")) == 0);

	/* nothing left to free, even with the default memory */
	go.memory_limit = 0;
	CHECK_OK(vmb_repo_gc(r, &go, &gr));
	CHECK(gr.passes == 1 && gr.chunks_deleted == 0);

	/* A backup whose index is the one an earlier backup stored (same
	 * data: same content, same name) reuses it; a GC that runs while the
	 * backup finishes finds it unreferenced and old, and deletes it.  The
	 * backup notices the GC and stores the index again. */
	{
		struct gc_during g = { NULL, 0 };
		vmb_backup_result c;
		CHECK_OK(vmb_repo_open(repo, "pw", &g.r));
		snprintf(man, sizeof man, "%s/snapshots/%s", repo, b.snapshot);
		CHECK(unlink(man) == 0);
		/* yesterday's objects: older than the next backup's session
		 * minus GC's 60 s clock-skew margin */
		CHECK(test_sh("find '%s/chunks' '%s/indexes' -type f -exec "
			      "touch -d '-1 day' {} +", repo, repo) == 0);
		src.path = test_path("b.img");
		bo.vm = "b";
		bo.progress = gc_when_done;
		bo.progress_payload = &g;
		vmb_log_set(capture, NULL, VMB_LOG_INFO);
		CHECK_OK(vmb_repo_backup(r, &src, 1, &bo, &c));
		vmb_log_set(NULL, NULL, VMB_LOG_WARN);
		bo.progress = NULL;
		CHECK(g.runs >= 1);
		CHECK(strstr(logbuf, "re-uploaded index") != NULL);
		CHECK_OK(vmb_repo_check(r, &cr));
		CHECK(cr.errors == 0 && cr.chunks_missing == 0);
		CHECK_OK(vmb_repo_restore(r, "b@latest", test_path("out2"),
					  NULL, &rr));
		CHECK(test_sh("cmp -s '%s' '%s/b.img'", test_path("b.img"),
			      test_path("out2")) == 0);
		vmb_repo_close(g.r);
	}

	/* the maintenance lease is free again */
	CHECK_OK(vmb_repo_lock(r, 60));
	CHECK_OK(vmb_repo_unlock(r));
	vmb_repo_close(r);
	free(repo);
	return test_done();
}
