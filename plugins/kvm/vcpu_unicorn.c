/*
 * The unicorn vCPU backend (vcpu.h): the same guest code in software, for
 * machines without /dev/kvm.  Port I/O arrives through in/out instruction
 * hooks.  Unicorn does not deliver interrupts itself: it reports them to
 * a hook, which does what a real-mode CPU does (push FLAGS, CS, IP, clear
 * IF and TF, jump through the vector table at IDTR), so `int 13h` reaches
 * the same firmware stubs as under KVM.  Accesses outside guest RAM stop
 * the guest with a fault.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unicorn/unicorn.h>
#include "vcpu.h"

struct vcpu {
	uc_engine *uc;
	uint8_t *ram;
	size_t ram_size;
	const struct vcpu_io *io;
	uint64_t max_steps, steps;
	int stop;             /* VX_STOP asked for */
	enum vexit exit;      /* set by a hook that stopped the guest */
	char why[160];
};

static uint32_t reg32(struct vcpu *c, int id)
{
	uint32_t v = 0;
	uc_reg_read(c->uc, id, &v);
	return v;
}

static uint16_t reg16(struct vcpu *c, int id)
{
	uint16_t v = 0;
	uc_reg_read(c->uc, id, &v);
	return v;
}

/* Stop the guest from a hook; the first reason wins. */
__attribute__((format(printf, 3, 4)))
static void halt_with(struct vcpu *c, enum vexit x, const char *fmt, ...)
{
	va_list ap;
	if (c->exit == VX_TICK) {
		c->exit = x;
		va_start(ap, fmt);
		vsnprintf(c->why, sizeof c->why, fmt, ap);
		va_end(ap);
	}
	uc_emu_stop(c->uc);
}

/* An interrupt or exception, delivered as a real-mode CPU would. */
static void on_intr(uc_engine *uc, uint32_t vec, void *user)
{
	struct vcpu *c = user;
	uc_x86_mmr idtr;
	uint32_t cr0 = reg32(c, UC_X86_REG_CR0);
	uint16_t sp = reg16(c, UC_X86_REG_SP), ss = reg16(c, UC_X86_REG_SS);
	uint16_t fl = reg16(c, UC_X86_REG_FLAGS), cs = reg16(c, UC_X86_REG_CS);
	uint16_t ip = (uint16_t)reg32(c, UC_X86_REG_EIP), frame[3], vector[2];
	uint32_t nip, ncs;
	memset(&idtr, 0, sizeof idtr);
	uc_reg_read(uc, UC_X86_REG_IDTR, &idtr);
	if (cr0 & 1) {
		/* protected mode: 8-byte gates; none there is a triple fault */
		if ((uint64_t)vec * 8 + 7 > idtr.limit)
			halt_with(c, VX_SHUTDOWN, "vector %u past the IDT "
				  "limit", vec);
		else
			halt_with(c, VX_FAULT, "exception or interrupt %u in "
				  "protected mode (the software backend "
				  "delivers none)", vec);
		return;
	}
	if ((uint64_t)vec * 4 + 3 > idtr.limit ||
	    idtr.base + (uint64_t)vec * 4 + 4 > c->ram_size) {
		/* no vector: #GP, then a double fault, then shutdown */
		halt_with(c, VX_SHUTDOWN, "vector %u past the IDT limit", vec);
		return;
	}
	memcpy(vector, c->ram + idtr.base + vec * 4, 4);
	frame[0] = ip;
	frame[1] = cs;
	frame[2] = fl;
	sp = (uint16_t)(sp - 6);
	if ((uint64_t)ss * 16 + sp + 6 > c->ram_size) {
		halt_with(c, VX_SHUTDOWN, "stack outside RAM at interrupt "
			  "%u", vec);
		return;
	}
	uc_mem_write(uc, (uint64_t)ss * 16 + sp, frame, 6);
	uc_reg_write(uc, UC_X86_REG_SP, &sp);
	fl = (uint16_t)(fl & ~0x0300u); /* IF, TF */
	uc_reg_write(uc, UC_X86_REG_FLAGS, &fl);
	ncs = vector[1];
	nip = vector[0];
	uc_reg_write(uc, UC_X86_REG_CS, &ncs);
	uc_reg_write(uc, UC_X86_REG_EIP, &nip);
}

