# tsvisor-guest: elf
# Powers off through the debug-exit port with the low byte of %rdi as the exit code, so one
# image covers every code: the host sets %rdi in the boot registers.
	.code64
	.text
	.globl _start
_start:
	mov	%edi, %eax
	outb	%al, $0xf4
1:	hlt
	jmp	1b
