import { NotificationId } from "../protocol/catalogue.js";
import {
  AclRights,
  MAX_LIST_ENTRIES,
  MAX_PARCELS_PER_OWNER,
  MEM_HANDLE_INVALID,
  MemAcceptFlags,
  MemAppendFlags,
  MemAttr,
  MemFlags,
  MemNotifyFlags,
  MemType,
  TransType,
  VmStatus,
} from "../protocol/enums.js";
import { RM_MAX_PAYLOAD } from "../protocol/header.js";
import type {
  MemAcceptReq,
  MemAppendReq,
  MemLendReq,
  MemNotifyReq,
  MemReclaimReq,
} from "../protocol/payloads.js";
import {
  type AclEntry,
  type AttrEntry,
  MemAcceptReply,
  MemHandleReply,
  MemOwnerNotice,
  MemRecallPayload,
  MemSharedPayload,
  type SglEntry,
} from "../protocol/payloads.js";
import { RmError } from "../protocol/rm-error.js";
import type { Decoded } from "../protocol/struct.js";
import type { HypervisorPort, ParcelMapping } from "./hypervisor.js";
import type { Notifier } from "./notifier.js";
import { type CallResult, fail, OK, okWith } from "./notifier.js";
import type { Outbound } from "./types.js";
import type { VmTable } from "./vm-table.js";

/**
 * Memory parcels (rm-protocol.md §3.4). A parcel is memory an owner lends, shares or donates to
 * the VMs in its ACL ("targets"; for SHARE the owner is in the ACL too but is not a target).
 * Each target moves pending → accepted → released; released is final, so a VMID that is freed
 * and allocated again can never accept a parcel meant for the VM that had it before.
 *
 * tsvisor address rule: SGL addresses are the owner's physical addresses, and an accepted
 * parcel appears in the target at the same addresses (identity IPA).
 */

export const PAGE_SIZE = 4096n;
const U64_LIMIT = 1n << 64n;

/**
 * Most SGL entries one parcel may collect through MEM_APPEND: what a MEM_ACCEPT reply can carry
 * (u32 error, u16 count, u8 flags, u8 0, 16 bytes per entry) in one RM message.
 */
export const MAX_PARCEL_SGL = Math.floor((RM_MAX_PAYLOAD - 8) / 16);

export type TargetState = "pending" | "accepted" | "released";

export interface ParcelTarget {
  readonly vmid: number;
  readonly rights: number;
  state: TargetState;
  /** The hypervisor port maps the parcel into this target. */
  mapped: boolean;
}

export interface Parcel {
  readonly handle: number;
  readonly owner: number;
  readonly transType: number;
  readonly memType: number;
  readonly sanitized: boolean;
  readonly label: number;
  readonly acl: readonly AclEntry[];
  readonly attrs: readonly AttrEntry[];
  readonly sgl: SglEntry[];
  /** False while MEM_APPEND chunks are still expected. */
  finished: boolean;
  memInfoTag: number;
  readonly targets: Map<number, ParcelTarget>;
}

type LendReq = Decoded<typeof MemLendReq>;
type AppendReq = Decoded<typeof MemAppendReq>;
type AcceptReq = Decoded<typeof MemAcceptReq>;
type ReclaimReq = Decoded<typeof MemReclaimReq>;
type NotifyReq = Decoded<typeof MemNotifyReq>;

const VALID_RIGHTS: ReadonlySet<number> = new Set([
  AclRights.R,
  AclRights.R | AclRights.X,
  AclRights.R | AclRights.W,
  AclRights.R | AclRights.W | AclRights.X,
]);
const FULL_RIGHTS = AclRights.R | AclRights.W | AclRights.X;
const ACCEPT_FLAGS_KNOWN =
  MemAcceptFlags.VALIDATE_SANITIZED |
  MemAcceptFlags.VALIDATE_ACL_ATTR |
  MemAcceptFlags.VALIDATE_LABEL |
  MemAcceptFlags.MAP_OTHER |
  MemAcceptFlags.MAP_CONTIGUOUS |
  MemAcceptFlags.SANITIZE |
  MemAcceptFlags.DONE;

export function parcelSize(p: Parcel): bigint {
  let n = 0n;
  for (const e of p.sgl) n += e.size;
  return n;
}

