import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { encodeHeader, HEADER_SIZE, MsgType } from "../protocol/header.js";
import { fragment, type RmMessage } from "../protocol/message.js";
import { RmClient } from "./client.js";
import { createMsgqLink } from "./msgq.js";
import { RmServer } from "./server.js";
import { RawPeer, readU32, ScriptedCore, settle, TestMsg, u32le, WatchLog } from "./testkit.js";

function setup(opts: { depth?: number; maxPending?: number } = {}) {
  const core = new ScriptedCore();
  const log = new WatchLog();
  const server = new RmServer(core, log, { maxPendingNotifications: opts.maxPending });
  const connect = (vmid = 3) => {
    const link = createMsgqLink({ depth: opts.depth ?? 8 });
    const session = server.attach(vmid, link.server);
    return { link, session };
  };
  return { core, log, server, connect };
}

const req = (seq: number, msgId: number, payload: Uint8Array = new Uint8Array()): RmMessage => ({
  type: MsgType.REQUEST,
  seq,
  msgId,
  payload,
});

const describe = (m: RmMessage) =>
  m.type === MsgType.REPLY ? `reply ${m.seq}` : `note ${readU32(m.payload)}`;

test("a request is answered with a reply echoing its seq and msg_id", async () => {
  const { connect, server } = setup();
  const { link } = connect();
  const peer = new RawPeer(link.client);
  peer.send(req(77, TestMsg.ECHO, u32le(5)));
  await peer.until(1);
  const [r] = peer.received;
  assert.ok(r && r.type === MsgType.REPLY);
  assert.deepEqual([r.seq, r.msgId, r.error, [...r.payload]], [77, TestMsg.ECHO, 0, [5, 0, 0, 0]]);
  server.close();
});

test("notifications caused by a request are sent before its reply", async () => {
  const { connect, server } = setup();
  const { link } = connect();
  const peer = new RawPeer(link.client);
  peer.send(req(1, TestMsg.NOTIFY, u32le(3)));
  await peer.until(4);
  assert.deepEqual(peer.received.map(describe), ["note 0", "note 1", "note 2", "reply 1"]);
  server.close();
});

test("a full queue leaves one reply and at most 256 notifications pending, dropping the oldest", async () => {
  const { connect, server, log } = setup();
  const { link, session } = connect();
  const peer = new RawPeer(link.client);
  link.client.pause(); // the client stops reading
  peer.send(req(9, TestMsg.NOTIFY, u32le(300)));
  await settle();
  assert.equal(link.toClient.count, 8);
  assert.equal(session.droppedNotifications, 300 - 8 - 256);
  assert.equal(log.find("notification.dropped").length, 36);
  link.client.resume();
  await peer.until(8 + 1 + 256);
  const order = peer.received.map(describe);
  // Sent before the queue filled: notes 0–7. Then the pending reply first, then the 256
  // newest pending notifications in order (8–43 were dropped).
  assert.deepEqual(order.slice(0, 9), [
    ...Array.from({ length: 8 }, (_, i) => `note ${i}`),
    "reply 9",
  ]);
  assert.deepEqual(
    order.slice(9),
    Array.from({ length: 256 }, (_, i) => `note ${44 + i}`),
  );
  server.close();
});

test("while a reply is pending the next request waits unhandled, then is served in order", async () => {
  const { connect, server, core } = setup();
  const { link } = connect();
  const peer = new RawPeer(link.client);
  link.client.pause();
  peer.send(req(1, TestMsg.NOTIFY, u32le(8))); // 8 notes fill the queue; reply 1 pends
  peer.send(req(2, TestMsg.ECHO));
  peer.send(req(3, TestMsg.ECHO));
  await settle();
  assert.equal(core.handled.length, 1);
  link.client.resume();
  await peer.until(11);
  assert.deepEqual(
    core.handled.map((h) => h.msg.seq),
    [1, 2, 3],
  );
  assert.deepEqual(peer.received.slice(8).map(describe), ["reply 1", "reply 2", "reply 3"]);
  server.close();
});

test("a fragmented reply interrupted by a full queue resumes where it stopped", async () => {
  const { connect, server } = setup({ depth: 2 });
  const { link } = connect();
  const peer = new RawPeer(link.client);
  const big = new Uint8Array(3000).map((_, i) => i & 0xff);
  peer.send(req(4, TestMsg.ECHO, big));
  await peer.until(1);
  const [r] = peer.received;
  assert.ok(r && r.type === MsgType.REPLY);
  assert.deepEqual(r.payload, big);
  assert.equal(peer.raw.length, 13); // 4 + 3000 bytes in 232-byte pieces
  server.close();
});

test("malformed RM messages are logged and ignored and the session keeps working", async () => {
  const { connect, server, log, core } = setup();
  const { link } = connect();
  const peer = new RawPeer(link.client);
  const badApi = new Uint8Array(HEADER_SIZE);
  encodeHeader({ type: MsgType.REQUEST, numFragments: 0, seq: 1, msgId: TestMsg.ECHO }, badApi);
  badApi[0] = 0x11;
  const stray = new Uint8Array(HEADER_SIZE);
  encodeHeader({ type: MsgType.CONTINUATION, numFragments: 1, seq: 2, msgId: TestMsg.ECHO }, stray);
  const reply = fragment({
    type: MsgType.REPLY,
    seq: 3,
    msgId: TestMsg.ECHO,
    error: 0,
    payload: new Uint8Array(),
  })[0]!;
  peer.sendRaw(badApi);
  peer.sendRaw(stray);
  peer.sendRaw(new Uint8Array([0x21, 1, 0]));
  peer.sendRaw(reply);
  peer.send(req(5, TestMsg.ECHO));
  await peer.until(1);
  assert.deepEqual(
    log.find("message.ignored").map((e) => e.code),
    ["PROTO_API", "PROTO_CONTINUATION", "PROTO_SHORT", "PROTO_TYPE"],
  );
  assert.deepEqual(
    core.handled.map((h) => h.msg.seq),
    [5],
  );
  server.close();
});

