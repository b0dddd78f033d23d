import { close as closeFd } from "node:fs";
import { InvariantError, TsvisorError } from "../../core/errors.js";
import { checkRegion } from "../regions.js";
import type {
  Binding,
  GuestMemory,
  Hypervisor,
  IoEventSpec,
  MemoryRegion,
  MemoryRegionSpec,
  Notifier,
  VcpuHandle,
  Vm,
  VmOptions,
} from "../types.js";
import {
  KVM_CAP,
  KVM_FLAG,
  KVM_IOCTL,
  KVM_IOEVENTFD_OFF,
  KVM_IRQ_LEVEL_OFF,
  KVM_IRQFD_OFF,
  KVM_MEMREGION_OFF,
  KVM_RUN_OFF,
  KVM_SIZEOF,
  SYS,
} from "./constants.js";
import { KICK_TID, type KvmVcpuTransfer } from "./kvm-vcpu.js";
import { kickSignal, loadNative, type NativeSys, sysCheck, sysCheckBig } from "./native.js";

const PAGE = 4096;
const KVM_API_VERSION = 12;
/** Where KVM may put the three pages of its real-mode TSS (Intel only; harmless elsewhere). */
const TSS_ADDR = 0xfffb_d000;
const VCPU_MODULE = new URL("./kvm-vcpu.js", import.meta.url).href;

export interface KvmOpenOptions {
  readonly path?: string;
}

/** Whether this machine has a KVM device we may open. */
export function kvmAvailable(path = "/dev/kvm"): { ok: true } | { ok: false; why: string } {
  try {
    const sys = loadNative();
    const fd = sys.open(path, SYS.O_RDWR);
    if (fd < 0) return { ok: false, why: `cannot open ${path} (errno ${-fd})` };
    sys.close(fd);
    return { ok: true };
  } catch (e) {
    return { ok: false, why: e instanceof Error ? e.message : String(e) };
  }
}

/** The KVM backend: one open /dev/kvm. */
export class KvmHypervisor implements Hypervisor {
  readonly kind = "kvm";
  readonly vcpuMmapSize: number;
  readonly maxMemslots: number;
  private fd: number;

  private constructor(
    private readonly sys: NativeSys,
    fd: number,
  ) {
    this.fd = fd;
    this.vcpuMmapSize = sysCheck(
      sys.ioctl(fd, KVM_IOCTL.GET_VCPU_MMAP_SIZE, 0),
      "KVM_GET_VCPU_MMAP_SIZE",
    );
    this.maxMemslots = Math.max(this.checkExtension(KVM_CAP.NR_MEMSLOTS), 32);
  }

