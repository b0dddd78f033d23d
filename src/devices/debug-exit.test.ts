import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { DebugExit } from "./debug-exit.js";

test("a write to the debug-exit port powers off with the written byte as the code", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), (code) => {
      assert.deepEqual(new DebugExit().pioWrite(0, 1, code), { kind: "power-off", code });
    }),
    { numRuns: 50 },
  );
});

test("wider writes use their low byte as the exit code", () => {
  assert.deepEqual(new DebugExit().pioWrite(0, 4, 0x1234_5603), { kind: "power-off", code: 3 });
});

test("writes to the other claimed ports are ignored and reads return 0", () => {
  const d = new DebugExit();
  assert.equal(d.pioWrite(1, 1, 5), undefined);
  assert.equal(d.pioWrite(3, 1, 5), undefined);
  assert.equal(d.pioRead(0, 1), 0);
});
