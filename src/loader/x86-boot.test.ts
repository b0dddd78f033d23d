import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  CODE32_SELECTOR,
  CODE64_SELECTOR,
  DATA_SELECTOR,
  LONG_MODE_LAYOUT,
  longModeBoot,
  protectedModeBoot,
  realModeBoot,
} from "./x86-boot.js";

/** Guest memory holding the long-mode boot writes, for walking the page tables. */
function memoryWith(writes: ReturnType<typeof longModeBoot>["writes"]): DataView {
  const mem = new Uint8Array(0x10000);
  for (const w of writes) mem.set(w.bytes, w.gpa);
  return new DataView(mem.buffer);
}

function translate(mem: DataView, cr3: bigint, va: bigint): bigint | undefined {
  const entry = (table: bigint, index: bigint) =>
    mem.getBigUint64(Number(table + index * 8n), true);
  const frame = (e: bigint) => e & 0x000f_ffff_ffff_f000n;
  const pml4e = entry(cr3, (va >> 39n) & 511n);
  if ((pml4e & 1n) === 0n) return undefined;
  const pdpte = entry(frame(pml4e), (va >> 30n) & 511n);
  if ((pdpte & 1n) === 0n) return undefined;
  const pde = entry(frame(pdpte), (va >> 21n) & 511n);
  if ((pde & 1n) === 0n || (pde & 0x80n) === 0n) return undefined;
  return (pde & 0x000f_ffff_ffe0_0000n) | (va & 0x1f_ffffn);
}

test("long-mode page tables identity-map the first 4 GiB, writable (property)", () => {
  const { writes, boot } = longModeBoot(0x100000);
  const mem = memoryWith(writes);
  const cr3 = boot.sregs.cr3!;
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (4n << 30n) - 1n }), (va) => {
      assert.equal(translate(mem, cr3, va), va);
    }),
    { numRuns: 200 },
  );
  assert.equal(translate(mem, cr3, 4n << 30n), undefined, "nothing above 4 GiB is mapped");
  for (const pd of [LONG_MODE_LAYOUT.pd, LONG_MODE_LAYOUT.pd + 4096 * 3]) {
    assert.equal(mem.getBigUint64(pd, true) & 0x83n, 0x83n, "present, writable, 2 MiB");
  }
});

test("long-mode boot enables paging, PAE and LMA, and starts at the entry with a 64-bit CS", () => {
  const { boot } = longModeBoot(0x123456);
  const s = boot.sregs;
  assert.equal(boot.regs.rip, 0x123456n);
  assert.equal(boot.regs.rflags, 2n, "bit 1 of rflags is reserved-one");
  assert.equal((s.cr0! >> 31n) & 1n, 1n, "PG");
  assert.equal(s.cr0! & 1n, 1n, "PE");
  assert.equal((s.cr4! >> 5n) & 1n, 1n, "PAE");
  assert.equal(s.efer! & 0x500n, 0x500n, "LME and LMA");
  assert.equal(s.cr3, BigInt(LONG_MODE_LAYOUT.pml4));
  assert.deepEqual([s.cs!.selector, s.cs!.l, s.cs!.db, s.cs!.type], [CODE64_SELECTOR, 1, 0, 0xb]);
  for (const seg of [s.ds, s.es, s.ss, s.fs, s.gs]) assert.equal(seg?.selector, DATA_SELECTOR);
});

test("the GDT in memory matches the hidden segment state", () => {
  const { writes, boot } = longModeBoot(0);
  const mem = memoryWith(writes);
  const desc = (sel: number) => mem.getBigUint64(Number(boot.sregs.gdt!.base) + sel, true);
  const field = (d: bigint, shift: bigint, bits: bigint) =>
    Number((d >> shift) & ((1n << bits) - 1n));
  const code = desc(CODE64_SELECTOR);
  assert.equal(field(code, 40n, 4n), boot.sregs.cs!.type, "type");
  assert.equal(field(code, 53n, 1n), boot.sregs.cs!.l, "L");
  assert.equal(field(code, 47n, 1n), 1, "present");
  const data = desc(DATA_SELECTOR);
  assert.equal(field(data, 40n, 4n), boot.sregs.ds!.type);
  assert.equal(field(data, 54n, 1n), boot.sregs.ds!.db);
  assert.equal(boot.sregs.gdt!.limit, 31);
  const code32 = desc(CODE32_SELECTOR);
  assert.equal(field(code32, 54n, 1n), 1, "the 32-bit code descriptor has D set");
  assert.equal(field(code32, 53n, 1n), 0);
});

test("real-mode boot starts at the entry with every segment base 0 and 16-bit limits", () => {
  const boot = realModeBoot(0x1000);
  assert.equal(boot.regs.rip, 0x1000n);
  for (const seg of [boot.sregs.cs, boot.sregs.ds, boot.sregs.ss]) {
    assert.deepEqual(
      [seg?.base, seg?.selector, seg?.limit, seg?.db, seg?.l],
      [0n, 0, 0xffff, 0, 0],
    );
  }
  assert.equal(boot.sregs.cr0, undefined, "the reset CR0 (protection off) is kept");
});

test("protected-mode (PVH) boot starts at the entry with paging and long mode off", () => {
  const boot = protectedModeBoot(0x10001b);
  assert.equal(boot.regs.rip, 0x10001bn);
  assert.equal(boot.regs.rbx, 0n, "until loadImage points it at its start_info");
  assert.equal(boot.sregs.cr0! & 0x8000_0001n, 1n, "PE on, PG off");
  assert.equal(boot.sregs.efer, 0n);
  assert.deepEqual(
    [boot.sregs.cs!.selector, boot.sregs.cs!.db, boot.sregs.cs!.l],
    [CODE32_SELECTOR, 1, 0],
  );
});
