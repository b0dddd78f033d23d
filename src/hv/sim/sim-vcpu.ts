/**
 * A simulated vCPU, as the one thread that runs it sees it (the module `VcpuTransfer.module`
 * names for the sim backend). run() advances the guest program until an operation needs the
 * host, and returns that operation as the exit KVM would have produced (docs/sim.md):
 *
 * | operation | stays inside run() | exits |
 * | --- | --- | --- |
 * | out / in | an out matching an ioeventfd (signals it) | `io`, one access; `in` resumes with the bytes the host filled in |
 * | store / load | RAM (writable for stores) | `mmio` (1–8 bytes) anywhere else, read-only RAM for stores; an MMIO store matching an ioeventfd signals it instead |
 * | hlt | with the irqchip: sleeps until an unmasked interrupt (sti) or for ever (cli) | `hlt` without the irqchip (`irq-window` instead when the window is requested at a sti; hlt) |
 * | spin | sleeps until its condition holds (or for ever) | — |
 * | fault | — | `shutdown`, `internal-error`, `fail-entry`, `unknown`, and again on every later run() |
 *
 * A kick makes run() return `intr` at the next operation, at once if the vCPU sleeps, and
 * on every run() until clearKick(), like KVM's immediate_exit. An operation interrupted by a
 * kick (a halt, a spin) continues on the next run().
 *
 * Without the irqchip the vCPU also takes interrupts from userspace (the user irqchip,
 * src/vcpu/user-loop.ts): a program can take one only where it waits in `sti; hlt`, so that is
 * when interruptReady() holds; injectInterrupt() queues one vector (a second replaces it), and
 * the next run() resumes the halt with GSI = vector − 0x20, as the guest's handler for that
 * vector would run (docs/sim.md, "The user irqchip").
 */
import { isTsvisorError, TsvisorError } from "../../core/errors.js";
import { USER_VECTOR_BASE } from "../../vcpu/vector-model.js";
import type { Vcpu, VcpuExit, VcpuTransfer, X86Regs, X86Segment, X86Sregs } from "../types.js";
import { Board, MAX_GSI } from "./board.js";
import { SIM_GUESTS } from "./guests/index.js";
import { alignUp, decodePayload, SIM_DATA_BYTES } from "./image.js";
import {
  type FaultExit,
  type Guest,
  haltForever,
  prng,
  type SimCpu,
  type SimOp,
  type SimProgram,
  scriptProgram,
  vcpuSeed,
} from "./program.js";
import { isSimVcpuTransfer, type SimVcpuTransfer } from "./sim-hypervisor.js";

/** How often a spin with a condition re-checks it when nothing on the board changes. */
const SPIN_RECHECK_MS = 5;
/** Bytes of "instruction" an emulation failure reports, as KVM does. */
const INSN_BYTES = 15;
const INTR: VcpuExit = { kind: "intr" };
const HLT: VcpuExit = { kind: "hlt" };
const IRQ_WINDOW: VcpuExit = { kind: "irq-window" };
/** RFLAGS.IF. */
const IF = 1n << 9n;

export function openVcpu(transfer: VcpuTransfer): Vcpu {
  if (!isSimVcpuTransfer(transfer)) {
    throw new TsvisorError("VCPU_WORKER", "the vCPU transfer is not a simulated vCPU");
  }
  return new SimVcpu(transfer);
}

/**
 * Kicks a simulated vCPU from any thread (an injector on another worker): the kick word and
 * SEQ are on the board, so no owner's handle is needed. Matches the optional `openKicker`
 * export a backend module may have (hv/types.ts).
 */
export function openKicker(transfer: VcpuTransfer): { kick(): void; close(): void } {
  if (!isSimVcpuTransfer(transfer)) {
    throw new TsvisorError("VCPU_WORKER", "the vCPU transfer is not a simulated vCPU");
  }
  const board = new Board(transfer.board);
  let open = true;
  return {
    kick() {
      if (open && board.vmGen(transfer.vm) === transfer.vmGen)
        board.kick(transfer.vm, transfer.index);
    },
    close() {
      open = false;
    },
  };
}

