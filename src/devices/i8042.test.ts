import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { handleExit } from "../vcpu/exit-handler.js";
import { I8042 } from "./i8042.js";
import { buildBus } from "./specs.js";

const OBF = 0x01;
const IBF = 0x02;

test("the status register says no output is waiting and the controller is ready for input", () => {
  const bus = buildBus([{ kind: "i8042" }]);
  const status = bus.pioRead(0x64, 1);
  assert.equal(status & (OBF | IBF), 0);
  assert.equal(status & 0x04, 0x04, "the system flag (self-test passed) is set");
  assert.equal(bus.pioRead(0x60, 1), 0, "the empty output buffer reads 0");
  assert.equal(bus.unclaimed.pioReads, 0);
  assert.equal(bus.pioRead(0x61, 1), 0xff, "0x61–0x63 are not the controller's");
});

test("command 0xFE on port 0x64 asks for a reset", () => {
  const bus = buildBus([{ kind: "i8042" }]);
  assert.deepEqual(bus.pioWrite(0x64, 1, 0xfe), { kind: "reset" });
});

test("the reset request stops the vCPU with the reset stop reason", () => {
  const bus = buildBus([{ kind: "i8042" }]);
  const data = new Uint8Array([0xfe]);
  const action = handleExit({ kind: "io", write: true, port: 0x64, size: 1, count: 1, data }, bus);
  assert.deepEqual(action, { kind: "stop", reason: { kind: "reset" } });
});

test("a pulse command resets exactly when it includes output line 0", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), (cmd) => {
      const effect = new I8042().commandPort.pioWrite(0, 1, cmd);
      const resets = cmd >= 0xf0 && (cmd & 1) === 0;
      assert.deepEqual(effect, resets ? { kind: "reset" } : undefined);
    }),
  );
});

test("writing the output port with bit 0 clear (0xD1, then data) resets too", () => {
  const kbc = new I8042();
  assert.equal(kbc.commandPort.pioWrite(0, 1, 0xd1), undefined);
  assert.equal(kbc.dataPort.pioWrite(0, 1, 0x03), undefined, "bit 0 set: no reset");
  assert.equal(kbc.commandPort.pioWrite(0, 1, 0xd0), undefined);
  assert.equal(kbc.dataPort.pioRead(0, 1), 0x03, "0xD0 reads back the output port");
  assert.equal(kbc.commandPort.pioWrite(0, 1, 0xd1), undefined);
  assert.deepEqual(kbc.dataPort.pioWrite(0, 1, 0x02), { kind: "reset" });
});

test("data bytes without a pending 0xD1 are ignored, and the status tracks command vs data", () => {
  const kbc = new I8042();
  assert.equal(kbc.dataPort.pioWrite(0, 1, 0x00), undefined);
  assert.equal(kbc.commandPort.pioRead(0, 1) & 0x08, 0, "last write was data");
  kbc.commandPort.pioWrite(0, 1, 0xaa);
  assert.equal(kbc.commandPort.pioRead(0, 1) & 0x08, 0x08, "last write was a command");
  assert.equal(kbc.dataPort.pioWrite(0, 1, 0x00), undefined, "0xAA does not take a data byte");
});
