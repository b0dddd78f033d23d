import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type ErrorCode, isTsvisorError } from "../core/errors.js";
import { fromHex, toHex } from "./bytes.js";
import { RequestId } from "./catalogue.js";
import {
  CLIENT_MAX_REQUEST,
  decodeHeader,
  encodeHeader,
  type Header,
  MsgType,
  RM_MAX_PAYLOAD,
} from "./header.js";
import {
  continuationCount,
  fragment,
  Reassembler,
  type ReassemblyEvent,
  type RmMessage,
  reassembleAll,
} from "./message.js";

const coded = (code: ErrorCode) => (e: unknown) => isTsvisorError(e, code);
const filled = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);
const request = (payload: Uint8Array, seq = 1, msgId: number = RequestId.MEM_LEND): RmMessage => ({
  type: MsgType.REQUEST,
  seq,
  msgId,
  payload,
});
const kinds = (evs: ReassemblyEvent[]) => evs.map((e) => e.kind);

describe("header", () => {
  test("encodeHeader() writes api 0x21, type | count << 2, LE seq and LE msg id", () => {
    const out = new Uint8Array(8);
    encodeHeader({ type: MsgType.REPLY, numFragments: 5, seq: 0xbeef, msgId: 0x56000020 }, out);
    assert.equal(toHex(out), "2116efbe20000056");
  });

  test("decodeHeader() reads back every field", () => {
    const h: Header = {
      type: MsgType.NOTIFICATION,
      numFragments: 62,
      seq: 0xffff,
      msgId: 0x56100008,
    };
    const out = new Uint8Array(8);
    encodeHeader(h, out);
    assert.deepEqual(decodeHeader(out), h);
  });

  test("decodeHeader() rejects api byte 0x31 (a 3-word header)", () => {
    assert.throws(() => decodeHeader(fromHex("3101000001000056")), coded("PROTO_API"));
  });

  test("decodeHeader() rejects api version 2 (byte 0x22)", () => {
    assert.throws(() => decodeHeader(fromHex("2201000001000056")), coded("PROTO_API"));
  });

  test("decodeHeader() rejects a continuation count of 63", () => {
    assert.throws(
      () => decodeHeader(fromHex(`21${((63 << 2) | 1).toString(16)}000001000056`)),
      coded("PROTO_FRAGMENTS"),
    );
  });

  test("decodeHeader() rejects a message shorter than 8 bytes", () => {
    assert.throws(() => decodeHeader(fromHex("21010000010000")), coded("PROTO_SHORT"));
  });

  test("decodeHeader() ignores bytes after the header", () => {
    assert.equal(decodeHeader(fromHex("2101010001000056ffff")).seq, 1);
  });
});

