import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { RequestId } from "../protocol/catalogue.js";
import { ExitType, HostType, OsStatus, Vmid, VmStatus } from "../protocol/enums.js";
import { encodeFdt, fdtNode } from "../protocol/fdt.js";
import { RmError } from "../protocol/rm-error.js";
import { ADMISSION } from "./lifecycle.js";
import { RESET_STAGES } from "./reset.js";
import {
  basicConfig,
  DTB_BASE,
  DTB_PARCEL_SIZE,
  Harness,
  lendReq,
  names,
} from "./testing/harness.js";

const HLOS = Vmid.HLOS;
const R = RequestId;
const E = RmError;

function statusOf(h: Harness, vmid: number): number {
  return h.ok(HLOS, R.VM_GET_STATE, { vmid }).reply.vm_status as number;
}

// ---- VM_ALLOC_VMID / VM_DEALLOC_VMID

test("VM_ALLOC_VMID hands out the lowest free dynamic VMID and reuses freed ones", () => {
  const h = new Harness();
  assert.deepEqual([h.alloc(), h.alloc(), h.alloc()], [0x80, 0x81, 0x82]);
  h.ok(HLOS, R.VM_DEALLOC_VMID, { vmid: 0x81 });
  assert.equal(h.alloc(), 0x81);
  assert.equal(statusOf(h, 0x81), VmStatus.LOAD);
});

test("VM_ALLOC_VMID answers NORESOURCE once 0x80…0xBE are all taken", () => {
  const h = new Harness();
  const got: number[] = [];
  for (let i = 0; i < 63; i++) got.push(h.alloc());
  assert.equal(got.at(-1), 0xbe);
  assert.equal(h.call(HLOS, R.VM_ALLOC_VMID, { vmid: 0 }).error, E.NORESOURCE);
});

test("VM_ALLOC_VMID gives a platform VMID only when asked by number, with an empty reply", () => {
  const h = new Harness({ secondaryVmids: [10, 45] });
  const r = h.ok(HLOS, R.VM_ALLOC_VMID, { vmid: 45 });
  assert.deepEqual(r.reply, {});
  assert.deepEqual(r.notes, []);
  assert.equal(h.call(HLOS, R.VM_ALLOC_VMID, { vmid: 45 }).error, E.NORESOURCE, "taken");
  assert.equal(h.call(HLOS, R.VM_ALLOC_VMID, { vmid: 46 }).error, E.NORESOURCE, "not offered");
  assert.equal(
    h.call(HLOS, R.VM_ALLOC_VMID, { vmid: 0x85 }).error,
    E.ARGUMENT_INVALID,
    "not secondary",
  );
  assert.equal(h.alloc(10), 10);
  assert.equal(h.alloc(), 0x80);
});

test("VM_DEALLOC_VMID needs the owner and LOAD or RESET", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.ready();
  assert.equal(h.call(HLOS, R.VM_DEALLOC_VMID, { vmid }).error, E.VM_STATE);
  assert.equal(h.call(0x80, R.VM_DEALLOC_VMID, { vmid }).error, E.DENIED);
  assert.equal(h.call(HLOS, R.VM_DEALLOC_VMID, { vmid: 0x99 }).error, E.VMID_INVALID);
  assert.equal(
    h.call(HLOS, R.VM_DEALLOC_VMID, { vmid: HLOS }).error,
    E.DENIED,
    "HLOS belongs to the RM",
  );
});

test("VM_DEALLOC_VMID releases parcels for the VM, so a VM reusing the VMID cannot accept them", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const vmid = h.alloc();
  const lent = h.ok(HLOS, R.MEM_LEND, lendReq(vmid, [{ base: 0x10000n, size: 0x1000n }])).reply
    .mem_handle;
  h.ok(HLOS, R.VM_DEALLOC_VMID, { vmid });
  assert.equal(h.alloc(), vmid);
  const accept = h.call(vmid, R.MEM_ACCEPT, {
    mem_handle: lent,
    mem_type: 0,
    trans_type: 1,
    flags: 0,
    label: 0,
    acl: [],
    sgl: [],
    map_vmid: 0,
    attrs: [],
  });
  assert.equal(accept.error, E.MEM_RELEASED);
  h.ok(HLOS, R.MEM_RECLAIM, { mem_handle: lent, flags: 0 });
});

// ---- VM_CONFIG_IMAGE / VM_AUTH_IMAGE

test("VM_CONFIG_IMAGE must be exactly 40 bytes", () => {
  const h = new Harness();
  const vmid = h.alloc();
  assert.equal(h.raw(HLOS, R.VM_CONFIG_IMAGE, new Uint8Array(39)).error, E.MSG_INVALID);
  assert.equal(h.raw(HLOS, R.VM_CONFIG_IMAGE, new Uint8Array(41)).error, E.MSG_INVALID);
  assert.equal(statusOf(h, vmid), VmStatus.LOAD);
});

test("VM_CONFIG_IMAGE with a parcel not meant for the VM is MEM_INVALID and fails the VM", () => {
  const h = new Harness();
  const a = h.alloc();
  const b = h.alloc();
  const forB = h.lendDtb(b);
  const r = h.configImage(a, forB);
  assert.equal(r.error, E.MEM_INVALID);
  assert.deepEqual(names(r.notes), ["VM_STATUS->3"]);
  assert.equal(r.notes[0]!.body.vm_status, VmStatus.INIT_FAILED);
  assert.equal(h.configImage(b, 0x777).error, E.MEM_INVALID, "unknown handle");
});

