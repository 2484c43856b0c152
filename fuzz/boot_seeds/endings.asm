; Seed: ways to end a run.  The first byte after the jump picks one, so
; a mutation of it reaches the others: 0 divide error, 1 INT 18h, 2 INT
; 19h, 3 APM power off, 4 ACPI power off, 5 port 0xcf9 reset, 6 an
; exception in protected mode, 7 a software interrupt in protected mode.
bits 16
org 0x7c00
	jmp short start
which:	db 0
start:	xor ax, ax
	mov ds, ax
	mov ss, ax
	mov sp, 0x7c00
	mov bl, [which]
	and bx, 7
	add bx, bx
	jmp [table + bx]
table:	dw e_div, e_18, e_19, e_apm, e_acpi, e_cf9, e_pm, e_pm
e_div:	xor cx, cx
	div cx
e_18:	int 0x18
e_19:	int 0x19
e_apm:	mov ax, 0x5307
	mov bx, 1
	mov cx, 3
	int 0x15
	hlt
e_acpi:	mov dx, 0x604
	mov ax, 0x2000
	out dx, ax
	hlt
e_cf9:	mov dx, 0xcf9
	mov al, 0x06
	out dx, al
	hlt
e_pm:	cli
	lgdt [gdtr]
	lidt [idtr]
	mov eax, cr0
	or al, 1
	mov cr0, eax
	jmp 0x08:pm
bits 32
pm:	cmp byte [which], 7
	je soft
	ud2
soft:	int 0x13
	hlt
align 8
gdt:	dq 0
	dq 0x00cf9a000000ffff
gdtr:	dw 15
	dd gdt
idtr:	dw 0x7ff
	dd 0
times 510-($-$$) db 0
dw 0xaa55
