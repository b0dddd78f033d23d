/**
 * The sim vCPU on the test's own thread: every exit kind, what stays inside run(), register
 * and memory rules. Runs that would sleep (a halt with the irqchip) are tested on vCPU threads
 * in guests.test.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { isTsvisorError } from "../../core/errors.js";
import { loadImage } from "../../loader/image.js";
import {
  applyBootState,
  type GuestMemory,
  type Vcpu,
  type VcpuHandle,
  type Vm,
  type X86Regs,
} from "../types.js";
import { simGuest, simScript } from "./guests/index.js";
import { encodeSimImage, SIM_ENTRY } from "./image.js";
import type { ScriptOp } from "./program.js";
import { SimHypervisor } from "./sim-hypervisor.js";
import { openKicker, openVcpu, type SimVcpu } from "./sim-vcpu.js";

const MiB = 1 << 20;
const coded = (code: string) => (e: unknown) => isTsvisorError(e) && e.code === code;

describe("the simulated vCPU", () => {
  let hv: SimHypervisor;
  before(() => {
    hv = SimHypervisor.open();
  });
  after(() => hv.close());

  interface Guest {
    vm: Vm;
    handle: VcpuHandle;
    memory: GuestMemory;
    vcpu: SimVcpu;
    close(): Promise<void>;
  }

  function boot(
    image: Uint8Array,
    opts: { irqchip?: boolean; index?: number; regs?: Partial<X86Regs>; readonly?: boolean } = {},
  ): Guest {
    const vm = hv.createVm({ irqchip: opts.irqchip ?? true });
    const memory = hv.allocateMemory(2 * MiB);
    const loaded = loadImage(image, { gpa: 0, bytes: memory.bytes }, { regs: opts.regs ?? {} });
    if (opts.readonly) {
      // RAM below 1 MiB read-only, the program's megabyte writable.
      vm.mapMemory({ gpa: 0, memory, size: MiB, readonly: true });
      vm.mapMemory({ gpa: MiB, memory, offset: MiB });
    } else vm.mapMemory({ gpa: 0, memory });
    const handle = vm.createVcpu(opts.index ?? 0);
    const vcpu = openVcpu(handle.transfer) as SimVcpu;
    applyBootState(vcpu, loaded.boot);
    return {
      vm,
      handle,
      memory,
      vcpu,
      async close() {
        vcpu.close();
        await vm.close();
        memory.close();
      },
    };
  }

  async function withScript<T>(
    script: ScriptOp[],
    body: (g: Guest) => T,
    opts: Parameters<typeof boot>[1] = {},
  ): Promise<T> {
    const g = boot(simScript(script), opts);
    try {
      return body(g);
    } finally {
      await g.close();
    }
  }

  const kinds = (vcpu: Vcpu, n: number) => Array.from({ length: n }, () => vcpu.run().kind);

  test("fatal exits come back as KVM reports them, and again on every later run()", async () => {
    const cases: [ScriptOp, unknown][] = [
      [{ op: "shutdown" }, { kind: "shutdown" }],
      [
        { op: "fail-entry", reason: 0x80000021 },
        { kind: "fail-entry", reason: 0x80000021n, cpu: 0 },
      ],
      [
        { op: "unknown", reason: 99 },
        { kind: "unknown", reason: 99 },
      ],
      [
        { op: "internal-error", suberror: 3 },
        { kind: "internal-error", suberror: 3, data: [] },
      ],
      [
        { op: "internal-error", suberror: 1, insn: [0x0f, 0x0b] },
        { kind: "internal-error", suberror: 1, insn: Uint8Array.of(0x0f, 0x0b), data: [] },
      ],
    ];
    for (const [op, want] of cases) {
      await withScript([{ op: "print", text: "x" }, op], ({ vcpu }) => {
        assert.equal(vcpu.run().kind, "io");
        assert.deepEqual(vcpu.run(), want);
        assert.deepEqual(vcpu.run(), want, "a faulted vCPU stays faulted");
      });
    }
  });

  test("port writes carry the value little-endian; register values come from the registers", async () => {
    await withScript(
      [
        { op: "out", port: 0x80, size: 4, value: 0x11223344 },
        { op: "out", port: 0x81, size: 2, value: "rdi" },
      ],
      ({ vcpu }) => {
        const a = vcpu.run();
        assert.ok(a.kind === "io");
        assert.deepEqual(
          [a.write, a.port, a.size, a.count, [...a.data]],
          [true, 0x80, 4, 1, [0x44, 0x33, 0x22, 0x11]],
        );
        const b = vcpu.run();
        assert.ok(b.kind === "io");
        assert.deepEqual([b.port, [...b.data]], [0x81, [0xcd, 0xab]]);
      },
      { regs: { rdi: 0x1234abcdn } },
    );
  });

  test("without the irqchip a halt is an exit, and the next run() goes on after it", async () => {
    await withScript(
      [{ op: "hlt" }, { op: "exit", code: 3 }],
      ({ vcpu }) => {
        assert.deepEqual(vcpu.run(), { kind: "hlt" });
        const e = vcpu.run();
        assert.ok(e.kind === "io" && e.port === 0xf4 && e.data[0] === 3);
        // The script is over: the vCPU halts for good, every run() a halt exit.
        assert.deepEqual(kinds(vcpu, 3), ["hlt", "hlt", "hlt"]);
      },
      { irqchip: false },
    );
  });

  test("a kick makes run() return intr, on every run() until clearKick()", async () => {
    await withScript([{ op: "hlt" }], ({ handle, vcpu }) => {
      // Nothing is unmasked, so only a kick can end this run(); kick first, then enter.
      handle.kick();
      assert.deepEqual(vcpu.run(), { kind: "intr" });
      assert.deepEqual(vcpu.run(), { kind: "intr" }, "sticky until cleared");
      vcpu.clearKick();
    });
  });

  test("virtual time counts the program's operations, exits or not", async () => {
    await withScript(
      [
        { op: "store", addr: 0x2000, bytes: [1, 2, 3] },
        { op: "load", addr: 0x2000, len: 3 },
        { op: "print", text: "ab" },
      ],
      ({ vcpu }) => {
        assert.equal(vcpu.steps, 0);
        assert.equal(vcpu.run().kind, "io");
        assert.equal(vcpu.steps, 3, "store, load (no exits) and the first out");
        vcpu.run();
        assert.equal(vcpu.steps, 4);
      },
    );
  });

  test("RAM stores reach guest memory; read-only RAM turns stores into MMIO exits but serves loads", async () => {
    await withScript(
      [
        { op: "store", addr: 0x2000, bytes: [0xaa] },
        { op: "load", addr: 0x2000, len: 1 },
        { op: "store", addr: MiB + 0x8000, bytes: [0xbb, 0xcc] },
        { op: "exit", code: 0 },
      ],
      ({ memory, vcpu }) => {
        memory.bytes[0x2000] = 0x55;
        const w = vcpu.run();
        assert.ok(w.kind === "mmio" && w.write);
        assert.deepEqual([w.addr, [...w.data]], [0x2000, [0xaa]]);
        const e = vcpu.run();
        assert.ok(e.kind === "io" && e.port === 0xf4, "the load was served from RAM");
        assert.equal(memory.bytes[0x2000], 0x55, "read-only RAM kept its byte");
        assert.deepEqual([...memory.bytes.subarray(MiB + 0x8000, MiB + 0x8002)], [0xbb, 0xcc]);
      },
      { readonly: true },
    );
  });

  test("a region unmapped while the vCPU runs turns unbacked: its accesses exit as MMIO", async () => {
    await withScript(
      [
        { op: "load", addr: 0x3000, len: 4 },
        { op: "print", text: "." },
        { op: "load", addr: 0x3000, len: 4 },
      ],
      ({ vm, vcpu }) => {
        assert.equal(vcpu.run().kind, "io", "the first load came from RAM");
        vm.unmapMemory(vm.regions[0]!);
        const r = vcpu.run();
        assert.ok(r.kind === "mmio" && !r.write && r.addr === 0x3000 && r.data.length === 4);
      },
      { readonly: true },
    );
  });

  test("an x86 image cannot be simulated: an emulation failure with its first instruction bytes", async () => {
    const image = simGuest("hello");
    const g = boot(image);
    try {
      // Overwrite the sim header at the entry with real code: lea 0x2e(%rip),%rsi …
      const code = [0x48, 0x8d, 0x35, 0x2e, 0, 0, 0, 0xb9, 0x06, 0, 0, 0, 0x66, 0xba, 0xf8];
      g.memory.bytes.set(code, SIM_ENTRY);
      const e = g.vcpu.run();
      assert.deepEqual(e, {
        kind: "internal-error",
        suberror: 1,
        insn: Uint8Array.from(code),
        data: [],
      });
    } finally {
      await g.close();
    }
  });

  test("a sim image naming a guest this build lacks, or with broken JSON, fails with SIM_PROGRAM", async () => {
    const g = boot(simGuest("hello"));
    try {
      g.memory.bytes.set(new TextEncoder().encode("{not json"), SIM_ENTRY + 16);
      assert.throws(() => g.vcpu.run(), coded("SIM_PROGRAM"));
    } finally {
      await g.close();
    }
    const json = new TextEncoder().encode('{"guest":"no-such"}');
    const h = boot(encodeSimImage({ guest: "hello" }));
    try {
      h.memory.bytes.set(json, SIM_ENTRY + 16);
      new DataView(h.memory.bytes.buffer).setUint32(SIM_ENTRY + 8, json.length, true);
      assert.throws(
        () => h.vcpu.run(),
        (e) => coded("SIM_PROGRAM")(e) && /no-such/.test(String(e)),
      );
    } finally {
      await h.close();
    }
  });

  test("MMIO wider than 8 bytes is a program error, not an exit", async () => {
    await withScript([{ op: "load", addr: 0xd000_0000, len: 16 }], ({ vcpu }) => {
      assert.throws(() => vcpu.run(), coded("SIM_PROGRAM"));
    });
  });

  test("with the irqchip a secondary vCPU waits for INIT/SIPI until made runnable", async () => {
    await withScript(
      [{ op: "exit", code: 1 }],
      ({ handle, vcpu }) => {
        handle.kick();
        assert.deepEqual(vcpu.run(), { kind: "intr" }, "it only sleeps; a kick ends the wait");
        vcpu.clearKick();
        assert.equal(vcpu.steps, 0, "the program has not started");
        vcpu.setRunnable();
        assert.equal(vcpu.run().kind, "io");
      },
      { index: 1 },
    );
  });

  test("openKicker() kicks the vCPU without its handle, and not once the VM is gone", async () => {
    const g = boot(simScript([{ op: "hlt" }]));
    const kicker = openKicker(structuredClone(g.handle.transfer));
    kicker.kick();
    assert.deepEqual(g.vcpu.run(), { kind: "intr" });
    g.vcpu.clearKick();
    kicker.close();
    kicker.close();
    await g.close();
    const stale = openKicker(g.handle.transfer);
    stale.kick();
    assert.throws(() => openKicker({ backend: "kvm", module: "", index: 0 }), coded("VCPU_WORKER"));
  });

  test("a vCPU whose VM is closed refuses to run (HV_CLOSED)", async () => {
    const g = boot(simGuest("hello"));
    await g.vm.close();
    assert.throws(() => g.vcpu.run(), coded("HV_CLOSED"));
    g.vcpu.close();
    assert.throws(() => g.vcpu.getRegs(), coded("HV_CLOSED"));
    g.memory.close();
  });
});
