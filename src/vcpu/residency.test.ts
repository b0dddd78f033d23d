import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import {
  afterLoad,
  afterPut,
  afterWfiEntry,
  afterWfiExit,
  describeResidencyState,
  Residency,
  ResidencyWord,
  RING_ONE,
  ringCount,
  VcpuRequest,
  VcpuResidency,
} from "./residency.js";

const { RESIDENT, IN_WFI, DB_ARMED } = Residency;

const { STATE, PENDING, REQUESTS } = ResidencyWord;

function make() {
  const buffer = VcpuResidency.allocate();
  let kicks = 0;
  const r = new VcpuResidency(buffer, () => {
    kicks++;
  });
  const words = new Int32Array(buffer);
  return { r, words, kicks: () => kicks };
}

test("load makes the vCPU resident once; put makes it non-resident without a doorbell", () => {
  const { r, words } = make();
  assert.equal(r.load(), "loaded");
  assert.equal(r.load(), "already-resident");
  assert.equal(words[STATE], RESIDENT);
  r.put();
  assert.equal(words[STATE], 0, "not in WFI: no doorbell");
});

test("an injection into a resident vCPU publishes, sets the sticky KICK and kicks", () => {
  const { r, words, kicks } = make();
  r.load();
  assert.equal(r.inject(0b100), "kicked");
  assert.equal(kicks(), 1);
  assert.equal(words[PENDING], 0b100);
  assert.equal(r.takeRequests(VcpuRequest.KICK), VcpuRequest.KICK);
  assert.equal(r.takeRequests(VcpuRequest.KICK), 0, "taken once");
  assert.equal(r.takePending(), 0b100);
  assert.equal(words[PENDING], 0);
});

test("takePending takes only the bits in the mask", () => {
  const { r } = make();
  r.inject(0b1011);
  assert.equal(r.takePending(0b0011), 0b0011);
  assert.equal(r.takePending(), 0b1000);
});

test("neither resident nor in WFI: the bits stay pending and the next reload kicks", () => {
  const { r, kicks } = make();
  r.load();
  r.put();
  assert.equal(r.inject(1), "left-pending");
  assert.equal(kicks(), 0);
  assert.equal(r.reload(), "loaded");
  assert.equal(kicks(), 1, "a load by another thread flushes what piled up");
  assert.equal(r.takeRequests(VcpuRequest.KICK), VcpuRequest.KICK);
});

test("while IN_WFI: load is refused, put keeps the doorbell, an injection rings it", () => {
  const { r, words, kicks } = make();
  // As the vCPU leaves it while it sleeps in WFI.
  Atomics.store(words, STATE, IN_WFI | DB_ARMED);
  assert.equal(r.load(), "refused-in-wfi");
  assert.equal(r.reload(), "refused-in-wfi");
  assert.equal(words[STATE], IN_WFI | DB_ARMED, "reconfiguration kept the doorbell armed");
  r.pause();
  assert.equal(words[STATE]! & (IN_WFI | DB_ARMED | RESIDENT), IN_WFI | DB_ARMED);
  assert.equal(r.resume(), "refused-in-wfi");
  assert.equal(r.inject(2), "rang");
  assert.equal(r.inject(4), "rang", "the doorbell stays armed: every injection rings");
  assert.equal(ringCount(words[STATE]!), 2);
  assert.equal(kicks(), 1, "only pause kicked");
  assert.equal(r.ring(), true);
  Atomics.store(words, STATE, RESIDENT);
  assert.equal(r.ring(), false, "a resident vCPU has no doorbell");
});

test("wfi returns at once when an interrupt or a wake request is pending, resident again", () => {
  const { r, words } = make();
  r.load();
  r.inject(1);
  assert.equal(r.wfi(), "interrupt");
  assert.equal(words[STATE]! & 0xff, RESIDENT);
  r.takePending();
  r.request(VcpuRequest.STOP);
  assert.equal(r.wfi(), "request");
  assert.equal(r.waitWhilePaused(), false, "STOP ends a pause wait");
});

test("pause/resume: sticky PAUSE and a kick; resume clears it and loads", () => {
  const { r, words, kicks } = make();
  r.load();
  r.pause();
  assert.equal(words[REQUESTS]! & VcpuRequest.PAUSE, VcpuRequest.PAUSE);
  assert.equal(words[STATE], 0);
  assert.equal(kicks(), 1);
  assert.equal(r.resume(), "loaded");
  assert.equal(r.waitWhilePaused(), true);
  assert.equal(words[STATE], RESIDENT);
});

test("the transitions keep the invariant and the ring count (all 2^32 words, sampled)", () => {
  fc.assert(
    fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (s) => {
      const rings = ringCount(s);
      for (const t of [afterPut(s), afterLoad(s), afterWfiEntry(s), afterWfiExit(s)])
        assert.equal(ringCount(t), rings);
      // put arms the doorbell iff IN_WFI, and is never resident.
      const p = afterPut(s);
      assert.equal((p & RESIDENT) === 0, true);
      assert.equal((p & DB_ARMED) !== 0, (s & IN_WFI) !== 0);
      // WFI entry establishes "IN_WFI ⇒ ¬resident ∧ armed" in one step.
      const e = afterWfiEntry(s);
      assert.equal(e & (IN_WFI | RESIDENT | DB_ARMED), IN_WFI | DB_ARMED);
      assert.equal(afterWfiExit(s) & (IN_WFI | DB_ARMED), 0);
      assert.equal(afterLoad(s) & (RESIDENT | DB_ARMED), RESIDENT);
    }),
  );
  assert.equal(
    describeResidencyState(IN_WFI | DB_ARMED | (3 * RING_ONE)),
    "IN_WFI|DB_ARMED rings=3",
  );
  assert.equal(describeResidencyState(0), "idle");
});

test("snapshot reads the three words for a stall report", () => {
  const { r } = make();
  r.load();
  r.inject(5);
  assert.equal(r.snapshot().text, "RESIDENT pending=0x5 requests=0x1");
});

test("real threads: every injection reaches a vCPU worker halting in WFI, across reloads and pauses", {
  timeout: 60_000,
}, async () => {
  const rounds = 3000;
  const residency = VcpuResidency.allocate();
  const ack = new SharedArrayBuffer(4);
  const acks = new Int32Array(ack);
  const r = new VcpuResidency(residency);
  const worker = new Worker(new URL("../check/testing/residency-worker.js", import.meta.url), {
    workerData: { residency, ack, rounds },
  });
  // Listen before the last acknowledgement: the worker posts right after it.
  const finished = once(worker, "message");
  try {
    for (let i = 1; i <= rounds; i++) {
      r.inject(1 << (i % 8));
      if (i % 7 === 0) r.reload();
      if (i % 11 === 0) {
        r.pause();
        r.resume();
      }
      // Wait for this round's acknowledgement; a lost wake-up hangs here (test timeout).
      for (;;) {
        const seen = Atomics.load(acks, 0);
        if (seen >= i) break;
        const w = Atomics.waitAsync(acks, 0, seen);
        if (w.async) await w.value;
      }
    }
    const [result] = (await finished) as [{ done: number; wfis: number }];
    assert.equal(result.done, rounds);
    assert.ok(result.wfis > 0, "the vCPU never halted: the test proved nothing");
    assert.equal(r.snapshot().pending, 0);
  } finally {
    await worker.terminate();
  }
});