interface Region {
  readonly gpa: number;
  readonly end: number;
  readonly readonly: boolean;
  readonly bytes: Uint8Array;
  readonly slot: number;
  readonly gen: number;
}

type PendingRead =
  | { readonly kind: "in"; readonly data: Uint8Array }
  | { readonly kind: "load"; readonly data: Uint8Array };

type Blocking = Extract<SimOp, { op: "hlt" | "spin" }>;

export class SimVcpu implements Vcpu {
  readonly index: number;
  private readonly board: Board;
  private readonly vm: number;
  private readonly vmGen: number;
  private readonly irqchip: boolean;
  private readonly regions: Region[];
  private regs: X86Regs = resetRegs();
  private sregs: X86Sregs = resetSregs();
  /** With the irqchip, an application processor waits for INIT/SIPI until made runnable. */
  private runnable: boolean;
  private program: Guest | undefined;
  private name = "";
  private blocking: Blocking | undefined;
  private pending: PendingRead | undefined;
  private resume: unknown;
  private fault: FaultExit | undefined;
  private stepCount = 0;
  private closed = false;
  // The user irqchip (no in-kernel irqchip only).
  /** The program waits in `sti; hlt` for the host: the one place it can take an interrupt. */
  private atHlt = false;
  /** That halt has been returned as a `hlt` exit (else it was an `irq-window` exit so far). */
  private hltReported = false;
  /** The vector injectInterrupt() queued for the next entry. */
  private queued: number | undefined;
  private window = false;

  constructor(t: SimVcpuTransfer) {
    this.index = t.index;
    this.board = new Board(t.board);
    this.vm = t.vm;
    this.vmGen = t.vmGen;
    this.irqchip = t.irqchip;
    this.runnable = t.index === 0 || !t.irqchip;
    this.regions = t.regions.map((r) => ({
      gpa: r.gpa,
      end: r.gpa + r.size,
      readonly: r.readonly,
      bytes: new Uint8Array(r.memory, r.offset, r.size),
      slot: r.slot,
      gen: r.gen,
    }));
    this.checkVm();
  }

  /** Virtual time: operations executed so far. */
  get steps(): number {
    return this.stepCount;
  }

  run(): VcpuExit {
    this.assertOpen();
    this.checkVm();
    if (this.board.kicked(this.vm, this.index)) return INTR;
    if (!this.runnable) {
      // Waiting for INIT/SIPI: only a kick ends this run().
      this.sleep({ op: "hlt", interrupts: false });
      return INTR;
    }
    if (this.fault) return this.fault;
    if (!this.program) {
      this.start();
      if (this.fault) return this.fault;
    }
    if (this.pending) {
      const p = this.pending;
      this.pending = undefined;
      this.resume = p.kind === "in" ? readLe(p.data) : p.data.slice();
    }
    if (this.atHlt) {
      const exit = this.enterHalted();
      if (exit) return exit;
    }
    for (;;) {
      if (this.blocking) {
        if (!this.sleep(this.blocking)) return INTR;
        this.blocking = undefined;
      }
      if (this.board.kicked(this.vm, this.index)) return INTR;
      const op = this.next();
      this.stepCount++;
      const exit = this.exec(op);
      if (exit) return exit;
    }
  }

  clearKick(): void {
    this.assertOpen();
    this.board.clearKick(this.vm, this.index);
  }

  getRegs(): X86Regs {
    this.assertOpen();
    return { ...this.regs };
  }

  setRegs(regs: X86Regs): void {
    this.assertOpen();
    this.regs = { ...regs };
  }

  getSregs(): X86Sregs {
    this.assertOpen();
    return structuredClone(this.sregs);
  }

  setSregs(sregs: X86Sregs): void {
    this.assertOpen();
    this.sregs = structuredClone(sregs);
  }

