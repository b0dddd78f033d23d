/**
 * What the checker checks: a closed program of threads sharing a small array of Int32 words.
 * Each thread is a generator over the sync port (src/vcpu/sync-port.ts); every op it yields is
 * a scheduling point. Programs are rebuilt from scratch for every execution, so thread bodies
 * must be deterministic: same results in, same ops out.
 */
import type { Proc } from "../vcpu/sync-port.js";

export type ThreadStatus = "ready" | "blocked" | "done" | "failed";

/** What invariants and guards may look at. */
export interface ThreadView {
  readonly index: number;
  readonly name: string;
  readonly role: string;
  readonly status: ThreadStatus;
  /** The word it sleeps on while blocked in `wait`; -1 otherwise. */
  readonly waitWord: number;
  /** Ops it has performed. */
  readonly steps: number;
}

export interface View {
  /** The shared words (do not write). */
  readonly mem: Int32Array;
  readonly threads: readonly ThreadView[];
  /** Index of the thread that took the last step; -1 before the first. */
  readonly last: number;
  thread(name: string): ThreadView;
}

export interface ThreadSpec {
  readonly name: string;
  /** Free text used by invariants, e.g. "vcpu", "injector", "control". */
  readonly role?: string;
  readonly body: () => Proc<unknown>;
  /**
   * An extra enabling condition over the state: the thread may run only when it holds (and it
   * is ready). Models things like "the scheduler can preempt the vCPU only while it runs".
   */
  readonly when?: (view: View) => boolean;
  /** May be left unfinished when the others are done; never makes a state a deadlock. */
  readonly daemon?: boolean;
  /**
   * Switching away from this thread is never a preemption: it models work done in another
   * thread's context (a preempt notifier), after which that thread simply continues.
   */
  readonly free?: boolean;
}

export interface Invariant {
  readonly name: string;
  /** Undefined if it holds, else what is wrong in this state. */
  check(view: View): string | undefined;
}

export interface Program {
  /** Stable identifier; schedule tokens carry it. No ':' or whitespace. */
  readonly id: string;
  readonly words: number;
  readonly init?: readonly number[];
  readonly threads: readonly ThreadSpec[];
  readonly invariants?: readonly Invariant[];
  /** Names for words in timelines (default W0, W1…). */
  readonly wordNames?: readonly string[];
  /** How a word's value reads in timelines (default decimal). */
  readonly formatWord?: (word: number, value: number) => string;
  /** The state column of timelines. */
  readonly describe?: (mem: Int32Array) => string;
  /** Longest execution before it counts as a livelock (default 2000 steps). */
  readonly maxSteps?: number;
}

export type ViolationKind = "invariant" | "deadlock" | "exception" | "step-limit";

export interface Violation {
  readonly kind: ViolationKind;
  /** The invariant's name, or the kind. */
  readonly name: string;
  readonly message: string;
}
