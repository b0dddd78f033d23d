/**
 * The hypervisor backend interface: Hypervisor → Vm → Vcpu, mirroring KVM's three fd levels
 * but narrow enough for a simulated backend to implement.
 *
 * Guest-physical addresses and sizes are plain numbers: x86-64 physical addresses have at most
 * 52 bits, well inside Number.MAX_SAFE_INTEGER, and devices and loaders do arithmetic on them.
 *
 * Threads: a Hypervisor, its Vms and VcpuHandles live on one thread (the main thread). A vCPU
 * runs on exactly one other thread, which opens it from `VcpuHandle.transfer` with the backend's
 * `openVcpu` (see VcpuTransfer) and alone issues its run/register calls. Only `kick()` crosses
 * threads.
 */

import { X86_GPR_NAMES } from "../protocol/enums.js";

export interface Hypervisor {
  /** Backend name ("kvm", "sim"). */
  readonly kind: string;
  createVm(options?: VmOptions): Vm;
  /** Host memory that can back guest RAM (memfd on KVM). Zeroed. */
  allocateMemory(size: number, name?: string): GuestMemory;
  /** A counter-style wake-up object (eventfd on KVM) for irqfd and ioeventfd. */
  createNotifier(): Notifier;
  /** Releases the hypervisor itself; every Vm it created must be closed first. */
  close(): void;
}

export interface VmOptions {
  /**
   * In-kernel interrupt controllers (PIC, IOAPIC, LAPIC) and PIT. Default true. Without them a
   * guest's HLT comes back to userspace as an exit and irqfd is unavailable.
   */
  readonly irqchip?: boolean;
}

export interface GuestMemory {
  readonly size: number;
  /** The host's view of the whole block. Zero-length once the memory is closed. */
  readonly bytes: Uint8Array;
  /** Whether the block is mapped into some VM right now. */
  readonly mapped: boolean;
  /** Frees the block; refused (HV_MEMORY) while it is mapped into a VM. Idempotent. */
  close(): void;
}

export interface MemoryRegionSpec {
  readonly gpa: number;
  readonly memory: GuestMemory;
  /** Offset into the memory block; default 0. Page aligned. */
  readonly offset?: number;
  /** Default: the rest of the block after `offset`. Page aligned. */
  readonly size?: number;
  /** Guest writes become MMIO exits instead of reaching memory. */
  readonly readonly?: boolean;
}

export interface MemoryRegion {
  readonly gpa: number;
  readonly size: number;
  readonly offset: number;
  readonly readonly: boolean;
  readonly memory: GuestMemory;
}

export interface Vm {
  readonly irqchip: boolean;
  /** Current guest-physical mappings, in gpa order. */
  readonly regions: readonly MemoryRegion[];
  /** Maps part of a memory block at `gpa`; refused (HV_MEMORY) if it overlaps a mapping. */
  mapMemory(spec: MemoryRegionSpec): MemoryRegion;
  unmapMemory(region: MemoryRegion): void;
  /** Creates vCPU `index` (0-based); each index once. */
  createVcpu(index: number): VcpuHandle;
  /** Drives an interrupt line (needs the irqchip). */
  setIrqLine(gsi: number, level: boolean): void;
  /** Signalling the notifier raises `gsi` (edge). Needs the irqchip. */
  irqfd(gsi: number, notifier: Notifier): Binding;
  /** A guest write matching `spec` signals the notifier instead of exiting to userspace. */
  ioeventfd(spec: IoEventSpec, notifier: Notifier): Binding;
  /**
   * Releases every vCPU handle, mapping and binding of the VM, then the VM; the VM is unusable
   * at once, and the promise settles when the last host resource is gone (a backend may finish
   * the slow part of teardown off the calling thread). Every vCPU thread must have ended
   * first. Idempotent: later calls return the same promise. Never rejects.
   */
  close(): Promise<void>;
}