  setRunnable(): void {
    this.assertOpen();
    this.runnable = true;
  }

  // ---- the user irqchip (VMs without the in-kernel one)

  interruptReady(): boolean {
    this.assertOpen();
    return !this.irqchip && this.atHlt && this.interruptFlag() && this.queued === undefined;
  }

  interruptFlag(): boolean {
    this.assertOpen();
    return (this.regs.rflags & IF) !== 0n;
  }

  injectInterrupt(vector: number): void {
    this.assertOpen();
    if (!Number.isInteger(vector) || vector < USER_VECTOR_BASE || vector > 0xff) {
      // Vectors below 0x20 are exceptions, which a sim program has no handlers for.
      throw new TsvisorError("HV_SYSCALL", `interrupt vector ${vector} is not 0x20..0xff`);
    }
    if (this.irqchip) {
      // KVM_INTERRUPT fails (ENXIO) when the in-kernel irqchip delivers interrupts.
      throw new TsvisorError("HV_SYSCALL", "injecting an interrupt needs a VM without the irqchip");
    }
    if (!this.atHlt) {
      // KVM would inject whatever the guest does; a program only has a place to take one at
      // sti; hlt, and the loop injects only while interruptReady(), which implies it.
      throw new TsvisorError(
        "VCPU_STATE",
        `simulated vCPU ${this.index} is not halted with interrupts on: no interrupt can be taken`,
      );
    }
    this.queued = vector;
  }

  requestInterruptWindow(on: boolean): void {
    this.assertOpen();
    this.window = on;
  }

  close(): void {
    this.closed = true;
    this.program = undefined;
  }

  // ---- the program

  /** Reads the image header at the entry and creates the program's generator. */
  private start(): void {
    const longMode = (this.sregs.efer & (1n << 10n)) !== 0n && this.sregs.cs.l === 1;
    // Paging is ignored: sim images run identity-mapped, as the loader's tables map them.
    const entry = Number(
      longMode ? this.regs.rip : BigInt.asUintN(32, this.sregs.cs.base + this.regs.rip),
    );
    const decoded = decodePayload((off, len) => this.readRam(entry + off, len));
    if (!decoded) {
      // Not a sim image (x86 code, or nothing): the simulator cannot run it.
      const insn = this.readRam(entry, INSN_BYTES) ?? new Uint8Array(0);
      this.fault = { kind: "internal-error", suberror: 1, insn, data: [] };
      return;
    }
    const h = decoded.header;
    let program: SimProgram;
    if (h.script) {
      program = scriptProgram(h.script);
      this.name = "script";
    } else {
      const def = SIM_GUESTS.get(h.guest ?? "");
      if (!def) {
        throw new TsvisorError(
          "SIM_PROGRAM",
          `the image names the simulated guest '${h.guest}', which this build does not have`,
        );
      }
      program = def.program;
      this.name = h.guest ?? "";
    }
    const seed = vcpuSeed(h.seed ?? 1, this.index);
    const random = prng(seed);
    const self = this;
    const cpu: SimCpu = {
      index: this.index,
      get regs() {
        return self.regs;
      },
      irqchip: this.irqchip,
      get steps() {
        return self.stepCount;
      },
      seed,
      random,
      randomInt: (n) => Math.floor(random() * n),
      dataAddr: entry + alignUp(decoded.length, 16),
      dataSize: SIM_DATA_BYTES,
      args: h.args ?? {},
      peek: (addr, len) => this.readRam(addr, len),
    };
    this.program = program(cpu);
  }