  static open(options: KvmOpenOptions = {}): KvmHypervisor {
    const sys = loadNative();
    const path = options.path ?? "/dev/kvm";
    const fd = sys.open(path, SYS.O_RDWR);
    if (fd < 0) {
      throw new TsvisorError("HV_UNAVAILABLE", `cannot open ${path}: errno ${-fd}`, { errno: -fd });
    }
    try {
      const version = sys.ioctl(fd, KVM_IOCTL.GET_API_VERSION, 0);
      if (version !== KVM_API_VERSION) {
        throw new TsvisorError(
          "HV_UNAVAILABLE",
          `KVM API version ${version}, expected ${KVM_API_VERSION}`,
        );
      }
      for (const cap of ["IMMEDIATE_EXIT", "USER_MEMORY", "IOEVENTFD"] as const) {
        if (sys.ioctl(fd, KVM_IOCTL.CHECK_EXTENSION, KVM_CAP[cap]) <= 0) {
          throw new TsvisorError("HV_UNAVAILABLE", `KVM lacks the ${cap} capability`);
        }
      }
      // A kick signal sent before a handler exists would kill the process.
      sysCheck(sys.installNoopHandler(kickSignal(sys)), "installing the kick signal handler");
      return new KvmHypervisor(sys, fd);
    } catch (e) {
      sys.close(fd);
      throw e;
    }
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, otherwise a capability-specific positive value. */
  checkExtension(cap: number): number {
    return Math.max(this.sys.ioctl(this.liveFd(), KVM_IOCTL.CHECK_EXTENSION, cap), 0);
  }

  createVm(options: VmOptions = {}): KvmVm {
    const fd = sysCheck(this.sys.ioctl(this.liveFd(), KVM_IOCTL.CREATE_VM, 0), "KVM_CREATE_VM");
    const r = this.sys.ioctl(fd, KVM_IOCTL.SET_TSS_ADDR, TSS_ADDR);
    if (r < 0) {
      this.sys.close(fd);
      sysCheck(r, "KVM_SET_TSS_ADDR");
    }
    return new KvmVm(this.sys, fd, options.irqchip ?? true, this.vcpuMmapSize, this.maxMemslots);
  }

  allocateMemory(size: number, name = "tsvisor-ram"): KvmGuestMemory {
    this.liveFd();
    return KvmGuestMemory.allocate(this.sys, size, name);
  }

  createNotifier(): KvmNotifier {
    this.liveFd();
    const fd = sysCheck(this.sys.eventfd(0, SYS.EFD_CLOEXEC | SYS.EFD_NONBLOCK), "eventfd");
    return new KvmNotifier(this.sys, fd);
  }

  close(): void {
    if (this.fd < 0) return;
    this.sys.close(this.fd);
    this.fd = -1;
  }

  private liveFd(): number {
    if (this.fd < 0) throw new TsvisorError("HV_CLOSED", "the KVM hypervisor is closed");
    return this.fd;
  }
}

/** Guest RAM backed by a memfd, mapped once into this process. */
export class KvmGuestMemory implements GuestMemory {
  mapCount = 0;
  private buffer: ArrayBuffer | undefined;
  private view: Uint8Array;

  private constructor(
    private readonly sys: NativeSys,
    readonly fd: number,
    readonly addr: bigint,
    readonly size: number,
  ) {
    this.buffer = sys.view(addr, size);
    this.view = new Uint8Array(this.buffer);
  }

  static allocate(sys: NativeSys, size: number, name: string): KvmGuestMemory {
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0) {
      throw new TsvisorError(
        "HV_MEMORY",
        `memory size ${size} is not a positive multiple of 4 KiB`,
      );
    }
    const fd = sysCheck(sys.memfdCreate(name, SYS.MFD_CLOEXEC), "memfd_create");
    try {
      sysCheck(sys.ftruncate(fd, size), "ftruncate of guest memory");
      const addr = sysCheckBig(
        sys.mmap(size, SYS.PROT_READ | SYS.PROT_WRITE, SYS.MAP_SHARED | SYS.MAP_NORESERVE, fd, 0),
        "mmap of guest memory",
      );
      return new KvmGuestMemory(sys, fd, addr, size);
    } catch (e) {
      sys.close(fd);
      throw e;
    }
  }

  get bytes(): Uint8Array {
    return this.view;
  }

  get mapped(): boolean {
    return this.mapCount > 0;
  }

  get closed(): boolean {
    return this.buffer === undefined;
  }

  close(): void {
    if (this.buffer === undefined) return;
    if (this.mapCount > 0) {
      throw new TsvisorError("HV_MEMORY", "guest memory is still mapped into a VM");
    }
    // Detaching first turns any stale JS view into a zero-length array instead of a crash.
    this.sys.detach(this.buffer);
    this.buffer = undefined;
    this.view = new Uint8Array(0);
    this.sys.munmap(this.addr, this.size);
    this.sys.close(this.fd);
  }
}

export class KvmNotifier implements Notifier {
  constructor(
    private readonly sys: NativeSys,
    private fdValue: number,
  ) {}

  get fd(): number {
    if (this.fdValue < 0) throw new TsvisorError("HV_CLOSED", "the notifier is closed");
    return this.fdValue;
  }

  signal(n = 1n): void {
    sysCheck(this.sys.eventfdWrite(this.fd, n), "eventfd write");
  }

