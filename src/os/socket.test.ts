import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { MsgType } from "../protocol/header.js";
import { fragment } from "../protocol/message.js";
import { encodeFrame } from "../protocol/stream.js";
import { RmClient } from "../rpc/client.js";
import type { LogEntry } from "../rpc/log.js";
import { RmServer } from "../rpc/server.js";
import { ScriptedCore, TestMsg, u32le, WatchLog } from "../rpc/testkit.js";
import { connectSocketEndpoint } from "./socket-endpoint.js";
import { listenRmSocket } from "./socket-server.js";

/** A server on a fresh socket path, one well-behaved client, and cleanup. */
async function harness() {
  const dir = mkdtempSync(join(tmpdir(), "tsv-rpc-"));
  const path = join(dir, "rm.sock");
  const core = new ScriptedCore();
  const log = new WatchLog();
  const server = new RmServer(core, log);
  const listener = await listenRmSocket(server, path, { log });
  const good = new RmClient(await connectSocketEndpoint(path));
  // One round trip so the good session is attached (session 1) before anything else.
  assert.deepEqual(await good.call(TestMsg.ECHO, u32le(1)), u32le(1));
  const raw = () =>
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection({ path }, () => resolve(s));
      s.once("error", reject);
    });
  const sessionEnded = (session: number) =>
    log.next(
      (e: LogEntry) =>
        (e.event === "session.dropped" || e.event === "session.closed") && e.session === session,
    );
  const cleanup = async () => {
    good.close();
    await listener.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { path, core, log, server, listener, good, raw, sessionEnded, cleanup };
}

test("a client reaches the RM through a Unix socket, with fragmented payloads both ways", async () => {
  const h = await harness();
  try {
    const big = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
    assert.deepEqual(await h.good.call(TestMsg.ECHO, big), big);
    const notes: number[] = [];
    h.good.on("notification", (n) => {
      if (n.kind === "other") notes.push(n.payload[0]!);
    });
    await h.good.call(TestMsg.NOTIFY, u32le(3));
    assert.deepEqual(notes, [0, 1, 2], "notifications arrive before the reply resolves");
    assert.deepEqual(h.core.events, ["connect 3"]);
  } finally {
    await h.cleanup();
  }
});

test("several socket clients are all HLOS: the core sees VMID 3 connected once", async () => {
  const h = await harness();
  try {
    const second = new RmClient(await connectSocketEndpoint(h.path));
    assert.deepEqual(await second.call(TestMsg.ECHO, u32le(2)), u32le(2));
    assert.equal(h.core.handled.at(-1)?.from, 3);
    second.close();
    await h.sessionEnded(2);
    assert.deepEqual(h.core.events, ["connect 3"]);
  } finally {
    await h.cleanup();
  }
});

const badStreams: { name: string; bytes: Uint8Array; end?: boolean; why: RegExp }[] = [
  {
    name: "an oversize frame (241 bytes)",
    bytes: Uint8Array.from([241, 0, ...new Uint8Array(241)]),
    why: /frame length 241/,
  },
  { name: "a zero-length frame", bytes: Uint8Array.from([0, 0]), why: /frame length 0/ },
  {
    name: "garbage bytes (an HTTP request)",
    bytes: new TextEncoder().encode("GET / HTTP/1.1\r\nHost: rm\r\n\r\n"),
    why: /frame length \d+ is outside/,
  },
  {
    name: "half a frame, then a disconnect",
    bytes: Uint8Array.from([100, 0, 0x21, 1, 0]),
    end: true,
    why: /inside a frame/,
  },
];

for (const bad of badStreams) {
  test(`the server drops a client sending ${bad.name}, logs why, and keeps serving another`, async () => {
    const h = await harness();
    try {
      const s = await h.raw();
      s.on("error", () => {});
      s.write(bad.bytes);
      if (bad.end) s.end();
      const entry = await h.sessionEnded(2);
      assert.equal(entry.event, "session.dropped");
      assert.equal(entry.code, "RPC_FRAME");
      assert.match(String(entry.reason), bad.why);
      s.destroy();
      assert.deepEqual(await h.good.call(TestMsg.ECHO, u32le(9)), u32le(9));
      assert.deepEqual(h.core.events, ["connect 3"], "VMID 3 stays connected for the other client");
    } finally {
      await h.cleanup();
    }
  });
}

