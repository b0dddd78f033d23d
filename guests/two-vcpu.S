# tsvisor-guest: elf
# Runs on two vCPUs that both start at _start; %rsi says which one this is (0 = boot vCPU,
# 1 = the other; tsvisor's builder sets it per vCPU). vCPU 1 writes "B" on COM1, sets a flag
# in shared memory and halts for good; vCPU 0 writes "A", spins until the flag is set and
# powers off through debug-exit with 0. Console order between A and B is not defined.
	.code64
	.text
	.globl	_start
_start:
	mov	$0x3f8, %dx
	test	%rsi, %rsi
	jnz	secondary
	mov	$'A', %al
	outb	%al, %dx
1:	cmpl	$0, flag(%rip)
	je	1b
	xor	%eax, %eax
	outb	%al, $0xf4
2:	hlt
	jmp	2b

secondary:
	mov	$'B', %al
	outb	%al, %dx
	movl	$1, flag(%rip)
3:	hlt
	jmp	3b

	.data
	.balign	4
flag:	.long	0
