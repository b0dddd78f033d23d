/**
 * The user-irqchip loop against scripted vCPUs: what it injects when, the interrupt window,
 * WFI, reloads, pauses and stops. Another thread (testing/irq-worker.ts) plays the injector
 * where the loop must be asleep first; it waits for observable states, never for time.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import { DeviceBus } from "../devices/bus.js";
import { DebugExit } from "../devices/debug-exit.js";
import type { Vcpu, VcpuExit } from "../hv/types.js";
import { VcpuControl } from "./control.js";
import { Residency, VcpuRequest, VcpuResidency } from "./residency.js";
import { newStats, runVcpu } from "./run-loop.js";
import type { IrqStep, IrqWorkerData } from "./testing/irq-worker.js";
import { IrqRequest, UserIrqchip } from "./user-irqchip.js";
import { openUserIrqVcpu } from "./user-loop.js";
import { IrqRoutes, vectorBit } from "./vector-model.js";

/** One scripted run(): its exit and what kvm_run then says about interrupts. */
interface Step {
  readonly exit: VcpuExit;
  readonly ready?: boolean;
  /** Default: `ready`. */
  readonly ifFlag?: boolean;
}

class ScriptedIrqVcpu implements Vcpu {
  readonly index = 0;
  runs = 0;
  ready = false;
  ifFlag = false;
  window = false;
  /** [run number the interrupt was queued before, vector]. */
  readonly injected: [number, number][] = [];
  readonly windows: [number, boolean][] = [];
  onInject: (vector: number) => void = () => {};

  constructor(private readonly script: Step[]) {}

