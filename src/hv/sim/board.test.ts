import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../../core/errors.js";
import { Board, MAX_IOEVENTS, MAX_NOTIFIERS, MAX_VMS } from "./board.js";

const coded = (code: string) => (e: unknown) => isTsvisorError(e) && e.code === code;

test("a board refuses a buffer that is not one", () => {
  assert.throws(() => new Board(new SharedArrayBuffer(64)), coded("HV_MEMORY"));
  const wrong = new SharedArrayBuffer(Board.allocate().byteLength);
  assert.throws(() => new Board(wrong), coded("HV_MEMORY"));
});

test("notifiers count until taken; a freed slot's old references are dead", () => {
  const b = new Board(Board.allocate());
  const n = b.allocNotifier();
  b.signal(n, 2n);
  b.signal(n, 3n);
  assert.equal(b.take(n), 5n);
  assert.equal(b.take(n), 0n);
  b.freeNotifier(n);
  assert.throws(() => b.signal(n, 1n), coded("HV_CLOSED"));
  const again = b.allocNotifier();
  assert.equal(again.slot, n.slot, "the slot is reused");
  assert.notEqual(again.gen, n.gen, "with a new generation");
  assert.equal(b.notifierLive(n), false);
  assert.equal(b.take(again), 0n, "a reused slot starts at zero");
});

test("an irqfd route turns signals into a latched edge, and a count signalled before it too", () => {
  const b = new Board(Board.allocate());
  const vm = b.allocVm();
  const n = b.allocNotifier();
  b.enable(vm.slot, 5);
  b.signal(n, 1n);
  assert.equal(b.claimInterrupt(vm.slot), undefined, "not routed: only the counter moved");
  b.route(n, vm.slot, vm.gen, 5);
  assert.equal(b.take(n), 0n, "routing consumed the count");
  assert.equal(b.claimInterrupt(vm.slot), 5, "…and delivered it as an edge");
  assert.equal(b.claimInterrupt(vm.slot), undefined, "an edge is taken once");
  b.signal(n, 1n);
  b.signal(n, 1n);
  assert.equal(b.take(n), 0n, "a routed notifier's counter stays 0, as with KVM's irqfd");
  assert.equal(b.claimInterrupt(vm.slot), 5);
  assert.equal(b.claimInterrupt(vm.slot), undefined, "two signals before a take coalesce");
  b.unroute(n, vm.slot, 5);
  b.signal(n, 1n);
  assert.equal(b.take(n), 1n, "unrouted: the counter again");
});

test("a route into a closed VM falls back to the counter", () => {
  const b = new Board(Board.allocate());
  const vm = b.allocVm();
  const n = b.allocNotifier();
  b.route(n, vm.slot, vm.gen, 3);
  b.freeVm(vm.slot);
  b.signal(n, 1n);
  assert.equal(b.take(n), 1n);
});

test("masking: programming a line forgets earlier edges; masked lines are not delivered", () => {
  const b = new Board(Board.allocate());
  const vm = b.allocVm().slot;
  b.latch(vm, 4);
  assert.equal(b.claimInterrupt(vm), undefined, "masked");
  b.enable(vm, 4);
  assert.equal(b.claimInterrupt(vm), undefined, "the edge before programming is gone");
  b.latch(vm, 4);
  b.disable(vm, 4);
  assert.equal(b.claimInterrupt(vm), undefined);
  b.enable(vm, 4);
  b.latch(vm, 4);
  assert.equal(b.claimInterrupt(vm), 4);
});

test("a level line is delivered while high, lowest GSI first, and not consumed", () => {
  const b = new Board(Board.allocate());
  const vm = b.allocVm().slot;
  b.enable(vm, 10);
  b.enable(vm, 3);
  b.setLevel(vm, 10, true);
  assert.equal(b.claimInterrupt(vm), 10);
  assert.equal(b.claimInterrupt(vm), 10, "still high");
  b.latch(vm, 3);
  assert.equal(b.claimInterrupt(vm), 3, "lower GSI first");
  b.setLevel(vm, 10, false);
  assert.equal(b.claimInterrupt(vm), undefined);
  assert.deepEqual(b.lines(vm), { level: 0, latched: 0, unmasked: (1 << 10) | (1 << 3) });
});

