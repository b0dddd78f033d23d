import assert from "node:assert/strict";
import { test } from "node:test";
import { RequestId } from "../protocol/catalogue.js";
import { TransType, Vmid } from "../protocol/enums.js";
import { RmError } from "../protocol/rm-error.js";
import { MAX_PARCEL_SGL, Memparcels, rangesValid } from "./memparcels.js";
import { Notifier } from "./notifier.js";
import { RecordingHypervisor } from "./recording-hypervisor.js";
import { Harness, lendReq, names } from "./testing/harness.js";
import { VmTable } from "./vm-table.js";

const HLOS = Vmid.HLOS;
const R = RequestId;
const E = RmError;
const PAGE = 0x1000n;

function pages(n: number, at = 0x100_0000n, stride = 2n * PAGE): { base: bigint; size: bigint }[] {
  return Array.from({ length: n }, (_, i) => ({ base: at + BigInt(i) * stride, size: PAGE }));
}

function acceptReq(handle: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    mem_handle: handle,
    mem_type: 0,
    trans_type: TransType.LEND,
    flags: 0,
    label: 0,
    acl: [],
    sgl: [],
    map_vmid: 0,
    attrs: [],
    ...over,
  };
}

function twoGuests(): Harness {
  const h = new Harness({ link: [HLOS, 0x80, 0x81] });
  h.alloc();
  h.alloc();
  return h;
}

const lend = (h: Harness, req: Record<string, unknown>, id: number = R.MEM_LEND) =>
  h.call(HLOS, id, req);

// ---- creation rules

test("MEM_LEND returns sequential handles from 0", () => {
  const h = twoGuests();
  for (let i = 0; i < 3; i++) {
    assert.equal(
      lend(h, lendReq(0x80, pages(1, 0x100_0000n + BigInt(i) * 0x10_0000n))).reply.mem_handle,
      i,
    );
  }
});

test("a parcel needs at least one ACL entry besides the owner and at least one SGL entry", () => {
  const h = twoGuests();
  assert.equal(lend(h, lendReq(0x80, [])).error, E.ARGUMENT_INVALID);
  assert.equal(lend(h, lendReq(0x80, pages(1), { acl: [] })).error, E.ARGUMENT_INVALID);
  assert.equal(
    lend(h, lendReq(0x80, pages(1), { acl: [{ vmid: HLOS, rights: 7 }] }), R.MEM_SHARE).error,
    E.ARGUMENT_INVALID,
  );
});

test("more than 512 entries in any list is NORESOURCE; 512 is fine", () => {
  const h = twoGuests();
  assert.equal(lend(h, lendReq(0x80, pages(513))).error, E.NORESOURCE);
  assert.equal(lend(h, lendReq(0x80, pages(512))).error, E.OK);
  const acl = Array.from({ length: 513 }, (_, i) => ({ vmid: 0x80 + (i % 2), rights: 4 }));
  assert.equal(lend(h, lendReq(0x80, pages(1, 0x4000_0000n), { acl })).error, E.NORESOURCE);
  const attrs = Array.from({ length: 513 }, () => ({ attr: 0, vmid: 0x80 }));
  assert.equal(lend(h, lendReq(0x80, pages(1, 0x4000_0000n), { attrs })).error, E.NORESOURCE);
});

