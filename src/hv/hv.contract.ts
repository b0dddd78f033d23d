/**
 * The behaviour every hypervisor backend promises, as a node:test suite a backend's test file
 * runs against itself (hv/kvm/kvm.test.ts). vCPUs are driven on the test's own thread here:
 * the guests used all exit on their own, and a kick is tested before run() is entered.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { loadImage } from "../loader/image.js";
import type { Hypervisor, OpenVcpu, Vcpu, VcpuExit, VcpuHandle, Vm } from "./types.js";
import { applyBootState } from "./types.js";

export interface HvContractFixture {
  readonly name: string;
  /** Why the backend cannot run on this machine; the suite is skipped, loudly, if set. */
  readonly unavailable: string | undefined;
  open(): Hypervisor;
  /** The test guest images of guests/ by name (hello, exit-code, mmio-probe, ioeventfd-ring). */
  guest(name: string): Uint8Array;
}

const MiB = 1 << 20;
const MAX_EXITS = 64;

function openFds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return 0;
  }
}

async function openInThisThread(handle: VcpuHandle): Promise<Vcpu> {
  const mod = (await import(handle.transfer.module)) as { openVcpu: OpenVcpu };
  return mod.openVcpu(handle.transfer);
}

/** Runs until the guest writes the debug-exit port; returns the exits before that write. */
function runToDebugExit(vcpu: Vcpu): { exits: VcpuExit[]; code: number } {
  const exits: VcpuExit[] = [];
  for (let i = 0; i < MAX_EXITS; i++) {
    const exit = vcpu.run();
    if (exit.kind === "io" || exit.kind === "mmio") {
      if (exit.kind === "io" && exit.write && exit.port === 0xf4)
        return { exits, code: exit.data[0]! };
      exits.push({ ...exit, data: exit.data.slice() });
      if (!exit.write) exit.data.fill(0xff);
      continue;
    }
    exits.push(exit);
    assert.fail(`guest stopped with ${exit.kind} before reaching debug-exit`);
  }
  return assert.fail("guest did not reach debug-exit");
}

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => isTsvisorError(e) && e.code === code);
}