static uint32_t on_in(uc_engine *uc, uint32_t port, int size, void *user)
{
	struct vcpu *c = user;
	uint32_t v = c->io->in(c->io->ctx, (uint16_t)port, size);
	if (c->stop)
		uc_emu_stop(uc);
	return v;
}

static void on_out(uc_engine *uc, uint32_t port, int size, uint32_t v,
		   void *user)
{
	struct vcpu *c = user;
	c->io->out(c->io->ctx, (uint16_t)port, size, v);
	if (c->stop)
		uc_emu_stop(uc);
}

static bool on_unmapped(uc_engine *uc, uc_mem_type type, uint64_t addr,
			int size, int64_t value, void *user)
{
	struct vcpu *c = user;
	halt_with(c, VX_FAULT, "%s outside guest RAM at 0x%llx",
		  type == UC_MEM_WRITE_UNMAPPED ? "write" :
		  type == UC_MEM_FETCH_UNMAPPED ? "instruction fetch" : "read",
		  (unsigned long long)addr);
	return false;
}

static void on_code(uc_engine *uc, uint64_t addr, uint32_t size, void *user)
{
	struct vcpu *c = user;
	if (++c->steps >= c->max_steps)
		halt_with(c, VX_STEPS, "instruction limit");
}

static void uni_destroy(struct vcpu *c)
{
	if (!c)
		return;
	if (c->uc) {
		/* unicorn 2.0 frees the code bitmap of a page (made when
		 * the guest writes near translated code) only when the
		 * page's translations are dropped, not in uc_close() */
		uc_ctl_remove_cache(c->uc, 0, c->ram_size);
		uc_close(c->uc);
	}
	free(c);
}

static int uni_create(struct vcpu **out, uint8_t *ram, size_t size,
		      const struct vcpu_io *io, uint64_t max_steps,
		      char *err, size_t errlen)
{
	struct vcpu *c = calloc(1, sizeof *c);
	uc_hook h;
	uc_err e;
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->ram = ram;
	c->ram_size = size;
	c->io = io;
	c->max_steps = max_steps;
	e = uc_open(UC_ARCH_X86, UC_MODE_16, &c->uc);
	if (e == UC_ERR_OK)
		e = uc_mem_map_ptr(c->uc, 0, size, UC_PROT_ALL, ram);
	if (e == UC_ERR_OK)
		e = uc_hook_add(c->uc, &h, UC_HOOK_INTR, (void *)on_intr, c,
				1, 0);
	if (e == UC_ERR_OK)
		e = uc_hook_add(c->uc, &h, UC_HOOK_INSN, (void *)on_in, c,
				1, 0, UC_X86_INS_IN);
	if (e == UC_ERR_OK)
		e = uc_hook_add(c->uc, &h, UC_HOOK_INSN, (void *)on_out, c,
				1, 0, UC_X86_INS_OUT);
	if (e == UC_ERR_OK)
		e = uc_hook_add(c->uc, &h, UC_HOOK_MEM_UNMAPPED,
				(void *)on_unmapped, c, 1, 0);
	if (e == UC_ERR_OK && max_steps)
		e = uc_hook_add(c->uc, &h, UC_HOOK_CODE, (void *)on_code, c,
				1, 0);
	if (e != UC_ERR_OK) {
		snprintf(err, errlen, "unicorn: %s", uc_strerror(e));
		uni_destroy(c);
		return -1;
	}
	*out = c;
	return 0;
}

static int uni_get(struct vcpu *c, struct vregs *r)
{
	r->rax = reg32(c, UC_X86_REG_EAX);
	r->rbx = reg32(c, UC_X86_REG_EBX);
	r->rcx = reg32(c, UC_X86_REG_ECX);
	r->rdx = reg32(c, UC_X86_REG_EDX);
	r->rsi = reg32(c, UC_X86_REG_ESI);
	r->rdi = reg32(c, UC_X86_REG_EDI);
	r->rbp = reg32(c, UC_X86_REG_EBP);
	r->rsp = reg32(c, UC_X86_REG_ESP);
	r->rip = reg32(c, UC_X86_REG_EIP);
	r->rflags = reg32(c, UC_X86_REG_EFLAGS);
	r->cr0 = reg32(c, UC_X86_REG_CR0);
	/* real mode: base = selector * 16 */
	r->cs.sel = reg16(c, UC_X86_REG_CS);
	r->ds.sel = reg16(c, UC_X86_REG_DS);
	r->es.sel = reg16(c, UC_X86_REG_ES);
	r->ss.sel = reg16(c, UC_X86_REG_SS);
	r->cs.base = (uint64_t)r->cs.sel << 4;
	r->ds.base = (uint64_t)r->ds.sel << 4;
	r->es.base = (uint64_t)r->es.sel << 4;
	r->ss.base = (uint64_t)r->ss.sel << 4;
	return 0;
}

