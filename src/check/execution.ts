/**
 * One execution of a program under the checker's control: the shared words, the threads'
 * generators, and `step(t)`, which performs thread t's pending op and advances it to its next
 * one. Nothing runs unless the scheduler steps it, so an execution is a pure function of the
 * sequence of thread choices — which is what makes schedules replayable.
 *
 * Local state of a thread is not inspectable (it lives in a generator), so a thread's part of
 * the state fingerprint is a hash of its history: every op it performed and the result it got.
 * Threads are deterministic, so equal histories mean equal local states; two interleavings that
 * commute (e.g. independent loads) reach the same fingerprint and the search expands it once.
 */
import { InvariantError } from "../core/errors.js";
import type { Op, Proc } from "../vcpu/sync-port.js";
import type { Program, ThreadSpec, ThreadStatus, ThreadView, View, Violation } from "./program.js";

export interface TraceEvent {
  readonly step: number;
  readonly thread: number;
  readonly op: Op;
  readonly result: unknown;
  /** The op put the thread to sleep (a wait whose value matched). */
  readonly blocked: boolean;
  /** Threads a notify woke. */
  readonly woke: readonly number[];
  /** The previous thread could still run: this step is a preemption. */
  readonly preempted: boolean;
  /** Thread statuses after the step. */
  readonly statuses: readonly ThreadStatus[];
  /** The words after the step. */
  readonly mem: readonly number[];
}

const DEFAULT_MAX_STEPS = 2000;

class ThreadRt implements ThreadView {
  status: ThreadStatus = "ready";
  waitWord = -1;
  steps = 0;
  next: Op | undefined;
  error: unknown;
  h1 = 0x12345678;
  h2 = 0x0badf00d;
  readonly name: string;
  readonly role: string;

  constructor(
    readonly index: number,
    readonly spec: ThreadSpec,
    readonly gen: Proc<unknown>,
  ) {
    this.name = spec.name;
    this.role = spec.role ?? "";
  }

  /** Feeds `value` to the generator and stores the op it yields next (or finishes). */
  advance(value: unknown): void {
    try {
      const r = this.gen.next(value);
      if (r.done) {
        this.status = "done";
        this.next = undefined;
      } else this.next = r.value;
    } catch (e) {
      this.status = "failed";
      this.next = undefined;
      this.error = e;
    }
  }

  remember(a: number, b: number, c: number): void {
    this.h1 = mix(mix(mix(this.h1, a, 0x85ebca6b), b, 0x85ebca6b), c, 0x85ebca6b);
    this.h2 = mix(mix(mix(this.h2, a, 0xc2b2ae35), b, 0xc2b2ae35), c, 0xc2b2ae35);
  }
}

function mix(h: number, v: number, m: number): number {
  let x = Math.imul(h ^ v, m);
  x ^= x >>> 15;
  x = Math.imul(x, 0x27d4eb2d);
  return (x ^ (x >>> 13)) | 0;
}

const KIND_CODE: Record<Op["kind"], number> = {
  load: 1,
  store: 2,
  or: 3,
  and: 4,
  add: 5,
  exchange: 6,
  cas: 7,
  wait: 8,
  notify: 9,
  kick: 10,
};

function resultCode(r: unknown): number {
  if (typeof r === "number") return r;
  if (r === "ok") return 0x4f4b;
  if (r === "not-equal") return 0x4e45;
  if (r === "blocked") return 0x424c;
  return 0;
}

export interface ExecutionOptions {
  /** Record a TraceEvent per step (for counterexamples; costs time). */
  readonly trace?: boolean;
}

export class Execution implements View {
  readonly mem: Int32Array;
  readonly threads: ThreadRt[];
  readonly trace: TraceEvent[] | undefined;
  /** Steps taken so far. */
  steps = 0;
  /** The thread that took the last step; -1 before the first. */
  last = -1;
  private readonly byName = new Map<string, ThreadRt>();
  private readonly waiters = new Map<number, number[]>();
  private readonly maxSteps: number;

  constructor(
    readonly program: Program,
    options: ExecutionOptions = {},
  ) {
    this.mem = new Int32Array(program.words);
    program.init?.forEach((v, i) => {
      this.mem[i] = v;
    });
    this.trace = options.trace ? [] : undefined;
    this.maxSteps = program.maxSteps ?? DEFAULT_MAX_STEPS;
    this.threads = program.threads.map((spec, i) => {
      const t = new ThreadRt(i, spec, spec.body());
      this.byName.set(spec.name, t);
      return t;
    });
    // Run each body up to its first op: code before it is local.
    for (const t of this.threads) t.advance(undefined);
  }

  thread(name: string): ThreadView {
    const t = this.byName.get(name);
    if (!t) throw new InvariantError(`program ${this.program.id} has no thread '${name}'`);
    return t;
  }

  isEnabled(t: number): boolean {
    const th = this.threads[t];
    if (th?.status !== "ready") return false;
    return th.spec.when ? th.spec.when(this) : true;
  }

