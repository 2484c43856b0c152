/*
 * The hypervisor plugin layer: the loader's checks (API version, struct
 * size, name, mandatory callbacks, features without their callbacks), a
 * plugin whose disks report their own changes going through the whole
 * backup pipeline (cbt "libvirt", bytes read = what changed, restores
 * right), the plugin told how each backup ended, and a plugin that fails
 * to start leaving the repository untouched with an error naming it.
 */
#include <stdlib.h>
#include <string.h>
#include "vmbackup.h"
#include "vmbackup/sys/hv.h"
#include "testutil.h"

/* ---- plugins with one defect each ---- */

static int ok_open(const char *uri, void **h) { (void)uri; *h = NULL; return 0; }
static void ok_close(void *h) { (void)h; }
static int ok_describe(void *h, const char *vm, vmb_hv_vm_info **out)
{
	(void)h; (void)vm; (void)out;
	return vmb_error_set(VMB_ENOTFOUND, "no VM %s", vm);
}
static int ok_begin(void *h, const char *vm, const vmb_hv_backup_options *o,
		    vmb_hv_backup_job **out)
{
	(void)h; (void)vm; (void)o; (void)out;
	return vmb_error_set(VMB_EIO, "cannot begin");
}
static int ok_end(void *h, vmb_hv_backup_job *b, int c)
{
	(void)h; (void)b; (void)c;
	return 0;
}

#define GOOD(NAME) { sizeof(vmb_hv_plugin), VMB_HV_API_VERSION, NAME, "1", \
	"test", 0, NULL, NULL, ok_open, ok_close, ok_describe, NULL,      \
	ok_begin, ok_end, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,  \
	NULL, NULL, NULL }

static vmb_hv_plugin p_version = GOOD("badversion");
static vmb_hv_plugin p_small = GOOD("small");
static vmb_hv_plugin p_noopen = GOOD("noopen");
static vmb_hv_plugin p_feature = GOOD("feature");
static vmb_hv_plugin p_name = GOOD("Bad-Name");
static vmb_hv_plugin p_good = GOOD("good");
static const vmb_hv_plugin *i_version(void) { return &p_version; }
static const vmb_hv_plugin *i_small(void) { return &p_small; }
static const vmb_hv_plugin *i_noopen(void) { return &p_noopen; }
static const vmb_hv_plugin *i_feature(void) { return &p_feature; }
static const vmb_hv_plugin *i_name(void) { return &p_name; }
static const vmb_hv_plugin *i_good(void) { return &p_good; }
static const vmb_hv_plugin *i_null(void) { return NULL; }

static void test_loader_checks(void)
{
	vmb_hv *h = NULL;
	char name[32];
	const char *rest;
	p_version.api_version = 99;
	CHECK_ERR(vmb_hv_register(i_version), VMB_ENOTSUP);
	CHECK(strstr(vmb_error_message(), "API version 99") != NULL);
	p_small.struct_size = 16;
	CHECK_ERR(vmb_hv_register(i_small), VMB_EINVAL);
	CHECK(strstr(vmb_error_message(), "too small") != NULL);
	p_noopen.open = NULL;
	CHECK_ERR(vmb_hv_register(i_noopen), VMB_EINVAL);
	CHECK(strstr(vmb_error_message(), "noopen plugin") != NULL);
	CHECK(strstr(vmb_error_message(), "open is missing") != NULL);
	p_feature.features = VMB_HV_F_DEFINE; /* without define() */
	CHECK_ERR(vmb_hv_register(i_feature), VMB_EINVAL);
	CHECK(strstr(vmb_error_message(), "feature plugin") != NULL);
	CHECK(strstr(vmb_error_message(), "without define") != NULL);
	CHECK_ERR(vmb_hv_register(i_name), VMB_EINVAL);
	CHECK_ERR(vmb_hv_register(i_null), VMB_EINVAL);
	/* none of them is usable */
	CHECK(vmb_hv_open("noopen", NULL, &h) != 0 && h == NULL);
	CHECK(strstr(vmb_error_message(), "no noopen plugin") != NULL);

	CHECK_OK(vmb_hv_register(i_good));
	CHECK_OK(vmb_hv_open("good", NULL, &h));
	CHECK(h && !strcmp(vmb_hv_path(h), "(built in)"));
	/* optional operations not offered: refused, never stubbed */
	CHECK_ERR(vmb_hv_list(h, NULL, NULL), VMB_ENOTSUP);
	CHECK(strstr(vmb_error_message(), "good plugin cannot list") != NULL);
	CHECK_ERR(vmb_hv_snapshot_create(h, "x", "s"), VMB_ENOTSUP);
	{
		char *json = NULL;
		CHECK_ERR(vmb_hv_describe(h, "vm1", &json), VMB_ENOTFOUND);
		/* the plugin is named in its errors */
		CHECK(!strncmp(vmb_error_message(), "good plugin: no VM vm1",
			       22));
	}
	vmb_hv_close(h);
	vmb_hv_close(NULL);

	/* sources: a registered plugin's prefix, else a path */
	CHECK_OK(vmb_hv_parse_source("good:web1", name, &rest));
	CHECK(!strcmp(name, "good") && !strcmp(rest, "web1"));
	CHECK_OK(vmb_hv_parse_source("file:/a/b.qcow2", name, &rest));
	CHECK(!strcmp(name, "file") && !strcmp(rest, "/a/b.qcow2"));
	CHECK_OK(vmb_hv_parse_source("/a/b:c.qcow2", name, &rest));
	CHECK(!strcmp(name, "file") && !strcmp(rest, "/a/b:c.qcow2"));
	CHECK_OK(vmb_hv_parse_source("disk.qcow2", name, &rest));
	CHECK(!strcmp(name, "file"));
}

