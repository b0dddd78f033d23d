import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import { createMsgqLink, MessageQueue } from "./msgq.js";
import { settle } from "./testkit.js";

const msg = (n: number, size = 8) => new Uint8Array(size).fill(n & 0xff);
const microtasks = () => new Promise<void>((r) => setImmediate(r));

test("send() reports not-full until the eighth message fills a depth-8 queue", () => {
  const q = new MessageQueue();
  const flags: boolean[] = [];
  for (let i = 0; i < 8; i++) flags.push(q.send(msg(i)));
  assert.deepEqual(flags, [true, true, true, true, true, true, true, false]);
  assert.equal(q.full, true);
});

test("send() into a full queue throws RPC_QUEUE_FULL and keeps the queue unchanged", () => {
  const q = new MessageQueue({ depth: 2 });
  q.send(msg(1));
  q.send(msg(2));
  assert.throws(
    () => q.send(msg(3)),
    (e) => isTsvisorError(e, "RPC_QUEUE_FULL"),
  );
  assert.equal(q.count, 2);
  assert.deepEqual(q.receive().msg, msg(1));
});

test("receive() returns messages in order with not-empty, then throws RPC_QUEUE_EMPTY", () => {
  const q = new MessageQueue();
  q.send(msg(1));
  q.send(msg(2));
  assert.deepEqual(q.receive(), { msg: msg(1), notEmpty: true });
  assert.deepEqual(q.receive(), { msg: msg(2), notEmpty: false });
  assert.throws(
    () => q.receive(),
    (e) => isTsvisorError(e, "RPC_QUEUE_EMPTY"),
  );
});

test("a 240-byte message fits and a 241-byte message is refused with PROTO_TOO_LONG", () => {
  const q = new MessageQueue();
  q.send(new Uint8Array(240));
  assert.throws(
    () => q.send(new Uint8Array(241)),
    (e) => isTsvisorError(e, "PROTO_TOO_LONG"),
  );
  assert.equal(q.count, 1);
});

test("the queue keeps its own copy of a sent message", () => {
  const q = new MessageQueue();
  const m = msg(7);
  q.send(m);
  m.fill(0);
  assert.deepEqual(q.receive().msg, msg(7));
});

test("depth is configurable up to 256 and refused above", () => {
  const q = new MessageQueue({ depth: 256 });
  for (let i = 0; i < 255; i++) assert.equal(q.send(msg(i)), true);
  assert.equal(q.send(msg(255)), false);
  assert.throws(() => new MessageQueue({ depth: 257 }));
  assert.throws(() => new MessageQueue({ depth: 0 }));
});

test("not-empty is signalled when the count reaches 1, not for later sends without PUSH", async () => {
  const q = new MessageQueue();
  let signals = 0;
  q.onNotEmpty = () => signals++;
  q.send(msg(1));
  assert.equal(signals, 0, "signals are asynchronous");
  await microtasks();
  assert.equal(signals, 1);
  q.send(msg(2));
  q.send(msg(3));
  await microtasks();
  assert.equal(signals, 1);
});

test("PUSH signals not-empty even above the threshold", async () => {
  const q = new MessageQueue();
  let signals = 0;
  q.onNotEmpty = () => signals++;
  q.send(msg(1));
  await microtasks();
  q.send(msg(2), { push: true });
  await microtasks();
  assert.equal(signals, 2);
});

test("assertions raised before delivery arrive as one signal, like a pending interrupt", async () => {
  const q = new MessageQueue();
  let signals = 0;
  q.onNotEmpty = () => signals++;
  q.send(msg(1), { push: true });
  q.send(msg(2), { push: true });
  q.send(msg(3), { push: true });
  await microtasks();
  assert.equal(signals, 1);
});