test("a new request arriving mid-fragment discards the partial one, as the RM does", async () => {
  const { connect, server, log, core } = setup();
  const { link } = connect();
  const peer = new RawPeer(link.client);
  const partial = fragment(req(6, TestMsg.ECHO, new Uint8Array(500)));
  peer.sendRaw(partial[0]!);
  peer.send(req(7, TestMsg.ECHO));
  await peer.until(1);
  assert.equal(log.find("message.aborted").length, 1);
  assert.deepEqual(
    core.handled.map((h) => h.msg.seq),
    [7],
  );
  server.close();
});

test("sessions sharing a VMID: replies go to the asker, notifications to all, one connect and one disconnect", async () => {
  const { connect, server, core } = setup();
  const a = connect(3);
  const b = connect(3);
  const other = connect(0x80);
  const pa = new RawPeer(a.link.client);
  const pb = new RawPeer(b.link.client);
  const po = new RawPeer(other.link.client);
  pa.send(req(1, TestMsg.NOTIFY, u32le(1)));
  await pa.until(2);
  await pb.until(1);
  assert.deepEqual(pa.received.map(describe), ["note 0", "reply 1"]);
  assert.deepEqual(pb.received.map(describe), ["note 0"]);
  assert.deepEqual(po.received, []);
  po.send(req(2, TestMsg.NOTIFY_VMID, new Uint8Array([3, 0, 0, 0])));
  await po.until(1);
  await pb.until(2);
  assert.equal(pa.received.length, 3);
  a.session.close();
  assert.deepEqual(core.events, ["connect 3", "connect 128"]);
  b.link.client.close();
  await settle();
  assert.deepEqual(core.events, ["connect 3", "connect 128", "disconnect 3"]);
  assert.equal(server.sessions.length, 1);
  server.close();
  assert.deepEqual(core.events.at(-1), "disconnect 128");
});

test("a client that disconnects mid-fragment is cleaned up and the others keep being served", async () => {
  const { connect, server, core, log } = setup();
  const gone = connect(0x80);
  const stays = connect(3);
  const pg = new RawPeer(gone.link.client);
  pg.sendRaw(fragment(req(1, TestMsg.ECHO, new Uint8Array(400)))[0]!);
  await settle();
  gone.link.client.close();
  await log.event("session.closed");
  assert.deepEqual(core.events, ["connect 128", "connect 3", "disconnect 128"]);
  const client = new RmClient(stays.link.client);
  assert.deepEqual(await client.call(TestMsg.ECHO, u32le(1)), u32le(1));
  client.close();
  server.close();
});

test("a core failure drops only the session that caused it, with an error logged", async () => {
  const { connect, server, log } = setup();
  const bad = connect(3);
  const good = connect(3);
  const c1 = new RmClient(bad.link.client);
  const c2 = new RmClient(good.link.client);
  await assert.rejects(c1.call(TestMsg.THROW, new Uint8Array()), (e) =>
    isTsvisorError(e, "RPC_CLOSED"),
  );
  assert.equal(log.find("core.error").length, 1);
  assert.equal(log.find("session.dropped")[0]?.code, "RPC_ABORTED");
  assert.deepEqual(await c2.call(TestMsg.ECHO, u32le(2)), u32le(2));
  c2.close();
  server.close();
});

test("deferred core work runs after the reply, and what it sends reaches the client", async () => {
  const { connect, server, core } = setup();
  const { link } = connect();
  const peer = new RawPeer(link.client);
  peer.send(req(1, TestMsg.DEFER, u32le(3)));
  await peer.until(4);
  assert.deepEqual(peer.received.map(describe), ["reply 1", "note 0", "note 1", "note 2"]);
  assert.equal(core.hasDeferredWork, false);
  server.close();
});

test("a hypervisor event's notifications are routed like the core's replies", async () => {
  const { connect, server, core } = setup();
  const { link } = connect(3);
  const peer = new RawPeer(link.client);
  await settle();
  server.vmExited(0x80, 1);
  await peer.until(1);
  assert.deepEqual(peer.received.map(describe), ["note 128"]);
  assert.deepEqual(core.events, ["connect 3", "exited 128"]);
  server.close();
});

test("close() ends every session, disconnects their VMIDs and refuses new ones", async () => {
  const { connect, server, core } = setup();
  const a = connect(3);
  connect(0x80);
  const client = new RmClient(a.link.client);
  server.close();
  assert.deepEqual(core.events.slice(2).sort(), ["disconnect 128", "disconnect 3"]);
  await assert.rejects(client.call(TestMsg.ECHO, new Uint8Array()), (e) =>
    isTsvisorError(e, "RPC_CLOSED"),
  );
  assert.throws(
    () => connect(3),
    (e) => isTsvisorError(e, "RPC_CLOSED"),
  );
});
