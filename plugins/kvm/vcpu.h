/*
 * The vCPU interface of the minimal boot runner (runner.c): one x86 CPU
 * over a flat block of guest RAM, behind which sit two backends that run
 * the same guest code, KVM (vcpu_kvm.c, /dev/kvm) and unicorn
 * (vcpu_unicorn.c, software, everywhere).  Port I/O goes to the machine's
 * callbacks synchronously, while the instruction executes; everything
 * else that stops the CPU is an exit of run().
 */
#ifndef VMB_KVM_VCPU_H
#define VMB_KVM_VCPU_H

#include <stddef.h>
#include <stdint.h>

/** A segment register: selector and the base the CPU uses. */
struct vseg {
	uint16_t sel;
	uint64_t base;
};

/** The registers the firmware services read and write. */
struct vregs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, rip, rflags;
	struct vseg cs, ds, es, ss;
	uint64_t cr0;
};

/** Why run() returned. */
enum vexit {
	VX_TICK,     /* a time slice ended: the machine updates its clock */
	VX_HALT,     /* hlt with interrupts off: the guest has stopped */
	VX_IDLE,     /* hlt with interrupts on: waiting for an interrupt */
	VX_SHUTDOWN, /* triple fault */
	VX_FAULT,    /* the backend stopped on a guest error: see why */
	VX_STOP,     /* the machine asked to stop (vcpu_ops.stop) */
	VX_STEPS,    /* the instruction limit was reached */
};

/** The machine's side: port I/O, called while an in/out executes. */
struct vcpu_io {
	void *ctx;
	uint32_t (*in)(void *ctx, uint16_t port, int size);
	void (*out)(void *ctx, uint16_t port, int size, uint32_t value);
};

struct vcpu;

struct vcpu_ops {
	const char *name;
	/** Make a CPU over @p ram (guest physical 0..size, size a multiple
	 *  of 4 KiB).  On failure @p err says why (the backend is missing,
	 *  no permission on /dev/kvm, ...). */
	int (*create)(struct vcpu **out, uint8_t *ram, size_t size,
		      const struct vcpu_io *io, uint64_t max_steps,
		      char *err, size_t errlen);
	void (*destroy)(struct vcpu *c);
	int (*get)(struct vcpu *c, struct vregs *r);
	/** Write the general registers; with @p all also rip, rflags and
	 *  the segments (real-mode bases), for the start. */
	int (*set)(struct vcpu *c, const struct vregs *r, int all);
	/** Run for at most @p slice seconds; @p why gets a fault's reason. */
	enum vexit (*run)(struct vcpu *c, double slice, char *why,
			  size_t whylen);
	/** From an I/O callback: end run() with VX_STOP. */
	void (*stop)(struct vcpu *c);
	/** The host wrote guest RAM (a disk read): drop cached code. */
	void (*written)(struct vcpu *c, uint64_t addr, size_t len);
};

extern const struct vcpu_ops vcpu_kvm_ops;
extern const struct vcpu_ops vcpu_unicorn_ops;

#endif