test("SHARE must list the owner, LEND and DONATE must not", () => {
  const h = twoGuests();
  const withOwner = {
    acl: [
      { vmid: HLOS, rights: 7 },
      { vmid: 0x80, rights: 6 },
    ],
  };
  assert.equal(
    lend(h, lendReq(0x80, pages(1, 0x100_0000n), withOwner), R.MEM_LEND).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    lend(h, lendReq(0x80, pages(1, 0x100_0000n), withOwner), R.MEM_DONATE).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    lend(h, lendReq(0x80, pages(1, 0x100_0000n)), R.MEM_SHARE).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(lend(h, lendReq(0x80, pages(1, 0x100_0000n), withOwner), R.MEM_SHARE).error, E.OK);
  assert.equal(lend(h, lendReq(0x80, pages(1, 0x200_0000n)), R.MEM_LEND).error, E.OK);
});

test("DONATE takes exactly one ACL entry with full rights", () => {
  const h = twoGuests();
  assert.equal(
    lend(h, lendReq(0x80, pages(1), { acl: [{ vmid: 0x80, rights: 6 }] }), R.MEM_DONATE).error,
    E.ARGUMENT_INVALID,
  );
  const two = {
    acl: [
      { vmid: 0x80, rights: 7 },
      { vmid: 0x81, rights: 7 },
    ],
  };
  assert.equal(lend(h, lendReq(0x80, pages(1), two), R.MEM_DONATE).error, E.ARGUMENT_INVALID);
  assert.equal(lend(h, lendReq(0x80, pages(1)), R.MEM_DONATE).error, E.OK);
});

test("rights must be R, RX, RW or RWX, and IO memory may not be executable", () => {
  const h = twoGuests();
  for (const rights of [0, 1, 2, 3]) {
    assert.equal(
      lend(h, lendReq(0x80, pages(1), { acl: [{ vmid: 0x80, rights }] })).error,
      E.ARGUMENT_INVALID,
    );
  }
  assert.equal(
    lend(h, lendReq(0x80, pages(1), { acl: [{ vmid: 0x80, rights: 8 | 4 }] })).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    lend(h, lendReq(0x80, pages(1), { mem_type: 1, acl: [{ vmid: 0x80, rights: 5 }] })).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    lend(h, lendReq(0x80, pages(1), { mem_type: 1, acl: [{ vmid: 0x80, rights: 6 }] })).error,
    E.OK,
  );
  assert.equal(
    lend(h, lendReq(0x80, pages(1, 0x900_0000n), { mem_type: 2 })).error,
    E.ARGUMENT_INVALID,
  );
});

test("duplicate ACL VMIDs are ARGUMENT_INVALID; an ACL VMID that names no VM is VMID_INVALID", () => {
  const h = twoGuests();
  const dup = {
    acl: [
      { vmid: 0x80, rights: 4 },
      { vmid: 0x80, rights: 6 },
    ],
  };
  assert.equal(lend(h, lendReq(0x80, pages(1), dup)).error, E.ARGUMENT_INVALID);
  assert.equal(lend(h, lendReq(0x99, pages(1))).error, E.VMID_INVALID);
  assert.equal(lend(h, lendReq(Vmid.RM, pages(1))).error, E.VMID_INVALID);
});

test("SGL entries must be page aligned, non-empty and not overlap", () => {
  const h = twoGuests();
  for (const sgl of [
    [{ base: 0x1800n, size: PAGE }],
    [{ base: 0x1000n, size: 0x800n }],
    [{ base: 0x1000n, size: 0n }],
    [
      { base: 0x1000n, size: 0x2000n },
      { base: 0x2000n, size: PAGE },
    ],
    [{ base: 0xffff_ffff_ffff_f000n, size: 0x2000n }],
  ]) {
    assert.equal(lend(h, lendReq(0x80, sgl)).error, E.ARGUMENT_INVALID);
  }
});

test("attribute entries must name ACL VMIDs once each with a known attribute", () => {
  const h = twoGuests();
  assert.equal(
    lend(h, lendReq(0x80, pages(1), { attrs: [{ attr: 4, vmid: 0x80 }] })).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    lend(h, lendReq(0x80, pages(1), { attrs: [{ attr: 1, vmid: 0x81 }] })).error,
    E.ARGUMENT_INVALID,
  );
  const twice = {
    attrs: [
      { attr: 1, vmid: 0x80 },
      { attr: 2, vmid: 0x80 },
    ],
  };
  assert.equal(lend(h, lendReq(0x80, pages(1), twice)).error, E.ARGUMENT_INVALID);
  assert.equal(lend(h, lendReq(0x80, pages(1), { attrs: [{ attr: 3, vmid: 0x80 }] })).error, E.OK);
});

test("an owner may hold 64 parcels; the 65th is DENIED until one is reclaimed", () => {
  const h = twoGuests();
  for (let i = 0; i < 64; i++)
    assert.equal(lend(h, lendReq(0x80, pages(1, BigInt(i + 1) * 0x10_0000n))).error, E.OK);
  assert.equal(lend(h, lendReq(0x80, pages(1, 0x8000_0000n))).error, E.DENIED);
  h.ok(0x80, R.MEM_LEND, lendReq(0x81, pages(1)));
  h.ok(HLOS, R.MEM_RECLAIM, { mem_handle: 10, flags: 0 });
  assert.equal(
    lend(h, lendReq(0x80, pages(1, 0x8000_0000n))).reply.mem_handle,
    65,
    "handles keep counting up",
  );
});

function bareStore(firstHandle: number): { create: (base: bigint) => number; store: Memparcels } {
  const vms = new VmTable();
  vms.create(0x80, HLOS);
  const store = new Memparcels(
    { vms, hypervisor: new RecordingHypervisor(), notifier: new Notifier(vms, new Set()) },
    firstHandle,
  );
  const create = (base: bigint) => {
    const r = store.create(HLOS, TransType.LEND, {
      mem_type: 0,
      flags: 0,
      label: 0,
      acl: [{ vmid: 0x80, rights: 7 }],
      sgl: [{ base, size: PAGE }],
      attrs: [],
    });
    assert.equal(r.error, E.OK);
    return new DataView(r.payload!.buffer).getUint32(0, true);
  };
  return { create, store };
}

test("handles skip 0xFFFFFFFF when the counter wraps", () => {
  const { create } = bareStore(0xffff_fffe);
  assert.deepEqual([create(0x1000n), create(0x2000n), create(0x3000n)], [0xffff_fffe, 0, 1]);
  assert.equal(bareStore(0xffff_ffff).create(0x1000n), 0, "0xFFFFFFFF is never a handle");
});

test("the handle counter skips a handle that is still live after wrapping", () => {
  const { create } = bareStore(0xffff_ffff);
  assert.equal(create(0x1000n), 0); // handle 0 stays live
  const again = bareStore(0);
  again.create(0x1000n);
  again.create(0x2000n);
  // Send the counter back to 0, as if it had gone all the way round.
  (again.store as unknown as { nextHandle: number }).nextHandle = 0;
  assert.equal(again.create(0x3000n), 2, "0 and 1 are live, so 2");
});

// ---- append

test("MEM_APPEND completes an APPEND parcel; only the owner, only while unfinished", () => {
  const h = twoGuests();
  const handle = lend(h, lendReq(0x80, pages(2), { flags: 2 })).reply.mem_handle as number;
  assert.equal(h.call(0x80, R.MEM_ACCEPT, acceptReq(handle)).error, E.DENIED, "not finished yet");
  assert.equal(
    h.call(0x80, R.MEM_APPEND, { mem_handle: handle, flags: 1, sgl: pages(1, 0x200_0000n) }).error,
    E.DENIED,
  );
  assert.equal(
    h.call(HLOS, R.MEM_APPEND, { mem_handle: 77, flags: 1, sgl: pages(1, 0x200_0000n) }).error,
    E.HANDLE_INVALID,
  );
  assert.equal(
    h.call(HLOS, R.MEM_APPEND, { mem_handle: handle, flags: 0, sgl: pages(1, 0x100_0000n) }).error,
    E.ARGUMENT_INVALID,
    "overlaps",
  );
  assert.equal(
    h.call(HLOS, R.MEM_APPEND, { mem_handle: handle, flags: 0, sgl: [] }).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    h.call(HLOS, R.MEM_APPEND, { mem_handle: handle, flags: 4, sgl: pages(1, 0x200_0000n) }).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    h.call(HLOS, R.MEM_APPEND, { mem_handle: handle, flags: 0, sgl: pages(513, 0x200_0000n) })
      .error,
    E.NORESOURCE,
  );
  h.ok(HLOS, R.MEM_APPEND, { mem_handle: handle, flags: 0, sgl: pages(1, 0x200_0000n) });
  h.ok(HLOS, R.MEM_APPEND, { mem_handle: handle, flags: 1, sgl: pages(1, 0x300_0000n) });
  assert.equal(
    h.call(HLOS, R.MEM_APPEND, { mem_handle: handle, flags: 1, sgl: pages(1, 0x400_0000n) }).error,
    E.DENIED,
  );
  const accepted = h.ok(0x80, R.MEM_ACCEPT, acceptReq(handle));
  assert.equal((accepted.reply.sgl as unknown[]).length, 4);
});

test("a parcel can grow through MEM_APPEND only up to what one MEM_ACCEPT reply can carry", () => {
  const h = twoGuests();
  const handle = lend(h, lendReq(0x80, pages(512), { flags: 2 })).reply.mem_handle as number;
  h.ok(HLOS, R.MEM_APPEND, {
    mem_handle: handle,
    flags: 0,
    sgl: pages(MAX_PARCEL_SGL - 512, 0x4000_0000n),
  });
  assert.equal(
    h.call(HLOS, R.MEM_APPEND, { mem_handle: handle, flags: 1, sgl: pages(1, 0x8000_0000n) }).error,
    E.NORESOURCE,
  );
  h.ok(HLOS, R.MEM_APPEND, { mem_handle: handle, flags: 1, sgl: [] });
  const accepted = h.ok(0x80, R.MEM_ACCEPT, acceptReq(handle));
  assert.equal(
    (accepted.reply.sgl as unknown[]).length,
    MAX_PARCEL_SGL,
    "and the reply still fits one message",
  );
});

// ---- accept / release / reclaim

test("MEM_ACCEPT by a target: identity addresses in the reply, MEM_ACCEPTED to the owner", () => {
  const h = twoGuests();
  const sgl = pages(2);
  const handle = lend(h, lendReq(0x80, sgl, { label: 9 })).reply.mem_handle as number;
  const r = h.ok(0x80, R.MEM_ACCEPT, acceptReq(handle, { flags: 4, label: 9 }));
  assert.deepEqual(r.reply, { flags: 0, sgl });
  assert.deepEqual(names(r.notes), ["MEM_ACCEPTED->3"]);
  assert.deepEqual(r.notes[0]!.body, { mem_handle: handle, vmid: 0x80, mem_info_tag: 0 });
  assert.equal(h.hv.calls.length, 0, "a VM without hypervisor objects is mapped at VM_START");
  assert.equal(h.call(0x80, R.MEM_ACCEPT, acceptReq(handle)).error, E.MEM_INUSE);
});

test("MEM_ACCEPT checks who accepts, what is accepted and the validation flags", () => {
  const h = twoGuests();
  const handle = lend(h, lendReq(0x80, pages(1), { label: 9 })).reply.mem_handle as number;
  assert.equal(h.call(0x80, R.MEM_ACCEPT, acceptReq(99)).error, E.HANDLE_INVALID);
  assert.equal(h.call(0x81, R.MEM_ACCEPT, acceptReq(handle)).error, E.DENIED);
  assert.equal(
    h.call(HLOS, R.MEM_ACCEPT, acceptReq(handle)).error,
    E.DENIED,
    "the owner is no target",
  );
  assert.equal(
    h.call(0x80, R.MEM_ACCEPT, acceptReq(handle, { trans_type: TransType.SHARE })).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    h.call(0x80, R.MEM_ACCEPT, acceptReq(handle, { mem_type: 1 })).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    h.call(0x80, R.MEM_ACCEPT, acceptReq(handle, { flags: 4, label: 8 })).error,
    E.VALIDATE_FAILED,
  );
  assert.equal(
    h.call(0x80, R.MEM_ACCEPT, acceptReq(handle, { flags: 1 })).error,
    E.VALIDATE_FAILED,
    "not sanitized",
  );
  assert.equal(
    h.call(0x80, R.MEM_ACCEPT, acceptReq(handle, { flags: 2, acl: [{ vmid: 0x80, rights: 6 }] }))
      .error,
    E.VALIDATE_FAILED,
  );
  assert.equal(
    h.call(0x80, R.MEM_ACCEPT, acceptReq(handle, { flags: 8 })).error,
    E.ARGUMENT_INVALID,
    "MAP_OTHER",
  );
  assert.equal(
    h.call(0x80, R.MEM_ACCEPT, acceptReq(handle, { flags: 64 })).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(
    h.call(0x80, R.MEM_ACCEPT, acceptReq(handle, { sgl: pages(1, 0x4000_0000n) })).error,
    E.ARGUMENT_INVALID,
    "identity IPA only",
  );
  const ok = h.ok(
    0x80,
    R.MEM_ACCEPT,
    acceptReq(handle, {
      flags: 2 | 4 | 128,
      label: 9,
      acl: [{ vmid: 0x80, rights: 7 }],
      sgl: pages(1),
    }),
  );
  assert.deepEqual(ok.reply, {}, "a request that names its SGL gets a standard reply");
});

test("MEM_ACCEPT into a VM that has hypervisor objects maps the parcel at once", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.running();
  const handle = h.ok(
    HLOS,
    R.MEM_SHARE,
    lendReq(vmid, pages(1, 0x7000_0000n), {
      acl: [
        { vmid: HLOS, rights: 7 },
        { vmid, rights: 6 },
      ],
    }),
  ).reply.mem_handle as number;
  h.hv.failNext("mapParcel", E.MAP_FAILED);
  assert.equal(
    h.call(vmid, R.MEM_ACCEPT, acceptReq(handle, { trans_type: TransType.SHARE })).error,
    E.MAP_FAILED,
  );
  h.ok(vmid, R.MEM_ACCEPT, acceptReq(handle, { trans_type: TransType.SHARE }));
  const m = h.hv.callsOf("mapParcel").at(-1)!;
  assert.equal(m.vmid, vmid);
  assert.equal(m.parcel.rights, 6);
  assert.equal(h.hv.vms.get(vmid)!.mapped.has(handle), true);
});

test("MEM_RELEASE by a target unmaps it and tells the owner; released is final", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.running();
  const handle = h.ok(HLOS, R.MEM_LEND, lendReq(vmid, pages(1, 0x7000_0000n))).reply
    .mem_handle as number;
  assert.equal(
    h.call(HLOS, R.MEM_RELEASE, { mem_handle: handle, flags: 0 }).error,
    E.DENIED,
    "owner is no target",
  );
  assert.equal(h.call(vmid, R.MEM_RELEASE, { mem_handle: 99, flags: 0 }).error, E.HANDLE_INVALID);
  h.ok(vmid, R.MEM_ACCEPT, acceptReq(handle));
  assert.equal(h.call(HLOS, R.MEM_RECLAIM, { mem_handle: handle, flags: 0 }).error, E.MEM_INUSE);
  const r = h.ok(vmid, R.MEM_RELEASE, { mem_handle: handle, flags: 0 });
  assert.deepEqual(names(r.notes), ["MEM_RELEASED->3"]);
  assert.equal(h.hv.vms.get(vmid)!.mapped.has(handle), false);
  assert.equal(h.call(vmid, R.MEM_RELEASE, { mem_handle: handle, flags: 0 }).error, E.MEM_RELEASED);
  assert.equal(h.call(vmid, R.MEM_ACCEPT, acceptReq(handle)).error, E.MEM_RELEASED);
  h.ok(HLOS, R.MEM_RECLAIM, { mem_handle: handle, flags: 0 });
  assert.equal(
    h.call(HLOS, R.MEM_RECLAIM, { mem_handle: handle, flags: 0 }).error,
    E.HANDLE_INVALID,
  );
});

