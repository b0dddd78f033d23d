import assert from "node:assert/strict";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { isTsvisorError } from "../core/errors.js";
import { ByteRing } from "../devices/byte-ring.js";
import { standardDevices } from "../devices/specs.js";
import { KvmHypervisor, kvmAvailable } from "../hv/kvm/kvm-hypervisor.js";
import type { VcpuHandle } from "../hv/types.js";
import { guestImage } from "../loader/guest-builder.js";
import { loadImage } from "../loader/image.js";
import { Residency, VcpuRequest, VcpuResidency } from "./residency.js";
import type { IrqWorkerData } from "./testing/irq-worker.js";
import { doorbellNotifier, IrqRequest, irqchipMode, UserIrqchip } from "./user-irqchip.js";
import { VcpuThread } from "./vcpu-thread.js";
import { defaultRoute, vectorBit } from "./vector-model.js";

const kvm = kvmAvailable();
const skip = kvm.ok ? false : `KVM not available: ${kvm.why}`;

/** Handles whose kicks are counted. */
function fakeHandles(n: number, module = ""): (VcpuHandle & { kicks: number })[] {
  return Array.from({ length: n }, (_, index) => ({
    index,
    transfer: { backend: "fake", module, index },
    kicks: 0,
    kick() {
      this.kicks++;
    },
    close() {},
  }));
}

test("irqchipMode() reads the plan option: true and undefined are kernel, false is user", () => {
  assert.equal(irqchipMode(undefined), "kernel");
  assert.equal(irqchipMode(true), "kernel");
  assert.equal(irqchipMode(false), "user");
  assert.equal(irqchipMode("user"), "user");
  assert.equal(irqchipMode("kernel"), "kernel");
});

test("raising a GSI publishes its routed vector on its vCPU, then kicks, rings or leaves it", () => {
  const handles = fakeHandles(2);
  const chip = UserIrqchip.create(handles, [
    [9, { vcpu: 1, vector: 0x3a }],
    [3, undefined],
  ]);
  const r0 = new VcpuResidency(chip.vcpuConfig(0).residency);
  const r1 = new VcpuResidency(chip.vcpuConfig(1).residency);
  // vCPU 1 not loaded yet: the bit waits for its first load.
  assert.equal(chip.raise(9), "left-pending");
  assert.equal(r1.snapshot().pending, vectorBit(0x3a));
  assert.equal(r0.snapshot().pending, 0, "not vCPU 0's");
  // vCPU 0 resident: GSI 2's default route (vector 0x22) kicks it through its handle.
  r0.load();
  assert.equal(chip.raise(2), "kicked");
  assert.equal(handles[0]?.kicks, 1);
  assert.equal(r0.takePending(), vectorBit(defaultRoute(2).vector));
  assert.equal(r0.takeRequests(VcpuRequest.KICK), VcpuRequest.KICK);
  assert.equal(chip.inject(0, 0x3f), "kicked", "inject() bypasses the routes");
  assert.equal(r0.takePending(), vectorBit(0x3f));
  assert.equal(chip.raise(3), "unrouted");
  assert.equal(r0.snapshot().pending | r1.snapshot().pending, vectorBit(0x3a));
  assert.throws(
    () => chip.raise(32),
    (e: unknown) => isTsvisorError(e, "IRQ_ROUTE"),
  );
  assert.throws(
    () => chip.vcpu(2),
    (e: unknown) => isTsvisorError(e, "IRQ_ROUTE"),
  );
});

test("a reconfiguration stages the route and asks the GSI's current vCPU to reload", () => {
  const handles = fakeHandles(2);
  const chip = UserIrqchip.create(handles);
  const r0 = new VcpuResidency(chip.vcpuConfig(0).residency);
  r0.load();
  // GSI 6 is on vCPU 0 (default): vCPU 0 gets the RELOAD, with a kick since it is resident.
  assert.equal(chip.reconfigure(6, { vcpu: 1, vector: 0x26 }), "kicked");
  assert.equal(handles[0]?.kicks, 1);
  assert.equal(handles[1]?.kicks, 0);
  assert.equal(r0.takeRequests(IrqRequest.RELOAD), IrqRequest.RELOAD);
  assert.deepEqual(chip.routes.route(6), defaultRoute(6), "not applied until vCPU 0 does");
  assert.deepEqual(chip.routes.staged(6), { vcpu: 1, vector: 0x26 });
  // vCPU 0's thread applies it between a put and a load (user-loop.ts).
  r0.put();
  assert.equal(chip.routes.applyStaged(0), 1);
  r0.load();
  assert.deepEqual(chip.routes.route(6), { vcpu: 1, vector: 0x26 });
  assert.equal(chip.raise(6), "left-pending", "now vCPU 1's (not loaded)");
});

