/**
 * VMs with the user irqchip (`irqchip: "user"`, `tsvisor run --irqchip user`) through the
 * whole RM lifecycle on KVM: BELL_TX doorbells raise GSIs from userspace, HLT sleeps in the
 * residency's WFI path, several vCPUs run, and nothing is left behind.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { KvmHypervisor, kvmAvailable } from "../hv/kvm/kvm-hypervisor.js";
import { guestImage } from "../loader/guest-builder.js";
import { ExitType } from "../protocol/enums.js";
import type { RmClient } from "../rpc/client.js";
import { settledCount } from "../testing/settle.js";
import { vectorBit } from "../vcpu/vector-model.js";
import { createRmStack, type RmStack } from "./rm-stack.js";
import { type RunVmOptions, runVm } from "./run-vm.js";

const kvm = kvmAvailable();
const skip = kvm.ok ? false : `KVM not available: ${kvm.why}`;
const count = (dir: string) => readdirSync(dir).length;

describe("the user irqchip through the VMM on KVM", { skip }, () => {
  let hv: KvmHypervisor;
  let stack: RmStack;
  let client: RmClient;
  let fds = 0;
  let threads = 0;

  before(() => {
    for (const g of ["doorbell-wait", "two-vcpu", "hello"]) guestImage(g);
    fds = count("/proc/self/fd");
    threads = count("/proc/self/task");
    hv = KvmHypervisor.open();
    stack = createRmStack({ backend: hv });
    client = stack.connectHost();
  });

  after(async () => {
    await stack.close();
    hv.close();
    assert.equal(count("/proc/self/fd"), fds, "every fd is closed again");
    assert.equal(
      await settledCount("/proc/self/task", threads),
      threads,
      "every vCPU thread has ended",
    );
  });

  async function run(guest: string, opts: Partial<RunVmOptions> = {}) {
    let console = "";
    const logs: string[] = [];
    const r = await runVm(stack, client, {
      image: guestImage(guest),
      name: guest,
      irqchip: "user",
      console: (b) => {
        console += Buffer.from(b).toString("latin1");
      },
      onLog: (m) => logs.push(m),
      ...opts,
    });
    await stack.port!.settled();
    return { ...r, console, logs };
  }

  test("one BELL_TX ring, even before the guest enables interrupts, wakes it at vector 0x25", async () => {
    let seen: string | undefined;
    const r = await run("doorbell-wait", {
      regs: { rdi: 5n },
      doorbells: [{ label: 0, gsi: 5 }],
      started: (vm) => {
        // Rung once, right after VM_START: the guest has not built its IDT yet. The vector
        // stays pending until the guest can take it (IF set), so one ring is enough.
        stack.port!.doorbell(vm.vmid, 0)?.signal();
        seen = stack.port!.userIrqchip(vm.vmid)?.snapshot(0).text;
      },
    });
    assert.equal(r.console, "W");
    assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
    assert.match(seen ?? "", /pending=0x20\b/, `vector 0x25 is bit ${vectorBit(0x25)}`);
    const irq = r.vcpus[0]?.stats?.irq;
    assert.equal(irq?.injected, 1);
    // The guest programs an 8259 that is not there: its writes are unclaimed, not fatal.
    assert.ok(r.logs.some((l) => l.includes("unclaimed pio write at 0x0020")));
  });

  test("two vCPUs run under the user irqchip, each with its own residency", async () => {
    let chips = 0;
    const r = await run("two-vcpu", {
      vcpus: 2,
      started: (vm) => {
        chips = stack.port!.userIrqchip(vm.vmid)?.vcpuCount ?? 0;
      },
    });
    assert.equal(chips, 2);
    assert.deepEqual([...r.console].sort(), ["A", "B"]);
    assert.deepEqual(
      r.vcpus.map((v) => v.reason.kind),
      ["power-off", "stopped"],
    );
  });

  test("the kernel irqchip stays the default and has no user irqchip", async () => {
    let chip: unknown = "unset";
    const r = await run("hello", {
      irqchip: undefined,
      started: (vm) => {
        chip = stack.port!.userIrqchip(vm.vmid);
      },
    });
    assert.equal(r.console, "Hello\n");
    assert.equal(chip, undefined);
    assert.equal(r.vcpus[0]?.stats?.irq, undefined);
  });
});
