import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { PVH_LAYOUT, PVH_MAX_MEMMAP, PVH_MAX_MODULES, pvhStartInfo } from "./pvh.js";

/** Little-endian hex of `n` bytes, for writing the expected structures out by hand. */
const le = (v: bigint | number, n: number) =>
  Buffer.from(
    Array.from({ length: n }, (_, i) => Number((BigInt(v) >> BigInt(8 * i)) & 0xffn)),
  ).toString("hex");
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

test("pvhStartInfo() lays out start_info, one module entry and the memory map as the PVH ABI says", () => {
  const w = pvhStartInfo({
    modules: [{ gpa: 0x1f_0000, size: 0x1234 }],
    cmdlineAddr: 0x1f_e000,
    memmap: [
      { addr: 0, size: 0x1f_f000, type: 1 },
      { addr: 0x1f_f000, size: 0x1000, type: 2 },
    ],
  });
  assert.equal(w.gpa, 0xf000);
  const expected =
    // start_info: magic, version, flags, nr_modules
    le(0x336e_c578, 4) +
    le(1, 4) +
    le(0, 4) +
    le(1, 4) +
    // modlist_paddr, cmdline_paddr, rsdp_paddr
    le(0xf040, 8) +
    le(0x1f_e000, 8) +
    le(0, 8) +
    // memmap_paddr, memmap_entries, reserved
    le(0xf080, 8) +
    le(2, 4) +
    le(0, 4) +
    // padding to the module list at 0xf040
    le(0, 8) +
    // hvm_modlist_entry: paddr, size, cmdline_paddr, reserved
    le(0x1f_0000, 8) +
    le(0x1234, 8) +
    le(0, 8) +
    le(0, 8) +
    // padding to the memory map at 0xf080
    le(0, 32) +
    // hvm_memmap_table_entry × 2: addr, size, type, reserved
    le(0, 8) +
    le(0x1f_f000, 8) +
    le(1, 4) +
    le(0, 4) +
    le(0x1f_f000, 8) +
    le(0x1000, 8) +
    le(2, 4) +
    le(0, 4);
  assert.equal(hex(w.bytes), expected);
});

test("pvhStartInfo() without modules or a command line has nr_modules 0 and null addresses", () => {
  const w = pvhStartInfo({ modules: [], memmap: [{ addr: 0, size: 0x20_0000, type: 1 }] });
  const v = new DataView(w.bytes.buffer, w.bytes.byteOffset, w.bytes.length);
  assert.equal(v.getUint32(0, true), 0x336e_c578);
  assert.equal(v.getUint32(12, true), 0, "nr_modules");
  assert.equal(v.getBigUint64(16, true), 0n, "modlist_paddr");
  assert.equal(v.getBigUint64(24, true), 0n, "cmdline_paddr");
  assert.equal(v.getBigUint64(32, true), 0n, "rsdp_paddr");
  assert.equal(v.getBigUint64(40, true), BigInt(PVH_LAYOUT.memmap));
  assert.equal(v.getUint32(48, true), 1);
  assert.equal(w.bytes.length, PVH_LAYOUT.memmap - PVH_LAYOUT.startInfo + 24);
});

test("pvhStartInfo() refuses more modules or memory-map entries than its page holds", () => {
  const mod = { gpa: 0x20_0000, size: 1 };
  const ram = { addr: 0, size: 0x1000, type: 1 };
  assert.ok(pvhStartInfo({ modules: Array(PVH_MAX_MODULES).fill(mod), memmap: [] }));
  assert.ok(pvhStartInfo({ modules: [], memmap: Array(PVH_MAX_MEMMAP).fill(ram) }));
  const full = pvhStartInfo({ modules: [], memmap: Array(PVH_MAX_MEMMAP).fill(ram) });
  assert.ok(full.gpa + full.bytes.length <= PVH_LAYOUT.end, "a full map stays in the page");
  for (const spec of [
    { modules: Array(PVH_MAX_MODULES + 1).fill(mod), memmap: [] },
    { modules: [], memmap: Array(PVH_MAX_MEMMAP + 1).fill(ram) },
  ]) {
    assert.throws(
      () => pvhStartInfo(spec),
      (e: unknown) => isTsvisorError(e, "LOADER_RANGE"),
    );
  }
});
