/**
 * The simulated hypervisor backend: Hypervisor → Vm → VcpuHandle without /dev/kvm. Guest RAM
 * is SharedArrayBuffer memory (the host and every vCPU thread see the same bytes); notifiers,
 * interrupt lines, kicks and the ioeventfd table live in the hypervisor's board (board.ts);
 * vCPUs run simulated guest programs (program.ts, sim-vcpu.ts) instead of x86 code.
 * docs/sim.md describes the design.
 *
 * It mirrors the KVM backend's observable rules — the same validation and error codes, HLT
 * handled "in the kernel" with the irqchip and exiting without it, irqfd refused without the
 * irqchip, secondary vCPUs waiting for INIT/SIPI with it until made runnable — so the VMM and
 * the hv contract suite cannot tell the backends apart except through `kind`.
 */
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
  VcpuTransfer,
  Vm,
  VmOptions,
} from "../types.js";
import { Board, MAX_GSI, MAX_REGIONS, MAX_VCPUS, type NotifierRef } from "./board.js";

const PAGE = 4096;
const VCPU_MODULE = new URL("./sim-vcpu.js", import.meta.url).href;

/** One mapped region as a vCPU thread sees it. */
export interface SimRegionTransfer {
  readonly gpa: number;
  readonly size: number;
  readonly offset: number;
  readonly readonly: boolean;
  readonly memory: SharedArrayBuffer;
  /** Region slot and generation on the board: the region is live while they match. */
  readonly slot: number;
  readonly gen: number;
}

/** The backend-private part of a sim vCPU transfer; structured-cloneable. */
export interface SimVcpuTransfer extends VcpuTransfer {
  readonly backend: "sim";
  readonly board: SharedArrayBuffer;
  readonly vm: number;
  readonly vmGen: number;
  readonly irqchip: boolean;
  /** The VM's regions when the transfer was taken (see SimVcpuHandle.transfer). */
  readonly regions: readonly SimRegionTransfer[];
}

export function isSimVcpuTransfer(t: VcpuTransfer): t is SimVcpuTransfer {
  return (
    t.backend === "sim" &&
    t.board instanceof SharedArrayBuffer &&
    typeof t.vm === "number" &&
    typeof t.vmGen === "number" &&
    typeof t.irqchip === "boolean" &&
    Array.isArray(t.regions)
  );
}

/** A notifier as it crosses threads: the board and the slot. */
export interface SimNotifierTransfer {
  readonly board: SharedArrayBuffer;
  readonly slot: number;
  readonly gen: number;
}

export class SimHypervisor implements Hypervisor {
  readonly kind = "sim";
  readonly board: Board;
  private closed = false;

  private constructor() {
    this.board = new Board(Board.allocate());
  }

  /** Always available: nothing to open. */
  static open(): SimHypervisor {
    return new SimHypervisor();
  }

  createVm(options: VmOptions = {}): SimVm {
    this.live();
    const { slot, gen } = this.board.allocVm();
    return new SimVm(this, slot, gen, options.irqchip ?? true);
  }

  allocateMemory(size: number, _name?: string): SimGuestMemory {
    this.live();
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE !== 0) {
      throw new TsvisorError(
        "HV_MEMORY",
        `memory size ${size} is not a positive multiple of 4 KiB`,
      );
    }
    return new SimGuestMemory(this, size);
  }

  createNotifier(): SimNotifier {
    this.live();
    return new SimNotifier(this.board, this.board.allocNotifier(), true);
  }

  close(): void {
    this.closed = true;
  }

  private live(): void {
    if (this.closed) throw new TsvisorError("HV_CLOSED", "the simulated hypervisor is closed");
  }
}

/** Guest RAM: shared memory, so vCPU threads use the very bytes the host sees. */
export class SimGuestMemory implements GuestMemory {
  mapCount = 0;
  private buffer: SharedArrayBuffer | undefined;
  private view: Uint8Array;

  constructor(
    readonly owner: SimHypervisor,
    readonly size: number,
  ) {
    this.buffer = new SharedArrayBuffer(size);
    this.view = new Uint8Array(this.buffer);
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

  /** @internal the shared buffer, for vCPU transfers. */
  get shared(): SharedArrayBuffer {
    if (!this.buffer) throw new TsvisorError("HV_CLOSED", "the guest memory is closed");
    return this.buffer;
  }

  close(): void {
    if (this.buffer === undefined) return;
    if (this.mapCount > 0) {
      throw new TsvisorError("HV_MEMORY", "guest memory is still mapped into a VM");
    }
    // A shared buffer cannot be detached; dropping the reference frees it once no thread
    // holds a view any more.
    this.buffer = undefined;
    this.view = new Uint8Array(0);
  }
}

/**
 * A counter on the board (KVM: an eventfd). `signal` works from any thread holding it or a
 * clone opened with `SimNotifier.open(transfer)`; only the creating object frees the slot.
 */
export class SimNotifier implements Notifier {
  private open_ = true;

