import assert from "node:assert/strict";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import { ByteRing, pumpRing } from "./byte-ring.js";

test("bytes come out of the ring in the order they went in, across wrap-around (property)", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 7 }), { maxLength: 20 }), (batches) => {
      const ring = new ByteRing(ByteRing.allocate(8));
      const seen: number[] = [];
      for (const batch of batches) {
        for (const b of batch) assert.equal(ring.write(b), true);
        seen.push(...ring.read());
      }
      assert.deepEqual(
        seen,
        batches.flatMap((b) => [...b]),
      );
      assert.equal(ring.pending, 0);
    }),
    { numRuns: 100 },
  );
});

test("read() of an empty ring returns no bytes", () => {
  assert.equal(new ByteRing(ByteRing.allocate(4)).read().length, 0);
});

test("an abandoned ring drops writes instead of blocking on a full buffer", () => {
  const ring = new ByteRing(ByteRing.allocate(2));
  assert.equal(ring.write(1), true);
  assert.equal(ring.write(2), true);
  ring.abandon();
  assert.equal(ring.write(3), false);
  assert.deepEqual([...ring.read()], [1, 2]);
});

test("allocate() refuses capacities out of range", () => {
  assert.throws(() => ByteRing.allocate(0), RangeError);
  assert.throws(() => ByteRing.allocate(1.5), RangeError);
});

test("pumpRing() delivers everything a writer thread produced, more than the ring holds", async () => {
  const buffer = ByteRing.allocate(16);
  const total = 5000;
  const worker = new Worker(
    `const { workerData } = require("node:worker_threads");
     import(workerData.url).then(({ ByteRing }) => {
       const ring = new ByteRing(workerData.buffer);
       for (let i = 0; i < ${total}; i++) ring.write(i & 0xff);
     });`,
    { eval: true, workerData: { buffer, url: new URL("./byte-ring.js", import.meta.url).href } },
  );
  const done = new Promise<void>((resolve, reject) => {
    worker.on("exit", () => resolve());
    worker.on("error", reject);
  });
  const got: number[] = [];
  await pumpRing(new ByteRing(buffer), (b) => got.push(...b), done);
  assert.equal(got.length, total);
  assert.ok(got.every((b, i) => b === (i & 0xff)));
});