test("property: every latched edge on an unmasked line is claimed exactly once", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 31 }), { maxLength: 60 }), (gsis) => {
      const b = new Board(Board.allocate());
      const vm = b.allocVm().slot;
      for (let g = 0; g < 32; g++) b.enable(vm, g);
      for (const g of gsis) b.latch(vm, g);
      const claimed: number[] = [];
      for (let g = b.claimInterrupt(vm); g !== undefined; g = b.claimInterrupt(vm)) claimed.push(g);
      assert.deepEqual(
        claimed,
        [...new Set(gsis)].sort((x, y) => x - y),
      );
    }),
  );
});

test("kicks are per vCPU and sticky until cleared; every change bumps SEQ", () => {
  const b = new Board(Board.allocate());
  const vm = b.allocVm().slot;
  const seq = b.seq;
  b.kick(vm, 1);
  assert.notEqual(b.seq, seq);
  assert.equal(b.kicked(vm, 0), false);
  assert.equal(b.kicked(vm, 1), true);
  assert.equal(b.kicked(vm, 1), true);
  b.clearKick(vm, 1);
  assert.equal(b.kicked(vm, 1), false);
});

test("ioeventfd entries match space, address, width and datamatch, and only live notifiers", () => {
  const b = new Board(Board.allocate());
  const vm = b.allocVm().slot;
  const any = b.allocNotifier();
  const seven = b.allocNotifier();
  b.addIoEvent(vm, { space: "pio", addr: 0x600, len: 1, datamatch: undefined, notifier: any });
  const i = b.addIoEvent(vm, {
    space: "mmio",
    addr: 0x1_d000_0000,
    len: 4,
    datamatch: 7n,
    notifier: seven,
  });
  assert.equal(b.matchIoEvent(vm, "pio", 0x600, 2, 1n), false, "width");
  assert.equal(b.matchIoEvent(vm, "mmio", 0x600, 1, 1n), false, "space");
  assert.equal(b.matchIoEvent(vm, "pio", 0x600, 1, 0xabn), true);
  assert.equal(b.matchIoEvent(vm, "mmio", 0x1_d000_0000, 4, 8n), false, "datamatch");
  assert.equal(b.matchIoEvent(vm, "mmio", 0xd000_0000, 4, 7n), false, "the high address half");
  assert.equal(b.matchIoEvent(vm, "mmio", 0x1_d000_0000, 4, 7n), true);
  assert.equal(b.take(any), 1n);
  assert.equal(b.take(seven), 1n);
  b.removeIoEvent(vm, i);
  assert.equal(b.matchIoEvent(vm, "mmio", 0x1_d000_0000, 4, 7n), false, "removed");
  b.freeNotifier(any);
  assert.equal(b.matchIoEvent(vm, "pio", 0x600, 1, 1n), false, "its notifier is closed");
});

test("slots run out with HV_LIMIT and come back when freed", () => {
  const b = new Board(Board.allocate());
  const vms = Array.from({ length: MAX_VMS }, () => b.allocVm());
  assert.throws(() => b.allocVm(), coded("HV_LIMIT"));
  b.freeVm(vms[7]!.slot);
  assert.equal(b.allocVm().slot, vms[7]!.slot);
  const ns = Array.from({ length: MAX_NOTIFIERS }, () => b.allocNotifier());
  assert.throws(() => b.allocNotifier(), coded("HV_LIMIT"));
  for (let i = 0; i < MAX_IOEVENTS; i++) {
    b.addIoEvent(0, { space: "pio", addr: i, len: 1, datamatch: undefined, notifier: ns[0]! });
  }
  assert.throws(
    () =>
      b.addIoEvent(0, { space: "pio", addr: 0, len: 1, datamatch: undefined, notifier: ns[0]! }),
    coded("HV_LIMIT"),
  );
});
