# tsvisor-guest: elf
# Writes to guest-physical 0xd0000000, where no RAM and no device lives, forever: every write
# is an MMIO exit the host ignores (unclaimed). Only a forced stop ends it. Used to show that
# a guest hammering unclaimed MMIO does not disturb another VM.
	.code64
	.text
	.globl _start
_start:
	mov	$0xd0000000, %ebx
	xor	%eax, %eax
1:	inc	%eax
	movl	%eax, (%rbx)
	jmp	1b
