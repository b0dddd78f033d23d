import assert from "node:assert/strict";
import { test } from "node:test";
import { fixedDesign } from "./designs/fixed.js";
import { DESIGNS } from "./designs/index.js";
import { preFixDesign } from "./designs/pre-fix.js";
import { doorbellProgram, SCENARIOS } from "./doorbell.js";
import { check, replayToken } from "./search.js";
import { formatTimeline } from "./timeline.js";

test("the production design is clean with up to 3 preemptions (preempt scenario)", () => {
  const r = check(doorbellProgram(fixedDesign, "preempt"), { preemptions: 3 });
  assert.equal(r.counterexample, undefined, r.counterexample?.violation.message);
  assert.equal(r.stats.complete, true);
  assert.ok(r.stats.states > 100_000, `only ${r.stats.states} states explored`);
});

for (const scenario of ["reconfig", "pause"] as const) {
  test(`the production design is clean with up to 2 preemptions (${scenario})`, () => {
    const r = check(doorbellProgram(fixedDesign, scenario), { preemptions: 2 });
    assert.equal(r.counterexample, undefined, r.counterexample?.violation.message);
    assert.equal(r.stats.complete, true);
  });
}

test("pre-fix: clean without preemption, the seed's lost wake-up with one", () => {
  const program = doorbellProgram(preFixDesign, "preempt");
  assert.equal(check(program, { preemptions: 0 }).counterexample, undefined);
  const ce = check(program, { preemptions: 1 }).counterexample;
  assert.ok(ce);
  assert.equal(ce.violation.name, "lost-wake-up");
  assert.equal(ce.preemptions, 1);
  // The three trips through the scheduler (doorbell.md §1.4): the WFI put arms the
  // doorbell; the preemption's load makes the vCPU resident again; schedule()'s put leaves it
  // non-resident without a doorbell; then the interrupt is left pending.
  const steps = ce.trace.map((e) => `${program.threads[e.thread]!.name} ${e.op.label}`);
  const at = (re: RegExp, from = 0) => steps.findIndex((s, i) => i >= from && re.test(s));
  const armed = at(/^vcpu put\(need_db=true\)/);
  const reload = at(/^sched load/, armed);
  const unarmed = at(/^vcpu put\(need_db=false\)/, reload);
  const sleep = at(/^vcpu schedule: sleep/, unarmed);
  const leftPending = at(/^inj\d inject: deliver/, sleep);
  assert.ok(
    armed >= 0 && reload > armed && unarmed > reload && sleep > unarmed && leftPending > sleep,
    steps.join("\n"),
  );
  assert.ok(ce.trace[unarmed - 1]!.mem[0]! & 1, "the preemption's load made the vCPU resident");
});

test("every demo design is caught in every scenario", () => {
  // (The production design's clean runs are the tests above.)
  for (const design of DESIGNS.filter((d) => d !== fixedDesign)) {
    for (const scenario of SCENARIOS) {
      const ce = check(doorbellProgram(design, scenario), {
        preemptions: 2,
        shrink: 0,
      }).counterexample;
      assert.ok(ce, `${design.name} not caught in scenario ${scenario}`);
      assert.notEqual(ce.violation.kind, "exception", ce.violation.message);
    }
  }
});

test("random and PCT find the pre-fix bug too, and their tokens replay", () => {
  const program = doorbellProgram(preFixDesign, "preempt");
  for (const strategy of ["random", "pct"] as const) {
    const r = check(program, { strategy, executions: 5000, seed: 3 });
    const ce = r.counterexample;
    assert.ok(ce, `${strategy} missed it`);
    const again = replayToken(ce.token, () => program);
    assert.deepEqual(again.result.violation, ce.violation);
  }
});

test("a pre-fix token replays to the same lost wake-up, step for step", () => {
  const program = doorbellProgram(preFixDesign, "preempt");
  const ce = check(program, { preemptions: 1 }).counterexample!;
  assert.match(ce.token, /^doorbell\.pre-fix\.preempt:[a-zA-Z0-9]+$/);
  const again = replayToken(ce.token, () => program);
  assert.equal(again.result.violation?.message, ce.violation.message);
  assert.equal(formatTimeline(program, again.result.trace), formatTimeline(program, ce.trace));
});

test("the timeline shows one lane per thread and marks the preemption", () => {
  const program = doorbellProgram(preFixDesign, "preempt");
  const ce = check(program, { preemptions: 1 }).counterexample!;
  const text = formatTimeline(program, ce.trace);
  const lines = text.trimEnd().split("\n");
  assert.match(lines[0]!, /^step {2}vcpu sched inj1 inj2 +thread +action +state after$/);
  assert.equal(lines.length, ce.trace.length + 1);
  assert.equal(lines.filter((l) => /^ +\d+\*/.test(l)).length, 1, "one preemption marked");
  assert.match(text, /vcpu +schedule: sleep: wait STATE = idle: sleeps/);
  assert.match(lines.at(-1)!, /^ +\d+ {2}z .*inj\d .*PENDING=0x/);
});
