; Hostile guest: prints "x", goes to protected mode with an empty IDT
; (limit 0) and raises an exception: #GP, double fault, triple fault.
bits 16
org 0x7c00
	mov dx, 0x3f8
	mov al, 'x'
	out dx, al
	cli
	xor ax, ax
	mov ds, ax
	lgdt [gdtr]
	lidt [null_idt]
	mov eax, cr0
	or al, 1
	mov cr0, eax
	jmp 0x08:pm
bits 32
pm:	mov ax, 0x10			; a selector past the GDT: #GP
	mov ds, ax
	hlt
align 8
gdt:	dq 0
	dq 0x00cf9a000000ffff		; code, flat 4 GiB
gdtr:	dw 15
	dd gdt
null_idt:	dw 0
	dd 0
times 510-($-$$) db 0
dw 0xaa55