test("VM_CONFIG_IMAGE checks that the image and DTB ranges lie inside the parcel", () => {
  for (const [over, want] of [
    [{ dtb_offset: 0x1000n, dtb_size: DTB_PARCEL_SIZE }, E.ARGUMENT_INVALID],
    [{ image_offset: 0x3000n, image_size: 0x2000n }, E.ARGUMENT_INVALID],
    [{ image_offset: 0xffff_ffff_ffff_f000n, image_size: 0x2000n }, E.ARGUMENT_INVALID],
    [{ dtb_size: 0n }, E.ARGUMENT_INVALID],
    [{ image_offset: 0x1000n, image_size: 0x3000n, dtb_offset: 0x3000n, dtb_size: 0x1000n }, E.OK],
  ] as const) {
    const h = new Harness();
    const vmid = h.alloc();
    const r = h.configImage(vmid, h.lendDtb(vmid), over);
    assert.equal(
      r.error,
      want,
      JSON.stringify(over, (_k, v) => (typeof v === "bigint" ? `${v}` : v)),
    );
    assert.equal(statusOf(h, vmid), want === E.OK ? VmStatus.INIT : VmStatus.INIT_FAILED);
  }
});

test("VM_CONFIG_IMAGE's auth_mech picks INIT (0, 2), AUTH (1) or INIT_FAILED (others)", () => {
  for (const [auth, status, error] of [
    [0, VmStatus.INIT, E.OK],
    [2, VmStatus.INIT, E.OK],
    [1, VmStatus.AUTH, E.OK],
    [3, VmStatus.INIT_FAILED, E.ARGUMENT_INVALID],
  ] as const) {
    const h = new Harness();
    const vmid = h.alloc();
    const r = h.configImage(vmid, h.lendDtb(vmid), { auth_mech: auth });
    assert.equal(r.error, error);
    assert.equal(r.notes[0]!.body.vm_status, status);
  }
});

test("VM_AUTH_IMAGE moves an AUTH VM to INIT and VM_INIT then works", () => {
  const h = new Harness();
  const vmid = h.alloc();
  h.configImage(vmid, h.lendDtb(vmid), { auth_mech: 1 });
  assert.equal(h.call(HLOS, R.VM_INIT, { vmid }).error, E.VM_STATE);
  const r = h.ok(HLOS, R.VM_AUTH_IMAGE, { vmid, params: [{ param_type: 0, param: 7 }] });
  assert.equal(r.notes[0]!.body.vm_status, VmStatus.INIT);
  h.ok(HLOS, R.VM_INIT, { vmid });
  assert.equal(statusOf(h, vmid), VmStatus.READY);
});

test("VM_CONFIG_IMAGE is refused to a non-HLOS caller and outside LOAD/RESET", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const vmid = h.alloc();
  const handle = h.lendDtb(vmid);
  const body = {
    vmid,
    auth_mech: 0,
    mem_handle: handle,
    image_offset: 0n,
    image_size: 0n,
    dtb_offset: 0n,
    dtb_size: 0x1000n,
  };
  assert.equal(h.call(vmid, R.VM_CONFIG_IMAGE, body).error, E.DENIED);
  h.ok(HLOS, R.VM_CONFIG_IMAGE, body);
  assert.equal(h.call(HLOS, R.VM_CONFIG_IMAGE, body).error, E.VM_STATE);
});

// ---- VM_INIT

test("VM_INIT with a DTB that is not a devicetree is MEM_INVALID and fails the VM", () => {
  const h = new Harness();
  const vmid = h.alloc();
  h.memory.write(HLOS, DTB_BASE, new Uint8Array(0x4000).fill(0x5a));
  const handle = h.ok(HLOS, R.MEM_LEND, lendReq(vmid, [{ base: DTB_BASE, size: DTB_PARCEL_SIZE }]))
    .reply.mem_handle;
  h.configImage(vmid, handle as number);
  const r = h.call(HLOS, R.VM_INIT, { vmid });
  assert.equal(r.error, E.MEM_INVALID);
  assert.equal(r.notes[0]!.body.vm_status, VmStatus.INIT_FAILED);
  assert.equal(h.hv.calls.length, 0);
});

test("VM_INIT with a well-formed DTB that breaks the vm-config schema is ARGUMENT_INVALID", () => {
  const h = new Harness();
  const vmid = h.alloc();
  const region = new Uint8Array(0x4000);
  region.set(encodeFdt(fdtNode("", [], [fdtNode("not-a-vm-config")])));
  h.memory.write(HLOS, DTB_BASE, region);
  const handle = h.ok(HLOS, R.MEM_LEND, lendReq(vmid, [{ base: DTB_BASE, size: DTB_PARCEL_SIZE }]))
    .reply.mem_handle;
  h.configImage(vmid, handle as number);
  const r = h.call(HLOS, R.VM_INIT, { vmid });
  assert.equal(r.error, E.ARGUMENT_INVALID);
  assert.equal(statusOf(h, vmid), VmStatus.INIT_FAILED);
});

