import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import { ADMISSION, admit, VM_ACTIONS, VM_STATES } from "./admission.js";
import { ConsoleBuffer } from "./console-buffer.js";
import { EventLog } from "./event-log.js";
import type { HostEvent } from "./types.js";

const draft = (vm: string) => ({ type: "vm.created" as const, vm, vmid: null });

describe("EventLog", () => {
  it("numbers events from 1 without gaps and stamps each with the clock", () => {
    let t = 0;
    const log = new EventLog(10, () => `t${t++}`);
    const a = log.append(draft("vm-1"));
    const b = log.append(draft("vm-2"));
    assert.deepEqual([a.seq, b.seq, log.nextSeq], [1, 2, 3]);
    assert.deepEqual([a.time, b.time], ["t0", "t1"]);
  });

  it("resuming from any retained cursor yields exactly the events after it, in order", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.constantFrom("a", "b", "c"), { maxLength: 60 }),
        fc.nat(),
        fc.option(fc.constantFrom("a", "b", "c"), { nil: undefined }),
        (retention, vms, pick, vm) => {
          const log = new EventLog(retention, () => "t");
          for (const v of vms) log.append(draft(v));
          const latest = log.nextSeq - 1;
          const oldest = log.oldestSeq;
          const since = Math.max(oldest - 1, 0) + (pick % (latest - Math.max(oldest - 1, 0) + 1));
          const got = log.since(since, vm);
          const want: number[] = [];
          for (let s = since + 1; s <= latest; s++)
            if (vm === undefined || vms[s - 1] === vm) want.push(s);
          assert.deepEqual(
            got.map((e) => e.seq),
            want,
          );
          assert.ok(got.every((e) => e.vm === vms[e.seq - 1]));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses a cursor older than what it keeps with API_CURSOR_EXPIRED", () => {
    const log = new EventLog(3);
    for (let i = 0; i < 5; i++) log.append(draft("a"));
    assert.equal(log.oldestSeq, 3);
    assert.equal(log.since(2).length, 3, "cursor 2 still has every later event");
    assert.throws(
      () => log.since(1),
      (e) => isTsvisorError(e, "API_CURSOR_EXPIRED"),
    );
  });

  it("refuses a cursor from the future and a negative one with API_VALIDATION", () => {
    const log = new EventLog(3);
    log.append(draft("a"));
    assert.throws(
      () => log.since(2),
      (e) => isTsvisorError(e, "API_VALIDATION"),
    );
    assert.throws(
      () => log.since(-1),
      (e) => isTsvisorError(e, "API_VALIDATION"),
    );
    assert.equal(log.since(1).length, 0);
  });

  it("a subscriber gets the backlog then live events once each, even if it appends while replaying", () => {
    const log = new EventLog(100);
    log.append(draft("a"));
    log.append(draft("b"));
    const seen: HostEvent[] = [];
    const stop = log.subscribe({ since: 0 }, (e) => {
      seen.push(e);
      if (e.seq === 1) log.append(draft("c"));
    });
    log.append(draft("d"));
    stop();
    log.append(draft("e"));
    assert.deepEqual(
      seen.map((e) => e.seq),
      [1, 2, 3, 4],
    );
    assert.equal(log.subscribers, 0);
  });

  it("a filtered subscriber sees only its VM", () => {
    const log = new EventLog(100);
    const seen: string[] = [];
    const stop = log.subscribe({ vm: "b" }, (e) => seen.push(e.vm));
    for (const v of ["a", "b", "a", "b"]) log.append(draft(v));
    stop();
    assert.deepEqual(seen, ["b", "b"]);
  });
});

describe("ConsoleBuffer", () => {
  it("keeps exactly the last `capacity` bytes of everything written", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.uint8Array({ maxLength: 50 }), { maxLength: 20 }),
        (capacity, chunks) => {
          const c = new ConsoleBuffer(capacity);
          for (const ch of chunks) c.write(ch);
          const all = Buffer.concat(chunks);
          assert.deepEqual(
            Buffer.from(c.history()),
            all.subarray(Math.max(0, all.length - capacity)),
          );
          assert.equal(c.written, all.length);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("gives a listener the history first, then live chunks, then the end", () => {
    const c = new ConsoleBuffer(16);
    c.write(new TextEncoder().encode("old"));
    const got: string[] = [];
    let ended = false;
    c.attach({ data: (b) => got.push(Buffer.from(b).toString()), end: () => (ended = true) }, true);
    c.write(new TextEncoder().encode("new"));
    c.end();
    c.write(new TextEncoder().encode("late"));
    assert.deepEqual(got, ["old", "new"]);
    assert.ok(ended);
    assert.equal(c.listenerCount, 0);
  });

  it("ends a listener at once when the VM is already gone", () => {
    const c = new ConsoleBuffer(16);
    c.end();
    let ended = false;
    c.attach({ data: () => {}, end: () => (ended = true) }, false);
    assert.ok(ended);
  });
});

describe("the VM admission table", () => {
  // Written independently of admission.ts: which (action, state) pairs go ahead.
  const allowed: Record<string, readonly string[]> = {
    start: ["created"],
    stop: ["running", "stopping"],
    reset: ["created", "running", "exited"],
    destroy: ["created", "running", "stopping", "exited"],
  };
  const inFlight = ["creating", "starting", "resetting", "destroying"];

  for (const action of VM_ACTIONS) {
    for (const state of VM_STATES) {
      const ok = allowed[action]!.includes(state);
      it(`${action} in state ${state} is ${ok ? "admitted" : "refused"}`, () => {
        if (ok) {
          assert.equal(ADMISSION[action][state], "ok");
          admit(action, state, "vm-1");
          return;
        }
        const code =
          state === "destroyed" ? "API_VM_GONE" : inFlight.includes(state) ? "API_BUSY" : undefined;
        assert.throws(
          () => admit(action, state, "vm-1"),
          (e) =>
            isTsvisorError(e) &&
            (code ? e.code === code : e.code === "API_STATE" || e.code === "API_BUSY") &&
            e.message.startsWith(`${action} vm-1: `),
        );
      });
    }
  }
});
