# tsvisor-guest: elf
# Echoes what arrives on COM1 until it reads 'q', then powers off through the debug-exit port
# with the number of bytes it read before the 'q' as the exit code. It polls LSR.DR, as a guest
# without a UART interrupt handler must.
	.code64
	.text
	.globl _start
_start:
	xor	%ebx, %ebx		# bytes read before 'q'
1:	mov	$0x3fd, %dx		# LSR
	inb	%dx, %al
	test	$1, %al			# DR: a byte is waiting
	jz	1b
	mov	$0x3f8, %dx		# RBR
	inb	%dx, %al
	cmp	$'q', %al
	je	2f
	outb	%al, %dx		# THR: echo it
	inc	%ebx
	jmp	1b
2:	mov	%ebx, %eax
	outb	%al, $0xf4
3:	hlt
	jmp	3b