describe("fragmentation", () => {
  const sizes: [number, number][] = [
    [0, 0],
    [1, 0],
    [232, 0],
    [233, 1],
    [464, 1],
    [465, 2],
    [14384, 61],
    [14616, 62],
  ];
  for (const [size, count] of sizes) {
    test(`continuationCount(${size}) is ${count}`, () => {
      assert.equal(continuationCount(size), count);
    });
  }

  test("a zero-byte request is one 8-byte message", () => {
    const msgs = fragment(request(new Uint8Array(0), 7));
    assert.deepEqual(msgs.map(toHex), ["2101070012000051"]);
  });

  test("a 232-byte payload fills exactly one 240-byte message", () => {
    const msgs = fragment(request(filled(232)));
    assert.deepEqual(
      msgs.map((m) => m.length),
      [240],
    );
    assert.equal(msgs[0]![1], 0x01);
  });

  test("a 233-byte payload takes a 240-byte message and a 9-byte continuation", () => {
    const msgs = fragment(request(filled(233)));
    assert.deepEqual(
      msgs.map((m) => m.length),
      [240, 9],
    );
    assert.equal(toHex(msgs[0]!.subarray(0, 8)), "2105010012000051");
    assert.equal(toHex(msgs[1]!.subarray(0, 8)), "2104010012000051");
  });

  test("14,384 bytes (the client limit) go in 62 messages, all continuations saying 61", () => {
    const msgs = fragment(request(filled(14384)), CLIENT_MAX_REQUEST);
    assert.equal(msgs.length, 62);
    for (const [i, m] of msgs.entries()) {
      const h = decodeHeader(m);
      assert.equal(h.numFragments, 61);
      assert.equal(h.type, i === 0 ? MsgType.REQUEST : MsgType.CONTINUATION);
      assert.equal(m.length, 240);
    }
  });

  test("14,616 bytes (the RM limit) go in 63 messages with count 62", () => {
    const msgs = fragment(request(filled(14616)));
    assert.equal(msgs.length, 63);
    assert.equal(decodeHeader(msgs[62]!).numFragments, 62);
    assert.ok(msgs.every((m) => m.length === 240));
  });

  test("14,617 bytes is PROTO_TOO_LONG", () => {
    assert.throws(() => fragment(request(filled(RM_MAX_PAYLOAD + 1))), coded("PROTO_TOO_LONG"));
  });

  test("a client limit of 14,384 refuses 14,385 bytes that the RM limit would allow", () => {
    assert.throws(
      () => fragment(request(filled(CLIENT_MAX_REQUEST + 1)), CLIENT_MAX_REQUEST),
      coded("PROTO_TOO_LONG"),
    );
    assert.equal(fragment(request(filled(CLIENT_MAX_REQUEST + 1))).length, 63);
  });

  test("a limit above 14,616 cannot push the continuation count past 62", () => {
    assert.throws(
      () => fragment(request(filled(RM_MAX_PAYLOAD + 1)), 20000),
      coded("PROTO_TOO_LONG"),
    );
  });

  test("a reply's 4-byte error code counts toward the first fragment", () => {
    const reply: RmMessage = {
      type: MsgType.REPLY,
      seq: 2,
      msgId: 0x56000020,
      error: 0,
      payload: filled(229),
    };
    const msgs = fragment(reply);
    assert.deepEqual(
      msgs.map((m) => m.length),
      [240, 9],
    );
    assert.equal(toHex(msgs[0]!.subarray(8, 12)), "00000000");
  });

  test("a reply with no data is the 12-byte standard reply", () => {
    const reply: RmMessage = {
      type: MsgType.REPLY,
      seq: 2,
      msgId: 0x56000004,
      error: 0x14,
      payload: new Uint8Array(0),
    };
    assert.deepEqual(fragment(reply).map(toHex), ["2102020004000056" + "14000000"]);
  });

  test("message id 0 is reserved", () => {
    assert.throws(() => fragment(request(new Uint8Array(0), 1, 0)), coded("PROTO_PAYLOAD_FIELD"));
  });

  test("a seq beyond 16 bits is refused rather than wrapped", () => {
    assert.throws(
      () => fragment(request(new Uint8Array(0), 0x10000)),
      coded("PROTO_PAYLOAD_FIELD"),
    );
  });

  test("fragments reassemble to the original payload at every boundary size", () => {
    for (const n of [0, 1, 231, 232, 233, 464, 465, 14384, 14616]) {
      const m = request(filled(n), 9);
      assert.deepEqual(reassembleAll(fragment(m)), [m]);
    }
  });
});