test("pause and resume go through the vCPU's residency words", () => {
  const handles = fakeHandles(1);
  const chip = UserIrqchip.create(handles);
  const r0 = new VcpuResidency(chip.vcpuConfig(0).residency);
  r0.load();
  chip.pause(0);
  assert.equal(handles[0]?.kicks, 1, "forced out of the guest");
  assert.equal(r0.snapshot().requests & VcpuRequest.PAUSE, VcpuRequest.PAUSE);
  assert.equal(r0.snapshot().state & Residency.RESIDENT, 0);
  assert.equal(chip.resume(0), "loaded");
  assert.equal(r0.snapshot().requests & VcpuRequest.PAUSE, 0);
  assert.match(chip.snapshot(0).text, /^RESIDENT/);
});

test("a BELL_TX doorbell under the user irqchip raises its GSI; nothing is ever taken from it", () => {
  const chip = UserIrqchip.create(fakeHandles(1));
  const bell = doorbellNotifier(chip, 5);
  bell.signal();
  bell.signal(3n);
  assert.equal(chip.snapshot(0).pending, vectorBit(0x25), "coalesced: one pending vector");
  assert.equal(bell.take(), 0n);
  bell.close();
  assert.throws(
    () => doorbellNotifier(chip, 40),
    (e: unknown) => isTsvisorError(e, "IRQ_ROUTE"),
  );
});

test("another thread cannot open a VM's irqchip when the backend cannot kick from there", async () => {
  for (const module of [
    new URL("./vector-model.js", import.meta.url).href, // loads, but has no openKicker
    "file:///nonexistent/backend.js",
  ]) {
    const chip = UserIrqchip.create(fakeHandles(1, module));
    await assert.rejects(UserIrqchip.open(chip.shared), (e: unknown) =>
      isTsvisorError(e, "IRQ_UNSUPPORTED"),
    );
  }
});

describe("the user irqchip on KVM", { skip }, () => {
  let hv: KvmHypervisor;
  const count = (dir: string) => readdirSync(dir).length;
  const vcpuMaps = () =>
    readFileSync("/proc/self/maps", "utf8")
      .split("\n")
      .filter((l) => l.includes("kvm-vcpu")).length;
  let fds = 0;
  let maps = 0;

  before(() => {
    guestImage("spin");
    fds = count("/proc/self/fd");
    maps = vcpuMaps();
    hv = KvmHypervisor.open();
  });

  after(() => {
    hv.close();
    assert.equal(count("/proc/self/fd"), fds, "every fd is closed again");
    assert.equal(vcpuMaps(), maps, "every kvm_run mapping (kickers too) is gone");
  });

  test("a request from another thread kicks a spinning vCPU out of KVM_RUN through its own kicker", async () => {
    const vm = hv.createVm({ irqchip: false });
    const memory = hv.allocateMemory(2 << 20);
    let thread: VcpuThread | undefined;
    try {
      vm.mapMemory({ gpa: 0, memory });
      const loaded = loadImage(guestImage("spin"), { gpa: 0, bytes: memory.bytes }, {});
      const handle = vm.createVcpu(0);
      const chip = UserIrqchip.create([handle]);
      thread = VcpuThread.start(handle, {
        devices: standardDevices(ByteRing.allocate()),
        boot: loaded.boot,
        irq: chip.vcpuConfig(0),
      });
      const worker = new Worker(new URL("./testing/irq-worker.js", import.meta.url), {
        workerData: {
          shared: chip.shared,
          vcpu: 0,
          // Resident means in the run loop; the guest spins, so the thread sits in KVM_RUN.
          steps: [{ op: "request", bits: VcpuRequest.STOP, whenState: Residency.RESIDENT }],
        } satisfies IrqWorkerData,
      });
      const [posted] = await once(worker, "message");
      await once(worker, "exit");
      assert.equal(posted, "done");
      // Bounds a hang only: without a working kicker the vCPU would spin on.
      let forced = false;
      const timer = setTimeout(() => {
        forced = true;
        thread?.stop();
      }, 10_000);
      const result = await thread.result;
      clearTimeout(timer);
      assert.equal(forced, false, "the worker's request alone stopped the vCPU");
      assert.deepEqual(result.reason, { kind: "stopped" });
      assert.ok((result.stats?.kicks ?? 0) >= 1, "KVM_RUN returned -EINTR");
    } finally {
      if (thread && !thread.done) {
        thread.stop();
        await thread.result;
      }
      await vm.close();
      memory.close();
    }
  });
});
