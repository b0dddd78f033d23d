/**
 * The device and interrupt test guests on KVM, driven through the hv layer and vCPU threads
 * directly (no VMM): i8042-reset, msgq-client against the RM message-queue device, doorbell-wait
 * woken by an irqfd, two-vcpu on two vCPU threads.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { KvmHypervisor, kvmAvailable } from "../hv/kvm/kvm-hypervisor.js";
import type { GuestMemory, Vm, X86Regs } from "../hv/types.js";
import { guestImage } from "../loader/guest-builder.js";
import { type LoadedImage, loadImage } from "../loader/image.js";
import { RequestId } from "../protocol/catalogue.js";
import { ExitType } from "../protocol/enums.js";
import { decodeHeader, encodeHeader, HEADER_SIZE, MsgType } from "../protocol/header.js";
import { RmError } from "../protocol/rm-error.js";
import { Harness } from "../rm/testing/harness.js";
import { RmClient } from "../rpc/client.js";
import { RmMsgqDeviceEndpoint } from "../rpc/device-endpoint.js";
import { createMsgqLink } from "../rpc/msgq.js";
import { RmServer } from "../rpc/server.js";
import { settledCount } from "../testing/settle.js";
import { runGuest } from "../vcpu/harness.js";
import { type VcpuResult, VcpuThread, VcpuThreadPool } from "../vcpu/vcpu-thread.js";
import { ByteRing, pumpRing } from "./byte-ring.js";
import { createRmMsgqShared, RM_MSGQ_GSI } from "./rm-msgq.js";
import { type DeviceSpec, standardDevices } from "./specs.js";
import { HostRecorder } from "./testing/msgq-guest.js";

const kvm = kvmAvailable();
const skip = kvm.ok ? false : `KVM not available: ${kvm.why}`;
const count = (dir: string) => readdirSync(dir).length;
const MiB = 1 << 20;
/** doorbell-wait's "PIC programmed, line unmasked" word (guests/doorbell-wait.S). */
const DOORBELL_READY = 0x7000;

/** One vCPU's run: its thread, and its console collected from its own ring. */
interface Running {
  readonly thread: VcpuThread;
  readonly done: Promise<{ result: VcpuResult; console: string }>;
}

