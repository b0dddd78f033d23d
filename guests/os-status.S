# tsvisor-guest: elf
# Reports its status to the RM the way a Gunyah guest does: VM_SET_STATUS through the RM
# message-queue device with os_status = the low byte of %rdi and app_status = the low 16 bits
# of %rsi, waits for the reply (skipping notifications), prints "os-status: reported" on COM1
# and powers off through debug-exit with 0. If the RM refuses, it prints the RM error and
# powers off with 0xe1; if the device refuses the send, 0xe2.
	.include "rm-client.inc"
	# api 0x21, type|fragments, seq 1 (u16), msg_id VM_SET_STATUS 0x56000080, little-endian
	.set	SET_STATUS_REQUEST, 0x5600008000010121
	.set	SET_STATUS_REPLY, 0x5600008000010221

	.code64
	.text
	.globl	_start
_start:
	mov	$MSGQ, %ebx
	# Payload: u8 reserved, u8 os_status, u16 app_status.
	movzbl	%dil, %eax
	shl	$8, %eax
	movzwl	%si, %ecx
	shl	$16, %ecx
	or	%ecx, %eax
	rm_call	SET_STATUS_REQUEST, SET_STATUS_REPLY
	test	%r8d, %r8d
	jnz	rm_error
	puts	reported, (reported_end-reported)
	xor	%eax, %eax
	outb	%al, $0xf4
	jmp	stopped

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
