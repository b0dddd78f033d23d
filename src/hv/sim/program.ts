/**
 * Simulated guest programs: what a sim vCPU "executes" instead of x86 code. A program is a
 * generator function over a SimCpu; it yields operations (SimOp) and gets each operation's
 * result back from `yield`. The sim vCPU turns operations into exactly the exits a real
 * guest's instructions would cause (docs/sim.md): port I/O, MMIO to unbacked addresses,
 * HLT without an irqchip, shutdown, internal errors; RAM accesses, ioeventfd writes, HLT
 * with the irqchip and spin loops stay inside run(), as they stay inside KVM_RUN.
 *
 * Programs are written with the small helpers below and `yield*`:
 *
 *   function* hello(cpu: SimCpu): Guest {
 *     yield* print("Hello\n");
 *     yield* debugExit(0);
 *   }
 *
 * A program must be deterministic given its SimCpu (registers, seed, interrupts it is given
 * and bytes it reads): no clocks, no Math.random, no I/O of its own. Returning from the
 * program halts the vCPU for good with interrupts off, as `cli; hlt` would.
 */
import { TsvisorError } from "../../core/errors.js";
import { type VcpuExit, X86_REG_NAMES, type X86Regs } from "../types.js";

export const COM1 = 0x3f8;
export const COM1_LSR = COM1 + 5;
export const DEBUG_EXIT = 0xf4;

export type IoSize = 1 | 2 | 4;

/** A fatal outcome: the vCPU returns it from every later run(). */
export type FaultExit = Extract<
  VcpuExit,
  { kind: "shutdown" | "internal-error" | "fail-entry" | "unknown" }
>;

export type SimOp =
  /** `out`: resumes with undefined. */
  | { readonly op: "out"; readonly port: number; readonly size: IoSize; readonly value: number }
  /** `in`: resumes with the value read (a number). */
  | { readonly op: "in"; readonly port: number; readonly size: IoSize }
  /** A store to guest-physical memory (RAM, or 1–8 bytes of MMIO). */
  | { readonly op: "store"; readonly addr: number; readonly bytes: Uint8Array }
  /** A load from guest-physical memory: resumes with a Uint8Array of `len` bytes. */
  | { readonly op: "load"; readonly addr: number; readonly len: number }
  /**
   * HLT. With `interrupts` (sti; hlt) and the irqchip, resumes with the GSI of the interrupt
   * that woke it; without the irqchip it is an exit and resumes with undefined once the host
   * wakes the vCPU. Without `interrupts` (cli; hlt) only the host ends it.
   */
  | { readonly op: "hlt"; readonly interrupts: boolean }
  /** Programs the interrupt controller for `gsi` (no exit): see Board.enable. */
  | { readonly op: "irq"; readonly gsi: number; readonly enable: boolean }
  /**
   * A busy loop: until `until()` holds, or forever. It has no effect the host could see, so
   * the sim sleeps instead of burning the host CPU, and re-checks `until` after every change
   * on the board (a guest write to RAM, an interrupt…) and every few milliseconds.
   */
  | { readonly op: "spin"; readonly until?: () => boolean }
  | { readonly op: "fault"; readonly exit: FaultExit };

/** A program or a piece of one: yields operations, returns T. */
export type Guest<T = void> = Generator<SimOp, T, unknown>;

/** What a program sees of its vCPU. */
export interface SimCpu {
  readonly index: number;
  /** The vCPU's registers as the host set them (RDI: the guest's parameter, RSI: vCPU index). */
  readonly regs: Readonly<X86Regs>;
  readonly irqchip: boolean;
  /** Virtual time: operations this vCPU has executed. */
  readonly steps: number;
  /** The image's seed, mixed with the vCPU index. */
  readonly seed: number;
  /** Seeded pseudo-random numbers in [0, 1): the same seed gives the same sequence. */
  random(): number;
  /** An integer in [0, n). */
  randomInt(n: number): number;
  /** A zeroed scratch area in guest RAM right after the program (the image's "bss"). */
  readonly dataAddr: number;
  readonly dataSize: number;
  /** The image's `args` (JSON). */
  readonly args: Readonly<Record<string, unknown>>;
  /**
   * What guest RAM holds at [addr, addr + len) right now (undefined if that is not RAM),
   * without an operation: for `spin` conditions, which may not yield.
   */
  peek(addr: number, len: number): Uint8Array | undefined;
}

/** The u32 at `addr` as `cpu.peek` sees it; undefined if that is not RAM. */
export function peek32(cpu: SimCpu, addr: number): number | undefined {
  const b = cpu.peek(addr, 4);
  return b ? new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true) : undefined;
}

