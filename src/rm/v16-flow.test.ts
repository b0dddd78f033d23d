import assert from "node:assert/strict";
import { test } from "node:test";
import { toHex } from "../protocol/bytes.js";
import { RequestId } from "../protocol/catalogue.js";
import { ExitType, ResourceType, Vmid, VmStatus } from "../protocol/enums.js";
import { fragment } from "../protocol/message.js";
import { RmError } from "../protocol/rm-error.js";
import { encodeVmConfig } from "../protocol/vm-config.js";
import { basicConfig, Harness, names } from "./testing/harness.js";

const HLOS = Vmid.HLOS;

/**
 * rm-protocol.md §5.3, call by call, as Linux v16 sends it: alloc → lend the DTB parcel →
 * config image → demand paging → address layout → init → boot context → hyp resources →
 * start; then forced stop → reset (wait for VM_STATUS(RESET)) → dealloc.
 */
test("the whole v16 start and teardown sequence works through handle() with real messages", () => {
  const h = new Harness();

  // 2. VM_ALLOC_VMID(0): the reply carries the VMID; no notification.
  const alloc = h.ok(HLOS, RequestId.VM_ALLOC_VMID, { vmid: 0 });
  assert.equal(alloc.reply.vmid, 0x80);
  assert.deepEqual(alloc.notes, []);
  assert.equal(toHex(fragment(alloc.out[0]!.message)[0]!.subarray(8)), "0000000080000000");
  const vmid = 0x80;

  // 3. The DTB parcel: two folios, DTB one page into the first; one ACL entry (the guest).
  const dtb = encodeVmConfig(basicConfig());
  const folioA = new Uint8Array(0x2000);
  const folioB = new Uint8Array(0x2000);
  const placed = new Uint8Array(0x4000);
  placed.set(dtb, 0x1000);
  folioA.set(placed.subarray(0, 0x2000));
  folioB.set(placed.subarray(0x2000));
  h.memory.write(HLOS, 0x8000_0000n, folioA);
  h.memory.write(HLOS, 0x8001_0000n, folioB);
  const lend = h.ok(HLOS, RequestId.MEM_LEND, {
    mem_type: 0,
    flags: 0,
    label: 0,
    acl: [{ vmid, rights: 7 }],
    sgl: [
      { base: 0x8000_0000n, size: 0x2000n },
      { base: 0x8001_0000n, size: 0x2000n },
    ],
    attrs: [],
  });
  const handle = lend.reply.mem_handle as number;
  assert.equal(handle, 0);

  // 4. VM_CONFIG_IMAGE: VM_STATUS(INIT) to HLOS, then the reply.
  const cfg = h.ok(HLOS, RequestId.VM_CONFIG_IMAGE, {
    vmid,
    auth_mech: 0,
    mem_handle: handle,
    image_offset: 0n,
    image_size: 0n,
    dtb_offset: 0x1000n,
    dtb_size: 0x3000n,
  });
  assert.deepEqual(names(cfg.notes), ["VM_STATUS->3"]);
  assert.equal(cfg.notes[0]!.body.vm_status, VmStatus.INIT);

  // 5–6. The v16-only calls.
  h.ok(HLOS, RequestId.VM_SET_DEMAND_PAGING, {
    vmid,
    ranges: [{ guest_phys_base: 0x1_0000_0000n, size: 0x10_0000n }],
  });
  h.ok(HLOS, RequestId.VM_SET_ADDRESS_LAYOUT, {
    vmid,
    range_id: 0,
    base: 0x8000_0000n,
    size: 0x1_2000n,
  });

  // 7. VM_INIT parses the DTB that spans both folios.
  const init = h.ok(HLOS, RequestId.VM_INIT, { vmid });
  assert.deepEqual(
    init.notes.map((n) => n.body.vm_status),
    [VmStatus.READY],
  );
  const created = h.hv.callsOf("createVm");
  assert.equal(created.length, 1);
  assert.equal(created[0]!.config.imageName, "test-guest");
  assert.deepEqual(created[0]!.layout.demandPaging, [{ base: 0x1_0000_0000n, size: 0x10_0000n }]);
  assert.deepEqual(created[0]!.layout.image, { base: 0x8000_0000n, size: 0x1_2000n });

  // 8. Boot context: RIP, RSP and RSI (X index 4).
  h.ok(HLOS, RequestId.VM_SET_BOOT_CONTEXT, { vmid, reg_set: 1, reg_index: 0, value: 0x10_0000n });
  h.ok(HLOS, RequestId.VM_SET_BOOT_CONTEXT, { vmid, reg_set: 2, reg_index: 0, value: 0x8000n });
  h.ok(HLOS, RequestId.VM_SET_BOOT_CONTEXT, { vmid, reg_set: 0, reg_index: 4, value: 0x7000n });

  // 9. Resources: 2 vCPUs, ADDR_SPACE, 4 MEM_EXTENTs, BELL_TX, MSGQ_TX + MSGQ_RX.
  const res = h.ok(HLOS, RequestId.VM_GET_HYP_RESOURCES, { vmid });
  const entries = res.reply.entries as {
    resource_type: number;
    resource_label: number;
    cap_id: bigint;
    virq: number;
    partner_vmid: number;
  }[];
  const replyBytes = fragment(res.out.at(-1)!.message);
  const logicalLength = replyBytes.reduce((n, m) => n + m.length - 8, 0);
  assert.equal(
    logicalLength,
    4 + 4 + 44 * entries.length,
    "Linux's length rule: 4 + 44 × n after the error",
  );
  assert.deepEqual(
    entries.map((e) => `${e.resource_type}:${e.resource_label}`),
    ["4:0", "4:1", "10:0", "9:0", "9:1", "9:2", "9:3", "0:1", "2:2", "3:2"],
  );
  assert.equal(new Set(entries.map((e) => e.cap_id)).size, entries.length, "cap ids are unique");
  for (const e of entries) {
    assert.equal(e.partner_vmid, vmid);
    const needsIrq = [ResourceType.VCPU, ResourceType.MSGQ_TX, ResourceType.MSGQ_RX].includes(
      e.resource_type as 4,
    );
    if (needsIrq) assert.ok(e.virq >= 32 && e.virq <= 1019, `virq ${e.virq} is mappable by Linux`);
    else assert.equal(e.virq, 0);
  }
  const virqs = entries.filter((e) => e.virq !== 0).map((e) => e.virq);
  assert.deepEqual(virqs, [32, 33, 34, 35]);

  // 10. VM_START: the DTB parcel is mapped at its own addresses, vCPUs start with the context.
  const start = h.ok(HLOS, RequestId.VM_START, { vmid });
  assert.deepEqual(
    start.notes.map((n) => n.body.vm_status),
    [VmStatus.RUNNING],
  );
  assert.deepEqual(
    h.hv.calls.map((c) => c.method),
    ["createVm", "mapParcel", "startVcpus"],
  );
  const mapped = h.hv.callsOf("mapParcel")[0]!.parcel;
  assert.deepEqual(mapped.sgl, [
    { base: 0x8000_0000n, size: 0x2000n },
    { base: 0x8001_0000n, size: 0x2000n },
  ]);
  assert.deepEqual(
    mapped.guest,
    [
      { base: 0x8000_0000n, size: 0x2000n },
      { base: 0x8000_2000n, size: 0x2000n },
    ],
    "the image parcel is laid out back to back from the IMAGE address-layout base",
  );
  assert.equal(mapped.rights, 7);
  assert.deepEqual(h.hv.callsOf("startVcpus")[0]!.boot, {
    rip: 0x10_0000n,
    rsp: 0x8000n,
    rsi: 0x7000n,
  });

  // Teardown. Forced stop: VM_STATUS(EXITED), VM_EXITED(type 7), then the reply.
  const stop = h.ok(HLOS, RequestId.VM_STOP, { vmid, flags: 1, stop_reason: 3 });
  assert.deepEqual(names(stop.notes), ["VM_STATUS->3", "VM_EXITED->3"]);
  assert.equal(stop.notes[1]!.body.exit_type, ExitType.VM_STOP_FORCED);
  assert.equal(toHex(fragment(stop.out[1]!.message)[0]!.subarray(8)), "800007000400000000000000");
  assert.ok(
    stop.notes[1]!.seq === ((stop.notes[0]!.seq + 1) & 0xffff),
    "one global notification counter",
  );

  // EXITED released the guest's parcels: the host reclaims the DTB parcel before the reset.
  assert.deepEqual(
    h.hv.calls.slice(-2).map((c) => c.method),
    ["stopVm", "unmapParcel"],
  );
  h.ok(HLOS, RequestId.MEM_RECLAIM, { mem_handle: handle, flags: 0 });

  const reset = h.ok(HLOS, RequestId.VM_RESET, { vmid });
  assert.deepEqual(
    reset.notes.map((n) => n.body.vm_status),
    [VmStatus.RESETTING],
  );
  const later = h.drain();
  assert.deepEqual(names(later), ["VM_STATUS->3"]);
  assert.equal(later[0]!.body.vm_status, VmStatus.RESET);
  h.ok(HLOS, RequestId.VM_DEALLOC_VMID, { vmid });

  assert.deepEqual(
    h.hv.calls.map((c) => c.method),
    ["createVm", "mapParcel", "startVcpus", "stopVm", "unmapParcel", "destroyVm"],
  );
  assert.deepEqual(h.hv.violations, []);
  assert.equal(h.hv.vms.size, 0);
  const snap = h.rm.snapshot();
  assert.deepEqual(snap.allocatedVmids, []);
  assert.deepEqual(snap.parcels, [], "the host reclaimed the config-image parcel");
  assert.deepEqual(snap.virqHolders, []);
  assert.deepEqual(
    snap.vms.map((v) => v.vmid),
    [HLOS],
  );
});

