; Hostile guest: INT 13h requests outside the disk and outside memory,
; each of which must fail (CF set) without harm; then "vmb-oob-ok".
bits 16
org 0x7c00
	xor ax, ax
	mov ds, ax
	mov ss, ax
	mov sp, 0x7c00
	mov si, dap_far			; LBA far past the end of the disk
	mov ah, 0x42
	mov dl, 0x80
	int 0x13
	jnc bad
	mov si, dap_last		; runs past the last sector
	mov ah, 0x42
	mov dl, 0x80
	int 0x13
	jnc bad
	mov si, dap_wild		; 64-bit buffer address outside RAM
	mov ah, 0x42
	mov dl, 0x80
	int 0x13
	jnc bad
	mov si, dap_big			; 65535 sectors
	mov ah, 0x42
	mov dl, 0x80
	int 0x13
	jnc bad
	mov ax, 0x0201			; CHS: cylinder 1023, head 254
	mov cx, 0xffff
	mov dx, 0xfe80
	mov bx, 0x8000
	int 0x13
	jnc bad
	mov ax, 0x0201			; another drive
	mov cx, 1
	mov dx, 0x0081
	int 0x13
	jnc bad
	mov si, dap_write		; a write past the end
	mov ah, 0x43
	mov dl, 0x80
	int 0x13
	jnc bad
	mov ah, 0x48			; parameters into a buffer past RAM:
	mov si, 0xfff0			; at DS:SI = FFFF:FFF0 (inside 1 MiB +
	mov bx, 0xffff			; 64 KiB, so it is RAM: must work)
	mov ds, bx
	mov word [si], 30
	int 0x13
	jc bad
	xor ax, ax
	mov ds, ax
	mov si, ok
	jmp puts
bad:	xor ax, ax
	mov ds, ax
	mov si, fail
puts:	lodsb
	or al, al
	jz done
	mov dx, 0x3f8
	out dx, al
	jmp puts
done:	cli
	hlt
dap_far:	db 16, 0
	dw 1, 0x8000, 0
	dq 0xffffffff00
dap_last:	db 16, 0
	dw 8, 0x8000, 0
	dq 2044				; the test's disk has 2048 sectors
dap_wild:	db 24, 0
	dw 1, 0xffff, 0xffff
	dq 0
	dq 0xfffffffffffff000
dap_big:	db 16, 0
	dw 0xffff, 0x8000, 0
	dq 0
dap_write:	db 16, 0
	dw 1, 0x8000, 0
	dq 4096
ok:	db "vmb-oob-ok", 13, 10, 0
fail:	db "FAIL oob request accepted", 13, 10, 0
times 510-($-$$) db 0
dw 0xaa55