test("a target may decline a pending parcel with MEM_RELEASE", () => {
  const h = twoGuests();
  const handle = lend(h, lendReq(0x80, pages(1))).reply.mem_handle as number;
  assert.deepEqual(names(h.ok(0x80, R.MEM_RELEASE, { mem_handle: handle, flags: 0 }).notes), [
    "MEM_RELEASED->3",
  ]);
});

test("MEM_RECLAIM by anyone but the owner is DENIED; unknown flags are ARGUMENT_INVALID", () => {
  const h = twoGuests();
  const handle = lend(h, lendReq(0x80, pages(1))).reply.mem_handle as number;
  assert.equal(h.call(0x80, R.MEM_RECLAIM, { mem_handle: handle, flags: 0 }).error, E.DENIED);
  assert.equal(
    h.call(HLOS, R.MEM_RECLAIM, { mem_handle: handle, flags: 2 }).error,
    E.ARGUMENT_INVALID,
  );
  assert.equal(h.raw(HLOS, R.MEM_RECLAIM, new Uint8Array(4)).error, E.MSG_INVALID);
  h.ok(HLOS, R.MEM_RECLAIM, { mem_handle: handle, flags: 1 });
});

test("memory calls from a VMID the RM does not know are DENIED", () => {
  const h = new Harness({ link: [HLOS, 0x85] });
  assert.equal(h.call(0x85, R.MEM_LEND, lendReq(HLOS, pages(1))).error, E.DENIED);
});