/* ---- a plugin whose one disk is memory and tracks its own changes ---- */

#define DSIZE (16u << 20)
static uint8_t *mem;
static uint64_t dirty_off, dirty_len; /* what changed since the last begin */
static int ends_committed, ends_failed, fail_begin, generation;
static char last_parent_state[64];

static uint64_t m_size(void *d) { (void)d; return DSIZE; }
static int m_read(void *d, void *buf, uint64_t off, size_t len)
{
	(void)d;
	memcpy(buf, mem + off, len);
	return 0;
}
static int m_changes(void *d, const char *parent_state, vmb_extent_fn fn,
		     void *payload, const char **source, char **new_state)
{
	char want[32];
	(void)d;
	*new_state = malloc(32);
	snprintf(*new_state, 32, "gen-%d", generation);
	snprintf(last_parent_state, sizeof last_parent_state, "%s",
		 parent_state ? parent_state : "(none)");
	snprintf(want, sizeof want, "gen-%d", generation - 1);
	if (!parent_state || strcmp(parent_state, want) != 0)
		return 0; /* not from our last backup: unknown */
	if (dirty_len) {
		vmb_extent e = { dirty_off, dirty_len, VMB_EXTENT_DATA, 0 };
		int rc = fn(&e, payload);
		if (rc)
			return rc;
	}
	*source = "libvirt";
	return 0;
}
static const vmb_disk_ops mem_ops = {
	.version = VMB_DISK_OPS_VERSION, .format = "raw", .size = m_size,
	.read = m_read, .changes = m_changes,
};

static vmb_hv_disk_info mdisk = { "vda", NULL, "raw", DSIZE };
static vmb_hv_vm_info minfo = { sizeof(vmb_hv_vm_info), "memvm", NULL,
				VMB_HV_STATE_RUNNING, 1, &mdisk, "test-conf",
				"<vm/>" };
static vmb_hv_backup_disk bdisk;
static vmb_hv_backup_job job = { sizeof(vmb_hv_backup_job), "memvm", 1,
				 &bdisk, "test-conf", "<vm/>", "frozen", NULL,
				 NULL };

