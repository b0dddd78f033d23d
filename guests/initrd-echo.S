# tsvisor-guest: elf
# Shows what it was given as an initrd: prints the initrd's first bytes (at most 16) on COM1
# verbatim and powers off through debug-exit with the initrd's LAST byte, so a host that
# chooses the bytes can check both where the initrd is and how long the guest was told it is.
# Without an initrd it prints nothing and exits with 0xe0.
#
# Two entries, the two ways tsvisor hands over an initrd (docs/vmm.md):
#   _start     (ELF entry, 64-bit long mode): %rdx = its address, %rcx = its size (0/0: none)
#   pvh_start  (PVH note, 32-bit, paging off): %ebx = the hvm_start_info; module 0 is the
#              initrd. A start_info without the PVH magic exits with 0xe1.
	.set	PVH_MAGIC, 0x336ec578
	.set	SHOWN, 16

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
	mov	%rdx, %rsi
	mov	%rcx, %rbx
	test	%rbx, %rbx
	jz	none64
	lea	-1(%rsi,%rbx), %rdi	# the last byte's address
	cmp	$SHOWN, %rbx
	jbe	1f
	mov	$SHOWN, %ebx
1:	mov	%ebx, %ecx
	mov	$0x3f8, %dx
	cld
2:	lodsb
	outb	%al, %dx
	loop	2b
	movb	(%rdi), %al
	outb	%al, $0xf4
	jmp	off64
none64:
	mov	$0xe0, %al
	outb	%al, $0xf4
off64:	cli
	hlt
	jmp	off64

	.code32
pvh_start:
	cmpl	$PVH_MAGIC, (%ebx)
	jne	bad32
	cmpl	$0, 12(%ebx)		# nr_modules
	je	none32
	mov	16(%ebx), %eax		# modlist_paddr (below 4 GiB here)
	mov	(%eax), %esi		# module 0: paddr
	mov	8(%eax), %ebx		# size
	test	%ebx, %ebx
	jz	none32
	lea	-1(%esi,%ebx), %edi
	cmp	$SHOWN, %ebx
	jbe	1f
	mov	$SHOWN, %ebx
1:	mov	%ebx, %ecx
	mov	$0x3f8, %dx
	cld
2:	lodsb
	outb	%al, %dx
	loop	2b
	movb	(%edi), %al
	outb	%al, $0xf4
	jmp	off32
bad32:
	mov	$0xe1, %al
	outb	%al, $0xf4
	jmp	off32
none32:
	mov	$0xe0, %al
	outb	%al, $0xf4
off32:	cli
	hlt
	jmp	off32
