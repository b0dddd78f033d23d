/**
 * Userspace interrupt delivery on KVM (no in-kernel irqchip): the kvm_run facts the user
 * irqchip's loop relies on (docs/user-irqchip.md), checked on this machine's KVM with the vCPU
 * driven on the test's own thread.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { guestImage } from "../../loader/guest-builder.js";
import { loadImage } from "../../loader/image.js";
import { applyBootState, type Vcpu, type VcpuExit } from "../types.js";
import { type KvmGuestMemory, KvmHypervisor, type KvmVm, kvmAvailable } from "./kvm-hypervisor.js";
import { openVcpu } from "./kvm-vcpu.js";

const kvm = kvmAvailable();
const skip = kvm.ok ? false : `KVM not available: ${kvm.why}`;
const fdCount = () => readdirSync("/proc/self/fd").length;

/** The value of a 32-bit port write, or the exit kind. */
function what(exit: VcpuExit): string | number {
  if (exit.kind !== "io") return exit.kind;
  return new DataView(exit.data.buffer, exit.data.byteOffset, 4).getUint32(0, true);
}

describe("KVM_INTERRUPT and the interrupt window (no in-kernel irqchip)", { skip }, () => {
  let hv: KvmHypervisor;
  let vm: KvmVm;
  let memory: KvmGuestMemory;
  let vcpu: Vcpu &
    Required<
      Pick<Vcpu, "interruptReady" | "interruptFlag" | "injectInterrupt" | "requestInterruptWindow">
    >;
  let kick: () => void;
  let closeHandle: () => void;

  function boot(guest: string): void {
    vm = hv.createVm({ irqchip: false });
    memory = hv.allocateMemory(2 << 20);
    vm.mapMemory({ gpa: 0, memory });
    const loaded = loadImage(guestImage(guest), { gpa: 0, bytes: memory.bytes }, {});
    const handle = vm.createVcpu(0);
    kick = () => handle.kick();
    closeHandle = () => handle.close();
    vcpu = openVcpu(handle.transfer) as typeof vcpu;
    applyBootState(vcpu, loaded.boot);
  }

  let fds = 0;

  before(() => {
    guestImage("doorbell-stress");
    guestImage("sti-spin");
    fds = fdCount();
    hv = KvmHypervisor.open();
  });

  after(() => {
    hv.close();
    assert.equal(fdCount(), fds, "every fd is closed again");
  });

  async function shutdown(): Promise<void> {
    vcpu.close();
    closeHandle();
    await vm.close();
    memory.close();
  }

  test("at a HLT exit the guest can take an interrupt; an injected one runs its handler once", async () => {
    boot("doorbell-stress");
    try {
      assert.equal(what(vcpu.run()), 0, "ready");
      assert.equal(vcpu.interruptReady(), false, "in the middle of setup, interrupts off");
      assert.equal(what(vcpu.run()), "hlt");
      assert.equal(vcpu.interruptReady(), true);
      assert.equal(vcpu.interruptFlag(), true);
      vcpu.injectInterrupt(0x30);
      assert.equal(what(vcpu.run()), 1, "the handler acknowledged");
      assert.equal(vcpu.interruptReady(), false, "inside the handler (IF clear)");
      assert.equal(what(vcpu.run()), "hlt");
    } finally {
      await shutdown();
    }
  });

  test("a queued interrupt survives a kicked run (ready stays false) and is delivered once", async () => {
    boot("doorbell-stress");
    try {
      vcpu.run();
      assert.equal(what(vcpu.run()), "hlt");
      vcpu.injectInterrupt(0x30);
      kick();
      assert.equal(what(vcpu.run()), "intr", "immediate_exit: not entered");
      assert.equal(vcpu.interruptReady(), false, "still queued");
      vcpu.clearKick();
      assert.equal(what(vcpu.run()), 1);
      assert.equal(what(vcpu.run()), "hlt");
      // A second KVM_INTERRUPT before the entry is not refused: it replaces the first.
      vcpu.injectInterrupt(0x30);
      vcpu.injectInterrupt(0x31);
      assert.equal(what(vcpu.run()), 2);
      assert.equal(what(vcpu.run()), "hlt", "one delivered, not two");
    } finally {
      await shutdown();
    }
  });

  test("the interrupt window opens as soon as a spinning guest enables interrupts", async () => {
    boot("sti-spin");
    try {
      vcpu.requestInterruptWindow(true);
      assert.equal(what(vcpu.run()), "irq-window");
      assert.equal(vcpu.interruptReady(), true);
      vcpu.requestInterruptWindow(false);
      vcpu.injectInterrupt(0x2b);
      assert.equal(what(vcpu.run()), 1);
      kick(); // the guest spins from here on: only the kick returns
      assert.equal(what(vcpu.run()), "intr");
    } finally {
      await shutdown();
    }
  });
});
