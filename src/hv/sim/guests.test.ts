/**
 * The simulated guests on real vCPU threads (the same VcpuThread, worker and run loop KVM
 * guests use): the simulated interrupt controller (irqfd edges, level lines, masking, halts
 * inside run()), notifiers signalled from another thread, two vCPUs sharing RAM, console
 * input, forced stops, and seeded determinism.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { ByteRing, pumpRing } from "../../devices/byte-ring.js";
import { loadImage } from "../../loader/image.js";
import { settledCount } from "../../testing/settle.js";
import { runGuest } from "../../vcpu/harness.js";
import { type VcpuResult, VcpuThread, VcpuThreadPool } from "../../vcpu/vcpu-thread.js";
import type { GuestMemory, X86Regs } from "../types.js";
import { simGuest, simScript } from "./guests/index.js";
import { DOORBELL_READY } from "./guests/platform.js";
import { SimHypervisor, type SimVm } from "./sim-hypervisor.js";

const count = (dir: string) => readdirSync(dir).length;
const MiB = 1 << 20;

interface Running {
  readonly thread: VcpuThread;
  readonly done: Promise<{ result: VcpuResult; console: string }>;
}

type Start = (
  index: number,
  opts?: { regs?: Partial<X86Regs>; runnable?: boolean; input?: SharedArrayBuffer },
) => Running;

describe("simulated guests on vCPU threads", () => {
  let hv: SimHypervisor;
  let pool: VcpuThreadPool;
  let threads = 0;

  before(() => {
    threads = count("/proc/self/task");
    hv = SimHypervisor.open();
    pool = new VcpuThreadPool(2);
  });

  after(async () => {
    await pool.close();
    hv.close();
    assert.equal(
      await settledCount("/proc/self/task", threads),
      threads,
      "every vCPU thread has ended",
    );
  });

  /** A VM with 2 MiB of RAM and `image` loaded; everything is released afterwards. */
  async function withVm(
    image: Uint8Array,
    opts: { irqchip?: boolean },
    body: (vm: SimVm, memory: GuestMemory, start: Start) => Promise<void>,
  ): Promise<void> {
    const vm = hv.createVm({ irqchip: opts.irqchip ?? true });
    const memory = hv.allocateMemory(2 * MiB);
    const started: VcpuThread[] = [];
    try {
      vm.mapMemory({ gpa: 0, memory });
      const loaded = loadImage(image, { gpa: 0, bytes: memory.bytes });
      const start: Start = (index, o = {}) => {
        const ring = ByteRing.allocate();
        const thread = VcpuThread.start(vm.createVcpu(index), {
          devices: [
            { kind: "uart16550", console: ring, ...(o.input ? { input: o.input } : {}) },
            { kind: "debug-exit" },
          ],
          boot: {
            ...loaded.boot,
            regs: { ...loaded.boot.regs, rsi: BigInt(index), ...o.regs },
            ...((o.runnable ?? index > 0) ? { runnable: true } : {}),
          },
          pool,
        });
        started.push(thread);
        const chunks: Uint8Array[] = [];
        const pumped = pumpRing(new ByteRing(ring), (b) => chunks.push(b), thread.result);
        const done = (async () => {
          const result = await thread.result;
          await pumped;
          return { result, console: Buffer.concat(chunks).toString("latin1") };
        })();
        return { thread, done };
      };
      await body(vm, memory, start);
    } finally {
      for (const t of started) {
        t.stop();
        await t.result;
      }
      await vm.close();
      memory.close();
    }
  }

  /** Resolves once the guest has stored a non-zero u32 at `gpa`. */
  async function guestFlag(memory: GuestMemory, gpa: number): Promise<void> {
    const view = new DataView(memory.bytes.buffer, gpa, 4);
    while (view.getUint32(0, true) === 0) await new Promise((r) => setTimeout(r, 1));
  }

  describe("doorbell-wait", () => {
    for (const gsi of [5, 10]) {
      test(`an irqfd on GSI ${gsi} wakes the guest halted inside run(); it prints W and powers off`, async () => {
        const bell = hv.createNotifier();
        try {
          await withVm(simGuest("doorbell-wait"), {}, async (vm, memory, start) => {
            const binding = vm.irqfd(gsi, bell);
            const run = start(0, { regs: { rdi: BigInt(gsi) } });
            await guestFlag(memory, DOORBELL_READY);
            bell.signal();
            const { result, console } = await run.done;
            assert.deepEqual(result.reason, { kind: "power-off", code: 0 });
            assert.equal(console, "W");
            assert.equal(result.stats?.halts, 0, "the halt never left run()");
            assert.equal(bell.take(), 0n, "the irqfd consumed the signal");
            binding.close();
          });
        } finally {
          bell.close();
        }
      });
    }

    test("an edge on another, masked GSI does not wake it; without its own it stays halted until stopped", async () => {
      const bell = hv.createNotifier();
      const other = hv.createNotifier();
      try {
        await withVm(simGuest("doorbell-wait"), {}, async (vm, memory, start) => {
          vm.irqfd(5, bell);
          vm.irqfd(6, other);
          const run = start(0);
          await guestFlag(memory, DOORBELL_READY);
          other.signal();
          assert.equal(vm.board.lines(vm.slot).latched, 1 << 6, "latched, never taken");
          run.thread.stop();
          const { result, console } = await run.done;
          assert.deepEqual(result.reason, { kind: "stopped" });
          assert.equal(console, "");
          assert.deepEqual([result.stats?.halts, result.stats?.kicks], [0, 1]);
        });
      } finally {
        bell.close();
        other.close();
      }
    });

    test("a notifier cloned to another thread rings the doorbell from there", async () => {
      const bell = hv.createNotifier();
      try {
        await withVm(simGuest("doorbell-wait"), {}, async (vm, memory, start) => {
          vm.irqfd(5, bell);
          const run = start(0);
          await guestFlag(memory, DOORBELL_READY);
          const module = new URL("./sim-hypervisor.js", import.meta.url).href;
          const ringer = new Worker(
            `import { workerData } from "node:worker_threads";
             const { SimNotifier } = await import(workerData.module);
             SimNotifier.open(workerData.bell).signal();`,
            { eval: true, workerData: { module, bell: bell.transfer } },
          );
          await new Promise((resolve) => ringer.once("exit", resolve));
          const { result, console } = await run.done;
          assert.deepEqual(result.reason, { kind: "power-off", code: 0 });
          assert.equal(console, "W");
        });
      } finally {
        bell.close();
      }
    });
  });

  test("without the irqchip each halt comes back to the host and a wake resumes the guest", async () => {
    const image = simScript([
      { op: "hlt" },
      { op: "print", text: "w" },
      { op: "hlt" },
      { op: "exit", code: 5 },
    ]);
    await withVm(image, { irqchip: false }, async (_vm, _memory, start) => {
      const run = start(0);
      // Wakes are sticky, so waking until the guest is done never loses one.
      const waker = setInterval(() => run.thread.wake(), 1);
      const { result, console } = await run.done;
      clearInterval(waker);
      assert.deepEqual(result.reason, { kind: "power-off", code: 5 });
      assert.equal(console, "w");
      assert.equal(result.stats?.halts, 2, "both halts reached the host");
    });
  });

  test("a level line (setIrqLine) wakes a guest waiting on it, and keeps doing so while high", async () => {
    const image = simScript([
      { op: "wait-irq", gsi: 10 },
      { op: "print", text: "1" },
      { op: "hlt" },
      { op: "print", text: "2" },
      { op: "exit", code: 0 },
    ]);
    await withVm(image, {}, async (vm, _memory, start) => {
      const run = start(0);
      vm.setIrqLine(10, true);
      const { result, console } = await run.done;
      assert.equal(console, "12", "the second halt returned at once: the line is still high");
      assert.deepEqual(result.reason, { kind: "power-off", code: 0 });
    });
  });

  describe("two-vcpu", () => {
    for (const irqchip of [true, false]) {
      test(`both vCPUs print and vCPU 0 powers off once vCPU 1 set the flag (irqchip ${irqchip})`, async () => {
        await withVm(simGuest("two-vcpu"), { irqchip }, async (_vm, _memory, start) => {
          const boot = start(0);
          const second = start(1);
          const first = await boot.done;
          assert.deepEqual(first.result.reason, { kind: "power-off", code: 0 });
          assert.equal(first.console, "A");
          second.thread.stop();
          const other = await second.done;
          assert.deepEqual(other.result.reason, { kind: "stopped" });
          assert.equal(other.console, "B");
        });
      });
    }

    test("with the irqchip a secondary not made runnable never starts; vCPU 0 waits for it", async () => {
      await withVm(simGuest("two-vcpu"), {}, async (_vm, _memory, start) => {
        const boot = start(0);
        const second = start(1, { runnable: false });
        // Give it every chance to run (sim-vcpu.test.ts shows the wait itself on one thread).
        await new Promise((r) => setTimeout(r, 20));
        second.thread.stop();
        const other = await second.done;
        assert.deepEqual(other.result.reason, { kind: "stopped" });
        assert.equal(other.console, "");
        assert.equal(other.result.stats?.io, 0);
        boot.thread.stop();
        const first = await boot.done;
        assert.deepEqual(first.result.reason, { kind: "stopped" }, "no flag, no power-off");
      });
    });
  });

  test("uart-echo reads the input ring through COM1, echoes it, exits with the count", async () => {
    const input = ByteRing.allocate();
    new ByteRing(input).tryWrite(new TextEncoder().encode("hey q"));
    await withVm(simGuest("uart-echo"), {}, async (_vm, _memory, start) => {
      const { result, console } = await start(0, { input }).done;
      assert.equal(console, "hey ");
      assert.deepEqual(result.reason, { kind: "power-off", code: 4 });
    });
  });

  test("spin and mmio-storm run until stopped; the storm's writes are unclaimed MMIO", async () => {
    for (const name of ["spin", "mmio-storm"]) {
      let thread: VcpuThread | undefined;
      const logs: string[] = [];
      const run = runGuest(hv, simGuest(name), {
        pool,
        onLog: (m) => logs.push(m),
        started: (t) => {
          thread = t;
        },
      });
      // The storm's first write is logged; the spin shows nothing, so give it a moment.
      while (name === "mmio-storm" ? logs.length === 0 : !thread) {
        await new Promise((r) => setTimeout(r, 1));
      }
      thread!.stop();
      const { result } = await run;
      assert.deepEqual(result.reason, { kind: "stopped" }, name);
      if (name === "mmio-storm") {
        assert.ok((result.unclaimed?.mmioWrites ?? 0) > 0);
        assert.deepEqual(logs, [
          "unclaimed mmio write at 0xd0000000 (reads all-ones, writes ignored)",
        ]);
      } else {
        assert.equal(result.stats?.io, 0);
        assert.ok((result.stats?.exits ?? 0) <= 1, "at most one exit: the kick");
      }
    }
  });

  test("chaos is deterministic: the same seed gives the same console, exit code and exits", async () => {
    const once = async (seed: bigint) => {
      const r = await runGuest(hv, simGuest("chaos"), { pool, regs: { rdi: seed } });
      return {
        console: r.console,
        reason: r.result.reason,
        stats: r.result.stats,
        unclaimed: r.result.unclaimed,
      };
    };
    const a = await once(7n);
    const b = await once(7n);
    assert.deepEqual(b, a);
    assert.equal(a.reason.kind, "power-off");
    assert.notEqual(
      a.reason.kind === "power-off" && a.reason.code,
      0xee,
      "nothing read back wrong",
    );
    const c = await once(8n);
    assert.notEqual(c.console, a.console, "another seed, another walk");
  });
});