export interface IoEventSpec {
  readonly space: "pio" | "mmio";
  readonly addr: number;
  /** Access width to match; 0 matches any width (MMIO only). */
  readonly len: 0 | 1 | 2 | 4 | 8;
  /** Only writes of exactly this value signal; default: any value. */
  readonly datamatch?: bigint;
}

/** A registration that lasts until closed. */
export interface Binding {
  close(): void;
}

export interface Notifier {
  /** Adds `n` (default 1) to the counter and wakes whoever waits on it. */
  signal(n?: bigint): void;
  /** Returns the counter and resets it to zero, without blocking; 0n when nothing was signalled. */
  take(): bigint;
  close(): void;
}

/** The owning thread's handle on a vCPU. */
export interface VcpuHandle {
  readonly index: number;
  /** What a vCPU thread needs to open this vCPU; structured-cloneable. */
  readonly transfer: VcpuTransfer;
  /**
   * Makes the vCPU's run() return `{ kind: "intr" }` soon, or at once if it is not inside run().
   * Safe to call at any time from the owning thread, also before the vCPU thread opened it.
   */
  kick(): void;
  /** Releases the vCPU (after its thread has closed its side). Idempotent. */
  close(): void;
}

/**
 * Sent to a vCPU thread. `module` is the URL of an ES module exporting
 * `openVcpu(transfer: VcpuTransfer): Vcpu`; the rest is backend-private.
 */
export interface VcpuTransfer {
  readonly backend: string;
  readonly module: string;
  readonly index: number;
  readonly [key: string]: unknown;
}

export type OpenVcpu = (transfer: VcpuTransfer) => Vcpu;

/** A vCPU as seen by the one thread that runs it. */
export interface Vcpu {
  readonly index: number;
  /**
   * Runs the guest until something needs the host. io/mmio exits carry a `data` view that is
   * valid until the next run(): for reads (`write: false`) fill it before running again.
   */
  run(): VcpuExit;
  /** Acknowledges a kick so that the next run() enters the guest again. */
  clearKick(): void;
  getRegs(): X86Regs;
  setRegs(regs: X86Regs): void;
  getSregs(): X86Sregs;
  setSregs(sregs: X86Sregs): void;
  /**
   * Lets an application processor run at once. With an in-kernel LAPIC, every vCPU but 0
   * starts waiting for INIT/SIPI and run() would block; backends without one may omit this.
   */
  setRunnable?(): void;
  /*
   * Userspace interrupt delivery, for VMs without an in-kernel irqchip (the user irqchip of
   * src/vcpu/user-irqchip.ts). Backends that cannot deliver interrupts from userspace omit
   * all four. The two queries describe the guest as of the last run().
   */
  /** The guest can take an external interrupt now: IF set, no interrupt shadow, none queued. */
  interruptReady?(): boolean;
  /** The guest's RFLAGS.IF. */
  interruptFlag?(): boolean;
  /**
   * Queues external interrupt `vector` for the next entry. Only valid while interruptReady()
   * (the hardware injects a queued interrupt whatever the guest's IF then is).
   */
  injectInterrupt?(vector: number): void;
  /** Whether run() should return `irq-window` as soon as the guest can take an interrupt. */
  requestInterruptWindow?(on: boolean): void;
  /** Releases this thread's side of the vCPU. Idempotent. */
  close(): void;
}

/**
 * Forces one vCPU out of run() from a thread that is neither the owner nor the vCPU's own
 * (an injector: another worker raising an interrupt). Opened on that thread with the
 * `openKicker(transfer)` the backend module (VcpuTransfer.module) may export.
 */
export interface VcpuKicker {
  /** Like VcpuHandle.kick(). */
  kick(): void;
  /** Releases this thread's resources for the kicks. Idempotent. */
  close(): void;
}

export type OpenKicker = (transfer: VcpuTransfer) => VcpuKicker;

