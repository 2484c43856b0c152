/*
 * qcow2 persistent bitmaps written natively (lib/disk/qcow2_bitmap.c):
 * QEMU accepts what we write (qemu-img check clean, qemu-img info lists
 * the bitmap, qemu-io writes are recorded in it); removing bitmaps frees
 * their clusters; a crash (VMB_TEST_CRASH_AT) at every step leaves an
 * image qemu-img check accepts (0 or leaks only) with the data intact;
 * a running QEMU (qemu-io holding the image) makes the lock fail; new
 * layers (empty overlays, merged layers) are valid qcow2.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"
#include "vmbackup/disk.h"
#include "disk/qcow2.h"

static int dirty_cb(uint64_t off, uint64_t len, void *p)
{
	uint64_t *acc = p;
	if (acc[0] == 0 && acc[1] == 0)
		acc[0] = off;
	acc[1] += len;
	return 0;
}

/* Bytes the named bitmap marks dirty (first dirty offset in *first). */
static int64_t dirty_bytes(const char *path, const char *name,
			   uint64_t *first)
{
	vmb_qcow2 *q;
	uint64_t acc[2] = { 0, 0 };
	int r;
	if (vmb_disk__qcow2_open(path, NULL, &q))
		return -1;
	r = vmb_disk__qcow2_bitmap_dirty(q, name, dirty_cb, acc);
	vmb_disk__qcow2_close(q);
	if (first)
		*first = acc[0];
	return r ? r : (int64_t)acc[1];
}

static int edit(const char *path, const char *add, const char *rm)
{
	int fd, r;
	const char *remove[1] = { rm };
	vmb_qcow2_bitmap_edit e = { add, 65536, 1, remove, rm ? 1 : 0 };
	if ((r = vmb_disk__image_lock(path, &fd)))
		return r;
	r = vmb_disk__qcow2_bitmaps_edit(fd, path, &e);
	close(fd);
	return r;
}

static int nbitmaps(const char *path)
{
	vmb_qcow2 *q;
	const vmb_qcow2_bitmap *l;
	size_t n = 0;
	if (vmb_disk__qcow2_open(path, NULL, &q))
		return -1;
	vmb_disk__qcow2_bitmaps(q, &l, &n, NULL);
	vmb_disk__qcow2_close(q);
	return (int)n;
}

/* qemu-img check: 0 clean, 3 leaks only (accepted after a crash). */
static int qcheck(const char *path)
{
	return test_sh("qemu-img check -q '%s' >/dev/null 2>&1", path);
}

static void crash_test(const char *img, const char *ref, const char *step,
		       const char *add, const char *rm)
{
	pid_t pid = fork();
	int st = 0, c;
	if (pid == 0) {
		setenv("VMB_TEST_CRASH_AT", step, 1);
		_exit(edit(img, add, rm) ? 1 : 0);
	}
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 99);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 99)
		fprintf(stderr, "step %s was not reached\n", step);
	c = qcheck(img);
	if (c != 0 && c != 3)
		fprintf(stderr, "crash at %s: qemu-img check exit %d\n", step,
			c);
	CHECK(c == 0 || c == 3);
	CHECK(test_sh("qemu-img compare -q -F raw '%s' '%s'", img, ref) == 0);
	/* and QEMU can still open it read-write */
	CHECK(test_sh("qemu-io -c 'read 0 64k' '%s' >/dev/null", img) == 0);
}

