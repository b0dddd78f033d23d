# tsvisor-guest: elf
# An RM client of its own (docs/devices.md): sends VM_EXIT through the RM message-queue
# device, exit code = the low byte of %rdi (0 when the host sets nothing), then polls RX for
# the RM's reply, skipping anything else (notifications). On OK it halts with interrupts off:
# the RM has stopped the VM and the host ends the vCPU. If the RM refuses, it prints the RM
# error on COM1 and powers off through debug-exit with 0xe1; if the device refuses the send
# (its ERROR register), it prints that and powers off with 0xe2.
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
	# api 0x21, type|fragments, seq 1 (u16), msg_id VM_EXIT 0x56000085: one u64, little-endian
	.set	VM_EXIT_REQUEST, 0x5600008500010121
	.set	VM_EXIT_REPLY, 0x5600008500010221

	# Prints `len` bytes at `msg` on COM1.
	.macro	puts msg, len
	lea	\msg(%rip), %rsi
	mov	$\len, %ecx
	mov	$0x3f8, %dx
1:	lodsb
	outb	%al, %dx
	loop	1b
	.endm

	# Prints %r8d as 8 hex digits and a newline on COM1.
	.macro	puthex32
	mov	$8, %ecx
	mov	$0x3f8, %dx
	lea	digits(%rip), %rsi
1:	rol	$4, %r8d
	mov	%r8d, %eax
	and	$0xf, %eax
	movzbl	(%rsi,%rax), %eax
	outb	%al, %dx
	loop	1b
	mov	$'\n', %al
	outb	%al, %dx
	.endm

	.code64
	.text
	.globl	_start
_start:
	mov	$MSGQ, %ebx
	movabs	$VM_EXIT_REQUEST, %rax
	mov	%rax, TX_BUF(%rbx)
	movzbl	%dil, %eax
	shl	$16, %eax		# u16 exit_flags = 0, u8 exit_code, u8 reserved
	mov	%eax, TX_BUF+8(%rbx)
	movl	$12, TX_LEN(%rbx)
	movl	$PUSH, TX_SEND(%rbx)
	mov	ERROR(%rbx), %r8d
	test	%r8d, %r8d
	jnz	device_error

wait:	testl	$RX_NOT_EMPTY, STATUS(%rbx)
	jz	wait
	mov	RX_BUF(%rbx), %rax
	movabs	$VM_EXIT_REPLY, %rcx
	cmp	%rcx, %rax
	jne	skip
	mov	RX_BUF+8(%rbx), %r8d	# the reply's RM error code
	movl	$1, RX_POP(%rbx)
	test	%r8d, %r8d
	jnz	rm_error
stopped:
	cli
	hlt
	jmp	stopped

skip:	movl	$1, RX_POP(%rbx)
	jmp	wait

rm_error:
	puts	refused, (refused_end-refused)
	puthex32
	mov	$0xe1, %al
	outb	%al, $0xf4
	jmp	stopped

device_error:
	puts	devfail, (devfail_end-devfail)
	puthex32
	mov	$0xe2, %al
	outb	%al, $0xf4
	jmp	stopped

refused: .ascii	"msgq-client: VM_EXIT refused, RM error 0x"
refused_end:
devfail: .ascii	"msgq-client: the msgq device refused the send, error 0x"
devfail_end:
digits:	.ascii	"0123456789abcdef"