/** Why run() returned. Deliberately narrow: backends fold anything else into "unknown". */
export type VcpuExit =
  | {
      readonly kind: "io";
      readonly write: boolean;
      readonly port: number;
      /** Bytes per access: 1, 2 or 4. */
      readonly size: number;
      /** Accesses in this exit (>1 for rep ins/outs). */
      readonly count: number;
      /** size × count bytes, accesses in order. */
      readonly data: Uint8Array;
    }
  | {
      readonly kind: "mmio";
      readonly write: boolean;
      readonly addr: number;
      /** `len` bytes (1–8). */
      readonly data: Uint8Array;
    }
  | { readonly kind: "hlt" }
  /** The guest triple-faulted (or otherwise asked the CPU to shut down). */
  | { readonly kind: "shutdown" }
  | {
      readonly kind: "internal-error";
      /** KVM_INTERNAL_ERROR_* (1 = instruction emulation failed). */
      readonly suberror: number;
      /** The instruction bytes the emulator gave up on, when the backend knows them. */
      readonly insn?: Uint8Array;
      readonly data: readonly bigint[];
    }
  /** The hardware refused to enter the guest (bad register state). */
  | { readonly kind: "fail-entry"; readonly reason: bigint; readonly cpu: number }
  /** run() was interrupted: a kick, or a signal. */
  | { readonly kind: "intr" }
  /** The guest can take an interrupt now (after requestInterruptWindow(true)). */
  | { readonly kind: "irq-window" }
  | { readonly kind: "unknown"; readonly reason: number };

export type VcpuExitKind = VcpuExit["kind"];

export interface X86Regs {
  rax: bigint;
  rbx: bigint;
  rcx: bigint;
  rdx: bigint;
  rsi: bigint;
  rdi: bigint;
  rsp: bigint;
  rbp: bigint;
  r8: bigint;
  r9: bigint;
  r10: bigint;
  r11: bigint;
  r12: bigint;
  r13: bigint;
  r14: bigint;
  r15: bigint;
  rip: bigint;
  rflags: bigint;
}

export const X86_REG_NAMES = [
  ...X86_GPR_NAMES,
  "rip",
  "rflags",
] as const satisfies readonly (keyof X86Regs)[];

/** A segment register's hidden state, as KVM describes it. */
export interface X86Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface X86DTable {
  base: bigint;
  limit: number;
}

export interface X86Sregs {
  cs: X86Segment;
  ds: X86Segment;
  es: X86Segment;
  fs: X86Segment;
  gs: X86Segment;
  ss: X86Segment;
  tr: X86Segment;
  ldt: X86Segment;
  gdt: X86DTable;
  idt: X86DTable;
  cr0: bigint;
  cr2: bigint;
  cr3: bigint;
  cr4: bigint;
  cr8: bigint;
  efer: bigint;
  apicBase: bigint;
  /** Four u64 words: pending external interrupts (bitmap of vectors). */
  interruptBitmap: bigint[];
}

export const X86_SEGMENT_NAMES = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const;

/**
 * Register state to load into a vCPU before it first runs: `regs` fields replace the vCPU's
 * values, `sregs` fields (whole segments, tables or control registers) replace theirs; what
 * is not named keeps KVM's reset value. Structured-cloneable.
 */
export interface X86BootState {
  readonly regs: Partial<X86Regs>;
  readonly sregs: Partial<X86Sregs>;
  /** Start running without waiting for INIT/SIPI (secondary vCPUs; see Vcpu.setRunnable). */
  readonly runnable?: boolean;
}

/** Loads a boot state with one get/set pair per register file. */
export function applyBootState(vcpu: Vcpu, boot: X86BootState): void {
  if (Object.keys(boot.sregs).length > 0) vcpu.setSregs({ ...vcpu.getSregs(), ...boot.sregs });
  if (Object.keys(boot.regs).length > 0) vcpu.setRegs({ ...vcpu.getRegs(), ...boot.regs });
  if (boot.runnable) vcpu.setRunnable?.();
}
