import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { msgName, NotificationId, RequestId } from "../protocol/catalogue.js";
import {
  MAX_LIST_ENTRIES,
  MemAppendFlags,
  MemFlags,
  StopFlags,
  StopReason,
} from "../protocol/enums.js";
import { CLIENT_MAX_REQUEST, MsgType } from "../protocol/header.js";
import { fragment, Reassembler, type RmMessage } from "../protocol/message.js";
import {
  AllocVmidReply,
  AuthImageReq,
  ConfigImageReq,
  ConsoleCharsPayload,
  ConsoleTarget,
  ConsoleWriteReq,
  CrashMsg,
  Empty,
  GetHypResourcesReply,
  GetIdReply,
  GetStateReply,
  HostTypeReply,
  MemAcceptReply,
  MemAcceptReq,
  MemAppendReq,
  MemHandleReply,
  MemLendReq,
  MemNotifyReq,
  MemReclaimReq,
  notificationLayout,
  OwnerReply,
  PeersReply,
  Raw,
  SetAddressLayoutReq,
  SetBootContextReq,
  SetDemandPagingReq,
  SetFirmwareMemReq,
  SetStatusReq,
  SetTimeBaseReq,
  U32Vmid,
  VmExitedPayload,
  VmExitReq,
  VmidReq,
  VmidReqStrict,
  VmShutdownPayload,
  VmStatusPayload,
  VmStopReq,
} from "../protocol/payloads.js";
import { rmErrorName, rmErrorToErrno } from "../protocol/rm-error.js";
import { type Decoded, decodeLayout, encodeLayout, type Layout } from "../protocol/struct.js";
import { Fifo } from "./fifo.js";
import { type LogPort, nullLog } from "./log.js";
import type { MessageEndpoint } from "./transport.js";

/**
 * The RM client, as Linux's rsc_mgr behaves on the wire (rm-protocol.md §1.4–1.5): sequence
 * numbers allocated cyclically over 0…0xFFFF skipping those in flight, replies matched by
 * (seq, msg_id) and anything else dropped, several calls outstanding at once with the
 * fragments of one request never interleaved with another's, PUSH on the last fragment,
 * requests above 14,384 bytes refused. Unlike Linux, every call has a timeout.
 */

export const DEFAULT_CALL_TIMEOUT_MS = 10_000;

export interface RmClientOptions {
  /** Per-call and waitFor() default; 0 or Infinity waits forever (as Linux does). */
  readonly timeoutMs?: number;
  /** First sequence number tried (tests start near 0xFFFF to see the wrap). */
  readonly firstSeq?: number;
  readonly log?: LogPort;
}

export interface CallOptions {
  readonly timeoutMs?: number;
}

// ---------------------------------------------------------------------------------------
// Typed values

export type U64 = bigint | number;

export interface VmState {
  readonly vmStatus: number;
  readonly osStatus: number;
  readonly appStatus: number;
}

export interface HypResource {
  readonly resourceType: number;
  readonly partnerVmid: number;
  readonly resourceHandle: number;
  readonly resourceLabel: number;
  readonly capId: bigint;
  readonly virqHandle: number;
  readonly virq: number;
  readonly base: bigint;
  readonly size: bigint;
}

export interface AclEntry {
  readonly vmid: number;
  /** bit0 X, bit1 W, bit2 R. */
  readonly rights: number;
}
export interface SglEntry {
  readonly base: U64;
  readonly size: U64;
}
export interface AttrEntry {
  readonly attr: number;
  readonly vmid: number;
}

export interface MemParcelRequest {
  readonly memType?: number;
  /** SANITIZE (bit0); APPEND is added by the client when the SGL needs more than one message. */
  readonly flags?: number;
  readonly label?: number;
  readonly acl: readonly AclEntry[];
  readonly sgl: readonly SglEntry[];
  readonly attrs?: readonly AttrEntry[];
}

export interface MemAcceptRequest {
  readonly memHandle: number;
  readonly memType?: number;
  /** 0 DONATE, 1 LEND, 2 SHARE. */
  readonly transType: number;
  readonly flags?: number;
  readonly label?: number;
  readonly acl?: readonly AclEntry[];
  readonly sgl?: readonly SglEntry[];
  readonly mapVmid?: number;
  readonly attrs?: readonly AttrEntry[];
}

