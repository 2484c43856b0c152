; A boot sector that prints "vmb-boot-ok" on COM1 (0x3f8), then halts.
; Assembled by the tests and benchmarks (nasm -f bin); never committed as a binary.
bits 16
org 0x7c00
	mov si, msg
l_next:	lodsb
	or al, al
	jz l_done
	mov bl, al
	mov dx, 0x3fd
l_wait:	in al, dx
	test al, 0x20
	jz l_wait
	mov al, bl
	mov dx, 0x3f8
	out dx, al
	jmp l_next
l_done:	cli
l_halt:	hlt
	jmp l_halt
msg:	db "vmb-boot-ok", 13, 10, 0
times 510-($-$$) db 0
dw 0xaa55
