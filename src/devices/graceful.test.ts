/**
 * The graceful guest (guests/graceful.S and its simulated twin): it sleeps until the RM's
 * VM_SHUTDOWN reaches it through the message-queue device, then powers off with 0. First
 * against the device alone (a test plays the RM's side of the queue), then through the real
 * RM + VMM, where a VM_STOP without FORCE is what sends the notification. Both on KVM (skipped
 * loudly without it) and on the simulated backend.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type TestBackend, testBackends } from "../hv/sim/select.js";
import type { Hypervisor } from "../hv/types.js";
import { loadImage } from "../loader/image.js";
import { NotificationId, RequestId } from "../protocol/catalogue.js";
import { ExitType } from "../protocol/enums.js";
import { encodeHeader, HEADER_SIZE, type MsgType, MsgType as T } from "../protocol/header.js";
import type { VmExitedNotification, VmStatusNotification } from "../rpc/client.js";
import { RmMsgqDeviceEndpoint } from "../rpc/device-endpoint.js";
import type { VcpuResult } from "../vcpu/vcpu-thread.js";
import { VcpuThread } from "../vcpu/vcpu-thread.js";
import { createRmStack } from "../vmm/rm-stack.js";
import { type RunVmResult, runVm } from "../vmm/run-vm.js";
import { ByteRing, pumpRing } from "./byte-ring.js";
import { createRmMsgqShared, MsgqWord, RM_MSGQ_GSI, rmMsgqViews } from "./rm-msgq.js";
import { standardDevices } from "./specs.js";

const MiB = 1024 * 1024;
const RUNNING = "graceful: running\n";
const SHUTDOWN = "graceful: shutdown\n";

function message(type: MsgType, msgId: number, seq: number, payload: number[] = []): Uint8Array {
  const m = new Uint8Array(HEADER_SIZE + payload.length);
  encodeHeader({ type, numFragments: 0, seq, msgId }, m);
  m.set(payload, HEADER_SIZE);
  return m;
}

/** VM_SHUTDOWN with stop_reason 0, as the RM sends it for a graceful VM_STOP. */
const vmShutdown = (seq: number) => message(T.NOTIFICATION, NotificationId.VM_SHUTDOWN, seq, [0]);

