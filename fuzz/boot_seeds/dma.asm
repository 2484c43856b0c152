; Seed: INT 13h "DMA" to the edges of guest memory.  Reads into the
; firmware page (F000:0000), across the 1 MiB wrap (FFFF:FFF0), through a
; 64-bit buffer address that straddles the end of RAM or wraps around
; 2^64, and finally over the interrupt vector table itself (sector 0 at
; 0000:0000), after which the next INT jumps into boot-sector bytes.
bits 16
org 0x7c00
	xor ax, ax
	mov ds, ax
	mov ss, ax
	mov sp, 0x7c00
	mov ax, 0xf000			; over the firmware's stubs
	mov es, ax
	xor bx, bx
	mov ax, 0x0201
	mov cx, 0x0002
	mov dx, 0x0080
	int 0x13
	mov ax, 0xffff			; across 1 MiB: FFFF:FFF0
	mov es, ax
	mov bx, 0xfff0
	mov ax, 0x0202
	mov cx, 0x0001
	mov dx, 0x0080
	int 0x13
	xor ax, ax
	mov ds, ax
	mov si, dap_end			; straddles the end of RAM
	mov ah, 0x42
	mov dl, 0x80
	int 0x13
	mov si, dap_wrap		; wraps around 2^64
	mov ah, 0x42
	mov dl, 0x80
	int 0x13
	mov si, dap_short		; a 64-bit packet that is too short
	mov ah, 0x42
	mov dl, 0x80
	int 0x13
	xor ax, ax			; over the vector table
	mov es, ax
	xor bx, bx
	mov ax, 0x0201
	mov cx, 0x0001
	mov dx, 0x0080
	int 0x13
	int 0x10			; now through a vector of code bytes
	hlt
align 4
dap_end:	db 24, 0
	dw 1
	dw 0xffff, 0xffff
	dq 0
	dq 0x1fff00			; 2 MiB - 256
dap_wrap:	db 24, 0
	dw 2
	dw 0xffff, 0xffff
	dq 0
	dq 0xffffffffffffff00
dap_short:	db 16, 0
	dw 1
	dw 0xffff, 0xffff
	dq 0
times 510-($-$$) db 0
dw 0xaa55
