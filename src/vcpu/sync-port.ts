/**
 * The synchronization port: how protocol code touches shared memory.
 *
 * Protocol code (the vCPU residency module, and the demo designs the checker runs) is written
 * as generator functions that *yield* every shared-memory operation as an `Op` value instead of
 * calling `Atomics` directly. Whoever drives the generator performs the operation and sends the
 * result back in:
 *
 * - in production, `runProc` with an `AtomicsPort` performs each op at once with real `Atomics`
 *   on the vCPU's SharedArrayBuffer, so a call is an ordinary synchronous call;
 * - in `src/check/`, the model checker performs each op on its own memory and decides which
 *   thread performs the next one, so every yield is a scheduling point.
 *
 * The same generator code runs in both, which is the point: the checker explores the production
 * code, not a transcription of it. Code between two yields must only touch local state.
 */

/** One shared-memory operation. `label` names the protocol step for timelines; ports ignore it. */
export type Op =
  | { readonly kind: "load"; readonly word: number; readonly label?: string }
  | {
      readonly kind: "store";
      readonly word: number;
      readonly value: number;
      readonly label?: string;
    }
  | {
      readonly kind: "or" | "and" | "add" | "exchange";
      readonly word: number;
      readonly value: number;
      readonly label?: string;
    }
  | {
      readonly kind: "cas";
      readonly word: number;
      readonly expected: number;
      readonly value: number;
      readonly label?: string;
    }
  | {
      readonly kind: "wait";
      readonly word: number;
      readonly expected: number;
      readonly label?: string;
    }
  | {
      readonly kind: "notify";
      readonly word: number;
      readonly count: number;
      readonly label?: string;
    }
  | { readonly kind: "kick"; readonly label?: string };

export type OpKind = Op["kind"];

/** What `wait` returns: woken by notify, or the word no longer held the expected value. */
export type WaitResult = "ok" | "not-equal";

/** A protocol procedure: yields ops, receives their results, returns T. */
export type Proc<T> = Generator<Op, T, unknown>;

/** Performs one op. */
export interface SyncPort {
  perform(op: Op): unknown;
}

// The op constructors. Each is a tiny generator so protocol code reads `yield* load(W)`.

export function* load(word: number, label?: string): Proc<number> {
  return (yield { kind: "load", word, label }) as number;
}

export function* store(word: number, value: number, label?: string): Proc<void> {
  yield { kind: "store", word, value, label };
}

/** Atomics.or; returns the old value. */
export function* fetchOr(word: number, value: number, label?: string): Proc<number> {
  return (yield { kind: "or", word, value, label }) as number;
}

/** Atomics.and; returns the old value. */
export function* fetchAnd(word: number, value: number, label?: string): Proc<number> {
  return (yield { kind: "and", word, value, label }) as number;
}

/** Atomics.add; returns the old value. */
export function* fetchAdd(word: number, value: number, label?: string): Proc<number> {
  return (yield { kind: "add", word, value, label }) as number;
}

/** Atomics.exchange; returns the old value. */
export function* exchange(word: number, value: number, label?: string): Proc<number> {
  return (yield { kind: "exchange", word, value, label }) as number;
}

/** Atomics.compareExchange; returns the old value (equal to `expected` iff it succeeded). */
export function* cas(word: number, expected: number, value: number, label?: string): Proc<number> {
  return (yield { kind: "cas", word, expected, value, label }) as number;
}

/** Atomics.wait without a timeout: compares and sleeps atomically. */
export function* wait(word: number, expected: number, label?: string): Proc<WaitResult> {
  return (yield { kind: "wait", word, expected, label }) as WaitResult;
}

/** Atomics.notify; returns how many waiters it woke. */
export function* notify(
  word: number,
  count = Number.POSITIVE_INFINITY,
  label?: string,
): Proc<number> {
  return (yield { kind: "notify", word, count, label }) as number;
}

/** Forces the vCPU out of guest mode (the backend's kick: immediate_exit plus a signal). */
export function* kick(label?: string): Proc<void> {
  yield { kind: "kick", label };
}

/** Production port: real Atomics on a shared Int32Array; `onKick` is the backend's kick. */
export class AtomicsPort implements SyncPort {
  constructor(
    readonly words: Int32Array,
    private readonly onKick: () => void = () => {},
  ) {}

  perform(op: Op): unknown {
    const w = this.words;
    switch (op.kind) {
      case "load":
        return Atomics.load(w, op.word);
      case "store":
        Atomics.store(w, op.word, op.value);
        return undefined;
      case "or":
        return Atomics.or(w, op.word, op.value);
      case "and":
        return Atomics.and(w, op.word, op.value);
      case "add":
        return Atomics.add(w, op.word, op.value);
      case "exchange":
        return Atomics.exchange(w, op.word, op.value);
      case "cas":
        return Atomics.compareExchange(w, op.word, op.expected, op.value);
      case "wait":
        // "timed-out" cannot happen without a timeout.
        return Atomics.wait(w, op.word, op.expected);
      case "notify":
        return Atomics.notify(w, op.word, op.count);
      case "kick":
        this.onKick();
        return undefined;
    }
  }
}

/** Drives a procedure to completion on a port, synchronously. */
export function runProc<T>(proc: Proc<T>, port: SyncPort): T {
  let r = proc.next();
  while (!r.done) r = proc.next(port.perform(r.value));
  return r.value;
}