// ---- notify

test("MEM_NOTIFY SHARED: MEM_SHARED to a target that is not READY, with sizes but no addresses", () => {
  const h = twoGuests();
  const handle = lend(h, lendReq(0x80, pages(2), { label: 5, flags: 1 })).reply
    .mem_handle as number;
  const r = h.ok(HLOS, R.MEM_NOTIFY, {
    mem_handle: handle,
    flags: 1,
    mem_info_tag: 42,
    vmids: [{ vmid: 0x80 }],
  });
  assert.deepEqual(names(r.notes), ["MEM_SHARED->128"]);
  assert.deepEqual(r.notes[0]!.body, {
    mem_handle: handle,
    mem_type: 0,
    trans_type: TransType.LEND,
    flags: 1,
    owner_vmid: HLOS,
    label: 5,
    mem_info_tag: 42,
    acl: [{ vmid: 0x80, rights: 7 }],
    region_sizes: [{ size: PAGE }, { size: PAGE }],
    attrs: [],
  });
  const acc = h.ok(0x80, R.MEM_ACCEPT, acceptReq(handle));
  assert.equal(acc.notes[0]!.body.mem_info_tag, 42, "the tag from MEM_NOTIFY comes back");
});

test("MEM_NOTIFY SHARED auto-accepts for a READY target and tells the owner", () => {
  const h = new Harness({ link: [HLOS, 0x80] });
  const { vmid } = h.ready();
  const handle = h.ok(HLOS, R.MEM_LEND, lendReq(vmid, pages(1, 0x7000_0000n))).reply
    .mem_handle as number;
  const r = h.ok(HLOS, R.MEM_NOTIFY, {
    mem_handle: handle,
    flags: 1,
    mem_info_tag: 1,
    vmids: [{ vmid }],
  });
  assert.deepEqual(names(r.notes), ["MEM_ACCEPTED->3"]);
  assert.equal(h.hv.vms.get(vmid)!.mapped.has(handle), true);
  const h2 = new Harness({ link: [HLOS, 0x80] });
  const v2 = h2.ready().vmid;
  const p2 = h2.ok(HLOS, R.MEM_LEND, lendReq(v2, pages(1, 0x7000_0000n))).reply
    .mem_handle as number;
  h2.hv.failNext("mapParcel");
  const failed = h2.ok(HLOS, R.MEM_NOTIFY, {
    mem_handle: p2,
    flags: 1,
    mem_info_tag: 1,
    vmids: [{ vmid: v2 }],
  });
  assert.deepEqual(names(failed.notes), ["MEM_RELEASED->3"]);
});

