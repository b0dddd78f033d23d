import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import { RmMsgqDeviceEndpoint } from "../rpc/device-endpoint.js";
import {
  createRmMsgqShared,
  RM_MSGQ_DEPTH,
  RM_MSGQ_ID,
  RM_MSGQ_MMIO_BASE,
  RM_MSGQ_MSG_SIZE,
  RmMsgqDevice,
  RmMsgqError,
  RmMsgqReg,
  RmMsgqStatus,
} from "./rm-msgq.js";
import { buildBus } from "./specs.js";
import { HostRecorder, MsgqGuest } from "./testing/msgq-guest.js";

function setup() {
  const shared = createRmMsgqShared();
  const guest = new MsgqGuest(new RmMsgqDevice(shared));
  const host = new HostRecorder();
  const endpoint = new RmMsgqDeviceEndpoint(shared, host.raiseIrq, "test-msgq");
  return { shared, guest, host, endpoint };
}

const bytes = (n: number, seed = 0) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

test("identification and geometry registers read their documented values", () => {
  const { guest } = setup();
  assert.equal(guest.r32(RmMsgqReg.ID), RM_MSGQ_ID);
  assert.equal(guest.r32(RmMsgqReg.VERSION), 1);
  assert.equal(guest.r32(RmMsgqReg.DEPTH), RM_MSGQ_DEPTH);
  assert.equal(guest.r32(RmMsgqReg.MSG_SIZE), RM_MSGQ_MSG_SIZE);
  assert.equal(guest.status, RmMsgqStatus.TX_NOT_FULL, "fresh: RX empty, TX has room");
  for (const r of [RmMsgqReg.TX_LEN, RmMsgqReg.RX_LEN, RmMsgqReg.TX_COUNT, RmMsgqReg.RX_COUNT]) {
    assert.equal(guest.r32(r), 0);
  }
});

test("reads at any width and offset see the little-endian register image; reserved space reads 0", () => {
  const { guest } = setup();
  assert.deepEqual([...guest.read(RmMsgqReg.ID, 1)], [0x52]);
  assert.deepEqual([...guest.read(RmMsgqReg.ID + 1, 2)], [0x4d, 0x51]);
  assert.deepEqual([...guest.read(RmMsgqReg.ID, 8)], [0x52, 0x4d, 0x51, 0x31, 1, 0, 0, 0]);
  for (const off of [RmMsgqReg.TX_SEND, RmMsgqReg.RX_POP, 0x038, 0x0fc, 0x2f0, 0x800, 0xff8]) {
    assert.deepEqual(
      [...guest.read(off, 8)],
      [0, 0, 0, 0, 0, 0, 0, 0],
      `offset 0x${off.toString(16)}`,
    );
  }
  assert.equal(guest.r32(RmMsgqReg.ERROR), 0, "reads have no side effects");
});

test("the bus places the device at RM_MSGQ_MMIO_BASE, or at the spec's base", () => {
  const shared = createRmMsgqShared();
  const bus = buildBus([{ kind: "rm-msgq", shared }]);
  const id = new Uint8Array(4);
  bus.mmioRead(RM_MSGQ_MMIO_BASE, id);
  assert.deepEqual([...id], [0x52, 0x4d, 0x51, 0x31]);
  const moved = buildBus([{ kind: "rm-msgq", shared, base: 0xd000_0000 }]);
  moved.mmioRead(0xd000_0000, id);
  assert.deepEqual([...id], [0x52, 0x4d, 0x51, 0x31]);
  assert.equal(moved.unclaimed.mmioReads, 0);
});

test("a buffer that is not an RM msgq buffer is refused with DEV_CONFIG", () => {
  for (const sab of [
    new SharedArrayBuffer(16),
    new SharedArrayBuffer(createRmMsgqShared().byteLength),
  ]) {
    assert.throws(
      () => new RmMsgqDevice(sab),
      (e: unknown) => isTsvisorError(e, "DEV_CONFIG"),
    );
  }
});