  private next(): SimOp {
    const program = this.program!;
    const resume = this.resume;
    this.resume = undefined;
    let r: IteratorResult<SimOp, void>;
    try {
      r = program.next(resume);
    } catch (e) {
      if (isTsvisorError(e)) throw e;
      throw new TsvisorError(
        "SIM_PROGRAM",
        `simulated guest '${this.name}' failed: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    if (!r.done) return r.value;
    // A program that returns halts for good, interrupts off.
    this.program = haltForever();
    return this.program.next().value as SimOp;
  }

  /** Performs one operation; returns the exit it causes, or undefined to go on. */
  private exec(op: SimOp): VcpuExit | undefined {
    switch (op.op) {
      case "out": {
        const data = writeLe(op.value, op.size);
        if (this.board.matchIoEvent(this.vm, "pio", op.port, op.size, BigInt(op.value >>> 0))) {
          return undefined;
        }
        return { kind: "io", write: true, port: op.port, size: op.size, count: 1, data };
      }
      case "in": {
        const data = new Uint8Array(op.size);
        this.pending = { kind: "in", data };
        return { kind: "io", write: false, port: op.port, size: op.size, count: 1, data };
      }
      case "store": {
        const r = this.regionFor(op.addr, op.bytes.length);
        if (r && !r.readonly) {
          r.bytes.set(op.bytes, op.addr - r.gpa);
          // Wakes vCPUs spinning on guest memory (another vCPU's flag).
          this.board.bump();
          return undefined;
        }
        this.checkMmioWidth(op.bytes.length, op.addr);
        if (
          this.board.matchIoEvent(this.vm, "mmio", op.addr, op.bytes.length, readLe64(op.bytes))
        ) {
          return undefined;
        }
        return { kind: "mmio", write: true, addr: op.addr, data: op.bytes.slice() };
      }
      case "load": {
        const bytes = this.readRam(op.addr, op.len);
        if (bytes) {
          this.resume = bytes;
          return undefined;
        }
        this.checkMmioWidth(op.len, op.addr);
        const data = new Uint8Array(op.len);
        this.pending = { kind: "load", data };
        return { kind: "mmio", write: false, addr: op.addr, data };
      }
      case "hlt":
        if (!this.irqchip) {
          this.setInterruptFlag(op.interrupts);
          if (!op.interrupts) return HLT;
          this.atHlt = true;
          // sti; hlt makes the guest interruptible: the window opens here, before HLT exits.
          this.hltReported = !this.window;
          return this.window ? IRQ_WINDOW : HLT;
        }
        this.blocking = op;
        return undefined;
      case "spin":
        this.blocking = op;
        return undefined;
      case "irq":
        if (!Number.isInteger(op.gsi) || op.gsi < 0 || op.gsi > MAX_GSI) {
          throw new TsvisorError("SIM_PROGRAM", `'${this.name}' programs GSI ${op.gsi}`);
        }
        // Without the irqchip there is no controller to program (KVM: unclaimed ports).
        if (this.irqchip) {
          if (op.enable) this.board.enable(this.vm, op.gsi);
          else this.board.disable(this.vm, op.gsi);
        }
        return undefined;
      case "fault":
        this.fault = op.exit;
        return op.exit;
      default:
        throw new TsvisorError("SIM_PROGRAM", `'${this.name}' yielded an unknown operation`);
    }
  }

  /**
   * run() on a program waiting in `sti; hlt` without the irqchip: a queued interrupt resumes
   * the halt as its handler (GSI = vector − 0x20; the interrupt gate clears IF), an open
   * window requested is an `irq-window` exit, a halt only reported as a window so far is the
   * `hlt` exit now, and otherwise the host woke the halt (it resumes with undefined).
   */
  private enterHalted(): VcpuExit | undefined {
    if (this.queued !== undefined) {
      this.resume = this.queued - USER_VECTOR_BASE;
      this.queued = undefined;
      this.setInterruptFlag(false);
    } else if (this.window && this.interruptFlag()) {
      return IRQ_WINDOW;
    } else if (!this.hltReported) {
      this.hltReported = true;
      return HLT;
    }
    this.atHlt = false;
    this.hltReported = false;
    return undefined;
  }

  private setInterruptFlag(on: boolean): void {
    this.regs.rflags = on ? this.regs.rflags | IF : this.regs.rflags & ~IF;
  }

  /**
   * Sleeps in a halt or spin until it is over (true) or the vCPU is kicked (false). Every
   * change that could end it bumps the board's SEQ word, which is read before the checks,
   * so a change between the checks and the wait makes the wait return at once.
   */
  private sleep(op: Blocking): boolean {
    for (;;) {
      const seen = this.board.seq;
      if (this.board.kicked(this.vm, this.index)) return false;
      if (op.op === "hlt") {
        if (op.interrupts) {
          const gsi = this.board.claimInterrupt(this.vm);
          if (gsi !== undefined) {
            this.resume = gsi;
            return true;
          }
        }
        this.board.waitChange(seen);
      } else {
        if (op.until?.()) return true;
        // The condition may depend on memory the host writes, which bumps nothing.
        this.board.waitChange(seen, op.until ? SPIN_RECHECK_MS : undefined);
      }
    }
  }

  // ---- memory

  private regionFor(addr: number, len: number): Region | undefined {
    for (const r of this.regions) {
      if (addr >= r.gpa && addr + len <= r.end) {
        return this.board.regionLive(this.vm, r.slot, r.gen) ? r : undefined;
      }
    }
    return undefined;
  }

  /** A copy of RAM at [addr, addr + len), or undefined when that is not all RAM. */
  private readRam(addr: number, len: number): Uint8Array | undefined {
    const r = this.regionFor(addr, len);
    return r ? r.bytes.slice(addr - r.gpa, addr - r.gpa + len) : undefined;
  }

  private checkMmioWidth(len: number, addr: number): void {
    if (len < 1 || len > 8) {
      throw new TsvisorError(
        "SIM_PROGRAM",
        `'${this.name}' accesses ${len} bytes of MMIO at 0x${addr.toString(16)} (1–8 per access)`,
      );
    }
  }

  private checkVm(): void {
    if (this.board.vmGen(this.vm) !== this.vmGen) {
      throw new TsvisorError("HV_CLOSED", `the VM of simulated vCPU ${this.index} is closed`);
    }
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new TsvisorError("HV_CLOSED", `vCPU ${this.index} is closed in this thread`);
    }
  }
}

function writeLe(value: number, size: number): Uint8Array {
  const data = new Uint8Array(size);
  let v = value >>> 0;
  for (let i = 0; i < size; i++) {
    data[i] = v & 0xff;
    v >>>= 8;
  }
  return data;
}

function readLe(data: Uint8Array): number {
  let v = 0;
  for (let i = data.length - 1; i >= 0; i--) v = v * 256 + data[i]!;
  return v;
}

function readLe64(data: Uint8Array): bigint {
  let v = 0n;
  for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]!);
  return v;
}

function segment(fields: Partial<X86Segment>): X86Segment {
  return {
    base: 0n,
    limit: 0xffff,
    selector: 0,
    type: 3,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 0,
    g: 0,
    avl: 0,
    unusable: 0,
    ...fields,
  };
}

/** The architectural reset state, as KVM reports it for a new vCPU. */
export function resetRegs(): X86Regs {
  return {
    rax: 0n,
    rbx: 0n,
    rcx: 0n,
    rdx: 0n,
    rsi: 0n,
    rdi: 0n,
    rsp: 0n,
    rbp: 0n,
    r8: 0n,
    r9: 0n,
    r10: 0n,
    r11: 0n,
    r12: 0n,
    r13: 0n,
    r14: 0n,
    r15: 0n,
    rip: 0xfff0n,
    rflags: 2n,
  };
}

export function resetSregs(): X86Sregs {
  const data = segment({});
  return {
    cs: segment({ base: 0xffff_0000n, selector: 0xf000, type: 11 }),
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    tr: segment({ type: 11, s: 0 }),
    ldt: segment({ type: 2, s: 0 }),
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0xffff },
    cr0: 0x6000_0010n,
    cr2: 0n,
    cr3: 0n,
    cr4: 0n,
    cr8: 0n,
    efer: 0n,
    apicBase: 0xfee0_0900n,
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
}
