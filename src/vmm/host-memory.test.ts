import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { Vmid, VmStatus } from "../protocol/enums.js";
import { RecordingHypervisor } from "../rm/recording-hypervisor.js";
import { guestLayout } from "./builder.js";
import { bootRegisters, startVm, teardownVm } from "./host-flow.js";
import { HostMemory } from "./host-memory.js";
import { createRmStack } from "./rm-stack.js";

const lentError = (e: unknown) => isTsvisorError(e, "VMM_MEMORY_LENT");

test("a lent region refuses the host API but not the RM's physical read", () => {
  const memory = new HostMemory();
  const r = memory.allocate(0x4000);
  r.write(0x10, Uint8Array.of(1, 2, 3));
  memory.markLent(r, 7);
  assert.equal(r.lent, true);
  assert.equal(r.parcel, 7);
  assert.throws(() => r.bytes, lentError);
  assert.throws(() => r.read(0x10, 3), lentError);
  assert.throws(() => r.write(0x10, Uint8Array.of(9)), lentError);
  assert.throws(() => memory.free(r), lentError);
  assert.deepEqual([...memory.read(Vmid.HLOS, r.base + 0x10n, 3)!], [1, 2, 3]);
  memory.markReclaimed(r);
  assert.deepEqual([...r.read(0x10, 3)], [1, 2, 3]);
  r.write(0x10, Uint8Array.of(9));
  assert.equal(r.bytes[0x10], 9);
  memory.free(r);
  assert.equal(memory.regionCount, 0);
});

test("region reads and writes outside the region fail with VMM_MEMORY", () => {
  const memory = new HostMemory();
  const r = memory.allocate(0x1000);
  const bad = (e: unknown) => isTsvisorError(e, "VMM_MEMORY");
  assert.throws(() => r.read(0xfff, 2), bad);
  assert.throws(() => r.write(-1, Uint8Array.of(1)), bad);
  memory.free(r);
  assert.throws(() => r.read(0, 1), bad, "a freed region is gone");
});

test("the PhysicalMemoryPort reads only HLOS ranges that one region holds whole", () => {
  const memory = new HostMemory();
  const a = memory.allocate(0x2000);
  const b = memory.allocate(0x1000);
  assert.notEqual(a.base, b.base);
  assert.equal(memory.read(Vmid.HLOS, a.base + 0x1000n, 0x1000)?.length, 0x1000);
  assert.equal(memory.read(Vmid.HLOS, a.base + 0x1800n, 0x1000), undefined, "crosses the end");
  assert.equal(memory.read(0x80, a.base, 4), undefined, "not the host's memory");
  assert.deepEqual(memory.resolve(b.base + 0x10n, 0x10n), { region: b, offset: 0x10 });
  memory.free(a);
  const c = memory.allocate(0x1000);
  assert.equal(c.base, a.base, "freed ranges are reused first-fit");
});

test("startVm marks the RAM lent from MEM_LEND on; teardownVm gives it back after MEM_RECLAIM", async () => {
  const hv = new RecordingHypervisor();
  const stack = createRmStack({ hypervisor: hv });
  const client = stack.connectHost();
  try {
    const size = 0x20_0000;
    const ram = stack.memory.allocate(size);
    const layout = guestLayout(size);
    let sawUnlent = false;
    const vm = await startVm(client, stack.memory, {
      config: {
        nodeName: "gunyah-vm-config",
        memory: { base: 0n, size: BigInt(size) },
        vcpus: { count: 1, affinity: "proxy" },
        vdevices: [],
      },
      ram,
      dtbOffset: BigInt(layout.dtbOffset),
      dtbSize: BigInt(layout.dtbSize),
      boot: bootRegisters(0x1000n),
      prepare: () => {
        sawUnlent = !ram.lent;
      },
    });
    assert.equal(sawUnlent, true, "prepare runs before the lend");
    assert.equal((await client.getState(vm.vmid)).vmStatus, VmStatus.RUNNING);
    assert.equal(ram.lent, true);
    assert.equal(ram.parcel, vm.parcel);
    assert.throws(() => ram.read(layout.dtbOffset, 4), lentError);
    assert.throws(() => ram.write(0, Uint8Array.of(1)), lentError);
    await teardownVm(client, vm);
    assert.equal(ram.lent, false);
    // The DTB the RM read at VM_INIT is still there for the host to look at.
    assert.deepEqual([...ram.read(layout.dtbOffset, 4)], [0xd0, 0x0d, 0xfe, 0xed]);
    stack.memory.free(ram);
    assert.deepEqual(hv.violations, []);
  } finally {
    await stack.close();
  }
});
