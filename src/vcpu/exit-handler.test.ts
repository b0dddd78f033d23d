import assert from "node:assert/strict";
import { test } from "node:test";
import { DeviceBus, type PioDevice } from "../devices/bus.js";
import { DebugExit } from "../devices/debug-exit.js";
import type { VcpuExit } from "../hv/types.js";
import { handleExit } from "./exit-handler.js";

function busWith(log: string[]): DeviceBus {
  const bus = new DeviceBus();
  const dev: PioDevice = {
    name: "probe",
    pioRead: (offset, size) => {
      log.push(`r${offset}/${size}`);
      return size === 4 ? 0x1234_5678 : size === 2 ? 0xbeef : 0x5a;
    },
    pioWrite: (offset, size, value) => {
      log.push(`w${offset}/${size}=${value.toString(16)}`);
      return undefined;
    },
  };
  bus.addPio(0x100, 4, dev);
  bus.addPio(0xf4, 4, new DebugExit());
  return bus;
}

const io = (
  write: boolean,
  port: number,
  size: number,
  count: number,
  data: Uint8Array,
): VcpuExit => ({
  kind: "io",
  write,
  port,
  size,
  count,
  data,
});

test("a port write is passed to the device as a little-endian value", () => {
  const log: string[] = [];
  const action = handleExit(
    io(true, 0x101, 4, 1, Uint8Array.of(0x78, 0x56, 0x34, 0x12)),
    busWith(log),
  );
  assert.deepEqual(action, { kind: "continue" });
  assert.deepEqual(log, ["w1/4=12345678"]);
});

test("a port read stores the device's value little-endian into the exit data", () => {
  const data = new Uint8Array(4);
  handleExit(io(false, 0x100, 4, 1, data), busWith([]));
  assert.deepEqual([...data], [0x78, 0x56, 0x34, 0x12]);
  const narrow = new Uint8Array(2);
  handleExit(io(false, 0x100, 2, 1, narrow), busWith([]));
  assert.deepEqual([...narrow], [0xef, 0xbe]);
});

test("a rep string exit performs count accesses in order", () => {
  const log: string[] = [];
  handleExit(io(true, 0x100, 1, 3, Uint8Array.of(1, 2, 3)), busWith(log));
  assert.deepEqual(log, ["w0/1=1", "w0/1=2", "w0/1=3"]);
  const data = new Uint8Array(6);
  handleExit(io(false, 0x102, 2, 3, data), busWith([]));
  assert.deepEqual([...data], [0xef, 0xbe, 0xef, 0xbe, 0xef, 0xbe]);
});

test("a debug-exit write stops the vCPU with power-off, dropping the rest of a rep", () => {
  const log: string[] = [];
  const bus = busWith(log);
  assert.deepEqual(handleExit(io(true, 0xf4, 1, 2, Uint8Array.of(7, 8)), bus), {
    kind: "stop",
    reason: { kind: "power-off", code: 7 },
  });
});

test("an unclaimed port read answers all-ones", () => {
  const data = new Uint8Array(2);
  handleExit(io(false, 0x70, 2, 1, data), busWith([]));
  assert.deepEqual([...data], [0xff, 0xff]);
});

test("MMIO reads are filled from the bus and writes go to it", () => {
  const bus = busWith([]);
  const data = new Uint8Array(4);
  assert.deepEqual(handleExit({ kind: "mmio", write: false, addr: 0xd000_0000, data }, bus), {
    kind: "continue",
  });
  assert.deepEqual([...data], [0xff, 0xff, 0xff, 0xff]);
  handleExit({ kind: "mmio", write: true, addr: 0xd000_0000, data }, bus);
  assert.equal(bus.unclaimed.mmioWrites, 1);
});

test("hlt halts, intr interrupts, and every fatal exit stops with a matching reason", () => {
  const bus = busWith([]);
  assert.deepEqual(handleExit({ kind: "hlt" }, bus), { kind: "halt" });
  assert.deepEqual(handleExit({ kind: "intr" }, bus), { kind: "interrupted" });
  // The user-irqchip loop injects at its next entry; nothing else to do.
  assert.deepEqual(handleExit({ kind: "irq-window" }, bus), { kind: "continue" });
  assert.deepEqual(handleExit({ kind: "shutdown" }, bus), {
    kind: "stop",
    reason: { kind: "shutdown" },
  });
  assert.deepEqual(handleExit({ kind: "fail-entry", reason: 0x21n, cpu: 1 }, bus), {
    kind: "stop",
    reason: { kind: "fail-entry", reason: 0x21n, cpu: 1 },
  });
  assert.deepEqual(handleExit({ kind: "unknown", reason: 24 }, bus), {
    kind: "stop",
    reason: { kind: "unknown", reason: 24 },
  });
  assert.deepEqual(handleExit({ kind: "internal-error", suberror: 3, data: [1n] }, bus), {
    kind: "stop",
    reason: { kind: "internal-error", suberror: 3, data: [1n] },
  });
});

test("an internal error's instruction bytes are copied out of the exit", () => {
  const insn = Uint8Array.of(0xcc, 0xeb);
  const action = handleExit({ kind: "internal-error", suberror: 1, insn, data: [] }, busWith([]));
  insn[0] = 0;
  assert.ok(action.kind === "stop" && action.reason.kind === "internal-error");
  assert.deepEqual([...(action.reason.insn ?? [])], [0xcc, 0xeb]);
});
