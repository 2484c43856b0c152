; A boot sector that writes the 387's ports 0xf0-0xff as Linux's setup
; code does to reset the FPU (outb(0, 0xf0); outb(0, 0xf1)), and a few
; more of them; they are also the ports our firmware stubs signal the host
; through, so they must count only when the stubs write them.  Then it
; prints "vmb-fpu-ok" on COM1, with no newline, and halts: the expected
; text must still be found after the guest has stopped.
bits 16
org 0x7c00
	xor ax, ax
	mov ds, ax
	out 0xf0, al			; clear the FPU's busy latch
	out 0xf1, al			; reset the FPU
	mov ax, 0x0301			; in AX what INT 13h would take as a
	mov bx, 0x0000			; write of sector 0 from 0000:0000
	mov cx, 0x0001
	mov dx, 0x0080
	out 0xf4, al
	mov al, 0x18
	out 0xf7, al			; would be INT 18h
	mov si, msg
	mov dx, 0x3f8
next:	lodsb
	or al, al
	jz done
	out dx, al
	jmp next
done:	cli
	hlt
msg:	db "vmb-fpu-ok", 0
times 510-($-$$) db 0
dw 0xaa55