test("VM_INIT of a parcel whose memory is unbacked is MEM_INVALID", () => {
  const h = new Harness();
  const vmid = h.alloc();
  const handle = h.ok(HLOS, R.MEM_LEND, lendReq(vmid, [{ base: 0x9000_0000n, size: 0x4000n }]))
    .reply.mem_handle;
  h.configImage(vmid, handle as number);
  assert.equal(h.call(HLOS, R.VM_INIT, { vmid }).error, E.MEM_INVALID);
});

test("VM_INIT after the owner reclaimed the config parcel is MEM_INVALID", () => {
  const h = new Harness();
  const vmid = h.alloc();
  const handle = h.lendDtb(vmid);
  h.configImage(vmid, handle);
  h.ok(HLOS, R.MEM_RECLAIM, { mem_handle: handle, flags: 0 });
  assert.equal(h.call(HLOS, R.VM_INIT, { vmid }).error, E.MEM_INVALID);
});

test("VM_INIT refuses a vdevice whose peer is not a VM the RM knows", () => {
  const h = new Harness();
  const vmid = h.alloc();
  const cfg = basicConfig({
    vdevices: [{ kind: "doorbell-source", name: "src", label: 3, peer: 0x9a }],
  });
  h.configImage(vmid, h.lendDtb(vmid, cfg));
  assert.equal(h.call(HLOS, R.VM_INIT, { vmid }).error, E.ARGUMENT_INVALID);
  assert.equal(h.rm.snapshot().virqHolders.length, 0);
});

test("VM_INIT fails the VM with the port's error when createVm fails, and frees its interrupts", () => {
  const h = new Harness();
  h.hv.failNext("createVm", E.NORESOURCE);
  const vmid = h.alloc();
  h.configImage(vmid, h.lendDtb(vmid));
  const r = h.call(HLOS, R.VM_INIT, { vmid });
  assert.equal(r.error, E.NORESOURCE);
  assert.equal(r.notes[0]!.body.vm_status, VmStatus.INIT_FAILED);
  assert.deepEqual(h.rm.snapshot().virqHolders, []);
  h.ok(HLOS, R.VM_RESET, { vmid });
  h.drain();
  assert.equal(h.hv.callsOf("destroyVm").length, 0, "nothing was created, nothing is destroyed");
});

test("VM_INIT's reserved half-word must be zero", () => {
  const h = new Harness();
  const vmid = h.alloc();
  h.configImage(vmid, h.lendDtb(vmid));
  const bytes = new Uint8Array([vmid, 0, 1, 0]);
  assert.equal(h.raw(HLOS, R.VM_INIT, bytes).error, E.MSG_INVALID);
  assert.equal(statusOf(h, vmid), VmStatus.INIT);
});

// ---- VM_GET_HYP_RESOURCES

test("VM_GET_HYP_RESOURCES is NORESOURCE before CONFIG_IMAGE and empty before VM_INIT", () => {
  const h = new Harness();
  const vmid = h.alloc();
  assert.equal(h.call(HLOS, R.VM_GET_HYP_RESOURCES, { vmid }).error, E.NORESOURCE);
  h.configImage(vmid, h.lendDtb(vmid));
  assert.deepEqual(h.ok(HLOS, R.VM_GET_HYP_RESOURCES, { vmid }).reply.entries, []);
});

test("VM_GET_HYP_RESOURCES shows each caller only its side: vCPUs to the owner, vdevices to the peer", () => {
  const h = new Harness({ link: [HLOS, 0x80, 0x81] });
  const peer = h.running().vmid;
  const cfg = basicConfig({
    vcpus: { count: 1, affinity: "proxy" },
    vdevices: [
      { kind: "doorbell-source", name: "ring", label: 5, peer },
      {
        kind: "message-queue-pair",
        name: "q",
        label: 6,
        peer,
        messageSize: 64,
        queueDepth: 4,
        interrupts: [50, 51],
      },
    ],
  });
  const { vmid } = h.ready(cfg);
  const byOwner = h.ok(HLOS, R.VM_GET_HYP_RESOURCES, { vmid }).reply.entries as {
    resource_type: number;
  }[];
  assert.deepEqual(
    byOwner.map((e) => e.resource_type),
    [4, 10, 9, 9, 9, 9],
  );
  const byPeer = h.ok(peer, R.VM_GET_HYP_RESOURCES, { vmid }).reply.entries as {
    resource_type: number;
    resource_label: number;
    virq: number;
    partner_vmid: number;
  }[];
  assert.deepEqual(
    byPeer.map((e) => [e.resource_type, e.resource_label, e.virq, e.partner_vmid]),
    [
      [1, 5, 32, vmid],
      [2, 6, 33, vmid],
      [3, 6, 34, vmid],
    ],
    "the peer's interrupts come from its own pool, starting at 32",
  );
  assert.deepEqual(h.ok(HLOS, R.VM_GET_PEERS).reply.peers, [{ vmid: peer }, { vmid }]);
  assert.deepEqual(h.ok(peer, R.VM_GET_PEERS).reply.peers, [{ vmid: HLOS }, { vmid }]);
});

