; A boot sector that exercises the firmware the way boot loaders do, then
; prints "vmb-int13-ok" (or what failed) through INT 10h and COM1.
;  - INT 13h AH=41h (extensions), AH=08h (geometry), AH=02h (CHS read of
;    sector 1), AH=42h (extended read of sectors 2-3, which hold stage 2),
;    AH=43h/42h (a write into the overlay, read back);
;  - INT 15h E820 (map entries), AX=2401h (A20), INT 12h, INT 1Ah.
; The disk beyond the image's sectors 0-3 is filled in by the test.
; Assembled by the build (nasm -f bin); never committed as a binary.
bits 16
org 0x7c00
	xor ax, ax
	mov ds, ax
	mov es, ax
	mov ss, ax
	mov sp, 0x7c00
	mov [drive], dl
	mov si, m_hello
	call puts
	mov ah, 0x41			; extensions present?
	mov bx, 0x55aa
	mov dl, [drive]
	int 0x13
	jc fail_41
	cmp bx, 0xaa55
	jne fail_41
	mov ah, 0x08			; geometry
	mov dl, [drive]
	int 0x13
	jc fail_08
	and cl, 0x3f
	cmp cl, 63
	jne fail_08
	mov ax, 0x0201			; CHS: 1 sector, C0 H0 S2 -> LBA 1
	mov cx, 0x0002
	xor dh, dh
	mov dl, [drive]
	mov bx, 0x8000
	int 0x13
	jc fail_chs
	mov si, 0x8000			; sector 1 starts with "chs-ok"
	call puts
	mov si, dap			; extended read: stage 2 at 0x9000
	mov ah, 0x42
	mov dl, [drive]
	int 0x13
	jc fail_ext
	xor ebx, ebx			; E820: count the entries
	xor bp, bp
e820:	mov eax, 0xe820
	mov edx, 0x534d4150
	mov ecx, 20
	mov di, 0x7000
	int 0x15
	jc fail_e820
	inc bp
	test ebx, ebx
	jnz e820
	cmp bp, 4
	jne fail_e820
	mov ax, 0x2401			; A20 on
	int 0x15
	jc fail_a20
	int 0x12			; KiB of low memory
	cmp ax, 639
	jne fail_12
	xor ah, ah			; ticks
	int 0x1a
	jmp 0x0000:0x9000		; stage 2
fail_41:	mov si, m_41
	jmp fail
fail_08:	mov si, m_08
	jmp fail
fail_chs:	mov si, m_chs
	jmp fail
fail_ext:	mov si, m_ext
	jmp fail
fail_e820:	mov si, m_e820
	jmp fail
fail_a20:	mov si, m_a20
	jmp fail
fail_12:	mov si, m_12
fail:	call puts
	cli
	hlt
; puts: the NUL-terminated string at DS:SI to INT 10h and COM1
puts:	lodsb
	or al, al
	jz .done
	mov ah, 0x0e
	mov bx, 0x0007
	int 0x10
	mov dx, 0x3f8
	out dx, al
	jmp puts
.done:	ret
drive:	db 0
dap:	db 16, 0
	dw 2				; sectors
	dw 0x9000, 0			; offset, segment
	dq 2				; LBA
m_hello:	db "vmb-int13 start", 13, 10, 0
m_41:	db "FAIL int13 ah=41", 13, 10, 0
m_08:	db "FAIL int13 ah=08", 13, 10, 0
m_chs:	db "FAIL int13 chs read", 13, 10, 0
m_ext:	db "FAIL int13 ext read", 13, 10, 0
m_e820:	db "FAIL e820", 13, 10, 0
m_a20:	db "FAIL a20", 13, 10, 0
m_12:	db "FAIL int12", 13, 10, 0
times 510-($-$$) db 0
dw 0xaa55

; sector 1: a string, read by CHS
	db "chs-ok", 13, 10, 0
times 1024-($-$$) db 0

; sectors 2-3: stage 2, read by AH=42h to 0x9000
stage2:
	mov si, 0x9000 + (s2_msg - stage2)
	mov bp, puts			; stage 1's puts is still there
	call bp
	; write a sector over LBA 1 (the overlay), read it back
	mov di, 0xa000
	mov cx, 512
	mov al, 'w'
	rep stosb
	mov byte [0xa000 + 511], 0
	mov si, 0x9000 + (wdap - stage2)
	mov ah, 0x43
	mov dl, 0x80
	int 0x13
	jc .wfail
	mov si, 0x9000 + (rdap - stage2)
	mov ah, 0x42
	mov dl, 0x80
	int 0x13
	jc .wfail
	cmp byte [0xb000 + 100], 'w'
	jne .wfail
	mov si, 0x9000 + (ok_msg - stage2)
	call bp
	cli
	hlt
.wfail:	mov si, 0x9000 + (wf_msg - stage2)
	call bp
	cli
	hlt
wdap:	db 16, 0
	dw 1, 0xa000, 0
	dq 1
rdap:	db 16, 0
	dw 1, 0xb000, 0
	dq 1
s2_msg:	db "ext-read-ok", 13, 10, 0
ok_msg:	db "overlay-ok", 13, 10, "vmb-int13-ok", 13, 10, 0
wf_msg:	db "FAIL overlay write", 13, 10, 0
times 2048-($-$$) db 0
