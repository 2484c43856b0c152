; Hostile guest: prints to COM1 and INT 10h forever (a console flood).
bits 16
org 0x7c00
	mov dx, 0x3f8
again:	mov al, 'A'
	out dx, al
	mov ah, 0x0e
	int 0x10
	jmp again
times 510-($-$$) db 0
dw 0xaa55