test("a vCPU that is not proxy-scheduled is reported with virq 0xFFFFFFFF, as the RM does", () => {
  const h = new Harness();
  const { vmid } = h.ready(basicConfig({ vcpus: { count: 1, affinity: "static" }, vdevices: [] }));
  const e = (h.ok(HLOS, R.VM_GET_HYP_RESOURCES, { vmid }).reply.entries as { virq: number }[])[0]!;
  assert.equal(e.virq, 0xffffffff);
});

// ---- VM_START

test("VM_START needs READY and the owner; a port failure leaves the VM INIT_FAILED", () => {
  const h = new Harness();
  const vmid = h.alloc();
  assert.equal(h.call(HLOS, R.VM_START, { vmid }).error, E.VM_STATE);
  h.teardown(vmid);
  const r = h.ready();
  h.hv.failNext("startVcpus", E.NORESOURCE);
  const s = h.call(HLOS, R.VM_START, { vmid: r.vmid });
  assert.equal(s.error, E.NORESOURCE);
  assert.deepEqual(
    s.notes.map((n) => n.body.vm_status),
    [VmStatus.INIT_FAILED],
  );
  h.ok(HLOS, R.VM_RESET, { vmid: r.vmid });
  h.drain();
  assert.equal(h.hv.vms.size, 0);
  assert.deepEqual(h.hv.violations, []);
});

test("VM_START fails the VM when a parcel cannot be mapped", () => {
  const h = new Harness();
  const { vmid } = h.ready();
  h.hv.failNext("mapParcel", E.MAP_FAILED);
  assert.equal(h.call(HLOS, R.VM_START, { vmid }).error, E.MAP_FAILED);
  assert.equal(statusOf(h, vmid), VmStatus.INIT_FAILED);
  assert.equal(h.hv.callsOf("startVcpus").length, 0);
});

// ---- VM_STOP

test("VM_STOP must be 8 bytes, from the owner (else VMID_INVALID), on a RUNNING VM", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.ready();
  assert.equal(h.raw(HLOS, R.VM_STOP, new Uint8Array([vmid, 0, 1, 0])).error, E.MSG_INVALID);
  assert.equal(h.call(HLOS, R.VM_STOP, { vmid, flags: 1, stop_reason: 3 }).error, E.VM_STATE);
  h.ok(HLOS, R.VM_START, { vmid });
  assert.equal(h.call(vmid, R.VM_STOP, { vmid, flags: 1, stop_reason: 3 }).error, E.VMID_INVALID);
  assert.equal(
    h.call(HLOS, R.VM_STOP, { vmid, flags: 2, stop_reason: 3 }).error,
    E.ARGUMENT_INVALID,
  );
});

test("VM_STOP without FORCE sends VM_SHUTDOWN to the VM and leaves it RUNNING", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.running();
  const r = h.ok(HLOS, R.VM_STOP, { vmid, flags: 0, stop_reason: 1 });
  assert.deepEqual(names(r.notes), [`VM_SHUTDOWN->${vmid}`]);
  assert.equal(r.notes[0]!.body.stop_reason, 1);
  assert.equal(statusOf(h, vmid), VmStatus.RUNNING);
});

test("a forced VM_STOP that the port cannot carry out answers its error and keeps the VM RUNNING", () => {
  const h = new Harness();
  const { vmid } = h.running();
  h.hv.failNext("stopVm", E.BUSY);
  const r = h.call(HLOS, R.VM_STOP, { vmid, flags: 1, stop_reason: 3 });
  assert.equal(r.error, E.BUSY);
  assert.deepEqual(r.notes, []);
  assert.equal(statusOf(h, vmid), VmStatus.RUNNING);
});

// ---- VM_RESET

test("VM_RESET answers at once and tears down in six deferred stages, RESET last", () => {
  const h = new Harness();
  const { vmid } = h.running();
  assert.equal(h.call(HLOS, R.VM_RESET, { vmid }).error, E.VM_STATE, "RUNNING cannot reset");
  h.ok(HLOS, R.VM_STOP, { vmid, flags: 1, stop_reason: 3 });
  const r = h.ok(HLOS, R.VM_RESET, { vmid });
  assert.deepEqual(
    r.notes.map((n) => n.body.vm_status),
    [VmStatus.RESETTING],
  );
  assert.equal(h.call(HLOS, R.VM_RESET, { vmid }).error, E.VM_STATE);
  assert.equal(h.call(HLOS, R.VM_GET_HYP_RESOURCES, { vmid }).error, E.NORESOURCE);
  const seen: string[] = [];
  let stages = 0;
  while (h.rm.hasDeferredWork) {
    const before = h.hv.calls.length;
    const out = h.rm.runDeferred();
    stages++;
    seen.push(...h.hv.calls.slice(before).map((c) => c.method));
    if (h.rm.hasDeferredWork) assert.equal(out.length, 0, "only the last stage notifies");
    else assert.equal(out.length, 1);
  }
  assert.equal(stages, RESET_STAGES.length);
  assert.deepEqual(seen, ["destroyVm"], "the parcels were unmapped when the VM exited");
  assert.equal(statusOf(h, vmid), VmStatus.RESET);
  assert.deepEqual(h.rm.runDeferred(), []);
});