/** Page aligned, non-empty, non-wrapping, and not overlapping each other or `existing`. */
export function rangesValid(
  ranges: readonly { readonly base: bigint; readonly size: bigint }[],
  existing: readonly { readonly base: bigint; readonly size: bigint }[] = [],
): boolean {
  for (const r of ranges) {
    if (r.size === 0n || r.base % PAGE_SIZE !== 0n || r.size % PAGE_SIZE !== 0n) return false;
    if (r.base + r.size > U64_LIMIT) return false;
  }
  const all = [...existing, ...ranges].sort((a, b) =>
    a.base < b.base ? -1 : a.base > b.base ? 1 : 0,
  );
  for (let i = 1; i < all.length; i++) {
    const prev = all[i - 1]!;
    if (prev.base + prev.size > all[i]!.base) return false;
  }
  return true;
}

export interface ParcelDeps {
  readonly vms: VmTable;
  readonly hypervisor: HypervisorPort;
  readonly notifier: Notifier;
}

export class Memparcels {
  private readonly parcels = new Map<number, Parcel>();
  private nextHandle: number;

  /** `firstHandle` lets tests start the handle counter near the 32-bit wrap. */
  constructor(
    private readonly deps: ParcelDeps,
    firstHandle = 0,
  ) {
    this.nextHandle = firstHandle >>> 0;
  }

  get(handle: number): Parcel | undefined {
    return this.parcels.get(handle);
  }

  all(): IterableIterator<Parcel> {
    return this.parcels.values();
  }

  countOwnedBy(owner: number): number {
    let n = 0;
    for (const p of this.parcels.values()) if (p.owner === owner) n++;
    return n;
  }

  /** The target entry of `vmid` in a finished parcel, if the parcel is meant for it and alive. */
  usableBy(handle: number, vmid: number): Parcel | undefined {
    const p = this.parcels.get(handle);
    const t = p?.targets.get(vmid);
    if (!p || !t || !p.finished || t.state === "released") return undefined;
    return p;
  }

  // ---- MEM_LEND / MEM_SHARE / MEM_DONATE

  create(caller: number, transType: number, req: LendReq): CallResult {
    if (
      req.acl.length > MAX_LIST_ENTRIES ||
      req.sgl.length > MAX_LIST_ENTRIES ||
      req.attrs.length > MAX_LIST_ENTRIES
    ) {
      return fail(RmError.NORESOURCE);
    }
    const others = req.acl.filter((a) => a.vmid !== caller);
    if (others.length === 0 || req.sgl.length === 0) return fail(RmError.ARGUMENT_INVALID);
    if (req.mem_type !== MemType.NORMAL && req.mem_type !== MemType.IO)
      return fail(RmError.ARGUMENT_INVALID);
    if ((req.flags & ~(MemFlags.SANITIZE | MemFlags.APPEND)) !== 0)
      return fail(RmError.ARGUMENT_INVALID);
    const aclError = this.checkAcl(caller, transType, req.mem_type, req.acl);
    if (aclError !== RmError.OK) return fail(aclError);
    if (!attrsValid(req.attrs, req.acl)) return fail(RmError.ARGUMENT_INVALID);
    if (!rangesValid(req.sgl)) return fail(RmError.ARGUMENT_INVALID);
    if (this.countOwnedBy(caller) >= MAX_PARCELS_PER_OWNER) return fail(RmError.DENIED);

    const handle = this.allocateHandle();
    const targets = new Map<number, ParcelTarget>();
    for (const a of others)
      targets.set(a.vmid, { vmid: a.vmid, rights: a.rights, state: "pending", mapped: false });
    this.parcels.set(handle, {
      handle,
      owner: caller,
      transType,
      memType: req.mem_type,
      sanitized: (req.flags & MemFlags.SANITIZE) !== 0,
      label: req.label,
      acl: req.acl.map((a) => ({ vmid: a.vmid, rights: a.rights })),
      attrs: req.attrs.map((a) => ({ attr: a.attr, vmid: a.vmid })),
      sgl: req.sgl.map((e) => ({ base: e.base, size: e.size })),
      finished: (req.flags & MemFlags.APPEND) === 0,
      memInfoTag: 0,
      targets,
    });
    return okWith(MemHandleReply, { mem_handle: handle });
  }

