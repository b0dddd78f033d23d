/**
 * The simulated backend's shared state: one SharedArrayBuffer per SimHypervisor (the
 * "board") holding every word more than one thread touches — notifier counters and their
 * irqfd routes, each VM's interrupt lines, masks and latched edges, the vCPUs' kick words,
 * which memory regions are still mapped, and the ioeventfd table. Because it is all in one
 * buffer, a notifier signalled on any thread can raise a GSI in a VM whose vCPU sleeps on
 * another thread, and a vCPU thread can find ioeventfd bindings made after it started.
 *
 * Every change a sleeping vCPU may care about (a kick, a raised line, a latched edge, a
 * guest write to RAM) ends with `bump()`: the SEQ word is incremented and notified, and a
 * sleeping vCPU waits with `Atomics.wait(SEQ, seen)`, re-checking its conditions after every
 * change. One word for everything keeps wake-ups simple: spurious ones are cheap, lost ones
 * impossible (a change made after the sleeper read SEQ makes its wait return at once).
 *
 * Slots (notifiers, VMs, regions, ioeventfds) are allocated only by the hypervisor's owning
 * thread; other threads only read tables and signal.
 */
import { TsvisorError } from "../../core/errors.js";

export const BOARD_MAGIC = 0x5453_4d42; // "BMST"

/** Header words. */
const SEQ = 0;
const MAGIC = 1;
const HEADER_WORDS = 16;

export const MAX_NOTIFIERS = 1024;
const NOTIFIER_WORDS = 8;
/** Notifier slot word offsets. COUNTER is a BigInt64 at words 4–5. */
const N_USED = 0;
const N_GEN = 1;
/** VM slot + 1 of the irqfd route; 0: not routed. */
const N_ROUTE_VM = 2;
const N_ROUTE_GSI = 3;
const N_COUNTER = 4;
const N_ROUTE_VM_GEN = 6;

export const MAX_VMS = 64;
export const MAX_VCPUS = 8;
export const MAX_REGIONS = 32;
export const MAX_IOEVENTS = 64;
/** GSIs are bits of one word. */
export const MAX_GSI = 31;
const IOEVENT_WORDS = 12;
/** VM slot word offsets. */
const V_USED = 0;
const V_GEN = 1;
const V_LEVEL = 3;
const V_LATCHED = 4;
const V_UNMASKED = 5;
const V_KICK = 8;
const V_REGION = V_KICK + MAX_VCPUS;
const V_IOEVENT = V_REGION + MAX_REGIONS;
const VM_WORDS = V_IOEVENT + MAX_IOEVENTS * IOEVENT_WORDS;
/** ioeventfd entry word offsets; DATAMATCH is a BigInt64 at words 8–9. */
const E_USED = 0;
const E_SPACE = 1;
const E_ADDR_LO = 2;
const E_ADDR_HI = 3;
const E_LEN = 4;
const E_HAS_MATCH = 5;
const E_NOTIFIER = 6;
const E_NOTIFIER_GEN = 7;
const E_DATAMATCH = 8;

const NOTIFIER_BASE = HEADER_WORDS;
const VM_BASE = NOTIFIER_BASE + MAX_NOTIFIERS * NOTIFIER_WORDS;
const BOARD_WORDS = VM_BASE + MAX_VMS * VM_WORDS;

/** A notifier slot and its generation, so a reused slot is never mistaken for the old one. */
export interface NotifierRef {
  readonly slot: number;
  readonly gen: number;
}

export interface IoEventEntry {
  readonly space: "pio" | "mmio";
  readonly addr: number;
  readonly len: number;
  readonly datamatch: bigint | undefined;
  readonly notifier: NotifierRef;
}

/** Typed views over a board buffer; cheap to create on any thread. */
export class Board {
  readonly w: Int32Array;
  private readonly q: BigInt64Array;

  static allocate(): SharedArrayBuffer {
    const buffer = new SharedArrayBuffer(BOARD_WORDS * 4);
    new Int32Array(buffer)[MAGIC] = BOARD_MAGIC;
    return buffer;
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    if (buffer.byteLength !== BOARD_WORDS * 4) {
      throw new TsvisorError("HV_MEMORY", "not a simulated-hypervisor board");
    }
    this.w = new Int32Array(buffer);
    this.q = new BigInt64Array(buffer);
    if (Atomics.load(this.w, MAGIC) !== BOARD_MAGIC) {
      throw new TsvisorError("HV_MEMORY", "not a simulated-hypervisor board");
    }
  }