test("VM_RESET by a non-owner is VMID_INVALID; READY and INIT_FAILED VMs may reset", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.ready();
  assert.equal(h.call(0x80, R.VM_RESET, { vmid }).error, E.VMID_INVALID);
  h.ok(HLOS, R.VM_RESET, { vmid });
  h.drain();
  assert.equal(statusOf(h, vmid), VmStatus.RESET);
});

test("a guest peer's links are dropped after its partner's reset", () => {
  const h = new Harness({ link: [HLOS, 0x80, 0x81] });
  const peer = h.running().vmid;
  const { vmid } = h.running(
    basicConfig({ vdevices: [{ kind: "doorbell-source", name: "x", label: 1, peer }] }),
  );
  assert.deepEqual(h.ok(vmid, R.VM_GET_PEERS).reply.peers, [{ vmid: HLOS }, { vmid: peer }]);
  const stop = h.ok(HLOS, R.VM_STOP, { vmid, flags: 1, stop_reason: 3 });
  assert.deepEqual(names(stop.notes), ["VM_STATUS->3", `VM_STATUS->${peer}`, "VM_EXITED->3"]);
  h.ok(HLOS, R.VM_RESET, { vmid });
  const later = h.drain();
  assert.deepEqual(names(later), ["VM_STATUS->3", `VM_STATUS->${peer}`]);
  assert.deepEqual(h.ok(vmid, R.VM_GET_PEERS).reply.peers, [{ vmid: HLOS }]);
});

// ---- VM_EXIT, VM_SET_STATUS, hypervisor events

test("VM_EXIT from a running guest: EXITED, VM_STATUS and VM_EXITED(type 0) to the owner", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.running();
  assert.equal(h.call(vmid, R.VM_EXIT, { exit_flags: 0, exit_code: 2 }).error, E.ARGUMENT_INVALID);
  assert.equal(h.call(HLOS, R.VM_EXIT, { exit_flags: 0, exit_code: 0 }).error, E.DENIED);
  const r = h.ok(vmid, R.VM_EXIT, { exit_flags: 1, exit_code: 3 });
  assert.deepEqual(names(r.notes), ["VM_STATUS->3", "VM_EXITED->3"]);
  assert.equal(r.notes[1]!.body.exit_type, ExitType.VM_EXIT);
  assert.deepEqual([...(r.notes[1]!.body.exit_reason as Uint8Array)], [1, 0, 3, 0]);
  assert.equal(statusOf(h, vmid), VmStatus.EXITED);
  assert.equal(h.call(vmid, R.VM_EXIT, { exit_flags: 0, exit_code: 0 }).error, E.VM_STATE);
  assert.equal(h.hv.callsOf("stopVm").length, 1);
});

test("VM_SET_STATUS from a guest updates os/app status and tells the running peers", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.running();
  const r = h.ok(vmid, R.VM_SET_STATUS, { os_status: OsStatus.BOOT, app_status: 0x1234 });
  assert.deepEqual(names(r.notes), ["VM_STATUS->3"]);
  assert.deepEqual(r.notes[0]!.body, { vmid, vm_status: 3, os_status: 2, app_status: 0x1234 });
  const keep = h.ok(vmid, R.VM_SET_STATUS, { os_status: 0, app_status: 1 });
  assert.equal(keep.notes[0]!.body.os_status, OsStatus.BOOT, "os_status 0 leaves it unchanged");
  assert.deepEqual(h.ok(HLOS, R.VM_GET_STATE, { vmid }).reply, {
    vm_status: 3,
    os_status: 2,
    app_status: 1,
  });
  assert.equal(h.call(HLOS, R.VM_SET_STATUS, { os_status: 1, app_status: 0 }).error, E.DENIED);
  assert.equal(h.raw(vmid, R.VM_SET_STATUS, new Uint8Array([0, 8, 0, 0])).error, E.MSG_INVALID);
});

test("VM_SET_STATUS is allowed from a secondary VMID too", () => {
  const h = new Harness({ link: [HLOS, 45] });
  h.alloc(45);
  const r = h.ok(45, R.VM_SET_STATUS, { os_status: 1, app_status: 0 });
  assert.deepEqual(names(r.notes), ["VM_STATUS->3"]);
});

test("VM_STATUS goes only to peers that are RUNNING and linked", () => {
  const h = new Harness({ link: [HLOS] });
  const peer = h.ready().vmid; // READY, not running
  const { vmid } = h.ready(
    basicConfig({ vdevices: [{ kind: "doorbell-source", name: "x", label: 1, peer }] }),
  );
  assert.deepEqual(names(h.ok(HLOS, R.VM_START, { vmid }).notes), ["VM_STATUS->3"]);
  h.ok(HLOS, R.VM_START, { vmid: peer });
  const stop1 = h.ok(HLOS, R.VM_STOP, { vmid, flags: 1, stop_reason: 3 });
  assert.deepEqual(
    names(stop1.notes),
    ["VM_STATUS->3", "VM_EXITED->3"],
    "the peer runs but has no link",
  );
  h.rm.disconnect(HLOS);
  const stop2 = h.ok(HLOS, R.VM_STOP, { vmid: peer, flags: 1, stop_reason: 3 });
  assert.deepEqual(stop2.notes, [], "an unlinked owner hears nothing, but still gets its reply");
});