  take(): bigint {
    const r = this.sys.eventfdRead(this.fd);
    if (r === -SYS.EAGAIN) return 0n;
    return sysCheckBig(r, "eventfd read");
  }

  close(): void {
    if (this.fdValue < 0) return;
    this.sys.close(this.fdValue);
    this.fdValue = -1;
  }
}

interface KvmRegion extends MemoryRegion {
  readonly slot: number;
  readonly memory: KvmGuestMemory;
}

/**
 * A KVM VM. Two measured kvm_pvm costs shape it: a memory-slot change on a VM that already
 * has an in-kernel irqchip takes ~7 ms, and destroying a VM with an irqchip ~15 ms. So the
 * irqchip is created lazily, just before the first vCPU (or irq call) needs it, after the
 * build-time memory slots, and the final close of the VM fd runs on libuv's thread pool.
 */
export class KvmVm implements Vm {
  private fd: number;
  private irqchipCreated = false;
  private closing: Promise<void> | undefined;
  private readonly regionList: KvmRegion[] = [];
  private readonly freeSlots: number[] = [];
  private nextSlot = 0;
  private readonly vcpus = new Map<number, KvmVcpuHandle>();
  private readonly bindings = new Set<KvmBinding>();

  constructor(
    private readonly sys: NativeSys,
    fd: number,
    readonly irqchip: boolean,
    private readonly vcpuMmapSize: number,
    private readonly maxMemslots: number,
  ) {
    this.fd = fd;
  }

  get regions(): readonly MemoryRegion[] {
    return [...this.regionList].sort((a, b) => a.gpa - b.gpa);
  }

  get vcpuCount(): number {
    return this.vcpus.size;
  }

  mapMemory(spec: MemoryRegionSpec): MemoryRegion {
    const fd = this.liveFd();
    const memory = spec.memory;
    if (!(memory instanceof KvmGuestMemory) || memory.closed) {
      throw new TsvisorError("HV_MEMORY", "the memory block is not open KVM guest memory");
    }
    const { gpa, offset, size } = checkRegion(spec, memory.size, this.regionList);
    const slot = this.freeSlots.pop() ?? this.nextSlot;
    if (slot >= this.maxMemslots) throw new TsvisorError("HV_LIMIT", "no free KVM memory slot");
    const readonly = spec.readonly ?? false;
    this.setRegion(
      fd,
      slot,
      readonly ? KVM_FLAG.MEM_READONLY : 0,
      gpa,
      size,
      memory.addr + BigInt(offset),
    );
    if (slot === this.nextSlot) this.nextSlot++;
    const region: KvmRegion = { slot, gpa, size, offset, readonly, memory };
    this.regionList.push(region);
    memory.mapCount++;
    return region;
  }

  unmapMemory(region: MemoryRegion): void {
    const i = this.regionList.indexOf(region as KvmRegion);
    if (i < 0) throw new TsvisorError("HV_MEMORY", "the region is not mapped in this VM");
    const r = this.regionList[i]!;
    this.setRegion(this.liveFd(), r.slot, 0, r.gpa, 0, 0n);
    this.regionList.splice(i, 1);
    this.freeSlots.push(r.slot);
    r.memory.mapCount--;
  }

  createVcpu(index: number): KvmVcpuHandle {
    const fd = this.liveFd();
    if (!Number.isInteger(index) || index < 0) {
      throw new TsvisorError("HV_LIMIT", `vCPU index ${index} is not a non-negative integer`);
    }
    if (this.vcpus.has(index)) throw new TsvisorError("HV_LIMIT", `vCPU ${index} already exists`);
    this.ensureIrqchip();
    const r = this.sys.ioctl(fd, KVM_IOCTL.CREATE_VCPU, index);
    if (r < 0) {
      throw new TsvisorError("HV_LIMIT", `KVM_CREATE_VCPU ${index} failed: errno ${-r}`, {
        errno: -r,
      });
    }
    let handle: KvmVcpuHandle;
    try {
      handle = new KvmVcpuHandle(this.sys, index, r, this.vcpuMmapSize, () =>
        this.vcpus.delete(index),
      );
    } catch (e) {
      this.sys.close(r);
      throw e;
    }
    this.vcpus.set(index, handle);
    return handle;
  }

