import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { concatBytes, fromHex, toHex } from "./bytes.js";
import { encodeFrame, FRAME_MAX_SIZE, FrameDecoder } from "./stream.js";

const frameError = (e: unknown) => isTsvisorError(e, "RPC_FRAME");

test("encodeFrame() prefixes the queue message with its u16 little-endian length", () => {
  assert.equal(toHex(encodeFrame(fromHex("2101010004000056"))), "0800" + "2101010004000056");
  assert.equal(toHex(encodeFrame(new Uint8Array(240)).subarray(0, 2)), "f000");
});

test("encodeFrame() refuses an empty message and one longer than 240 bytes", () => {
  assert.throws(() => encodeFrame(new Uint8Array(0)), frameError);
  assert.throws(() => encodeFrame(new Uint8Array(241)), frameError);
});

test("FrameDecoder returns every frame of a chunk that holds several", () => {
  const d = new FrameDecoder();
  const out = d.push(fromHex("0100aa" + "0200bbcc" + "0300ddeeff"));
  assert.deepEqual(out.map(toHex), ["aa", "bbcc", "ddeeff"]);
  assert.equal(d.buffered, 0);
});

test("FrameDecoder keeps a partial frame across chunks, including a split length", () => {
  const d = new FrameDecoder();
  assert.deepEqual(d.push(fromHex("03")), []);
  assert.equal(d.buffered, 1);
  assert.deepEqual(d.push(fromHex("00dd")), []);
  assert.equal(d.buffered, 3);
  assert.deepEqual(d.push(fromHex("eeff01")).map(toHex), ["ddeeff"]);
  assert.equal(d.buffered, 1);
});

test("FrameDecoder throws RPC_FRAME for a zero length and stays failed", () => {
  const d = new FrameDecoder();
  assert.throws(() => d.push(fromHex("0000")), frameError);
  assert.equal(d.failed, true);
  assert.throws(() => d.push(fromHex("0100aa")), frameError);
});

test("FrameDecoder throws RPC_FRAME for a length of 241 before buffering its body", () => {
  const d = new FrameDecoder();
  assert.throws(() => d.push(fromHex("f100")), frameError);
  assert.equal(d.buffered, 2);
});

test("a length of 0xffff fails at once instead of waiting for 64 KiB", () => {
  assert.throws(() => new FrameDecoder().push(fromHex("ffff")), frameError);
});

test("frames completed before a bad length are handed over in the error's details", () => {
  const d = new FrameDecoder();
  try {
    d.push(fromHex("0100aa" + "0000"));
    assert.fail("push() should throw");
  } catch (e) {
    assert.ok(e instanceof TsvisorError && e.code === "RPC_FRAME");
    assert.deepEqual((e.details!.frames as Uint8Array[]).map(toHex), ["aa"]);
  }
});

test("returned frames do not alias the caller's chunk", () => {
  const chunk = fromHex("0200bbcc");
  const [frame] = new FrameDecoder().push(chunk);
  chunk.fill(0);
  assert.equal(toHex(frame!), "bbcc");
});

test("any split of a framed stream yields the same frames and never buffers more than one frame", () => {
  const frames = fc.array(fc.uint8Array({ minLength: 1, maxLength: 240 }), { maxLength: 12 });
  fc.assert(
    fc.property(frames, fc.array(fc.nat(), { maxLength: 20 }), (msgs, cuts) => {
      const stream = concatBytes(msgs.map(encodeFrame));
      const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
      const d = new FrameDecoder();
      const out: Uint8Array[] = [];
      let at = 0;
      for (const p of [...points, stream.length]) {
        out.push(...d.push(stream.subarray(at, p)));
        assert.ok(d.buffered < FRAME_MAX_SIZE);
        at = p;
      }
      assert.deepEqual(out.map(toHex), msgs.map(toHex));
      assert.equal(d.buffered, 0);
    }),
    { numRuns: 200 },
  );
});

test("random bytes into FrameDecoder yield frames or RPC_FRAME, nothing else", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      try {
        for (const f of new FrameDecoder().push(bytes)) assert.ok(f.length >= 1 && f.length <= 240);
      } catch (e) {
        assert.ok(frameError(e), String(e));
      }
    }),
    { numRuns: 300 },
  );
});
