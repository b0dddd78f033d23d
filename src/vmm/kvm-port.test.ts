import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { ByteRing } from "../devices/byte-ring.js";
import { type TestBackend, testBackends } from "../hv/sim/select.js";
import type { Hypervisor } from "../hv/types.js";
import { ExitType, ResourceType, VmStatus } from "../protocol/enums.js";
import { RmError } from "../protocol/rm-error.js";
import type { RmClient } from "../rpc/client.js";
import { settledCount } from "../testing/settle.js";
import { FaultCode } from "./exits.js";
import type { StartedVm } from "./host-flow.js";
import { createRmStack, type RmStack } from "./rm-stack.js";
import { type RunVmOptions, type RunVmResult, runVm } from "./run-vm.js";

const count = (dir: string) => readdirSync(dir).length;

const GUESTS = [
  "hello",
  "exit-code",
  "spin",
  "triple-fault",
  "emulation-failure",
  "i8042-reset",
  "msgq-client",
  "two-vcpu",
  "doorbell-wait",
  "ioeventfd-ring",
  "mmio-storm",
  "uart-echo",
];

// Once on KVM (skipped loudly without /dev/kvm) and once on the simulated backend, always.
const suite = (backend: TestBackend) => {
  let hv: Hypervisor;
  let stack: RmStack;
  let client: RmClient;
  let fds = 0;
  let threads = 0;

  before(() => {
    // Built outside the measured window: building spawns processes.
    for (const g of GUESTS) backend.guest(g);
    fds = count("/proc/self/fd");
    threads = count("/proc/self/task");
    hv = backend.open();
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

  /** Runs a guest through the RM and collects its console and notifications. */
  async function run(
    guest: string,
    opts: Partial<RunVmOptions> = {},
  ): Promise<RunVmResult & { console: string; statuses: string[] }> {
    let console = "";
    const statuses: string[] = [];
    const r = await runVm(stack, client, {
      image: backend.guest(guest),
      name: guest,
      console: (b) => {
        console += Buffer.from(b).toString("latin1");
      },
      onEvent: (n) =>
        statuses.push(n.kind === "vmStatus" ? `status ${n.vmStatus}` : `exited ${n.exitType}`),
      ...opts,
    });
    return { ...r, console, statuses };
  }

  /** After a run, nothing of the VM may be left in the RM, the port or host memory. */
  async function assertNothingLeft(): Promise<void> {
    await stack.port!.settled();
    const s = stack.port!.stats;
    assert.deepEqual(
      { vms: s.vms, runningVcpus: s.runningVcpus, mappedParcels: s.mappedParcels, plans: s.plans },
      { vms: 0, runningVcpus: 0, mappedParcels: 0, plans: 0 },
    );
    assert.equal(stack.memory.regionCount, 0);
    assert.equal(stack.memory.pendingFrees, 0);
    const snap = stack.rm.snapshot();
    assert.equal(snap.parcels.length, 0);
    assert.deepEqual(
      snap.vms.map((v) => v.vmid),
      [3],
    );
  }

  test("terminal input reaches the guest's COM1: uart-echo echoes it and counts bytes", async () => {
    const input = ByteRing.allocate();
    const ring = new ByteRing(input);
    // Half before the guest starts, half while it polls: both must arrive, in order.
    assert.equal(ring.tryWrite(new TextEncoder().encode("ab")), 2);
    const r = await run("uart-echo", {
      consoleInput: input,
      started: () => {
        ring.tryWrite(new TextEncoder().encode("cdq"));
      },
    });
    assert.equal(r.console, "abcd");
    assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 4 });
    await assertNothingLeft();
  });

  test("hello → PLATFORM_OFF code 0, Hello on the console, the whole status sequence", async () => {
    const r = await run("hello");
    assert.equal(r.console, "Hello\n");
    assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
    assert.equal(r.status, 0);
    assert.deepEqual(r.stop?.reason, { kind: "power-off", code: 0 });
    assert.deepEqual(r.statuses, [
      `status ${VmStatus.INIT}`,
      `status ${VmStatus.READY}`,
      `status ${VmStatus.RUNNING}`,
      `status ${VmStatus.EXITED}`,
      `exited ${ExitType.PLATFORM_OFF}`,
      `status ${VmStatus.RESETTING}`,
      `status ${VmStatus.RESET}`,
    ]);
    await assertNothingLeft();
  });

  test("exit-code N → PLATFORM_OFF code N, process status N", async () => {
    for (const code of [1, 42, 255]) {
      const r = await run("exit-code", { regs: { rdi: BigInt(code) } });
      assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: code });
      assert.equal(r.status, code);
    }
  });

  test("a triple fault → SOFTWARE_ERROR TRIPLE_FAULT, status 133", async () => {
    const r = await run("triple-fault");
    assert.deepEqual(r.exit, {
      exitType: ExitType.SOFTWARE_ERROR,
      exitCode: FaultCode.TRIPLE_FAULT,
    });
    assert.equal(r.status, 133);
    assert.match(r.description, /^SOFTWARE_ERROR code 16 \(TRIPLE_FAULT\)/);
  });

  test("an emulation failure → SOFTWARE_ERROR EMULATION_FAILURE with the faulting bytes", async () => {
    const r = await run("emulation-failure");
    // kvm_pvm and the simulator report the faulting bytes.
    if (backend.kind === "sim" || existsSync("/sys/module/kvm_pvm")) {
      assert.deepEqual(r.exit, {
        exitType: ExitType.SOFTWARE_ERROR,
        exitCode: FaultCode.EMULATION_FAILURE,
      });
      assert.match(r.description, /EMULATION_FAILURE\): suberror 1, instruction bytes cc /);
    } else {
      // Hardware KVM runs int3 and triple-faults instead.
      assert.equal(r.exit.exitCode, FaultCode.TRIPLE_FAULT);
    }
    assert.equal(r.status, 133);
  });

  test("an i8042 reset → PLATFORM_RESET, status 130", async () => {
    const r = await run("i8042-reset");
    assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_RESET, exitCode: 0 });
    assert.equal(r.status, 130);
  });

  test("a spinning guest is force-stopped → VM_STOP_FORCED, and its vCPU ends stopped", async () => {
    const stopper = new AbortController();
    const r = await run("spin", {
      signal: stopper.signal,
      started: () => setTimeout(() => stopper.abort(), 20),
    });
    assert.deepEqual(r.exit, { exitType: ExitType.VM_STOP_FORCED, exitCode: 0 });
    assert.equal(r.status, 135);
    assert.deepEqual(r.stop?.reason, { kind: "stopped" });
    assert.equal(r.stop?.exit, undefined, "the port reports nothing for a host stop");
    await assertNothingLeft();
  });

  test("the msgq-client guest ends itself with VM_EXIT through its RM message queue", async () => {
    const r = await run("msgq-client", { regs: { rdi: 3n } });
    assert.deepEqual(r.exit, { exitType: ExitType.VM_EXIT, exitCode: 3 });
    assert.equal(r.status, 3);
    assert.equal(r.console, "");
    // An exit code the RM refuses comes back to the guest as an error reply.
    const refused = await run("msgq-client", { regs: { rdi: 42n } });
    assert.deepEqual(refused.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0xe1 });
    assert.match(refused.console, /VM_EXIT refused, RM error 0x00000006/);
    await assertNothingLeft();
  });

  test("two vCPUs both run: the secondary starts with RSI = 1 and the first stop decides", async () => {
    const r = await run("two-vcpu", { vcpus: 2 });
    assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
    assert.deepEqual([...r.console].sort(), ["A", "B"]);
    assert.deepEqual(
      r.vcpus.map((v) => v.reason.kind),
      ["power-off", "stopped"],
    );
  });

  test("a doorbell (BELL_TX) is an irqfd: ringing it wakes a guest halted on its GSI", async () => {
    let vm: StartedVm | undefined;
    const ring = setInterval(() => {
      // Until the guest has programmed its PIC a ring is lost, so ring until it exits.
      if (vm) stack.port!.doorbell(vm.vmid, 0)?.signal();
    }, 2);
    try {
      const r = await run("doorbell-wait", {
        regs: { rdi: 5n },
        doorbells: [{ label: 0, gsi: 5 }],
        started: (v) => {
          vm = v;
          assert.ok(
            v.resources.some(
              (e) => e.resourceType === ResourceType.BELL_TX && e.resourceLabel === 0,
            ),
            "the host holds the doorbell's BELL_TX",
          );
        },
      });
      assert.equal(r.console, "W");
      assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
    } finally {
      clearInterval(ring);
    }
  });

  test("a doorbell source (BELL_RX) is an ioeventfd: the guest's ring never exits to userspace", async () => {
    let rings = -1n;
    let vmid = -1;
    const r = await run("ioeventfd-ring", {
      doorbellSources: [{ label: 0 }],
      started: (v) => {
        vmid = v.vmid;
      },
      onEvent: (n) => {
        // VM_EXITED comes before the reset that closes the notifier.
        if (n.kind === "vmExited") rings = stack.port!.doorbellSource(vmid, 0)?.take() ?? -2n;
      },
    });
    assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
    assert.equal(rings, 1n);
    const v = r.vcpus[0]!;
    // Two exits reached userspace: the unclaimed MMIO write and the debug-exit write that
    // stopped the vCPU (the loop counts an exit as io only when the guest continues).
    assert.equal(v.stats?.exits, 2);
    assert.equal(v.stats?.io, 0, "the doorbell's port write never reached userspace");
    assert.equal(v.unclaimed?.pioWrites, 0);
    assert.equal(v.unclaimed?.mmioWrites, 1, "the MMIO write at 0xd0000000 is unclaimed");
  });

  test("while a VM runs, its lent RAM is hypervisor memory and refused to the host API", async () => {
    let checked = false;
    const stopper = new AbortController();
    await run("spin", {
      signal: stopper.signal,
      started: (vm) => {
        assert.ok(vm.ram.guestMemory, "hypervisor memory");
        assert.equal(vm.ram.lent, true);
        assert.throws(
          () => vm.ram.read(0, 16),
          (e) => isTsvisorError(e, "VMM_MEMORY_LENT"),
        );
        assert.throws(
          () => vm.ram.bytes,
          (e) => isTsvisorError(e, "VMM_MEMORY_LENT"),
        );
        checked = true;
        stopper.abort();
      },
    });
    assert.equal(checked, true);
    await assertNothingLeft();
  });

  test("a guest hammering unclaimed MMIO does not disturb a second VM running beside it", async () => {
    const storming = new AbortController();
    const logs: string[] = [];
    let stormRunning!: () => void;
    const running = new Promise<void>((resolve) => {
      stormRunning = resolve;
    });
    const storm = run("mmio-storm", {
      signal: storming.signal,
      onLog: (m) => logs.push(m),
      started: () => stormRunning(),
    });
    await running;
    try {
      for (let i = 0; i < 3; i++) {
        const hello = await run("hello");
        assert.equal(hello.console, "Hello\n");
        assert.deepEqual(hello.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
      }
    } finally {
      storming.abort();
    }
    const s = await storm;
    assert.deepEqual(s.exit, { exitType: ExitType.VM_STOP_FORCED, exitCode: 0 });
    assert.ok((s.vcpus[0]?.unclaimed?.mmioWrites ?? 0) > 0, "the storm really wrote");
    assert.deepEqual(logs, ["unclaimed mmio write at 0xd0000000 (reads all-ones, writes ignored)"]);
    await assertNothingLeft();
  });

  test("the port refuses more vCPUs than the host runs (VM_INIT fails NORESOURCE)", () => {
    const err = stack.port!.createVm(
      0x99,
      {
        nodeName: "gunyah-vm-config",
        memory: { base: 0n, size: 0x20_0000n },
        vcpus: { count: 3, affinity: "proxy" },
        vdevices: [],
      },
      [],
      { demandPaging: [], image: undefined, firmware: undefined },
    );
    assert.equal(err, RmError.NORESOURCE);
    assert.equal(stack.port!.stats.vms, 0);
  });
};

for (const b of testBackends()) {
  describe(
    `RM VMs on ${b.label}: every exit arrives as VM_EXITED with its mapped type`,
    { skip: b.skip },
    () => suite(b),
  );
}
