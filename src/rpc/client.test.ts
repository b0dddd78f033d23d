import assert from "node:assert/strict";
import { mock, test } from "node:test";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { toHex } from "../protocol/bytes.js";
import { NotificationId, RequestId } from "../protocol/catalogue.js";
import { MemAppendFlags, MemFlags } from "../protocol/enums.js";
import { CLIENT_MAX_REQUEST, decodeHeader, HEADER_SIZE, MsgType } from "../protocol/header.js";
import {
  ConsoleCharsPayload,
  GetHypResourcesReply,
  MemAppendReq,
  MemLendReq,
  MemOwnerNotice,
  VmExitedPayload,
  VmStatusPayload,
} from "../protocol/payloads.js";
import { decodeLayout, encodeLayout } from "../protocol/struct.js";
import { RmClient, type RmClientOptions } from "./client.js";
import { MemoryLog } from "./log.js";
import { createMsgqLink } from "./msgq.js";
import { note, RawPeer, readU32, replyTo, settle, TestMsg, u32le } from "./testkit.js";
import type { MessageEndpoint } from "./transport.js";

function setup(opts: RmClientOptions & { depth?: number } = {}) {
  const link = createMsgqLink({ depth: opts.depth ?? 8 });
  const log = new MemoryLog();
  const client = new RmClient(link.client, { log, ...opts });
  const rm = new RawPeer(link.server, "rm");
  return { link, client, rm, log };
}

/** Answers every request the raw RM received since `from` with `reply`. */
function answerAll(
  rm: RawPeer,
  from: number,
  reply: (i: number) => Uint8Array = () => new Uint8Array(),
) {
  for (let i = from; i < rm.received.length; i++) rm.send(replyTo(rm.received[i]!, 0, reply(i)));
}

test("sequence numbers wrap from 0xFFFF to 0", async () => {
  const { client, rm } = setup({ firstSeq: 0xfffe });
  const calls = [0, 1, 2].map(() => client.call(TestMsg.ECHO, new Uint8Array()));
  await rm.until(3);
  assert.deepEqual(
    rm.received.map((m) => m.seq),
    [0xfffe, 0xffff, 0],
  );
  answerAll(rm, 0);
  await Promise.all(calls);
  client.close();
});

test("seq allocation skips numbers in flight and refuses with RPC_BUSY when all 65,536 are taken", async () => {
  const { client, rm } = setup({ timeoutMs: 0, depth: 256 });
  const calls: Promise<Uint8Array>[] = [];
  for (let i = 0; i < 0x10000; i++) calls.push(client.call(TestMsg.ECHO, new Uint8Array()));
  await assert.rejects(client.call(TestMsg.ECHO, new Uint8Array()), (e) =>
    isTsvisorError(e, "RPC_BUSY"),
  );
  assert.equal(client.inFlight, 0x10000);
  // Free seq 7 only: the cursor is back at 0, so 0…6 must be skipped.
  await rm.until(8);
  rm.send(replyTo(rm.received[7]!));
  await calls[7];
  const next = client.call(TestMsg.ECHO, u32le(0xabc));
  await rm.until(0x10001);
  const last = rm.received[0x10000]!;
  assert.equal(last.seq, 7);
  assert.deepEqual(last.payload, u32le(0xabc));
  // 65,535 rejections: skip their stack traces, which would dominate the test's time.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    client.close();
    await assert.rejects(next, (e) => isTsvisorError(e, "RPC_CLOSED"));
    await Promise.allSettled(calls);
  } finally {
    Error.stackTraceLimit = limit;
  }
});

test("concurrent calls each resolve with their own reply, whatever the reply order", async () => {
  const { client, rm } = setup();
  const a = client.call(TestMsg.ECHO, u32le(1));
  const b = client.call(TestMsg.ECHO, u32le(2));
  await rm.until(2);
  rm.send(replyTo(rm.received[1]!, 0, u32le(22)));
  rm.send(replyTo(rm.received[0]!, 0, u32le(11)));
  assert.deepEqual(await a, u32le(11));
  assert.deepEqual(await b, u32le(22));
  client.close();
});