describe("device and interrupt guests on KVM", { skip }, () => {
  let hv: KvmHypervisor;
  let pool: VcpuThreadPool;
  let fds = 0;
  let threads = 0;

  before(() => {
    // Build outside the measured window: building spawns processes.
    for (const g of ["i8042-reset", "msgq-client", "doorbell-wait", "two-vcpu"]) guestImage(g);
    fds = count("/proc/self/fd");
    threads = count("/proc/self/task");
    hv = KvmHypervisor.open();
    pool = new VcpuThreadPool(2);
  });

  after(async () => {
    await pool.close();
    hv.close();
    assert.equal(count("/proc/self/fd"), fds, "every fd is closed again");
    assert.equal(
      await settledCount("/proc/self/task", threads),
      threads,
      "every vCPU thread has ended",
    );
  });

  /** A VM with 2 MiB of RAM at 0 and `name` loaded; everything is released afterwards. */
  async function withVm(
    name: string,
    opts: { irqchip?: boolean; regs?: Partial<X86Regs> },
    body: (
      vm: Vm,
      memory: GuestMemory,
      start: (index: number, devices: DeviceSpec[], regs?: Partial<X86Regs>) => Running,
      loaded: LoadedImage,
    ) => Promise<void>,
  ): Promise<void> {
    const vm = hv.createVm({ irqchip: opts.irqchip ?? true });
    const memory = hv.allocateMemory(2 * MiB);
    const started: VcpuThread[] = [];
    try {
      vm.mapMemory({ gpa: 0, memory });
      const loaded = loadImage(
        guestImage(name),
        { gpa: 0, bytes: memory.bytes },
        opts.regs ? { regs: opts.regs } : {},
      );
      const start = (index: number, devices: DeviceSpec[], regs: Partial<X86Regs> = {}) => {
        const ring = ByteRing.allocate();
        const thread = VcpuThread.start(vm.createVcpu(index), {
          devices: [...standardDevices(ring), ...devices],
          boot: {
            ...loaded.boot,
            regs: { ...loaded.boot.regs, ...regs },
            // Secondary vCPUs would otherwise wait for INIT/SIPI under the in-kernel LAPIC.
            ...(index > 0 ? { runnable: true } : {}),
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
      await body(vm, memory, start, loaded);
    } finally {
      for (const t of started) {
        t.stop();
        await t.result;
      }
      await vm.close();
      memory.close();
    }
  }

  /** Resolves once the guest has stored a non-zero u32 at `gpa` (polled from this thread). */
  async function guestFlag(memory: GuestMemory, gpa: number): Promise<void> {
    const view = new DataView(memory.bytes.buffer, memory.bytes.byteOffset + gpa, 4);
    while (view.getUint32(0, true) === 0) await new Promise((r) => setTimeout(r, 1));
  }

  test("i8042-reset: command 0xFE to port 0x64 ends the vCPU with reset", async () => {
    const run = await runGuest(hv, guestImage("i8042-reset"), {
      devices: [{ kind: "i8042" }],
      pool,
    });
    assert.deepEqual(run.result.reason, { kind: "reset" });
    assert.equal(run.result.unclaimed?.pioWrites, 0);
  });

  describe("doorbell-wait", () => {
    for (const gsi of [5, 10]) {
      test(`an irqfd on GSI ${gsi} wakes the halted guest, which prints W and powers off`, async () => {
        const bell = hv.createNotifier();
        try {
          await withVm("doorbell-wait", {}, async (vm, memory, start) => {
            const binding = vm.irqfd(gsi, bell);
            const run = start(0, [], { rdi: BigInt(gsi) });
            await guestFlag(memory, DOORBELL_READY);
            // Leave it time to reach its HLT; the PIC latches the edge either way.
            await new Promise((r) => setTimeout(r, 20));
            bell.signal();
            const { result, console } = await run.done;
            assert.deepEqual(result.reason, { kind: "power-off", code: 0 });
            assert.equal(console, "W");
            assert.equal(result.stats?.halts, 0, "the HLT never left the kernel");
            binding.close();
          });
        } finally {
          bell.close();
        }
      });
    }

    test("without a signal the guest stays halted until the host stops it", async () => {
      const bell = hv.createNotifier();
      try {
        await withVm("doorbell-wait", {}, async (vm, memory, start) => {
          vm.irqfd(5, bell);
          const run = start(0, []);
          await guestFlag(memory, DOORBELL_READY);
          await new Promise((r) => setTimeout(r, 50));
          run.thread.stop();
          const { result, console } = await run.done;
          assert.deepEqual(result.reason, { kind: "stopped" });
          assert.equal(console, "");
        });
      } finally {
        bell.close();
      }
    });
  });

  describe("two-vcpu", () => {
    for (const irqchip of [true, false]) {
      test(`both vCPUs write their byte and vCPU 0 powers off once vCPU 1 is done (irqchip ${irqchip})`, async () => {
        await withVm("two-vcpu", { irqchip }, async (_vm, _memory, start) => {
          const boot = start(0, [], { rsi: 0n });
          const second = start(1, [], { rsi: 1n });
          const first = await boot.done;
          assert.deepEqual(first.result.reason, { kind: "power-off", code: 0 });
          assert.equal(first.console, "A");
          // vCPU 1 set the flag, so it has written its byte and is halted for good.
          second.thread.stop();
          const other = await second.done;
          assert.deepEqual(other.result.reason, { kind: "stopped" });
          assert.equal(other.console, "B");
        });
      });
    }
  });

  describe("msgq-client", () => {
    /** The reply an RM would send to the guest's VM_EXIT (seq 1). */
    function reply(error: number): Uint8Array {
      const m = new Uint8Array(HEADER_SIZE + 4);
      encodeHeader({ type: MsgType.REPLY, numFragments: 0, seq: 1, msgId: RequestId.VM_EXIT }, m);
      new DataView(m.buffer).setUint32(HEADER_SIZE, error, true);
      return m;
    }

    /** Runs msgq-client with exit code `code` against `serve`, which gets the endpoint. */
    async function runClient(
      code: number,
      serve: (endpoint: RmMsgqDeviceEndpoint) => void,
      whileRunning: (run: Running) => Promise<void> = async () => {},
    ): Promise<{ result: VcpuResult; console: string }> {
      let out: { result: VcpuResult; console: string } | undefined;
      await withVm("msgq-client", { regs: { rdi: BigInt(code) } }, async (vm, _m, start) => {
        const shared = createRmMsgqShared();
        const endpoint = new RmMsgqDeviceEndpoint(
          shared,
          (level) => vm.setIrqLine(RM_MSGQ_GSI, level),
          "guest",
        );
        try {
          serve(endpoint);
          const run = start(0, [{ kind: "rm-msgq", shared }]);
          await whileRunning(run);
          out = await run.done;
        } finally {
          endpoint.close();
        }
      });
      return out!;
    }

    test("sends VM_EXIT with its code and, after the OK, halts until the host stops it", async () => {
      const host = new HostRecorder();
      const { result, console } = await runClient(
        3,
        (endpoint) =>
          endpoint.start({
            ...host,
            message: (m) => {
              host.message(m);
              // An unrelated notification first: the guest must skip it.
              const note = new Uint8Array(HEADER_SIZE);
              encodeHeader(
                { type: MsgType.NOTIFICATION, numFragments: 0, seq: 0, msgId: 0x56100008 },
                note,
              );
              endpoint.send(note);
              endpoint.send(reply(RmError.OK));
            },
            writable: () => {},
            close: () => {},
          }),
        async (run) => {
          await host.when(() => host.messages.length === 1);
          run.thread.stop();
        },
      );
      assert.deepEqual(result.reason, { kind: "stopped" });
      assert.equal(console, "");
      const [m] = host.messages;
      assert.ok(m);
      assert.deepEqual(decodeHeader(m), {
        type: MsgType.REQUEST,
        numFragments: 0,
        seq: 1,
        msgId: RequestId.VM_EXIT,
      });
      assert.deepEqual([...m.subarray(HEADER_SIZE)], [0, 0, 3, 0], "exit_flags 0, exit_code 3");
    });

    test("an RM error reply is printed and ends the guest with debug-exit 0xe1", async () => {
      const { result, console } = await runClient(7, (endpoint) =>
        endpoint.start({
          message: () => endpoint.send(reply(RmError.ARGUMENT_INVALID)),
          writable: () => {},
          close: () => {},
        }),
      );
      assert.deepEqual(result.reason, { kind: "power-off", code: 0xe1 });
      assert.equal(console, "msgq-client: VM_EXIT refused, RM error 0x00000006\n");
    });

    test("a send the device refuses (link down) is printed and ends the guest with 0xe2", async () => {
      const { result, console } = await runClient(0, (endpoint) => endpoint.close());
      assert.deepEqual(result.reason, { kind: "power-off", code: 0xe2 });
      assert.equal(console, "msgq-client: the msgq device refused the send, error 0x00000005\n");
    });

    test("against the real RM: the guest's VM_EXIT makes the host see VM_EXITED with its code", async () => {
      const h = new Harness();
      const { vmid } = h.running();
      const server = new RmServer(h.rm);
      const hostLink = createMsgqLink({ label: "host" });
      server.attach(3, hostLink.server);
      const client = new RmClient(hostLink.client);
      try {
        const exited = client.waitFor((n) => n.kind === "vmExited" && n.vmid === vmid);
        const { result } = await runClient(
          4,
          (endpoint) => server.attach(vmid, endpoint),
          async (run) => {
            const e = await exited;
            assert.ok(e.kind === "vmExited");
            assert.equal(e.exitType, ExitType.VM_EXIT);
            assert.deepEqual([...e.exitReason], [0, 0, 4, 0], "exit_code 4 (DEVICE_ERROR)");
            // The recording hypervisor only notes the RM's stopVm; a VMM kicks the vCPU here.
            run.thread.stop();
          },
        );
        assert.deepEqual(result.reason, { kind: "stopped" });
      } finally {
        client.close();
        server.close();
      }
    });
  });
});