test("vmExited() moves a running VM to EXITED with the given exit type and ignores stale events", () => {
  const h = new Harness();
  const { vmid } = h.running();
  const out = h.rm.vmExited(vmid, ExitType.WATCHDOG_BITE, 0, 1);
  assert.equal(out.length, 2);
  assert.equal(statusOf(h, vmid), VmStatus.EXITED);
  assert.deepEqual(h.rm.vmExited(vmid, ExitType.PLATFORM_OFF), []);
  assert.deepEqual(h.rm.vmExited(0x99, ExitType.PLATFORM_OFF), []);
  assert.deepEqual(h.rm.vmExited(HLOS, ExitType.PLATFORM_OFF), []);
});

// ---- queries

test("VM_GET_VMID, VM_GET_OWNER and VM_HOST_GET_TYPE describe the caller and the host", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  h.alloc();
  assert.equal(h.ok(0x80, R.VM_GET_VMID).reply.vmid, 0x80);
  assert.equal(h.ok(HLOS, R.VM_GET_VMID).reply.vmid, HLOS);
  assert.equal(h.ok(0x80, R.VM_GET_OWNER).reply.owner_vmid, HLOS);
  assert.equal(h.ok(HLOS, R.VM_GET_OWNER).reply.owner_vmid, Vmid.RM);
  assert.equal(h.call(0x85, R.VM_GET_OWNER).error, E.VMID_INVALID);
  assert.equal(h.ok(0x80, R.VM_HOST_GET_TYPE).reply.host_type, HostType.X86_64);
  assert.equal(h.raw(HLOS, R.VM_GET_VMID, new Uint8Array(4)).error, E.MSG_INVALID);
});

test("VM_GET_STATE answers the VM, its owner and its peers (0 = self), DENIED to strangers", () => {
  const h = new Harness({ link: [HLOS, 0x80, 0x81] });
  h.alloc();
  h.alloc();
  assert.equal(h.ok(0x80, R.VM_GET_STATE, { vmid: 0 }).reply.vm_status, VmStatus.LOAD);
  assert.equal(h.call(0x81, R.VM_GET_STATE, { vmid: 0x80 }).error, E.DENIED);
  assert.equal(
    h.ok(HLOS, R.VM_GET_STATE, { vmid: 0 }).reply.vm_status,
    VmStatus.RUNNING,
    "HLOS runs",
  );
});

test("crash messages: the guest stores up to 192 bytes, the owner reads them", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const vmid = h.alloc();
  const msg = new TextEncoder().encode("kernel panic");
  h.ok(vmid, R.VM_SET_CRASH_MSG, { msg });
  assert.deepEqual(h.ok(HLOS, R.VM_GET_CRASH_MSG, { vmid }).reply.msg, msg);
  assert.equal(h.call(vmid, R.VM_GET_CRASH_MSG, { vmid }).error, E.DENIED);
  const long = new Uint8Array(8 + 196);
  new DataView(long.buffer).setUint16(0, 196, true);
  assert.equal(h.raw(vmid, R.VM_SET_CRASH_MSG, long).error, E.MSG_INVALID);
});

test("VM_GET_ID returns the image name as a NAME id in READY/RUNNING/PAUSED", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const vmid = h.alloc();
  assert.equal(h.call(HLOS, R.VM_GET_ID, { vmid }).error, E.VM_STATE);
  h.teardown(vmid);
  const r = h.ready();
  const ids = h.ok(r.vmid, R.VM_GET_ID, { vmid: 0 }).reply.ids as {
    id_type: number;
    id: Uint8Array;
  }[];
  assert.deepEqual(
    ids.map((i) => [i.id_type, new TextDecoder().decode(i.id)]),
    [[2, "test-guest"]],
  );
  const { vmid: anon } = h.ready(basicConfig({ imageName: undefined }));
  assert.deepEqual(h.ok(HLOS, R.VM_GET_ID, { vmid: anon }).reply.ids, []);
});

// ---- v16-only setup calls

test("VM_SET_BOOT_CONTEXT accepts X0–X15, PC 0 and SP 0 in READY, nothing else", () => {
  const h = new Harness();
  const { vmid } = h.ready();
  for (let i = 0; i < 16; i++)
    h.ok(HLOS, R.VM_SET_BOOT_CONTEXT, { vmid, reg_set: 0, reg_index: i, value: BigInt(i) });
  for (const [set, index] of [
    [0, 16],
    [1, 1],
    [2, 1],
    [3, 0],
  ]) {
    assert.equal(
      h.call(HLOS, R.VM_SET_BOOT_CONTEXT, { vmid, reg_set: set, reg_index: index, value: 0n })
        .error,
      E.ARGUMENT_INVALID,
      `set ${set} index ${index}`,
    );
  }
  h.ok(HLOS, R.VM_SET_BOOT_CONTEXT, { vmid, reg_set: 2, reg_index: 0, value: 0x9000n });
  h.ok(HLOS, R.VM_START, { vmid });
  const boot = h.hv.callsOf("startVcpus")[0]!.boot;
  assert.equal(boot.rax, 0n);
  assert.equal(boot.r15, 15n);
  assert.equal(boot.rsp, 0x9000n, "SP 0 overrides X6 (rsp) set earlier");
  assert.equal(
    h.call(HLOS, R.VM_SET_BOOT_CONTEXT, { vmid, reg_set: 1, reg_index: 0, value: 0n }).error,
    E.VM_STATE,
  );
});

