/**
 * The checker's self-test corpus: small classic programs, each with the verdict the checker
 * must reach. The buggy ones are textbook mistakes (lost wake-ups, check-then-sleep, ABBA
 * deadlock, a racy increment); the correct ones are the textbook fixes. Test fixtures only.
 */
import {
  cas,
  exchange,
  fetchAdd,
  fetchOr,
  load,
  notify,
  type Proc,
  store,
  wait,
} from "../../vcpu/sync-port.js";
import type { Program, View, ViolationKind } from "../program.js";

export interface CorpusEntry {
  readonly program: Program;
  /** "clean", or the kind of violation the checker must report. */
  readonly expect: "clean" | ViolationKind;
  /** The preemption bound to check it with; a bug must show within it, a fix must pass. */
  readonly bound: number;
  /** Fewest preemptions the bug needs (buggy entries). */
  readonly needs?: number;
  readonly why: string;
}

const allDone = (v: View) => v.threads.every((t) => t.status === "done");

// --- wake-ups ----------------------------------------------------------------------------

/** Waiter checks FLAG, then sleeps on another word whose value never changes. */
const separateWord: Program = {
  id: "corpus.separate-word",
  words: 2,
  wordNames: ["FLAG", "BELL"],
  threads: [
    {
      name: "waiter",
      *body() {
        while ((yield* load(0)) === 0) yield* wait(1, 0);
      },
    },
    {
      name: "waker",
      *body() {
        yield* store(0, 1);
        yield* notify(1);
      },
    },
  ],
};

/** Reads the generation AFTER checking the flag: a wake-up in between is folded in. */
const checkThenReadGeneration: Program = {
  id: "corpus.check-then-read-generation",
  words: 2,
  wordNames: ["FLAG", "GEN"],
  threads: [
    {
      name: "waiter",
      *body() {
        for (;;) {
          if ((yield* load(0)) !== 0) return;
          const g = yield* load(1);
          yield* wait(1, g);
        }
      },
    },
    {
      name: "waker",
      *body() {
        yield* store(0, 1);
        yield* fetchAdd(1, 1);
        yield* notify(1);
      },
    },
  ],
};

/** The fix: read the generation BEFORE checking the flag. */
const readGenerationThenCheck: Program = {
  ...checkThenReadGeneration,
  id: "corpus.read-generation-then-check",
  threads: [
    {
      name: "waiter",
      *body() {
        for (;;) {
          const g = yield* load(1);
          if ((yield* load(0)) !== 0) return;
          yield* wait(1, g);
        }
      },
    },
    checkThenReadGeneration.threads[1]!,
  ],
};

/** Notifies before publishing: the waiter can sleep after the notify and before the store. */
const notifyBeforePublish: Program = {
  id: "corpus.notify-before-publish",
  words: 1,
  wordNames: ["FLAG"],
  threads: [
    {
      name: "waiter",
      *body() {
        while ((yield* load(0)) === 0) yield* wait(0, 0);
      },
    },
    {
      name: "waker",
      *body() {
        yield* notify(0);
        yield* store(0, 1);
      },
    },
  ],
};

/** The fix: publish, then notify; the waiter's wait re-checks the value atomically. */
const publishThenNotify: Program = {
  ...notifyBeforePublish,
  id: "corpus.publish-then-notify",
  threads: [
    notifyBeforePublish.threads[0]!,
    {
      name: "waker",
      *body() {
        yield* store(0, 1);
        yield* notify(0);
      },
    },
  ],
};

/**
 * The parker of doorbell.md §3.3 (Rust std's futex parker shape): one state word per sleeper,
 * RUNNING/IN_WFI/NOTIFIED; the waker publishes, exchanges NOTIFIED in, notifies only a sleeper.
 * The sleeper parks until it has both events.
 */
const RUNNING = 0;
const IN_WFI = 1;
const NOTIFIED = 2;

function* parkerWfi(): Proc<void> {
  if ((yield* cas(0, RUNNING, IN_WFI)) === RUNNING) {
    while ((yield* load(1)) !== 3 && (yield* load(0)) === IN_WFI) yield* wait(0, IN_WFI);
  }
  yield* store(0, RUNNING);
}

function parkerWaker(bit: number) {
  return {
    name: `waker${bit}`,
    *body(): Proc<void> {
      yield* fetchOr(1, bit);
      if ((yield* exchange(0, NOTIFIED)) === IN_WFI) yield* notify(0, 1);
    },
  };
}

const parker: Program = {
  id: "corpus.parker",
  words: 2,
  wordNames: ["STATE", "PENDING"],
  threads: [
    {
      name: "sleeper",
      *body() {
        while ((yield* load(1)) !== 3) yield* parkerWfi();
      },
    },
    parkerWaker(1),
    parkerWaker(2),
  ],
};

/** The same parker whose first waker unparks before it publishes its event. */
const parkerPublishLast: Program = {
  ...parker,
  id: "corpus.parker-publish-last",
  threads: [
    parker.threads[0]!,
    {
      name: "waker1",
      *body() {
        if ((yield* exchange(0, NOTIFIED)) === IN_WFI) yield* notify(0, 1);
        yield* fetchOr(1, 1);
      },
    },
    parkerWaker(2),
  ],
};