test("a reply whose msg_id or seq matches no call is dropped and the call keeps waiting", async () => {
  const { client, rm } = setup();
  const a = client.call(TestMsg.ECHO, u32le(1));
  await rm.until(1);
  const req = rm.received[0]!;
  rm.send({
    type: MsgType.REPLY,
    seq: req.seq,
    msgId: TestMsg.NOTIFY,
    error: 0,
    payload: u32le(9),
  });
  rm.send({ type: MsgType.REPLY, seq: req.seq + 1, msgId: req.msgId, error: 0, payload: u32le(9) });
  await settle();
  assert.equal(client.droppedReplies, 2);
  assert.equal(client.inFlight, 1);
  rm.send(replyTo(req, 0, u32le(5)));
  assert.deepEqual(await a, u32le(5));
  client.close();
});

test("fragments of concurrent requests are never interleaved, even when the queue is tiny", async () => {
  const { client, rm } = setup({ depth: 2 });
  const big = (n: number) => new Uint8Array(1000).fill(n);
  const calls = [1, 2, 3].map((n) => client.call(TestMsg.ECHO, big(n)));
  await rm.until(3);
  assert.deepEqual(
    rm.events.filter((e) => e.kind === "dropped" || e.kind === "aborted"),
    [],
  );
  assert.deepEqual(
    rm.received.map((m) => m.payload[0]),
    [1, 2, 3],
  );
  answerAll(rm, 0, (i) => rm.received[i]!.payload);
  assert.deepEqual(await Promise.all(calls), [big(1), big(2), big(3)]);
  client.close();
});

test("PUSH is set on the last fragment of a request only", async () => {
  const link = createMsgqLink();
  const pushes: boolean[] = [];
  const real = link.client;
  const spy: MessageEndpoint = {
    label: "spy",
    get writable() {
      return real.writable;
    },
    get closed() {
      return real.closed;
    },
    send: (m, push = false) => {
      pushes.push(push);
      return real.send(m, push);
    },
    start: (h) => real.start(h),
    pause: () => real.pause(),
    resume: () => real.resume(),
    close: (r) => real.close(r),
  };
  const client = new RmClient(spy);
  const rm = new RawPeer(link.server, "rm");
  const call = client.call(TestMsg.ECHO, new Uint8Array(500)); // 3 fragments
  await rm.until(1);
  assert.deepEqual(pushes, [false, false, true]);
  rm.send(replyTo(rm.received[0]!));
  await call;
  client.close();
});

test("a request of 14,384 bytes is sent in 62 fragments and one byte more is refused with PROTO_TOO_LONG", async () => {
  const { client, rm } = setup({ depth: 256 });
  await assert.rejects(client.call(TestMsg.ECHO, new Uint8Array(CLIENT_MAX_REQUEST + 1)), (e) =>
    isTsvisorError(e, "PROTO_TOO_LONG"),
  );
  const ok = client.call(TestMsg.ECHO, new Uint8Array(CLIENT_MAX_REQUEST).fill(3));
  await rm.until(1);
  assert.equal(rm.raw.length, 62);
  assert.equal(decodeHeader(rm.raw[0]!).numFragments, 61);
  rm.send(replyTo(rm.received[0]!));
  await ok;
  client.close();
});

test("a call with no reply rejects with RPC_TIMEOUT, frees its seq, and a late reply is dropped", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { client, rm } = setup({ timeoutMs: 10_000 });
    const call = client.call(TestMsg.ECHO, new Uint8Array());
    await rm.until(1);
    mock.timers.tick(10_000);
    await assert.rejects(call, (e) => isTsvisorError(e, "RPC_TIMEOUT"));
    assert.equal(client.inFlight, 0);
    rm.send(replyTo(rm.received[0]!));
    await settle();
    assert.equal(client.droppedReplies, 1);
    client.close();
  } finally {
    mock.timers.reset();
  }
});