test("not-full is signalled only when a receive takes a full queue to depth - 1", async () => {
  const q = new MessageQueue({ depth: 3 });
  let signals = 0;
  q.onNotFull = () => signals++;
  q.send(msg(1));
  q.send(msg(2));
  q.receive(); // 2 → 1: the queue was not full
  await microtasks();
  assert.equal(signals, 0);
  q.send(msg(3));
  q.send(msg(4)); // full
  q.receive(); // 3 → 2
  await microtasks();
  assert.equal(signals, 1);
  q.receive(); // 2 → 1
  await microtasks();
  assert.equal(signals, 1);
});

test("a queue behaves like a bounded FIFO for any sequence of sends and receives", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 10 }),
      fc.array(fc.oneof(fc.constant("recv" as const), fc.integer({ min: 0, max: 255 })), {
        maxLength: 60,
      }),
      (depth, ops) => {
        const q = new MessageQueue({ depth });
        const model: number[] = [];
        for (const op of ops) {
          if (op === "recv") {
            if (model.length === 0) {
              assert.throws(
                () => q.receive(),
                (e) => isTsvisorError(e, "RPC_QUEUE_EMPTY"),
              );
            } else {
              const want = model.shift()!;
              const got = q.receive();
              assert.equal(got.msg[0], want);
              assert.equal(got.notEmpty, model.length > 0);
            }
          } else if (model.length === depth) {
            assert.throws(
              () => q.send(msg(op, 1)),
              (e) => isTsvisorError(e, "RPC_QUEUE_FULL"),
            );
          } else {
            model.push(op);
            assert.equal(q.send(msg(op, 1)), model.length < depth);
          }
          assert.equal(q.count, model.length);
        }
      },
    ),
    { numRuns: 200 },
  );
});

test("a msgq link carries messages both ways between its endpoints", async () => {
  const link = createMsgqLink();
  const atServer: Uint8Array[] = [];
  const atClient: Uint8Array[] = [];
  const noop = { writable() {}, close() {} };
  link.server.start({ ...noop, message: (m) => atServer.push(m) });
  link.client.start({ ...noop, message: (m) => atClient.push(m) });
  link.client.send(msg(1));
  link.client.send(msg(2), true);
  link.server.send(msg(3));
  await settle();
  assert.deepEqual(atServer, [msg(1), msg(2)]);
  assert.deepEqual(atClient, [msg(3)]);
});

test("a paused endpoint leaves messages in the queue until resumed, and the sender sees it full", async () => {
  const link = createMsgqLink({ depth: 2 });
  const got: Uint8Array[] = [];
  let writable = 0;
  link.server.start({ message: (m) => got.push(m), writable() {}, close() {} });
  link.client.start({ message() {}, writable: () => writable++, close() {} });
  link.server.pause();
  link.client.send(msg(1));
  assert.equal(link.client.send(msg(2)), false);
  assert.equal(link.client.writable, false);
  await settle();
  assert.deepEqual(got, []);
  link.server.resume();
  await settle();
  assert.deepEqual(got, [msg(1), msg(2)]);
  assert.equal(writable, 1);
  assert.equal(link.client.writable, true);
});

test("closing a link tells both ends once, with the reason, and later sends throw RPC_CLOSED", async () => {
  const link = createMsgqLink();
  const reasons: unknown[] = [];
  const h = (side: string) => ({
    message() {},
    writable() {},
    close: (r: unknown) => reasons.push([side, (r as { code?: string } | undefined)?.code]),
  });
  link.server.start(h("server"));
  link.client.start(h("client"));
  link.client.send(msg(1));
  const { TsvisorError } = await import("../core/errors.js");
  link.client.close(new TsvisorError("RPC_ABORTED"));
  link.client.close();
  await settle();
  assert.deepEqual(reasons.sort(), [
    ["client", "RPC_ABORTED"],
    ["server", "RPC_ABORTED"],
  ]);
  assert.equal(link.toServer.count, 0);
  assert.throws(
    () => link.server.send(msg(2)),
    (e) => isTsvisorError(e, "RPC_CLOSED"),
  );
});
