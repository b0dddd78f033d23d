import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import { cas, load, notify, type Proc, store, wait } from "../vcpu/sync-port.js";
import { Execution } from "./execution.js";
import type { Program } from "./program.js";
import { check, replay, replayToken, shortestCounterexample } from "./search.js";
import { CORPUS } from "./testing/corpus.js";
import { decodeSchedule, encodeSchedule } from "./token.js";

for (const e of CORPUS) {
  test(`dfs: ${e.program.id} is ${e.expect} at bound ${e.bound} (${e.why})`, () => {
    const r = check(e.program, { preemptions: e.bound });
    if (e.expect === "clean") {
      assert.equal(r.counterexample, undefined, r.counterexample?.violation.message);
      assert.equal(r.stats.complete, true);
    } else {
      assert.ok(r.counterexample, "the bug was not found");
      assert.equal(r.counterexample.violation.kind, e.expect);
      // Iterative bounding reports the fewest preemptions the bug needs.
      assert.equal(r.counterexample.preemptions, e.needs);
    }
  });
}

test("a bug that needs one preemption is invisible at bound 0", () => {
  for (const e of CORPUS.filter((x) => x.needs === 1)) {
    const r = check(e.program, { preemptions: 0 });
    assert.equal(r.counterexample, undefined, e.program.id);
    assert.equal(r.stats.complete, true);
  }
});

for (const strategy of ["random", "pct"] as const) {
  test(`${strategy} finds every corpus bug and passes every fix (seeded)`, () => {
    for (const e of CORPUS) {
      const r = check(e.program, { strategy, executions: 2000, seed: 42 });
      assert.equal(r.counterexample?.violation.kind ?? "clean", e.expect, e.program.id);
    }
  });
}

test("replaying a counterexample's token reproduces the same violation and trace", () => {
  for (const e of CORPUS.filter((x) => x.expect !== "clean")) {
    const ce = check(e.program, { preemptions: e.bound }).counterexample!;
    const again = replayToken(ce.token, (id) => {
      assert.equal(id, e.program.id);
      return e.program;
    });
    assert.deepEqual(again.result.violation, ce.violation);
    assert.deepEqual(again.schedule, ce.schedule);
    assert.deepEqual(
      again.result.trace.map((t) => [t.thread, t.op.kind, t.result]),
      ce.trace.map((t) => [t.thread, t.op.kind, t.result]),
    );
  }
});

test("a token that does not fit the program is CHECK_TOKEN, not a crash", () => {
  const p = CORPUS[0]!.program;
  for (const bad of ["nocolon", `${p.id}:`, `${p.id}:a0`, `${p.id}:!`, `${p.id}:z`]) {
    assert.throws(
      () => replayToken(bad, () => p),
      (e) => isTsvisorError(e) && e.code === "CHECK_TOKEN",
      bad,
    );
  }
});

test("schedule tokens round-trip", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 51 }), { minLength: 1, maxLength: 200 }),
      (s) => {
        const d = decodeSchedule(encodeSchedule("p.x-y", s));
        assert.equal(d.programId, "p.x-y");
        assert.deepEqual(d.schedule, s);
      },
    ),
  );
  assert.equal(encodeSchedule("p", [0, 0, 0, 1, 2, 2]), "p:a3bc2");
});

test("state hashing: interleavings of independent steps are expanded once", () => {
  // Three threads each storing twice to their own word: 6!/(2!·2!·2!) = 90 orders of the six
  // stores, but only 3^3 progress combinations (times the thread that ran last).
  const independent: Program = {
    id: "independent",
    words: 3,
    threads: [0, 1, 2].map((w) => ({
      name: `t${w}`,
      *body(): Proc<void> {
        yield* store(w, 1);
        yield* store(w, 2);
      },
    })),
  };
  const r = check(independent, { preemptions: 6, iterative: false });
  assert.equal(r.counterexample, undefined);
  assert.ok(r.stats.states <= 27 * 4, `${r.stats.states} states`);
  assert.ok(r.stats.pruned > 0);
  assert.ok(r.stats.executions < 90, `${r.stats.executions} executions`);
});

test("a spinning thread is reported as a step-limit violation", () => {
  const spin: Program = {
    id: "spin",
    words: 1,
    maxSteps: 50,
    threads: [
      {
        name: "spinner",
        *body() {
          while ((yield* load(0)) === 0) {}
        },
      },
    ],
  };
  const r = check(spin);
  assert.equal(r.counterexample?.violation.kind, "step-limit");
});

test("an exception in a thread is a violation naming the thread", () => {
  const boom: Program = {
    id: "boom",
    words: 1,
    threads: [
      {
        name: "thrower",
        *body() {
          if ((yield* load(0)) === 0) throw new RangeError("bad state");
        },
      },
    ],
  };
  const r = check(boom);
  assert.equal(r.counterexample?.violation.kind, "exception");
  assert.match(r.counterexample!.violation.message, /thrower threw: RangeError: bad state/);
});

test("wait compares atomically; notify wakes in FIFO order and only sleepers", () => {
  const p: Program = {
    id: "fifo",
    words: 1,
    threads: [
      {
        name: "a",
        *body() {
          yield* wait(0, 0);
        },
      },
      {
        name: "b",
        *body() {
          yield* wait(0, 0);
        },
      },
      {
        name: "w",
        *body() {
          yield* notify(0, 1);
          yield* notify(0, 1);
        },
      },
    ],
  };
  const exec = new Execution(p, { trace: true });
  exec.step(1);
  exec.step(0);
  assert.deepEqual(
    exec.threads.map((t) => t.status),
    ["blocked", "blocked", "ready"],
  );
  exec.step(2);
  assert.deepEqual(exec.trace![2]!.woke, [1], "b slept first, so b wakes first");
  exec.step(2);
  assert.deepEqual(exec.trace![3]!.woke, [0]);
  // A wait on a changed word does not sleep.
  const q: Program = {
    id: "ne",
    words: 1,
    init: [5],
    threads: [
      {
        name: "a",
        *body() {
          assert.equal(yield* wait(0, 0), "not-equal");
          assert.equal(yield* cas(0, 5, 6), 5);
        },
      },
    ],
  };
  const r = replay(q, [0, 0]);
  assert.equal(r.violation, undefined);
  assert.equal(r.terminal, true);
});

test("the shortest-counterexample search returns a shortest failing schedule", () => {
  const e = CORPUS.find((x) => x.program.id === "corpus.separate-word")!;
  const s = shortestCounterexample(e.program, 1, 10_000)!;
  // waiter reads 0, waker stores and notifies, waiter sleeps: 4 steps, none fewer.
  assert.equal(s.length, 4);
  assert.ok(replay(e.program, s).violation);
  for (let n = 0; n < 4; n++) {
    // No schedule of fewer steps fails: every prefix of the shortest is clean.
    assert.equal(replay(e.program, s.slice(0, n)).violation, undefined);
  }
});
