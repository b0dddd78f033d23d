import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { guestImage } from "../loader/guest-builder.js";
import { BootRegSet } from "../protocol/enums.js";
import { decodeVmConfig, encodeVmConfig } from "../protocol/vm-config.js";
import {
  bootContextRegisters,
  buildVm,
  guestLayout,
  MEM_DEFAULT,
  parseRegisters,
} from "./builder.js";
import { HostMemory } from "./host-memory.js";
import { secondaryBoot } from "./kvm-port.js";

const code = (c: string) => (e: unknown) => isTsvisorError(e, c as never);

test("buildVm() loads the image, leaves room for the DTB page and sends PC/SP as boot context", () => {
  const memory = new HostMemory();
  const vm = buildVm(memory, { image: guestImage("hello"), name: "hello" });
  assert.equal(vm.ram.size, MEM_DEFAULT);
  assert.deepEqual(vm.layout, guestLayout(MEM_DEFAULT));
  assert.equal(vm.layout.dtbOffset, MEM_DEFAULT - 0x1000);
  assert.equal(vm.layout.cmdlineAddr, MEM_DEFAULT - 0x2000);
  assert.equal(vm.loaded.mode, "long");
  assert.deepEqual(vm.host.boot, [
    { regSet: BootRegSet.PC, regIndex: 0, value: 0x10_0000n },
    { regSet: BootRegSet.SP, regIndex: 0, value: 0x9000n },
  ]);
  assert.equal(vm.host.dtbOffset, BigInt(vm.layout.dtbOffset));
  assert.deepEqual(vm.config.memory, { base: 0n, size: BigInt(MEM_DEFAULT) });
  assert.deepEqual(vm.config.vcpus, { count: 1, affinity: "proxy" });
  assert.equal(vm.config.imageName, "hello");
  assert.ok(vm.boot.sregs.cr3 !== undefined, "the loader's CPU state goes to the port's plan");
  assert.equal(vm.ram.lent, false, "nothing is lent before startVm");
  memory.free(vm.ram);
});

test("buildVm() puts the command line below the DTB and points RDI at it; --reg wins", () => {
  const memory = new HostMemory();
  const vm = buildVm(memory, {
    image: guestImage("exit-code"),
    cmdline: "console=ttyS0 quiet",
    regs: { rbx: 5n },
    vcpus: 2,
  });
  const at = vm.layout.cmdlineAddr;
  assert.equal(Buffer.from(vm.ram.read(at, 20)).toString("latin1"), "console=ttyS0 quiet\0");
  assert.deepEqual(
    vm.host.boot.filter((r) => r.regSet === BootRegSet.X),
    [
      { regSet: BootRegSet.X, regIndex: 5, value: BigInt(at) },
      { regSet: BootRegSet.X, regIndex: 1, value: 5n },
    ],
  );
  assert.equal(vm.config.vcpus.count, 2);
  memory.free(vm.ram);
  const over = buildVm(new HostMemory(), {
    image: guestImage("exit-code"),
    cmdline: "x",
    regs: { rdi: 9n },
  });
  assert.deepEqual(
    over.host.boot.find((r) => r.regSet === BootRegSet.X && r.regIndex === 5)?.value,
    9n,
  );
});

test("the vm-config DTB describes RAM, vCPUs and doorbells as one vdevice each", () => {
  const memory = new HostMemory();
  const vm = buildVm(memory, {
    image: guestImage("hello"),
    doorbells: [{ label: 0, gsi: 5 }],
    doorbellSources: [{ label: 1 }],
  });
  const dtb = encodeVmConfig(vm.config);
  assert.ok(dtb.length <= vm.layout.dtbSize, "the DTB fits its page");
  assert.deepEqual(decodeVmConfig(dtb), vm.config);
  assert.deepEqual(
    vm.config.vdevices.map((d) => [d.kind, d.label]),
    [
      ["doorbell", 0],
      ["doorbell-source", 1],
    ],
  );
  memory.free(vm.ram);
});

test("buildVm() refuses bad sizes, vCPU counts and images that do not fit, allocating nothing", () => {
  const memory = new HostMemory();
  const image = guestImage("hello");
  for (const memSize of [0, 0x1234, 32 * 1024, 4 * 1024 ** 3]) {
    assert.throws(() => buildVm(memory, { image, memSize }), code("VMM_CONFIG"));
  }
  for (const vcpus of [0, 3, 1.5]) {
    assert.throws(() => buildVm(memory, { image, vcpus }), code("VMM_CONFIG"));
  }
  // 1 MiB of RAM cannot hold an ELF linked at 1 MiB.
  assert.throws(() => buildVm(memory, { image, memSize: 0x10_0000 }), code("LOADER_RANGE"));
  assert.throws(() => buildVm(memory, { image, cmdline: "x".repeat(4096) }), code("VMM_CONFIG"));
  assert.equal(memory.regionCount, 0);
});

test("bootContextRegisters() maps rip to PC, rsp to SP and the rest to X in KVM order", () => {
  assert.deepEqual(bootContextRegisters({ rip: 1n, rsp: 2n, rax: 3n, r15: 4n }), [
    { regSet: BootRegSet.PC, regIndex: 0, value: 1n },
    { regSet: BootRegSet.SP, regIndex: 0, value: 2n },
    { regSet: BootRegSet.X, regIndex: 0, value: 3n },
    { regSet: BootRegSet.X, regIndex: 15, value: 4n },
  ]);
});

test("parseRegisters() reads NAME=VALUE lists and refuses anything else", () => {
  assert.deepEqual(parseRegisters("rdi=42, RSI=0x10"), { rdi: 42n, rsi: 16n });
  for (const bad of ["rip=1", "rdi", "rdi=-1", "rdi=1x", `rdi=${1n << 64n}`]) {
    assert.throws(() => parseRegisters(bad), code("VMM_CONFIG"), bad);
  }
});

test("a secondary vCPU starts at vCPU 0's entry with RSI = its index, its own stack, runnable", () => {
  const base = { regs: { rflags: 2n }, sregs: { cr3: 0x9000n } };
  const b = secondaryBoot(base, { rip: 0x10_0000n, rsp: 0x9000n, rdi: 7n }, 1);
  assert.deepEqual(b.regs, { rip: 0x10_0000n, rsp: 0x8000n, rdi: 7n, rsi: 1n });
  assert.deepEqual(b.sregs, base.sregs);
  assert.equal(b.runnable, true);
});
