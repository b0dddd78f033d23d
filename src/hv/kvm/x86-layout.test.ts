import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  X86_REG_NAMES,
  X86_SEGMENT_NAMES,
  type X86Regs,
  type X86Segment,
  type X86Sregs,
} from "../types.js";
import { KVM_REGS_OFF, KVM_SIZEOF } from "./constants.js";
import { decodeRegs, decodeSregs, encodeRegs, encodeSregs } from "./x86-layout.js";

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const byte = fc.integer({ min: 0, max: 255 });

const regsArb = fc.record(
  Object.fromEntries(X86_REG_NAMES.map((n) => [n, u64])),
) as fc.Arbitrary<X86Regs>;
const segArb: fc.Arbitrary<X86Segment> = fc.record({
  base: u64,
  limit: fc.integer({ min: 0, max: 0xffff_ffff }),
  selector: fc.integer({ min: 0, max: 0xffff }),
  type: byte,
  present: byte,
  dpl: byte,
  db: byte,
  s: byte,
  l: byte,
  g: byte,
  avl: byte,
  unusable: byte,
});
const dtArb = fc.record({ base: u64, limit: fc.integer({ min: 0, max: 0xffff }) });
const sregsArb: fc.Arbitrary<X86Sregs> = fc.record({
  ...(Object.fromEntries(X86_SEGMENT_NAMES.map((n) => [n, segArb])) as Record<
    (typeof X86_SEGMENT_NAMES)[number],
    typeof segArb
  >),
  gdt: dtArb,
  idt: dtArb,
  cr0: u64,
  cr2: u64,
  cr3: u64,
  cr4: u64,
  cr8: u64,
  efer: u64,
  apicBase: u64,
  interruptBitmap: fc.array(u64, { minLength: 4, maxLength: 4 }),
});

test("kvm_regs round-trips through its byte layout (property)", () => {
  fc.assert(
    fc.property(regsArb, (regs) => {
      const view = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_regs));
      encodeRegs(regs, view);
      assert.deepEqual(decodeRegs(view), structuredClone(regs));
    }),
    { numRuns: 50 },
  );
});

test("kvm_sregs round-trips through its byte layout (property)", () => {
  fc.assert(
    fc.property(sregsArb, (sregs) => {
      const view = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_sregs));
      encodeSregs(sregs, view);
      assert.deepEqual(decodeSregs(view), structuredClone(sregs));
    }),
    { numRuns: 50 },
  );
});

test("encodeRegs() puts rip at its kvm_regs offset, little-endian", () => {
  const regs = Object.fromEntries(X86_REG_NAMES.map((n) => [n, 0n])) as unknown as X86Regs;
  regs.rip = 0x0102_0304_0506_0708n;
  const view = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_regs));
  encodeRegs(regs, view);
  assert.equal(view.getUint8(KVM_REGS_OFF.rip), 0x08);
  assert.equal(view.getUint8(KVM_REGS_OFF.rip + 7), 0x01);
});

test("encodeRegs() stores negative values as their two's complement", () => {
  const regs = Object.fromEntries(X86_REG_NAMES.map((n) => [n, 0n])) as unknown as X86Regs;
  regs.rax = -1n;
  const view = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_regs));
  encodeRegs(regs, view);
  assert.equal(decodeRegs(view).rax, 0xffff_ffff_ffff_ffffn);
});
