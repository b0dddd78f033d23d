import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { KvmHypervisor, kvmAvailable } from "../hv/kvm/kvm-hypervisor.js";
import type { VcpuHandle } from "../hv/types.js";
import { guestImage } from "../loader/guest-builder.js";
import { settledCount } from "../testing/settle.js";
import { runGuest } from "./harness.js";
import { VcpuThread, VcpuThreadPool } from "./vcpu-thread.js";

const kvm = kvmAvailable();
const skip = kvm.ok ? false : `KVM not available: ${kvm.why}`;
const count = (dir: string) => readdirSync(dir).length;

test("a vCPU thread whose backend module cannot be loaded ends with a VCPU_WORKER error", async () => {
  const handle: VcpuHandle = {
    index: 0,
    transfer: { backend: "none", module: "file:///nonexistent/tsvisor-backend.js", index: 0 },
    kick() {},
    close() {},
  };
  const result = await VcpuThread.start(handle, { devices: [] }).result;
  assert.equal(result.reason.kind, "error");
  assert.ok(result.reason.kind === "error" && result.reason.code === "VCPU_WORKER");
  assert.equal(result.stats?.exits, 0);
});

describe("guests on KVM through vCPU threads", { skip }, () => {
  let hv: KvmHypervisor;
  let fds = 0;
  let threads = 0;

  before(() => {
    // Build outside the measured window: building spawns processes.
    for (const g of [
      "hello",
      "hello16",
      "exit-code",
      "spin",
      "triple-fault",
      "mmio-probe",
      "emulation-failure",
    ]) {
      guestImage(g);
    }
    fds = count("/proc/self/fd");
    threads = count("/proc/self/task");
    hv = KvmHypervisor.open();
  });

  after(async () => {
    hv.close();
    assert.equal(count("/proc/self/fd"), fds, "every fd is closed again");
    assert.equal(
      await settledCount("/proc/self/task", threads),
      threads,
      "every vCPU thread has ended",
    );
  });

  test("hello prints Hello through the UART and powers off with code 0", async () => {
    const run = await runGuest(hv, guestImage("hello"));
    assert.equal(run.console, "Hello\n");
    assert.deepEqual(run.result.reason, { kind: "power-off", code: 0 });
    assert.equal(run.result.stats?.io, 6);
  });

  test("hello started at its PVH entry (32-bit protected mode) prints Hello too", async () => {
    const run = await runGuest(hv, guestImage("hello"), { elfEntry: "pvh" });
    assert.equal(run.loaded.mode, "protected");
    assert.equal(run.console, "Hello\n");
    assert.deepEqual(run.result.reason, { kind: "power-off", code: 0 });
  });

  test("a flat real-mode hello prints Hello too", async () => {
    const run = await runGuest(hv, guestImage("hello16"));
    assert.equal(run.loaded.format, "flat");
    assert.equal(run.console, "Hello\n");
    assert.deepEqual(run.result.reason, { kind: "power-off", code: 0 });
  });

  test("exit-code powers off with the code it was booted with", async () => {
    for (const code of [1, 42, 255]) {
      const run = await runGuest(hv, guestImage("exit-code"), {
        regs: { rdi: BigInt(code) },
        irqchip: false,
      });
      assert.deepEqual(run.result.reason, { kind: "power-off", code });
    }
  });

  test("a spinning guest is stopped by a kick", async () => {
    let thread: VcpuThread | undefined;
    const run = await runGuest(hv, guestImage("spin"), {
      started: (t) => {
        thread = t;
        // Give the thread time to get into KVM_RUN so the signal path is what ends it.
        setTimeout(() => t.stop(), 50);
      },
    });
    assert.deepEqual(run.result.reason, { kind: "stopped" });
    assert.equal(thread?.done, true);
  });

  test("waitOutOfGuest() is false without a stop and true once a stopped vCPU left the guest", async () => {
    const answers: boolean[] = [];
    const run = await runGuest(hv, guestImage("spin"), {
      started: (t) => {
        setTimeout(() => {
          answers.push(t.waitOutOfGuest(0));
          t.stop();
          // Generous: this bounds a hang, it measures nothing.
          answers.push(t.waitOutOfGuest(30_000));
        }, 20);
      },
    });
    assert.deepEqual(run.result.reason, { kind: "stopped" });
    assert.deepEqual(answers, [false, true]);
  });

  test("a stop issued before the vCPU thread has started still stops it", async () => {
    const run = await runGuest(hv, guestImage("spin"), { started: (t) => t.stop() });
    assert.deepEqual(run.result.reason, { kind: "stopped" });
  });

  test("a triple fault ends the vCPU with shutdown", async () => {
    const run = await runGuest(hv, guestImage("triple-fault"));
    assert.deepEqual(run.result.reason, { kind: "shutdown" });
  });

  test("unclaimed MMIO reads return all-ones, writes are ignored, and each address is logged once", async () => {
    const logs: string[] = [];
    const run = await runGuest(hv, guestImage("mmio-probe"), { onLog: (m) => logs.push(m) });
    assert.deepEqual(run.result.reason, { kind: "power-off", code: 0xff });
    assert.deepEqual(run.result.unclaimed, {
      pioReads: 0,
      pioWrites: 0,
      mmioReads: 1,
      mmioWrites: 1,
    });
    assert.deepEqual(logs, ["unclaimed mmio write at 0xd0000000 (reads all-ones, writes ignored)"]);
  });

  test("a thread pool runs successive vCPUs on the same threads and ends them on close()", async () => {
    const pool = new VcpuThreadPool(1);
    try {
      for (const code of [3, 4, 5]) {
        const run = await runGuest(hv, guestImage("exit-code"), {
          pool,
          regs: { rdi: BigInt(code) },
        });
        assert.deepEqual(run.result.reason, { kind: "power-off", code });
        assert.equal(pool.idleCount, 1);
      }
      const spin = await runGuest(hv, guestImage("spin"), {
        pool,
        started: (t) => setTimeout(() => t.stop(), 20),
      });
      assert.deepEqual(spin.result.reason, { kind: "stopped" });
      const hello = await runGuest(hv, guestImage("hello"), { pool });
      assert.equal(
        hello.console,
        "Hello\n",
        "a kick of the previous vCPU does not leak into the next",
      );
    } finally {
      await pool.close();
    }
    assert.equal(pool.idleCount, 0);
  });

  test("an instruction the host cannot run ends the vCPU with its bytes (kvm_pvm) or a triple fault", async () => {
    const run = await runGuest(hv, guestImage("emulation-failure"));
    if (existsSync("/sys/module/kvm_pvm")) {
      const r = run.result.reason;
      assert.ok(r.kind === "internal-error", `got ${r.kind}`);
      assert.equal(r.suberror, 1, "KVM_INTERNAL_ERROR_EMULATION");
      assert.equal(r.insn?.[0], 0xcc, "the int3 opcode");
    } else {
      assert.deepEqual(run.result.reason, { kind: "shutdown" });
    }
  });
});
