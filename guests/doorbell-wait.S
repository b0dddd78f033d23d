# tsvisor-guest: elf
# Waits for one external interrupt through the in-kernel 8259 PIC (the VM needs the in-kernel
# irqchip), then prints "W" on COM1 and powers off through debug-exit with 0.
# The interrupt line is the GSI in the low 4 bits of %rdi (1-15, not 2, the cascade; 0 means
# GSI 5), so a host binds an irqfd to that GSI and signals it. Once the PIC is programmed and
# the line unmasked the guest stores 1 in the u32 at guest-physical 0x7000 (DOORBELL_READY):
# from then on a signal is latched even before the guest halts, so a host may wait for that
# word before it rings. Then it halts with interrupts on; nothing but the interrupt (or the
# host stopping the vCPU) ends the halt.
	.set	READY, 0x7000
	.set	VECTOR_BASE, 0x20	# master PIC ICW2; the slave follows at 0x28
	.include "pic.inc"
	.set	GATES, VECTOR_BASE + 16

	.code64
	.text
	.globl	_start
_start:
	mov	%edi, %ecx
	and	$0xf, %ecx
	jnz	1f
	mov	$5, %ecx
1:
	idt_and_pic isr
	# OCW1: mask everything but our line (and the cascade when the line is on the slave).
	mov	$0xffff, %eax
	btr	%ecx, %eax
	cmp	$8, %ecx
	jb	3f
	btr	$2, %eax
3:	outb	%al, $0x21
	mov	%ah, %al
	outb	%al, $0xa1

	movl	$1, READY
	sti
4:	hlt
	jmp	4b

isr:	mov	$'W', %al
	mov	$0x3f8, %dx
	outb	%al, %dx
	xor	%eax, %eax
	outb	%al, $0xf4
5:	hlt
	jmp	5b

	.data
	.balign	8
	.word	0, 0, 0		# pad so the 10-byte IDTR's base is 8-byte aligned
idtr:	.word	GATES * 16 - 1
	.quad	idt

	.bss
	.balign	16
idt:	.skip	GATES * 16