export type SimProgram = (cpu: SimCpu) => Guest<void>;

// ---- operations as helpers

export function* out(port: number, size: IoSize, value: number): Guest {
  yield { op: "out", port, size, value };
}

export function* outb(port: number, value: number): Guest {
  yield { op: "out", port, size: 1, value: value & 0xff };
}

export function* inp(port: number, size: IoSize): Guest<number> {
  return (yield { op: "in", port, size }) as number;
}

export function* inb(port: number): Guest<number> {
  return (yield { op: "in", port, size: 1 }) as number;
}

/** Writes `text` (Latin-1) byte by byte to a port, COM1 by default. */
export function* print(text: string, port = COM1): Guest {
  for (let i = 0; i < text.length; i++) yield* outb(port, text.charCodeAt(i));
}

/** Powers the VM off through the debug-exit port with `code` (low byte). */
export function* debugExit(code: number): Guest {
  yield* outb(DEBUG_EXIT, code);
}

export function* store(addr: number, bytes: Uint8Array): Guest {
  yield { op: "store", addr, bytes };
}

export function* store32(addr: number, value: number): Guest {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
  yield { op: "store", addr, bytes };
}

export function* store64(addr: number, value: bigint): Guest {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
  yield { op: "store", addr, bytes };
}

export function* load(addr: number, len: number): Guest<Uint8Array> {
  return (yield { op: "load", addr, len }) as Uint8Array;
}

export function* load32(addr: number): Guest<number> {
  const b = yield* load(addr, 4);
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
}

