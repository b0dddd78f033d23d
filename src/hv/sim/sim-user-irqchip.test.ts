/**
 * The user irqchip on the simulated backend: the four Vcpu methods on the test's own thread
 * (ready/IF at sti; hlt, one queued vector replaced by a second, the window, delivery as
 * GSI = vector − 0x20), then doorbell-wait woken by a BELL_TX ring through the whole RM/VMM
 * path, as src/vmm/user-irqchip.test.ts does on KVM. Runs everywhere (no KVM needed).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { isTsvisorError } from "../../core/errors.js";
import { loadImage } from "../../loader/image.js";
import { ExitType } from "../../protocol/enums.js";
import type { RmClient } from "../../rpc/client.js";
import { vectorBit } from "../../vcpu/vector-model.js";
import { createRmStack, type RmStack } from "../../vmm/rm-stack.js";
import { type RunVmOptions, runVm } from "../../vmm/run-vm.js";
import { applyBootState } from "../types.js";
import { simGuest, simScript } from "./guests/index.js";
import type { ScriptOp } from "./program.js";
import { SimHypervisor } from "./sim-hypervisor.js";
import { openVcpu, type SimVcpu } from "./sim-vcpu.js";

const MiB = 1 << 20;
const coded = (code: string) => (e: unknown) => isTsvisorError(e) && e.code === code;

describe("the sim vCPU's user-irqchip methods", () => {
  let hv: SimHypervisor;
  before(() => {
    hv = SimHypervisor.open();
  });
  after(() => hv.close());

  async function withVcpu(
    script: ScriptOp[],
    irqchip: boolean,
    body: (vcpu: SimVcpu, kick: () => void) => void,
  ): Promise<void> {
    const vm = hv.createVm({ irqchip });
    const memory = hv.allocateMemory(2 * MiB);
    const loaded = loadImage(simScript(script), { gpa: 0, bytes: memory.bytes }, { regs: {} });
    vm.mapMemory({ gpa: 0, memory });
    const handle = vm.createVcpu(0);
    const vcpu = openVcpu(handle.transfer) as SimVcpu;
    try {
      applyBootState(vcpu, loaded.boot);
      body(vcpu, () => handle.kick());
    } finally {
      vcpu.close();
      await vm.close();
      memory.close();
    }
  }

  test("ready only at sti; hlt; the window opens there; a second inject replaces the first", async () => {
    const script: ScriptOp[] = [
      { op: "print", text: "a" },
      { op: "wait-irq", gsi: 5 },
      { op: "print", text: "b" },
      { op: "hlt" },
      { op: "exit", code: 7 },
    ];
    await withVcpu(script, false, (vcpu, kick) => {
      // Before the first run, as KVM: neither ready nor IF.
      assert.equal(vcpu.interruptReady(), false);
      assert.equal(vcpu.interruptFlag(), false);
      assert.throws(() => vcpu.injectInterrupt(0x25), coded("VCPU_STATE"));
      assert.equal(vcpu.run().kind, "io", "the 'a'");
      assert.equal(vcpu.interruptReady(), false, "running with IF clear");

      vcpu.requestInterruptWindow(true);
      assert.deepEqual(vcpu.run(), { kind: "irq-window" }, "sti; hlt opens the window");
      assert.equal(vcpu.interruptReady(), true);
      assert.equal(vcpu.interruptFlag(), true);
      assert.equal((vcpu.getRegs().rflags >> 9n) & 1n, 1n, "RFLAGS.IF is the flag");

      // GSI 4 is not what wait-irq waits for: delivered, the guest halts again.
      vcpu.injectInterrupt(0x24);
      assert.equal(vcpu.interruptReady(), false, "nothing can be taken while one is queued");
      assert.deepEqual(vcpu.run(), { kind: "irq-window" }, "0x24 taken, back at sti; hlt");

      // 0x24 then 0x25 before the entry: only 0x25 (GSI 5) arrives, and a kick keeps it queued.
      vcpu.injectInterrupt(0x24);
      vcpu.injectInterrupt(0x25);
      kick();
      assert.deepEqual(vcpu.run(), { kind: "intr" });
      vcpu.clearKick();
      assert.equal(vcpu.interruptReady(), false, "still queued after an interrupted run");
      const b = vcpu.run();
      assert.ok(b.kind === "io" && b.data[0] === 0x62, "the 'b': wait-irq saw GSI 5");
      assert.equal(vcpu.interruptFlag(), false, "the interrupt gate cleared IF");

      // Window still requested: the next sti; hlt is a window exit, and with it withdrawn
      // the halt is reported as a hlt exit; entering again without an interrupt wakes it.
      assert.deepEqual(vcpu.run(), { kind: "irq-window" });
      vcpu.requestInterruptWindow(false);
      assert.deepEqual(vcpu.run(), { kind: "hlt" });
      assert.equal(vcpu.interruptReady(), true);
      const e = vcpu.run();
      assert.ok(e.kind === "io" && e.port === 0xf4 && e.data[0] === 7);
    });
  });

  test("vectors below 0x20, and any vector with the in-kernel irqchip, are refused", async () => {
    await withVcpu([{ op: "hlt" }], false, (vcpu) => {
      assert.deepEqual(vcpu.run(), { kind: "hlt" });
      assert.throws(() => vcpu.injectInterrupt(0x0e), coded("HV_SYSCALL"));
      assert.throws(() => vcpu.injectInterrupt(256), coded("HV_SYSCALL"));
      assert.equal(vcpu.interruptReady(), true, "a refused inject queues nothing");
    });
    await withVcpu([{ op: "print", text: "x" }], true, (vcpu) => {
      assert.equal(vcpu.run().kind, "io");
      assert.equal(vcpu.interruptReady(), false);
      assert.throws(() => vcpu.injectInterrupt(0x25), coded("HV_SYSCALL"));
    });
  });

  test("cli; hlt has IF clear and is never ready", async () => {
    await withVcpu([], false, (vcpu) => {
      // An empty script halts for good with interrupts off.
      assert.deepEqual(vcpu.run(), { kind: "hlt" });
      assert.equal(vcpu.interruptFlag(), false);
      assert.equal(vcpu.interruptReady(), false);
      vcpu.requestInterruptWindow(true);
      assert.deepEqual(vcpu.run(), { kind: "hlt" }, "no window opens with IF clear");
    });
  });
});

describe("the user irqchip through the VMM on the simulated backend", () => {
  let hv: SimHypervisor;
  let stack: RmStack;
  let client: RmClient;

  before(() => {
    hv = SimHypervisor.open();
    stack = createRmStack({ backend: hv });
    client = stack.connectHost();
  });

  after(async () => {
    await stack.close();
    hv.close();
  });

  async function run(guest: string, opts: Partial<RunVmOptions> = {}) {
    let console = "";
    const r = await runVm(stack, client, {
      image: simGuest(guest),
      name: guest,
      irqchip: "user",
      console: (b) => {
        console += Buffer.from(b).toString("latin1");
      },
      ...opts,
    });
    await stack.port!.settled();
    return { ...r, console };
  }

  test("doorbell-wait: one BELL_TX ring, rung right after VM_START, wakes it at vector 0x25", async () => {
    let seen: string | undefined;
    const r = await run("doorbell-wait", {
      regs: { rdi: 5n },
      doorbells: [{ label: 0, gsi: 5 }],
      started: (vm) => {
        stack.port!.doorbell(vm.vmid, 0)?.signal();
        seen = stack.port!.userIrqchip(vm.vmid)?.snapshot(0).text;
      },
    });
    assert.equal(r.console, "W");
    assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
    assert.match(seen ?? "", /pending=0x20\b/, `vector 0x25 is bit ${vectorBit(0x25)}`);
    assert.equal(r.vcpus[0]?.stats?.irq?.injected, 1);
  });

  test("doorbell-wait asleep in WFI is woken by a ring from the host", async () => {
    const r = await run("doorbell-wait", {
      regs: { rdi: 9n },
      doorbells: [{ label: 0, gsi: 9 }],
      started: (vm) => {
        const chip = stack.port!.userIrqchip(vm.vmid)!;
        // Ring only once the vCPU sleeps in WFI, so the ring must wake it.
        // Rings anyway after ~2000 polls, so a vCPU that never sleeps fails the wfis check
        // below instead of hanging the test.
        let polls = 0;
        const poll = setInterval(() => {
          if (/IN_WFI/.test(chip.snapshot(0).text) || ++polls > 2000) {
            clearInterval(poll);
            stack.port!.doorbell(vm.vmid, 0)?.signal();
          }
        }, 1);
      },
    });
    assert.equal(r.console, "W");
    assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
    const irq = r.vcpus[0]?.stats?.irq;
    assert.equal(irq?.injected, 1);
    assert.ok((irq?.wfis ?? 0) >= 1, "the vCPU slept in WFI before the ring");
  });

  test("two vCPUs run under the user irqchip on sim", async () => {
    let chips = 0;
    const r = await run("two-vcpu", {
      vcpus: 2,
      started: (vm) => {
        chips = stack.port!.userIrqchip(vm.vmid)?.vcpuCount ?? 0;
      },
    });
    assert.equal(chips, 2);
    assert.deepEqual([...r.console].sort(), ["A", "B"]);
  });
});
