; Hostile guest: prints "x", then a far jmp with a register operand
; (FF /5, mod 3), an invalid instruction: under KVM an invalid-opcode
; fault; unicorn 2.0 aborts the process translating it, which the runner's
; child process absorbs (exit 3, "the vCPU crashed").
bits 16
org 0x7c00
	mov dx, 0x3f8
	mov al, 'x'
	out dx, al
	db 0xff, 0xee			; jmp far si: not encodable
	hlt
times 510-($-$$) db 0
dw 0xaa55
