import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { concatBytes, fromHex, toHex } from "./bytes.js";
import { NotificationId, RequestId } from "./catalogue.js";
import { decodeQueueMessages, messageFromJson, messageToJson } from "./codec.js";
import { FIXTURES, type Fixture } from "./fixtures.js";
import { MSG_MAX_SIZE } from "./header.js";
import { fragment, Reassembler, type RmMessage } from "./message.js";
import { encodeFrame, FrameDecoder } from "./stream.js";

const wire = (f: Fixture): Uint8Array[] => f.hex.map((h) => fromHex(h));

/** Feeds framed queue messages to a FrameDecoder one byte at a time, then reassembles. */
function byteAtATime(msgs: readonly Uint8Array[]): RmMessage[] {
  const stream = concatBytes(msgs.map(encodeFrame));
  const frames = new FrameDecoder();
  const reassembler = new Reassembler("linux");
  const out: RmMessage[] = [];
  for (let i = 0; i < stream.length; i++) {
    for (const frame of frames.push(stream.subarray(i, i + 1))) {
      for (const ev of reassembler.push(frame)) {
        assert.ok(ev.kind === "message" || ev.kind === "partial", `unexpected ${ev.kind}`);
        if (ev.kind === "message") out.push(ev.message);
      }
    }
  }
  assert.equal(frames.buffered, 0);
  assert.equal(reassembler.busy, false);
  return out;
}

for (const f of FIXTURES) {
  describe(`fixture: ${f.name}`, () => {
    test("every queue message fits in 240 bytes", () => {
      for (const m of wire(f))
        assert.ok(m.length >= 8 && m.length <= MSG_MAX_SIZE, `${m.length} bytes`);
    });

    test("decodes to its JSON", () => {
      const msgs = decodeQueueMessages(wire(f));
      assert.equal(msgs.length, 1);
      assert.deepEqual(messageToJson(msgs[0]!), f.json);
    });

    test("encodes from its JSON to the same queue messages", () => {
      const encoded = fragment(messageFromJson(f.json));
      assert.deepEqual(encoded.map(toHex), wire(f).map(toHex));
    });

    test("survives a round trip through JSON text and back to bytes", () => {
      const [m] = decodeQueueMessages(wire(f));
      const text = JSON.stringify(messageToJson(m!));
      const again = fragment(messageFromJson(JSON.parse(text)));
      assert.deepEqual(again.map(toHex), wire(f).map(toHex));
    });

    test("reassembles when the framed stream arrives one byte at a time", () => {
      const msgs = byteAtATime(wire(f));
      assert.equal(msgs.length, 1);
      assert.deepEqual(messageToJson(msgs[0]!), f.json);
    });
  });
}

test("every request id has a request row and a reply row, every notification id a row", () => {
  const have = (type: string, id: number) =>
    FIXTURES.some((f) => f.json.type === type && f.json.msg_id === id);
  const missing: string[] = [];
  for (const [name, id] of Object.entries(RequestId)) {
    if (!have("REQUEST", id)) missing.push(`${name} request`);
    if (!have("REPLY", id)) missing.push(`${name} reply`);
  }
  for (const [name, id] of Object.entries(NotificationId)) {
    if (!have("NOTIFICATION", id)) missing.push(name);
  }
  assert.deepEqual(missing, []);
});

test("the fixtures include a multi-fragment message and an error reply", () => {
  assert.ok(FIXTURES.some((f) => f.hex.length > 1));
  assert.ok(FIXTURES.some((f) => f.json.type === "REPLY" && f.json.error_code !== 0));
});

test("fixture names are unique", () => {
  assert.equal(new Set(FIXTURES.map((f) => f.name)).size, FIXTURES.length);
});
