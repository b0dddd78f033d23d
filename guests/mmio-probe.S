# tsvisor-guest: elf
# Writes to and reads from guest-physical 0xd0000000, where no RAM and no device lives, then
# powers off with the low byte of what the read returned (0xff under the all-ones policy).
	.code64
	.text
	.globl _start
_start:
	mov	$0xd0000000, %ebx
	movl	$0x2a, (%rbx)
	mov	(%rbx), %eax
	outb	%al, $0xf4
1:	hlt
	jmp	1b