test("VM_SET_DEMAND_PAGING takes a non-empty list of aligned, disjoint, non-wrapping ranges in INIT", () => {
  const h = new Harness();
  const vmid = h.alloc();
  const call = (ranges: { guest_phys_base: bigint; size: bigint }[]) =>
    h.call(HLOS, R.VM_SET_DEMAND_PAGING, { vmid, ranges }).error;
  assert.equal(call([{ guest_phys_base: 0n, size: 0x1000n }]), E.VM_STATE, "LOAD is too early");
  h.configImage(vmid, h.lendDtb(vmid));
  assert.equal(call([]), E.ARGUMENT_INVALID);
  assert.equal(call([{ guest_phys_base: 0x800n, size: 0x1000n }]), E.ARGUMENT_INVALID);
  assert.equal(call([{ guest_phys_base: 0x1000n, size: 0n }]), E.ARGUMENT_INVALID);
  assert.equal(
    call([{ guest_phys_base: 0xffff_ffff_ffff_f000n, size: 0x2000n }]),
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    call([
      { guest_phys_base: 0x1000n, size: 0x2000n },
      { guest_phys_base: 0x2000n, size: 0x1000n },
    ]),
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    call([{ guest_phys_base: 0xffff_ffff_ffff_f000n, size: 0x1000n }]),
    E.OK,
    "ends at 2^64",
  );
  assert.equal(
    call([
      { guest_phys_base: 0x10_0000n, size: 0x1000n },
      { guest_phys_base: 0x1000n, size: 0x1000n },
    ]),
    E.OK,
  );
  h.ok(HLOS, R.VM_INIT, { vmid });
  assert.deepEqual(h.hv.callsOf("createVm")[0]!.layout.demandPaging, [
    { base: 0x10_0000n, size: 0x1000n },
    { base: 0x1000n, size: 0x1000n },
  ]);
});

test("VM_SET_ADDRESS_LAYOUT's IMAGE range must hold the config-image parcel; FIRMWARE is recorded", () => {
  const h = new Harness();
  const vmid = h.alloc();
  h.configImage(vmid, h.lendDtb(vmid));
  const call = (range_id: number, base: bigint, size: bigint) =>
    h.call(HLOS, R.VM_SET_ADDRESS_LAYOUT, { vmid, range_id, base, size }).error;
  assert.equal(call(0, 0x123n, DTB_PARCEL_SIZE), E.ARGUMENT_INVALID, "unaligned");
  assert.equal(call(0, DTB_BASE, DTB_PARCEL_SIZE - 0x1000n), E.ARGUMENT_INVALID, "too small");
  assert.equal(call(0, 0n, DTB_PARCEL_SIZE), E.OK, "any guest address, independent of the host's");
  assert.equal(call(2, DTB_BASE, DTB_PARCEL_SIZE), E.ARGUMENT_INVALID);
  assert.equal(call(1, 0x123n, 0x1000n), E.ARGUMENT_INVALID);
  assert.equal(call(0, DTB_BASE - 0x1000n, DTB_PARCEL_SIZE + 0x2000n), E.OK);
  assert.equal(call(1, 0x20_0000n, 0x10_0000n), E.OK);
  h.ok(HLOS, R.VM_INIT, { vmid });
  assert.deepEqual(h.hv.callsOf("createVm")[0]!.layout.firmware, {
    base: 0x20_0000n,
    size: 0x10_0000n,
  });
});

test("VM_SET_TIME_BASE in INIT/READY replies with a zero hypervisor error word", () => {
  const h = new Harness();
  const vmid = h.alloc();
  const body = { vmid, time_base: 5n, sys_timer_ref: 6n };
  assert.equal(h.call(HLOS, R.VM_SET_TIME_BASE, body).error, E.VM_STATE);
  h.configImage(vmid, h.lendDtb(vmid));
  assert.deepEqual(
    [...(h.ok(HLOS, R.VM_SET_TIME_BASE, body).reply.data as Uint8Array)],
    [0, 0, 0, 0],
  );
});

test("VM_SET_FIRMWARE_MEM needs a parcel meant for the VM and a range inside it", () => {
  const h = new Harness();
  const vmid = h.alloc();
  h.configImage(vmid, h.lendDtb(vmid));
  const fw = h.ok(HLOS, R.MEM_LEND, lendReq(vmid, [{ base: 0x7000_0000n, size: 0x10000n }])).reply
    .mem_handle;
  const call = (fw_mp_handle: number, fw_offset: bigint, fw_size: bigint) =>
    h.call(HLOS, R.VM_SET_FIRMWARE_MEM, { vmid, fw_mp_handle, fw_offset, fw_size }).error;
  assert.equal(call(99, 0n, 0x1000n), E.MEM_INVALID);
  assert.equal(call(fw as number, 0x8000n, 0x9000n), E.ARGUMENT_INVALID);
  assert.equal(call(fw as number, 0n, 0n), E.ARGUMENT_INVALID);
  assert.equal(call(fw as number, 0x1000n, 0x8000n), E.OK);
});

