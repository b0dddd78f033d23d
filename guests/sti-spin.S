# tsvisor-guest: elf
# Spins with interrupts enabled and never exits by itself: the guest for the interrupt window
# (kvm_run.request_interrupt_window) on a VM without KVM's irqchip. Every vector's handler
# writes the count of interrupts taken so far to port 0x540 (32 bits) and returns.
	.set	ACK_PORT, 0x540

	.code64
	.text
	.globl	_start
_start:
	xor	%r12d, %r12d
	lea	handler(%rip), %rax	# one 64-bit interrupt gate (selector 0x08, DPL 0) …
	mov	%eax, %edx
	and	$0xffff, %edx
	or	$0x00080000, %edx
	shr	$16, %eax
	shl	$16, %eax
	or	$0x8e00, %eax
	shl	$32, %rax
	or	%rax, %rdx
	lea	idt(%rip), %rdi		# … for all 256 vectors
	mov	$256, %ecx
1:	mov	%rdx, (%rdi)
	add	$16, %rdi
	dec	%ecx
	jnz	1b
	lidt	idtr(%rip)
	sti
2:	jmp	2b

handler:
	inc	%r12d
	mov	%r12d, %eax
	mov	$ACK_PORT, %dx
	outl	%eax, %dx
	iretq

	.data
	.balign	8
	.word	0, 0, 0		# pad so the 10-byte IDTR's base is 8-byte aligned
idtr:	.word	256 * 16 - 1
	.quad	idt

	.bss
	.balign	16
idt:	.skip	256 * 16
