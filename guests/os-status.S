# tsvisor-guest: elf
# Reports its status to the RM the way a Gunyah guest does: VM_SET_STATUS through the RM
# message-queue device with os_status = the low byte of %rdi and app_status = the low 16 bits
# of %rsi, waits for the reply (skipping notifications), prints "os-status: reported" on COM1
# and powers off through debug-exit with 0. If the RM refuses, it prints the RM error and
# powers off with 0xe1; if the device refuses the send, 0xe2.
	.set	MSGQ, 0xfeb00000	# RM_MSGQ_MMIO_BASE
	.set	STATUS, 0x008
	.set	ERROR, 0x010
	.set	TX_LEN, 0x018
	.set	TX_SEND, 0x01c
	.set	RX_POP, 0x028
	.set	TX_BUF, 0x100
	.set	RX_BUF, 0x200
	.set	RX_NOT_EMPTY, 1
	.set	PUSH, 1
	# api 0x21, type|fragments, seq 1 (u16), msg_id VM_SET_STATUS 0x56000080, little-endian
	.set	SET_STATUS_REQUEST, 0x5600008000010121
	.set	SET_STATUS_REPLY, 0x5600008000010221

	.macro	puts msg, len
	lea	\msg(%rip), %rsi
	mov	$\len, %ecx
	mov	$0x3f8, %dx
1:	lodsb
	outb	%al, %dx
	loop	1b
	.endm

	.code64
	.text
	.globl	_start
_start:
	mov	$MSGQ, %ebx
	movabs	$SET_STATUS_REQUEST, %rax
	mov	%rax, TX_BUF(%rbx)
	# Payload: u8 reserved, u8 os_status, u16 app_status.
	movzbl	%dil, %eax
	shl	$8, %eax
	movzwl	%si, %ecx
	shl	$16, %ecx
	or	%ecx, %eax
	mov	%eax, TX_BUF+8(%rbx)
	movl	$12, TX_LEN(%rbx)
	movl	$PUSH, TX_SEND(%rbx)
	mov	ERROR(%rbx), %r8d
	test	%r8d, %r8d
	jnz	device_error

wait:	testl	$RX_NOT_EMPTY, STATUS(%rbx)
	jz	wait
	mov	RX_BUF(%rbx), %rax
	movabs	$SET_STATUS_REPLY, %rcx
	cmp	%rcx, %rax
	jne	skip
	mov	RX_BUF+8(%rbx), %r8d	# the reply's RM error code
	movl	$1, RX_POP(%rbx)
	test	%r8d, %r8d
	jnz	rm_error
	puts	reported, (reported_end-reported)
	xor	%eax, %eax
	outb	%al, $0xf4
	jmp	stopped

skip:	movl	$1, RX_POP(%rbx)
	jmp	wait

rm_error:
	puts	refused, (refused_end-refused)
	mov	$0xe1, %al
	outb	%al, $0xf4
	jmp	stopped

device_error:
	puts	devfail, (devfail_end-devfail)
	mov	$0xe2, %al
	outb	%al, $0xf4
stopped:
	cli
	hlt
	jmp	stopped

reported: .ascii "os-status: reported\n"
reported_end:
refused: .ascii	"os-status: VM_SET_STATUS refused\n"
refused_end:
devfail: .ascii	"os-status: the msgq device refused the send\n"
devfail_end:
