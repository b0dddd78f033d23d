# tsvisor-guest: elf
# An RM client of its own (docs/devices.md): sends VM_EXIT through the RM message-queue
# device, exit code = the low byte of %rdi (0 when the host sets nothing), then polls RX for
# the RM's reply, skipping anything else (notifications). On OK it halts with interrupts off:
# the RM has stopped the VM and the host ends the vCPU. If the RM refuses, it prints the RM
# error on COM1 and powers off through debug-exit with 0xe1; if the device refuses the send
# (its ERROR register), it prints that and powers off with 0xe2.
	.include "rm-client.inc"
	# api 0x21, type|fragments, seq 1 (u16), msg_id VM_EXIT 0x56000085: one u64, little-endian
	.set	VM_EXIT_REQUEST, 0x5600008500010121
	.set	VM_EXIT_REPLY, 0x5600008500010221

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
	movzbl	%dil, %eax
	shl	$16, %eax		# u16 exit_flags = 0, u8 exit_code, u8 reserved
	rm_call	VM_EXIT_REQUEST, VM_EXIT_REPLY
	test	%r8d, %r8d
	jnz	rm_error
stopped:
	cli
	hlt
	jmp	stopped

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
