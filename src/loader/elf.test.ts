import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import { isElf, parseElf64 } from "./elf.js";
import { guestImage } from "./guest-builder.js";

interface Seg {
  type?: number;
  offset: number;
  paddr: number;
  vaddr?: number;
  filesz: number;
  memsz: number;
}

/** A minimal ELF64 executable: header, program headers, then `body` at offset 0x100. */
function elf(
  segments: Seg[],
  body: Uint8Array,
  patch: (v: DataView) => void = () => {},
): Uint8Array {
  const out = new Uint8Array(0x100 + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x464c457f, true);
  v.setUint8(4, 2);
  v.setUint8(5, 1);
  v.setUint8(6, 1);
  v.setUint16(16, 2, true);
  v.setUint16(18, 62, true);
  v.setBigUint64(24, 0x100000n, true);
  v.setBigUint64(32, 64n, true);
  v.setUint16(54, 56, true);
  v.setUint16(56, segments.length, true);
  segments.forEach((s, i) => {
    const at = 64 + 56 * i;
    v.setUint32(at, s.type ?? 1, true);
    v.setBigUint64(at + 8, BigInt(s.offset), true);
    v.setBigUint64(at + 16, BigInt(s.vaddr ?? s.paddr), true);
    v.setBigUint64(at + 24, BigInt(s.paddr), true);
    v.setBigUint64(at + 32, BigInt(s.filesz), true);
    v.setBigUint64(at + 40, BigInt(s.memsz), true);
  });
  out.set(body, 0x100);
  patch(v);
  return out;
}

const rejects = (image: Uint8Array, why: RegExp) =>
  assert.throws(
    () => parseElf64(image),
    (e: unknown) => isTsvisorError(e, "LOADER_FORMAT") && why.test(e.message),
  );

test("parseElf64() reads the entry point and PT_LOAD segments by physical address", () => {
  const img = elf(
    [
      { offset: 0x100, paddr: 0x100000, vaddr: 0xffff_8000_0000, filesz: 4, memsz: 0x1000 },
      { type: 4, offset: 0, paddr: 0, filesz: 0, memsz: 0 },
      { offset: 0x104, paddr: 0x200000, filesz: 2, memsz: 2 },
    ],
    Uint8Array.of(1, 2, 3, 4, 5, 6),
  );
  const parsed = parseElf64(img);
  assert.equal(parsed.entry, 0x100000);
  assert.deepEqual(
    parsed.segments.map((s) => [s.paddr, s.vaddr, s.memsz, [...s.bytes]]),
    [
      [0x100000, 0xffff_8000_0000, 0x1000, [1, 2, 3, 4]],
      [0x200000, 0x200000, 2, [5, 6]],
    ],
  );
});

test("parseElf64() reads the built hello guest: one segment at 1 MiB and a PVH entry inside it", () => {
  const parsed = parseElf64(guestImage("hello"));
  assert.equal(parsed.entry, 0x100000);
  assert.equal(parsed.segments.length, 1);
  const seg = parsed.segments[0]!;
  assert.equal(seg.paddr, 0x100000);
  assert.ok(
    parsed.pvhEntry !== undefined &&
      parsed.pvhEntry > seg.paddr &&
      parsed.pvhEntry < seg.paddr + seg.memsz,
  );
  assert.equal(parseElf64(guestImage("spin")).pvhEntry, undefined);
});

test("parseElf64() finds a PVH note after other notes and ignores other owners", () => {
  const note = (name: string, type: number, desc: number[]) => {
    const n = new TextEncoder().encode(`${name}\0`);
    const pad = (k: number) => (4 - (k % 4)) % 4;
    const out = new Uint8Array(12 + n.length + pad(n.length) + desc.length * 4);
    const v = new DataView(out.buffer);
    v.setUint32(0, n.length, true);
    v.setUint32(4, desc.length * 4, true);
    v.setUint32(8, type, true);
    out.set(n, 12);
    desc.forEach((d, i) => v.setUint32(12 + n.length + pad(n.length) + 4 * i, d, true));
    return out;
  };
  const notes = Uint8Array.from([
    ...note("GNU", 18, [1]),
    ...note("Xen", 5, [2]),
    ...note("Xen", 18, [0x2000]),
  ]);
  const body = Uint8Array.from([0xf4, 0, 0, 0, ...notes]);
  const img = elf(
    [
      { offset: 0x100, paddr: 0x1000, filesz: 1, memsz: 1 },
      { type: 4, offset: 0x104, paddr: 0, filesz: notes.length, memsz: 0 },
    ],
    body,
  );
  assert.equal(parseElf64(img).pvhEntry, 0x2000);
});

test("parseElf64() rejects images that are not x86-64 ELF executables", () => {
  const good = () =>
    elf([{ offset: 0x100, paddr: 0x1000, filesz: 1, memsz: 1 }], Uint8Array.of(0xf4));
  rejects(good().subarray(0, 40), /shorter/);
  rejects(
    elf([], new Uint8Array(), (v) => v.setUint8(0, 0)),
    /magic/,
  );
  rejects(
    elf([], new Uint8Array(), (v) => v.setUint8(4, 1)),
    /64-bit/,
  );
  rejects(
    elf([], new Uint8Array(), (v) => v.setUint8(5, 2)),
    /little-endian/,
  );
  rejects(
    elf([], new Uint8Array(), (v) => v.setUint16(16, 3, true)),
    /ET_EXEC/,
  );
  rejects(
    elf([], new Uint8Array(), (v) => v.setUint16(18, 3, true)),
    /x86-64/,
  );
  rejects(elf([], new Uint8Array()), /no PT_LOAD/);
});

test("parseElf64() rejects segments that run past the file, overlap, or claim filesz > memsz", () => {
  rejects(
    elf([{ offset: 0x100, paddr: 0x1000, filesz: 9, memsz: 9 }], Uint8Array.of(1)),
    /past the end/,
  );
  rejects(
    elf([{ offset: 0x100, paddr: 0x1000, filesz: 2, memsz: 1 }], Uint8Array.of(1, 2)),
    /filesz > memsz/,
  );
  rejects(
    elf(
      [
        { offset: 0x100, paddr: 0x1000, filesz: 1, memsz: 0x100 },
        { offset: 0x100, paddr: 0x10ff, filesz: 1, memsz: 1 },
      ],
      Uint8Array.of(1),
    ),
    /overlap/,
  );
  rejects(
    elf([{ offset: 0x100, paddr: 0x1000, filesz: 1, memsz: 1 }], Uint8Array.of(1), (v) =>
      v.setBigUint64(24, 1n << 60n, true),
    ),
    /too large/,
  );
});

test("parseElf64() on arbitrary bytes either parses or fails with LOADER_FORMAT (property)", () => {
  const base = elf(
    [{ offset: 0x100, paddr: 0x1000, filesz: 4, memsz: 8 }],
    Uint8Array.of(1, 2, 3, 4),
  );
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), {
        maxLength: 8,
      }),
      (edits) => {
        const img = base.slice();
        for (const [at, b] of edits) img[at] = b;
        try {
          parseElf64(img);
        } catch (e) {
          assert.ok(isTsvisorError(e, "LOADER_FORMAT"), String(e));
        }
      },
    ),
    { numRuns: 300 },
  );
});

test("isElf() recognises the ELF magic only", () => {
  assert.equal(isElf(guestImage("hello")), true);
  assert.equal(isElf(guestImage("hello16")), false);
  assert.equal(isElf(Uint8Array.of(0x7f, 0x45)), false);
});
