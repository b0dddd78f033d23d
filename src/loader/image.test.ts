import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { guestImage } from "./guest-builder.js";
import { FLAT_LOAD_ADDRESS, loadImage } from "./image.js";
import { LONG_MODE_LAYOUT } from "./x86-boot.js";

const MiB = 1 << 20;

test("loadImage() copies an ELF's segments to their physical addresses and starts in long mode", () => {
  const image = guestImage("hello");
  const ram = new Uint8Array(2 * MiB).fill(0xaa);
  const loaded = loadImage(image, { gpa: 0, bytes: ram });
  assert.equal(loaded.format, "elf");
  assert.equal(loaded.mode, "long");
  assert.equal(loaded.entry, 0x100000);
  assert.equal(loaded.boot.regs.rip, 0x100000n);
  assert.equal(loaded.boot.sregs.efer, 0x500n);
  const text = Buffer.from(ram.subarray(0x100000, 0x100000 + 64)).toString("latin1");
  assert.ok(text.includes("Hello\n"), "the segment's bytes are in RAM");
  assert.equal(ram[LONG_MODE_LAYOUT.pml4] !== 0xaa, true, "the page tables are in RAM");
  assert.deepEqual(
    loaded.ranges.map((r) => r.what),
    ["GDT", "PML4", "PDPT", "page directories", "segment 0"],
  );
});

test("loadImage() zero-fills the part of a segment beyond its file bytes", () => {
  // exit-code has no .bss, so build one: a segment of 4 file bytes and 16 memory bytes.
  const elf = guestImage("exit-code").slice();
  const v = new DataView(elf.buffer);
  const phoff = Number(v.getBigUint64(32, true));
  const filesz = Number(v.getBigUint64(phoff + 32, true));
  v.setBigUint64(phoff + 40, BigInt(filesz + 16), true);
  const ram = new Uint8Array(2 * MiB).fill(0xaa);
  loadImage(elf, { gpa: 0, bytes: ram });
  assert.deepEqual(
    [...ram.subarray(0x100000 + filesz, 0x100000 + filesz + 16)],
    new Array(16).fill(0),
  );
  assert.equal(ram[0x100000 + filesz + 16], 0xaa, "nothing past memsz is touched");
});

test("loadImage() starts a flat binary in real mode at its load address", () => {
  const image = guestImage("hello16");
  const ram = new Uint8Array(MiB);
  const loaded = loadImage(image, { gpa: 0, bytes: ram });
  assert.equal(loaded.format, "flat");
  assert.equal(loaded.boot.regs.rip, BigInt(FLAT_LOAD_ADDRESS));
  assert.deepEqual(ram.subarray(FLAT_LOAD_ADDRESS, FLAT_LOAD_ADDRESS + image.length), image);
  const moved = loadImage(image, { gpa: 0, bytes: ram }, { flatAddress: 0x7c00 });
  assert.equal(moved.entry, 0x7c00);
});

test("loadImage() lets the caller's registers override the boot registers", () => {
  const loaded = loadImage(
    guestImage("exit-code"),
    { gpa: 0, bytes: new Uint8Array(2 * MiB) },
    { regs: { rdi: 9n, rsp: 0x8000n } },
  );
  assert.equal(loaded.boot.regs.rdi, 9n);
  assert.equal(loaded.boot.regs.rsp, 0x8000n);
  assert.equal(loaded.boot.regs.rip, 0x100000n);
});

test("loadImage() refuses images that do not fit in RAM and writes nothing", () => {
  const ram = new Uint8Array(MiB);
  assert.throws(
    () => loadImage(guestImage("hello"), { gpa: 0, bytes: ram }),
    (e: unknown) => isTsvisorError(e, "LOADER_RANGE") && /segment 0/.test(e.message),
  );
  assert.ok(
    ram.every((b) => b === 0),
    "the page tables were not written either",
  );
  assert.throws(
    () => loadImage(guestImage("hello"), { gpa: MiB, bytes: new Uint8Array(MiB) }),
    (e: unknown) => isTsvisorError(e, "LOADER_RANGE") && /GDT/.test(e.message),
  );
  assert.throws(
    () => loadImage(new Uint8Array(0x100), { gpa: 0, bytes: ram }, { flatAddress: 0xff80 }),
    (e: unknown) => isTsvisorError(e, "LOADER_RANGE"),
  );
});

test("loadImage() refuses an ELF whose segment overlaps the page tables", () => {
  const elf = guestImage("spin").slice();
  const v = new DataView(elf.buffer);
  const phoff = Number(v.getBigUint64(32, true));
  v.setBigUint64(phoff + 24, BigInt(LONG_MODE_LAYOUT.pdpt), true);
  assert.throws(
    () => loadImage(elf, { gpa: 0, bytes: new Uint8Array(2 * MiB) }),
    (e: unknown) => isTsvisorError(e, "LOADER_RANGE") && /overlaps/.test(e.message),
  );
});

test("loadImage() refuses an empty flat image", () => {
  assert.throws(
    () => loadImage(new Uint8Array(0), { gpa: 0, bytes: new Uint8Array(MiB) }),
    (e: unknown) => isTsvisorError(e, "LOADER_FORMAT"),
  );
});

test("loadImage() can start an ELF at its PVH entry in 32-bit protected mode", () => {
  const ram = new Uint8Array(2 * MiB);
  const loaded = loadImage(guestImage("hello"), { gpa: 0, bytes: ram }, { elfEntry: "pvh" });
  assert.equal(loaded.mode, "protected");
  assert.notEqual(loaded.entry, 0x100000);
  assert.equal(loaded.boot.regs.rip, BigInt(loaded.entry));
  assert.equal(loaded.boot.sregs.efer, 0n);
  assert.throws(
    () => loadImage(guestImage("spin"), { gpa: 0, bytes: ram }, { elfEntry: "pvh" }),
    (e: unknown) => isTsvisorError(e, "LOADER_FORMAT") && /PVH/.test(e.message),
  );
});