// ---- console

test("console: a guest's writes reach the clients that opened its console; owner writes are input", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.running();
  const data = new TextEncoder().encode("hello\n");
  assert.deepEqual(
    h.ok(vmid, R.VM_CONSOLE_WRITE, { target: 0, data }).notes,
    [],
    "nobody opened it",
  );
  h.ok(HLOS, R.VM_CONSOLE_OPEN, { target: vmid });
  const w = h.ok(vmid, R.VM_CONSOLE_WRITE, { target: 0, data });
  assert.deepEqual(names(w.notes), ["VM_CONSOLE_CHARS->3"]);
  assert.deepEqual(w.notes[0]!.body, { from_vmid: vmid, data });
  const input = h.ok(HLOS, R.VM_CONSOLE_WRITE, { target: vmid, data });
  assert.deepEqual(names(input.notes), [`VM_CONSOLE_CHARS->${vmid}`]);
  assert.equal(input.notes[0]!.body.from_vmid, HLOS);
  h.ok(HLOS, R.VM_CONSOLE_FLUSH, { target: vmid });
  h.ok(HLOS, R.VM_CONSOLE_CLOSE, { target: vmid });
  assert.deepEqual(h.ok(vmid, R.VM_CONSOLE_WRITE, { target: vmid, data }).notes, []);
  assert.equal(
    h.call(vmid, R.VM_CONSOLE_OPEN, { target: HLOS }).error,
    E.DENIED,
    "a guest cannot read HLOS",
  );
  assert.equal(h.call(HLOS, R.VM_CONSOLE_OPEN, { target: 0x99 }).error, E.VMID_INVALID);
});

// ---- robustness

test("malformed payloads for every implemented call are MSG_INVALID and the RM keeps working", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.running();
  const ids = Object.values(R);
  const garbage = [
    new Uint8Array(1),
    new Uint8Array(3),
    new Uint8Array(7).fill(0xff),
    new Uint8Array(300).fill(0x41),
  ];
  for (const id of ids) {
    for (const g of garbage) {
      for (const from of [HLOS, vmid]) {
        const r = h.raw(from, id, g);
        assert.ok(
          r.error === E.MSG_INVALID || r.error === E.UNIMPLEMENTED,
          `0x${id.toString(16)} → ${r.error}`,
        );
      }
    }
  }
  assert.equal(statusOf(h, vmid), VmStatus.RUNNING);
  h.teardown(vmid);
  assert.deepEqual(h.hv.violations, []);
});

test("sequence numbers and message ids are echoed for every request, wrapping seq included", () => {
  const h = new Harness();
  for (const seq of [0, 1, 0xfffe, 0xffff]) {
    const out = h.rm.handle(HLOS, {
      type: 1,
      seq,
      msgId: R.VM_GET_VMID,
      payload: new Uint8Array(0),
    });
    assert.equal(out.length, 1);
    assert.equal(out[0]!.message.seq, seq);
    assert.equal(out[0]!.message.msgId, R.VM_GET_VMID);
  }
});

test("random payloads for every implemented call never throw, always get one reply, and the RM keeps working", () => {
  const ids = [...ADMISSION.keys()];
  const arb = fc.array(
    fc.record({
      id: fc.constantFrom(...ids),
      from: fc.constantFrom(HLOS, 0x80, 0x81, 0),
      bytes: fc.uint8Array({ maxLength: 80 }),
    }),
    { maxLength: 30 },
  );
  fc.assert(
    fc.property(arb, (calls) => {
      const h = new Harness({ link: [HLOS, 0x80, 0x81] });
      const { vmid } = h.running();
      for (const c of calls) h.raw(c.from, c.id, c.bytes); // raw() checks the one-reply rule
      h.drain();
      const again = h.running();
      h.teardown(again.vmid);
      assert.deepEqual(h.hv.violations, []);
      assert.ok(vmid >= 0x80);
    }),
    { numRuns: 60 },
  );
});

test("deallocating a VM that holds capabilities of another VM drops them and their interrupts", () => {
  const h = new Harness({ link: [HLOS, 0x80, 0x81] });
  const holder = h.alloc(); // stays in LOAD
  const { vmid } = h.running(
    basicConfig({ vdevices: [{ kind: "doorbell-source", name: "x", label: 1, peer: holder }] }),
  );
  const seen = h.ok(holder, R.VM_GET_HYP_RESOURCES, { vmid }).reply.entries as { virq: number }[];
  assert.deepEqual(
    seen.map((e) => e.virq),
    [32],
  );
  h.ok(HLOS, R.VM_DEALLOC_VMID, { vmid: holder });
  const snap = h.rm.snapshot();
  assert.deepEqual(
    snap.virqHolders.map((v) => v.holder),
    [HLOS],
  );
  assert.deepEqual(snap.vms.find((v) => v.vmid === vmid)!.peers, [HLOS]);
  assert.equal(h.alloc(), holder, "the VMID comes back");
  assert.deepEqual(
    h.ok(holder, R.VM_GET_HYP_RESOURCES, { vmid }).reply.entries,
    [],
    "with nothing of the old VM's",
  );
  h.teardown(vmid);
  assert.deepEqual(h.rm.snapshot().virqHolders, []);
});
