import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { DeviceBus, type MmioDevice, type PioDevice, UNCLAIMED_LOG_LIMIT } from "./bus.js";

function recordingPio(name: string, log: string[]): PioDevice {
  return {
    name,
    pioRead: (offset, size) => {
      log.push(`${name} read ${offset}/${size}`);
      return 0x40 + offset;
    },
    pioWrite: (offset, size, value) => {
      log.push(`${name} write ${offset}/${size}=${value}`);
      return value === 0xee ? { kind: "reset" } : undefined;
    },
  };
}

test("the bus routes port accesses to the claiming device with offsets from its base", () => {
  const log: string[] = [];
  const bus = new DeviceBus();
  bus.addPio(0x3f8, 8, recordingPio("a", log));
  bus.addPio(0x60, 5, recordingPio("b", log));
  assert.equal(bus.pioRead(0x3fd, 1), 0x45);
  assert.equal(bus.pioWrite(0x64, 1, 0xfe), undefined);
  assert.deepEqual(bus.pioWrite(0x3f8, 2, 0xee), { kind: "reset" });
  assert.deepEqual(log, ["a read 5/1", "b write 4/1=254", "a write 0/2=238"]);
  assert.deepEqual(bus.unclaimed, { pioReads: 0, pioWrites: 0, mmioReads: 0, mmioWrites: 0 });
});

test("the bus routes MMIO accesses by address and passes the data bytes", () => {
  const seen: string[] = [];
  const dev: MmioDevice = {
    name: "m",
    mmioRead: (offset, data) => {
      data.fill(offset);
    },
    mmioWrite: (offset, data) => {
      seen.push(`${offset}:${[...data]}`);
      return { kind: "power-off", code: data[0]! };
    },
  };
  const bus = new DeviceBus();
  bus.addMmio(0xd000_0000, 0x1000, dev);
  const data = new Uint8Array(4);
  bus.mmioRead(0xd000_0010, data);
  assert.deepEqual([...data], [16, 16, 16, 16]);
  assert.deepEqual(bus.mmioWrite(0xd000_0fff, Uint8Array.of(9)), { kind: "power-off", code: 9 });
  assert.deepEqual(seen, ["4095:9"]);
});

test("devices may not claim overlapping ranges", () => {
  const bus = new DeviceBus();
  bus.addPio(0x3f8, 8, recordingPio("a", []));
  assert.throws(
    () => bus.addPio(0x3ff, 1, recordingPio("b", [])),
    (e: unknown) => isTsvisorError(e, "DEV_CONFLICT"),
  );
  bus.addPio(0x400, 1, recordingPio("c", []));
  bus.addMmio(0x1000, 0x1000, { name: "m", mmioRead() {}, mmioWrite: () => undefined });
  assert.throws(
    () => bus.addMmio(0x0, 0x1001, { name: "n", mmioRead() {}, mmioWrite: () => undefined }),
    (e: unknown) => isTsvisorError(e, "DEV_CONFLICT"),
  );
});

test("port ranges must lie inside the 64 KiB port space", () => {
  const bus = new DeviceBus();
  for (const [base, len] of [
    [0xfffe, 4],
    [-1, 1],
    [0, 0],
  ] as const) {
    assert.throws(
      () => bus.addPio(base, len, recordingPio("x", [])),
      (e: unknown) => isTsvisorError(e, "DEV_CONFIG"),
    );
  }
});

test("unclaimed port reads return all-ones of the access width and are counted", () => {
  const bus = new DeviceBus();
  assert.equal(bus.pioRead(0x80, 1), 0xff);
  assert.equal(bus.pioRead(0x80, 2), 0xffff);
  assert.equal(bus.pioRead(0x80, 4), 0xffff_ffff);
  assert.equal(bus.pioWrite(0x80, 1, 3), undefined);
  assert.deepEqual(bus.unclaimed, { pioReads: 3, pioWrites: 1, mmioReads: 0, mmioWrites: 0 });
});

test("unclaimed MMIO reads fill the data with 0xff and writes are dropped", () => {
  const bus = new DeviceBus();
  const data = new Uint8Array(8);
  bus.mmioRead(0xfee0_0000, data);
  assert.deepEqual([...data], new Array(8).fill(0xff));
  assert.equal(bus.mmioWrite(0xfee0_0000, data), undefined);
  assert.deepEqual(bus.unclaimed, { pioReads: 0, pioWrites: 0, mmioReads: 1, mmioWrites: 1 });
});

test("each unclaimed address is logged once, and logging stops after the limit", () => {
  const lines: string[] = [];
  const bus = new DeviceBus((m) => lines.push(m));
  for (let i = 0; i < 3; i++) bus.pioWrite(0x80, 1, i);
  bus.pioRead(0x80, 1);
  assert.deepEqual(lines, ["unclaimed pio write at 0x0080 (reads all-ones, writes ignored)"]);
  for (let a = 0; a < 100; a++) bus.mmioWrite(0x1000 * a, Uint8Array.of(0));
  assert.equal(lines.length, UNCLAIMED_LOG_LIMIT + 1);
  assert.match(lines.at(-1)!, /no longer logging/);
  assert.equal(bus.unclaimed.mmioWrites, 100, "counting goes on after logging stops");
});
