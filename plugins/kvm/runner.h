/*
 * The minimal boot runner: a PC with RAM, a firmware of our own (real-mode
 * stubs that signal the host through I/O ports), one disk, a 16550 serial
 * port and a text console, on a vCPU backend (vcpu.h).  Independent of
 * libvmbackup: the disk is a read callback, so the fuzz target
 * (fuzz/boot_fuzzer.c) runs it over a buffer.
 */
#ifndef VMB_KVM_RUNNER_H
#define VMB_KVM_RUNNER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct boot_config {
	/** read @p len bytes at @p off of the disk (inside its size) */
	int (*read)(void *ctx, void *buf, uint64_t off, size_t len);
	void *ctx;
	uint64_t disk_size;      /* bytes; sectors past the last whole one
				    do not exist */
	const char *expect;      /* POSIX ERE, or NULL */
	double timeout;          /* seconds */
	const char *vcpu;        /* "kvm", "unicorn", NULL: kvm if usable */
	uint32_t memory_mb;      /* 2..2048 */
	size_t console_limit;    /* output past this is a flood */
	uint64_t max_steps;      /* unicorn: instruction limit, 0: none;
				    with a limit, hlt does not sleep */
	time_t clock;            /* the guest's wall clock, fixed; 0: the
				    host's (the fuzz target fixes it) */
};

struct boot_report {
	int booted;              /* 1: as expected */
	char reason[256];
	char vcpu[16];
	char *console;           /* malloc'd, NUL-terminated */
	size_t console_len;
	uint64_t console_total;
	char *screen;            /* malloc'd VGA text, or NULL */
};

/**
 * Boot the disk.  0 when it ran (verdict in @p rep), -1 when it could
 * not (bad expect regex, no backend, out of memory): @p rep->reason says
 * why.  Free rep->console and rep->screen with free().
 */
int boot_run(const struct boot_config *cfg, struct boot_report *rep);

#endif
