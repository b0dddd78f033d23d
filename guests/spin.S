# tsvisor-guest: elf
# Spins forever without exiting to the host: only a kick gets the vCPU back.
	.code64
	.text
	.globl _start
_start:
1:	jmp	1b