// --- locks ---------------------------------------------------------------------------------

/** Drepper's futex mutex: 0 free, 1 locked, 2 locked with waiters. */
function* lock(w: number): Proc<void> {
  let c = yield* cas(w, 0, 1);
  if (c === 0) return;
  if (c !== 2) c = yield* exchange(w, 2);
  while (c !== 0) {
    yield* wait(w, 2);
    c = yield* exchange(w, 2);
  }
}

function* unlock(w: number): Proc<void> {
  if ((yield* fetchAdd(w, -1)) !== 1) {
    yield* store(w, 0);
    yield* notify(w, 1);
  }
}

/** Two threads, each twice through a critical section that counts its occupants (word 1). */
function* critical(): Proc<void> {
  for (let i = 0; i < 2; i++) {
    yield* lock(0);
    yield* fetchAdd(1, 1, "enter");
    yield* fetchAdd(1, -1, "leave");
    yield* unlock(0);
  }
}

const futexMutex: Program = {
  id: "corpus.futex-mutex",
  words: 2,
  wordNames: ["LOCK", "INSIDE"],
  threads: [
    { name: "t1", body: critical },
    { name: "t2", body: critical },
  ],
  invariants: [
    {
      name: "mutual-exclusion",
      check: (v) => (v.mem[1]! > 1 ? `${v.mem[1]} threads in the critical section` : undefined),
    },
  ],
};

/** Unlock that forgets the waiters: stores 0 without notifying. */
const mutexNoWake: Program = {
  ...futexMutex,
  id: "corpus.mutex-no-wake",
  threads: [1, 2].map((n) => ({
    name: `t${n}`,
    *body(): Proc<void> {
      for (let i = 0; i < 2; i++) {
        yield* lock(0);
        yield* fetchAdd(1, 1, "enter");
        yield* fetchAdd(1, -1, "leave");
        yield* store(0, 0);
      }
    },
  })),
};

/** Lock A then B against B then A. */
const abba: Program = {
  id: "corpus.abba",
  words: 2,
  wordNames: ["A", "B"],
  threads: [
    { name: "ab", a: 0, b: 1 },
    { name: "ba", a: 1, b: 0 },
  ].map(({ name, a, b }) => ({
    name,
    *body(): Proc<void> {
      yield* lock(a);
      yield* lock(b);
      yield* unlock(b);
      yield* unlock(a);
    },
  })),
};

// --- data races ------------------------------------------------------------------------------

const incrementBy = (name: string, racy: boolean) => ({
  name,
  *body(): Proc<void> {
    if (racy) {
      const v = yield* load(0);
      yield* store(0, v + 1);
      return;
    }
    let v = yield* load(0);
    for (;;) {
      const seen = yield* cas(0, v, v + 1);
      if (seen === v) return;
      v = seen;
    }
  },
});

const counterInvariant = {
  name: "both-increments",
  check: (v: View) => (allDone(v) && v.mem[0] !== 2 ? `counter is ${v.mem[0]}, not 2` : undefined),
};

const racyIncrement: Program = {
  id: "corpus.racy-increment",
  words: 1,
  wordNames: ["COUNT"],
  threads: [incrementBy("t1", true), incrementBy("t2", true)],
  invariants: [counterInvariant],
};

const casIncrement: Program = {
  id: "corpus.cas-increment",
  words: 1,
  wordNames: ["COUNT"],
  threads: [incrementBy("t1", false), incrementBy("t2", false)],
  invariants: [counterInvariant],
};

export const CORPUS: readonly CorpusEntry[] = [
  {
    program: separateWord,
    expect: "deadlock",
    bound: 2,
    needs: 1,
    why: "notify on a word whose value never changes is not sticky",
  },
  {
    program: checkThenReadGeneration,
    expect: "deadlock",
    bound: 2,
    needs: 1,
    why: "the generation is read after the check",
  },
  {
    program: notifyBeforePublish,
    expect: "deadlock",
    bound: 2,
    needs: 1,
    why: "notify precedes the store the waiter waits for",
  },
  {
    program: parkerPublishLast,
    expect: "deadlock",
    bound: 2,
    needs: 1,
    why: "the waker unparks before it publishes the event",
  },
  {
    program: mutexNoWake,
    expect: "deadlock",
    bound: 2,
    needs: 1,
    why: "unlock forgets to wake the waiters",
  },
  { program: abba, expect: "deadlock", bound: 2, needs: 1, why: "lock-order inversion" },
  {
    program: racyIncrement,
    expect: "invariant",
    bound: 2,
    needs: 1,
    why: "load and store are two steps",
  },
  { program: readGenerationThenCheck, expect: "clean", bound: 3, why: "generation read first" },
  { program: publishThenNotify, expect: "clean", bound: 3, why: "publish, then notify" },
  { program: parker, expect: "clean", bound: 3, why: "one state word per sleeper" },
  { program: futexMutex, expect: "clean", bound: 3, why: "Drepper's mutex" },
  { program: casIncrement, expect: "clean", bound: 3, why: "compare-and-swap loop" },
];
