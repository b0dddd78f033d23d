/*
 * The KVM ABI facts tsvisor relies on, evaluated by the compiler against <linux/kvm.h>.
 * The addon exports this table; scripts/gen-kvm-constants.mjs turns it into
 * src/hv/kvm/constants.ts and the tests check that file against it, so no number below
 * is ever typed by hand without a check. Add a line here, then regenerate.
 */
#ifndef TSVISOR_KVM_LAYOUT_H
#define TSVISOR_KVM_LAYOUT_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <linux/kvm.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

struct tsv_const {
  const char *group;
  const char *name;
  double value;
};

#define IOC(n) {"KVM_IOCTL", #n, (double)KVM_##n}
#define CAP(n) {"KVM_CAP", #n, (double)KVM_CAP_##n}
#define EXIT(n) {"KVM_EXIT", #n, (double)KVM_EXIT_##n}
#define SYS(n) {"SYS", #n, (double)(n)}
#define SIZE(n) {"KVM_SIZEOF", #n, (double)sizeof(struct n)}
#define OFF(group, type, field, name) {group, #name, (double)offsetof(struct type, field)}

static const struct tsv_const tsv_consts[] = {
  IOC(GET_API_VERSION), IOC(CREATE_VM), IOC(CHECK_EXTENSION), IOC(GET_VCPU_MMAP_SIZE),
  IOC(GET_SUPPORTED_CPUID), IOC(CREATE_VCPU), IOC(SET_USER_MEMORY_REGION), IOC(SET_TSS_ADDR),
  IOC(SET_IDENTITY_MAP_ADDR), IOC(CREATE_IRQCHIP), IOC(IRQ_LINE), IOC(IRQ_LINE_STATUS),
  IOC(IRQFD), IOC(CREATE_PIT2), IOC(IOEVENTFD), IOC(SIGNAL_MSI), IOC(RUN), IOC(GET_REGS),
  IOC(SET_REGS), IOC(GET_SREGS), IOC(SET_SREGS), IOC(INTERRUPT), IOC(SET_CPUID2),
  IOC(GET_MP_STATE), IOC(SET_MP_STATE), IOC(NMI), IOC(ENABLE_CAP),

  CAP(IRQCHIP), CAP(USER_MEMORY), CAP(SET_TSS_ADDR), CAP(NR_VCPUS), CAP(NR_MEMSLOTS),
  CAP(IRQFD), CAP(PIT2), CAP(IOEVENTFD), CAP(INTERNAL_ERROR_DATA), CAP(MAX_VCPUS),
  CAP(SIGNAL_MSI), CAP(READONLY_MEM), CAP(IMMEDIATE_EXIT), CAP(EXIT_ON_EMULATION_FAILURE),

  EXIT(UNKNOWN), EXIT(EXCEPTION), EXIT(IO), EXIT(HYPERCALL), EXIT(DEBUG), EXIT(HLT),
  EXIT(MMIO), EXIT(IRQ_WINDOW_OPEN), EXIT(SHUTDOWN), EXIT(FAIL_ENTRY), EXIT(INTR),
  EXIT(NMI), EXIT(INTERNAL_ERROR), EXIT(SYSTEM_EVENT),
  {"KVM_FLAG", "EXIT_IO_IN", (double)KVM_EXIT_IO_IN},
  {"KVM_FLAG", "EXIT_IO_OUT", (double)KVM_EXIT_IO_OUT},

  {"KVM_FLAG", "INTERNAL_ERROR_EMULATION", (double)KVM_INTERNAL_ERROR_EMULATION},
  {"KVM_FLAG", "EMULATION_FLAG_INSTRUCTION_BYTES",
   (double)KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES},
  {"KVM_FLAG", "MEM_READONLY", (double)KVM_MEM_READONLY},
  {"KVM_FLAG", "IRQFD_DEASSIGN", (double)KVM_IRQFD_FLAG_DEASSIGN},
  {"KVM_FLAG", "IOEVENTFD_DATAMATCH", (double)KVM_IOEVENTFD_FLAG_DATAMATCH},
  {"KVM_FLAG", "IOEVENTFD_PIO", (double)KVM_IOEVENTFD_FLAG_PIO},
  {"KVM_FLAG", "IOEVENTFD_DEASSIGN", (double)KVM_IOEVENTFD_FLAG_DEASSIGN},
  {"KVM_FLAG", "PIT_SPEAKER_DUMMY", (double)KVM_PIT_SPEAKER_DUMMY},
  {"KVM_FLAG", "MP_STATE_RUNNABLE", (double)KVM_MP_STATE_RUNNABLE},

  SYS(O_RDWR), SYS(O_CLOEXEC), SYS(PROT_READ), SYS(PROT_WRITE), SYS(MAP_SHARED),
  SYS(MAP_PRIVATE), SYS(MAP_ANONYMOUS), SYS(MAP_NORESERVE), SYS(MFD_CLOEXEC),
  SYS(EFD_CLOEXEC), SYS(EFD_NONBLOCK), SYS(EINTR), SYS(EAGAIN), SYS(EBADF), SYS(EEXIST),
  SYS(EINVAL), SYS(ENOENT), SYS(ENOMEM), SYS(EFAULT), SYS(EBUSY), SYS(ENXIO), SYS(E2BIG),
  SYS(EACCES), SYS(EPERM), SYS(ENOSPC), SYS(SIGUSR2),

  SIZE(kvm_run), SIZE(kvm_regs), SIZE(kvm_sregs), SIZE(kvm_segment), SIZE(kvm_dtable),
  SIZE(kvm_userspace_memory_region), SIZE(kvm_irqfd), SIZE(kvm_ioeventfd),
  SIZE(kvm_irq_level), SIZE(kvm_interrupt), SIZE(kvm_msi), SIZE(kvm_pit_config),
  SIZE(kvm_mp_state),

  OFF("KVM_RUN_OFF", kvm_run, request_interrupt_window, request_interrupt_window),
  OFF("KVM_RUN_OFF", kvm_run, immediate_exit, immediate_exit),
  OFF("KVM_RUN_OFF", kvm_run, exit_reason, exit_reason),
  OFF("KVM_RUN_OFF", kvm_run, ready_for_interrupt_injection, ready_for_interrupt_injection),
  OFF("KVM_RUN_OFF", kvm_run, if_flag, if_flag),
  OFF("KVM_RUN_OFF", kvm_run, hw.hardware_exit_reason, hw_hardware_exit_reason),
  OFF("KVM_RUN_OFF", kvm_run, fail_entry.hardware_entry_failure_reason,
      fail_entry_hardware_entry_failure_reason),
  OFF("KVM_RUN_OFF", kvm_run, fail_entry.cpu, fail_entry_cpu),
  OFF("KVM_RUN_OFF", kvm_run, io.direction, io_direction),
  OFF("KVM_RUN_OFF", kvm_run, io.size, io_size),
  OFF("KVM_RUN_OFF", kvm_run, io.port, io_port),
  OFF("KVM_RUN_OFF", kvm_run, io.count, io_count),
  OFF("KVM_RUN_OFF", kvm_run, io.data_offset, io_data_offset),
  OFF("KVM_RUN_OFF", kvm_run, mmio.phys_addr, mmio_phys_addr),
  OFF("KVM_RUN_OFF", kvm_run, mmio.data, mmio_data),
  OFF("KVM_RUN_OFF", kvm_run, mmio.len, mmio_len),
  OFF("KVM_RUN_OFF", kvm_run, mmio.is_write, mmio_is_write),
  OFF("KVM_RUN_OFF", kvm_run, internal.suberror, internal_suberror),
  OFF("KVM_RUN_OFF", kvm_run, internal.ndata, internal_ndata),
  OFF("KVM_RUN_OFF", kvm_run, internal.data, internal_data),
  OFF("KVM_RUN_OFF", kvm_run, emulation_failure.flags, emulation_failure_flags),
  OFF("KVM_RUN_OFF", kvm_run, emulation_failure.insn_size, emulation_failure_insn_size),
  OFF("KVM_RUN_OFF", kvm_run, emulation_failure.insn_bytes, emulation_failure_insn_bytes),
  OFF("KVM_RUN_OFF", kvm_run, system_event.type, system_event_type),
  OFF("KVM_RUN_OFF", kvm_run, system_event.ndata, system_event_ndata),
  OFF("KVM_RUN_OFF", kvm_run, system_event.data, system_event_data),

  OFF("KVM_REGS_OFF", kvm_regs, rax, rax), OFF("KVM_REGS_OFF", kvm_regs, rbx, rbx),
  OFF("KVM_REGS_OFF", kvm_regs, rcx, rcx), OFF("KVM_REGS_OFF", kvm_regs, rdx, rdx),
  OFF("KVM_REGS_OFF", kvm_regs, rsi, rsi), OFF("KVM_REGS_OFF", kvm_regs, rdi, rdi),
  OFF("KVM_REGS_OFF", kvm_regs, rsp, rsp), OFF("KVM_REGS_OFF", kvm_regs, rbp, rbp),
  OFF("KVM_REGS_OFF", kvm_regs, r8, r8), OFF("KVM_REGS_OFF", kvm_regs, r9, r9),
  OFF("KVM_REGS_OFF", kvm_regs, r10, r10), OFF("KVM_REGS_OFF", kvm_regs, r11, r11),
  OFF("KVM_REGS_OFF", kvm_regs, r12, r12), OFF("KVM_REGS_OFF", kvm_regs, r13, r13),
  OFF("KVM_REGS_OFF", kvm_regs, r14, r14), OFF("KVM_REGS_OFF", kvm_regs, r15, r15),
  OFF("KVM_REGS_OFF", kvm_regs, rip, rip), OFF("KVM_REGS_OFF", kvm_regs, rflags, rflags),

  OFF("KVM_SREGS_OFF", kvm_sregs, cs, cs), OFF("KVM_SREGS_OFF", kvm_sregs, ds, ds),
  OFF("KVM_SREGS_OFF", kvm_sregs, es, es), OFF("KVM_SREGS_OFF", kvm_sregs, fs, fs),
  OFF("KVM_SREGS_OFF", kvm_sregs, gs, gs), OFF("KVM_SREGS_OFF", kvm_sregs, ss, ss),
  OFF("KVM_SREGS_OFF", kvm_sregs, tr, tr), OFF("KVM_SREGS_OFF", kvm_sregs, ldt, ldt),
  OFF("KVM_SREGS_OFF", kvm_sregs, gdt, gdt), OFF("KVM_SREGS_OFF", kvm_sregs, idt, idt),
  OFF("KVM_SREGS_OFF", kvm_sregs, cr0, cr0), OFF("KVM_SREGS_OFF", kvm_sregs, cr2, cr2),
  OFF("KVM_SREGS_OFF", kvm_sregs, cr3, cr3), OFF("KVM_SREGS_OFF", kvm_sregs, cr4, cr4),
  OFF("KVM_SREGS_OFF", kvm_sregs, cr8, cr8), OFF("KVM_SREGS_OFF", kvm_sregs, efer, efer),
  OFF("KVM_SREGS_OFF", kvm_sregs, apic_base, apic_base),
  OFF("KVM_SREGS_OFF", kvm_sregs, interrupt_bitmap, interrupt_bitmap),

  OFF("KVM_SEGMENT_OFF", kvm_segment, base, base),
  OFF("KVM_SEGMENT_OFF", kvm_segment, limit, limit),
  OFF("KVM_SEGMENT_OFF", kvm_segment, selector, selector),
  OFF("KVM_SEGMENT_OFF", kvm_segment, type, type),
  OFF("KVM_SEGMENT_OFF", kvm_segment, present, present),
  OFF("KVM_SEGMENT_OFF", kvm_segment, dpl, dpl), OFF("KVM_SEGMENT_OFF", kvm_segment, db, db),
  OFF("KVM_SEGMENT_OFF", kvm_segment, s, s), OFF("KVM_SEGMENT_OFF", kvm_segment, l, l),
  OFF("KVM_SEGMENT_OFF", kvm_segment, g, g), OFF("KVM_SEGMENT_OFF", kvm_segment, avl, avl),
  OFF("KVM_SEGMENT_OFF", kvm_segment, unusable, unusable),
  OFF("KVM_DTABLE_OFF", kvm_dtable, base, base), OFF("KVM_DTABLE_OFF", kvm_dtable, limit, limit),

  OFF("KVM_MEMREGION_OFF", kvm_userspace_memory_region, slot, slot),
  OFF("KVM_MEMREGION_OFF", kvm_userspace_memory_region, flags, flags),
  OFF("KVM_MEMREGION_OFF", kvm_userspace_memory_region, guest_phys_addr, guest_phys_addr),
  OFF("KVM_MEMREGION_OFF", kvm_userspace_memory_region, memory_size, memory_size),
  OFF("KVM_MEMREGION_OFF", kvm_userspace_memory_region, userspace_addr, userspace_addr),
  OFF("KVM_IRQFD_OFF", kvm_irqfd, fd, fd), OFF("KVM_IRQFD_OFF", kvm_irqfd, gsi, gsi),
  OFF("KVM_IRQFD_OFF", kvm_irqfd, flags, flags),
  OFF("KVM_IRQFD_OFF", kvm_irqfd, resamplefd, resamplefd),
  OFF("KVM_IOEVENTFD_OFF", kvm_ioeventfd, datamatch, datamatch),
  OFF("KVM_IOEVENTFD_OFF", kvm_ioeventfd, addr, addr),
  OFF("KVM_IOEVENTFD_OFF", kvm_ioeventfd, len, len),
  OFF("KVM_IOEVENTFD_OFF", kvm_ioeventfd, fd, fd),
  OFF("KVM_IOEVENTFD_OFF", kvm_ioeventfd, flags, flags),
  OFF("KVM_INTERRUPT_OFF", kvm_interrupt, irq, irq),
  OFF("KVM_IRQ_LEVEL_OFF", kvm_irq_level, irq, irq),
  OFF("KVM_IRQ_LEVEL_OFF", kvm_irq_level, level, level),
  OFF("KVM_PIT_CONFIG_OFF", kvm_pit_config, flags, flags),
};

#endif