  setIrqLine(gsi: number, level: boolean): void {
    this.requireIrqchip("KVM_IRQ_LINE");
    const arg = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_irq_level));
    arg.setUint32(KVM_IRQ_LEVEL_OFF.irq, gsi, true);
    arg.setUint32(KVM_IRQ_LEVEL_OFF.level, level ? 1 : 0, true);
    sysCheck(this.sys.ioctl(this.liveFd(), KVM_IOCTL.IRQ_LINE, arg), "KVM_IRQ_LINE");
  }

  irqfd(gsi: number, notifier: Notifier): Binding {
    this.requireIrqchip("KVM_IRQFD");
    const efd = asKvmNotifier(notifier).fd;
    const arg = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_irqfd));
    arg.setUint32(KVM_IRQFD_OFF.fd, efd, true);
    arg.setUint32(KVM_IRQFD_OFF.gsi, gsi, true);
    sysCheck(this.sys.ioctl(this.liveFd(), KVM_IOCTL.IRQFD, arg), "KVM_IRQFD");
    return this.bind(() => {
      arg.setUint32(KVM_IRQFD_OFF.flags, KVM_FLAG.IRQFD_DEASSIGN, true);
      return this.sys.ioctl(this.fd, KVM_IOCTL.IRQFD, arg);
    });
  }

  ioeventfd(spec: IoEventSpec, notifier: Notifier): Binding {
    const efd = asKvmNotifier(notifier).fd;
    const arg = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_ioeventfd));
    let flags = 0;
    if (spec.space === "pio") flags |= KVM_FLAG.IOEVENTFD_PIO;
    if (spec.datamatch !== undefined) {
      flags |= KVM_FLAG.IOEVENTFD_DATAMATCH;
      arg.setBigUint64(KVM_IOEVENTFD_OFF.datamatch, BigInt.asUintN(64, spec.datamatch), true);
    }
    arg.setBigUint64(KVM_IOEVENTFD_OFF.addr, BigInt(spec.addr), true);
    arg.setUint32(KVM_IOEVENTFD_OFF.len, spec.len, true);
    arg.setInt32(KVM_IOEVENTFD_OFF.fd, efd, true);
    arg.setUint32(KVM_IOEVENTFD_OFF.flags, flags, true);
    sysCheck(this.sys.ioctl(this.liveFd(), KVM_IOCTL.IOEVENTFD, arg), "KVM_IOEVENTFD");
    return this.bind(() => {
      arg.setUint32(KVM_IOEVENTFD_OFF.flags, flags | KVM_FLAG.IOEVENTFD_DEASSIGN, true);
      return this.sys.ioctl(this.fd, KVM_IOCTL.IOEVENTFD, arg);
    });
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    const fd = this.fd;
    // With fd < 0 the bindings and slots are only forgotten: the kernel drops them with the VM.
    this.fd = -1;
    for (const v of [...this.vcpus.values()]) v.close();
    for (const b of [...this.bindings]) b.close();
    for (const r of this.regionList.splice(0)) r.memory.mapCount--;
    this.closing = new Promise<void>((resolve) => {
      // Destroying the VM is the slow part (see the class comment): keep it off this thread.
      closeFd(fd, () => resolve());
    });
    return this.closing;
  }

  private bind(undo: () => number): Binding {
    const binding = new KvmBinding(() => {
      this.bindings.delete(binding);
      if (this.fd >= 0) sysCheck(undo(), "deassigning an eventfd binding");
    });
    this.bindings.add(binding);
    return binding;
  }

  private setRegion(
    fd: number,
    slot: number,
    flags: number,
    gpa: number,
    size: number,
    uaddr: bigint,
  ): void {
    const arg = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_userspace_memory_region));
    arg.setUint32(KVM_MEMREGION_OFF.slot, slot, true);
    arg.setUint32(KVM_MEMREGION_OFF.flags, flags, true);
    arg.setBigUint64(KVM_MEMREGION_OFF.guest_phys_addr, BigInt(gpa), true);
    arg.setBigUint64(KVM_MEMREGION_OFF.memory_size, BigInt(size), true);
    arg.setBigUint64(KVM_MEMREGION_OFF.userspace_addr, uaddr, true);
    sysCheck(
      this.sys.ioctl(fd, KVM_IOCTL.SET_USER_MEMORY_REGION, arg),
      "KVM_SET_USER_MEMORY_REGION",
    );
  }

  private requireIrqchip(what: string): void {
    if (!this.irqchip) throw new TsvisorError("HV_SYSCALL", `${what} needs the in-kernel irqchip`);
    this.ensureIrqchip();
  }

  /** Creates the in-kernel PIC/IOAPIC/LAPIC and PIT once; KVM wants them before any vCPU. */
  private ensureIrqchip(): void {
    if (!this.irqchip || this.irqchipCreated) return;
    const fd = this.liveFd();
    sysCheck(this.sys.ioctl(fd, KVM_IOCTL.CREATE_IRQCHIP, 0), "KVM_CREATE_IRQCHIP");
    this.irqchipCreated = true;
    const pit = new Uint8Array(KVM_SIZEOF.kvm_pit_config);
    sysCheck(this.sys.ioctl(fd, KVM_IOCTL.CREATE_PIT2, pit), "KVM_CREATE_PIT2");
  }

  private liveFd(): number {
    if (this.fd < 0) throw new TsvisorError("HV_CLOSED", "the VM is closed");
    return this.fd;
  }
}

