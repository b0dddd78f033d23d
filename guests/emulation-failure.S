# tsvisor-guest: elf
# Executes int3 in kernel mode with no IDT. On hardware KVM that is a triple fault; kvm_pvm's
# instruction emulator cannot emulate it and reports an internal error with the bytes.
	.code64
	.text
	.globl _start
_start:
	int3
1:	jmp	1b