test("well-framed garbage is logged and ignored as a malformed RM message, and the connection stays", async () => {
  const h = await harness();
  try {
    const s = await h.raw();
    const replies: Buffer[] = [];
    s.on("data", (b) => replies.push(b));
    s.write(encodeFrame(Uint8Array.from([1, 2, 3, 4, 5])));
    const request = fragment({
      type: MsgType.REQUEST,
      seq: 4,
      msgId: TestMsg.ECHO,
      payload: u32le(4),
    })[0]!;
    s.write(encodeFrame(request));
    const ignored = await h.log.event("message.ignored");
    assert.equal(ignored.code, "PROTO_SHORT");
    await new Promise<void>((resolve) => {
      const check = () =>
        Buffer.concat(replies).length >= 2 + 16 ? resolve() : s.once("data", check);
      check();
    });
    const frame = Buffer.concat(replies);
    assert.equal(frame.readUInt16LE(0), 16); // header + error + echoed u32
    assert.equal(frame.readUInt16LE(2 + 2), 4); // seq
    s.destroy();
  } finally {
    await h.cleanup();
  }
});

test("a client that disconnects mid-call is cleaned up and the other client's calls still succeed", async () => {
  const h = await harness();
  try {
    const s = await h.raw();
    s.on("error", () => {});
    const request = fragment({
      type: MsgType.REQUEST,
      seq: 1,
      msgId: TestMsg.NOTIFY,
      payload: u32le(50),
    })[0]!;
    s.write(encodeFrame(request));
    s.destroy();
    await h.sessionEnded(2);
    assert.deepEqual(await h.good.call(TestMsg.ECHO, u32le(3)), u32le(3));
    assert.equal(h.server.sessions.length, 1);
  } finally {
    await h.cleanup();
  }
});

test("a client that disconnects mid-fragment is cleaned up and the other client's calls still succeed", async () => {
  const h = await harness();
  try {
    const s = await h.raw();
    s.on("error", () => {});
    const frags = fragment({
      type: MsgType.REQUEST,
      seq: 1,
      msgId: TestMsg.ECHO,
      payload: new Uint8Array(600),
    });
    s.write(encodeFrame(frags[0]!));
    s.end();
    await h.sessionEnded(2);
    assert.deepEqual(await h.good.call(TestMsg.ECHO, u32le(5)), u32le(5));
    assert.deepEqual(
      h.core.handled.filter((x) => x.msg.seq === 1 && x.msg.payload.length === 600),
      [],
    );
  } finally {
    await h.cleanup();
  }
});

test("closing the listener rejects the connected client's calls with RPC_CLOSED", async () => {
  const h = await harness();
  const call = h.good.waitFor(() => false, 0);
  await h.listener.close();
  await assert.rejects(call, (e) => isTsvisorError(e, "RPC_CLOSED"));
  await assert.rejects(h.good.call(TestMsg.ECHO, u32le(1)), (e) => isTsvisorError(e, "RPC_CLOSED"));
  await h.cleanup();
});

test("connecting to a path nobody listens on rejects with RPC_CLOSED", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsv-rpc-"));
  try {
    await assert.rejects(connectSocketEndpoint(join(dir, "none.sock")), (e) =>
      isTsvisorError(e, "RPC_CLOSED"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("listenRmSocket() refuses a path in use, replaces a stale socket, and never displaces a live one", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsv-rpc-"));
  const path = join(dir, "rm.sock");
  const server = new RmServer(new ScriptedCore());
  try {
    // A stale socket file: bound by a listener that is gone without unlinking it.
    const { execFileSync } = await import("node:child_process");
    execFileSync(process.execPath, [
      "-e",
      `require("net").createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`,
    ]);
    await assert.rejects(listenRmSocket(server, path), (e) => isTsvisorError(e, "RPC_CLOSED"));
    const live = await listenRmSocket(server, path, { replaceStale: true });
    await assert.rejects(listenRmSocket(server, path, { replaceStale: true }), (e) =>
      isTsvisorError(e, "RPC_CLOSED"),
    );
    const client = new RmClient(await connectSocketEndpoint(path));
    assert.deepEqual(await client.call(TestMsg.ECHO, u32le(8)), u32le(8));
    client.close();
    await live.close();
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