test("a per-call timeout overrides the client's default", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { client } = setup({ timeoutMs: 0 });
    const call = client.call(TestMsg.ECHO, new Uint8Array(), { timeoutMs: 50 });
    mock.timers.tick(50);
    await assert.rejects(call, (e) => isTsvisorError(e, "RPC_TIMEOUT"));
    client.close();
  } finally {
    mock.timers.reset();
  }
});

test("close() rejects calls and waiters in flight with RPC_CLOSED, and later calls too", async () => {
  const { client, rm } = setup();
  const call = client.call(TestMsg.ECHO, new Uint8Array());
  const wait = client.waitFor(() => true);
  await rm.until(1);
  client.close();
  await assert.rejects(call, (e) => isTsvisorError(e, "RPC_CLOSED"));
  await assert.rejects(wait, (e) => isTsvisorError(e, "RPC_CLOSED"));
  await assert.rejects(client.getVmid(), (e) => isTsvisorError(e, "RPC_CLOSED"));
  await settle();
  assert.ok(rm.closedWith, "the RM side saw the link close");
});

test("the peer closing the link rejects calls in flight with RPC_CLOSED", async () => {
  const { client, rm, link } = setup();
  const call = client.call(TestMsg.ECHO, new Uint8Array());
  await rm.until(1);
  link.server.close(new TsvisorError("RPC_ABORTED", "server gone"));
  await assert.rejects(
    call,
    (e) => isTsvisorError(e, "RPC_CLOSED") && /server gone/.test(e.message),
  );
  assert.equal(client.closed, true);
});

test("an RM error reply rejects with RPC_RM_ERROR carrying the code, its name and the Linux errno", async () => {
  const { client, rm } = setup();
  const call = client.start(0x80);
  await rm.until(1);
  rm.send(replyTo(rm.received[0]!, 0x14));
  await assert.rejects(call, (e) => {
    assert.ok(isTsvisorError(e, "RPC_RM_ERROR"));
    assert.deepEqual(
      { rmError: e.details?.rmError, rmErrorName: e.details?.rmErrorName, errno: e.details?.errno },
      { rmError: 0x14, rmErrorName: "VM_STATE", errno: -74 },
    );
    return true;
  });
  client.close();
});

test("a reply payload that does not fit its layout rejects with RPC_BAD_REPLY", async () => {
  const { client, rm } = setup();
  const call = client.getVmid();
  await rm.until(1);
  rm.send(replyTo(rm.received[0]!, 0, new Uint8Array([3, 0])));
  await assert.rejects(call, (e) => isTsvisorError(e, "RPC_BAD_REPLY"));
  client.close();
});

test("a fragmented reply cut short by a new message fails its call with RPC_BAD_REPLY (Linux -EIO)", async () => {
  const { client, rm } = setup();
  const call = client.call(TestMsg.ECHO, new Uint8Array());
  await rm.until(1);
  const req = rm.received[0]!;
  const { fragment } = await import("../protocol/message.js");
  const frags = fragment({
    type: MsgType.REPLY,
    seq: req.seq,
    msgId: req.msgId,
    error: 0,
    payload: new Uint8Array(400),
  });
  rm.sendRaw(frags[0]!);
  rm.send(note(1, u32le(0)));
  await assert.rejects(call, (e) => isTsvisorError(e, "RPC_BAD_REPLY"));
  client.close();
});

