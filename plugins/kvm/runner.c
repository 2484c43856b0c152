/*
 * The minimal boot runner, in one file: the machine, its firmware and the
 * run loop.  Read it top to bottom:
 *
 *  1. the machine: RAM (guest physical 0..N, mmap'd, so a guest that does
 *     not touch it costs nothing), one disk read through a callback with a
 *     throw-away write overlay, a console;
 *  2. the firmware: an interrupt vector table pointing into a page of
 *     real-mode stubs at F000:0000.  A service stub is `out PORT, al;
 *     iret`: the `out` reaches the host (an I/O exit under KVM, an `out`
 *     hook under unicorn), the host serves the call from the registers and
 *     guest memory, and the stub returns to the guest with iret, with the
 *     carry and zero flags the host set in the FLAGS word on the stack;
 *  3. the devices: a 16550 serial port at 0x3f8 (transmitter always
 *     empty), port 0xe9 (debug console), and enough of the rest of a PC
 *     (A20 on, keyboard controller idle, no key pressed) that boot loaders
 *     go on;
 *  4. the run loop: run the vCPU until it halts, faults, triple-faults,
 *     prints the expected text or floods the console, or the time is up;
 *     then the verdict.
 *
 * The guest is hostile: every address the host touches is checked against
 * RAM (guest_mem()), every sector against the disk, output and the write
 * overlay are capped, and time is bounded by the timeout.
 */
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include "runner.h"
#include "vcpu.h"

#define SECTOR 512u
#define FW_SEG 0xf000u               /* the firmware's segment */
#define FW_BASE (FW_SEG << 4)
#define PORT_FAULT 0xf0              /* a CPU exception stub: AL = vector */
#define PORT_SVC 0xf1                /* + service index, see svc_vector */
#define OVERLAY_MAX (64u << 20)      /* bytes of guest writes kept */
#define EXPECT_WINDOW 4096           /* a match must fit in this much */

/* The BIOS services, in the order of their ports PORT_SVC + i. */
static const uint8_t svc_vector[] = {
	0x10, 0x11, 0x12, 0x13, 0x15, 0x16, 0x18, 0x19, 0x1a,
};
#define NSVC (sizeof svc_vector)

/* How a run ended. */
enum end {
	END_NONE, END_MATCH, END_HALT, END_TIMEOUT, END_STEPS, END_FAULT,
	END_FLOOD, END_REBOOT, END_NOBOOT, END_DISK, END_POWEROFF,
};

struct machine {
	const struct boot_config *cfg;
	const struct vcpu_ops *ops;
	struct vcpu *cpu;
	uint8_t *ram;
	size_t ram_size;
	uint64_t sectors;        /* whole sectors of the disk */
	double start;

	/* output: the serial port (and port 0xe9), the BIOS teletype */
	struct stream { char *buf; size_t len, cap, checked; } serial, tty;
	uint64_t out_total;
	regex_t re;
	int have_re;

	/* the write overlay: open hashing of sector numbers, made at the
	 * first write */
	uint64_t *ov_lba;        /* lba + 1; 0 = empty slot */
	uint8_t **ov_data;
	size_t ov_slots, ov_used;

	/* device state */
	uint8_t lcr, ier, mcr, scr, dll, dlm;
	unsigned retrace;

