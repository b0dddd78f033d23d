import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { DeviceBus } from "./bus.js";
import { createMailbox, Mailbox, MailboxView, mailboxRegisters } from "./mailbox.js";
import { buildBus } from "./specs.js";

test("a mailbox's registers start at the initial value and know their count", () => {
  for (const n of [1, 2, 3, 64]) {
    const buffer = createMailbox(n, -1);
    assert.equal(mailboxRegisters(buffer), n);
    const view = new MailboxView(buffer);
    for (let i = 0; i < n; i++) {
      assert.equal(view.read(i), -1);
      assert.equal(view.stamp(i), 0n);
    }
  }
  for (const n of [0, 65, 1.5]) {
    assert.throws(
      () => createMailbox(n),
      (e: unknown) => isTsvisorError(e, "DEV_CONFIG"),
    );
  }
  assert.throws(
    () => mailboxRegisters(new SharedArrayBuffer(12)),
    (e: unknown) => isTsvisorError(e, "DEV_CONFIG"),
  );
});

test("32-bit guest writes land in the register words with a host timestamp; other widths are ignored", () => {
  const buffer = createMailbox(2);
  const bus = buildBus([{ kind: "mailbox", shared: buffer, base: 0x540 }]);
  const view = new MailboxView(buffer);
  const before = process.hrtime.bigint();
  bus.pioWrite(0x544, 4, 0xdeadbeef);
  assert.equal(view.read(1), 0xdeadbeef | 0);
  assert.equal(bus.pioRead(0x544, 4), 0xdeadbeef);
  assert.ok(view.stamp(1) >= before);
  assert.equal(view.stamp(0), 0n);
  bus.pioWrite(0x540, 1, 7);
  bus.pioWrite(0x542, 4, 7);
  assert.equal(view.read(0), 0);
  assert.equal(bus.pioRead(0x540, 2), 0);
  assert.equal(bus.pioRead(0x548, 4), 0xffffffff, "beyond the registers: unclaimed");
});

test("a host thread waiting on a register is woken by the guest's write", async () => {
  const buffer = createMailbox(1);
  const device = new Mailbox(buffer);
  const bus = new DeviceBus();
  bus.addPio(0x600, device.ports, device);
  const words = new Int32Array(buffer, 0, 1);
  const waited = Atomics.waitAsync(words, 0, 0);
  assert.equal(waited.async, true);
  bus.pioWrite(0x600, 4, 42);
  assert.equal(await waited.value, "ok");
  assert.equal(new MailboxView(buffer).waitChange(0, 0, 0), 42, "no wait when it changed");
});