  private checkAcl(
    caller: number,
    transType: number,
    memType: number,
    acl: readonly AclEntry[],
  ): number {
    const seen = new Set<number>();
    for (const a of acl) {
      if (seen.has(a.vmid)) return RmError.ARGUMENT_INVALID;
      seen.add(a.vmid);
      if (!VALID_RIGHTS.has(a.rights)) return RmError.ARGUMENT_INVALID;
      if (memType === MemType.IO && (a.rights & AclRights.X) !== 0) return RmError.ARGUMENT_INVALID;
    }
    const ownerListed = seen.has(caller);
    if (transType === TransType.SHARE ? !ownerListed : ownerListed) return RmError.ARGUMENT_INVALID;
    if (transType === TransType.DONATE && (acl.length !== 1 || acl[0]!.rights !== FULL_RIGHTS)) {
      return RmError.ARGUMENT_INVALID;
    }
    for (const a of acl) {
      if (!this.deps.vms.get(a.vmid)) return RmError.VMID_INVALID;
    }
    return RmError.OK;
  }

  /** Sequential from 0, skipping live handles and the invalid handle 0xFFFFFFFF. */
  private allocateHandle(): number {
    for (;;) {
      const h = this.nextHandle;
      this.nextHandle = (this.nextHandle + 1) >>> 0;
      if (h !== MEM_HANDLE_INVALID && !this.parcels.has(h)) return h;
    }
  }

  // ---- MEM_APPEND

  append(caller: number, req: AppendReq): CallResult {
    const p = this.parcels.get(req.mem_handle);
    if (!p) return fail(RmError.HANDLE_INVALID);
    if (p.owner !== caller || p.finished) return fail(RmError.DENIED);
    if ((req.flags & ~MemAppendFlags.END) !== 0) return fail(RmError.ARGUMENT_INVALID);
    if (req.sgl.length > MAX_LIST_ENTRIES) return fail(RmError.NORESOURCE);
    const end = (req.flags & MemAppendFlags.END) !== 0;
    // An empty chunk only makes sense as the END marker of a parcel that is already full.
    if ((req.sgl.length === 0 && !end) || !rangesValid(req.sgl, p.sgl))
      return fail(RmError.ARGUMENT_INVALID);
    if (p.sgl.length + req.sgl.length > MAX_PARCEL_SGL) return fail(RmError.NORESOURCE);
    for (const e of req.sgl) p.sgl.push({ base: e.base, size: e.size });
    if (end) p.finished = true;
    return OK;
  }

  // ---- MEM_ACCEPT

  accept(out: Outbound[], caller: number, req: AcceptReq): CallResult {
    const p = this.parcels.get(req.mem_handle);
    if (!p) return fail(RmError.HANDLE_INVALID);
    const t = p.targets.get(caller);
    if (!t || !p.finished) return fail(RmError.DENIED);
    if (t.state === "released") return fail(RmError.MEM_RELEASED);
    if (t.state === "accepted") return fail(RmError.MEM_INUSE);
    if (req.mem_type !== p.memType || req.trans_type !== p.transType)
      return fail(RmError.ARGUMENT_INVALID);
    if ((req.flags & ~ACCEPT_FLAGS_KNOWN) !== 0 || (req.flags & MemAcceptFlags.MAP_OTHER) !== 0) {
      return fail(RmError.ARGUMENT_INVALID);
    }
    if ((req.flags & MemAcceptFlags.VALIDATE_SANITIZED) !== 0 && !p.sanitized) {
      return fail(RmError.VALIDATE_FAILED);
    }
    if ((req.flags & MemAcceptFlags.VALIDATE_LABEL) !== 0 && req.label !== p.label) {
      return fail(RmError.VALIDATE_FAILED);
    }
    if (
      (req.flags & MemAcceptFlags.VALIDATE_ACL_ATTR) !== 0 &&
      !(
        sameEntries(req.acl, p.acl, (a) => `${a.vmid}:${a.rights}`) &&
        sameEntries(req.attrs, p.attrs, (a) => `${a.vmid}:${a.attr}`)
      )
    ) {
      return fail(RmError.VALIDATE_FAILED);
    }
    // Identity IPA: a target may only ask for the addresses the owner named.
    if (req.sgl.length > 0 && !sameSgl(req.sgl, p.sgl)) return fail(RmError.ARGUMENT_INVALID);
    const err = this.acceptFor(p, t);
    if (err !== RmError.OK) return fail(err);
    this.noticeToOwner(out, NotificationId.MEM_ACCEPTED, p, caller);
    if (req.sgl.length > 0) return OK;
    // No SGL asked for: the reply names the addresses the RM chose (the owner's, identity IPA).
    // `flags` (bit 0 INCOMPLETE) is the list header's extra byte, which the layout type omits.
    const reply = { flags: 0, sgl: p.sgl.map((e) => ({ base: e.base, size: e.size })) };
    return okWith(MemAcceptReply, reply);
  }

