# tsvisor-guest: elf
# Prints "Hello\n" on COM1, then powers off through the debug-exit port with code 0.
# Two entry points doing the same work: _start (ELF entry, 64-bit long mode, how tsvisor
# starts ELF images) and pvh_start (the PVH note's 32-bit entry, how QEMU's -kernel starts
# an ELF), so one image runs under both for comparisons.
	.section .note.Xen, "a", @note
	.balign	4
	.long	4			# name size: "Xen\0"
	.long	4			# descriptor size
	.long	18			# XEN_ELFNOTE_PHYS32_ENTRY
	.asciz	"Xen"
	.long	pvh_start

	.text
	.code64
	.globl	_start
_start:
	lea	msg(%rip), %rsi
	mov	$(msg_end - msg), %ecx
	mov	$0x3f8, %dx
1:	lodsb
	outb	%al, %dx
	loop	1b
	xor	%eax, %eax
	outb	%al, $0xf4
2:	hlt
	jmp	2b

	.code32
pvh_start:
	mov	$msg, %esi
	mov	$(msg_end - msg), %ecx
	mov	$0x3f8, %dx
	cld
1:	lodsb
	outb	%al, %dx
	loop	1b
	xor	%eax, %eax
	outb	%al, $0xf4
2:	hlt
	jmp	2b

msg:	.ascii	"Hello\n"
msg_end:
