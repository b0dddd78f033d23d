# Bench guest (flat, 16-bit real mode at 0x1000): ECX `out` instructions of AL to port DX,
# then debug-exit 0. The host sets ECX, DX and AL in the boot registers, so tsvisor and the C
# baseline (bench/c/kvm-pio-loop.c) run the same bytes for the same work. ECX must be >= 1.
	.code16
	.text
	.globl	_start
_start:
1:	outb	%al, %dx
	dec	%ecx
	jnz	1b
	xor	%al, %al
	outb	%al, $0xf4
2:	hlt
	jmp	2b