export interface ConfigImageRequest {
  readonly vmid: number;
  readonly authMech?: number;
  readonly memHandle: number;
  readonly imageOffset: U64;
  readonly imageSize: U64;
  readonly dtbOffset: U64;
  readonly dtbSize: U64;
}

export interface BootContextRequest {
  readonly vmid: number;
  /** 0 X (general register), 1 PC, 2 SP. */
  readonly regSet: number;
  readonly regIndex: number;
  readonly value: U64;
}

// ---------------------------------------------------------------------------------------
// Notifications

interface NotificationBase {
  readonly msgId: number;
  readonly name: string;
  readonly seq: number;
}
export interface VmStatusNotification extends NotificationBase {
  readonly kind: "vmStatus";
  readonly vmid: number;
  readonly vmStatus: number;
  readonly osStatus: number;
  readonly appStatus: number;
}
export interface VmExitedNotification extends NotificationBase {
  readonly kind: "vmExited";
  readonly vmid: number;
  readonly exitType: number;
  readonly exitReason: Uint8Array;
}
export interface VmShutdownNotification extends NotificationBase {
  readonly kind: "vmShutdown";
  readonly stopReason: number;
}
export interface ConsoleCharsNotification extends NotificationBase {
  readonly kind: "consoleChars";
  readonly fromVmid: number;
  readonly data: Uint8Array;
}
/** Any other notification, or one whose payload did not decode (`error` says why). */
export interface OtherNotification extends NotificationBase {
  readonly kind: "other";
  /** Decoded fields with the reference's snake_case names, when the payload decoded. */
  readonly fields: Readonly<Record<string, unknown>> | undefined;
  readonly payload: Uint8Array;
  readonly error?: TsvisorError;
}
export type Notification =
  | VmStatusNotification
  | VmExitedNotification
  | VmShutdownNotification
  | ConsoleCharsNotification
  | OtherNotification;

export interface RmClientEvents {
  /** Every notification, typed or not. */
  notification: Notification;
  vmStatus: VmStatusNotification;
  vmExited: VmExitedNotification;
  vmShutdown: VmShutdownNotification;
  consoleChars: ConsoleCharsNotification;
}

// ---------------------------------------------------------------------------------------