static int m_describe(void *h, const char *vm, vmb_hv_vm_info **out)
{
	(void)h;
	if (strcmp(vm, "memvm"))
		return vmb_error_set(VMB_ENOTFOUND, "no VM %s", vm);
	*out = &minfo;
	return 0;
}
static int m_begin(void *h, const char *vm, const vmb_hv_backup_options *o,
		   vmb_hv_backup_job **out)
{
	(void)h; (void)vm; (void)o;
	if (fail_begin)
		return vmb_error_set(VMB_EIO, "the hypervisor said no");
	generation++;
	bdisk.name = "vda";
	bdisk.path = "mem:vda";
	if (vmb_disk_new(&mem_ops, NULL, &bdisk.disk))
		return -1;
	*out = &job;
	return 0;
}
static int m_end(void *h, vmb_hv_backup_job *b, int committed)
{
	(void)h;
	vmb_disk_close(b->disks[0].disk);
	bdisk.disk = NULL;
	if (committed)
		ends_committed++;
	else
		ends_failed++;
	return 0;
}
static const vmb_hv_plugin p_mem = { sizeof(vmb_hv_plugin),
	VMB_HV_API_VERSION, "mem", "1", "memory VM", VMB_HV_F_CBT, NULL, NULL,
	ok_open, ok_close, m_describe, NULL, m_begin, m_end, NULL, NULL, NULL,
	NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL };
static const vmb_hv_plugin *i_mem(void) { return &p_mem; }

static size_t nsnaps(vmb_repo *r)
{
	vmb_snapshot **l;
	size_t n = 0;
	if (vmb_repo_snapshots(r, NULL, &l, &n) == 0)
		vmb_snapshot_list_free(l, n);
	return n;
}

static void test_backup_through_plugin(void)
{
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_hv_backup_opts ho = VMB_HV_BACKUP_OPTS_INIT;
	vmb_backup_result res;
	vmb_hv_source src;
	vmb_repo *r = NULL;
	vmb_hv *h = NULL;
	vmb_snapshot *s = NULL;
	vmb_disk *d = NULL;
	uint8_t *back;
	const char *url = test_path("repo");
	io.encrypted = 0;
	mem = calloc(1, DSIZE);
	back = malloc(DSIZE);
	test_random(mem, 6u << 20, 1);
	CHECK_OK(vmb_repo_init(url, NULL, &io));
	CHECK_OK(vmb_repo_open(url, NULL, &r));
	CHECK_OK(vmb_hv_register(i_mem));
	CHECK_OK(vmb_hv_open("mem", NULL, &h));
	src.hv = h;
	src.vm = "memvm";

	/* full */
	CHECK_OK(vmb_hv_backup(r, &src, 1, &ho, &res));
	CHECK(!strcmp(res.cbt, "none"));
	CHECK(ends_committed == 1);
	CHECK(!strcmp(last_parent_state, "(none)"));
	/* a guest write of 64 KiB inside one chunk */
	memset(mem + (5u << 20) + 4096 * 3, 0xab, 65536);
	dirty_off = (5u << 20) + 4096 * 3;
	dirty_len = 65536;
	CHECK_OK(vmb_hv_backup(r, &src, 1, &ho, &res));
	CHECK(!strcmp(res.cbt, "libvirt"));
	CHECK(!strcmp(last_parent_state, "gen-1"));
	CHECK(res.bytes_read == 65536);
	CHECK(ends_committed == 2);
	/* the snapshot: the VM's name, its configuration, consistency */
	CHECK_OK(vmb_repo_snapshot_find(r, "memvm@latest", &s));
	if (s) {
		const char *fmt = NULL;
		CHECK(!strcmp(vmb_snapshot_vm(s), "memvm"));
		CHECK(!strcmp(vmb_snapshot_consistency(s), "frozen"));
		CHECK(vmb_snapshot_config(s, &fmt) &&
		      !strcmp(vmb_snapshot_config(s, NULL), "<vm/>"));
		CHECK(fmt && !strcmp(fmt, "test-conf"));
		CHECK(!strcmp(vmb_snapshot_disk_cbt(s, 0), "libvirt"));
		CHECK(!strcmp(vmb_snapshot_disk_cbt_state(s, 0), "gen-2"));
		/* read back from the repository: the new data is there */
		CHECK_OK(vmb_snapshot_disk_open(r, s, "vda", &d));
		if (d) {
			CHECK_OK(vmb_disk_read(d, back, 0, DSIZE));
			CHECK(memcmp(back, mem, DSIZE) == 0);
		}
		vmb_disk_close(d);
	}
	vmb_snapshot_free(s);

	/* a state the disk does not recognise: every chunk compared */
	generation += 5;
	CHECK_OK(vmb_hv_backup(r, &src, 1, &ho, &res));
	CHECK(!strcmp(res.cbt, "fingerprint"));
	CHECK(res.bytes_read >= (6u << 20));

	/* --full: the plugin is told, nothing of the parent is used */
	ho.flags = VMB_HV_BACKUP_FULL;
	CHECK_OK(vmb_hv_backup(r, &src, 1, &ho, &res));
	CHECK(!strcmp(res.cbt, "none"));
	ho.flags = 0;

	/* a plugin that cannot start: an error naming it, nothing written */
	{
		size_t before = nsnaps(r);
		fail_begin = 1;
		CHECK_ERR(vmb_hv_backup(r, &src, 1, &ho, &res), VMB_EIO);
		CHECK(!strncmp(vmb_error_message(), "mem plugin: the hypervisor "
			       "said no", 31));
		CHECK(nsnaps(r) == before);
		fail_begin = 0;
	}
	/* an unknown VM */
	src.vm = "nope";
	CHECK_ERR(vmb_hv_backup(r, &src, 1, &ho, &res), VMB_ENOTFOUND);
	CHECK(strstr(vmb_error_message(), "mem plugin: no VM nope") != NULL);
	CHECK(ends_failed == 0); /* begin never succeeded */
	vmb_hv_close(h);
	vmb_repo_close(r);
	free(mem);
	free(back);
}

