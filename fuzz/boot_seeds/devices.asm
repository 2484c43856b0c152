; Seed: the devices: the UART's divisor latch and registers, the debug
; port, port 0x92, the keyboard controller, VGA retrace, unknown ports
; (bytes, words, dwords, string I/O), a hlt with interrupts on, and last a
; reset through the keyboard controller.
bits 16
org 0x7c00
	xor ax, ax
	mov ds, ax
	mov es, ax
	mov dx, 0x3fb
	mov al, 0x80			; DLAB
	out dx, al
	mov dx, 0x3f8
	mov al, 1
	out dx, al
	in al, dx
	inc dx
	out dx, al
	in al, dx
	mov dx, 0x3fb
	mov al, 0x03
	out dx, al
	mov dx, 0x3f9
	mov al, 0x0f
	out dx, al
	mov dx, 0x3fa
	in al, dx
	mov dx, 0x3fc
	out dx, al
	in al, dx
	mov dx, 0x3fe
	in al, dx
	mov dx, 0x3ff
	out dx, al
	in al, dx
	in al, 0x92
	in al, 0x64
	in al, 0x60
	in al, 0x61
	mov dx, 0x3da
	in al, dx
	mov dx, 0x1234
	in ax, dx
	in eax, dx
	out dx, eax
	mov si, msg			; string output to the debug port
	mov cx, msg_len
	mov dx, 0xe9
	rep outsb
	mov di, 0x8000			; string input from the UART
	mov cx, 16
	mov dx, 0x3fd
	rep insb
	sti
	hlt				; idle: no interrupt ever comes
	mov dx, 0xcf9
	mov al, 0x02
	out dx, al			; not a reset yet
	mov al, 0xfe
	out 0x64, al			; reset
	hlt
msg:	db "devices", 13, 10
msg_len equ $ - msg
times 510-($-$$) db 0
dw 0xaa55
