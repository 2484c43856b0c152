; Hostile guest: goes to protected mode with a flat 4 GiB segment and
; writes 4 MiB far outside guest RAM (at 3 GiB): the runner stops it with a
; fault, and nothing of it reaches the host.
bits 16
org 0x7c00
	cli
	xor ax, ax
	mov ds, ax
	lgdt [gdtr]
	mov eax, cr0
	or al, 1
	mov cr0, eax
	jmp 0x08:pm
bits 32
pm:	mov ax, 0x10
	mov ds, ax
	mov es, ax
	mov edi, 0xc0000000
	mov ecx, 0x100000
	mov eax, 0xdeadbeef
	rep stosd
	hlt
align 8
gdt:	dq 0
	dq 0x00cf9a000000ffff		; code, flat 4 GiB
	dq 0x00cf92000000ffff		; data, flat 4 GiB
gdtr:	dw 23
	dd gdt
times 510-($-$$) db 0
dw 0xaa55