int main(void)
{
	const char *img = strdup(test_path("a.qcow2"));
	const char *ov = strdup(test_path("ov.qcow2"));
	uint64_t first = 0;
	int fd;

	if (test_sh("command -v qemu-img >/dev/null && command -v qemu-io "
		    ">/dev/null"))
		test_skip("qemu-img and qemu-io are needed");
	CHECK(test_sh("qemu-img create -q -f qcow2 '%s' 256M && qemu-io -c "
		      "'write -P 3 0 8M' -c 'write -P 4 200M 1M' '%s' "
		      ">/dev/null", img, img) == 0);

	/* add: QEMU sees it, check is clean */
	CHECK_OK(edit(img, "vmb-1-00000001", NULL));
	CHECK(qcheck(img) == 0);
	CHECK(test_sh("qemu-img info '%s' | grep -q 'name: vmb-1-00000001'",
		      img) == 0);
	CHECK(nbitmaps(img) == 1);
	CHECK(dirty_bytes(img, "vmb-1-00000001", NULL) == 0);
	/* QEMU records writes in it (auto), and closes it cleanly */
	CHECK(test_sh("qemu-io -c 'write -P 9 100M 64k' '%s' >/dev/null",
		      img) == 0);
	CHECK(dirty_bytes(img, "vmb-1-00000001", &first) == 65536);
	CHECK(first == 100u << 20);
	CHECK(qcheck(img) == 0);
	/* a second one, then the first removed: clusters freed, no leak */
	CHECK_OK(edit(img, "vmb-2-00000002", NULL));
	CHECK(nbitmaps(img) == 2);
	CHECK_ERR(edit(img, "vmb-2-00000002", NULL), VMB_EEXISTS);
	CHECK_OK(edit(img, NULL, "vmb-1-00000001"));
	CHECK(nbitmaps(img) == 1);
	CHECK(qcheck(img) == 0);
	CHECK(test_sh("qemu-io -c 'write -P 8 10M 128k' '%s' >/dev/null",
		      img) == 0);
	CHECK(dirty_bytes(img, "vmb-2-00000002", &first) == 131072);
	CHECK(first == 10u << 20);
	/* QEMU's own bitmaps are kept: qemu-img bitmap --add, then ours */
	CHECK(test_sh("qemu-img bitmap --add '%s' theirs 2>/dev/null || "
		      "exit 0", img) == 0);
	CHECK_OK(edit(img, "vmb-3-00000003", "vmb-2-00000002"));
	CHECK(qcheck(img) == 0);
	CHECK(test_sh("qemu-img info '%s' | grep -q 'name: vmb-3-00000003'",
		      img) == 0);

	/* crash at every step: check accepts it, data intact */
	CHECK(test_sh("qemu-img convert -O raw '%s' '%s'", img,
		      test_path("ref.raw")) == 0);
	{
		static const char *steps[] = {
			"bitmap-refblock-added", "bitmap-data-written",
			"bitmap-refcounts-raised", "bitmap-autoclear-cleared",
			"bitmap-ext-written", "bitmap-header-switched",
			"bitmap-old-freed" };
		char name[32];
		char *ref = strdup(test_path("ref.raw"));
		char *b = strdup(test_path("b.qcow2"));
		char *bref = strdup(test_path("bref.raw"));
		for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
			/* the first bitmap of an image takes the slow path
			 * (the extension is new); later ones the fast one */
			int slow = !strcmp(steps[i], "bitmap-autoclear-cleared") ||
				   !strcmp(steps[i], "bitmap-ext-written");
			snprintf(name, sizeof name, "vmb-%zu-0000aaaa", 10 + i);
			if (slow) {
				CHECK(test_sh("rm -f '%s' && qemu-img create -q "
					      "-f qcow2 '%s' 64M && qemu-io -c "
					      "'write -P 5 1M 1M' '%s' >/dev/null"
					      " && qemu-img convert -O raw '%s' "
					      "'%s'", b, b, b, b, bref) == 0);
				crash_test(b, bref, steps[i], name, NULL);
				/* after the switch was cut short, the
				 * image takes a new edit */
				CHECK_OK(edit(b, "vmb-1-0000dddd", NULL));
				CHECK(qcheck(b) == 0 || qcheck(b) == 3);
			} else {
				crash_test(img, ref, steps[i], name, NULL);
				if (nbitmaps(img) > 3)
					CHECK_OK(edit(img, NULL, name));
			}
		}
		free(ref);
		free(b);
		free(bref);
		/* after the crashes the image still takes edits; leaks are
		 * what qemu-img check -r leaks repairs */
		CHECK(test_sh("qemu-img check -q -r leaks '%s' >/dev/null "
			      "2>&1", img) == 0);
		CHECK_OK(edit(img, "vmb-99-0000bbbb", NULL));
		CHECK(qcheck(img) == 0);
	}

	/* an overlay with a backing file: the header has no room, the
	 * backing name moves to the end of cluster 0 first */
	CHECK(test_sh("cd '%s' && qemu-img create -q -f qcow2 -b a.qcow2 -F "
		      "qcow2 ov.qcow2", test_tmpdir()) == 0);
	CHECK_OK(edit(ov, "vmb-1-0000cccc", NULL));
	CHECK(qcheck(ov) == 0);
	CHECK(test_sh("qemu-img info '%s' | grep -q 'backing file: a.qcow2'",
		      ov) == 0);
	CHECK(test_sh("qemu-io -c 'write -P 1 5M 64k' '%s' >/dev/null",
		      ov) == 0);
	CHECK(dirty_bytes(ov, "vmb-1-0000cccc", &first) == 65536);
	CHECK(test_sh("qemu-img compare -q '%s' '%s' >/dev/null; test $? = 1",
		      ov, img) == 0);

	/* a running QEMU holds the image: the lock fails with ELOCKED */
	{
		pid_t pid = fork();
		if (pid == 0) {
			execlp("sh", "sh", "-c", "sleep 3 | qemu-io \"$0\" "
			       ">/dev/null 2>&1", img, (char *)NULL);
			_exit(127);
		}
		sleep(1);
		CHECK_ERR(vmb_disk__image_lock(img, &fd), VMB_ELOCKED);
		waitpid(pid, NULL, 0);
		CHECK_OK(vmb_disk__image_lock(img, &fd));
		if (fd >= 0) {
			/* and while we hold it, QEMU cannot write */
			CHECK(test_sh("qemu-io -c 'write 0 512' '%s' "
				      ">/dev/null 2>&1", img) != 0);
			close(fd);
		}
	}

	/* new layers: an empty overlay and a merged layer */
	{
		const char *e = strdup(test_path("e.qcow2"));
		const char *m = strdup(test_path("m.qcow2"));
		vmb_disk *d;
		CHECK_OK(vmb_disk__qcow2_write_layer(e, 256u << 20, "a.qcow2",
						     "qcow2", NULL, 0, 0644));
		CHECK(qcheck(e) == 0);
		CHECK(test_sh("qemu-img compare -q '%s' '%s'", e, img) == 0);
		CHECK(test_sh("qemu-io -c 'write -P 7 1M 3M' -c 'write -z 200M "
			      "64k' '%s' >/dev/null", e) == 0);
		CHECK_OK(vmb_disk_open(e, 0, &d));
		if (d) {
			/* e + a merged, no backing: a full copy */
			CHECK_OK(vmb_disk__qcow2_write_layer(m, 256u << 20,
							     NULL, NULL, d, 2,
							     0644));
			vmb_disk_close(d);
		}
		CHECK(qcheck(m) == 0);
		CHECK(test_sh("qemu-img compare -q '%s' '%s'", m, e) == 0);
		CHECK(test_sh("qemu-img info '%s' | grep -q backing; test $? = 1",
			      m) == 0);
		free((char *)e);
		free((char *)m);
	}
	free((char *)img);
	free((char *)ov);
	return test_done();
}