test("MEM_NOTIFY rules: owner only for SHARED/RECALL, named VMs must be targets, one flag", () => {
  const h = twoGuests();
  const handle = lend(h, lendReq(0x80, pages(1))).reply.mem_handle as number;
  const n = (from: number, flags: number, vmids?: { vmid: number }[]) =>
    h.call(from, R.MEM_NOTIFY, {
      mem_handle: handle,
      flags,
      mem_info_tag: 0,
      ...(vmids ? { vmids } : {}),
    }).error;
  assert.equal(n(0x80, 1, [{ vmid: 0x80 }]), E.DENIED);
  assert.equal(n(HLOS, 1, [{ vmid: 0x81 }]), E.ARGUMENT_INVALID);
  assert.equal(n(HLOS, 1, []), E.ARGUMENT_INVALID);
  assert.equal(n(HLOS, 1), E.ARGUMENT_INVALID);
  assert.equal(n(HLOS, 3, [{ vmid: 0x80 }]), E.ARGUMENT_INVALID);
  assert.equal(n(HLOS, 0, [{ vmid: 0x80 }]), E.ARGUMENT_INVALID);
  assert.equal(n(0x81, 4), E.DENIED, "ACCEPTED only from a target");
  assert.equal(n(0x80, 4), E.OK);
  assert.equal(n(HLOS, 8, [{ vmid: 0x80 }]), E.OK);
  assert.equal(
    h.call(HLOS, R.MEM_NOTIFY, {
      mem_handle: 1234,
      flags: 1,
      mem_info_tag: 0,
      vmids: [{ vmid: 0x80 }],
    }).error,
    E.HANDLE_INVALID,
  );
});