test("a TX_LEN above 240 is refused, TX_LEN keeps its value and ERROR says why until written", () => {
  const { guest } = setup();
  guest.w32(RmMsgqReg.TX_LEN, 12);
  guest.w32(RmMsgqReg.TX_LEN, 241);
  assert.equal(guest.r32(RmMsgqReg.TX_LEN), 12);
  assert.equal(guest.r32(RmMsgqReg.ERROR), RmMsgqError.TX_LEN_INVALID);
  assert.ok(guest.status & RmMsgqStatus.ERROR);
  assert.equal(guest.r32(RmMsgqReg.ERROR_COUNT), 1);
  guest.w32(RmMsgqReg.ERROR, 0xffff_ffff);
  assert.equal(guest.r32(RmMsgqReg.ERROR), 0);
  assert.equal(guest.status & RmMsgqStatus.ERROR, 0);
  assert.equal(guest.r32(RmMsgqReg.ERROR_COUNT), 1, "the count is cumulative");
});

test("TX_SEND with nothing staged sends nothing (TX_EMPTY); a sent message clears TX_LEN", () => {
  const { guest } = setup();
  guest.w32(RmMsgqReg.TX_SEND, 1);
  assert.equal(guest.takeError(), RmMsgqError.TX_EMPTY);
  assert.equal(guest.r32(RmMsgqReg.TX_COUNT), 0);
  assert.equal(guest.send(bytes(12)), 0);
  assert.equal(guest.r32(RmMsgqReg.TX_LEN), 0);
  assert.equal(guest.r32(RmMsgqReg.TX_COUNT), 1);
  guest.w32(RmMsgqReg.TX_SEND, 1);
  assert.equal(guest.takeError(), RmMsgqError.TX_EMPTY, "a second TX_SEND does not resend");
});

test("the ninth unread message is refused with TX_FULL and kept staged for a retry", async () => {
  const { guest, host, endpoint } = setup();
  for (let i = 0; i < RM_MSGQ_DEPTH; i++) {
    assert.ok(guest.status & RmMsgqStatus.TX_NOT_FULL);
    assert.equal(guest.send(bytes(16, i)), 0);
  }
  assert.equal(guest.status & RmMsgqStatus.TX_NOT_FULL, 0);
  assert.equal(guest.send(bytes(20, 99)), RmMsgqError.TX_FULL);
  assert.equal(guest.r32(RmMsgqReg.TX_LEN), 20, "the refused message is still staged");
  assert.equal(guest.r32(RmMsgqReg.TX_COUNT), RM_MSGQ_DEPTH);
  endpoint.start(host);
  await host.when(() => host.messages.length === RM_MSGQ_DEPTH);
  assert.equal(guest.r32(RmMsgqReg.TX_COUNT), 0);
  guest.w32(RmMsgqReg.TX_SEND, 0);
  assert.equal(guest.takeError(), 0);
  await host.when(() => host.messages.length === RM_MSGQ_DEPTH + 1);
  assert.deepEqual(host.messages.at(-1), bytes(20, 99));
  endpoint.close();
});

test("accesses the layout does not allow are ignored and reported as BAD_ACCESS", () => {
  const { guest } = setup();
  const cases: [string, number, Uint8Array][] = [
    ["8-byte register write", RmMsgqReg.TX_LEN, new Uint8Array(8)],
    ["misaligned register write", RmMsgqReg.TX_LEN + 1, new Uint8Array([1])],
    ["write to read-only STATUS", RmMsgqReg.STATUS, new Uint8Array(4)],
    ["write to ID", RmMsgqReg.ID, new Uint8Array(4)],
    ["write to a reserved register", 0x0f0, new Uint8Array(4)],
    ["write crossing the TX window's end", RmMsgqReg.TX_BUF + 236, new Uint8Array(8).fill(9)],
    ["write to the RX window", RmMsgqReg.RX_BUF, new Uint8Array(4)],
    ["write past the windows", 0xff8, new Uint8Array(8)],
  ];
  for (const [what, off, data] of cases) {
    const before = [...guest.read(RmMsgqReg.TX_BUF + 232, 8)];
    guest.write(off, data);
    assert.equal(guest.takeError(), RmMsgqError.BAD_ACCESS, what);
    assert.deepEqual([...guest.read(RmMsgqReg.TX_BUF + 232, 8)], before, `${what}: TX_BUF intact`);
  }
  assert.equal(guest.r32(RmMsgqReg.TX_LEN), 0);
  assert.equal(guest.status, RmMsgqStatus.TX_NOT_FULL);
});

