# tsvisor-guest: flat
# Real-mode flat binary: prints "Hello\n" on COM1, then powers off with code 0.
	.code16
	.text
	.globl _start
_start:
	mov	$0x3f8, %dx
	mov	$msg, %si
	mov	$(msg_end - msg), %cx
	cld
1:	lodsb
	outb	%al, %dx
	loop	1b
	xor	%al, %al
	outb	%al, $0xf4
2:	hlt
	jmp	2b
msg:	.ascii	"Hello\n"
msg_end:
