/*
 * Key management (change, add, export) and snapshot archives (export,
 * import) through the library API: passphrases and key files behave, data
 * objects never change, archives round-trip disks and configuration into
 * another repository, encrypted archives only open with the same master
 * key, and hostile archives are refused without importing anything.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "testutil.h"
#include "vmbackup.h"

#define DISK_SIZE (6u << 20)

static uint8_t *disk_data;

static void write_image(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	disk_data = calloc(1, DISK_SIZE);
	test_random(disk_data + (1 << 20), 300000, 7);
	memcpy(disk_data + (4 << 20) + 77, "SECRET-TEXT-IN-THE-GUEST", 24);
	CHECK(pwrite(fd, disk_data + (1 << 20), 300000, 1 << 20) == 300000);
	CHECK(pwrite(fd, disk_data + (4 << 20) + 77, 24, (4 << 20) + 77) == 24);
	CHECK(ftruncate(fd, DISK_SIZE) == 0);
	close(fd);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b;
	long n;
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	b = malloc((size_t)n + 1);
	if (fread(b, 1, (size_t)n, f) != (size_t)n)
		n = 0;
	b[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return b;
}

static int memfind(const char *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; i + k <= n; i++)
		if (!memcmp(hay + i, needle, k))
			return 1;
	return 0;
}

/* The latest snapshot of @vm reads back as disk_data. */
static void check_disk(vmb_repo *r, const char *vm, const char *config)
{
	char ref[128];
	vmb_snapshot *s = NULL;
	vmb_disk *d = NULL;
	uint8_t *buf = malloc(DISK_SIZE);
	snprintf(ref, sizeof ref, "%s@latest", vm);
	CHECK_OK(vmb_repo_snapshot_find(r, ref, &s));
	if (!s) {
		free(buf);
		return;
	}
	CHECK(vmb_snapshot_disk_count(s) == 1);
	CHECK(vmb_snapshot_disk_size(s, 0) == DISK_SIZE);
	CHECK(strcmp(vmb_snapshot_disk_name(s, 0), "disk") == 0);
	CHECK_OK(vmb_snapshot_disk_open(r, s, NULL, &d));
	if (d) {
		CHECK_OK(vmb_disk_read(d, buf, 0, DISK_SIZE));
		CHECK(memcmp(buf, disk_data, DISK_SIZE) == 0);
	}
	if (config)
		CHECK(strstr(vmb_snapshot_json(s), config) != NULL);
	vmb_disk_close(d);
	vmb_snapshot_free(s);
	free(buf);
}

static size_t count_snaps(vmb_repo *r)
{
	vmb_snapshot **l = NULL;
	size_t n = 0;
	CHECK_OK(vmb_repo_snapshots(r, NULL, &l, &n));
	vmb_snapshot_list_free(l, n);
	return n;
}

/* A tar with one entry of @type named @name (and a manifest). */
static void hostile_tar(const char *path, const char *name, int type,
			int64_t size)
{
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	static const char man[] = "{\"vmbackup_export\":1,\"disks\":[]}";
	archive_write_set_format_pax(a);
	CHECK(archive_write_open_filename(a, path) == ARCHIVE_OK);
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, (unsigned)type);
	archive_entry_set_perm(e, 0644);
	if (type == AE_IFLNK)
		archive_entry_set_symlink(e, "/etc/passwd");
	archive_entry_set_size(e, type == AE_IFREG ? size : 0);
	CHECK(archive_write_header(a, e) == ARCHIVE_OK);
	if (type == AE_IFREG && size > 0 && size < 4096)
		archive_write_data(a, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
				   (size_t)size < 40 ? (size_t)size : 40);
	archive_entry_clear(e);
	archive_entry_set_pathname(e, "manifest.json");
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, sizeof man - 1);
	archive_write_header(a, e);
	archive_write_data(a, man, sizeof man - 1);
	archive_entry_free(e);
	archive_write_close(a);
	archive_write_free(a);
}