test("MEM_NOTIFY RECALL reaches the named targets; RELEASED/ACCEPTED from a target reach the owner", () => {
  const h = twoGuests();
  const handle = lend(h, lendReq(0x80, pages(1))).reply.mem_handle as number;
  const recall = h.ok(HLOS, R.MEM_NOTIFY, {
    mem_handle: handle,
    flags: 8,
    mem_info_tag: 7,
    vmids: [{ vmid: 0x80 }],
  });
  assert.deepEqual(names(recall.notes), ["MEM_RECALL->128"]);
  assert.deepEqual(recall.notes[0]!.body, { mem_handle: handle, mem_info_tag: 7 });
  const rel = h.ok(0x80, R.MEM_NOTIFY, { mem_handle: handle, flags: 2, mem_info_tag: 9 });
  assert.deepEqual(names(rel.notes), ["MEM_RELEASED->3"]);
  assert.equal(rel.notes[0]!.body.mem_info_tag, 9);
});

// ---- helpers

test("rangesValid() accepts disjoint aligned ranges in any order, also against existing ones", () => {
  assert.equal(
    rangesValid([
      { base: 0x3000n, size: PAGE },
      { base: 0x1000n, size: PAGE },
    ]),
    true,
  );
  assert.equal(
    rangesValid([{ base: 0x1000n, size: PAGE }], [{ base: 0x1000n, size: PAGE }]),
    false,
  );
  assert.equal(
    rangesValid([{ base: 0x2000n, size: PAGE }], [{ base: 0x1000n, size: PAGE }]),
    true,
    "adjacent",
  );
  assert.equal(rangesValid([]), true);
});