export function* load64(addr: number): Guest<bigint> {
  const b = yield* load(addr, 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

/** sti; hlt: resumes with the GSI taken (undefined when the host woke a userspace halt). */
export function* hlt(): Guest<number | undefined> {
  return (yield { op: "hlt", interrupts: true }) as number | undefined;
}

/** cli; hlt in a loop: only the host ends this vCPU now. */
export function* haltForever(): Guest<never> {
  for (;;) yield { op: "hlt", interrupts: false };
}

export function* enableIrq(gsi: number): Guest {
  yield { op: "irq", gsi, enable: true };
}

export function* disableIrq(gsi: number): Guest {
  yield { op: "irq", gsi, enable: false };
}

/** Spins until `until()` holds (forever without it). */
export function* spin(until?: () => boolean): Guest {
  yield until ? { op: "spin", until } : { op: "spin" };
}

export function* fault(exit: FaultExit): Guest<never> {
  yield { op: "fault", exit };
  throw new TsvisorError("SIM_PROGRAM", "a faulted vCPU was resumed");
}

// ---- seeded randomness

/** mulberry32: small, fast, good enough to pick test actions; not for anything else. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed a vCPU's SimCpu uses: the image seed mixed with the vCPU index. */
export function vcpuSeed(imageSeed: number, index: number): number {
  return (imageSeed ^ Math.imul(index + 1, 0x9e37_79b9)) >>> 0;
}

// ---- scripts: programs as data

/** A register name, or a number. */
export type ScriptValue = number | keyof X86Regs;

/**
 * One step of a script (the JSON form of a program). Scripts have no control flow; when the
 * last step is done the vCPU halts for good.
 */
export type ScriptOp =
  | {
      readonly op: "out";
      readonly port: number;
      readonly size?: IoSize;
      readonly value: ScriptValue;
    }
  | { readonly op: "in"; readonly port: number; readonly size?: IoSize }
  | { readonly op: "print"; readonly text: string; readonly port?: number }
  | { readonly op: "exit"; readonly code: ScriptValue }
  | { readonly op: "store"; readonly addr: number; readonly bytes: readonly number[] }
  | { readonly op: "load"; readonly addr: number; readonly len: number }
  | { readonly op: "hlt" }
  | { readonly op: "wait-irq"; readonly gsi: number }
  | { readonly op: "spin" }
  | { readonly op: "shutdown" }
  | {
      readonly op: "internal-error";
      readonly suberror: number;
      readonly insn?: readonly number[];
    }
  | { readonly op: "fail-entry"; readonly reason: number; readonly cpu?: number }
  | { readonly op: "unknown"; readonly reason: number };

const bad = (why: string): never => {
  throw new TsvisorError("SIM_PROGRAM", `bad sim script: ${why}`);
};

const REG_NAMES = new Set<string>(X86_REG_NAMES);

function isUint(v: unknown, max: number): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max;
}

function checkValue(v: unknown, where: string): void {
  if (typeof v === "string" ? !REG_NAMES.has(v) : !isUint(v, 0xffff_ffff)) {
    bad(`${where}: value must be a u32 or a register name`);
  }
}

function checkBytes(v: unknown, where: string, max: number): void {
  if (!Array.isArray(v) || v.length === 0 || v.length > max || !v.every((b) => isUint(b, 255))) {
    bad(`${where}: 1 to ${max} byte values expected`);
  }
}

/** Validates a script (from JSON); throws SIM_PROGRAM naming the first bad step. */
export function parseScript(value: unknown): ScriptOp[] {
  if (!Array.isArray(value)) return bad("a script is an array of steps");
  value.forEach((s: unknown, i) => {
    const where = `step ${i}`;
    if (typeof s !== "object" || s === null) bad(`${where} is not an object`);
    const o = s as Record<string, unknown>;
    const size = o.size ?? 1;
    switch (o.op) {
      case "out":
      case "in":
        if (o.op === "out") checkValue(o.value, where);
        if (!isUint(o.port, 0xffff)) bad(`${where}: port must be 0–0xffff`);
        if (size !== 1 && size !== 2 && size !== 4) bad(`${where}: size must be 1, 2 or 4`);
        break;
      case "print":
        if (typeof o.text !== "string") bad(`${where}: text must be a string`);
        if (o.port !== undefined && !isUint(o.port, 0xffff)) bad(`${where}: bad port`);
        break;
      case "exit":
        checkValue(o.code, where);
        break;
      case "store":
        if (!isUint(o.addr, Number.MAX_SAFE_INTEGER)) bad(`${where}: bad addr`);
        checkBytes(o.bytes, where, 4096);
        break;
      case "load":
        if (!isUint(o.addr, Number.MAX_SAFE_INTEGER)) bad(`${where}: bad addr`);
        if (!isUint(o.len, 4096) || o.len === 0) bad(`${where}: len must be 1–4096`);
        break;
      case "wait-irq":
        if (!isUint(o.gsi, 31)) bad(`${where}: gsi must be 0–31`);
        break;
      case "internal-error":
        if (!isUint(o.suberror, 0xffff_ffff)) bad(`${where}: bad suberror`);
        if (o.insn !== undefined) checkBytes(o.insn, where, 15);
        break;
      case "fail-entry":
        if (!isUint(o.reason, Number.MAX_SAFE_INTEGER)) bad(`${where}: bad reason`);
        if (o.cpu !== undefined && !isUint(o.cpu, 0xffff_ffff)) bad(`${where}: bad cpu`);
        break;
      case "unknown":
        if (!isUint(o.reason, 0xffff_ffff)) bad(`${where}: bad reason`);
        break;
      case "hlt":
      case "spin":
      case "shutdown":
        break;
      default:
        bad(`${where}: unknown op ${JSON.stringify(o.op)}`);
    }
  });
  return value as ScriptOp[];
}

function scriptValue(v: ScriptValue, cpu: SimCpu): number {
  return typeof v === "number" ? v : Number(BigInt.asUintN(32, cpu.regs[v]));
}

/** A script as a program. Results of `in` and `load` steps are read and dropped. */
export function scriptProgram(ops: readonly ScriptOp[]): SimProgram {
  return function* script(cpu: SimCpu): Guest {
    for (const s of ops) {
      switch (s.op) {
        case "out":
          yield* out(s.port, s.size ?? 1, scriptValue(s.value, cpu));
          break;
        case "in":
          yield* inp(s.port, s.size ?? 1);
          break;
        case "print":
          yield* print(s.text, s.port ?? COM1);
          break;
        case "exit":
          yield* debugExit(scriptValue(s.code, cpu));
          break;
        case "store":
          yield* store(s.addr, Uint8Array.from(s.bytes));
          break;
        case "load":
          yield* load(s.addr, s.len);
          break;
        case "hlt":
          yield* hlt();
          break;
        case "wait-irq":
          yield* enableIrq(s.gsi);
          while ((yield* hlt()) !== s.gsi) {}
          break;
        case "spin":
          yield* spin();
          break;
        case "shutdown":
          yield* fault({ kind: "shutdown" });
          break;
        case "internal-error":
          yield* fault({
            kind: "internal-error",
            suberror: s.suberror,
            ...(s.insn ? { insn: Uint8Array.from(s.insn) } : {}),
            data: [],
          });
          break;
        case "fail-entry":
          yield* fault({ kind: "fail-entry", reason: BigInt(s.reason), cpu: s.cpu ?? cpu.index });
          break;
        case "unknown":
          yield* fault({ kind: "unknown", reason: s.reason });
          break;
      }
    }
  };
}