describe("receiver rules", () => {
  const three = () => fragment(request(filled(500), 0x10));
  const mk = (type: number, count: number, seq: number, id: number, data = "aa") => {
    const out = new Uint8Array(8);
    encodeHeader({ type: type as MsgType, numFragments: count, seq, msgId: id }, out);
    return fromHex(toHex(out) + data);
  };

  test("both rules complete a message only after its last continuation", () => {
    for (const rules of ["rm", "linux"] as const) {
      const r = new Reassembler(rules);
      const [a, b, c] = three();
      assert.deepEqual(kinds(r.push(a!)), ["partial"]);
      assert.deepEqual(kinds(r.push(b!)), ["partial"]);
      assert.deepEqual(kinds(r.push(c!)), ["message"]);
      assert.equal(r.busy, false);
    }
  });

  test("rm: a continuation with another seq is dropped and the message still completes", () => {
    const r = new Reassembler("rm");
    const [a, b, c] = three();
    r.push(a!);
    const stray = mk(MsgType.CONTINUATION, 2, 0x11, RequestId.MEM_LEND);
    const ev = r.push(stray);
    assert.deepEqual(kinds(ev), ["dropped"]);
    assert.ok(ev[0]!.kind === "dropped" && ev[0]!.error.code === "PROTO_CONTINUATION");
    r.push(b!);
    const done = r.push(c!);
    assert.deepEqual(kinds(done), ["message"]);
    assert.ok(done[0]!.kind === "message" && done[0]!.message.payload.length === 500);
  });

  test("linux: a continuation's seq is not checked", () => {
    const r = new Reassembler("linux");
    const [a, b, c] = three();
    r.push(a!);
    b![2] = 0x99; // seq of the second fragment changed
    r.push(b!);
    assert.deepEqual(kinds(r.push(c!)), ["message"]);
  });

  test("linux: a continuation with another msg id aborts the message in progress", () => {
    const r = new Reassembler("linux");
    const [a] = three();
    r.push(a!);
    const ev = r.push(mk(MsgType.CONTINUATION, 2, 0x10, RequestId.MEM_SHARE));
    assert.deepEqual(kinds(ev), ["aborted"]);
    assert.ok(
      ev[0]!.kind === "aborted" && ev[0]!.seq === 0x10 && ev[0]!.msgId === RequestId.MEM_LEND,
    );
    assert.equal(r.busy, false);
  });

  test("linux: a continuation with another count aborts the message in progress", () => {
    const r = new Reassembler("linux");
    r.push(three()[0]!);
    assert.deepEqual(kinds(r.push(mk(MsgType.CONTINUATION, 3, 0x10, RequestId.MEM_LEND))), [
      "aborted",
    ]);
  });

  test("rm: a continuation with another msg id is dropped, not aborting", () => {
    const r = new Reassembler("rm");
    r.push(three()[0]!);
    assert.deepEqual(kinds(r.push(mk(MsgType.CONTINUATION, 2, 0x10, RequestId.MEM_SHARE))), [
      "dropped",
    ]);
    assert.equal(r.busy, true);
  });

  test("both rules: a new first fragment aborts the incomplete message and starts over", () => {
    for (const rules of ["rm", "linux"] as const) {
      const r = new Reassembler(rules);
      r.push(three()[0]!);
      const ev = r.push(mk(MsgType.REPLY, 0, 5, RequestId.VM_START, "00000000"));
      assert.deepEqual(kinds(ev), ["aborted", "message"]);
    }
  });

  test("a continuation with nothing in progress is dropped", () => {
    const r = new Reassembler("rm");
    assert.deepEqual(kinds(r.push(mk(MsgType.CONTINUATION, 1, 1, RequestId.MEM_LEND))), [
      "dropped",
    ]);
  });

  test("a reply shorter than its 4-byte error code is aborted", () => {
    for (const rules of ["rm", "linux"] as const) {
      const r = new Reassembler(rules);
      const ev = r.push(mk(MsgType.REPLY, 0, 5, RequestId.VM_START, "000000"));
      assert.deepEqual(kinds(ev), ["aborted"]);
      assert.ok(ev[0]!.kind === "aborted" && ev[0]!.error.code === "PROTO_PAYLOAD_LENGTH");
    }
  });

  test("short, oversize and bad-api queue messages are dropped with their codes", () => {
    const r = new Reassembler("rm");
    const codeOf = (ev: ReassemblyEvent[]) =>
      ev[0]!.kind === "dropped" ? ev[0]!.error.code : ev[0]!.kind;
    assert.equal(codeOf(r.push(fromHex("2101"))), "PROTO_SHORT");
    assert.equal(codeOf(r.push(new Uint8Array(241))), "PROTO_TOO_LONG");
    assert.equal(codeOf(r.push(fromHex("3101000004000056"))), "PROTO_API");
    assert.equal(
      codeOf(r.push(fromHex(`21${((63 << 2) | 1).toString(16)}000004000056`))),
      "PROTO_FRAGMENTS",
    );
  });

  test("reassembleAll() throws when the sequence ends inside a fragmented message", () => {
    assert.throws(() => reassembleAll(three().slice(0, 2)), coded("PROTO_CONTINUATION"));
  });
});
