import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { ResourceType } from "../protocol/enums.js";
import { encodeFdt, fdtNode } from "../protocol/fdt.js";
import { RmError } from "../protocol/rm-error.js";
import { encodeVmConfig } from "../protocol/vm-config.js";
import { RecordingHypervisor } from "./recording-hypervisor.js";
import {
  parseVmConfig,
  ResourceAllocator,
  readParcelBytes,
  toWire,
  VIRQ_FIRST,
  VIRQ_LAST,
  VirqPools,
} from "./resources.js";
import { basicConfig, FakeMemory } from "./testing/harness.js";
import { VmidAllocator } from "./vmids.js";

test("readParcelBytes() reads across SGL entries laid end to end", () => {
  const mem = new FakeMemory();
  mem.write(3, 0x1000n, new Uint8Array([1, 2, 3, 4]));
  mem.write(3, 0x9000n, new Uint8Array([5, 6, 7, 8]));
  const sgl = [
    { base: 0x1000n, size: 4n },
    { base: 0x9000n, size: 4n },
  ];
  assert.deepEqual([...readParcelBytes(mem, 3, sgl, 2n, 4)!], [3, 4, 5, 6]);
  assert.deepEqual([...readParcelBytes(mem, 3, sgl, 4n, 4)!], [5, 6, 7, 8]);
  assert.equal(readParcelBytes(mem, 3, sgl, 6n, 4), undefined, "past the parcel's end");
  assert.equal(readParcelBytes(mem, 4, sgl, 0n, 4), undefined, "another owner's memory");
});

test("parseVmConfig() maps a broken blob to MEM_INVALID and a schema violation to ARGUMENT_INVALID", () => {
  assert.deepEqual(parseVmConfig(new Uint8Array(64)), { ok: false, error: RmError.MEM_INVALID });
  const wrong = encodeFdt(fdtNode("", [], [fdtNode("vm-config")]));
  assert.deepEqual(parseVmConfig(wrong), { ok: false, error: RmError.ARGUMENT_INVALID });
  const good = parseVmConfig(encodeVmConfig(basicConfig()));
  assert.equal(good.ok && good.config.vcpus.count, 2);
});

test("virq pools are per holder, lowest free first, and run out after 32…1019", () => {
  const p = new VirqPools();
  assert.equal(p.allocate(3), VIRQ_FIRST);
  assert.equal(p.allocate(0x80), VIRQ_FIRST, "another holder has its own space");
  assert.equal(p.allocate(3), 33);
  p.free(3, 32);
  assert.equal(p.allocate(3), 32);
  for (let v = 34; v <= VIRQ_LAST; v++) assert.equal(p.allocate(3), v);
  assert.equal(p.allocate(3), undefined);
  assert.deepEqual(p.holders(), [3, 0x80]);
});

test("ResourceAllocator fails with NORESOURCE and gives everything back when a pool runs dry", () => {
  const a = new ResourceAllocator();
  for (let i = VIRQ_FIRST; i < VIRQ_LAST; i++) a.virqs.allocate(3);
  const r = a.allocate({ vmid: 0x80, owner: 3 }, basicConfig());
  assert.deepEqual(r, { ok: false, error: RmError.NORESOURCE });
  assert.equal(
    a.virqs.inUse(3).length,
    VIRQ_LAST - VIRQ_FIRST,
    "the one virq it took was returned",
  );
});

test("ResourceAllocator gives unique cap ids and handles across VMs, and 44-byte wire entries", () => {
  const a = new ResourceAllocator();
  const one = a.allocate({ vmid: 0x80, owner: 3 }, basicConfig());
  const two = a.allocate({ vmid: 0x81, owner: 3 }, basicConfig());
  assert.ok(one.ok && two.ok);
  const all = [...one.entries, ...two.entries];
  assert.equal(new Set(all.map((e) => e.capId)).size, all.length);
  assert.equal(new Set(all.map((e) => e.handle)).size, all.length);
  const w = toWire(one.entries.find((e) => e.type === ResourceType.MSGQ_RX)!);
  assert.equal(w.resource_label, 2);
  assert.equal(w.partner_vmid, 0x80);
  assert.ok(w.virq >= VIRQ_FIRST);
});

test("VmidAllocator refuses a platform list with HLOS, 0 or VMIDs ≥ 64", () => {
  for (const bad of [[3], [0], [64], [1.5]]) {
    assert.throws(
      () => new VmidAllocator(bad),
      (e) => isTsvisorError(e, "RM_CONFIG"),
    );
  }
  const v = new VmidAllocator([]);
  assert.deepEqual(v.allocate(45), { ok: false, error: RmError.NORESOURCE });
});

test("RecordingHypervisor fails chosen calls and reports contract violations", () => {
  const hv = new RecordingHypervisor();
  hv.failNext("createVm", RmError.NOMEM, { vmid: 0x81 });
  const layout = { demandPaging: [], image: undefined, firmware: undefined };
  assert.equal(hv.createVm(0x80, basicConfig(), [], layout), RmError.OK);
  assert.equal(hv.createVm(0x81, basicConfig(), [], layout), RmError.NOMEM);
  assert.equal(
    hv.createVm(0x81, basicConfig(), [], layout),
    RmError.OK,
    "only the next call fails",
  );
  assert.deepEqual(hv.violations, []);
  hv.unmapParcel(0x80, 5);
  hv.createVm(0x80, basicConfig(), [], layout);
  assert.equal(hv.violations.length, 2);
  assert.deepEqual(
    hv.calls.map((c) => c.method),
    ["createVm", "createVm", "createVm", "unmapParcel", "createVm"],
  );
});