static int uni_set(struct vcpu *c, const struct vregs *r, int all)
{
	const int ids[] = { UC_X86_REG_EAX, UC_X86_REG_EBX, UC_X86_REG_ECX,
			    UC_X86_REG_EDX, UC_X86_REG_ESI, UC_X86_REG_EDI,
			    UC_X86_REG_EBP, UC_X86_REG_ESP };
	const uint64_t *v[] = { &r->rax, &r->rbx, &r->rcx, &r->rdx, &r->rsi,
				&r->rdi, &r->rbp, &r->rsp };
	for (size_t i = 0; i < 8; i++) {
		uint32_t x = (uint32_t)*v[i];
		uc_reg_write(c->uc, ids[i], &x);
	}
	if (all) {
		uint32_t x = (uint32_t)r->rflags;
		uint16_t s;
		uc_reg_write(c->uc, UC_X86_REG_EFLAGS, &x);
		s = r->cs.sel; uc_reg_write(c->uc, UC_X86_REG_CS, &s);
		s = r->ds.sel; uc_reg_write(c->uc, UC_X86_REG_DS, &s);
		s = r->es.sel; uc_reg_write(c->uc, UC_X86_REG_ES, &s);
		s = r->ss.sel; uc_reg_write(c->uc, UC_X86_REG_SS, &s);
		x = (uint32_t)r->rip;
		uc_reg_write(c->uc, UC_X86_REG_EIP, &x);
		/* the vector table at 0, as after a reset */
		uc_x86_mmr idtr = { 0, 0, 0x3ff, 0 };
		uc_reg_write(c->uc, UC_X86_REG_IDTR, &idtr);
	}
	return 0;
}

static enum vexit uni_run(struct vcpu *c, double slice, char *why,
			  size_t whylen)
{
	uint32_t eip = reg32(c, UC_X86_REG_EIP);
	uint64_t cs = reg16(c, UC_X86_REG_CS), timed_out = 0;
	uint64_t us = (uint64_t)(slice * 1e6);
	uc_err e;
	c->exit = VX_TICK;
	c->why[0] = 0;
	/* in 16-bit mode unicorn takes the start as CS * 16 + IP */
	e = uc_emu_start(c->uc, cs * 16 + eip, 1ull << 40, us ? us : 1, 0);
	if (c->stop) {
		c->stop = 0;
		return VX_STOP;
	}
	if (c->exit != VX_TICK) {
		snprintf(why, whylen, "%s", c->why);
		return c->exit;
	}
	if (e != UC_ERR_OK) {
		snprintf(why, whylen, "%s at %04x:%04x", uc_strerror(e),
			 (unsigned)reg16(c, UC_X86_REG_CS),
			 (unsigned)reg32(c, UC_X86_REG_EIP));
		return VX_FAULT;
	}
	uc_query(c->uc, UC_QUERY_TIMEOUT, (size_t *)&timed_out);
	if (timed_out)
		return VX_TICK;
	/* stopped by itself: unicorn ends emulation at hlt */
	return (reg32(c, UC_X86_REG_EFLAGS) & 0x200) ? VX_IDLE : VX_HALT;
}

static void uni_stop(struct vcpu *c)
{
	c->stop = 1;
}

static void uni_written(struct vcpu *c, uint64_t addr, size_t len)
{
	/* drop translated code of the range the host just wrote */
	uc_ctl_remove_cache(c->uc, addr, addr + len);
}

const struct vcpu_ops vcpu_unicorn_ops = {
	"unicorn", uni_create, uni_destroy, uni_get, uni_set, uni_run,
	uni_stop, uni_written,
};