test("typed calls encode the reference layouts: VM_STOP defaults to force with reason 3", async () => {
  const { client, rm } = setup();
  const calls = [
    client.stop(0x80),
    client.stop(0x81, { force: false, reason: 0 }),
    client.configImage({
      vmid: 0x80,
      memHandle: 7,
      imageOffset: 0,
      imageSize: 0,
      dtbOffset: 0x1000,
      dtbSize: 0x2000n,
    }),
    client.setBootContext({ vmid: 0x80, regSet: 1, regIndex: 0, value: 0x100000n }),
    client.allocVmid(),
  ];
  await rm.until(calls.length);
  assert.deepEqual(
    rm.received.map((m) => [m.msgId, toHex(m.payload)]),
    [
      [RequestId.VM_STOP, "8000010003000000"],
      [RequestId.VM_STOP, "8100000000000000"],
      [
        RequestId.VM_CONFIG_IMAGE,
        "8000000007000000000000000000000000000000000000000010000000000000" + "0020000000000000",
      ],
      [RequestId.VM_SET_BOOT_CONTEXT, "8000010000000000" + "0000100000000000"],
      [RequestId.VM_ALLOC_VMID, "00000000"],
    ],
  );
  answerAll(rm, 0, (i) => (i === 4 ? u32le(0x80) : new Uint8Array()));
  const results = await Promise.all(calls);
  assert.equal(results[4], 0x80);
  client.close();
});

test("getHypResources() decodes 44-byte entries into camelCase values", async () => {
  const { client, rm } = setup();
  const call = client.getHypResources(0x80);
  await rm.until(1);
  const entry = {
    resource_type: 4,
    partner_vmid: 0x80,
    resource_handle: 1,
    resource_label: 0,
    cap_id: 0x1234n,
    virq_handle: 0,
    virq: 36,
    base: 0n,
    size: 0n,
  };
  rm.send(replyTo(rm.received[0]!, 0, encodeLayout(GetHypResourcesReply, { entries: [entry] })));
  assert.deepEqual(await call, [
    {
      resourceType: 4,
      partnerVmid: 0x80,
      resourceHandle: 1,
      resourceLabel: 0,
      capId: 0x1234n,
      virqHandle: 0,
      virq: 36,
      base: 0n,
      size: 0n,
    },
  ]);
  client.close();
});

test("memLend() of 1,100 SGL entries sends LEND(512, APPEND) then MEM_APPEND 512 and 76 with END on the last", async () => {
  const { client, rm } = setup({ depth: 64 });
  const sgl = Array.from({ length: 1100 }, (_, i) => ({ base: i * 0x1000, size: 0x1000 }));
  const lend = client.memLend({ acl: [{ vmid: 0x80, rights: 7 }], sgl });
  for (let n = 1; n <= 3; n++) {
    await rm.until(n);
    rm.send(replyTo(rm.received[n - 1]!, 0, n === 1 ? u32le(42) : undefined));
  }
  assert.equal(await lend, 42);
  const [first, a1, a2] = rm.received;
  const l = decodeLayout(MemLendReq, first!.payload);
  assert.equal(first!.msgId, RequestId.MEM_LEND);
  assert.equal(l.flags, MemFlags.APPEND);
  assert.equal(l.sgl.length, 512);
  const p1 = decodeLayout(MemAppendReq, a1!.payload);
  const p2 = decodeLayout(MemAppendReq, a2!.payload);
  assert.deepEqual(
    [a1!.msgId, p1.mem_handle, p1.flags, p1.sgl.length, p2.flags, p2.sgl.length],
    [RequestId.MEM_APPEND, 42, 0, 512, MemAppendFlags.END, 76],
  );
  assert.equal(p2.sgl[75]!.base, 1099n * 0x1000n);
  client.close();
});

test("memShare() reclaims the parcel when a MEM_APPEND fails and rethrows that failure", async () => {
  const { client, rm } = setup({ depth: 64 });
  const sgl = Array.from({ length: 600 }, (_, i) => ({ base: i * 0x1000, size: 0x1000 }));
  const share = client.memShare({
    acl: [
      { vmid: 3, rights: 7 },
      { vmid: 0x80, rights: 6 },
    ],
    sgl,
  });
  await rm.until(1);
  rm.send(replyTo(rm.received[0]!, 0, u32le(9)));
  await rm.until(2);
  rm.send(replyTo(rm.received[1]!, 0x3));
  await rm.until(3);
  const reclaim = rm.received[2]!;
  assert.equal(reclaim.msgId, RequestId.MEM_RECLAIM);
  assert.equal(readU32(reclaim.payload), 9);
  rm.send(replyTo(reclaim));
  await assert.rejects(
    share,
    (e) => isTsvisorError(e, "RPC_RM_ERROR") && e.details?.rmErrorName === "DENIED",
  );
  client.close();
});

