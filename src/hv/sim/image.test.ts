import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../../core/errors.js";
import { parseElf64 } from "../../loader/elf.js";
import { loadImage } from "../../loader/image.js";
import { applyBootState, type VcpuExit } from "../types.js";
import { simGuest, simGuestNames, simImageFromJson, simScript } from "./guests/index.js";
import {
  checkHeader,
  decodePayload,
  encodePayload,
  encodeSimImage,
  SIM_DATA_BYTES,
  SIM_ENTRY,
} from "./image.js";
import { parseScript, type ScriptOp } from "./program.js";
import { SimHypervisor } from "./sim-hypervisor.js";
import { openVcpu } from "./sim-vcpu.js";

const coded = (code: string) => (e: unknown) => isTsvisorError(e) && e.code === code;

test("a sim image is an x86-64 ELF: one segment at 1 MiB with room for data, a PVH entry there too", () => {
  const image = simGuest("hello", { seed: 9 });
  const elf = parseElf64(image);
  assert.equal(elf.entry, SIM_ENTRY);
  assert.equal(elf.pvhEntry, SIM_ENTRY);
  assert.equal(elf.segments.length, 1);
  const seg = elf.segments[0]!;
  assert.equal(seg.paddr, SIM_ENTRY);
  assert.ok(seg.memsz >= seg.bytes.length + SIM_DATA_BYTES);
  const decoded = decodePayload((off, len) => seg.bytes.slice(off, off + len));
  assert.deepEqual(decoded?.header, { guest: "hello", seed: 9 });
  assert.equal(decoded?.length, seg.bytes.length);
});

test("the loader starts a sim image like any ELF guest: long mode at the entry", () => {
  const ram = new Uint8Array(2 << 20);
  const loaded = loadImage(simGuest("exit-code"), { gpa: 0, bytes: ram });
  assert.equal(loaded.mode, "long");
  assert.equal(loaded.entry, SIM_ENTRY);
  const pvh = loadImage(simGuest("exit-code"), { gpa: 0, bytes: ram }, { elfEntry: "pvh" });
  assert.equal(pvh.mode, "protected");
});

test("decodePayload: no magic is not a sim image; magic with bad JSON is SIM_PROGRAM", () => {
  const payload = encodePayload({ script: [] });
  const reader = (bytes: Uint8Array) => (off: number, len: number) =>
    off + len <= bytes.length ? bytes.slice(off, off + len) : undefined;
  assert.equal(decodePayload(reader(new Uint8Array(64))), undefined);
  assert.deepEqual(decodePayload(reader(payload))?.header, { script: [] });
  const broken = payload.slice();
  broken[16] = 0x5d; // "]" where the JSON's "{" was: not JSON
  assert.throws(() => decodePayload(reader(broken)), coded("SIM_PROGRAM"));
  assert.throws(() => decodePayload(reader(payload.slice(0, 17))), coded("SIM_PROGRAM"));
});

test("headers: exactly one of guest and script; seed a u32; no unknown fields", () => {
  for (const bad of [
    {},
    { guest: "hello", script: [] },
    { guest: "Hello World" },
    { guest: "hello", seed: -1 },
    { guest: "hello", seed: 1.5 },
    { guest: "hello", args: [] },
    { guest: "hello", extra: 1 },
    [],
    null,
  ]) {
    assert.throws(() => checkHeader(bad), coded("SIM_PROGRAM"), JSON.stringify(bad));
  }
  assert.deepEqual(checkHeader({ guest: "x", seed: 0, args: { n: 1 } }), {
    guest: "x",
    seed: 0,
    args: { n: 1 },
  });
});

test("scripts are validated step by step", () => {
  for (const [bad, step] of [
    [[{ op: "out", port: 0x10000, value: 1 }], 0],
    [
      [
        { op: "print", text: "ok" },
        { op: "out", port: 1, size: 3, value: 1 },
      ],
      1,
    ],
    [[{ op: "out", port: 1, value: "eax" }], 0],
    [[{ op: "store", addr: 0, bytes: [256] }], 0],
    [[{ op: "load", addr: 0, len: 0 }], 0],
    [[{ op: "wait-irq", gsi: 32 }], 0],
    [[{ op: "internal-error", suberror: 1, insn: new Array(16).fill(0) }], 0],
    [[{ op: "jump" }], 0],
  ] as const) {
    assert.throws(
      () => parseScript(bad),
      (e) => coded("SIM_PROGRAM")(e) && String(e).includes(`step ${step}`),
      JSON.stringify(bad),
    );
  }
  assert.throws(() => parseScript({ op: "hlt" }), coded("SIM_PROGRAM"));
});

