/**
 * The initrd through the VMM: where buildVm puts it, what goes to the RM as boot context, and
 * end to end (KVM when available, the simulator always) that the initrd-echo guest finds it
 * at both entries.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { testBackends } from "../hv/sim/select.js";
import { guestImage } from "../loader/guest-builder.js";
import { E820, PVH_LAYOUT, PVH_START_INFO_MAGIC } from "../loader/pvh.js";
import { BootRegSet, ExitType, X86_GPR_NAMES } from "../protocol/enums.js";
import { buildVm, guestLayout } from "./builder.js";
import { HostMemory } from "./host-memory.js";
import { createRmStack } from "./rm-stack.js";
import { runVm } from "./run-vm.js";

const MiB = 1 << 20;
const PAGE = 4096;
const X = (name: (typeof X86_GPR_NAMES)[number]) => (r: { regSet: number; regIndex: number }) =>
  r.regSet === BootRegSet.X && r.regIndex === X86_GPR_NAMES.indexOf(name);

/** Bytes the guest will echo: printable, with a last byte that is a plausible exit code. */
function initrdOf(size: number, last: number): Uint8Array {
  const b = Uint8Array.from({ length: size }, (_, i) => 0x41 + (i % 26));
  b[size - 1] = last;
  return b;
}

test("buildVm() puts the initrd right below the command-line page and sends RDX/RCX to the RM", () => {
  const memory = new HostMemory();
  const initrd = initrdOf(3 * PAGE + 5, 0x42);
  const vm = buildVm(memory, { image: guestImage("initrd-echo"), initrd, memSize: 4 * MiB });
  try {
    const layout = guestLayout(4 * MiB);
    const gpa = layout.cmdlineAddr - 4 * PAGE;
    assert.deepEqual(vm.loaded.initrd, { gpa, size: initrd.length });
    assert.deepEqual(vm.ram.read(gpa, initrd.length), initrd);
    assert.equal(vm.host.boot.find(X("rdx"))?.value, BigInt(gpa));
    assert.equal(vm.host.boot.find(X("rcx"))?.value, BigInt(initrd.length));
    assert.equal(vm.boot.regs.rdx, BigInt(gpa), "and the port's plan agrees");
  } finally {
    memory.free(vm.ram);
  }
});

test("buildVm() at the PVH entry: RBX → start_info with the initrd, the command line and the RAM map", () => {
  const memory = new HostMemory();
  const initrd = initrdOf(100, 7);
  const vm = buildVm(memory, {
    image: guestImage("initrd-echo"),
    initrd,
    cmdline: "root=/dev/ram0",
    elfEntry: "pvh",
  });
  try {
    const layout = vm.layout;
    assert.equal(vm.host.boot.find(X("rbx"))?.value, BigInt(PVH_LAYOUT.startInfo));
    assert.equal(vm.host.boot.find(X("rdx")), undefined, "RDX/RCX are the ELF entry's convention");
    const si = new DataView(vm.ram.read(PVH_LAYOUT.startInfo, 0x80 + 2 * 24).slice().buffer);
    assert.equal(si.getUint32(0, true), PVH_START_INFO_MAGIC);
    assert.equal(si.getUint32(12, true), 1);
    assert.equal(si.getBigUint64(24, true), BigInt(layout.cmdlineAddr));
    const modAt = Number(si.getBigUint64(16, true)) - PVH_LAYOUT.startInfo;
    assert.equal(Number(si.getBigUint64(modAt, true)), layout.cmdlineAddr - PAGE);
    assert.equal(Number(si.getBigUint64(modAt + 8, true)), 100);
    assert.equal(si.getUint32(48, true), 2, "two memory-map entries");
    const mm = PVH_LAYOUT.memmap - PVH_LAYOUT.startInfo;
    const entry = (i: number) => [
      Number(si.getBigUint64(mm + 24 * i, true)),
      Number(si.getBigUint64(mm + 24 * i + 8, true)),
      si.getUint32(mm + 24 * i + 16, true),
    ];
    assert.deepEqual(entry(0), [0, layout.dtbOffset, E820.RAM]);
    assert.deepEqual(entry(1), [layout.dtbOffset, PAGE, E820.RESERVED]);
  } finally {
    memory.free(vm.ram);
  }
});

test("buildVm() refuses an initrd that does not fit, allocating nothing", () => {
  const memory = new HostMemory();
  assert.throws(
    () => buildVm(memory, { image: guestImage("initrd-echo"), initrd: new Uint8Array(2 * MiB) }),
    (e: unknown) => isTsvisorError(e, "LOADER_RANGE"),
  );
  assert.equal(memory.regionCount, 0);
});

for (const b of testBackends()) {
  test(`on ${b.label} the guest finds its initrd at the ELF and the PVH entry`, {
    skip: b.skip,
  }, async () => {
    const hv = b.open();
    const stack = createRmStack({ backend: hv });
    const client = stack.connectHost();
    const run = async (opts: { initrd?: Uint8Array; pvh?: boolean }) => {
      let console = "";
      const r = await runVm(stack, client, {
        image: b.guest("initrd-echo"),
        memSize: 4 * MiB,
        cmdline: "quiet",
        ...(opts.initrd ? { initrd: opts.initrd } : {}),
        ...(opts.pvh ? { elfEntry: "pvh" as const } : {}),
        console: (bytes) => {
          console += Buffer.from(bytes).toString("latin1");
        },
      });
      return { exit: r.exit, console };
    };
    try {
      for (const pvh of [false, true]) {
        // Larger than a page, odd-sized: the exit code is its last byte.
        const r = await run({ initrd: initrdOf(70_001, 0x5a), pvh });
        assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0x5a }, `pvh ${pvh}`);
        assert.equal(r.console, "ABCDEFGHIJKLMNOP");
        const none = await run({ pvh });
        assert.deepEqual(none.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0xe0 });
        assert.equal(none.console, "");
      }
    } finally {
      await stack.close();
      hv.close();
    }
  });
}
