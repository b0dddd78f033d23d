import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../../core/errors.js";
import { KVM_EXIT, KVM_FLAG, KVM_RUN_OFF, SYS } from "./constants.js";
import { decodeRunExit } from "./kvm-run.js";

const PAGE_BYTES = 12288;

function page(reason: number): { page: Uint8Array; view: DataView } {
  const p = new Uint8Array(PAGE_BYTES);
  const view = new DataView(p.buffer);
  view.setUint32(KVM_RUN_OFF.exit_reason, reason, true);
  return { page: p, view };
}

test("decodeRunExit() reports -EINTR as intr even when exit_reason is stale", () => {
  const { page: p, view } = page(KVM_EXIT.IO);
  assert.deepEqual(decodeRunExit(-SYS.EINTR, p, view), { kind: "intr" });
});

test("decodeRunExit() turns other negative return codes into HV_SYSCALL", () => {
  const { page: p, view } = page(KVM_EXIT.HLT);
  assert.throws(
    () => decodeRunExit(-SYS.EFAULT, p, view),
    (e: unknown) => isTsvisorError(e, "HV_SYSCALL") && e.details?.errno === SYS.EFAULT,
  );
});

test("decodeRunExit() decodes a port write with its data inside the kvm_run page", () => {
  const { page: p, view } = page(KVM_EXIT.IO);
  view.setUint8(KVM_RUN_OFF.io_direction, KVM_FLAG.EXIT_IO_OUT);
  view.setUint8(KVM_RUN_OFF.io_size, 1);
  view.setUint16(KVM_RUN_OFF.io_port, 0x3f8, true);
  view.setUint32(KVM_RUN_OFF.io_count, 1, true);
  view.setBigUint64(KVM_RUN_OFF.io_data_offset, 4096n, true);
  p[4096] = 0x48;
  const exit = decodeRunExit(0, p, view);
  assert.ok(exit.kind === "io");
  assert.deepEqual(
    [exit.write, exit.port, exit.size, exit.count, [...exit.data]],
    [true, 0x3f8, 1, 1, [0x48]],
  );
  exit.data[0] = 0x11;
  assert.equal(p[4096], 0x11, "data aliases the page so reads can be answered in place");
});

test("decodeRunExit() decodes any in-page port access (property)", () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.constantFrom(1, 2, 4),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 1, max: 256 }),
      (write, size, port, count) => {
        const { page: p, view } = page(KVM_EXIT.IO);
        view.setUint8(KVM_RUN_OFF.io_direction, write ? KVM_FLAG.EXIT_IO_OUT : KVM_FLAG.EXIT_IO_IN);
        view.setUint8(KVM_RUN_OFF.io_size, size);
        view.setUint16(KVM_RUN_OFF.io_port, port, true);
        view.setUint32(KVM_RUN_OFF.io_count, count, true);
        view.setBigUint64(KVM_RUN_OFF.io_data_offset, 4096n, true);
        const exit = decodeRunExit(0, p, view);
        assert.ok(exit.kind === "io");
        assert.deepEqual(
          [exit.write, exit.size, exit.port, exit.count],
          [write, size, port, count],
        );
        assert.equal(exit.data.length, size * count);
        assert.equal(exit.data.byteOffset, 4096);
      },
    ),
    { numRuns: 100 },
  );
});

test("decodeRunExit() refuses io data that would lie outside the page", () => {
  const { page: p, view } = page(KVM_EXIT.IO);
  view.setUint8(KVM_RUN_OFF.io_size, 4);
  view.setUint32(KVM_RUN_OFF.io_count, 4096, true);
  view.setBigUint64(KVM_RUN_OFF.io_data_offset, 4096n, true);
  assert.throws(
    () => decodeRunExit(0, p, view),
    (e: unknown) => isTsvisorError(e, "HV_SYSCALL"),
  );
});

test("decodeRunExit() decodes an MMIO read with len bytes of data", () => {
  const { page: p, view } = page(KVM_EXIT.MMIO);
  view.setBigUint64(KVM_RUN_OFF.mmio_phys_addr, 0xfee0_0030n, true);
  view.setUint32(KVM_RUN_OFF.mmio_len, 4, true);
  view.setUint8(KVM_RUN_OFF.mmio_is_write, 0);
  const exit = decodeRunExit(0, p, view);
  assert.ok(exit.kind === "mmio");
  assert.deepEqual(
    [exit.write, exit.addr, exit.data.length, exit.data.byteOffset],
    [false, 0xfee0_0030, 4, KVM_RUN_OFF.mmio_data],
  );
});

test("decodeRunExit() maps hlt, shutdown, the interrupt window and unknown reasons", () => {
  for (const [reason, kind] of [
    [KVM_EXIT.HLT, "hlt"],
    [KVM_EXIT.SHUTDOWN, "shutdown"],
    [KVM_EXIT.INTR, "intr"],
    [KVM_EXIT.IRQ_WINDOW_OPEN, "irq-window"],
  ] as const) {
    const { page: p, view } = page(reason);
    assert.deepEqual(decodeRunExit(0, p, view), { kind });
  }
  const { page: p, view } = page(KVM_EXIT.SYSTEM_EVENT);
  assert.deepEqual(decodeRunExit(0, p, view), { kind: "unknown", reason: KVM_EXIT.SYSTEM_EVENT });
});

test("decodeRunExit() reports a failed entry's hardware reason and cpu", () => {
  const { page: p, view } = page(KVM_EXIT.FAIL_ENTRY);
  view.setBigUint64(KVM_RUN_OFF.fail_entry_hardware_entry_failure_reason, 0x8000_0021n, true);
  view.setUint32(KVM_RUN_OFF.fail_entry_cpu, 1, true);
  assert.deepEqual(decodeRunExit(0, p, view), { kind: "fail-entry", reason: 0x8000_0021n, cpu: 1 });
});

test("decodeRunExit() gives an emulation failure's instruction bytes when KVM flags them", () => {
  const { page: p, view } = page(KVM_EXIT.INTERNAL_ERROR);
  view.setUint32(KVM_RUN_OFF.internal_suberror, KVM_FLAG.INTERNAL_ERROR_EMULATION, true);
  view.setUint32(KVM_RUN_OFF.internal_ndata, 3, true);
  view.setBigUint64(KVM_RUN_OFF.emulation_failure_flags, 1n, true);
  view.setUint8(KVM_RUN_OFF.emulation_failure_insn_size, 2);
  p.set([0xcd, 0x80], KVM_RUN_OFF.emulation_failure_insn_bytes);
  const exit = decodeRunExit(0, p, view);
  assert.ok(exit.kind === "internal-error");
  assert.equal(exit.suberror, 1);
  assert.deepEqual([...(exit.insn ?? [])], [0xcd, 0x80]);
  assert.equal(exit.data.length, 3);
  p[KVM_RUN_OFF.emulation_failure_insn_bytes] = 0;
  assert.equal(exit.insn?.[0], 0xcd, "the bytes are a copy, not a view of the page");
});

test("decodeRunExit() omits instruction bytes when KVM did not provide them", () => {
  const { page: p, view } = page(KVM_EXIT.INTERNAL_ERROR);
  view.setUint32(KVM_RUN_OFF.internal_suberror, 3, true);
  view.setUint32(KVM_RUN_OFF.internal_ndata, 100, true);
  const exit = decodeRunExit(0, p, view);
  assert.ok(exit.kind === "internal-error");
  assert.equal(exit.insn, undefined);
  assert.equal(exit.data.length, 16, "ndata is capped at the 16 words kvm_run holds");
});
