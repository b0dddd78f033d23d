# tsvisor-guest: elf
# Raises an exception with no usable IDT (the loader leaves IDTR limit 0): the #UD becomes
# a #DF, the #DF a triple fault, and the CPU shuts down.
	.code64
	.text
	.globl _start
_start:
	ud2
1:	jmp	1b