class KvmBinding implements Binding {
  private done = false;
  constructor(private readonly undo: () => void) {}
  close(): void {
    if (this.done) return;
    this.done = true;
    this.undo();
  }
}

function asKvmNotifier(n: Notifier): KvmNotifier {
  if (!(n instanceof KvmNotifier))
    throw new InvariantError("a KVM VM needs a notifier from the KVM backend");
  return n;
}

export class KvmVcpuHandle implements VcpuHandle {
  readonly transfer: KvmVcpuTransfer;
  private readonly runAddr: bigint;
  private runBuffer: ArrayBuffer | undefined;
  private readonly run: Uint8Array;
  private readonly kickWords: Int32Array;
  private readonly signal: number;
  private fd: number;

  constructor(
    private readonly sys: NativeSys,
    readonly index: number,
    fd: number,
    private readonly mmapSize: number,
    private readonly onClose: () => void,
  ) {
    this.fd = fd;
    // The owning thread keeps its own kvm_run view only to set immediate_exit for kicks.
    this.runAddr = sysCheckBig(
      sys.mmap(mmapSize, SYS.PROT_READ | SYS.PROT_WRITE, SYS.MAP_SHARED, fd, 0),
      "mmap of kvm_run",
    );
    this.runBuffer = sys.view(this.runAddr, mmapSize);
    this.run = new Uint8Array(this.runBuffer);
    const words = new SharedArrayBuffer(8);
    this.kickWords = new Int32Array(words);
    this.signal = kickSignal(sys);
    this.transfer = {
      backend: "kvm",
      module: VCPU_MODULE,
      index,
      fd,
      mmapSize,
      kickWords: words,
    };
  }

  kick(): void {
    if (this.fd < 0) return;
    // Order matters: immediate_exit covers a thread about to enter KVM_RUN, the signal one
    // already inside it. The run loop re-reads its control words after every -EINTR.
    this.run[KVM_RUN_OFF.immediate_exit] = 1;
    const tid = Atomics.load(this.kickWords, KICK_TID);
    if (tid !== 0) this.sys.tgkill(process.pid, tid, this.signal);
  }

  close(): void {
    if (this.fd < 0) return;
    if (this.runBuffer) this.sys.detach(this.runBuffer);
    this.runBuffer = undefined;
    this.sys.munmap(this.runAddr, this.mmapSize);
    this.sys.close(this.fd);
    this.fd = -1;
    this.onClose();
  }
}