test("a VM whose CONFIG_IMAGE failed stays un-deallocatable, as Linux v16's edge case (a) describes", () => {
  const h = new Harness();
  const vmid = h.alloc();
  const handle = h.lendDtb(vmid);
  const r = h.configImage(vmid, handle, { dtb_size: 0x10_0000n });
  assert.equal(r.error, RmError.ARGUMENT_INVALID);
  assert.equal(r.notes[0]!.body.vm_status, VmStatus.INIT_FAILED);
  // Linux thinks LOAD: it reclaims the parcel and deallocates, which the RM refuses.
  h.ok(HLOS, RequestId.MEM_RECLAIM, { mem_handle: handle, flags: 0 });
  assert.equal(h.call(HLOS, RequestId.VM_DEALLOC_VMID, { vmid }).error, RmError.VM_STATE);
  // A reset recovers it.
  h.ok(HLOS, RequestId.VM_RESET, { vmid });
  h.drain();
  h.ok(HLOS, RequestId.VM_DEALLOC_VMID, { vmid });
});

test("a VM can be configured again after a reset, without a new VMID", () => {
  const h = new Harness();
  const { vmid } = h.running();
  h.ok(HLOS, RequestId.VM_STOP, { vmid, flags: 1, stop_reason: 3 });
  h.ok(HLOS, RequestId.VM_RESET, { vmid });
  h.drain();
  const handle = h.lendDtb(vmid, basicConfig({ imageName: "second" }), 0x5000_0000n);
  assert.equal(h.configImage(vmid, handle).error, 0);
  h.ok(HLOS, RequestId.VM_INIT, { vmid });
  h.ok(HLOS, RequestId.VM_START, { vmid });
  assert.equal(h.hv.callsOf("createVm").at(-1)!.config.imageName, "second");
  assert.deepEqual(h.hv.violations, []);
});