/** Messages that are not the shutdown notification, some of them close to it. */
const others = (round: number): Uint8Array[] => [
  message(T.NOTIFICATION, NotificationId.VM_STATUS, round, [3, 0, 0, 0, 3, 0, 0, 0]),
  message(T.REPLY, NotificationId.VM_SHUTDOWN, round),
  message(T.REQUEST, NotificationId.VM_SHUTDOWN, round),
  message(T.NOTIFICATION, NotificationId.VM_EXITED, round),
  message(T.REPLY, RequestId.VM_EXIT, round, [0, 0, 0, 0]),
  new Uint8Array([0x21, 0x03]),
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface DeviceRun {
  readonly endpoint: RmMsgqDeviceEndpoint;
  readonly shared: SharedArrayBuffer;
  /** Resolves at the next time the host lowers the interrupt line (the guest emptied RX). */
  lowered(): Promise<void>;
  console(): string;
  readonly done: Promise<VcpuResult>;
  readonly thread: VcpuThread;
}

/** The guest on one vCPU with the kernel irqchip and an RM msgq device whose host side is ours. */
async function withGuest(
  b: TestBackend,
  before: (endpoint: RmMsgqDeviceEndpoint) => void,
  body: (run: DeviceRun) => Promise<void>,
): Promise<void> {
  const hv: Hypervisor = b.open();
  const vm = hv.createVm({ irqchip: true });
  const memory = hv.allocateMemory(2 * MiB);
  let thread: VcpuThread | undefined;
  const shared = createRmMsgqShared();
  let waiters: (() => void)[] = [];
  const endpoint = new RmMsgqDeviceEndpoint(
    shared,
    (level) => {
      vm.setIrqLine(RM_MSGQ_GSI, level);
      if (!level) for (const w of waiters.splice(0)) w();
    },
    "guest",
  );
  endpoint.start({ message: () => {}, writable: () => {}, close: () => {} });
  try {
    vm.mapMemory({ gpa: 0, memory });
    const loaded = loadImage(b.guest("graceful"), { gpa: 0, bytes: memory.bytes });
    before(endpoint);
    const ring = ByteRing.allocate();
    thread = VcpuThread.start(vm.createVcpu(0), {
      devices: [...standardDevices(ring), { kind: "rm-msgq", shared }],
      boot: loaded.boot,
    });
    const chunks: Uint8Array[] = [];
    const t = thread;
    const pumped = pumpRing(new ByteRing(ring), (c) => chunks.push(c), t.result);
    const done = (async () => {
      const r = await t.result;
      await pumped;
      return r;
    })();
    await body({
      endpoint,
      shared,
      thread: t,
      done,
      lowered: () => new Promise<void>((resolve) => waiters.push(resolve)),
      console: () => Buffer.concat(chunks).toString("latin1"),
    });
  } finally {
    waiters = [];
    endpoint.close();
    if (thread && !thread.done) {
      thread.stop();
      await thread.result;
    }
    await vm.close();
    memory.close();
    hv.close();
  }
}

/** Resolves once the guest has enabled the device's interrupt (it is about to sleep). */
async function interruptEnabled(shared: SharedArrayBuffer): Promise<void> {
  const { words } = rmMsgqViews(shared);
  while (Atomics.load(words, MsgqWord.IRQ_ENABLE) === 0) await sleep(1);
}

for (const b of testBackends()) {
  describe(`graceful guest on ${b.label}`, { skip: b.skip }, () => {
    test("it enables the interrupt and sleeps: two MMIO accesses, until the host stops it", async () => {
      await withGuest(
        b,
        () => {},
        async (run) => {
          await interruptEnabled(run.shared);
          // Time for a polling guest to show itself; a sleeping one does nothing meanwhile.
          await sleep(50);
          assert.equal(run.thread.done, false, "still running");
          run.thread.stop();
          const result = await run.done;
          assert.deepEqual(result.reason, { kind: "stopped" });
          assert.equal(run.console(), RUNNING);
          // IRQ_ENABLE written, STATUS read once before the halt; no polling.
          assert.equal(result.stats?.mmio, 2);
        },
      );
    });

    test("messages other than VM_SHUTDOWN are popped and ignored; VM_SHUTDOWN powers off with 0", async () => {
      await withGuest(
        b,
        () => {},
        async (run) => {
          await interruptEnabled(run.shared);
          for (let round = 0; round < 3; round++) {
            const drained = run.lowered();
            for (const m of others(round)) run.endpoint.send(m);
            // The guest empties RX (the line drops) and must still be running afterwards.
            const first = await Promise.race([
              drained.then(() => "drained"),
              run.done.then(() => "ended"),
            ]);
            assert.equal(first, "drained", `round ${round}: the guest ended on a foreign message`);
          }
          assert.equal(run.console(), RUNNING);
          run.endpoint.send(vmShutdown(7));
          const result = await run.done;
          assert.deepEqual(result.reason, { kind: "power-off", code: 0 });
          assert.equal(run.console(), RUNNING + SHUTDOWN);
        },
      );
    });

    test("a VM_SHUTDOWN queued before the guest enabled its interrupt is still seen", async () => {
      await withGuest(
        b,
        (endpoint) => {
          endpoint.send(others(0)[0]!);
          endpoint.send(vmShutdown(0xffff));
        },
        async (run) => {
          const result = await run.done;
          assert.deepEqual(result.reason, { kind: "power-off", code: 0 });
          assert.equal(run.console(), RUNNING + SHUTDOWN);
        },
      );
    });

    /** The guest under the RM + VMM; `stop` runs once it printed its first line. */
    async function throughRm(
      irqchip: "kernel" | "user",
      force: boolean,
    ): Promise<{ r: RunVmResult; console: string; events: string[] }> {
      const hv = b.open();
      const stack = createRmStack({ backend: hv });
      const client = stack.connectHost();
      let console = "";
      let running: () => void = () => {};
      const printed = new Promise<void>((resolve) => {
        running = resolve;
      });
      const events: string[] = [];
      let stopped: Promise<void> = Promise.resolve();
      try {
        const r = await runVm(stack, client, {
          image: b.guest("graceful"),
          irqchip,
          console: (bytes) => {
            console += Buffer.from(bytes).toString("latin1");
            if (console.startsWith(RUNNING)) running();
          },
          onEvent: (n: VmStatusNotification | VmExitedNotification) => {
            events.push(n.kind === "vmExited" ? `exited:${n.exitType}` : `status:${n.vmStatus}`);
          },
          started: (vm) => {
            stopped = printed.then(() => client.stop(vm.vmid, { force }));
          },
        });
        await stopped;
        return { r, console, events };
      } finally {
        await stack.close();
        hv.close();
      }
    }

    for (const irqchip of ["kernel", "user"] as const) {
      test(`VM_STOP without FORCE (irqchip ${irqchip}): the guest shuts itself down, VM_EXITED PLATFORM_OFF code 0`, async () => {
        const { r, console, events } = await throughRm(irqchip, false);
        assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
        assert.deepEqual(r.stop?.reason, { kind: "power-off", code: 0 });
        assert.equal(console, RUNNING + SHUTDOWN);
        assert.equal(events.filter((e) => e.startsWith("exited:")).length, 1);
        assert.ok(events.includes(`exited:${ExitType.PLATFORM_OFF}`), events.join(" "));
      });
    }

    test("a forced VM_STOP still ends it as VM_STOP_FORCED, without the shutdown line", async () => {
      const { r, console } = await throughRm("kernel", true);
      assert.deepEqual(r.exit, { exitType: ExitType.VM_STOP_FORCED, exitCode: 0 });
      assert.equal(console, RUNNING);
    });
  });
}