test("simGuest names every registered guest and refuses others; JSON images come in both forms", () => {
  for (const name of simGuestNames()) assert.ok(simGuest(name).length > 0);
  assert.throws(() => simGuest("nope"), coded("SIM_PROGRAM"));
  assert.deepEqual(simImageFromJson('[{"op":"hlt"}]'), simScript([{ op: "hlt" }]));
  assert.deepEqual(
    simImageFromJson('{"guest":"chaos","seed":4}'),
    encodeSimImage({ guest: "chaos", seed: 4 }),
  );
  assert.throws(() => simImageFromJson("{"), coded("SIM_PROGRAM"));
});

const RAM_END = 2 << 20;

/** The exits a script must produce on a VM without the irqchip, by the rules in sim-vcpu.ts. */
function expectedExits(ops: readonly ScriptOp[]): string[] {
  const out: string[] = [];
  for (const s of ops) {
    switch (s.op) {
      case "out":
        out.push(`io out ${s.port} ${s.value}`);
        break;
      case "in":
        out.push(`io in ${s.port}`);
        break;
      case "print":
        for (const c of s.text) out.push(`io out ${s.port ?? 0x3f8} ${c.charCodeAt(0)}`);
        break;
      case "exit":
        out.push(`io out ${0xf4} ${s.code}`);
        break;
      case "store":
        if (s.addr >= RAM_END) out.push(`mmio store ${s.addr} ${s.bytes.join(",")}`);
        break;
      case "load":
        if (s.addr >= RAM_END) out.push(`mmio load ${s.addr} ${s.len}`);
        break;
      case "hlt":
        out.push("hlt");
        break;
      case "shutdown":
        out.push("shutdown");
        return out;
      default:
        throw new Error(`not generated: ${s.op}`);
    }
  }
  out.push("hlt");
  return out;
}

function describeExit(e: VcpuExit): string {
  switch (e.kind) {
    case "io":
      return e.write ? `io out ${e.port} ${e.data[0]}` : `io in ${e.port}`;
    case "mmio":
      return e.write
        ? `mmio store ${e.addr} ${[...e.data].join(",")}`
        : `mmio load ${e.addr} ${e.data.length}`;
    default:
      return e.kind;
  }
}

test("property: a script's exits are exactly its port, MMIO, halt and fault steps, in order", async () => {
  const hv = SimHypervisor.open();
  // RAM is the first 2 MiB; addresses from 4 MiB up are unbacked MMIO.
  const ram = fc.integer({ min: 0x2000, max: 0x8_0000 });
  const mmio = fc.integer({ min: 4 << 20, max: 0xffff_0000 });
  const byte = fc.integer({ min: 0, max: 255 });
  const op: fc.Arbitrary<ScriptOp> = fc.oneof(
    fc.record({
      op: fc.constant("out" as const),
      port: fc.integer({ min: 0, max: 0xffff }),
      value: byte,
    }),
    fc.record({ op: fc.constant("in" as const), port: fc.integer({ min: 0, max: 0xffff }) }),
    fc.record({
      op: fc.constant("print" as const),
      text: fc.string({ maxLength: 4 }).map((t) => t.replace(/[^\x20-\x7e]/g, "?")),
    }),
    fc.record({ op: fc.constant("exit" as const), code: byte }),
    fc.record({
      op: fc.constant("store" as const),
      addr: fc.oneof(ram, mmio),
      bytes: fc.array(byte, { minLength: 1, maxLength: 8 }),
    }),
    fc.record({
      op: fc.constant("load" as const),
      addr: fc.oneof(ram, mmio),
      len: fc.integer({ min: 1, max: 8 }),
    }),
    fc.constant({ op: "hlt" as const }),
    fc.constant({ op: "shutdown" as const }),
  );
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 20 }), async (ops) => {
        const vm = hv.createVm({ irqchip: false });
        const memory = hv.allocateMemory(2 << 20);
        const handle = vm.createVcpu(0);
        try {
          vm.mapMemory({ gpa: 0, memory });
          const loaded = loadImage(simScript(ops), { gpa: 0, bytes: memory.bytes });
          const vcpu = openVcpu(handle.transfer);
          applyBootState(vcpu, loaded.boot);
          const want = expectedExits(ops);
          const got = want.map(() => describeExit(vcpu.run()));
          vcpu.close();
          assert.deepEqual(got, want);
        } finally {
          await vm.close();
          memory.close();
        }
      }),
      { numRuns: 60 },
    );
  } finally {
    hv.close();
  }
});
