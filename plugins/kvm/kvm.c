/*
 * The "kvm" plugin: the minimal boot runner of `vmb verify --boot`
 * (--runner builtin).  A boot runner only (VMB_HV_F_BOOT), not a backup
 * source.  The machine and its run loop are in runner.c; the vCPU
 * backends (KVM, unicorn) in vcpu_*.c; docs/boot.md describes it all.
 *
 * The guest runs in a child process: unicorn 2.0 aborts the whole
 * process on some guest code it cannot translate (a far jmp or call with
 * a register operand, FF /3 or FF /5 with mod 3: found by the boot fuzz
 * target), and a hostile snapshot must not take vmb down with it.  The
 * child reads the disk itself (the parent only waits) and sends the
 * report back through a pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
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

static int put(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read @p n bytes by @p deadline (CLOCK_MONOTONIC seconds). */
static int get(int fd, void *p, size_t n, double deadline)
{
	char *c = p;
	while (n) {
		struct timespec ts;
		struct pollfd pf = { fd, POLLIN, 0 };
		double left;
		ssize_t r;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		left = deadline - (double)ts.tv_sec - ts.tv_nsec / 1e9;
		if (left <= 0 || poll(&pf, 1, (int)(left * 1000) + 1) == 0)
			return -1;
		r = read(fd, c, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

/* The child: run, then the report as rc, the struct, the console and
 * the screen (length, bytes). */
static void child(int fd, const struct boot_config *cfg)
{
	struct boot_report br;
	int rc = boot_run(cfg, &br);
	size_t slen = br.screen ? strlen(br.screen) : 0;
	if (put(fd, &rc, sizeof rc) == 0 && put(fd, &br, sizeof br) == 0 &&
	    put(fd, br.console ? br.console : "", br.console_len) == 0 &&
	    put(fd, &slen, sizeof slen) == 0)
		put(fd, br.screen ? br.screen : "", slen);
	_exit(0);
}

static int boot_isolated(const struct boot_config *cfg,
			 struct boot_report *br)
{
	struct timespec ts;
	struct boot_report got;
	double deadline;
	int fds[2], rc = -1, status = 0, ok = 0;
	size_t slen = 0;
	pid_t pid;
	memset(br, 0, sizeof *br);
	if (pipe(fds) < 0 || (pid = fork()) < 0) {
		snprintf(br->reason, sizeof br->reason, "cannot start the "
			 "runner's process: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) { /* unicorn's last words are not for the user */
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 2);
		close(fds[0]);
		child(fds[1], cfg);
	}
	close(fds[1]);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	deadline = (double)ts.tv_sec + ts.tv_nsec / 1e9 + cfg->timeout + 30;
	if (get(fds[0], &rc, sizeof rc, deadline) == 0 &&
	    get(fds[0], &got, sizeof got, deadline) == 0 &&
	    got.console_len <= cfg->console_limit &&
	    (br->console = malloc(got.console_len + 1)) &&
	    get(fds[0], br->console, got.console_len, deadline) == 0 &&
	    get(fds[0], &slen, sizeof slen, deadline) == 0 &&
	    slen <= (1u << 20) &&
	    (!slen || ((br->screen = malloc(slen + 1)) &&
		       get(fds[0], br->screen, slen, deadline) == 0)))
		ok = 1;
	close(fds[0]);
	kill(pid, SIGKILL); /* done, or late: it must go either way */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!ok) {
		free(br->console);
		free(br->screen);
		memset(br, 0, sizeof *br);
		br->console = calloc(1, 1);
		snprintf(br->vcpu, sizeof br->vcpu, "%s",
			 cfg->vcpu ? cfg->vcpu : "");
		if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL)
			snprintf(br->reason, sizeof br->reason, "guest fault: "
				 "the vCPU crashed on the guest's code (signal "
				 "%d, %s)", WTERMSIG(status),
				 strsignal(WTERMSIG(status)));
		else
			snprintf(br->reason, sizeof br->reason, "guest fault: "
				 "the runner's process did not report");
		return br->console ? 0 : -1;
	}
	if (rc) { /* it could not run: only the reason counts */
		free(br->console);
		free(br->screen);
		br->console = br->screen = NULL;
		memcpy(br->reason, got.reason, sizeof br->reason);
		br->reason[sizeof br->reason - 1] = 0;
		return rc;
	}
	br->console[got.console_len] = 0;
	if (br->screen)
		br->screen[slen] = 0;
	br->booted = got.booted;
	memcpy(br->reason, got.reason, sizeof br->reason);
	br->reason[sizeof br->reason - 1] = 0;
	memcpy(br->vcpu, got.vcpu, sizeof br->vcpu);
	br->vcpu[sizeof br->vcpu - 1] = 0;
	br->console_len = got.console_len;
	br->console_total = got.console_total;
	return rc;
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
	if (boot_isolated(&cfg, &br))
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
