import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Outbox, type Transport } from "./outbox.js";

/** The stream outbox: order kept across backpressure, and a client too far behind dropped. */

/** A transport that takes `room` chunks, then is backed up until drain() is called. */
function fakeTransport(room: number) {
  const sent: string[] = [];
  let left = room;
  let waiter: (() => void) | undefined;
  const t: Transport = {
    write: (c) => {
      sent.push(String(c));
      left--;
      return left > 0;
    },
    whenDrained: (cb) => {
      waiter = cb;
    },
  };
  return {
    t,
    sent,
    drain(newRoom: number) {
      left = newRoom;
      const w = waiter;
      waiter = undefined;
      w?.();
    },
  };
}

describe("Outbox", () => {
  it("writes through while the transport accepts, queues in order while it is backed up", () => {
    const f = fakeTransport(2);
    const box = new Outbox(f.t, 1000, () => assert.fail("dropped"));
    for (const c of ["a", "b", "c", "d"]) box.push(c);
    assert.deepEqual(f.sent, ["a", "b"]);
    assert.equal(box.queuedBytes, 2);
    f.drain(1);
    assert.deepEqual(f.sent, ["a", "b", "c"]);
    f.drain(10);
    box.push("e");
    assert.deepEqual(f.sent, ["a", "b", "c", "d", "e"]);
    assert.equal(box.queuedBytes, 0);
  });

  it("drops the queue and calls onDrop once when more than the limit waits", () => {
    const f = fakeTransport(1);
    let drops = 0;
    const box = new Outbox(f.t, 5, () => drops++);
    box.push("x");
    box.push("12345");
    assert.equal(drops, 0, "at the limit is not over it");
    box.push("6");
    assert.equal(drops, 1);
    assert.equal(box.isStopped, true);
    box.push("more");
    f.drain(10);
    assert.deepEqual(f.sent, ["x"], "nothing after the drop");
    assert.equal(drops, 1);
  });

  it("tells when everything queued has gone to the transport", () => {
    const f = fakeTransport(1);
    const box = new Outbox(f.t, 100, () => {});
    let flushed = 0;
    box.whenFlushed(() => flushed++);
    assert.equal(flushed, 1, "nothing waits: at once");
    box.push("a");
    box.push("b");
    box.whenFlushed(() => flushed++);
    assert.equal(flushed, 1);
    f.drain(5);
    assert.equal(flushed, 2);
  });

  it("delivers every chunk exactly once, in order, for any pattern of backpressure", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(0)), { maxLength: 60 }),
        (steps) => {
          const f = fakeTransport(1);
          const box = new Outbox(f.t, 1e9, () => assert.fail("dropped"));
          let n = 0;
          for (const s of steps) {
            if (s === 0) f.drain(3);
            else for (let i = 0; i < s; i++) box.push(`${n++},`);
          }
          for (let i = 0; i < n + 1; i++) f.drain(n + 1);
          assert.deepEqual(
            f.sent,
            Array.from({ length: n }, (_, i) => `${i},`),
          );
        },
      ),
    );
  });
});
