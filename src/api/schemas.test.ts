import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { z } from "zod";
import { isTsvisorError, type TsvisorError } from "../core/errors.js";
import { normalizeSpec } from "../host/spec.js";
import { X86_GPR_NAMES } from "../protocol/enums.js";
import { StopOptionsSchema, VmSpecSchema, validate } from "./schemas.js";

/** Request validation: what passes, and the message and details of what does not. */

function rejection(value: unknown, schema: z.ZodType = VmSpecSchema): TsvisorError {
  try {
    validate(schema, value);
  } catch (e) {
    assert.ok(isTsvisorError(e, "API_VALIDATION"), String(e));
    return e;
  }
  assert.fail(`accepted ${JSON.stringify(value)}`);
}

const issues = (e: TsvisorError) => e.details?.issues as { path: string; message: string }[];

describe("VmSpec validation", () => {
  it("accepts the documented forms of each field", () => {
    const specs = [
      { image: "hello" },
      { image_base64: "AAAA" },
      { kernel: "vmlinux", initrd: "initrd.img", cmdline: "console=ttyS0", entry: "pvh" },
      { image: "hello", memory: "2M" },
      { image: "hello", memory: "512K", vcpus: 2, irqchip: "user", name: "web-1.a_b" },
      { image: "hello", memory: 65536 },
      { image: "hello", memory: "0x200000" },
      { image: "hello", registers: { rdi: 7, rax: "0xffffffffffffffff", r15: "12" } },
      {
        image: "hello",
        devices: { doorbells: [{ label: 1, gsi: 5 }], doorbell_sources: [{ label: 2 }] },
      },
    ];
    for (const s of specs) assert.deepEqual(validate(VmSpecSchema, s), s);
  });

  it("names the field and its rule in the message: vcpus", () => {
    const e = rejection({ image: "hello", vcpus: 3 });
    assert.equal(e.message, "vcpus: must be an integer from 1 to 2");
    assert.deepEqual(issues(e), [{ path: "vcpus", message: "must be an integer from 1 to 2" }]);
    assert.equal(rejection({ image: "hello", vcpus: "2" }).message, e.message);
    assert.equal(rejection({ image: "hello", vcpus: 1.5 }).message, e.message);
  });

  it("rejects unknown fields at every level, by name", () => {
    assert.equal(rejection({ image: "hello", vcpu: 2 }).message, "vcpu: is not a known field");
    assert.equal(
      rejection({ image: "hello", devices: { bells: [] } }).message,
      "devices.bells: is not a known field",
    );
    assert.equal(
      rejection({ image: "hello", devices: { doorbells: [{ label: 1, gsi: 2, x: 0 }] } }).message,
      "devices.doorbells[0].x: is not a known field",
    );
  });

  it("requires exactly one of image, image_base64 and kernel", () => {
    const none = rejection({ memory: "2M" });
    assert.equal(none.message, "image: give exactly one of image, image_base64 and kernel");
    const two = rejection({ image: "a", kernel: "b" });
    assert.equal(two.message, "kernel: give exactly one of image, image_base64 and kernel");
  });

  it("lists every issue in details, not only the first", () => {
    const e = rejection({ vcpus: 0, irqchip: "apic", memory: "3K", zzz: 1 });
    const paths = issues(e).map((i) => i.path);
    for (const p of ["vcpus", "irqchip", "memory", "zzz", "image"]) assert.ok(paths.includes(p), p);
    assert.equal(e.message, `${issues(e)[0]!.path}: ${issues(e)[0]!.message}`);
  });

  it("checks memory texts for range and alignment, not only their form", () => {
    for (const m of ["63K", "4097M", "3G", "100", "0x1001", "lots", -4096, 4096 * 15, 2.5, true]) {
      assert.match(rejection({ image: "hello", memory: m }).message, /^memory: must be a multiple/);
    }
  });

  it("checks register names and 64-bit values", () => {
    assert.match(
      rejection({ image: "hello", registers: { rip: 1 } }).message,
      /^registers\.rip: is not a known field|^registers\.rip: is not one of/,
    );
    assert.equal(
      rejection({ image: "hello", registers: { rax: "0x1ffffffffffffffff" } }).message,
      "registers.rax: must be a non-negative integer or a 0x… string",
    );
    assert.equal(
      rejection({ image: "hello", registers: { rax: "99999999999999999999" } }).message,
      "registers.rax: exceeds 64 bits",
    );
    assert.equal(
      rejection({ image: "hello", registers: { rbx: -1 } }).message,
      "registers.rbx: must be a non-negative integer or a 0x… string",
    );
  });

  it("checks names, base64 and the command line's byte length", () => {
    assert.match(rejection({ image: "x", name: "-a" }).message, /^name: must be 1 to 63/);
    assert.match(rejection({ image: "x", name: "a".repeat(64) }).message, /^name: /);
    assert.match(rejection({ image_base64: "A=A=" }).message, /^image_base64: is not base64/);
    assert.match(rejection({ image_base64: "AAA" }).message, /^image_base64: is not base64/);
    const wide = "é".repeat(2048); // 2048 characters, 4096 bytes
    assert.match(rejection({ image: "x", cmdline: wide }).message, /^cmdline: must be under 4096/);
    assert.match(rejection({ image: "x", cmdline: "a\0b" }).message, /^cmdline: /);
  });

  it("answers any JSON value with the value or API_VALIDATION, never another failure", () => {
    const anyField = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom("0x1", "2M", "rax"));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue(),
          fc.dictionary(fc.constantFrom(...Object.keys(VmSpecSchema.shape)), anyField),
          fc.record({ registers: fc.dictionary(fc.constantFrom("rax", "rip"), anyField) }),
        ),
        (v) => {
          try {
            validate(VmSpecSchema, v);
          } catch (e) {
            assert.ok(isTsvisorError(e, "API_VALIDATION"), String(e));
          }
        },
      ),
      { numRuns: 500 },
    );
    assert.equal(
      rejection({ image: "x", registers: { rax: "hello" } }).message,
      "registers.rax: must be a non-negative integer or a 0x… string",
    );
  });

  it("says the body must be an object when it is not one", () => {
    for (const v of [null, 3, "x", [1], true]) {
      assert.equal(rejection(v).message, "(body): must be a JSON object");
    }
  });

  it("accepts only specs the host library accepts too (same names, ranges, forms)", () => {
    const spec = fc.record(
      {
        name: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/),
        memory: fc.oneof(
          fc.integer({ min: 16, max: 512 * 1024 }).map((pages) => pages * 4096),
          fc.integer({ min: 16, max: 524_288 }).map((pages) => `${pages * 4}K`),
        ),
        vcpus: fc.integer({ min: 1, max: 2 }),
        irqchip: fc.constantFrom("kernel", "user"),
        registers: fc.dictionary(
          fc.constantFrom(...X86_GPR_NAMES),
          fc.oneof(
            fc.nat(),
            fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((b) => `0x${b.toString(16)}`),
          ),
        ),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(spec, (s) => {
        const full = { image: "hello", ...s };
        validate(VmSpecSchema, full);
        normalizeSpec(full, "sim");
      }),
      { numRuns: 200 },
    );
  });
});

describe("StopOptions validation", () => {
  it("accepts {}, force and timeout_ms in range; rejects the rest by name", () => {
    assert.deepEqual(validate(StopOptionsSchema, {}), {});
    assert.deepEqual(validate(StopOptionsSchema, { force: true, timeout_ms: 600000 }), {
      force: true,
      timeout_ms: 600000,
    });
    assert.equal(
      rejection({ timeout_ms: 600001 }, StopOptionsSchema).message,
      "timeout_ms: must be an integer from 0 to 600000",
    );
    assert.equal(
      rejection({ force: "yes" }, StopOptionsSchema).message,
      "force: must be true or false",
    );
    assert.equal(
      rejection({ graceful: true }, StopOptionsSchema).message,
      "graceful: is not a known field",
    );
  });
});
