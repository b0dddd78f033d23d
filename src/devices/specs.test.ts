import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { ByteRing } from "./byte-ring.js";
import { buildBus, standardDevices } from "./specs.js";

test("standardDevices() gives COM1 writing into the console ring and debug-exit at 0xf4", () => {
  const buffer = ByteRing.allocate();
  const bus = buildBus(standardDevices(buffer));
  for (const c of "ok") bus.pioWrite(0x3f8, 1, c.charCodeAt(0));
  assert.equal(Buffer.from(new ByteRing(buffer).read()).toString(), "ok");
  assert.deepEqual(bus.pioWrite(0xf4, 1, 3), { kind: "power-off", code: 3 });
  assert.equal(bus.unclaimed.pioWrites, 0);
});

test("buildBus() honours a device's base port", () => {
  const buffer = ByteRing.allocate();
  const bus = buildBus([
    { kind: "uart16550", base: 0x2f8, console: buffer },
    { kind: "debug-exit", port: 0x501 },
  ]);
  bus.pioWrite(0x2f8, 1, 0x41);
  assert.deepEqual([...new ByteRing(buffer).read()], [0x41]);
  assert.deepEqual(bus.pioWrite(0x501, 1, 9), { kind: "power-off", code: 9 });
  assert.equal(bus.pioWrite(0x3f8, 1, 0x41), undefined);
  assert.equal(bus.unclaimed.pioWrites, 1);
});

test("buildBus() refuses two devices on the same ports", () => {
  const buffer = ByteRing.allocate();
  assert.throws(
    () => buildBus([...standardDevices(buffer), { kind: "debug-exit", port: 0x3fa }]),
    (e: unknown) => isTsvisorError(e, "DEV_CONFLICT"),
  );
});