test("notifications arrive as typed events and as generic ones, decoded from the reference layouts", async () => {
  const { client, rm } = setup();
  const seen: string[] = [];
  client.on("vmStatus", (n) => seen.push(`status ${n.vmid} ${n.vmStatus}`));
  client.on("vmExited", (n) => seen.push(`exited ${n.vmid} ${n.exitType} ${toHex(n.exitReason)}`));
  client.on("consoleChars", (n) =>
    seen.push(`console ${n.fromVmid} ${new TextDecoder().decode(n.data)}`),
  );
  client.on("notification", (n) => seen.push(`any ${n.name}`));
  const N = NotificationId;
  rm.send(
    note(
      1,
      encodeLayout(VmStatusPayload, { vmid: 0x80, vm_status: 3, os_status: 0, app_status: 0 }),
      N.VM_STATUS,
    ),
  );
  rm.send(
    note(
      2,
      encodeLayout(VmExitedPayload, { vmid: 0x80, exit_type: 7, exit_reason: u32le(0) }),
      N.VM_EXITED,
    ),
  );
  rm.send(
    note(
      3,
      encodeLayout(ConsoleCharsPayload, { from_vmid: 0x80, data: new TextEncoder().encode("hi") }),
      N.VM_CONSOLE_CHARS,
    ),
  );
  rm.send(
    note(
      4,
      encodeLayout(MemOwnerNotice, { mem_handle: 1, vmid: 0x80, mem_info_tag: 0 }),
      N.MEM_RELEASED,
    ),
  );
  rm.send(note(5, new Uint8Array([1]), N.VM_STATUS)); // malformed: still reported, as "other"
  await settle();
  assert.deepEqual(seen, [
    "any VM_STATUS",
    "status 128 3",
    "any VM_EXITED",
    "exited 128 7 00000000",
    "any VM_CONSOLE_CHARS",
    "console 128 hi",
    "any MEM_RELEASED",
    "any VM_STATUS",
  ]);
  client.close();
});

test("waitFor() resolves with the first matching notification after it was armed", async () => {
  const { client, rm } = setup();
  const exited = client.waitFor((n) => n.kind === "vmExited" && n.vmid === 0x81);
  const exit = (vmid: number) =>
    note(
      0,
      encodeLayout(VmExitedPayload, { vmid, exit_type: 0, exit_reason: u32le(0) }),
      NotificationId.VM_EXITED,
    );
  rm.send(exit(0x80));
  rm.send(exit(0x81));
  const n = await exited;
  assert.ok(n.kind === "vmExited" && n.vmid === 0x81);
  client.close();
});

test("waitFor() rejects with RPC_TIMEOUT when nothing matches in time", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const { client } = setup();
    const w = client.waitFor(() => false, 1000);
    mock.timers.tick(1000);
    await assert.rejects(w, (e) => isTsvisorError(e, "RPC_TIMEOUT"));
    client.close();
  } finally {
    mock.timers.reset();
  }
});

test("a request sent to the client and a queue message with a bad api byte are logged and ignored", async () => {
  const { client, rm, log } = setup();
  rm.send({ type: MsgType.REQUEST, seq: 1, msgId: RequestId.VM_EXIT, payload: new Uint8Array(4) });
  const bad = new Uint8Array(HEADER_SIZE);
  bad[0] = 0x31;
  rm.sendRaw(bad);
  await settle();
  assert.deepEqual(
    log.find("message.ignored").map((e) => e.code),
    ["PROTO_TYPE", "PROTO_API"],
  );
  const call = client.getOwner();
  await rm.until(1);
  rm.send(replyTo(rm.received[0]!, 0, u32le(3)));
  assert.equal(await call, 3);
  client.close();
});
