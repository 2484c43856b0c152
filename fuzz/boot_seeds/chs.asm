; Seed: huge and invalid CHS values, other drives, bad packets and
; parameter buffers, E820 and write-string calls at the top of memory.
bits 16
org 0x7c00
	xor ax, ax
	mov ds, ax
	mov ss, ax
	mov sp, 0x7c00
	mov es, ax
	mov bx, 0x8000
	mov ax, 0x02ff			; 255 sectors from C1023 H254 S63
	mov cx, 0xffff
	mov dx, 0xfe80
	int 0x13
	mov ax, 0x0201			; sector 0 does not exist in CHS
	mov cx, 0x0000
	mov dx, 0x0080
	int 0x13
	mov ax, 0x0201			; head 255 is past the geometry
	mov cx, 0x0001
	mov dx, 0xff80
	int 0x13
	mov ax, 0x0300			; write of zero sectors
	mov cx, 0x0001
	mov dx, 0x0080
	int 0x13
	mov ah, 0x08			; parameters of drives 00h, 81h, E0h
	mov dl, 0x00
	int 0x13
	mov ah, 0x08
	mov dl, 0x81
	int 0x13
	mov ah, 0x15
	mov dl, 0xe0
	int 0x13
	mov ah, 0x41			; extensions: wrong magic
	mov bx, 0x1234
	mov dl, 0x80
	int 0x13
	mov ax, 0xffff			; 48h: buffer at FFFF:FFF0, size 0xffff
	mov ds, ax
	mov si, 0xfff0
	mov word [si], 0xffff
	mov ah, 0x48
	mov dl, 0x80
	int 0x13
	mov word [si], 2		; 48h: a buffer too small
	mov ah, 0x48
	int 0x13
	mov ax, 0xffff			; E820 at FFFF:FFFF, index 0 and huge
	mov es, ax
	mov di, 0xffff
	xor ebx, ebx
	mov eax, 0xe820
	mov ecx, 0xffffffff
	mov edx, 0x534d4150
	int 0x15
	mov ebx, 0xfffffff0
	mov eax, 0xe820
	mov ecx, 24
	mov edx, 0x534d4150
	int 0x15
	mov ax, 0xe801
	int 0x15
	mov ah, 0x88
	int 0x15
	mov ax, 0x1301			; write string: 65535 bytes from FFFF:FFFF
	mov bp, 0xffff
	mov cx, 0xffff
	int 0x10
	mov ax, 0x1303			; with attributes
	int 0x10
	mov ah, 0x00			; time and keyboard
	int 0x1a
	mov ah, 0x02
	int 0x1a
	mov ah, 0x04
	int 0x1a
	mov ax, 0xb101
	int 0x1a
	mov ah, 0x01
	int 0x16
	mov ah, 0x00
	int 0x16
	int 0x11
	int 0x12
	mov ss, ax			; a stack that wraps at FFFF:FFFE
	mov ax, 0xffff
	mov ss, ax
	mov sp, 0x0002
	mov ah, 0x01
	int 0x13
	hlt
times 510-($-$$) db 0
dw 0xaa55