  constructor(
    readonly board: Board,
    readonly ref: NotifierRef,
    private readonly owner: boolean,
  ) {}

  /** Opens a notifier another thread created (structured-cloned `transfer`). */
  static open(t: SimNotifierTransfer): SimNotifier {
    return new SimNotifier(new Board(t.board), { slot: t.slot, gen: t.gen }, false);
  }

  get transfer(): SimNotifierTransfer {
    return { board: this.board.buffer, slot: this.ref.slot, gen: this.ref.gen };
  }

  signal(n = 1n): void {
    this.live();
    this.board.signal(this.ref, n);
  }

  take(): bigint {
    this.live();
    return this.board.take(this.ref);
  }

  close(): void {
    if (!this.open_) return;
    this.open_ = false;
    if (this.owner) this.board.freeNotifier(this.ref);
  }

  private live(): void {
    if (!this.open_) throw new TsvisorError("HV_CLOSED", "the notifier is closed");
  }
}

interface SimRegion extends MemoryRegion {
  readonly memory: SimGuestMemory;
  readonly slot: number;
  readonly gen: number;
}

export class SimVm implements Vm {
  private closing: Promise<void> | undefined;
  private readonly regionList: SimRegion[] = [];
  private regionGen = 0;
  private readonly vcpus = new Map<number, SimVcpuHandle>();
  private readonly bindings = new Set<SimBinding>();

  constructor(
    private readonly hv: SimHypervisor,
    readonly slot: number,
    readonly gen: number,
    readonly irqchip: boolean,
  ) {}

  get board(): Board {
    return this.hv.board;
  }