	enum end end;
	char why[200];
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* End the run (the first reason wins). */
static void finish(struct machine *m, enum end e, const char *fmt, ...)
{
	va_list ap;
	if (m->end != END_NONE)
		return;
	m->end = e;
	va_start(ap, fmt);
	vsnprintf(m->why, sizeof m->why, fmt, ap);
	va_end(ap);
	if (m->cpu)
		m->ops->stop(m->cpu);
}

/* ---- guest memory: the only way the host touches it ---- */

/* Host pointer to [addr, addr+len) of guest RAM, or NULL if any of it
 * is outside. */
static uint8_t *guest_mem(struct machine *m, uint64_t addr, uint64_t len)
{
	if (addr > m->ram_size || len > m->ram_size - addr)
		return NULL;
	return m->ram + addr;
}

static int rd16(struct machine *m, uint64_t a, uint16_t *v)
{
	uint8_t *p = guest_mem(m, a, 2);
	if (!p)
		return -1;
	*v = (uint16_t)(p[0] | p[1] << 8);
	return 0;
}

static void wr16(struct machine *m, uint64_t a, uint16_t v)
{
	uint8_t *p = guest_mem(m, a, 2);
	if (p) {
		p[0] = (uint8_t)v;
		p[1] = (uint8_t)(v >> 8);
	}
}

static void wr32(struct machine *m, uint64_t a, uint32_t v)
{
	wr16(m, a, (uint16_t)v);
	wr16(m, a + 2, (uint16_t)(v >> 16));
}

static void wr64(struct machine *m, uint64_t a, uint64_t v)
{
	wr32(m, a, (uint32_t)v);
	wr32(m, a + 4, (uint32_t)(v >> 32));
}

/* ---- the console ---- */

static void expect_check(struct machine *m, struct stream *o, int final)
{
	size_t from;
	if (!m->have_re || m->end == END_MATCH || !o->len)
		return;
	if (!final && o->len - o->checked < 64 && o->buf[o->len - 1] != '\n')
		return;
	/* look again at the last EXPECT_WINDOW bytes and what is new */
	from = o->checked > EXPECT_WINDOW ? o->checked - EXPECT_WINDOW : 0;
	o->checked = o->len;
	if (regexec(&m->re, o->buf + from, 0, NULL,
		    from ? REG_NOTBOL : 0) == 0) {
		if (final) /* the text came: that wins over how it ended */
			m->end = END_NONE;
		finish(m, END_MATCH, "the %s showed /%s/",
		       o == &m->serial ? "serial console" : "screen",
		       m->cfg->expect);
	}
}

/* One byte of output; NUL bytes are kept as spaces. */
static void output(struct machine *m, struct stream *o, uint8_t c)
{
	if (++m->out_total > m->cfg->console_limit) {
		finish(m, END_FLOOD, "console flood: the guest printed more "
		       "than %zu bytes", m->cfg->console_limit);
		return;
	}
	if (o->len + 1 >= o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 4096;
		char *n = realloc(o->buf, cap + 1);
		if (!n) {
			finish(m, END_FLOOD, "out of memory for the console");
			return;
		}
		o->buf = n;
		o->cap = cap;
	}
	o->buf[o->len++] = c ? (char)c : ' ';
	o->buf[o->len] = 0;
	expect_check(m, o, 0);
}

/* ---- the disk: read-only, guest writes go to the overlay ---- */

static size_t ov_find(struct machine *m, uint64_t lba)
{
	size_t i = (size_t)((lba * 0x9e3779b97f4a7c15ull) >> 40) &
		   (m->ov_slots - 1);
	while (m->ov_lba[i] && m->ov_lba[i] != lba + 1)
		i = (i + 1) & (m->ov_slots - 1);
	return i;
}

/* Sectors [lba, lba+n) into guest memory at @p dst.  0, or a BIOS status. */
static int disk_read(struct machine *m, uint64_t lba, uint32_t n,
		     uint64_t dst)
{
	uint8_t *p;
	if (lba >= m->sectors || n > m->sectors - lba)
		return 0x04; /* sector not found */
	p = guest_mem(m, dst, (uint64_t)n * SECTOR);
	if (!p)
		return 0x09; /* "DMA" across the end of memory */
	if (m->cfg->read(m->cfg->ctx, p, lba * SECTOR, (size_t)n * SECTOR)) {
		finish(m, END_DISK, "the snapshot's disk could not be read at "
		       "sector %llu", (unsigned long long)lba);
		return 0x20;
	}
	if (m->ov_used)
		for (uint32_t i = 0; i < n; i++) {
			size_t s = ov_find(m, lba + i);
			if (m->ov_lba[s])
				memcpy(p + (size_t)i * SECTOR, m->ov_data[s],
				       SECTOR);
		}
	m->ops->written(m->cpu, dst, (size_t)n * SECTOR);
	return 0;
}

static int disk_write(struct machine *m, uint64_t lba, uint32_t n,
		      uint64_t src)
{
	uint8_t *p;
	if (lba >= m->sectors || n > m->sectors - lba)
		return 0x04;
	p = guest_mem(m, src, (uint64_t)n * SECTOR);
	if (!p)
		return 0x09;
	if (!m->ov_lba) {
		m->ov_slots = 2 * OVERLAY_MAX / SECTOR;
		m->ov_lba = calloc(m->ov_slots, sizeof *m->ov_lba);
		m->ov_data = calloc(m->ov_slots, sizeof *m->ov_data);
		if (!m->ov_lba || !m->ov_data) {
			free(m->ov_lba);
			free(m->ov_data);
			m->ov_lba = NULL;
			m->ov_data = NULL;
			return 0xcc;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		size_t s = ov_find(m, lba + i);
		if (!m->ov_lba[s]) {
			if ((m->ov_used + 1) * SECTOR > OVERLAY_MAX)
				return 0xcc; /* write fault: overlay full */
			m->ov_data[s] = malloc(SECTOR);
			if (!m->ov_data[s])
				return 0xcc;
			m->ov_lba[s] = lba + i + 1;
			m->ov_used++;
		}
		memcpy(m->ov_data[s], p + (size_t)i * SECTOR, SECTOR);
	}
	return 0;
}

/* The geometry INT 13h reports: 255 heads, 63 sectors a track. */
#define HEADS 255u
#define SPT 63u

static uint32_t cylinders(struct machine *m)
{
	uint64_t c = m->sectors / (HEADS * SPT);
	if (!c)
		c = 1;
	return c > 1024 ? 1024 : (uint32_t)c;
}

/* ---- the BIOS services ---- */

#define AL(r) ((uint8_t)(r).rax)
#define AH(r) ((uint8_t)((r).rax >> 8))
#define AX(r) ((uint16_t)(r).rax)
#define SET_AH(r, v) ((r).rax = ((r).rax & ~0xff00ull) | ((uint64_t)(v) << 8))
#define SET_AL(r, v) ((r).rax = ((r).rax & ~0xffull) | (uint8_t)(v))
#define SET16(x, v) ((x) = ((x) & ~0xffffull) | (uint16_t)(v))
#define SET32(x, v) ((x) = (uint32_t)(v))
#define FL_CF 0x0001u
#define FL_ZF 0x0040u
#define FL_IF 0x0200u

/* An address seg:off as the CPU forms it. */
static uint64_t lin(struct vseg s, uint64_t off)
{
	return s.base + (uint16_t)off;
}

static void int10(struct machine *m, struct vregs *r)
{
	switch (AH(*r)) {
	case 0x0e: /* teletype */
		output(m, &m->tty, AL(*r));
		break;
	case 0x13: { /* write string ES:BP, CX characters */
		uint16_t n = (uint16_t)r->rcx;
		uint64_t a = lin(r->es, r->rbp);
		int attrs = AL(*r) & 2; /* char, attribute pairs */
		for (uint32_t i = 0; i < n && m->end == END_NONE; i++) {
			uint8_t *p = guest_mem(m, a + (attrs ? 2u * i : i), 1);
			if (!p)
				break;
			output(m, &m->tty, *p);
		}
		break;
	}
	case 0x0f: /* video mode: 80x25 text, page 0 */
		SET16(r->rax, 0x5003);
		r->rbx &= ~0xff00ull;
		break;
	case 0x03: /* cursor: row 0 col 0, normal shape */
		SET16(r->rdx, 0);
		SET16(r->rcx, 0x0607);
		break;
	case 0x08: /* character at cursor: a space */
		SET16(r->rax, 0x0720);
		break;
	case 0x1a: /* display combination: VGA colour */
		if (AL(*r) == 0) {
			SET_AL(*r, 0x1a);
			SET16(r->rbx, 0x0008);
		}
		break;
	case 0x4f: /* VESA: not supported */
		SET16(r->rax, 0x014f);
		break;
	default: /* set mode, cursor, scroll, palette, fonts: nothing to do */
		break;
	}
}

/* The E820 map: low RAM, the EBDA/VGA/BIOS hole, RAM above 1 MiB. */
static int e820(struct machine *m, uint32_t i, uint64_t *base,
		uint64_t *len, uint32_t *type)
{
	switch (i) {
	case 0: *base = 0; *len = 0x9fc00; *type = 1; return 0;
	case 1: *base = 0x9fc00; *len = 0x400; *type = 2; return 0;
	case 2: *base = 0xe0000; *len = 0x20000; *type = 2; return 0;
	case 3:
		*base = 0x100000;
		*len = m->ram_size - 0x100000;
		*type = 1;
		return 0;
	default: return -1;
	}
}

/* Returns the flags to set on the guest's stacked FLAGS (FL_CF: error). */
static unsigned int15(struct machine *m, struct vregs *r)
{
	uint64_t kb_above_1m = (m->ram_size - 0x100000) / 1024;
	switch (AX(*r)) {
	case 0xe820: {
		uint64_t base, len;
		uint32_t type, i = (uint32_t)r->rbx;
		uint64_t a = lin(r->es, r->rdi);
		if ((uint32_t)r->rdx != 0x534d4150 /* 'SMAP' */ ||
		    (uint32_t)r->rcx < 20 || e820(m, i, &base, &len, &type) ||
		    !guest_mem(m, a, 20))
			return FL_CF;
		wr64(m, a, base);
		wr64(m, a + 8, len);
		wr32(m, a + 16, type);
		SET32(r->rax, 0x534d4150);
		SET32(r->rcx, 20);
		SET32(r->rbx, e820(m, i + 1, &base, &len, &type) ? 0 : i + 1);
		return 0;
	}
	case 0xe801: { /* KiB 1..16 MiB, 64 KiB blocks above 16 MiB */
		uint64_t lo = kb_above_1m > 15360 ? 15360 : kb_above_1m;
		uint64_t hi = m->ram_size > (16u << 20) ?
			      (m->ram_size - (16u << 20)) >> 16 : 0;
		SET16(r->rax, lo);
		SET16(r->rcx, lo);
		SET16(r->rbx, hi);
		SET16(r->rdx, hi);
		return 0;
	}
	case 0x2400: case 0x2401: /* A20 off/on: it is always on */
		SET_AH(*r, 0);
		return 0;
	case 0x2402: /* A20 status: on */
		SET16(r->rax, 0x0001);
		return 0;
	case 0x2403: /* A20 support: keyboard controller and port 0x92 */
		SET_AH(*r, 0);
		SET16(r->rbx, 3);
		return 0;
	case 0x5307: /* APM set power state: off */
		if ((uint16_t)r->rcx == 3) {
			finish(m, END_POWEROFF, "the guest powered off (APM)");
			return 0;
		}
		break;
	}
	switch (AH(*r)) {
	case 0x88: /* KiB above 1 MiB */
		SET16(r->rax, kb_above_1m > 0xfc00 ? 0xfc00 : kb_above_1m);
		return 0;
	case 0x86: /* wait CX:DX microseconds: time does not matter here */
		return 0;
	default: /* C0 (configuration), 53 (APM), 4F, ...: not supported */
		SET_AH(*r, 0x86);
		return FL_CF;
	}
}

/* The guest's wall clock: the host's, unless the caller fixed it. */
static void guest_time(struct machine *m, struct tm *tm)
{
	time_t t = m->cfg->clock ? m->cfg->clock : time(NULL);
	gmtime_r(&t, tm);
}

/* ticks since midnight at 18.2 Hz */
static uint32_t bios_ticks(struct machine *m)
{
	struct tm tm;
	guest_time(m, &tm);
	return (uint32_t)((tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec) *
			  1193182ull / 65536);
}

static uint8_t bcd(int v) { return (uint8_t)((v / 10) << 4 | v % 10); }

static unsigned int1a(struct machine *m, struct vregs *r)
{
	struct tm tm;
	guest_time(m, &tm);
	switch (AH(*r)) {
	case 0x00: {
		uint32_t ticks = bios_ticks(m);
		SET16(r->rcx, ticks >> 16);
		SET16(r->rdx, ticks);
		SET_AL(*r, 0);
		return 0;
	}
	case 0x02:
		SET16(r->rcx, bcd(tm.tm_hour) << 8 | bcd(tm.tm_min));
		SET16(r->rdx, bcd(tm.tm_sec) << 8);
		return 0;
	case 0x04:
		SET16(r->rcx, bcd(19 + tm.tm_year / 100) << 8 |
			      bcd(tm.tm_year % 100));
		SET16(r->rdx, bcd(tm.tm_mon + 1) << 8 | bcd(tm.tm_mday));
		return 0;
	default: /* PCI BIOS (B1xx) and the rest: not here */
		SET_AH(*r, 0x86);
		return FL_CF;
	}
}

static unsigned int13(struct machine *m, struct vregs *r)
{
	uint8_t drive = (uint8_t)r->rdx, st = 0;
	if (drive != 0x80) {
		/* only one hard disk; no floppy, no CD */
		SET_AH(*r, AH(*r) == 0x08 || AH(*r) == 0x15 ? 0x01 : 0x01);
		return FL_CF;
	}
	switch (AH(*r)) {
	case 0x00: /* reset */
		break;
	case 0x01: /* last status */
		SET_AL(*r, 0);
		break;
	case 0x02: case 0x03: { /* CHS read / write AL sectors to ES:BX */
		uint32_t cyl = (uint32_t)((r->rcx >> 8) & 0xff) |
			       (uint32_t)(r->rcx & 0xc0) << 2;
		uint32_t sec = r->rcx & 0x3f, head = (r->rdx >> 8) & 0xff;
		uint32_t n = AL(*r);
		uint64_t lba;
		if (!sec || sec > SPT || head >= HEADS || !n) {
			st = 0x01;
			break;
		}
		lba = ((uint64_t)cyl * HEADS + head) * SPT + sec - 1;
		st = (uint8_t)(AH(*r) == 0x02 ?
			disk_read(m, lba, n, lin(r->es, r->rbx)) :
			disk_write(m, lba, n, lin(r->es, r->rbx)));
		SET_AL(*r, st ? 0 : n);
		break;
	}
	case 0x04: /* verify */
		break;
	case 0x08: { /* drive parameters */
		uint32_t c = cylinders(m) - 1;
		SET16(r->rcx, (c & 0xff) << 8 | (c >> 2 & 0xc0) | SPT);
		SET16(r->rdx, (HEADS - 1) << 8 | 1);
		SET_AL(*r, 0);
		break;
	}
	case 0x15: /* disk type: a hard disk of CX:DX sectors */
		SET_AH(*r, 3);
		SET16(r->rcx, (m->sectors > 0xffffffffu ? 0xffffffffu :
			       m->sectors) >> 16);
		SET16(r->rdx, m->sectors);
		return 0;
	case 0x41: /* extensions present? EDD 3.0, packet calls */
		if (AX(*r) == 0 || (uint16_t)r->rbx != 0x55aa) {
			st = 0x01;
			break;
		}
		SET16(r->rbx, 0xaa55);
		SET_AH(*r, 0x30);
		SET16(r->rcx, 0x0001);
		return 0;
	case 0x42: case 0x43: { /* extended read / write, packet at DS:SI */
		uint64_t pkt = lin(r->ds, r->rsi), lba, buf;
		uint8_t *p = guest_mem(m, pkt, 16);
		uint16_t n, off, seg;
		if (!p || p[0] < 16) {
			st = 0x01;
			break;
		}
		n = (uint16_t)(p[2] | p[3] << 8);
		off = (uint16_t)(p[4] | p[5] << 8);
		seg = (uint16_t)(p[6] | p[7] << 8);
		memcpy(&lba, p + 8, 8); /* x86: little endian */
		buf = ((uint64_t)seg << 4) + off;
		if (off == 0xffff && seg == 0xffff) { /* 64-bit address */
			uint8_t *q = guest_mem(m, pkt, 24);
			if (!q || p[0] < 24) {
				st = 0x01;
				break;
			}
			memcpy(&buf, q + 16, 8);
		}
		if (n > 127) {
			st = 0x01;
			n = 0;
		} else if (n) {
			st = (uint8_t)(AH(*r) == 0x42 ? disk_read(m, lba, n, buf)
						      : disk_write(m, lba, n,
								   buf));
		}
		if (st) /* nothing was transferred */
			wr16(m, pkt + 2, 0);
		break;
	}
	case 0x48: { /* extended parameters into the buffer at DS:SI */
		uint64_t a = lin(r->ds, r->rsi);
		uint16_t size;
		if (rd16(m, a, &size) || size < 26 || !guest_mem(m, a, 26)) {
			st = 0x01;
			break;
		}
		wr16(m, a, 26);
		wr16(m, a + 2, 0x0002); /* geometry valid */
		wr32(m, a + 4, cylinders(m));
		wr32(m, a + 8, HEADS);
		wr32(m, a + 12, SPT);
		wr64(m, a + 16, m->sectors);
		wr16(m, a + 24, SECTOR);
		break;
	}
	default:
		st = 0x01; /* invalid function */
		break;
	}
	SET_AH(*r, st);
	return st ? FL_CF : 0;
}

/* Serve firmware call @p i (PORT_SVC + i), with the guest's registers. */
static void service(struct machine *m, unsigned i)
{
	struct vregs r;
	unsigned set = 0, clear = FL_CF;
	uint64_t flags_at;
	uint16_t flags;
	if (m->ops->get(m->cpu, &r))
		return;
	switch (svc_vector[i]) {
	case 0x10: int10(m, &r); clear = 0; break;
	case 0x11: SET16(r.rax, 0x0220); clear = 0; break; /* 1 serial, VGA */
	case 0x12: SET16(r.rax, 639); clear = 0; break;    /* KiB below 640K */
	case 0x13: set = int13(m, &r); break;
	case 0x15: set = int15(m, &r); break;
	case 0x16: /* keyboard: no key is ever pressed */
		switch (AH(r)) {
		case 0x00: case 0x10: /* wait for a key: Enter, at once */
			SET16(r.rax, 0x1c0d);
			break;
		case 0x01: case 0x11: /* a key waiting? no */
			set = FL_ZF;
			break;
		case 0x02: case 0x12: /* shift flags */
			SET16(r.rax, 0);
			break;
		}
		clear = FL_ZF;
		break;
	case 0x18:
		finish(m, END_NOBOOT, "the guest called INT 18h: no bootable "
		       "system found");
		return;
	case 0x19:
		finish(m, END_REBOOT, "the guest called INT 19h to reboot");
		return;
	case 0x1a: set = int1a(m, &r); break;
	}
	m->ops->set(m->cpu, &r, 0);
	/* CF and ZF go back through the FLAGS word iret pops: SS:SP+4 */
	flags_at = lin(r.ss, r.rsp + 4);
	if (!rd16(m, flags_at, &flags))
		wr16(m, flags_at, (uint16_t)((flags & ~clear) | set));
}

static const char *exception_name(unsigned v)
{
	static const char *const names[] = {
		"divide error", "debug", "NMI", "breakpoint", "overflow",
		"bound range exceeded", "invalid opcode", "no FPU",
		"double fault", "coprocessor segment overrun", "invalid TSS",
		"segment not present", "stack fault", "general protection",
		"page fault", "reserved",
	};
	return v < 16 ? names[v] : "unknown";
}

/* ---- the devices: port I/O ---- */

static uint32_t io_in(void *ctx, uint16_t port, int size)
{
	struct machine *m = ctx;
	switch (port) {
	case 0x3f8: return m->lcr & 0x80 ? m->dll : 0; /* nothing received */
	case 0x3f9: return m->lcr & 0x80 ? m->dlm : m->ier;
	case 0x3fa: return 0x01;             /* no interrupt pending */
	case 0x3fb: return m->lcr;
	case 0x3fc: return m->mcr;
	case 0x3fd: return 0x60;             /* transmitter empty */
	case 0x3fe: return 0xb0;             /* DCD, DSR, CTS */
	case 0x3ff: return m->scr;
	case 0x92: return 0x02;              /* A20 on */
	case 0x64: return 0x1c;              /* keyboard controller idle */
	case 0x60: return 0x00;
	case 0x61: return (m->retrace++ & 1) ? 0x20 : 0x00;
	case 0x3da: return (m->retrace++ & 1) ? 0x09 : 0x00; /* retrace */
	default: return size == 1 ? 0xff : size == 2 ? 0xffff : 0xffffffffu;
	}
}

/* Is the vCPU in the firmware's stubs, in real mode?  Only then is a
 * write to PORT_FAULT or PORT_SVC + i a firmware call.  (Inside an I/O
 * hook unicorn reports IP as CS * 16 + IP: the low 16 bits are the
 * offset either way, FW_BASE being 64 KiB aligned.) */
static int from_firmware(struct machine *m)
{
	struct vregs r;
	return m->ops->get(m->cpu, &r) == 0 && !(r.cr0 & 1) &&
	       r.cs.base == FW_BASE && (uint16_t)r.rip < 0x200;
}

static void io_out(void *ctx, uint16_t port, int size, uint32_t v)
{
	struct machine *m = ctx;
	if (port >= PORT_FAULT && port < PORT_SVC + NSVC &&
	    !from_firmware(m))
		return; /* the 387's ports: Linux resets the FPU there */
	if (port == PORT_FAULT) {
		unsigned vec = v & 0xff;
		finish(m, END_FAULT, "guest fault: CPU exception %u (%s) in "
		       "real mode", vec, exception_name(vec));
		return;
	}
	if (port >= PORT_SVC && port < PORT_SVC + NSVC) {
		service(m, port - PORT_SVC);
		return;
	}
	switch (port) {
	case 0x3f8:
		if (m->lcr & 0x80)
			m->dll = (uint8_t)v;
		else
			output(m, &m->serial, (uint8_t)v);
		break;
	case 0x3f9:
		if (m->lcr & 0x80)
			m->dlm = (uint8_t)v;
		else
			m->ier = (uint8_t)v & 0x0f;
		break;
	case 0x3fb: m->lcr = (uint8_t)v; break;
	case 0x3fc: m->mcr = (uint8_t)v; break;
	case 0x3ff: m->scr = (uint8_t)v; break;
	case 0xe9: output(m, &m->serial, (uint8_t)v); break; /* debug port */
	case 0x64: /* keyboard controller: FEh pulses reset */
		if ((v & 0xff) == 0xfe)
			finish(m, END_REBOOT, "the guest reset the machine "
			       "(keyboard controller)");
		break;
	case 0xcf9: /* reset control register */
		if (v & 0x04)
			finish(m, END_REBOOT, "the guest reset the machine "
			       "(port 0xcf9)");
		break;
	case 0x604: case 0xb004: /* QEMU's ACPI power-off ports */
		if (size == 2 && (v & 0x2000))
			finish(m, END_POWEROFF, "the guest powered off");
		break;
	default: /* POST codes (0x80), PIC, PIT, DMA, VGA registers: ignored */
		break;
	}
}

/* ---- setting up the machine ---- */

/* The firmware: the interrupt vector table, the BIOS data area and the
 * stubs at F000:0000.  Hand-assembled; each is a few bytes:
 *   F000:0000           iret                            ; CF
 *   F000:0010 + 8*v     mov al, v; out 0xf0, al; cli; hlt; jmp $-1
 *                                      ; B0 v E6 F0 FA F4 EB FD
 *   F000:0100 + 4*i     out 0xf1+i, al; iret; nop   ; E6 F1+i CF 90
 * Vectors 00h-0Fh are CPU exceptions (and IRQs nobody raises here): a
 * guest that reaches one has faulted.  The services are svc_vector[];
 * every other vector returns at once. */
static void install_firmware(struct machine *m)
{
	uint8_t *fw = m->ram + FW_BASE;
	uint8_t *bda = m->ram + 0x400;
	memset(fw, 0, 0x10000);
	fw[0] = 0xcf;
	for (unsigned v = 0; v < 16; v++) {
		static const uint8_t stub[] = { 0xb0, 0, 0xe6, PORT_FAULT,
						0xfa, 0xf4, 0xeb, 0xfd };
		memcpy(fw + 0x10 + 8 * v, stub, sizeof stub);
		fw[0x10 + 8 * v + 1] = (uint8_t)v;
	}
	for (unsigned i = 0; i < NSVC; i++) {
		uint8_t *s = fw + 0x100 + 4 * i;
		s[0] = 0xe6;
		s[1] = (uint8_t)(PORT_SVC + i);
		s[2] = 0xcf;
		s[3] = 0x90;
	}
	memcpy(fw + 0xfff5, "12/07/26", 8); /* BIOS date */
	fw[0xfffe] = 0xfc;                   /* model: AT */
	for (unsigned v = 0; v < 256; v++) {
		uint16_t off = v < 16 ? (uint16_t)(0x10 + 8 * v) : 0;
		for (unsigned i = 0; i < NSVC; i++)
			if (svc_vector[i] == v)
				off = (uint16_t)(0x100 + 4 * i);
		wr16(m, 4 * v, off);
		wr16(m, 4 * v + 2, FW_SEG);
	}
	/* the BIOS data area */
	memset(bda, 0, 0x100);
	wr16(m, 0x400, 0x3f8);       /* COM1 */
	wr16(m, 0x40e, 0x9fc0);      /* EBDA segment */
	wr16(m, 0x410, 0x0220);      /* equipment */
	wr16(m, 0x413, 639);         /* KiB of low memory */
	bda[0x49] = 3;               /* video mode */
	wr16(m, 0x44a, 80);          /* columns */
	bda[0x75] = 1;               /* hard disks */
	bda[0x84] = 24;              /* rows - 1 */
	m->ram[0x9fc00] = 1;         /* EBDA size, KiB */
	/* a blank text screen */
	for (unsigned i = 0; i < 80 * 25; i++)
		wr16(m, 0xb8000 + 2 * i, 0x0720);
}

/* The VGA text left in video memory, or NULL when it is blank. */
static char *vga_text(struct machine *m)
{
	char *s = malloc(81 * 25 + 1), *o = s, *last = s;
	if (!s)
		return NULL;
	for (unsigned y = 0; y < 25; y++) {
		char *line = o;
		for (unsigned x = 0; x < 80; x++) {
			uint8_t c = m->ram[0xb8000 + 2 * (y * 80 + x)];
			*o++ = c >= 0x20 && c < 0x7f ? (char)c : ' ';
		}
		while (o > line && o[-1] == ' ')
			o--;
		if (o > line)
			last = o + 1;
		*o++ = '\n';
	}
	*last = 0;
	if (last == s) {
		free(s);
		return NULL;
	}
	return s;
}

/* What the screen showed: the teletype output, then the text left in
 * video memory by guests that write it directly. */
static char *screen_text(struct machine *m)
{
	char *vga = vga_text(m), *s;
	size_t a = m->tty.len, b = vga ? strlen(vga) : 0;
	if (!a && !b)
		return NULL;
	s = malloc(a + b + 2);
	if (s) {
		memcpy(s, m->tty.buf ? m->tty.buf : "", a);
		if (a && b && m->tty.buf[a - 1] != '\n')
			s[a++] = '\n';
		memcpy(s + a, vga ? vga : "", b);
		s[a + b] = 0;
	}
	free(vga);
	return s;
}

/* Has the guest shown anything visible? */
static int printed(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s > ' ' && (unsigned char)*s < 0x7f)
			return 1;
	return 0;
}

static const struct vcpu_ops *pick_backend(const char *name,
					   struct machine *m,
					   const struct vcpu_io *io,
					   char *err, size_t errlen)
{
	const struct vcpu_ops *const all[] = { &vcpu_kvm_ops,
					       &vcpu_unicorn_ops };
	char first[200] = "";
	for (size_t i = 0; i < 2; i++) {
		if (name && strcmp(name, all[i]->name) != 0)
			continue;
		if (all[i]->create(&m->cpu, m->ram, m->ram_size, io,
				   m->cfg->max_steps, err, errlen) == 0)
			return all[i];
		if (!name && !first[0]) /* kvm failed: say so if unicorn does */
			snprintf(first, sizeof first, "%.199s", err);
	}
	if (name && strcmp(name, "kvm") && strcmp(name, "unicorn"))
		snprintf(err, errlen, "unknown vCPU backend '%s' (kvm or "
			 "unicorn)", name);
	else if (first[0] && strlen(first) + 4 < errlen) {
		char both[400];
		snprintf(both, sizeof both, "%s; %s", first, err);
		snprintf(err, errlen, "%.*s", (int)errlen - 1, both);
	}
	return NULL;
}

/* ---- the run loop ---- */

int boot_run(const struct boot_config *cfg, struct boot_report *rep)
{
	struct machine m;
	struct vcpu_io io = { &m, io_in, io_out };
	struct vregs r;
	double deadline;
	int rc = -1;

	memset(rep, 0, sizeof *rep);
	memset(&m, 0, sizeof m);
	m.cfg = cfg;
	m.sectors = cfg->disk_size / SECTOR;
	m.ram_size = (size_t)(cfg->memory_mb < 2 ? 2 : cfg->memory_mb) << 20;
	if (cfg->expect) {
		int e = regcomp(&m.re, cfg->expect, REG_EXTENDED | REG_NOSUB);
		if (e) {
			char msg[100];
			regerror(e, &m.re, msg, sizeof msg);
			snprintf(rep->reason, sizeof rep->reason, "bad --expect "
				 "regex '%s': %s", cfg->expect, msg);
			return -1;
		}
		m.have_re = 1;
	}
	m.ram = mmap(NULL, m.ram_size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m.ram == MAP_FAILED)
		m.ram = NULL;
	if (!m.ram) {
		snprintf(rep->reason, sizeof rep->reason, "out of memory for "
			 "a %u MiB guest", cfg->memory_mb);
		goto out;
	}
	install_firmware(&m);
	m.ops = pick_backend(cfg->vcpu, &m, &io, rep->reason,
			     sizeof rep->reason);
	if (!m.ops)
		goto out;
	snprintf(rep->vcpu, sizeof rep->vcpu, "%s", m.ops->name);

	/* like a PC BIOS: the boot sector at 0000:7C00, DL = boot drive */
	if (cfg->read(cfg->ctx, m.ram + 0x7c00, 0, SECTOR)) {
		snprintf(rep->reason, sizeof rep->reason, "the boot sector "
			 "could not be read");
		goto out;
	}
	memset(&r, 0, sizeof r);
	r.rip = 0x7c00;
	r.rsp = 0x7c00;
	r.rdx = 0x80;
	r.rflags = 0x0002;
	m.ops->set(m.cpu, &r, 1);

	m.start = now();
	deadline = m.start + cfg->timeout;
	while (m.end == END_NONE) {
		double left = deadline - now();
		char why[200] = "";
		enum vexit x;
		if (left <= 0) {
			finish(&m, END_TIMEOUT, "timeout after %.0f s",
			       cfg->timeout);
			break;
		}
		/* the BIOS clock the guest may poll at 0040:006C */
		wr32(&m, 0x46c, bios_ticks(&m));
		x = m.ops->run(m.cpu, left < 0.05 ? left : 0.05, why,
			       sizeof why);
		switch (x) {
		case VX_TICK:
		case VX_STOP:     /* finish() said why */
			break;
		case VX_IDLE:     /* hlt, waiting for an interrupt that never
				     comes: a moment later, go on (with an
				     instruction limit, time is counted in
				     instructions) */
			if (!cfg->max_steps)
				nanosleep(&(struct timespec){ 0, 1000000 },
					  NULL);
			break;
		case VX_HALT:
			finish(&m, END_HALT, "the guest halted");
			break;
		case VX_SHUTDOWN:
			finish(&m, END_FAULT, "guest fault: triple fault "
			       "(shutdown)");
			break;
		case VX_FAULT:
			finish(&m, END_FAULT, "guest fault: %s", why);
			break;
		case VX_STEPS:
			finish(&m, END_STEPS, "instruction limit of %llu "
			       "reached", (unsigned long long)cfg->max_steps);
			break;
		}
	}

	/* the verdict */
	expect_check(&m, &m.serial, 1);
	expect_check(&m, &m.tty, 1);
	rep->screen = screen_text(&m);
	if (m.have_re && m.end != END_MATCH && rep->screen &&
	    regexec(&m.re, rep->screen, 0, NULL, 0) == 0) {
		m.end = END_MATCH;
		snprintf(m.why, sizeof m.why, "the screen showed /%s/",
			 cfg->expect);
	}
	if (m.have_re) {
		rep->booted = m.end == END_MATCH;
		if (rep->booted)
			snprintf(rep->reason, sizeof rep->reason, "%.200s after "
				 "%.1f s", m.why, now() - m.start);
		else
			snprintf(rep->reason, sizeof rep->reason, "%.150s, without "
				 "/%.60s/ on the console", m.why, cfg->expect);
	} else {
		int clean = m.end == END_HALT || m.end == END_TIMEOUT ||
			    m.end == END_POWEROFF || m.end == END_STEPS;
		int out = printed(m.serial.buf) || printed(rep->screen);
		rep->booted = clean && out;
		if (rep->booted)
			snprintf(rep->reason, sizeof rep->reason, "the boot "
				 "sector ran without a fault and printed %llu "
				 "bytes (%.150s)", (unsigned long long)m.out_total,
				 m.why);
		else if (clean)
			snprintf(rep->reason, sizeof rep->reason, "the guest "
				 "printed nothing (%.200s)", m.why);
		else
			snprintf(rep->reason, sizeof rep->reason, "%s", m.why);
	}
	rep->console = m.serial.buf ? m.serial.buf : calloc(1, 1);
	rep->console_len = m.serial.len;
	rep->console_total = m.out_total;
	m.serial.buf = NULL;
	rc = 0;
out:
	if (m.cpu)
		m.ops->destroy(m.cpu);
	if (m.ram)
		munmap(m.ram, m.ram_size);
	for (size_t i = 0; m.ov_used && i < m.ov_slots; i++)
		if (m.ov_lba[i])
			free(m.ov_data[i]);
	free(m.ov_data);
	free(m.ov_lba);
	free(m.serial.buf);
	free(m.tty.buf);
	if (m.have_re)
		regfree(&m.re);
	return rc;
}