static void test_keys(void)
{
	const char *url = test_path("krepo");
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_repo *r = NULL;
	char *added = NULL, *exported, *cur;
	size_t elen, clen;
	struct stat st;

	CHECK_OK(vmb_repo_init(url, "pass-a", &io));
	CHECK_OK(vmb_repo_open(url, "pass-a", &r));
	if (!r)
		return;
	CHECK(strcmp(vmb_repo_key_name(r), "keys/default") == 0);
	CHECK_ERR(vmb_repo_key_change(r, ""), VMB_EINVAL);
	CHECK_ERR(vmb_repo_key_add(r, NULL, NULL), VMB_EINVAL);
	CHECK_OK(vmb_repo_key_export(r, test_path("key.a")));
	CHECK(stat(test_path("key.a"), &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK_ERR(vmb_repo_key_export(r, test_path("key.a")), VMB_EEXISTS);
	CHECK_OK(vmb_repo_key_change(r, "pass-b"));
	vmb_repo_close(r);
	r = NULL;

	CHECK_ERR(vmb_repo_open(url, "pass-a", &r), VMB_EAUTH);
	CHECK(r == NULL);
	CHECK_OK(vmb_repo_open(url, "pass-b", &r));
	if (!r)
		return;
	CHECK_OK(vmb_repo_key_add(r, "pass-c", &added));
	CHECK(added && strncmp(added, "keys/", 5) == 0 && strlen(added) == 21);
	vmb_repo_close(r);
	r = NULL;
	CHECK_OK(vmb_repo_open(url, "pass-c", &r));
	if (r) {
		CHECK(added && strcmp(vmb_repo_key_name(r), added) == 0);
		/* changing the added key leaves keys/default alone */
		CHECK_OK(vmb_repo_key_change(r, "pass-d"));
		vmb_repo_close(r);
		r = NULL;
	}
	CHECK_ERR(vmb_repo_open(url, "pass-c", &r), VMB_EAUTH);
	CHECK_OK(vmb_repo_open(url, "pass-d", &r));
	vmb_repo_close(r);
	r = NULL;
	CHECK_OK(vmb_repo_open(url, "pass-b", &r));
	vmb_repo_close(r);
	r = NULL;

	/* the exported file, put back, restores the first passphrase */
	exported = slurp(test_path("key.a"), &elen);
	cur = slurp(test_path("krepo/keys/default"), &clen);
	CHECK(exported && cur && (elen != clen || memcmp(exported, cur, elen)));
	CHECK(test_sh("cp '%s' '%s'", test_path("key.a"),
		      test_path("krepo/keys/default")) == 0);
	CHECK_OK(vmb_repo_open(url, "pass-a", &r));
	vmb_repo_close(r);
	r = NULL;
	free(exported);
	free(cur);
	vmb_free(added);

	/* an unencrypted repository has no passphrase to change */
	io.encrypted = 0;
	CHECK_OK(vmb_repo_init(test_path("kplain"), NULL, &io));
	CHECK_OK(vmb_repo_open(test_path("kplain"), NULL, &r));
	if (r) {
		CHECK_ERR(vmb_repo_key_change(r, "x"), VMB_ENOTSUP);
		CHECK_ERR(vmb_repo_key_add(r, "x", NULL), VMB_ENOTSUP);
		vmb_repo_close(r);
	}
}

static void test_archives(void)
{
	const char *u1 = test_path("arepo1"), *u2 = test_path("arepo2");
	const char *config = "<domain><name>archived-vm</name></domain>";
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_backup_options bo = VMB_BACKUP_OPTIONS_INIT;
	vmb_export_options eo = VMB_EXPORT_OPTIONS_INIT;
	vmb_import_options imo = VMB_IMPORT_OPTIONS_INIT;
	vmb_backup_source src = { NULL, "disk", NULL };
	vmb_backup_result br;
	vmb_export_result er;
	vmb_repo *r1 = NULL, *r2 = NULL;
	char *vm = NULL, *tar;
	size_t n, before;

	write_image(test_path("disk.img"));
	src.path = test_path("disk.img");
	io.chunk_size = 256 << 10;
	CHECK_OK(vmb_repo_init(u1, "pw", &io));
	CHECK_OK(vmb_repo_init(u2, "pw2", &io));
	CHECK_OK(vmb_repo_open(u1, "pw", &r1));
	CHECK_OK(vmb_repo_open(u2, "pw2", &r2));
	if (!r1 || !r2)
		goto out;
	bo.vm = "archived-vm";
	bo.config_format = "libvirt-xml";
	bo.config = config;
	CHECK_OK(vmb_repo_backup(r1, &src, 1, &bo, &br));

	/* plain export -> another repository */
	eo.encrypt = 0;
	CHECK_OK(vmb_repo_export(r1, "latest", test_path("plain.tar"), &eo,
				 &er));
	CHECK(er.disks == 1 && !er.encrypted && er.bytes_total == DISK_SIZE);
	CHECK(access(test_path("plain.tar.tmp"), F_OK) != 0);
	tar = slurp(test_path("plain.tar"), &n);
	CHECK(tar && memfind(tar, n, "SECRET-TEXT-IN-THE-GUEST"));
	CHECK(tar && memfind(tar, n, "manifest.json"));
	CHECK(n < DISK_SIZE / 2); /* holes are not stored */
	free(tar);
	CHECK_ERR(vmb_repo_export(r1, "latest", test_path("plain.tar"), &eo,
				  NULL), VMB_EEXISTS);
	CHECK_ERR(vmb_repo_export(r1, "nosuchsnapshot", test_path("n.tar"),
				  &eo, NULL), VMB_ENOTFOUND);
	CHECK(access(test_path("n.tar"), F_OK) != 0);
	CHECK_OK(vmb_repo_import(r2, test_path("plain.tar"), NULL, &br, &vm));
	CHECK(vm && strcmp(vm, "archived-vm") == 0);
	CHECK(br.bytes_total == DISK_SIZE);
	vmb_free(vm);
	vm = NULL;
	check_disk(r2, "archived-vm", "archived-vm</name>");

	/* encrypted export: no plaintext, other key refused, same key ok */
	CHECK_OK(vmb_repo_export(r1, "latest", test_path("enc.tar"), NULL,
				 &er));
	CHECK(er.encrypted == 1);
	tar = slurp(test_path("enc.tar"), &n);
	CHECK(tar && n > 4 && memcmp(tar, "VMBX", 4) == 0);
	CHECK(tar && !memfind(tar, n, "SECRET-TEXT-IN-THE-GUEST"));
	CHECK(tar && !memfind(tar, n, "archived-vm"));
	free(tar);
	before = count_snaps(r2);
	CHECK_ERR(vmb_repo_import(r2, test_path("enc.tar"), NULL, NULL, NULL),
		  VMB_EAUTH);
	CHECK(count_snaps(r2) == before);
	imo.vm = "copy";
	CHECK_OK(vmb_repo_import(r1, test_path("enc.tar"), &imo, &br, &vm));
	CHECK(vm && strcmp(vm, "copy") == 0);
	vmb_free(vm);
	vm = NULL;
	check_disk(r1, "copy", "archived-vm</name>");

	/* format 2: the archive carries its own key, wrapped under a
	 * passphrase; any repository imports it with that alone */
	{
		vmb_export_options e2 = VMB_EXPORT_OPTIONS_INIT;
		vmb_import_options i2 = VMB_IMPORT_OPTIONS_INIT;
		e2.passphrase = "archive secret";
		CHECK_OK(vmb_repo_export(r1, "latest", test_path("enc2.tar"),
					 &e2, &er));
		CHECK(er.encrypted == 1);
		tar = slurp(test_path("enc2.tar"), &n);
		CHECK(tar && n > 5 && memcmp(tar, "VMBX", 4) == 0 &&
		      tar[4] == 2);
		CHECK(tar && !memfind(tar, n, "SECRET-TEXT-IN-THE-GUEST"));
		CHECK(tar && memfind(tar, n, "argon2id13"));
		free(tar);
		before = count_snaps(r2);
		CHECK_ERR(vmb_repo_import(r2, test_path("enc2.tar"), NULL,
					  NULL, NULL), VMB_EAUTH);
		i2.passphrase = "wrong";
		CHECK_ERR(vmb_repo_import(r2, test_path("enc2.tar"), &i2,
					  NULL, NULL), VMB_EAUTH);
		CHECK(strstr(vmb_error_message(), "wrong passphrase") != NULL);
		CHECK(count_snaps(r2) == before);
		i2.passphrase = "archive secret";
		i2.vm = "from-enc2";
		CHECK_OK(vmb_repo_import(r2, test_path("enc2.tar"), &i2, NULL,
					 NULL));
		check_disk(r2, "from-enc2", "archived-vm</name>");
	}

	/* a qcow2 archive round trip */
	eo.format = "qcow2";
	CHECK_OK(vmb_repo_export(r1, "archived-vm@latest",
				 test_path("q.tar"), &eo, NULL));
	imo.vm = "from-qcow2";
	CHECK_OK(vmb_repo_import(r2, test_path("q.tar"), &imo, NULL, NULL));
	check_disk(r2, "from-qcow2", NULL);

	/* hostile archives */
	before = count_snaps(r2);
	hostile_tar(test_path("h1.tar"), "../evil", AE_IFREG, 10);
	CHECK_ERR(vmb_repo_import(r2, test_path("h1.tar"), NULL, NULL, NULL),
		  VMB_EINVAL);
	hostile_tar(test_path("h2.tar"), "/abs", AE_IFREG, 10);
	CHECK_ERR(vmb_repo_import(r2, test_path("h2.tar"), NULL, NULL, NULL),
		  VMB_EINVAL);
	hostile_tar(test_path("h3.tar"), "link", AE_IFLNK, 0);
	CHECK_ERR(vmb_repo_import(r2, test_path("h3.tar"), NULL, NULL, NULL),
		  VMB_EINVAL);
	hostile_tar(test_path("h4.tar"), "fifo", AE_IFIFO, 0);
	CHECK_ERR(vmb_repo_import(r2, test_path("h4.tar"), NULL, NULL, NULL),
		  VMB_EINVAL);
	hostile_tar(test_path("h5.tar"), "a/b/c.img", AE_IFREG, 10);
	CHECK_ERR(vmb_repo_import(r2, test_path("h5.tar"), NULL, NULL, NULL),
		  VMB_EINVAL);
	CHECK(strstr(vmb_error_message(), "nothing was imported") != NULL);
	CHECK_ERR(vmb_repo_import(r2, test_path("missing.tar"), NULL, NULL,
				  NULL), VMB_ENOTFOUND);
	CHECK(count_snaps(r2) == before);
	CHECK(access(test_path("evil"), F_OK) != 0);
out:
	vmb_repo_close(r1);
	vmb_repo_close(r2);
	free(disk_data);
}

int main(void)
{
	setenv("VMB_KDF_OPSLIMIT", "1", 1);
	setenv("VMB_KDF_MEMLIMIT", "8388608", 1);
	setenv("XDG_CACHE_HOME", test_path("cache"), 1);
	setenv("TMPDIR", test_tmpdir(), 1);
	test_keys();
	test_archives();
	return test_done();
}