  /** Indices of the threads that can take a step now. */
  enabled(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.threads.length; i++) if (this.isEnabled(i)) out.push(i);
    return out;
  }

  /** Running t next would preempt the thread that ran last (it could go on). */
  isPreemption(t: number): boolean {
    const last = this.threads[this.last];
    return last !== undefined && this.last !== t && !last.spec.free && this.isEnabled(this.last);
  }

  /** Every non-daemon thread has finished. */
  terminal(): boolean {
    return this.threads.every((t) => t.status === "done" || t.spec.daemon === true);
  }

  /** Performs thread t's pending op. The caller makes sure t is enabled. */
  step(t: number): void {
    const th = this.threads[t];
    const op = th?.next;
    if (!th || op === undefined || !this.isEnabled(t))
      throw new InvariantError(`thread ${t} cannot take a step`);
    const preempted = this.isPreemption(t);
    const mem = this.mem;
    let result: unknown;
    let blocked = false;
    let blockWord = -1;
    let woke: number[] = [];
    switch (op.kind) {
      case "load":
        result = mem[op.word];
        break;
      case "store":
        mem[op.word] = op.value;
        break;
      case "or":
        result = mem[op.word];
        mem[op.word] = (result as number) | op.value;
        break;
      case "and":
        result = mem[op.word];
        mem[op.word] = (result as number) & op.value;
        break;
      case "add":
        result = mem[op.word];
        mem[op.word] = ((result as number) + op.value) | 0;
        break;
      case "exchange":
        result = mem[op.word];
        mem[op.word] = op.value;
        break;
      case "cas":
        result = mem[op.word];
        if (result === (op.expected | 0)) mem[op.word] = op.value;
        break;
      case "wait":
        if (mem[op.word] !== (op.expected | 0)) result = "not-equal";
        else {
          blocked = true;
          blockWord = op.word;
          result = "blocked";
        }
        break;
      case "notify":
        woke = this.wake(op.word, op.count);
        result = woke.length;
        break;
      case "kick":
        break;
    }
    const word = "word" in op ? op.word : -1;
    const arg = "value" in op ? op.value : "expected" in op ? op.expected : 0;
    th.remember(KIND_CODE[op.kind] * 256 + word, arg, resultCode(result));
    th.steps++;
    this.steps++;
    this.last = t;
    if (blocked) {
      th.status = "blocked";
      th.waitWord = blockWord;
      th.next = undefined;
      let q = this.waiters.get(blockWord);
      if (!q) {
        q = [];
        this.waiters.set(blockWord, q);
      }
      q.push(t);
    } else th.advance(result);
    // The woken threads run their local code up to their next op now; it touches nothing
    // shared, so doing it here instead of when they are next scheduled changes nothing.
    for (const w of woke) {
      const wt = this.threads[w]!;
      wt.status = "ready";
      wt.waitWord = -1;
      wt.remember(0x7fff, 0, resultCode("ok"));
      wt.advance("ok");
    }
    this.trace?.push({
      step: this.steps,
      thread: t,
      op,
      result,
      blocked,
      woke,
      preempted,
      statuses: this.threads.map((x) => x.status),
      mem: Array.from(mem),
    });
  }

  private wake(word: number, count: number): number[] {
    const q = this.waiters.get(word);
    if (!q || q.length === 0) return [];
    const n = Math.min(q.length, count);
    return q.splice(0, n);
  }

  /** The first problem with the current state, if any. */
  check(enabled?: readonly number[]): Violation | undefined {
    for (const t of this.threads) {
      if (t.status === "failed") {
        const e = t.error;
        const message = e instanceof Error ? (e.stack ?? e.message) : String(e);
        return { kind: "exception", name: "exception", message: `${t.name} threw: ${message}` };
      }
    }
    for (const inv of this.program.invariants ?? []) {
      const m = inv.check(this);
      if (m !== undefined) return { kind: "invariant", name: inv.name, message: m };
    }
    if (!this.terminal() && (enabled ?? this.enabled()).length === 0) {
      const stuck = this.threads
        .filter((t) => t.status !== "done" && t.spec.daemon !== true)
        .map((t) =>
          t.status === "blocked"
            ? `${t.name} sleeps on ${this.wordName(t.waitWord)}`
            : `${t.name} cannot run`,
        );
      return {
        kind: "deadlock",
        name: "deadlock",
        message: `no thread can run: ${stuck.join(", ")}`,
      };
    }
    if (this.steps >= this.maxSteps)
      return {
        kind: "step-limit",
        name: "step-limit",
        message: `no end after ${this.steps} steps (a livelock, or raise the program's maxSteps)`,
      };
    return undefined;
  }

  wordName(w: number): string {
    return this.program.wordNames?.[w] ?? `W${w}`;
  }

  /**
   * The state's fingerprint (53 bits): the words, every thread's status and history hash,
   * and the thread that ran last (preemption counting depends on it).
   */
  fingerprint(): number {
    let a = 0x3c6ef372 ^ this.last;
    let b = 0x1b873593 ^ this.last;
    for (let i = 0; i < this.mem.length; i++) {
      const v = this.mem[i]!;
      a = mix(a, v, 0x85ebca6b);
      b = mix(b, v, 0xc2b2ae35);
    }
    for (const t of this.threads) {
      const s = (t.status === "ready" ? 1 : t.status === "blocked" ? 2 : 3) + (t.waitWord << 2);
      a = mix(mix(a, s, 0x85ebca6b), t.h1, 0x85ebca6b);
      b = mix(mix(b, s, 0xc2b2ae35), t.h2, 0xc2b2ae35);
    }
    return (a >>> 0) * 0x200000 + (b >>> 11);
  }
}