  get regions(): readonly MemoryRegion[] {
    return [...this.regionList].sort((a, b) => a.gpa - b.gpa);
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  mapMemory(spec: MemoryRegionSpec): MemoryRegion {
    this.live();
    const memory = spec.memory;
    if (!(memory instanceof SimGuestMemory) || memory.owner !== this.hv || memory.closed) {
      throw new TsvisorError(
        "HV_MEMORY",
        "the memory block is not open memory of this simulated hypervisor",
      );
    }
    const { gpa, offset, size } = checkRegion(spec, memory.size, this.regionList);
    const used = new Set(this.regionList.map((r) => r.slot));
    let slot = 0;
    while (used.has(slot)) slot++;
    if (slot >= MAX_REGIONS) throw new TsvisorError("HV_LIMIT", "no free simulated memory slot");
    const gen = ++this.regionGen;
    const region: SimRegion = {
      slot,
      gen,
      gpa,
      size,
      offset,
      readonly: spec.readonly ?? false,
      memory,
    };
    this.board.setRegion(this.slot, slot, gen);
    this.regionList.push(region);
    memory.mapCount++;
    return region;
  }

  unmapMemory(region: MemoryRegion): void {
    const i = this.regionList.indexOf(region as SimRegion);
    if (i < 0) throw new TsvisorError("HV_MEMORY", "the region is not mapped in this VM");
    this.live();
    const r = this.regionList[i]!;
    // From now on a vCPU that still holds the region treats its addresses as unbacked.
    this.board.setRegion(this.slot, r.slot, 0);
    this.regionList.splice(i, 1);
    r.memory.mapCount--;
  }

  createVcpu(index: number): SimVcpuHandle {
    this.live();
    if (!Number.isInteger(index) || index < 0 || index >= MAX_VCPUS) {
      throw new TsvisorError("HV_LIMIT", `vCPU index ${index} is not 0–${MAX_VCPUS - 1}`);
    }
    if (this.vcpus.has(index)) throw new TsvisorError("HV_LIMIT", `vCPU ${index} already exists`);
    const handle = new SimVcpuHandle(this, index, () => this.vcpus.delete(index));
    this.vcpus.set(index, handle);
    return handle;
  }

  setIrqLine(gsi: number, level: boolean): void {
    this.requireIrqchip("KVM_IRQ_LINE");
    this.checkGsi(gsi);
    this.board.setLevel(this.slot, gsi, level);
  }

  irqfd(gsi: number, notifier: Notifier): Binding {
    this.requireIrqchip("KVM_IRQFD");
    this.checkGsi(gsi);
    const n = this.ownNotifier(notifier);
    // KVM refuses a second irqfd on the same eventfd (EBUSY).
    for (const b of this.bindings) {
      if (b.irqfd && b.irqfd.slot === n.ref.slot && b.irqfd.gen === n.ref.gen) {
        throw new TsvisorError("HV_SYSCALL", "KVM_IRQFD failed: the notifier is already bound");
      }
    }
    this.board.route(n.ref, this.slot, this.gen, gsi);
    return this.bind(n.ref, () => this.board.unroute(n.ref, this.slot, gsi));
  }

  ioeventfd(spec: IoEventSpec, notifier: Notifier): Binding {
    this.live();
    const n = this.ownNotifier(notifier);
    const widths = spec.space === "pio" ? [1, 2, 4] : [0, 1, 2, 4, 8];
    if (!widths.includes(spec.len) || !Number.isSafeInteger(spec.addr) || spec.addr < 0) {
      throw new TsvisorError(
        "HV_SYSCALL",
        `KVM_IOEVENTFD failed: ${spec.space} ioeventfd of width ${spec.len} at ${spec.addr}`,
      );
    }
    const index = this.board.addIoEvent(this.slot, {
      space: spec.space,
      addr: spec.addr,
      len: spec.len,
      datamatch: spec.datamatch,
      notifier: n.ref,
    });
    return this.bind(undefined, () => this.board.removeIoEvent(this.slot, index));
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    for (const v of [...this.vcpus.values()]) v.close();
    for (const b of [...this.bindings]) b.close();
    for (const r of this.regionList.splice(0)) {
      this.board.setRegion(this.slot, r.slot, 0);
      r.memory.mapCount--;
    }
    this.board.freeVm(this.slot);
    // Nothing slow to do, but keep the contract's shape: settled asynchronously.
    this.closing = Promise.resolve();
    return this.closing;
  }

  /** @internal the regions as a vCPU thread needs them. */
  regionTransfers(): SimRegionTransfer[] {
    return this.regionList.map((r) => ({
      gpa: r.gpa,
      size: r.size,
      offset: r.offset,
      readonly: r.readonly,
      memory: r.memory.shared,
      slot: r.slot,
      gen: r.gen,
    }));
  }

  private bind(irqfd: NotifierRef | undefined, undo: () => void): Binding {
    const binding = new SimBinding(irqfd, () => {
      this.bindings.delete(binding);
      if (!this.closed) undo();
    });
    this.bindings.add(binding);
    return binding;
  }

  private ownNotifier(n: Notifier): SimNotifier {
    if (!(n instanceof SimNotifier) || n.board !== this.board) {
      throw new InvariantError("a simulated VM needs a notifier from its own simulated hypervisor");
    }
    if (!this.board.notifierLive(n.ref))
      throw new TsvisorError("HV_CLOSED", "the notifier is closed");
    return n;
  }

  private requireIrqchip(what: string): void {
    this.live();
    if (!this.irqchip) throw new TsvisorError("HV_SYSCALL", `${what} needs the in-kernel irqchip`);
  }

  private checkGsi(gsi: number): void {
    if (!Number.isInteger(gsi) || gsi < 0 || gsi > MAX_GSI) {
      throw new TsvisorError(
        "HV_SYSCALL",
        `GSI ${gsi} is outside the simulated irqchip (0–${MAX_GSI})`,
      );
    }
  }

  private live(): void {
    if (this.closing) throw new TsvisorError("HV_CLOSED", "the VM is closed");
  }
}

class SimBinding implements Binding {
  private done = false;
  constructor(
    readonly irqfd: NotifierRef | undefined,
    private readonly undo: () => void,
  ) {}
  close(): void {
    if (this.done) return;
    this.done = true;
    this.undo();
  }
}

export class SimVcpuHandle implements VcpuHandle {
  private closed = false;

  constructor(
    private readonly vm: SimVm,
    readonly index: number,
    private readonly onClose: () => void,
  ) {}

  /**
   * Taken when a vCPU thread is started: it carries the regions mapped at that moment. A
   * region unmapped later turns unbacked for the vCPU; one mapped later stays invisible to a
   * vCPU already opened (the VMM maps every parcel before VM_START).
   */
  get transfer(): SimVcpuTransfer {
    return {
      backend: "sim",
      module: VCPU_MODULE,
      index: this.index,
      board: this.vm.board.buffer,
      vm: this.vm.slot,
      vmGen: this.vm.gen,
      irqchip: this.vm.irqchip,
      regions: this.vm.closed ? [] : this.vm.regionTransfers(),
    };
  }

  kick(): void {
    if (this.closed) return;
    this.vm.board.kick(this.vm.slot, this.index);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}