/* ---- a boot runner plugin (VMB_HV_F_BOOT), no backup source ---- */

static int boot_calls;
static vmb_hv_boot_request last_req;

/* "Boots" by reading the boot sector from the repository: booted when
 * it holds the expected text.  Writes an unterminated reason, so the
 * library's bounding of the plugin's strings is tested too. */
static int r_boot(void *h, const vmb_hv_boot_request *req,
		  vmb_hv_boot_report *rep)
{
	char sector[512];
	(void)h;
	boot_calls++;
	last_req = *req;
	if (vmb_disk_read(req->disk, sector, 0, sizeof sector))
		return -1;
	rep->console = malloc(64);
	memcpy(rep->console, sector, 63);
	rep->console[63] = 0;
	rep->console_len = strlen(rep->console);
	rep->console_total = rep->console_len;
	rep->booted = req->expect && strstr(rep->console, req->expect);
	memset(rep->reason, 'r', sizeof rep->reason);
	snprintf(rep->vcpu, sizeof rep->vcpu, "fake");
	return 0;
}

#define RUNNER(NAME, DESCRIBE, BOOT) { .struct_size = sizeof(vmb_hv_plugin), \
	.api_version = VMB_HV_API_VERSION, .name = NAME, .version = "1",   \
	.description = "test runner", .features = VMB_HV_F_BOOT,          \
	.open = ok_open, .close = ok_close, .describe = DESCRIBE,          \
	.boot = BOOT }
static vmb_hv_plugin p_runner = RUNNER("runner", NULL, r_boot);
static vmb_hv_plugin p_noboot = RUNNER("noboot", NULL, NULL);
static vmb_hv_plugin p_halfsrc = RUNNER("halfsrc", ok_describe, r_boot);
static const vmb_hv_plugin *i_runner(void) { return &p_runner; }
static const vmb_hv_plugin *i_noboot(void) { return &p_noboot; }
static const vmb_hv_plugin *i_halfsrc(void) { return &p_halfsrc; }