test("narrow register writes are zero-extended", () => {
  const { guest } = setup();
  guest.write(RmMsgqReg.TX_LEN, new Uint8Array([200]));
  assert.equal(guest.r32(RmMsgqReg.TX_LEN), 200);
  guest.write(RmMsgqReg.TX_LEN, new Uint8Array([0xf0, 0]));
  assert.equal(guest.r32(RmMsgqReg.TX_LEN), 240);
});

test("RX: the host's message shows in RX_LEN and RX_BUF, reads past its end give 0, RX_POP removes it", () => {
  const { guest, endpoint } = setup();
  guest.w32(RmMsgqReg.RX_POP, 1);
  assert.equal(guest.takeError(), RmMsgqError.RX_EMPTY);
  endpoint.send(bytes(10, 3));
  endpoint.send(bytes(240, 4));
  assert.ok(guest.status & RmMsgqStatus.RX_NOT_EMPTY);
  assert.equal(guest.r32(RmMsgqReg.RX_COUNT), 2);
  assert.equal(guest.r32(RmMsgqReg.RX_LEN), 10);
  assert.deepEqual([...guest.read(RmMsgqReg.RX_BUF + 8, 4)], [...bytes(10, 3).subarray(8), 0, 0]);
  assert.deepEqual(guest.receive(), bytes(10, 3));
  assert.deepEqual(guest.receive(), bytes(240, 4));
  assert.equal(guest.receive(), undefined);
  assert.equal(guest.r32(RmMsgqReg.RX_LEN), 0);
  assert.deepEqual([...guest.read(RmMsgqReg.RX_BUF, 8)], [0, 0, 0, 0, 0, 0, 0, 0]);
  endpoint.close();
});

test("after the host closes the link, STATUS shows LINK_DOWN and sends are refused", () => {
  const { guest, endpoint } = setup();
  endpoint.close();
  assert.ok(guest.status & RmMsgqStatus.LINK_DOWN);
  assert.equal(guest.send(bytes(8)), RmMsgqError.LINK_DOWN);
  assert.equal(guest.r32(RmMsgqReg.TX_COUNT), 0);
});

test("two device instances over one buffer (two vCPUs) share one register file", () => {
  const shared = createRmMsgqShared();
  const a = new MsgqGuest(new RmMsgqDevice(shared));
  const b = new MsgqGuest(new RmMsgqDevice(shared));
  a.write(RmMsgqReg.TX_BUF, bytes(8, 5));
  b.w32(RmMsgqReg.TX_LEN, 8);
  a.w32(RmMsgqReg.TX_SEND, 0);
  assert.equal(b.r32(RmMsgqReg.TX_COUNT), 1);
  assert.equal(b.r32(RmMsgqReg.ERROR), 0);
});

// ---- Any sequence of guest accesses and host actions keeps the rings consistent ----

const REGS = Object.values(RmMsgqReg);
type Op =
  | { readonly op: "write"; readonly offset: number; readonly data: Uint8Array }
  | { readonly op: "reg"; readonly offset: number; readonly value: number }
  | { readonly op: "read"; readonly offset: number; readonly size: number }
  | { readonly op: "guestSend"; readonly len: number; readonly seed: number; readonly n: number }
  | { readonly op: "guestPop" }
  | { readonly op: "hostSend"; readonly len: number; readonly seed: number; readonly n: number }
  | { readonly op: "hostDrain" }
  | { readonly op: "close" };

