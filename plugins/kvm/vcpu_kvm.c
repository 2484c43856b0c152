/*
 * The KVM vCPU backend (vcpu.h): /dev/kvm ioctls, in the manner of
 * kvm-hello-world and kvmtool.  One VM, one memory slot (guest RAM at
 * physical 0), one vCPU started in real mode.  A periodic timer signal
 * interrupts KVM_RUN so that a guest looping forever still returns to the
 * run loop (VX_TICK) and meets its timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "vcpu.h"

#define TICK_SIGNAL SIGUSR2

struct vcpu {
	int kvm, vm, fd;
	struct kvm_run *run;
	size_t run_size;
	size_t ram_size;
	const struct vcpu_io *io;
	timer_t timer;
	int have_timer;
	struct sigaction old_action;
	int stop;
};

static void on_tick(int sig)
{
	(void)sig; /* only to make KVM_RUN return with EINTR */
}

static void kvm_destroy(struct vcpu *c)
{
	if (!c)
		return;
	if (c->have_timer) {
		timer_delete(c->timer);
		sigaction(TICK_SIGNAL, &c->old_action, NULL);
	}
	if (c->run)
		munmap(c->run, c->run_size);
	if (c->fd >= 0)
		close(c->fd);
	if (c->vm >= 0)
		close(c->vm);
	if (c->kvm >= 0)
		close(c->kvm);
	free(c);
}

/* The host's CPUID, as KVM can give it, so long mode etc. are seen. */
static int set_cpuid(struct vcpu *c)
{
	int n = 128, rc;
	struct kvm_cpuid2 *cp = calloc(1, sizeof *cp +
				       n * sizeof(struct kvm_cpuid_entry2));
	if (!cp)
		return -1;
	cp->nent = (uint32_t)n;
	rc = ioctl(c->kvm, KVM_GET_SUPPORTED_CPUID, cp);
	if (rc == 0)
		rc = ioctl(c->fd, KVM_SET_CPUID2, cp);
	free(cp);
	return rc;
}