  // ---- the wake-up word

  get seq(): number {
    return Atomics.load(this.w, SEQ);
  }

  /** Publishes a change: every sleeper re-checks its conditions. */
  bump(): void {
    Atomics.add(this.w, SEQ, 1);
    Atomics.notify(this.w, SEQ);
  }

  /** Sleeps until SEQ differs from `seen` (or `timeoutMs` passes). */
  waitChange(seen: number, timeoutMs?: number): void {
    Atomics.wait(this.w, SEQ, seen, timeoutMs);
  }

  // ---- notifiers

  allocNotifier(): NotifierRef {
    for (let slot = 0; slot < MAX_NOTIFIERS; slot++) {
      const at = NOTIFIER_BASE + slot * NOTIFIER_WORDS;
      if (Atomics.compareExchange(this.w, at + N_USED, 0, 1) !== 0) continue;
      Atomics.store(this.w, at + N_ROUTE_VM, 0);
      Atomics.store(this.q, (at + N_COUNTER) / 2, 0n);
      const gen = (Atomics.add(this.w, at + N_GEN, 1) + 1) | 0;
      return { slot, gen };
    }
    throw new TsvisorError("HV_LIMIT", `no free simulated notifier (${MAX_NOTIFIERS} in use)`);
  }

  freeNotifier(ref: NotifierRef): void {
    const at = this.notifierAt(ref);
    if (at === undefined) return;
    Atomics.store(this.w, at + N_ROUTE_VM, 0);
    Atomics.store(this.q, (at + N_COUNTER) / 2, 0n);
    // A new generation makes stale references (ioeventfd entries, clones) miss.
    Atomics.add(this.w, at + N_GEN, 1);
    Atomics.store(this.w, at + N_USED, 0);
  }

  /** Whether `ref` still names a live notifier. */
  notifierLive(ref: NotifierRef): boolean {
    return this.notifierAt(ref) !== undefined;
  }

  /**
   * Adds `n` to the counter — or, when an irqfd routes the notifier to a VM's GSI, latches
   * that GSI's edge instead (KVM's irqfd consumes the eventfd counter the same way).
   */
  signal(ref: NotifierRef, n: bigint): void {
    const at = this.notifierAt(ref);
    if (at === undefined) throw new TsvisorError("HV_CLOSED", "the notifier is closed");
    if (n <= 0n) return;
    const routeVm = Atomics.load(this.w, at + N_ROUTE_VM);
    if (routeVm !== 0) {
      const vm = routeVm - 1;
      const gsi = Atomics.load(this.w, at + N_ROUTE_GSI);
      if (this.vmGen(vm) === Atomics.load(this.w, at + N_ROUTE_VM_GEN)) {
        this.latch(vm, gsi);
        return;
      }
    }
    Atomics.add(this.q, (at + N_COUNTER) / 2, n);
    this.bump();
  }

  /** Returns the counter and resets it to zero. */
  take(ref: NotifierRef): bigint {
    const at = this.notifierAt(ref);
    if (at === undefined) throw new TsvisorError("HV_CLOSED", "the notifier is closed");
    return Atomics.exchange(this.q, (at + N_COUNTER) / 2, 0n);
  }

  /** Routes the notifier to (vm, gsi); a count signalled before the route is delivered now. */
  route(ref: NotifierRef, vm: number, vmGen: number, gsi: number): void {
    const at = this.notifierAt(ref);
    if (at === undefined) throw new TsvisorError("HV_CLOSED", "the notifier is closed");
    Atomics.store(this.w, at + N_ROUTE_GSI, gsi);
    Atomics.store(this.w, at + N_ROUTE_VM_GEN, vmGen);
    Atomics.store(this.w, at + N_ROUTE_VM, vm + 1);
    if (Atomics.exchange(this.q, (at + N_COUNTER) / 2, 0n) > 0n) this.latch(vm, gsi);
  }

  /** Removes the notifier's route if it still points at (vm, gsi). */
  unroute(ref: NotifierRef, vm: number, gsi: number): void {
    const at = this.notifierAt(ref);
    if (at === undefined) return;
    if (
      Atomics.load(this.w, at + N_ROUTE_VM) === vm + 1 &&
      Atomics.load(this.w, at + N_ROUTE_GSI) === gsi
    ) {
      Atomics.store(this.w, at + N_ROUTE_VM, 0);
    }
  }

