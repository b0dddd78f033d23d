# tsvisor-guest: elf
# Asks the 8042 keyboard controller to pulse the CPU reset line (command 0xfe to port 0x64),
# as Linux's "reboot=k" does: the VM exits PLATFORM_RESET. Halts if nothing resets it.
	.code64
	.text
	.globl _start
_start:
	mov	$0xfe, %al
	outb	%al, $0x64
1:	hlt
	jmp	1b