const offsetArb = fc.oneof(
  fc.constantFrom(...REGS, 0x1e8, 0x1ec, 0x1ef, 0x2ec, 0x0fc, 0xffc),
  fc.integer({ min: 0, max: 0xfff }),
);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("write" as const),
      offset: offsetArb,
      data: fc.uint8Array({ minLength: 1, maxLength: 8 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("reg" as const),
      offset: fc.constantFrom(...REGS.filter((r) => r < 0x100)),
      value: fc.oneof(fc.integer({ min: 0, max: 250 }), fc.nat({ max: 0xffff_ffff })),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("read" as const),
      offset: offsetArb,
      size: fc.constantFrom(1, 2, 4, 8),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("guestSend" as const),
      len: fc.integer({ min: 0, max: 244 }),
      seed: fc.nat(255),
      // Bursts reach the full and one-past-full edges often.
      n: fc.integer({ min: 1, max: 10 }),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ op: "guestPop" as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("hostSend" as const),
      len: fc.integer({ min: 0, max: 244 }),
      seed: fc.nat(255),
      n: fc.integer({ min: 1, max: 10 }),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ op: "hostDrain" as const }) },
  { weight: 1, arbitrary: fc.constant({ op: "close" as const }) },
);

/** What the device must hold, computed independently from its documentation. */
class Model {
  staging = new Uint8Array(240);
  txLen = 0;
  error = 0;
  errors = 0;
  irqEnable = 0;
  closed = false;
  /** Sent by the guest, not yet delivered to the host. */
  tx: Uint8Array[] = [];
  delivered: Uint8Array[] = [];
  /** Sent by the host, not yet popped by the guest. */
  rx: Uint8Array[] = [];

  fail(code: number): void {
    this.error = code;
    this.errors++;
  }

  write(offset: number, data: Uint8Array): void {
    if (offset >= 0x100 && offset < 0x1f0) {
      if (offset + data.length > 0x1f0) this.fail(RmMsgqError.BAD_ACCESS);
      else this.staging.set(data, offset - 0x100);
      return;
    }
    if (offset >= 0x100 || offset % 4 !== 0 || data.length > 4) {
      this.fail(RmMsgqError.BAD_ACCESS);
      return;
    }
    let v = 0;
    for (let i = data.length - 1; i >= 0; i--) v = v * 256 + data[i]!;
    this.reg(offset, v);
  }

  reg(offset: number, v: number): void {
    switch (offset) {
      case RmMsgqReg.IRQ_ENABLE:
        this.irqEnable = v & 1;
        return;
      case RmMsgqReg.ERROR:
        this.error = 0;
        return;
      case RmMsgqReg.TX_LEN:
        if (v > 240) this.fail(RmMsgqError.TX_LEN_INVALID);
        else this.txLen = v;
        return;
      case RmMsgqReg.TX_SEND:
        if (this.closed) this.fail(RmMsgqError.LINK_DOWN);
        else if (this.txLen === 0) this.fail(RmMsgqError.TX_EMPTY);
        else if (this.tx.length >= 8) this.fail(RmMsgqError.TX_FULL);
        else {
          this.tx.push(this.staging.slice(0, this.txLen));
          this.txLen = 0;
        }
        return;
      case RmMsgqReg.RX_POP:
        if (this.rx.length === 0) this.fail(RmMsgqError.RX_EMPTY);
        else this.rx.shift();
        return;
      default:
        this.fail(RmMsgqError.BAD_ACCESS);
    }
  }
}