static void test_boot_runner(void)
{
	vmb_repo_init_options io = VMB_REPO_INIT_OPTIONS_INIT;
	vmb_backup_options bo = VMB_BACKUP_OPTIONS_INIT;
	vmb_boot_options o = VMB_BOOT_OPTIONS_INIT;
	vmb_backup_source src = { NULL, NULL, NULL };
	vmb_backup_result br;
	vmb_boot_result res;
	vmb_hv_source hs;
	vmb_repo *r = NULL;
	vmb_hv *h = NULL;
	const char *url = test_path("bootrepo");
	const char *img = test_path("boot.raw"), *img2 = test_path("nosig.raw");
	char *json = NULL;
	uint8_t *disk = calloc(1, 1 << 20);
	FILE *f;

	/* the loader: a runner needs boot(), and all source callbacks or none */
	CHECK_ERR(vmb_hv_register(i_noboot), VMB_EINVAL);
	CHECK(strstr(vmb_error_message(), "without boot") != NULL);
	CHECK_ERR(vmb_hv_register(i_halfsrc), VMB_EINVAL);
	CHECK(strstr(vmb_error_message(), "backup_begin is missing") != NULL);
	CHECK_OK(vmb_hv_register(i_runner));
	CHECK_OK(vmb_hv_open("runner", NULL, &h));
	CHECK(vmb_hv_features(h) == VMB_HV_F_BOOT);
	CHECK_ERR(vmb_hv_describe(h, "vm", &json), VMB_ENOTSUP);
	CHECK(strstr(vmb_error_message(), "runner plugin cannot back up") !=
	      NULL);
	hs.hv = h;
	hs.vm = "vm";
	{
		vmb_hv_backup_opts ho = VMB_HV_BACKUP_OPTS_INIT;
		ho.backup.vm = "vm";
		CHECK_ERR(vmb_hv_backup(NULL, &hs, 1, &ho, &br), VMB_ENOTSUP);
	}
	vmb_hv_close(h);

	/* two disks: one with a boot signature, one without */
	memcpy(disk, "hello from the boot sector", 27);
	disk[510] = 0x55;
	disk[511] = 0xaa;
	f = fopen(img, "wb");
	fwrite(disk, 1, 1 << 20, f);
	fclose(f);
	disk[511] = 0;
	f = fopen(img2, "wb");
	fwrite(disk, 1, 1 << 20, f);
	fclose(f);
	io.encrypted = 0;
	CHECK_OK(vmb_repo_init(url, NULL, &io));
	CHECK_OK(vmb_repo_open(url, NULL, &r));
	src.path = img;
	bo.vm = "good";
	CHECK_OK(vmb_repo_backup(r, &src, 1, &bo, &br));
	src.path = img2;
	bo.vm = "nosig";
	CHECK_OK(vmb_repo_backup(r, &src, 1, &bo, &br));

	o.runner = "runner";
	o.expect = "from the boot";
	CHECK_OK(vmb_hv_boot(r, "good@latest", &o, &res));
	CHECK(res.booted == 1 && boot_calls == 1);
	CHECK(!strcmp(res.runner, "runner") && !strcmp(res.vcpu, "fake"));
	CHECK(!strcmp(res.disk, "boot"));
	CHECK(res.console && !strcmp(res.console, "hello from the boot sector"));
	CHECK(strlen(res.reason) == sizeof res.reason - 1); /* bounded */
	/* the defaults the plugin got */
	CHECK(last_req.timeout == 30 && last_req.memory_mb == 256);
	CHECK(last_req.console_limit == 1u << 20 && !last_req.vcpu);
	CHECK(last_req.struct_size == sizeof last_req);
	vmb_boot_result_free(&res);
	vmb_boot_result_free(NULL);

	o.expect = "not there";
	CHECK_OK(vmb_hv_boot(r, "good@latest", &o, &res));
	CHECK(res.booted == 0 && boot_calls == 2);
	vmb_boot_result_free(&res);

	/* no signature: the verdict without starting the runner */
	CHECK_OK(vmb_hv_boot(r, "nosig@latest", &o, &res));
	CHECK(res.booted == 0 && boot_calls == 2);
	CHECK(strstr(res.reason, "no boot signature: bytes 510-511 of the "
		     "boot sector are 55 00") != NULL);
	vmb_boot_result_free(&res);

	/* errors: no such snapshot, no such runner, bad options */
	CHECK_ERR(vmb_hv_boot(r, "nosuch@latest", &o, &res), VMB_ENOTFOUND);
	o.runner = "nosuchrunner";
	CHECK(vmb_hv_boot(r, "good@latest", &o, &res) != 0);
	CHECK(strstr(vmb_error_message(), "no nosuchrunner plugin") != NULL);
	o.runner = "runner";
	o.timeout = -1;
	CHECK_ERR(vmb_hv_boot(r, "good@latest", &o, &res), VMB_EINVAL);
	o.timeout = 0;
	o.memory_mb = 1;
	CHECK_ERR(vmb_hv_boot(r, "good@latest", &o, &res), VMB_EINVAL);
	vmb_repo_close(r);
	free(disk);
}

int main(void)
{
	test_loader_checks();
	test_backup_through_plugin();
	test_boot_runner();
	return test_done();
}