  /** pending → accepted, mapping the parcel now if the target's hypervisor objects exist. */
  private acceptFor(p: Parcel, t: ParcelTarget): number {
    const vm = this.deps.vms.get(t.vmid);
    if (vm?.hvCreated && !t.mapped) {
      const err = this.deps.hypervisor.mapParcel(t.vmid, mappingFor(p, t));
      if (err !== RmError.OK) return err;
      t.mapped = true;
    }
    t.state = "accepted";
    return RmError.OK;
  }

  /**
   * VM_START: the VM accepts every finished parcel still pending for it, and every parcel it
   * accepted is mapped. Returns the first port error (the VM start then fails).
   */
  acceptAndMapAllFor(vmid: number, placed: ReadonlyMap<number, bigint> = new Map()): number {
    for (const p of this.parcels.values()) {
      const t = p.targets.get(vmid);
      if (!t || !p.finished || t.state === "released") continue;
      if (t.state === "pending") t.state = "accepted";
      if (!t.mapped) {
        const err = this.deps.hypervisor.mapParcel(vmid, mappingFor(p, t, placed.get(p.handle)));
        if (err !== RmError.OK) return err;
        t.mapped = true;
      }
    }
    return RmError.OK;
  }

  // ---- MEM_RELEASE / MEM_RECLAIM

  release(out: Outbound[], caller: number, req: ReclaimReq): CallResult {
    const p = this.parcels.get(req.mem_handle);
    if (!p) return fail(RmError.HANDLE_INVALID);
    const t = p.targets.get(caller);
    if (!t) return fail(RmError.DENIED);
    if ((req.flags & ~MemFlags.SANITIZE) !== 0) return fail(RmError.ARGUMENT_INVALID);
    if (t.state === "released") return fail(RmError.MEM_RELEASED);
    const err = this.unmap(p, t);
    if (err !== RmError.OK) return fail(err);
    t.state = "released";
    this.noticeToOwner(out, NotificationId.MEM_RELEASED, p, caller);
    return OK;
  }

  reclaim(caller: number, req: ReclaimReq): CallResult {
    const p = this.parcels.get(req.mem_handle);
    if (!p) return fail(RmError.HANDLE_INVALID);
    if (p.owner !== caller) return fail(RmError.DENIED);
    if ((req.flags & ~MemFlags.SANITIZE) !== 0) return fail(RmError.ARGUMENT_INVALID);
    for (const t of p.targets.values()) if (t.state === "accepted") return fail(RmError.MEM_INUSE);
    this.parcels.delete(p.handle);
    return OK;
  }

  /**
   * Marks every parcel meant for `vmid` released for it, unmapping what is mapped (reset,
   * deallocation). Port failures are ignored: the RM's bookkeeping wins and teardown completes.
   */
  releaseAllFor(vmid: number): void {
    for (const p of this.parcels.values()) {
      const t = p.targets.get(vmid);
      if (!t) continue;
      if (t.mapped) this.deps.hypervisor.unmapParcel(vmid, p.handle);
      t.mapped = false;
      t.state = "released";
    }
  }

  /** Forgets a parcel the RM consumed (a reset VM's config image, see docs/rm.md). */
  drop(handle: number): void {
    this.parcels.delete(handle);
  }

  private unmap(p: Parcel, t: ParcelTarget): number {
    if (!t.mapped) return RmError.OK;
    const err = this.deps.hypervisor.unmapParcel(t.vmid, p.handle);
    if (err !== RmError.OK) return err;
    t.mapped = false;
    return RmError.OK;
  }

  // ---- MEM_NOTIFY