  private notifierAt(ref: NotifierRef): number | undefined {
    if (!Number.isInteger(ref.slot) || ref.slot < 0 || ref.slot >= MAX_NOTIFIERS) return undefined;
    const at = NOTIFIER_BASE + ref.slot * NOTIFIER_WORDS;
    if (Atomics.load(this.w, at + N_USED) !== 1) return undefined;
    return Atomics.load(this.w, at + N_GEN) === ref.gen ? at : undefined;
  }

  // ---- VMs

  allocVm(): { slot: number; gen: number } {
    for (let slot = 0; slot < MAX_VMS; slot++) {
      const at = VM_BASE + slot * VM_WORDS;
      if (Atomics.compareExchange(this.w, at + V_USED, 0, 1) !== 0) continue;
      this.w.fill(0, at + 2, at + VM_WORDS);
      const gen = (Atomics.add(this.w, at + V_GEN, 1) + 1) | 0;
      return { slot, gen };
    }
    throw new TsvisorError("HV_LIMIT", `no free simulated VM slot (${MAX_VMS} VMs open)`);
  }

  freeVm(slot: number): void {
    const at = VM_BASE + slot * VM_WORDS;
    this.w.fill(0, at + 2, at + VM_WORDS);
    Atomics.add(this.w, at + V_GEN, 1);
    Atomics.store(this.w, at + V_USED, 0);
    this.bump();
  }

  vmGen(slot: number): number {
    return Atomics.load(this.w, VM_BASE + slot * VM_WORDS + V_GEN);
  }

  // ---- interrupt lines (the simulated interrupt controller, docs/sim.md)

  /** Latches an edge on `gsi`; it stays pending until a halted vCPU takes it. */
  latch(vm: number, gsi: number): void {
    Atomics.or(this.w, this.vmAt(vm) + V_LATCHED, 1 << gsi);
    this.bump();
  }

  setLevel(vm: number, gsi: number, level: boolean): void {
    const at = this.vmAt(vm) + V_LEVEL;
    if (level) Atomics.or(this.w, at, 1 << gsi);
    else Atomics.and(this.w, at, ~(1 << gsi));
    this.bump();
  }

  /**
   * The guest programs its controller for `gsi`: edges latched before are forgotten (as an
   * 8259's ICW1 clears them) and the line is unmasked.
   */
  enable(vm: number, gsi: number): void {
    const at = this.vmAt(vm);
    Atomics.and(this.w, at + V_LATCHED, ~(1 << gsi));
    Atomics.or(this.w, at + V_UNMASKED, 1 << gsi);
  }

  disable(vm: number, gsi: number): void {
    Atomics.and(this.w, this.vmAt(vm) + V_UNMASKED, ~(1 << gsi));
  }

  /**
   * Takes the lowest pending unmasked interrupt: a latched edge is consumed (exactly one
   * vCPU gets it), a high level line is not (it is pending until its device lowers it).
   */
  claimInterrupt(vm: number): number | undefined {
    const at = this.vmAt(vm);
    for (;;) {
      const unmasked = Atomics.load(this.w, at + V_UNMASKED);
      const latched = Atomics.load(this.w, at + V_LATCHED) & unmasked;
      const level = Atomics.load(this.w, at + V_LEVEL) & unmasked;
      const pending = latched | level;
      if (pending === 0) return undefined;
      const gsi = 31 - Math.clz32(pending & -pending);
      const bit = 1 << gsi;
      if ((level & bit) !== 0) return gsi;
      if ((Atomics.and(this.w, at + V_LATCHED, ~bit) & bit) !== 0) return gsi;
      // Another vCPU took that edge between the load and the and: look again.
    }
  }

  /** The controller's words, for tests and diagnostics. */
  lines(vm: number): { level: number; latched: number; unmasked: number } {
    const at = this.vmAt(vm);
    return {
      level: Atomics.load(this.w, at + V_LEVEL) >>> 0,
      latched: Atomics.load(this.w, at + V_LATCHED) >>> 0,
      unmasked: Atomics.load(this.w, at + V_UNMASKED) >>> 0,
    };
  }