test("property: any sequence of register accesses and host actions keeps both rings consistent", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { maxLength: 60 }), async (ops) => {
      const { guest, host, endpoint } = setup();
      const m = new Model();
      endpoint.start(host);
      endpoint.pause();
      try {
        for (const o of ops) {
          switch (o.op) {
            case "write":
              guest.write(o.offset, o.data);
              m.write(o.offset, o.data);
              break;
            case "reg":
              guest.w32(o.offset, o.value);
              m.reg(o.offset, o.value);
              break;
            case "read":
              guest.read(o.offset, o.size);
              break;
            case "guestSend":
              for (let k = 0; k < o.n; k++) {
                const msg = bytes(o.len, o.seed + k);
                for (let at = 0; at < msg.length; at += 8) {
                  const part = msg.subarray(at, Math.min(at + 8, msg.length));
                  guest.write(RmMsgqReg.TX_BUF + at, part);
                  m.write(RmMsgqReg.TX_BUF + at, part);
                }
                guest.w32(RmMsgqReg.TX_LEN, o.len);
                m.reg(RmMsgqReg.TX_LEN, o.len);
                guest.w32(RmMsgqReg.TX_SEND, 1);
                m.reg(RmMsgqReg.TX_SEND, 1);
              }
              break;
            case "guestPop": {
              const expected = m.rx[0];
              const got = guest.receive();
              if (expected === undefined) assert.equal(got, undefined);
              else {
                assert.deepEqual(got, expected, "the guest reads the host's oldest message");
                m.rx.shift();
              }
              break;
            }
            case "hostSend":
              for (let k = 0; k < o.n; k++) {
                const msg = bytes(o.len, o.seed + k);
                const expectFail = m.closed
                  ? "RPC_CLOSED"
                  : o.len > 240
                    ? "PROTO_TOO_LONG"
                    : m.rx.length >= 8
                      ? "RPC_QUEUE_FULL"
                      : undefined;
                if (expectFail) {
                  assert.throws(
                    () => endpoint.send(msg),
                    (e: unknown) => isTsvisorError(e, expectFail),
                  );
                } else {
                  assert.equal(endpoint.send(msg), m.rx.length + 1 < 8, "send returns not-full");
                  m.rx.push(msg);
                }
              }
              break;
            case "hostDrain":
              if (m.closed) break;
              endpoint.resume();
              m.delivered.push(...m.tx.splice(0));
              await host.when(() => host.messages.length === m.delivered.length);
              endpoint.pause();
              break;
            case "close":
              endpoint.close();
              m.closed = true;
              break;
          }
          // The device agrees with the model after every step.
          assert.equal(guest.r32(RmMsgqReg.ERROR), m.error);
          assert.equal(guest.r32(RmMsgqReg.ERROR_COUNT), m.errors);
          assert.equal(guest.r32(RmMsgqReg.TX_LEN), m.txLen);
          assert.equal(guest.r32(RmMsgqReg.IRQ_ENABLE), m.irqEnable);
          assert.equal(guest.r32(RmMsgqReg.TX_COUNT), m.tx.length);
          assert.equal(guest.r32(RmMsgqReg.RX_COUNT), m.rx.length);
          assert.equal(guest.r32(RmMsgqReg.RX_LEN), m.rx[0]?.length ?? 0);
          const s = guest.status;
          assert.equal((s & RmMsgqStatus.RX_NOT_EMPTY) !== 0, m.rx.length > 0);
          assert.equal((s & RmMsgqStatus.TX_NOT_FULL) !== 0, m.tx.length < 8);
          assert.equal((s & RmMsgqStatus.LINK_DOWN) !== 0, m.closed);
          const staged = new Uint8Array(240);
          for (let at = 0; at < 240; at += 8) staged.set(guest.read(RmMsgqReg.TX_BUF + at, 8), at);
          assert.deepEqual(staged, m.staging);
        }
        assert.deepEqual(
          host.messages,
          m.delivered,
          "the host got exactly the guest's messages, in order",
        );
      } finally {
        endpoint.close();
      }
    }),
    { numRuns: 150 },
  );
});