  run(): VcpuExit {
    const step = this.script[this.runs++];
    if (step === undefined) throw new Error("script exhausted");
    this.ready = step.ready ?? false;
    this.ifFlag = step.ifFlag ?? this.ready;
    return step.exit;
  }
  interruptReady(): boolean {
    return this.ready;
  }
  interruptFlag(): boolean {
    return this.ifFlag;
  }
  injectInterrupt(vector: number): void {
    this.injected.push([this.runs, vector]);
    this.onInject(vector);
  }
  requestInterruptWindow(on: boolean): void {
    this.window = on;
    this.windows.push([this.runs, on]);
  }
  clearKick(): void {}
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
const POWER_OFF = (code: number): Step => ({ exit: out(0xf4, code) });
const HLT: Step = { exit: { kind: "hlt" }, ready: true };

function setup(script: Step[], vcpu: Vcpu = new ScriptedIrqVcpu(script)) {
  const bus = new DeviceBus();
  bus.addPio(0xf4, 1, new DebugExit());
  const control = new VcpuControl(VcpuControl.allocate());
  const irqchip = UserIrqchip.create([
    { index: 0, transfer: { backend: "none", module: "", index: 0 }, kick() {}, close() {} },
  ]);
  const config = irqchip.vcpuConfig(0);
  const irq = openUserIrqVcpu(config, 0);
  const stats = newStats();
  return {
    vcpu,
    control,
    stats,
    irqchip,
    config,
    /** This thread's view of the words (no kick: the scripted vCPU is never inside a run). */
    res: new VcpuResidency(config.residency),
    run: () => runVcpu({ vcpu, bus, control, stats, irq }),
  };
}

/** Starts a helper thread with `steps`; resolves with what it posted. */
function helper(
  s: ReturnType<typeof setup>,
  steps: IrqStep[],
): { done: Promise<string>; worker: Worker } {
  const worker = new Worker(new URL("./testing/irq-worker.js", import.meta.url), {
    workerData: {
      residency: s.config.residency,
      routes: s.config.routes,
      control: s.control.buffer,
      vcpu: 0,
      steps,
    } satisfies IrqWorkerData,
  });
  return { worker, done: once(worker, "message").then(([m]) => m as string) };
}

test("the lowest pending vector goes first, one per entry, with the window open while more wait", () => {
  const s = setup([
    { exit: { kind: "irq-window" }, ready: true },
    { exit: out(0x80, 1) },
    { exit: { kind: "irq-window" }, ready: true },
    POWER_OFF(7),
  ]);
  s.res.inject(vectorBit(0x22) | vectorBit(0x20));
  assert.deepEqual(s.run(), { kind: "power-off", code: 7 });
  const v = s.vcpu as ScriptedIrqVcpu;
  // Before run 0 the guest cannot take one (nothing has run), so only the window is asked.
  assert.deepEqual(v.injected, [
    [1, 0x20],
    [3, 0x22],
  ]);
  assert.deepEqual(v.windows, [
    [0, true],
    [3, false],
  ]);
  assert.equal(s.res.snapshot().pending, 0);
  assert.deepEqual(s.stats.irq, { injected: 2, windows: 2, wfis: 0, reloads: 0, pauses: 0 });
});

test("nothing is queued twice before the guest runs, even when a request loops back first", () => {
  const s = setup([
    { exit: { kind: "irq-window" }, ready: true },
    { exit: { kind: "intr" } },
    { exit: out(0x80, 1), ready: true },
    POWER_OFF(0),
  ]);
  const v = s.vcpu as ScriptedIrqVcpu;
  // A RELOAD posted right after the first injection sends the loop round again before run
  // 1, with kvm_run still saying "ready" from run 0.
  let once_ = false;
  v.onInject = () => {
    if (!once_) s.res.request(IrqRequest.RELOAD);
    once_ = true;
  };
  s.res.inject(vectorBit(0x20) | vectorBit(0x21));
  assert.deepEqual(s.run(), { kind: "power-off", code: 0 });
  // Run 1 returned -EINTR with the interrupt still queued (ready false): no second one
  // until run 2 says the guest can take it.
  assert.deepEqual(v.injected, [
    [1, 0x20],
    [3, 0x21],
  ]);
  assert.equal(s.stats.irq?.reloads, 1);
});

test("HLT with nothing pending sleeps in WFI, non-resident and armed, until another thread injects", async () => {
  const s = setup([HLT, POWER_OFF(3)]);
  const h = helper(s, [
    { op: "inject", bits: vectorBit(0x30), whenState: Residency.IN_WFI | Residency.DB_ARMED },
  ]);
  try {
    assert.deepEqual(s.run(), { kind: "power-off", code: 3 });
    assert.equal(await h.done, "done");
  } finally {
    await h.worker.terminate();
  }
  const v = s.vcpu as ScriptedIrqVcpu;
  assert.deepEqual(v.injected, [[1, 0x30]], "injected at the entry after the wake-up");
  assert.equal(v.runs, 2, "the halted guest was not entered before the interrupt");
  assert.equal(s.stats.irq?.wfis, 1);
  assert.equal(s.stats.halts, 1);
});

test("an interrupt pending at HLT is injected without sleeping", () => {
  const s = setup([HLT, POWER_OFF(0)]);
  const v = s.vcpu as ScriptedIrqVcpu;
  // Published while the guest runs toward its HLT (from this thread: no kick needed).
  const original = v.run.bind(v);
  v.run = () => {
    const exit = original();
    if (v.runs === 1) s.res.inject(vectorBit(0x25));
    return exit;
  };
  assert.deepEqual(s.run(), { kind: "power-off", code: 0 });
  assert.deepEqual(v.injected, [[1, 0x25]]);
  assert.equal(s.stats.irq?.wfis, 0);
});

test("a reconfiguration reaching a halted vCPU applies its route between put and load, then sleeps again", async () => {
  const s = setup([HLT, POWER_OFF(0)]);
  const routes = new IrqRoutes(s.config.routes, 1);
  routes.stage(5, { vcpu: 0, vector: 0x3f });
  const h = helper(s, [
    { op: "request", bits: IrqRequest.RELOAD, whenState: Residency.IN_WFI },
    // IN_WFI seen after the route changed can only be the second sleep: the route is applied
    // after the first one ended.
    {
      op: "inject",
      bits: vectorBit(0x3f),
      whenRouted: { gsi: 5, vector: 0x3f },
      whenState: Residency.IN_WFI,
    },
  ]);
  try {
    s.run();
    assert.equal(await h.done, "done");
  } finally {
    await h.worker.terminate();
  }
  assert.deepEqual(routes.route(5), { vcpu: 0, vector: 0x3f });
  assert.equal(routes.staged(5), undefined, "nothing left staged");
  assert.deepEqual(s.stats.irq, { injected: 1, windows: 0, wfis: 2, reloads: 1, pauses: 0 });
  assert.equal((s.vcpu as ScriptedIrqVcpu).runs, 2, "the reload did not enter the guest");
});

test("a pause parks the vCPU before its next entry until resumed", async () => {
  const s = setup([POWER_OFF(4)]);
  s.res.pause();
  const h = helper(s, [{ op: "resume", whenHalted: true }]);
  try {
    assert.deepEqual(s.run(), { kind: "power-off", code: 4 });
    assert.equal(await h.done, "done");
  } finally {
    await h.worker.terminate();
  }
  assert.equal(s.stats.irq?.pauses, 1);
  assert.equal(s.res.snapshot().requests & VcpuRequest.PAUSE, 0);
});

test("a stop ends a paused vCPU without entering the guest", async () => {
  const s = setup([POWER_OFF(4)]);
  s.res.pause();
  const h = helper(s, [{ op: "request", bits: VcpuRequest.STOP, whenHalted: true }]);
  try {
    assert.deepEqual(s.run(), { kind: "stopped" });
    assert.equal(await h.done, "done");
  } finally {
    await h.worker.terminate();
  }
  assert.equal((s.vcpu as ScriptedIrqVcpu).runs, 0);
});

test("HLT with interrupts off waits for a request only, even with an interrupt pending", async () => {
  const s = setup([{ exit: { kind: "hlt" }, ready: false, ifFlag: false }]);
  const h = helper(s, [
    { op: "inject", bits: vectorBit(0x20) },
    { op: "request", bits: VcpuRequest.STOP, whenHalted: true },
  ]);
  try {
    assert.deepEqual(s.run(), { kind: "stopped" });
    assert.equal(await h.done, "done");
  } finally {
    await h.worker.terminate();
  }
  assert.deepEqual((s.vcpu as ScriptedIrqVcpu).injected, []);
  assert.equal(s.stats.irq?.wfis, 0, "no WFI: no interrupt can end this halt");
});

test("request bits nobody acts on are dropped instead of ending every WFI at once", async () => {
  const s = setup([HLT, POWER_OFF(0)]);
  s.res.request(1 << 20);
  const h = helper(s, [
    { op: "inject", bits: vectorBit(0x21), whenState: Residency.IN_WFI | Residency.DB_ARMED },
  ]);
  try {
    s.run();
    assert.equal(await h.done, "done");
  } finally {
    await h.worker.terminate();
  }
  assert.equal(s.stats.irq?.wfis, 1, "one sleep, not a spin");
  assert.equal(s.res.snapshot().requests & (1 << 20), 0);
});

test("a stop posted on the control words ends the loop before any entry; the vCPU ends non-resident", () => {
  const s = setup([POWER_OFF(0)]);
  s.control.requestStop();
  assert.deepEqual(s.run(), { kind: "stopped" });
  assert.equal((s.vcpu as ScriptedIrqVcpu).runs, 0);
  assert.equal(s.res.snapshot().state & Residency.RESIDENT, 0);
  assert.equal(s.res.inject(1), "left-pending", "injections after the end wake nobody");
});

test("a backend that cannot inject from userspace ends the vCPU with IRQ_UNSUPPORTED", () => {
  const plain: Vcpu = {
    index: 0,
    run: () => ({ kind: "hlt" }),
    clearKick() {},
    getRegs: () => {
      throw new Error("unused");
    },
    setRegs() {},
    getSregs: () => {
      throw new Error("unused");
    },
    setSregs() {},
    close() {},
  };
  const s = setup([], plain);
  const r = s.run();
  assert.ok(r.kind === "error" && r.code === "IRQ_UNSUPPORTED", JSON.stringify(r));
});
