# tsvisor-guest: elf
# The doorbell stress guest: every vCPU halts in a loop (sti; hlt) and acknowledges each
# interrupt it takes by writing its running count of them to its acknowledge port, so a host
# that rings one numbered doorbell at a time and waits for the acknowledgement sees any lost,
# doubled or misrouted interrupt.
#
#   %rsi  this vCPU's index i (0 or 1; tsvisor sets it per vCPU)
#   %rdi  bit 0: the VM has the in-kernel irqchip (IOAPIC + LAPIC); otherwise the user irqchip
#
# vCPU i owns GSIs 16+2i and 17+2i, i.e. vectors 0x30+2i and 0x31+2i (the user irqchip's model:
# GSI n is vector 0x20+n; docs/user-irqchip.md). With the in-kernel irqchip, vCPU 0 programs
# those IOAPIC pins (edge, fixed, physical destination = APIC ID i) and each vCPU enables its
# own LAPIC; the handler then EOIs the LAPIC. The user irqchip needs no EOI.
#
# Acknowledge port of vCPU i: 0x540 + 4i, a 32-bit write of the count of interrupts taken so
# far. The first write, 0, says "ready": interrupts are on from the next instruction, and with
# the in-kernel irqchip vCPU 0 has programmed every pin before its own 0.
# Any other vector (an exception, a spurious LAPIC interrupt) powers the VM off through
# debug-exit with 0xee, after writing the vector and the top of its interrupt frame to the
# quadwords at guest-physical 0x7000 + 64 × index.
	.set	ACK_PORT, 0x540
	.set	IOAPIC, 0xfec00000
	.set	LAPIC, 0xfee00000
	.set	LAPIC_EOI, LAPIC + 0xb0
	.set	LAPIC_SVR, LAPIC + 0xf0
	.set	FIRST_GSI, 16
	.set	GSIS, 4
	.set	VECTOR_BASE, 0x20
	.set	STUB, 16
	.set	UNEXPECTED, 0x7000

	.code64
	.text
	.globl	_start
_start:
	# Registers the handler relies on (it only ever interrupts the halt loop below):
	#   %rbx index, %rbp flags, %r12d interrupts taken, %r13d acknowledge port, %r14 the
	#   LAPIC base (above 2 GiB: no 32-bit displacement reaches it).
	mov	%rsi, %rbx
	mov	%rdi, %rbp
	xor	%r12d, %r12d
	lea	ACK_PORT(,%rbx,4), %r13d
	mov	$LAPIC, %r14d
	mov	$IOAPIC, %r15d

	# IDT, in one pass so that every write is final: the doorbell vectors to `doorbell`,
	# every other vector v to stub v of `unexpected`. Both vCPUs write the same bytes.
	lea	idt(%rip), %rdi
	xor	%ecx, %ecx
1:	lea	doorbell(%rip), %rax
	lea	-(VECTOR_BASE + FIRST_GSI)(%rcx), %edx
	cmp	$GSIS, %edx
	jb	2f
	mov	%ecx, %eax
	shl	$4, %eax		# × STUB
	lea	unexpected(%rip), %rdx
	add	%rdx, %rax
2:	call	gate
	mov	%rdx, (%rdi)
	add	$16, %rdi
	inc	%ecx
	cmp	$256, %ecx
	jb	1b
	lidt	idtr(%rip)

	test	$1, %bpl
	jz	ready
	# In-kernel irqchip: software-enable this LAPIC (spurious vector 0xff).
	movl	$0x1ff, LAPIC_SVR - LAPIC(%r14)
	test	%rbx, %rbx
	jnz	ready
	# vCPU 0 programs pins FIRST_GSI.. : destination first (high word), then the low word,
	# which unmasks the pin: vector 0x20 + pin, fixed, physical, edge, active high.
	mov	$FIRST_GSI, %ecx
3:	lea	0x11(,%rcx,2), %eax
	movl	%eax, (%r15)
	mov	%ecx, %eax
	sub	$FIRST_GSI, %eax
	shr	$1, %eax
	shl	$24, %eax
	movl	%eax, 0x10(%r15)
	lea	0x10(,%rcx,2), %eax
	movl	%eax, (%r15)
	lea	VECTOR_BASE(%rcx), %eax
	movl	%eax, 0x10(%r15)
	inc	%ecx
	cmp	$FIRST_GSI + GSIS, %ecx
	jb	3b

ready:
	mov	%r12d, %eax
	mov	%r13d, %edx
	outl	%eax, %dx
	sti
4:	hlt
	jmp	4b

# %rax = handler (below 4 GiB) → %rdx = the low quadword of a 64-bit interrupt gate
# (selector 0x08, present, DPL 0); the high quadword stays 0.
gate:
	mov	%eax, %edx
	and	$0xffff, %edx
	or	$0x00080000, %edx
	shr	$16, %eax
	shl	$16, %eax
	or	$0x8e00, %eax
	shl	$32, %rax
	or	%rax, %rdx
	ret

doorbell:
	inc	%r12d
	test	$1, %bpl
	jz	5f
	movl	$0, LAPIC_EOI - LAPIC(%r14)
5:	mov	%r12d, %eax
	mov	%r13d, %edx
	outl	%eax, %dx
	iretq

# One 16-byte stub per vector pushes the vector, so the report below can say which it was.
	.balign	STUB
unexpected:
	.set	v, 0
	.rept	256
	.balign	STUB
	pushq	$v
	jmp	report
	.set	v, v + 1
	.endr
# Records what arrived at UNEXPECTED + 64 × index: the vector, then the top five quadwords
# of the stack (an error code if the vector has one, RIP, CS, RFLAGS, RSP…), then powers the
# VM off with 0xee.
report:
	mov	%rbx, %rdi
	shl	$6, %rdi
	add	$UNEXPECTED, %rdi
	mov	$6, %ecx
7:	pop	%rax
	mov	%rax, (%rdi)
	add	$8, %rdi
	dec	%ecx
	jnz	7b
	mov	$0xee, %al
	outb	%al, $0xf4
6:	cli
	hlt
	jmp	6b

	.data
	.balign	8
	.word	0, 0, 0		# pad so the 10-byte IDTR's base is 8-byte aligned
idtr:	.word	256 * 16 - 1
	.quad	idt

	.bss
	.balign	16
idt:	.skip	256 * 16
