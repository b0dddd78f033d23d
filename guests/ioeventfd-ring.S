# tsvisor-guest: elf
# Rings two doorbells, then powers off with code 0: a byte 1 to port 0x600 and the 32-bit
# value 7 to guest-physical 0xd0000000. With ioeventfds on them the host sees one exit.
	.code64
	.text
	.globl _start
_start:
	mov	$0x600, %dx
	mov	$1, %al
	outb	%al, %dx
	mov	$0xd0000000, %ebx
	movl	$7, (%rbx)
	xor	%eax, %eax
	outb	%al, $0xf4
1:	hlt
	jmp	1b
