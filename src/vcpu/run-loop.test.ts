import assert from "node:assert/strict";
import { test } from "node:test";
import { TsvisorError } from "../core/errors.js";
import { DeviceBus } from "../devices/bus.js";
import { DebugExit } from "../devices/debug-exit.js";
import type { Vcpu, VcpuExit } from "../hv/types.js";
import { VcpuControl, VcpuState } from "./control.js";
import { newStats, runVcpu } from "./run-loop.js";

/** A vCPU that replays scripted exits; `onRun` may act between them (like another thread). */
class ScriptedVcpu implements Vcpu {
  readonly index = 0;
  runs = 0;
  kicksCleared = 0;
  constructor(
    private readonly script: (VcpuExit | Error)[],
    private readonly onRun: (n: number) => void = () => {},
  ) {}
  run(): VcpuExit {
    this.onRun(this.runs);
    const next = this.script[this.runs++];
    if (next === undefined) throw new Error("script exhausted");
    if (next instanceof Error) throw next;
    return next;
  }
  clearKick(): void {
    this.kicksCleared++;
  }
  getRegs(): never {
    throw new Error("unused");
  }
  setRegs(): void {}
  getSregs(): never {
    throw new Error("unused");
  }
  setSregs(): void {}
  close(): void {}
}

const out = (port: number, byte: number): VcpuExit => ({
  kind: "io",
  write: true,
  port,
  size: 1,
  count: 1,
  data: Uint8Array.of(byte),
});

function setup(script: (VcpuExit | Error)[], onRun?: (n: number, control: VcpuControl) => void) {
  const bus = new DeviceBus();
  bus.addPio(0xf4, 1, new DebugExit());
  const control = new VcpuControl(VcpuControl.allocate());
  const vcpu = new ScriptedVcpu(script, (n) => onRun?.(n, control));
  const stats = newStats();
  return { vcpu, control, stats, run: () => runVcpu({ vcpu, bus, control, stats }) };
}

test("runVcpu() runs until an exit stops the vCPU and counts the exits", () => {
  const s = setup([
    out(0x80, 1),
    { kind: "mmio", write: true, addr: 0, data: new Uint8Array(1) },
    out(0xf4, 5),
  ]);
  assert.deepEqual(s.run(), { kind: "power-off", code: 5 });
  assert.deepEqual(s.stats, { exits: 3, io: 1, mmio: 1, halts: 0, kicks: 0 });
  assert.equal(s.control.state, VcpuState.EXITED);
});

test("a stop requested before the first run never enters the guest", () => {
  const s = setup([out(0xf4, 0)]);
  s.control.requestStop();
  assert.deepEqual(s.run(), { kind: "stopped" });
  assert.equal(s.vcpu.runs, 0);
});

test("an interrupted run clears the kick, then honours the stop that caused it", () => {
  const s = setup([out(0x80, 1), { kind: "intr" }, out(0xf4, 0)], (n, control) => {
    if (n === 1) control.requestStop();
  });
  assert.deepEqual(s.run(), { kind: "stopped" });
  assert.equal(s.vcpu.kicksCleared, 1);
  assert.equal(s.vcpu.runs, 2);
  assert.equal(s.stats.kicks, 1);
});

test("an interrupt without a request just re-enters the guest", () => {
  const s = setup([{ kind: "intr" }, out(0xf4, 9)]);
  assert.deepEqual(s.run(), { kind: "power-off", code: 9 });
  assert.equal(s.vcpu.kicksCleared, 1);
});

test("a userspace halt sleeps until woken, then runs again", () => {
  const s = setup([{ kind: "hlt" }, out(0xf4, 2)]);
  s.control.requestWake();
  assert.deepEqual(s.run(), { kind: "power-off", code: 2 });
  assert.equal(s.stats.halts, 1);
  assert.equal(s.control.takeWake(), false, "the wake was consumed");
});

test("a vCPU stopped while halted in userspace ends as stopped", () => {
  const t = setup([{ kind: "hlt" }], (n, control) => {
    if (n === 0) control.requestStop();
  });
  assert.deepEqual(t.run(), { kind: "stopped" });
  assert.equal(t.stats.halts, 1);
});

test("a failing run ends the loop with an error reason carrying the code", () => {
  const s = setup([new TsvisorError("HV_SYSCALL", "KVM_RUN failed: EFAULT")]);
  assert.deepEqual(s.run(), {
    kind: "error",
    code: "HV_SYSCALL",
    message: "KVM_RUN failed: EFAULT",
  });
  const t = setup([new Error("boom")]);
  const r = t.run();
  assert.ok(r.kind === "error" && r.code === "BUG" && r.message.includes("boom"));
});