  // ---- kicks

  kick(vm: number, vcpu: number): void {
    Atomics.store(this.w, this.vmAt(vm) + V_KICK + vcpu, 1);
    this.bump();
  }

  kicked(vm: number, vcpu: number): boolean {
    return Atomics.load(this.w, this.vmAt(vm) + V_KICK + vcpu) !== 0;
  }

  clearKick(vm: number, vcpu: number): void {
    Atomics.store(this.w, this.vmAt(vm) + V_KICK + vcpu, 0);
  }

  // ---- memory regions: a word per region slot holds the mapping's generation while mapped

  setRegion(vm: number, slot: number, gen: number): void {
    Atomics.store(this.w, this.vmAt(vm) + V_REGION + slot, gen);
  }

  regionLive(vm: number, slot: number, gen: number): boolean {
    return Atomics.load(this.w, this.vmAt(vm) + V_REGION + slot) === gen;
  }

  // ---- ioeventfd table

  addIoEvent(vm: number, e: IoEventEntry): number {
    const base = this.vmAt(vm) + V_IOEVENT;
    for (let i = 0; i < MAX_IOEVENTS; i++) {
      const at = base + i * IOEVENT_WORDS;
      if (Atomics.load(this.w, at + E_USED) !== 0) continue;
      Atomics.store(this.w, at + E_SPACE, e.space === "pio" ? 0 : 1);
      Atomics.store(this.w, at + E_ADDR_LO, (e.addr % 0x1_0000_0000) | 0);
      Atomics.store(this.w, at + E_ADDR_HI, Math.floor(e.addr / 0x1_0000_0000));
      Atomics.store(this.w, at + E_LEN, e.len);
      Atomics.store(this.w, at + E_HAS_MATCH, e.datamatch === undefined ? 0 : 1);
      Atomics.store(this.q, (at + E_DATAMATCH) / 2, BigInt.asIntN(64, e.datamatch ?? 0n));
      Atomics.store(this.w, at + E_NOTIFIER, e.notifier.slot);
      Atomics.store(this.w, at + E_NOTIFIER_GEN, e.notifier.gen);
      // Published last: a vCPU scanning the table sees a complete entry or none.
      Atomics.store(this.w, at + E_USED, 1);
      return i;
    }
    throw new TsvisorError("HV_LIMIT", `no free simulated ioeventfd slot (${MAX_IOEVENTS})`);
  }

  removeIoEvent(vm: number, index: number): void {
    Atomics.store(this.w, this.vmAt(vm) + V_IOEVENT + index * IOEVENT_WORDS + E_USED, 0);
  }

  /**
   * A guest write of `len` bytes with `value` at `addr`: signals the first matching
   * ioeventfd and returns true, or returns false (the write exits to the host).
   */
  matchIoEvent(
    vm: number,
    space: "pio" | "mmio",
    addr: number,
    len: number,
    value: bigint,
  ): boolean {
    const base = this.vmAt(vm) + V_IOEVENT;
    const sp = space === "pio" ? 0 : 1;
    const lo = (addr % 0x1_0000_0000) | 0;
    const hi = Math.floor(addr / 0x1_0000_0000);
    for (let i = 0; i < MAX_IOEVENTS; i++) {
      const at = base + i * IOEVENT_WORDS;
      if (Atomics.load(this.w, at + E_USED) === 0) continue;
      if (this.w[at + E_SPACE] !== sp || this.w[at + E_ADDR_LO] !== lo) continue;
      if (this.w[at + E_ADDR_HI] !== hi) continue;
      const elen = this.w[at + E_LEN]!;
      if (elen !== 0 && elen !== len) continue;
      if (this.w[at + E_HAS_MATCH] === 1) {
        const want = BigInt.asUintN(len * 8, Atomics.load(this.q, (at + E_DATAMATCH) / 2));
        if (want !== BigInt.asUintN(len * 8, value)) continue;
      }
      const ref = { slot: this.w[at + E_NOTIFIER]!, gen: this.w[at + E_NOTIFIER_GEN]! };
      // A binding whose notifier was closed matches nothing (KVM drops such bindings).
      if (!this.notifierLive(ref)) continue;
      this.signal(ref, 1n);
      return true;
    }
    return false;
  }

  private vmAt(slot: number): number {
    return VM_BASE + slot * VM_WORDS;
  }
}
