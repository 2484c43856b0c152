/*
 * The "kvm" plugin: the minimal boot runner of `vmb verify --boot`
 * (--runner builtin).  A boot runner only (VMB_HV_F_BOOT), not a backup
 * source.  The machine and its run loop are in runner.c; the vCPU
 * backends (KVM, unicorn) in vcpu_*.c; docs/boot.md describes it all.
 */
#include <stdlib.h>
#include <string.h>
#include "vmbackup/sys/hv.h"
#include "vmbackup/disk.h"
#include "runner.h"

static int kvm_open(const char *uri, void **handle)
{
	(void)uri;
	*handle = NULL;
	return 0;
}

static void kvm_close(void *handle)
{
	(void)handle;
}

static int read_disk(void *ctx, void *buf, uint64_t off, size_t len)
{
	return vmb_disk_read(ctx, buf, off, len);
}

static int kvm_boot(void *handle, const vmb_hv_boot_request *req,
		    vmb_hv_boot_report *rep)
{
	struct boot_config cfg;
	struct boot_report br;
	(void)handle;
	memset(&cfg, 0, sizeof cfg);
	cfg.read = read_disk;
	cfg.ctx = req->disk;
	cfg.disk_size = vmb_disk_size(req->disk);
	cfg.expect = req->expect;
	cfg.timeout = req->timeout;
	cfg.vcpu = req->vcpu;
	cfg.memory_mb = req->memory_mb;
	cfg.console_limit = req->console_limit;
	cfg.max_steps = req->max_instructions;
	if (boot_run(&cfg, &br))
		return vmb_error_set(VMB_ENOTSUP, "kvm plugin: %s", br.reason);
	rep->booted = br.booted;
	memcpy(rep->reason, br.reason, sizeof rep->reason);
	memcpy(rep->vcpu, br.vcpu, sizeof rep->vcpu);
	rep->console = br.console;
	rep->console_len = br.console_len;
	rep->console_total = br.console_total;
	rep->screen = br.screen;
	return 0;
}

static const vmb_hv_plugin plugin = {
	.struct_size = sizeof plugin,
	.api_version = VMB_HV_API_VERSION,
	.name = "kvm",
	.version = "1",
	.description = "minimal boot runner: real mode, our firmware, KVM "
		       "or unicorn",
	.features = VMB_HV_F_BOOT,
	.open = kvm_open,
	.close = kvm_close,
	.boot = kvm_boot,
};

VMB_HV_REGISTER_PLUGIN(kvm, plugin)
