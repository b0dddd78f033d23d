import assert from "node:assert/strict";
import { test } from "node:test";
import { main } from "./main.js";
import { captureIo } from "./testing/capture.js";

const capture = captureIo;

test("check doorbell --design pre-fix exits 1 with the lost-wake-up timeline and a token", async () => {
  const io = capture();
  assert.equal(await main(["check", "doorbell", "--design", "pre-fix"], io), 1);
  const text = io.text();
  assert.match(text, /^preempt +LOST WAKE-UP/m);
  assert.match(text, /LOST WAKE-UP after 1 preemption, \d+ steps:/);
  assert.match(text, /the vCPU sleeps in WFI with PENDING=0x[1-9a-f]/);
  assert.match(text, /step {2}vcpu sched inj1 inj2/);
  assert.match(text, /put\(need_db=true\)/);
  assert.doesNotMatch(text, /^reconfig/m, "stops at the first violation");
  const token = /Replay: tsvisor check doorbell --replay (\S+)/.exec(text)?.[1];
  assert.ok(token);

  // The token replays to the same violation.
  const again = capture();
  assert.equal(await main(["check", "doorbell", "--replay", token], again), 1);
  const violation = /(the vCPU sleeps in WFI[^\n]*)/.exec(text)?.[1];
  assert.ok(violation && again.text().includes(violation), again.text());
});

test("check doorbell on the production design exits 0 with executions, states and time", async () => {
  const io = capture();
  assert.equal(await main(["check", "doorbell", "--preemptions=1"], io), 0);
  const text = io.text();
  for (const s of ["preempt", "reconfig", "pause"])
    assert.match(
      text,
      new RegExp(`^${s} +clean +[\\d,]+ executions +[\\d,]+ states .* [\\d.]+ s$`, "m"),
    );
  assert.match(text, /^total +clean .* states\/s\)$/m);
  assert.match(text, /No violation in any schedule with at most 1 preemption\./);
});

test("--json: one object with the verdict, the stats and (on failure) the trace", async () => {
  const io = capture();
  assert.equal(
    await main(["check", "doorbell", "--design=pre-fix", "--scenario=preempt", "--json"], io),
    1,
  );
  const r = JSON.parse(io.text());
  assert.equal(r.verdict, "violation");
  assert.equal(r.scenarios.length, 1);
  const ce = r.scenarios[0].counterexample;
  assert.equal(ce.violation.name, "lost-wake-up");
  assert.equal(ce.preemptions, 1);
  assert.equal(ce.trace.length, ce.steps);
  assert.match(ce.token, /^doorbell\.pre-fix\.preempt:/);

  const ok = capture();
  assert.equal(
    await main(["check", "doorbell", "--scenario", "reconfig", "--preemptions", "1", "--json"], ok),
    0,
  );
  const c = JSON.parse(ok.text());
  assert.equal(c.verdict, "clean");
  assert.ok(c.scenarios[0].stats.states > 0 && c.scenarios[0].stats.complete);
});

test("random and pct strategies find the pre-fix bug with a seed", async () => {
  for (const strategy of ["random", "pct"]) {
    const io = capture();
    assert.equal(
      await main(
        ["check", "doorbell", "--design", "pre-fix", "--strategy", strategy, "--seed", "5"],
        io,
      ),
      1,
      strategy,
    );
    assert.match(io.text(), new RegExp(`strategy: ${strategy}`));
    assert.match(io.text(), /LOST WAKE-UP after/);
  }
});

test("--list names every design with what the checker finds", async () => {
  const io = capture();
  assert.equal(await main(["check", "doorbell", "--list"], io), 0);
  for (const d of ["fixed", "pre-fix", "check-then-sleep", "notify-not-sticky"])
    assert.match(io.text(), new RegExp(`^${d} `, "m"));
});

test("--progress writes progress lines on stderr", async () => {
  const io = capture();
  assert.equal(
    await main(
      ["check", "doorbell", "--scenario", "pause", "--preemptions", "2", "--progress"],
      io,
    ),
    0,
  );
  assert.match(io.err.join(""), /pause: [\d,]+ executions, [\d,]+ states/);
});

test("bad options are usage errors; a bad token is CHECK_TOKEN", async () => {
  for (const argv of [
    ["--design", "nope"],
    ["--strategy", "bfs"],
    ["--scenario", "x"],
    ["--preemptions", "-1"],
    ["--replay", "doorbell.pre-fix.preempt:ab", "--design", "fixed"],
    ["extra"],
  ]) {
    const io = capture();
    assert.equal(await main(["check", "doorbell", ...argv], io), 2, argv.join(" "));
    assert.match(io.err.join(""), /CLI_USAGE/);
  }
  for (const token of ["garbage", "doorbell.nope.preempt:a", "doorbell.fixed.preempt:z9"]) {
    const io = capture();
    assert.equal(await main(["check", "doorbell", "--replay", token], io), 1, token);
    assert.match(io.err.join(""), /CHECK_TOKEN/);
  }
});