export function hvContract(f: HvContractFixture): void {
  const skip = f.unavailable === undefined ? false : `${f.name} not available: ${f.unavailable}`;
  describe(`hv contract: ${f.name}`, { skip }, () => {
    let hv: Hypervisor;
    let fdsBefore = 0;

    before(() => {
      fdsBefore = openFds();
      hv = f.open();
    });
    after(() => {
      hv.close();
      assert.equal(openFds(), fdsBefore, "every fd the suite opened is closed again");
    });

    /** A VM with 2 MiB of RAM at 0 and `image` loaded; torn down by the returned close(). */
    async function withGuest<T>(
      image: string,
      body: (vm: Vm, vcpu: Vcpu, handle: VcpuHandle) => T | Promise<T>,
      regs: { rdi?: bigint } = {},
    ): Promise<T> {
      const vm = hv.createVm();
      const memory = hv.allocateMemory(2 * MiB);
      let vcpu: Vcpu | undefined;
      try {
        vm.mapMemory({ gpa: 0, memory });
        const loaded = loadImage(f.guest(image), { gpa: 0, bytes: memory.bytes }, { regs });
        const handle = vm.createVcpu(0);
        vcpu = await openInThisThread(handle);
        applyBootState(vcpu, loaded.boot);
        return await body(vm, vcpu, handle);
      } finally {
        vcpu?.close();
        await vm.close();
        memory.close();
      }
    }

    it("allocateMemory() returns zeroed memory of the requested size", () => {
      const m = hv.allocateMemory(64 * 1024);
      try {
        assert.equal(m.size, 64 * 1024);
        assert.equal(m.bytes.length, 64 * 1024);
        assert.ok(m.bytes.every((b) => b === 0));
        assert.equal(m.mapped, false);
      } finally {
        m.close();
      }
      assert.equal(m.bytes.length, 0, "a closed block shows no bytes");
    });

    it("allocateMemory() refuses sizes that are not positive multiples of 4 KiB", () => {
      for (const size of [0, 100, 4097, -4096])
        throwsCode(() => hv.allocateMemory(size), "HV_MEMORY");
    });

    it("mapMemory() refuses overlapping regions and misaligned addresses", async () => {
      const vm = hv.createVm();
      const a = hv.allocateMemory(2 * MiB);
      const b = hv.allocateMemory(MiB);
      try {
        vm.mapMemory({ gpa: MiB, memory: a });
        throwsCode(() => vm.mapMemory({ gpa: 2 * MiB, memory: b }), "HV_MEMORY");
        throwsCode(() => vm.mapMemory({ gpa: 0x800, memory: b }), "HV_MEMORY");
        throwsCode(
          () => vm.mapMemory({ gpa: 0, memory: b, offset: 0, size: 2 * MiB }),
          "HV_MEMORY",
        );
        vm.mapMemory({ gpa: 0, memory: b });
        assert.deepEqual(
          vm.regions.map((r) => [r.gpa, r.size]),
          [
            [0, MiB],
            [MiB, 2 * MiB],
          ],
        );
      } finally {
        await vm.close();
        a.close();
        b.close();
      }
    });

    it("memory cannot be closed while mapped, and can after unmapMemory()", async () => {
      const vm = hv.createVm();
      const m = hv.allocateMemory(MiB);
      try {
        const r = vm.mapMemory({ gpa: 0, memory: m });
        assert.equal(m.mapped, true);
        throwsCode(() => m.close(), "HV_MEMORY");
        vm.unmapMemory(r);
        assert.equal(m.mapped, false);
        assert.deepEqual(vm.regions, []);
        throwsCode(() => vm.unmapMemory(r), "HV_MEMORY");
      } finally {
        await vm.close();
        m.close();
      }
    });

    it("close() of a VM unmaps its memory, is idempotent, and later calls fail with HV_CLOSED", async () => {
      const vm = hv.createVm();
      const m = hv.allocateMemory(MiB);
      vm.mapMemory({ gpa: 0, memory: m });
      vm.createVcpu(0);
      const first = vm.close();
      assert.equal(vm.close(), first);
      await first;
      assert.equal(m.mapped, false);
      m.close();
      throwsCode(() => vm.createVcpu(1), "HV_CLOSED");
      const late = hv.allocateMemory(4096);
      throwsCode(() => vm.mapMemory({ gpa: 0, memory: late }), "HV_CLOSED");
      late.close();
    });

    it("createVcpu() refuses an index that already exists", async () => {
      const vm = hv.createVm();
      try {
        vm.createVcpu(0);
        vm.createVcpu(1);
        throwsCode(() => vm.createVcpu(1), "HV_LIMIT");
      } finally {
        await vm.close();
      }
    });

    it("a vCPU's registers read back as they were set", async () => {
      await withGuest("hello", (_vm, vcpu) => {
        const regs = vcpu.getRegs();
        const changed = {
          ...regs,
          rax: 0x1122_3344_5566_7788n,
          r15: 0xffff_ffff_ffff_fffen,
          rip: 0x100000n,
        };
        vcpu.setRegs(changed);
        assert.deepEqual(vcpu.getRegs(), changed);
        const sregs = vcpu.getSregs();
        assert.equal(sregs.cr3, 0x9000n, "the loader's page tables are live");
        assert.equal(sregs.cs.l, 1, "the code segment is 64-bit");
      });
    });

    it("the hello guest writes Hello to COM1 as io exits, then the debug-exit port", async () => {
      await withGuest("hello", (_vm, vcpu) => {
        const { exits, code } = runToDebugExit(vcpu);
        assert.equal(code, 0);
        const text = exits
          .filter((e) => e.kind === "io" && e.write && e.port === 0x3f8)
          .map((e) => (e.kind === "io" ? String.fromCharCode(e.data[0]!) : ""))
          .join("");
        assert.equal(text, "Hello\n");
        for (const e of exits) if (e.kind === "io") assert.equal(e.size, 1);
      });
    });

    it("boot registers reach the guest (exit-code returns %rdi)", async () => {
      for (const code of [0, 7, 200]) {
        const got = await withGuest("exit-code", (_vm, vcpu) => runToDebugExit(vcpu).code, {
          rdi: BigInt(code),
        });
        assert.equal(got, code);
      }
    });

    it("MMIO to unbacked addresses exits with the address, width and written bytes; reads take the data filled in", async () => {
      await withGuest("mmio-probe", (_vm, vcpu) => {
        const { exits, code } = runToDebugExit(vcpu);
        const mmio = exits.filter((e) => e.kind === "mmio");
        assert.equal(mmio.length, 2);
        const [w, r] = mmio;
        assert.ok(w?.kind === "mmio" && r?.kind === "mmio");
        assert.deepEqual([w.write, w.addr, [...w.data]], [true, 0xd000_0000, [0x2a, 0, 0, 0]]);
        assert.deepEqual([r.write, r.addr, r.data.length], [false, 0xd000_0000, 4]);
        assert.equal(code, 0xff, "the guest saw the bytes the host filled in");
      });
    });

    it("kick() before run() makes run() return intr; after clearKick() the guest runs", async () => {
      await withGuest("hello", (_vm, vcpu, handle) => {
        handle.kick();
        assert.deepEqual(vcpu.run(), { kind: "intr" });
        vcpu.clearKick();
        const first = vcpu.run();
        assert.equal(first.kind, "io");
      });
    });

    it("ioeventfd() turns matching guest writes into notifier signals instead of exits", async () => {
      const pio = hv.createNotifier();
      const mmio = hv.createNotifier();
      try {
        await withGuest("ioeventfd-ring", (vm, vcpu) => {
          const a = vm.ioeventfd({ space: "pio", addr: 0x600, len: 1 }, pio);
          const b = vm.ioeventfd({ space: "mmio", addr: 0xd000_0000, len: 4, datamatch: 7n }, mmio);
          const { exits } = runToDebugExit(vcpu);
          assert.deepEqual(exits, [], "no exit before the debug-exit write");
          assert.equal(pio.take(), 1n);
          assert.equal(mmio.take(), 1n);
          assert.equal(pio.take(), 0n, "take() resets the counter");
          a.close();
          b.close();
        });
        await withGuest("ioeventfd-ring", (_vm, vcpu) => {
          const { exits } = runToDebugExit(vcpu);
          assert.deepEqual(
            exits.map((e) => e.kind),
            ["io", "mmio"],
          );
        });
      } finally {
        pio.close();
        mmio.close();
      }
    });

    it("a notifier counts signals until taken", () => {
      const n = hv.createNotifier();
      try {
        assert.equal(n.take(), 0n);
        n.signal();
        n.signal(4n);
        assert.equal(n.take(), 5n);
        assert.equal(n.take(), 0n);
      } finally {
        n.close();
      }
    });

    it("irqfd() and setIrqLine() work with the irqchip and are refused without it", async () => {
      const with_ = hv.createVm({ irqchip: true });
      const without = hv.createVm({ irqchip: false });
      const n = hv.createNotifier();
      try {
        assert.equal(with_.irqchip, true);
        assert.equal(without.irqchip, false);
        const binding = with_.irqfd(4, n);
        n.signal();
        with_.setIrqLine(4, true);
        with_.setIrqLine(4, false);
        binding.close();
        binding.close();
        throwsCode(() => without.irqfd(4, n), "HV_SYSCALL");
        throwsCode(() => without.setIrqLine(4, true), "HV_SYSCALL");
      } finally {
        await with_.close();
        await without.close();
        n.close();
      }
    });
  });
}
