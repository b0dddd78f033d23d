import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import { guestImage } from "./guest-builder.js";
import { loadImage, placeInitrd } from "./image.js";
import { PVH_LAYOUT, PVH_START_INFO_MAGIC } from "./pvh.js";

const MiB = 1 << 20;
const PAGE = 4096;

const initrdOf = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

test("placeInitrd() picks the highest page-aligned address with room (property)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 64 * MiB }),
      fc.integer({ min: 1, max: 64 * MiB }),
      fc.integer({ min: 1, max: 64 * MiB }),
      (base, span, size) => {
        const end = base + span;
        let gpa: number;
        try {
          gpa = placeInitrd(size, base, end);
        } catch (e) {
          assert.ok(isTsvisorError(e, "LOADER_RANGE"));
          // Refused only when no page-aligned address in [base, end - size] exists.
          const best = Math.floor((end - size) / PAGE) * PAGE;
          assert.ok(best < base);
          return;
        }
        assert.equal(gpa % PAGE, 0);
        assert.ok(gpa >= base && gpa + size <= end, "inside the range");
        assert.ok(gpa + PAGE + size > end, "one page higher would not fit");
      },
    ),
  );
  assert.throws(
    () => placeInitrd(0, 0, MiB),
    (e: unknown) => isTsvisorError(e, "LOADER_FORMAT"),
  );
});

test("loadImage() puts the initrd at the top of the target and passes it in RDX/RCX", () => {
  const ram = new Uint8Array(2 * MiB);
  const top = 2 * MiB - 2 * PAGE;
  const initrd = initrdOf(10_000);
  const loaded = loadImage(
    guestImage("initrd-echo"),
    { gpa: 0, bytes: ram.subarray(0, top) },
    {
      initrd,
    },
  );
  const gpa = Math.floor((top - 10_000) / PAGE) * PAGE;
  assert.deepEqual(loaded.initrd, { gpa, size: 10_000 });
  assert.deepEqual(ram.subarray(gpa, gpa + 10_000), initrd);
  assert.equal(loaded.boot.regs.rdx, BigInt(gpa));
  assert.equal(loaded.boot.regs.rcx, 10_000n);
  assert.equal(loaded.startInfo, undefined, "no start_info at the ELF entry");
  assert.deepEqual(
    loaded.ranges.map((r) => r.what),
    ["GDT", "PML4", "PDPT", "page directories", "segment 0", "initrd"],
  );
});

test("loadImage() without an initrd still sets RDX and RCX to 0 (a reset vCPU has its signature in RDX)", () => {
  const loaded = loadImage(guestImage("hello"), { gpa: 0, bytes: new Uint8Array(2 * MiB) });
  assert.equal(loaded.boot.regs.rdx, 0n);
  assert.equal(loaded.boot.regs.rcx, 0n);
  assert.equal(loaded.initrd, undefined);
  const flat = loadImage(guestImage("hello16"), { gpa: 0, bytes: new Uint8Array(MiB) });
  assert.equal(flat.boot.regs.rdx, 0n);
  const given = loadImage(
    guestImage("hello"),
    { gpa: 0, bytes: new Uint8Array(2 * MiB) },
    { regs: { rdx: 5n } },
  );
  assert.equal(given.boot.regs.rdx, 5n, "the caller's registers still win");
});

test("loadImage() at the PVH entry writes start_info with the initrd as module 0 and points RBX at it", () => {
  const ram = new Uint8Array(2 * MiB);
  const initrd = initrdOf(5000);
  const loaded = loadImage(
    guestImage("initrd-echo"),
    { gpa: 0, bytes: ram },
    {
      elfEntry: "pvh",
      initrd,
      cmdlineAddr: 0x1f_e000,
      memoryMap: [{ addr: 0, size: 2 * MiB, type: 1 }],
    },
  );
  assert.equal(loaded.startInfo, PVH_LAYOUT.startInfo);
  assert.equal(loaded.boot.regs.rbx, BigInt(PVH_LAYOUT.startInfo));
  assert.equal(loaded.boot.regs.rdx, undefined, "the PVH entry gets start_info only");
  const v = new DataView(ram.buffer);
  const si = PVH_LAYOUT.startInfo;
  assert.equal(v.getUint32(si, true), PVH_START_INFO_MAGIC);
  assert.equal(v.getUint32(si + 12, true), 1);
  const mod = Number(v.getBigUint64(si + 16, true));
  assert.equal(Number(v.getBigUint64(mod, true)), loaded.initrd?.gpa);
  assert.equal(Number(v.getBigUint64(mod + 8, true)), 5000);
  assert.equal(v.getBigUint64(si + 24, true), 0x1f_e000n);
  assert.ok(loaded.ranges.some((r) => r.what === "PVH start_info"));

  const none = loadImage(guestImage("hello"), { gpa: 0, bytes: ram }, { elfEntry: "pvh" });
  assert.equal(none.boot.regs.rbx, BigInt(PVH_LAYOUT.startInfo), "start_info even without one");
  assert.equal(v.getUint32(si + 12, true), 0, "nr_modules 0");
  assert.equal(v.getBigUint64(si + 40, true), BigInt(PVH_LAYOUT.memmap));
  assert.equal(v.getUint32(si + 48, true), 1, "the default map: the target as RAM");
  assert.equal(v.getBigUint64(PVH_LAYOUT.memmap + 8, true), BigInt(2 * MiB));
});

test("loadImage() refuses an initrd that does not fit or reaches the image, writing nothing", () => {
  const image = guestImage("initrd-echo");
  const ram = new Uint8Array(2 * MiB);
  assert.throws(
    () => loadImage(image, { gpa: 0, bytes: ram }, { initrd: new Uint8Array(2 * MiB + 1) }),
    (e: unknown) => isTsvisorError(e, "LOADER_RANGE") && /does not fit/.test(e.message),
  );
  // 1 MiB + 1 byte must start below 1 MiB, so it runs into the image.
  assert.throws(
    () => loadImage(image, { gpa: 0, bytes: ram }, { initrd: new Uint8Array(MiB + 1) }),
    (e: unknown) =>
      isTsvisorError(e, "LOADER_RANGE") && /initrd .* overlaps segment 0/.test(e.message),
  );
  assert.ok(
    ram.every((b) => b === 0),
    "nothing was written",
  );
  assert.throws(
    () => loadImage(image, { gpa: 0, bytes: ram }, { initrd: new Uint8Array(0) }),
    (e: unknown) => isTsvisorError(e, "LOADER_FORMAT"),
  );
});