static int kvm_create(struct vcpu **out, uint8_t *ram, size_t size,
		      const struct vcpu_io *io, uint64_t max_steps,
		      char *err, size_t errlen)
{
	struct vcpu *c = calloc(1, sizeof *c);
	struct kvm_userspace_memory_region mem;
	struct sigaction sa;
	struct sigevent sev;
	struct itimerspec its;
	int n;
	(void)max_steps; /* no instruction counting in hardware */
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->kvm = c->vm = c->fd = -1;
	c->io = io;
	c->ram_size = size;
	c->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (c->kvm < 0) {
		snprintf(err, errlen, "kvm: cannot open /dev/kvm: %s",
			 strerror(errno));
		goto fail;
	}
	if (ioctl(c->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(err, errlen, "kvm: /dev/kvm speaks another API");
		goto fail;
	}
	c->vm = ioctl(c->kvm, KVM_CREATE_VM, 0);
	if (c->vm < 0) {
		snprintf(err, errlen, "kvm: cannot create a VM: %s",
			 strerror(errno));
		goto fail;
	}
	/* Intel needs a TSS page for real mode; above the guest's RAM */
	ioctl(c->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	memset(&mem, 0, sizeof mem);
	mem.slot = 0;
	mem.guest_phys_addr = 0;
	mem.memory_size = size;
	mem.userspace_addr = (uintptr_t)ram;
	if (ioctl(c->vm, KVM_SET_USER_MEMORY_REGION, &mem) < 0) {
		snprintf(err, errlen, "kvm: cannot map guest memory: %s",
			 strerror(errno));
		goto fail;
	}
	c->fd = ioctl(c->vm, KVM_CREATE_VCPU, 0);
	n = ioctl(c->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (c->fd < 0 || n < (int)sizeof *c->run) {
		snprintf(err, errlen, "kvm: cannot create a vCPU: %s",
			 strerror(errno));
		goto fail;
	}
	c->run_size = (size_t)n;
	c->run = mmap(NULL, c->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      c->fd, 0);
	if (c->run == MAP_FAILED) {
		c->run = NULL;
		snprintf(err, errlen, "kvm: cannot map the vCPU: %s",
			 strerror(errno));
		goto fail;
	}
	if (set_cpuid(c) < 0) {
		snprintf(err, errlen, "kvm: cannot set CPUID: %s",
			 strerror(errno));
		goto fail;
	}
	/* a tick every 10 ms to this thread */
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_tick; /* no SA_RESTART: KVM_RUN returns EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(TICK_SIGNAL, &sa, &c->old_action);
	memset(&sev, 0, sizeof sev);
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = TICK_SIGNAL;
	sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	if (timer_create(CLOCK_MONOTONIC, &sev, &c->timer) < 0) {
		sigaction(TICK_SIGNAL, &c->old_action, NULL);
		snprintf(err, errlen, "kvm: timer_create: %s", strerror(errno));
		goto fail;
	}
	c->have_timer = 1;
	its.it_interval.tv_sec = its.it_value.tv_sec = 0;
	its.it_interval.tv_nsec = its.it_value.tv_nsec = 10 * 1000000;
	timer_settime(c->timer, 0, &its, NULL);
	*out = c;
	return 0;
fail:
	kvm_destroy(c);
	return -1;
}

static void seg_from(struct vseg *s, const struct kvm_segment *k)
{
	s->sel = k->selector;
	s->base = k->base;
}

static int kvm_get(struct vcpu *c, struct vregs *r)
{
	struct kvm_regs k;
	struct kvm_sregs s;
	if (ioctl(c->fd, KVM_GET_REGS, &k) < 0 ||
	    ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
		return -1;
	r->rax = k.rax; r->rbx = k.rbx; r->rcx = k.rcx; r->rdx = k.rdx;
	r->rsi = k.rsi; r->rdi = k.rdi; r->rbp = k.rbp; r->rsp = k.rsp;
	r->rip = k.rip; r->rflags = k.rflags;
	seg_from(&r->cs, &s.cs);
	seg_from(&r->ds, &s.ds);
	seg_from(&r->es, &s.es);
	seg_from(&r->ss, &s.ss);
	r->cr0 = s.cr0;
	return 0;
}

static void seg_to(struct kvm_segment *k, const struct vseg *s)
{
	k->selector = s->sel;
	k->base = (uint64_t)s->sel << 4;
}

static int kvm_set(struct vcpu *c, const struct vregs *r, int all)
{
	struct kvm_regs k;
	if (ioctl(c->fd, KVM_GET_REGS, &k) < 0)
		return -1;
	k.rax = r->rax; k.rbx = r->rbx; k.rcx = r->rcx; k.rdx = r->rdx;
	k.rsi = r->rsi; k.rdi = r->rdi; k.rbp = r->rbp; k.rsp = r->rsp;
	if (all) {
		struct kvm_sregs s;
		k.rip = r->rip;
		k.rflags = r->rflags;
		if (ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
			return -1;
		seg_to(&s.cs, &r->cs);
		seg_to(&s.ds, &r->ds);
		seg_to(&s.es, &r->es);
		seg_to(&s.ss, &r->ss);
		seg_to(&s.fs, &r->ds);
		seg_to(&s.gs, &r->ds);
		/* caches on, as a BIOS leaves them (CD and NW are set at
		 * reset; a guest running uncached crawls) */
		s.cr0 &= ~0x60000000ull;
		if (ioctl(c->fd, KVM_SET_SREGS, &s) < 0)
			return -1;
	}
	return ioctl(c->fd, KVM_SET_REGS, &k) < 0 ? -1 : 0;
}

/* One KVM_EXIT_IO: every element of a string I/O, through the machine. */
static void do_io(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	uint8_t size = run->io.size;
	uint64_t off = run->io.data_offset;
	uint64_t len = (uint64_t)size * run->io.count;
	uint8_t *p = (uint8_t *)run + off;
	if ((size != 1 && size != 2 && size != 4) || off > c->run_size ||
	    len > c->run_size - off)
		return;
	for (uint32_t i = 0; i < run->io.count && !c->stop; i++, p += size) {
		uint32_t v = 0;
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			memcpy(&v, p, size);
			c->io->out(c->io->ctx, run->io.port, size, v);
		} else {
			v = c->io->in(c->io->ctx, run->io.port, size);
			memcpy(p, &v, size);
		}
	}
}

static enum vexit kvm_run(struct vcpu *c, double slice, char *why,
			  size_t whylen)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct kvm_regs k;
		c->run->immediate_exit = 0;
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno != EINTR && errno != EAGAIN) {
				snprintf(why, whylen, "KVM_RUN: %s",
					 strerror(errno));
				return VX_FAULT;
			}
			clock_gettime(CLOCK_MONOTONIC, &t1);
			if ((t1.tv_sec - t0.tv_sec) +
			    (t1.tv_nsec - t0.tv_nsec) / 1e9 >= slice)
				return VX_TICK;
			continue;
		}
		switch (c->run->exit_reason) {
		case KVM_EXIT_IO:
			do_io(c);
			break;
		case KVM_EXIT_HLT:
			if (ioctl(c->fd, KVM_GET_REGS, &k) == 0 &&
			    (k.rflags & 0x200))
				return VX_IDLE;
			return VX_HALT;
		case KVM_EXIT_SHUTDOWN:
			return VX_SHUTDOWN;
		case KVM_EXIT_MMIO:
			snprintf(why, whylen, "%s outside guest RAM at 0x%llx",
				 c->run->mmio.is_write ? "write" : "read",
				 (unsigned long long)c->run->mmio.phys_addr);
			return VX_FAULT;
		case KVM_EXIT_FAIL_ENTRY:
			snprintf(why, whylen, "KVM cannot enter the guest "
				 "(reason 0x%llx)", (unsigned long long)
				 c->run->fail_entry.hardware_entry_failure_reason);
			return VX_FAULT;
		case KVM_EXIT_INTERNAL_ERROR:
			snprintf(why, whylen, "KVM internal error %u (an "
				 "instruction it cannot emulate)",
				 c->run->internal.suberror);
			return VX_FAULT;
		default:
			snprintf(why, whylen, "unhandled KVM exit %u",
				 c->run->exit_reason);
			return VX_FAULT;
		}
		if (c->stop) {
			c->stop = 0;
			return VX_STOP;
		}
	}
}

static void kvm_stop(struct vcpu *c)
{
	c->stop = 1;
}

static void kvm_written(struct vcpu *c, uint64_t addr, size_t len)
{
	(void)c; (void)addr; (void)len; /* KVM sees guest RAM directly */
}

const struct vcpu_ops vcpu_kvm_ops = {
	"kvm", kvm_create, kvm_destroy, kvm_get, kvm_set, kvm_run, kvm_stop,
	kvm_written,
};