interface PendingCall {
  readonly seq: number;
  readonly msgId: number;
  readonly resolve: (reply: Extract<RmMessage, { type: 2 }>) => void;
  readonly reject: (e: TsvisorError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

interface OutFragment {
  readonly seq: number;
  readonly bytes: Uint8Array;
  readonly push: boolean;
  readonly first: boolean;
}

interface Waiter {
  readonly predicate: (n: Notification) => boolean;
  readonly resolve: (n: Notification) => void;
  readonly reject: (e: TsvisorError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

type Listener<T> = (event: T) => void;

const SEQ_SPACE = 0x10000;

export class RmClient {
  /** Replies that matched no call in flight (wrong seq or msg_id, or late after a timeout). */
  droppedReplies = 0;

  private readonly timeoutMs: number;
  private readonly log: LogPort;
  private readonly reassembler = new Reassembler("linux");
  private readonly pending = new Map<number, PendingCall>();
  private readonly outbox = new Fifo<OutFragment>();
  private readonly waiters = new Set<Waiter>();
  private readonly listeners = new Map<keyof RmClientEvents, Set<Listener<never>>>();
  private nextSeq: number;
  private isClosed = false;

  constructor(
    private readonly endpoint: MessageEndpoint,
    opts: RmClientOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.log = opts.log ?? nullLog;
    this.nextSeq = (opts.firstSeq ?? 0) & 0xffff;
    endpoint.start({
      message: (msg) => this.receive(msg),
      writable: () => this.flush(),
      close: (reason) => this.shutdown(reason),
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Calls in flight. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Closes the link; calls and waiters in flight reject with RPC_CLOSED. */
  close(): void {
    this.shutdown(undefined);
    this.endpoint.close();
  }

  // ---- events

  on<K extends keyof RmClientEvents>(event: K, listener: Listener<RmClientEvents[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof RmClientEvents>(event: K, listener: Listener<RmClientEvents[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  /**
   * Resolves with the first notification from now on that satisfies `predicate`. Arm it
   * before the call that causes the notification: the RM sends notifications before the
   * reply (VM_STOP's VM_EXITED arrives before VM_STOP's reply resolves).
   * Rejects with RPC_TIMEOUT after `timeoutMs` (default: the client's) or RPC_CLOSED.
   */
  waitFor(
    predicate: (n: Notification) => boolean,
    timeoutMs = this.timeoutMs,
  ): Promise<Notification> {
    if (this.isClosed)
      return Promise.reject(new TsvisorError("RPC_CLOSED", "the RM client is closed"));
    return new Promise((resolve, reject) => {
      const w: Waiter = { predicate, resolve, reject, timer: undefined };
      if (isFiniteTimeout(timeoutMs)) {
        w.timer = setTimeout(() => {
          this.waiters.delete(w);
          reject(
            new TsvisorError("RPC_TIMEOUT", `no matching notification within ${timeoutMs} ms`),
          );
        }, timeoutMs);
      }
      this.waiters.add(w);
    });
  }

  // ---- generic calls

  /**
   * Sends a request and resolves with the reply's data (after the error code). An RM error
   * rejects with RPC_RM_ERROR { rmError, rmErrorName, errno }.
   */
  async call(msgId: number, payload: Uint8Array, opts: CallOptions = {}): Promise<Uint8Array> {
    const reply = await this.request(msgId, payload, opts);
    if (reply.error !== 0) {
      const name = rmErrorName(reply.error);
      const { errno } = rmErrorToErrno(reply.error);
      throw new TsvisorError("RPC_RM_ERROR", `${msgName(msgId)} failed: ${name}`, {
        rmError: reply.error,
        rmErrorName: name,
        errno,
        msgId,
        msgName: msgName(msgId),
      });
    }
    return reply.payload;
  }

  /** Sends a request and resolves with the whole reply, whatever its error code. */
  request(
    msgId: number,
    payload: Uint8Array,
    opts: CallOptions = {},
  ): Promise<Extract<RmMessage, { type: 2 }>> {
    if (this.isClosed) {
      return Promise.reject(new TsvisorError("RPC_CLOSED", "the RM client is closed"));
    }
    let seq: number;
    let fragments: Uint8Array[];
    try {
      seq = this.allocSeq();
      fragments = fragment(
        { type: MsgType.REQUEST, seq, msgId, payload },
        CLIENT_MAX_REQUEST, // Linux refuses larger requests with -E2BIG
      );
    } catch (e) {
      return Promise.reject(e);
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    return new Promise((resolve, reject) => {
      const call: PendingCall = { seq, msgId, resolve, reject, timer: undefined };
      if (isFiniteTimeout(timeoutMs)) {
        call.timer = setTimeout(() => this.timeOut(call, timeoutMs), timeoutMs);
      }
      this.pending.set(seq, call);
      fragments.forEach((bytes, i) => {
        const last = i === fragments.length - 1;
        this.outbox.push({ seq, bytes, push: last, first: i === 0 });
      });
      this.flush();
    });
  }

  // ---- VM lifecycle (rm-protocol.md §3.2)

  /** VM_ALLOC_VMID: 0 asks for a dynamic VMID; returns the VMID allocated. */
  async allocVmid(vmid = 0): Promise<number> {
    const r = await this.invoke(RequestId.VM_ALLOC_VMID, VmidReq, { vmid }, AllocVmidReply);
    if (vmid !== 0) return vmid;
    if (r.vmid === undefined) throw badReply(RequestId.VM_ALLOC_VMID, "the reply carries no VMID");
    return r.vmid & 0xffff;
  }

  async deallocVmid(vmid: number): Promise<void> {
    await this.invoke(RequestId.VM_DEALLOC_VMID, VmidReq, { vmid }, Empty);
  }

  async configImage(req: ConfigImageRequest): Promise<void> {
    await this.invoke(
      RequestId.VM_CONFIG_IMAGE,
      ConfigImageReq,
      {
        vmid: req.vmid,
        auth_mech: req.authMech ?? 0,
        mem_handle: req.memHandle,
        image_offset: u64(req.imageOffset),
        image_size: u64(req.imageSize),
        dtb_offset: u64(req.dtbOffset),
        dtb_size: u64(req.dtbSize),
      },
      Empty,
    );
  }

  async authImage(
    vmid: number,
    params: readonly { readonly paramType: number; readonly param: number }[] = [],
  ): Promise<void> {
    await this.invoke(
      RequestId.VM_AUTH_IMAGE,
      AuthImageReq,
      { vmid, params: params.map((p) => ({ param_type: p.paramType, param: p.param })) },
      Empty,
    );
  }

  async init(vmid: number): Promise<void> {
    await this.invoke(RequestId.VM_INIT, VmidReqStrict, { vmid }, Empty);
  }

  async start(vmid: number): Promise<void> {
    await this.invoke(RequestId.VM_START, VmidReq, { vmid }, Empty);
  }

  /** VM_STOP; by default forced with reason FORCE_STOP (3), as Linux always sends. */
  async stop(
    vmid: number,
    opts: { readonly force?: boolean; readonly reason?: number } = {},
  ): Promise<void> {
    const flags = (opts.force ?? true) ? StopFlags.FORCE_STOP : 0;
    await this.invoke(
      RequestId.VM_STOP,
      VmStopReq,
      { vmid, flags, stop_reason: opts.reason ?? StopReason.FORCE_STOP },
      Empty,
    );
  }

  async reset(vmid: number): Promise<void> {
    await this.invoke(RequestId.VM_RESET, VmidReq, { vmid }, Empty);
  }

  async getHypResources(vmid: number): Promise<HypResource[]> {
    const r = await this.invoke(
      RequestId.VM_GET_HYP_RESOURCES,
      VmidReq,
      { vmid },
      GetHypResourcesReply,
    );
    return r.entries.map((e) => ({
      resourceType: e.resource_type,
      partnerVmid: e.partner_vmid,
      resourceHandle: e.resource_handle,
      resourceLabel: e.resource_label,
      capId: e.cap_id,
      virqHandle: e.virq_handle,
      virq: e.virq,
      base: e.base,
      size: e.size,
    }));
  }

  /** VM_GET_VMID: the caller's own VMID. */
  async getVmid(): Promise<number> {
    const r = await this.invoke(RequestId.VM_GET_VMID, Empty, {}, U32Vmid);
    return r.vmid;
  }

  async setBootContext(req: BootContextRequest): Promise<void> {
    await this.invoke(
      RequestId.VM_SET_BOOT_CONTEXT,
      SetBootContextReq,
      { vmid: req.vmid, reg_set: req.regSet, reg_index: req.regIndex, value: u64(req.value) },
      Empty,
    );
  }

  async setDemandPaging(
    vmid: number,
    ranges: readonly { readonly base: U64; readonly size: U64 }[],
  ): Promise<void> {
    await this.invoke(
      RequestId.VM_SET_DEMAND_PAGING,
      SetDemandPagingReq,
      { vmid, ranges: ranges.map((r) => ({ guest_phys_base: u64(r.base), size: u64(r.size) })) },
      Empty,
    );
  }

  /** rangeId 0 = IMAGE, 1 = FIRMWARE. */
  async setAddressLayout(req: {
    readonly vmid: number;
    readonly rangeId: number;
    readonly base: U64;
    readonly size: U64;
  }): Promise<void> {
    await this.invoke(
      RequestId.VM_SET_ADDRESS_LAYOUT,
      SetAddressLayoutReq,
      { vmid: req.vmid, range_id: req.rangeId, base: u64(req.base), size: u64(req.size) },
      Empty,
    );
  }

  // ---- other VM calls (§3.3)

  /** VM_GET_STATE; vmid 0 asks about the caller itself. */
  async getState(vmid = 0): Promise<VmState> {
    const r = await this.invoke(RequestId.VM_GET_STATE, VmidReq, { vmid }, GetStateReply);
    return { vmStatus: r.vm_status, osStatus: r.os_status, appStatus: r.app_status };
  }

  /** VM_SET_STATUS (a guest reports its OS/app status; os 0 = unchanged). */
  async setStatus(req: { readonly osStatus?: number; readonly appStatus?: number }): Promise<void> {
    await this.invoke(
      RequestId.VM_SET_STATUS,
      SetStatusReq,
      { os_status: req.osStatus ?? 0, app_status: req.appStatus ?? 0 },
      Empty,
    );
  }

  /** VM_EXIT (a guest exits itself). */
  async vmExit(
    req: { readonly exitFlags?: number; readonly exitCode?: number } = {},
  ): Promise<void> {
    await this.invoke(
      RequestId.VM_EXIT,
      VmExitReq,
      { exit_flags: req.exitFlags ?? 0, exit_code: req.exitCode ?? 0 },
      Empty,
    );
  }

  async getOwner(): Promise<number> {
    return (await this.invoke(RequestId.VM_GET_OWNER, Empty, {}, OwnerReply)).owner_vmid;
  }

  async getPeers(): Promise<number[]> {
    const r = await this.invoke(RequestId.VM_GET_PEERS, Empty, {}, PeersReply);
    return r.peers.map((p) => p.vmid);
  }

  async hostGetType(): Promise<number> {
    return (await this.invoke(RequestId.VM_HOST_GET_TYPE, Empty, {}, HostTypeReply)).host_type;
  }

  async getCrashMsg(vmid: number): Promise<Uint8Array> {
    return (await this.invoke(RequestId.VM_GET_CRASH_MSG, VmidReq, { vmid }, CrashMsg)).msg;
  }

  async setCrashMsg(msg: Uint8Array): Promise<void> {
    await this.invoke(RequestId.VM_SET_CRASH_MSG, CrashMsg, { msg }, Empty);
  }

  /** VM_GET_ID; vmid 0 = the caller. */
  async getId(vmid = 0): Promise<{ readonly idType: number; readonly id: Uint8Array }[]> {
    const r = await this.invoke(RequestId.VM_GET_ID, VmidReq, { vmid }, GetIdReply);
    return r.ids.map((i) => ({ idType: i.id_type, id: i.id }));
  }

  async setTimeBase(req: {
    readonly vmid: number;
    readonly timeBase: U64;
    readonly sysTimerRef: U64;
  }): Promise<void> {
    await this.invoke(
      RequestId.VM_SET_TIME_BASE,
      SetTimeBaseReq,
      { vmid: req.vmid, time_base: u64(req.timeBase), sys_timer_ref: u64(req.sysTimerRef) },
      Raw,
    );
  }

  async setFirmwareMem(req: {
    readonly vmid: number;
    readonly fwMpHandle: number;
    readonly fwOffset: U64;
    readonly fwSize: U64;
  }): Promise<void> {
    await this.invoke(
      RequestId.VM_SET_FIRMWARE_MEM,
      SetFirmwareMemReq,
      {
        vmid: req.vmid,
        fw_mp_handle: req.fwMpHandle,
        fw_offset: u64(req.fwOffset),
        fw_size: u64(req.fwSize),
      },
      Raw,
    );
  }

  // ---- console

  async consoleOpen(target = 0): Promise<void> {
    await this.invoke(RequestId.VM_CONSOLE_OPEN, ConsoleTarget, { target }, Empty);
  }
  async consoleClose(target = 0): Promise<void> {
    await this.invoke(RequestId.VM_CONSOLE_CLOSE, ConsoleTarget, { target }, Empty);
  }
  async consoleWrite(target: number, data: Uint8Array): Promise<void> {
    await this.invoke(RequestId.VM_CONSOLE_WRITE, ConsoleWriteReq, { target, data }, Empty);
  }
  async consoleFlush(target = 0): Promise<void> {
    await this.invoke(RequestId.VM_CONSOLE_FLUSH, ConsoleTarget, { target }, Empty);
  }

  // ---- memory parcels (§3.4)

  /** MEM_LEND; returns the parcel handle. More than 512 SGL entries go as LEND + MEM_APPEND. */
  memLend(req: MemParcelRequest): Promise<number> {
    return this.memTransfer(RequestId.MEM_LEND, req);
  }
  memShare(req: MemParcelRequest): Promise<number> {
    return this.memTransfer(RequestId.MEM_SHARE, req);
  }
  memDonate(req: MemParcelRequest): Promise<number> {
    return this.memTransfer(RequestId.MEM_DONATE, req);
  }

  /** MEM_APPEND; flags bit0 = END on the last chunk. */
  async memAppend(req: {
    readonly memHandle: number;
    readonly flags?: number;
    readonly sgl: readonly SglEntry[];
  }): Promise<void> {
    await this.invoke(
      RequestId.MEM_APPEND,
      MemAppendReq,
      { mem_handle: req.memHandle, flags: req.flags ?? 0, sgl: req.sgl.map(sglEntry) },
      Empty,
    );
  }

  async memReclaim(memHandle: number, opts: { readonly flags?: number } = {}): Promise<void> {
    await this.invoke(
      RequestId.MEM_RECLAIM,
      MemReclaimReq,
      { mem_handle: memHandle, flags: opts.flags ?? 0 },
      Empty,
    );
  }

  async memRelease(memHandle: number, opts: { readonly flags?: number } = {}): Promise<void> {
    await this.invoke(
      RequestId.MEM_RELEASE,
      MemReclaimReq,
      { mem_handle: memHandle, flags: opts.flags ?? 0 },
      Empty,
    );
  }

  /**
   * MEM_ACCEPT. With an empty SGL the RM chooses where the parcel goes and says so: the
   * result then lists those ranges; with an SGL the reply is standard and the result is
   * undefined.
   */
  async memAccept(
    req: MemAcceptRequest,
  ): Promise<
    { readonly incomplete: boolean; readonly sgl: { base: bigint; size: bigint }[] } | undefined
  > {
    // The layout's list header carries map_vmid / flags, which its static type does not
    // expose (protocol/struct.ts widens the count spec); the codec reads and writes them.
    const r = (await this.invoke(
      RequestId.MEM_ACCEPT,
      MemAcceptReq,
      {
        mem_handle: req.memHandle,
        mem_type: req.memType ?? 0,
        trans_type: req.transType,
        flags: req.flags ?? 0,
        label: req.label ?? 0,
        acl: (req.acl ?? []).map(aclEntry),
        sgl: (req.sgl ?? []).map(sglEntry),
        map_vmid: req.mapVmid ?? 0,
        attrs: (req.attrs ?? []).map(attrEntry),
      } as Decoded<typeof MemAcceptReq>,
      MemAcceptReply,
    )) as Decoded<typeof MemAcceptReply> & { readonly flags?: number };
    if (r.sgl === undefined) return undefined;
    return {
      incomplete: ((r.flags ?? 0) & 1) !== 0,
      sgl: r.sgl.map((e) => ({ base: e.base, size: e.size })),
    };
  }

  /** MEM_NOTIFY; `vmids` only for SHARED (1) and RECALL (8). */
  async memNotify(req: {
    readonly memHandle: number;
    readonly flags: number;
    readonly memInfoTag?: number;
    readonly vmids?: readonly number[];
  }): Promise<void> {
    await this.invoke(
      RequestId.MEM_NOTIFY,
      MemNotifyReq,
      {
        mem_handle: req.memHandle,
        flags: req.flags,
        mem_info_tag: req.memInfoTag ?? 0,
        // The list is an optional tail: left undefined, it is not written at all.
        vmids: req.vmids?.map((vmid) => ({ vmid })) as { vmid: number }[],
      },
      Empty,
    );
  }

  // ---- internals

  /** Linux's split: LEND/SHARE with APPEND + MEM_APPEND chunks, reclaiming if a chunk fails. */
  private async memTransfer(msgId: number, req: MemParcelRequest): Promise<number> {
    const sgl = req.sgl.map(sglEntry);
    const first = sgl.slice(0, MAX_LIST_ENTRIES);
    const rest = sgl.slice(MAX_LIST_ENTRIES);
    const flags = (req.flags ?? 0) | (rest.length > 0 ? MemFlags.APPEND : 0);
    const { mem_handle: handle } = await this.invoke(
      msgId,
      MemLendReq,
      {
        mem_type: req.memType ?? 0,
        flags,
        label: req.label ?? 0,
        acl: req.acl.map(aclEntry),
        sgl: first,
        attrs: (req.attrs ?? []).map(attrEntry),
      },
      MemHandleReply,
    );
    for (let at = 0; at < rest.length; at += MAX_LIST_ENTRIES) {
      const chunk = rest.slice(at, at + MAX_LIST_ENTRIES);
      const last = at + MAX_LIST_ENTRIES >= rest.length;
      try {
        await this.invoke(
          RequestId.MEM_APPEND,
          MemAppendReq,
          { mem_handle: handle, flags: last ? MemAppendFlags.END : 0, sgl: chunk },
          Empty,
        );
      } catch (e) {
        try {
          await this.memReclaim(handle);
        } catch (reclaimError) {
          this.log.write({
            level: "warn",
            event: "mem.reclaim_failed",
            message: `reclaiming parcel ${handle} after a failed MEM_APPEND failed too`,
            code: isTsvisorError(reclaimError) ? reclaimError.code : undefined,
          });
        }
        throw e;
      }
    }
    return handle;
  }

  private async invoke<Q extends object, P extends object>(
    msgId: number,
    requestLayout: Layout<Q>,
    req: Q,
    replyLayout: Layout<P>,
  ): Promise<P> {
    const data = await this.call(msgId, encodeLayout(requestLayout, req));
    try {
      return decodeLayout(replyLayout, data);
    } catch (e) {
      throw badReply(msgId, (e as Error).message, e);
    }
  }

  private allocSeq(): number {
    for (let i = 0; i < SEQ_SPACE; i++) {
      const seq = (this.nextSeq + i) & 0xffff;
      if (!this.pending.has(seq)) {
        this.nextSeq = (seq + 1) & 0xffff;
        return seq;
      }
    }
    throw new TsvisorError("RPC_BUSY", "all 65,536 sequence numbers are in flight");
  }

  private flush(): void {
    while (this.outbox.length > 0 && this.endpoint.writable) {
      const f = this.outbox.shift()!;
      try {
        this.endpoint.send(f.bytes, f.push);
      } catch (e) {
        this.outbox.unshift(f);
        if (isTsvisorError(e, "RPC_CLOSED")) return;
        throw e;
      }
    }
  }

  private timeOut(call: PendingCall, timeoutMs: number): void {
    if (this.pending.get(call.seq) !== call) return;
    this.pending.delete(call.seq);
    // A request not yet started is withdrawn; one partly sent must finish, or the RM would
    // glue the next request's continuations onto it. Its late reply is dropped as unmatched.
    if (this.outbox.some((f) => f.seq === call.seq && f.first)) {
      this.outbox.removeWhere((f) => f.seq === call.seq);
    }
    call.reject(
      new TsvisorError(
        "RPC_TIMEOUT",
        `${msgName(call.msgId)} got no reply within ${timeoutMs} ms`,
        {
          msgId: call.msgId,
          seq: call.seq,
        },
      ),
    );
  }

  private shutdown(reason: TsvisorError | undefined): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.outbox.clear();
    this.reassembler.reset();
    const why = reason ? `: ${reason.message}` : "";
    for (const call of this.pending.values()) {
      if (call.timer !== undefined) clearTimeout(call.timer);
      call.reject(
        new TsvisorError("RPC_CLOSED", `${msgName(call.msgId)} aborted: the link closed${why}`, {
          msgId: call.msgId,
          seq: call.seq,
        }),
      );
    }
    this.pending.clear();
    for (const w of this.waiters) {
      if (w.timer !== undefined) clearTimeout(w.timer);
      w.reject(new TsvisorError("RPC_CLOSED", `the link closed while waiting${why}`));
    }
    this.waiters.clear();
    if (reason) {
      this.log.write({
        level: "warn",
        event: "client.closed",
        message: `the RM link closed${why}`,
        code: reason.code,
      });
    }
  }

  private receive(msg: Uint8Array): void {
    if (this.isClosed) return;
    for (const ev of this.reassembler.push(msg)) {
      switch (ev.kind) {
        case "partial":
          break;
        case "message":
          this.deliver(ev.message);
          break;
        case "dropped":
          this.log.write({
            level: "warn",
            event: "message.ignored",
            message: `ignored a malformed queue message: ${ev.error.message}`,
            code: ev.error.code,
          });
          break;
        case "aborted": {
          // Linux fails the waiting call (-EIO, or -ENOMEM for a reply too short to hold
          // its error code) rather than leave it waiting for a message that cannot complete.
          const call = this.pending.get(ev.seq);
          if (ev.type === MsgType.REPLY && call && call.msgId === ev.msgId) {
            this.settle(call);
            call.reject(
              new TsvisorError(
                "RPC_BAD_REPLY",
                `the reply to ${msgName(ev.msgId)} was cut short: ${ev.error.message}`,
                {
                  msgId: ev.msgId,
                  seq: ev.seq,
                  cause: ev.error.code,
                },
              ),
            );
          }
          this.log.write({
            level: "warn",
            event: "message.aborted",
            message: `discarded an incomplete message: ${ev.error.message}`,
            code: ev.error.code,
            msgId: ev.msgId,
            seq: ev.seq,
          });
          break;
        }
      }
    }
  }

  private deliver(m: RmMessage): void {
    switch (m.type) {
      case MsgType.REPLY: {
        const call = this.pending.get(m.seq);
        if (!call || call.msgId !== m.msgId) {
          this.droppedReplies++;
          this.log.write({
            level: "debug",
            event: "reply.unmatched",
            message: `dropped a reply (seq ${m.seq}, ${msgName(m.msgId)}) that matches no call`,
            msgId: m.msgId,
            seq: m.seq,
          });
          return;
        }
        this.settle(call);
        call.resolve(m);
        return;
      }
      case MsgType.NOTIFICATION:
        this.notify(decodeNotification(m));
        return;
      case MsgType.REQUEST:
        this.log.write({
          level: "warn",
          event: "message.ignored",
          message: `ignored a request (${msgName(m.msgId)}) sent to a client`,
          code: "PROTO_TYPE",
          msgId: m.msgId,
          seq: m.seq,
        });
        return;
    }
  }

  private settle(call: PendingCall): void {
    this.pending.delete(call.seq);
    if (call.timer !== undefined) clearTimeout(call.timer);
  }

  private notify(n: Notification): void {
    this.emit("notification", n);
    if (n.kind !== "other") this.emit(n.kind, n as never);
    for (const w of [...this.waiters]) {
      let hit: boolean;
      try {
        hit = w.predicate(n);
      } catch (e) {
        this.rethrowLater(e);
        continue;
      }
      if (!hit) continue;
      this.waiters.delete(w);
      if (w.timer !== undefined) clearTimeout(w.timer);
      w.resolve(n);
    }
  }

  private emit<K extends keyof RmClientEvents>(event: K, value: RmClientEvents[K]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const l of [...set]) {
      try {
        (l as Listener<RmClientEvents[K]>)(value);
      } catch (e) {
        this.rethrowLater(e);
      }
    }
  }

  /** A listener's bug must not break the receive loop, nor vanish. */
  private rethrowLater(e: unknown): void {
    queueMicrotask(() => {
      throw e;
    });
  }
}

// ---------------------------------------------------------------------------------------

/** Decodes a notification into its typed form (exported for tools that replay traces). */
export function decodeNotification(m: {
  readonly msgId: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}): Notification {
  const base = { msgId: m.msgId, name: msgName(m.msgId, true), seq: m.seq };
  try {
    switch (m.msgId) {
      case NotificationId.VM_STATUS: {
        const f = decodeLayout(VmStatusPayload, m.payload);
        return {
          ...base,
          kind: "vmStatus",
          vmid: f.vmid,
          vmStatus: f.vm_status,
          osStatus: f.os_status,
          appStatus: f.app_status,
        };
      }
      case NotificationId.VM_EXITED: {
        const f = decodeLayout(VmExitedPayload, m.payload);
        return {
          ...base,
          kind: "vmExited",
          vmid: f.vmid,
          exitType: f.exit_type,
          exitReason: f.exit_reason,
        };
      }
      case NotificationId.VM_SHUTDOWN: {
        const f = decodeLayout(VmShutdownPayload, m.payload);
        return { ...base, kind: "vmShutdown", stopReason: f.stop_reason };
      }
      case NotificationId.VM_CONSOLE_CHARS: {
        const f = decodeLayout(ConsoleCharsPayload, m.payload);
        return { ...base, kind: "consoleChars", fromVmid: f.from_vmid, data: f.data };
      }
      default: {
        const fields = decodeLayout(notificationLayout(m.msgId), m.payload) as Record<
          string,
          unknown
        >;
        return { ...base, kind: "other", fields, payload: m.payload };
      }
    }
  } catch (e) {
    if (!isTsvisorError(e)) throw e;
    return { ...base, kind: "other", fields: undefined, payload: m.payload, error: e };
  }
}

function isFiniteTimeout(ms: number): boolean {
  return Number.isFinite(ms) && ms > 0;
}

function badReply(msgId: number, why: string, cause?: unknown): TsvisorError {
  return new TsvisorError("RPC_BAD_REPLY", `the reply to ${msgName(msgId)} is malformed: ${why}`, {
    msgId,
    ...(isTsvisorError(cause) ? { cause: cause.code } : {}),
  });
}

function u64(v: U64): bigint {
  if (typeof v === "bigint") return v;
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new TsvisorError("PROTO_PAYLOAD_FIELD", `${v} is not an unsigned 64-bit integer`);
  }
  return BigInt(v);
}

function sglEntry(e: SglEntry): { base: bigint; size: bigint } {
  return { base: u64(e.base), size: u64(e.size) };
}
function aclEntry(e: AclEntry): { vmid: number; rights: number } {
  return { vmid: e.vmid, rights: e.rights };
}
function attrEntry(e: AttrEntry): { attr: number; vmid: number } {
  return { attr: e.attr, vmid: e.vmid };
}