  notify(out: Outbound[], caller: number, req: NotifyReq): CallResult {
    const p = this.parcels.get(req.mem_handle);
    if (!p) return fail(RmError.HANDLE_INVALID);
    switch (req.flags) {
      case MemNotifyFlags.SHARED:
      case MemNotifyFlags.RECALL: {
        if (p.owner !== caller || !p.finished) return fail(RmError.DENIED);
        const vmids = (req.vmids ?? []).map((v) => v.vmid);
        if (vmids.length === 0 || new Set(vmids).size !== vmids.length)
          return fail(RmError.ARGUMENT_INVALID);
        if (vmids.some((v) => !p.targets.has(v))) return fail(RmError.ARGUMENT_INVALID);
        p.memInfoTag = req.mem_info_tag;
        for (const v of vmids) {
          const t = p.targets.get(v)!;
          if (req.flags === MemNotifyFlags.RECALL) {
            this.deps.notifier.send(out, v, NotificationId.MEM_RECALL, MemRecallPayload, {
              mem_handle: p.handle,
              mem_info_tag: p.memInfoTag,
            });
          } else if (t.state === "pending") {
            this.shareWith(out, p, t);
          }
        }
        return OK;
      }
      case MemNotifyFlags.RELEASED:
      case MemNotifyFlags.ACCEPTED: {
        if (!p.targets.has(caller)) return fail(RmError.DENIED);
        const id =
          req.flags === MemNotifyFlags.RELEASED
            ? NotificationId.MEM_RELEASED
            : NotificationId.MEM_ACCEPTED;
        this.noticeToOwner(out, id, p, caller, req.mem_info_tag);
        return OK;
      }
      default:
        return fail(RmError.ARGUMENT_INVALID);
    }
  }

  /**
   * A READY target cannot answer MEM_SHARED (its OS is not running yet), so the RM accepts on
   * its behalf and tells the owner the outcome; any other target gets MEM_SHARED.
   */
  private shareWith(out: Outbound[], p: Parcel, t: ParcelTarget): void {
    const vm = this.deps.vms.get(t.vmid);
    if (vm?.status === VmStatus.READY) {
      if (this.acceptFor(p, t) === RmError.OK) {
        this.noticeToOwner(out, NotificationId.MEM_ACCEPTED, p, t.vmid);
      } else {
        t.state = "released";
        this.noticeToOwner(out, NotificationId.MEM_RELEASED, p, t.vmid);
      }
      return;
    }
    this.deps.notifier.send(out, t.vmid, NotificationId.MEM_SHARED, MemSharedPayload, {
      mem_handle: p.handle,
      mem_type: p.memType,
      trans_type: p.transType,
      flags: p.sanitized ? 1 : 0,
      owner_vmid: p.owner,
      label: p.label,
      mem_info_tag: p.memInfoTag,
      acl: p.acl.map((a) => ({ vmid: a.vmid, rights: a.rights })),
      region_sizes: p.sgl.map((e) => ({ size: e.size })),
      attrs: p.attrs.map((a) => ({ attr: a.attr, vmid: a.vmid })),
    });
  }

  private noticeToOwner(
    out: Outbound[],
    id: number,
    p: Parcel,
    vmid: number,
    tag = p.memInfoTag,
  ): void {
    this.deps.notifier.send(out, p.owner, id, MemOwnerNotice, {
      mem_handle: p.handle,
      vmid,
      mem_info_tag: tag,
    });
  }
}

/**
 * The mapping of a parcel into a target. Without `guestBase` the guest sees the owner's
 * addresses (identity); with it the SGL ranges are laid out back to back from that base.
 */
function mappingFor(p: Parcel, t: ParcelTarget, guestBase?: bigint): ParcelMapping {
  const sgl = p.sgl.map((e) => ({ base: e.base, size: e.size }));
  let at = guestBase ?? 0n;
  const guest = sgl.map((e) => {
    if (guestBase === undefined) return { ...e };
    const r = { base: at, size: e.size };
    at += e.size;
    return r;
  });
  return { handle: p.handle, owner: p.owner, memType: p.memType, rights: t.rights, sgl, guest };
}

function attrsValid(attrs: readonly AttrEntry[], acl: readonly AclEntry[]): boolean {
  const seen = new Set<number>();
  for (const a of attrs) {
    if (a.attr > MemAttr.CACHED || seen.has(a.vmid) || !acl.some((e) => e.vmid === a.vmid))
      return false;
    seen.add(a.vmid);
  }
  return true;
}

function sameEntries<T>(a: readonly T[], b: readonly T[], key: (x: T) => string): boolean {
  if (a.length !== b.length) return false;
  const ka = a.map(key).sort();
  const kb = b.map(key).sort();
  return ka.every((k, i) => k === kb[i]);
}

function sameSgl(a: readonly SglEntry[], b: readonly SglEntry[]): boolean {
  return a.length === b.length && a.every((e, i) => e.base === b[i]!.base && e.size === b[i]!.size);
}
