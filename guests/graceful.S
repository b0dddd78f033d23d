# tsvisor-guest: elf
# A guest that shuts down when asked: prints "graceful: running" on COM1, then sleeps in
# `sti; hlt` until the RM message-queue device interrupts it (GSI 10). For every message in RX:
# the RM's VM_SHUTDOWN notification (what a graceful VM_STOP sends) prints "graceful: shutdown"
# and powers off through debug-exit with 0 (exit type PLATFORM_OFF, code 0); anything else is
# popped and ignored. It never polls: between messages the vCPU is halted.
#
# Interrupts: IRQ 10 on the 8259 pair, vectors 0x20-0x2f, so the same code runs with the
# in-kernel irqchip and with the user irqchip (which routes GSI n to vector 0x20 + n and ignores
# the 8259 ports). The device's line is level-triggered, so IRQ 10 is set level-triggered in the
# ELCR: an edge-triggered 8259 could miss a message that arrives before the host has lowered
# the line after the previous pop. The handler only EOIs; the main loop reads the queue with
# interrupts off and halts only when RX is empty (`sti; hlt` takes no interrupt in between).
#
# The PVH note's 32-bit entry (how QEMU's -kernel starts an ELF) only prints the first line and
# halts with interrupts off: an idle guest for comparing memory with QEMU, which has no RM link.
	.include "rm-client.inc"
	.set	VECTOR_BASE, 0x20
	.include "pic.inc"
	.set	GATES, VECTOR_BASE + 16
	.set	ELCR2, 0x4d1		# edge/level control of IRQs 8-15
	# api 0x21, NOTIFICATION (3) with no continuations, any seq, msg_id VM_SHUTDOWN 0x56100002
	.set	SHUTDOWN_HEADER, 0x5610000200000321
	.set	HEADER_MASK, 0xffffffff0000ffff

	.section .note.Xen, "a", @note
	.balign	4
	.long	4			# name size: "Xen\0"
	.long	4			# descriptor size
	.long	18			# XEN_ELFNOTE_PHYS32_ENTRY
	.asciz	"Xen"
	.long	pvh_start

	.code64
	.text
	.globl	_start
_start:
	idt_and_pic isr
	# IRQ 10 (slave line 2) level-triggered.
	mov	$0x04, %al
	mov	$ELCR2, %dx
	outb	%al, %dx
	# OCW1: only the cascade (IRQ 2) and IRQ 10 unmasked.
	mov	$0xfb, %al
	outb	%al, $0x21
	outb	%al, $0xa1

	puts	running, (running_end-running)

	mov	$MSGQ, %ebx
	movl	$IRQ_RX, IRQ_ENABLE(%rbx)
	movabs	$HEADER_MASK, %r12
	movabs	$SHUTDOWN_HEADER, %r13

wait:	cli
	testl	$RX_NOT_EMPTY, STATUS(%rbx)
	jnz	message
	sti
	hlt
	jmp	wait

message:
	mov	RX_BUF(%rbx), %rax
	movl	$1, RX_POP(%rbx)
	and	%r12, %rax
	cmp	%r13, %rax
	jne	wait
	puts	shutdown, (shutdown_end-shutdown)
	xor	%eax, %eax
	outb	%al, $0xf4
off:	cli
	hlt
	jmp	off

	# EOI to both controllers (a non-specific EOI with nothing in service does nothing). The
	# main loop looks at the queue after the halt returns.
isr:	push	%rax
	mov	$0x20, %al
	outb	%al, $0xa0
	outb	%al, $0x20
	pop	%rax
	iretq

	.code32
pvh_start:
	mov	$running, %esi
	mov	$(running_end-running), %ecx
	mov	$0x3f8, %dx
	cld
1:	lodsb
	outb	%al, %dx
	loop	1b
2:	cli
	hlt
	jmp	2b

running: .ascii	"graceful: running\n"
running_end:
shutdown: .ascii "graceful: shutdown\n"
shutdown_end:

	.data
	.balign	8
	.word	0, 0, 0		# pad so the 10-byte IDTR's base is 8-byte aligned
idtr:	.word	GATES * 16 - 1
	.quad	idt

	.bss
	.balign	16
idt:	.skip	GATES * 16
