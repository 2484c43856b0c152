; Hostile guest: loops forever without printing (stopped at --timeout).
bits 16
org 0x7c00
	cli
spin:	jmp spin
times 510-($-$$) db 0
dw 0xaa55
