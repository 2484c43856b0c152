/*
 * Fuzz target: the guest-facing code of the builtin boot runner
 * (plugins/kvm/runner.c): the firmware services (INT 10h, 13h, 15h, 16h,
 * 1Ah, ...), the serial port and other devices, the checks on every guest
 * address and sector, and the fault paths.  The input is the disk: its
 * first sector is the boot sector, the rest (padded to whole sectors) what
 * INT 13h reads.  The guest runs under the unicorn backend in a 2 MiB
 * machine for a bounded number of instructions, with its clock fixed, so a
 * run takes milliseconds and does the same thing every time.
 * VMB_BOOT_FUZZ_VERBOSE=1 prints each input's verdict.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../plugins/kvm/runner.h"

#define STEPS 10000          /* instructions a guest may run */

/* Under AddressSanitizer: unicorn compares memory all the time (its
 * translation cache); checking each memcmp() made runs ten times slower
 * and finds nothing in our code. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "intercept_memcmp=0";
}

struct buf_disk {
	const uint8_t *data;
	size_t size;
};

static int read_buf(void *ctx, void *out, uint64_t off, size_t len)
{
	const struct buf_disk *d = ctx;
	/* the runner asks only for sectors inside the disk: check it */
	if (off > d->size || len > d->size - off)
		abort();
	memcpy(out, d->data + off, len);
	return 0;
}

/* unicorn 2.0 aborts the process when it translates a far jmp or call
 * with a register operand (FF /3, FF /5, mod 3).  The plugin runs guests
 * in a child process for that (plugins/kvm/kvm.c, tested by
 * hostile_ljmp.asm); here such inputs are skipped so that the fuzzer
 * looks for bugs of ours. */
static int unicorn_aborts(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (d[i] == 0xff && (d[i + 1] & 0xc0) == 0xc0 &&
		    ((d[i + 1] >> 3 & 7) == 3 || (d[i + 1] >> 3 & 7) == 5))
			return 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf_disk d;
	struct boot_config cfg;
	struct boot_report rep;
	size_t sectors = size ? (size + 511) / 512 : 1;
	uint8_t *disk;
	if (unicorn_aborts(data, size))
		return 0;
	disk = calloc(sectors, 512);
	if (!disk)
		return 0;
	if (size)
		memcpy(disk, data, size);
	d.data = disk;
	d.size = sectors * 512;
	memset(&cfg, 0, sizeof cfg);
	cfg.read = read_buf;
	cfg.ctx = &d;
	cfg.disk_size = d.size;
	cfg.expect = "vmb-[a-z0-9]+-ok";
	cfg.timeout = 10;          /* a guard: the instruction limit ends it */
	cfg.vcpu = "unicorn";
	cfg.memory_mb = 2;
	cfg.console_limit = 2048;
	cfg.max_steps = STEPS;
	cfg.clock = 1796601600;    /* 2026-12-07 00:00 UTC */
	if (boot_run(&cfg, &rep) == 0) {
		/* the report is text the CLI prints: it must be a string */
		if (strlen(rep.reason) >= sizeof rep.reason ||
		    strlen(rep.console) != rep.console_len)
			abort();
		if (getenv("VMB_BOOT_FUZZ_VERBOSE")) /* what a seed does */
			fprintf(stderr, "%s: %s\n", rep.booted ? "booted" :
				"not booted", rep.reason);
		free(rep.console);
		free(rep.screen);
	}
	free(disk);
	return 0;
}
