import { msgName, NotificationId, RequestId } from "./catalogue.js";
import { CRASH_MSG_MAX, MAX_LIST_ENTRIES } from "./enums.js";
import {
  bytes,
  type Decoded,
  decodeLayout,
  encodeLayout,
  type Layout,
  layout,
  list,
  optionalTail,
  reserved,
  u8,
  u16,
  u32,
  u64,
} from "./struct.js";

/**
 * Payload layouts of every message rm-protocol.md lays out. Request layouts are what follows
 * the 8-byte header; reply layouts are what follows the u32 error code. Field names are the
 * reference's snake_case names, so decoded JSON reads like the reference.
 */

// ---- building blocks (§3.4)
export const AclEntry = layout(u16("vmid"), u8("rights"), reserved(1));
export const SglEntry = layout(u64("base"), u64("size"));
export const AttrEntry = layout(u16("attr"), u16("vmid"));
export const VmidEntry = layout(u16("vmid"), reserved(2));
export const Range = layout(u64("guest_phys_base"), u64("size"));
export const HypResource = layout(
  u8("resource_type"),
  reserved(1),
  u16("partner_vmid"),
  u32("resource_handle"),
  u32("resource_label"),
  u64("cap_id"),
  u32("virq_handle"),
  u32("virq"),
  u64("base"),
  u64("size"),
);
export type AclEntry = Decoded<typeof AclEntry>;
export type SglEntry = Decoded<typeof SglEntry>;
export type AttrEntry = Decoded<typeof AttrEntry>;
export type HypResource = Decoded<typeof HypResource>;

// ---- common shapes
export const Empty = layout();
/** `u16 vmid, u16 reserved`; VM_INIT requires the reserved half-word to be zero. */
export const VmidReq = layout(u16("vmid"), reserved(2));
export const VmidReqStrict = layout(u16("vmid"), reserved(2, true));
export const U32Vmid = layout(u32("vmid"));

// ---- VM lifecycle (§3.2)
export const AllocVmidReply = layout(optionalTail(), u32("vmid"));
export const VmStopReq = layout(u16("vmid"), u8("flags"), reserved(1), u32("stop_reason"));
export const ConfigImageReq = layout(
  u16("vmid"),
  u16("auth_mech"),
  u32("mem_handle"),
  u64("image_offset"),
  u64("image_size"),
  u64("dtb_offset"),
  u64("dtb_size"),
);
export const AuthImageReq = layout(
  u16("vmid"),
  list("params", "u16", layout(u32("param_type"), u32("param"))),
);
export const SetBootContextReq = layout(
  u16("vmid"),
  u8("reg_set"),
  u8("reg_index"),
  reserved(4),
  u64("value"),
);
export const GetHypResourcesReply = layout(list("entries", "u32", HypResource));
export const SetDemandPagingReq = layout(u16("vmid"), reserved(2), list("ranges", "u32", Range));
export const SetAddressLayoutReq = layout(
  u16("vmid"),
  reserved(2),
  u32("range_id"),
  u64("base"),
  u64("size"),
);

// ---- other VM calls (§3.3)
export const GetStateReply = layout(u8("vm_status"), u8("os_status"), u16("app_status"));
export const SetStatusReq = layout(reserved(1), u8("os_status", 7), u16("app_status"));
export const VmExitReq = layout(u16("exit_flags"), u8("exit_code"), reserved(1));
export const OwnerReply = layout(u32("owner_vmid"));
export const PeersReply = layout(list("peers", "u32", layout(u32("vmid"))));
export const HostTypeReply = layout(u32("host_type"));
export const CrashMsg = layout(bytes("msg", "u16r", true, CRASH_MSG_MAX));
export const GetIdReply = layout(
  list("ids", "u32", layout(u8("id_type"), reserved(1), bytes("id", "u16", true))),
);
export const SetTimeBaseReq = layout(
  u16("vmid"),
  reserved(2),
  u64("time_base"),
  u64("sys_timer_ref"),
);
export const SetFirmwareMemReq = layout(
  u16("vmid"),
  reserved(2),
  u32("fw_mp_handle"),
  u64("fw_offset"),
  u64("fw_size"),
);
export const ConsoleTarget = layout(u16("target"), reserved(2));
export const ConsoleWriteReq = layout(u16("target"), bytes("data", "u16"));
export const IrqAcceptReq = layout(u32("virq_handle"), u32("virq"));
export const IrqAcceptReply = layout(u32("virq"));
export const IrqLendReq = layout(u16("borrower"), reserved(2), u32("virq"), u32("label"));
export const IrqLendReply = layout(u32("virq_handle"));
export const IrqHandleReq = layout(u32("virq_handle"));
export const IrqNotifyReq = layout(
  u32("virq_handle"),
  u32("flags"),
  optionalTail(),
  // The LENT form's target list has the usual `u16 n, u16 0` header (rm-protocol.md §3.3).
  list("vmids", "u16r", VmidEntry),
);

// ---- memory parcels (§3.4)
const memTransfer = () =>
  layout(
    u8("mem_type"),
    reserved(1),
    u8("flags"),
    reserved(1),
    u32("label"),
    list("acl", "u16r", AclEntry),
    list("sgl", "u16r", SglEntry),
    list("attrs", "u16r", AttrEntry),
  );
export const MemLendReq = memTransfer();
export const MemHandleReply = layout(u32("mem_handle"));
export const MemAppendReq = layout(
  u32("mem_handle"),
  u8("flags"),
  reserved(3),
  list("sgl", "u16r", SglEntry),
);
export const MemReclaimReq = layout(u32("mem_handle"), u8("flags"), reserved(3));
export const MemAcceptReq = layout(
  u32("mem_handle"),
  u8("mem_type"),
  u8("trans_type"),
  u8("flags"),
  reserved(1),
  u32("label"),
  list("acl", "u16r", AclEntry),
  list("sgl", { extra: "map_vmid" }, SglEntry),
  list("attrs", "u16r", AttrEntry),
);
/** Empty unless the request's SGL was empty: then `u16 n_sgl, u8 flags, u8 0, n × SGL`. */
export const MemAcceptReply = layout(
  optionalTail(),
  list("sgl", { extra: "flags", width: "u8r" }, SglEntry),
);
export const MemNotifyReq = layout(
  u32("mem_handle"),
  u8("flags"),
  reserved(3),
  u32("mem_info_tag"),
  optionalTail(),
  list("vmids", "u16r", VmidEntry),
);

// ---- notifications
export const VmExitedPayload = layout(u16("vmid"), u16("exit_type"), bytes("exit_reason", "u32"));
export const VmShutdownPayload = layout(u32("stop_reason"));
export const VmStatusPayload = layout(
  u16("vmid"),
  reserved(2),
  u8("vm_status"),
  u8("os_status"),
  u16("app_status"),
);
export const IrqLentPayload = layout(u16("owner"), reserved(2), u32("virq_handle"), u32("label"));
export const IrqHandlePayload = layout(u32("virq_handle"));
export const ConsoleCharsPayload = layout(u16("from_vmid"), bytes("data", "u16"));
export const MemSharedPayload = layout(
  u32("mem_handle"),
  u8("mem_type"),
  u8("trans_type"),
  u8("flags"),
  reserved(1),
  u16("owner_vmid"),
  reserved(2),
  u32("label"),
  u32("mem_info_tag"),
  list("acl", "u16r", AclEntry),
  list("region_sizes", "u16r", layout(u64("size"))),
  list("attrs", "u16r", AttrEntry),
);
export const MemOwnerNotice = layout(
  u32("mem_handle"),
  u16("vmid"),
  reserved(2),
  u32("mem_info_tag"),
);
export const MemRecallPayload = layout(u32("mem_handle"), u32("mem_info_tag"));

/** Calls whose payloads the reference does not lay out: carried as raw bytes. */
export const Raw = layout(bytes("data", "rest"));

export interface CallLayouts {
  readonly request: Layout<object>;
  readonly reply: Layout<object>;
}

const R = RequestId;
const N = NotificationId;

/** request/reply layouts by request id. */
export const CALL_LAYOUTS: ReadonlyMap<number, CallLayouts> = new Map<number, CallLayouts>([
  [R.VM_ALLOC_VMID, { request: VmidReq, reply: AllocVmidReply }],
  [R.VM_DEALLOC_VMID, { request: VmidReq, reply: Empty }],
  [R.VM_SET_NAME, { request: Raw, reply: Raw }],
  [R.VM_START, { request: VmidReq, reply: Empty }],
  [R.VM_STOP, { request: VmStopReq, reply: Empty }],
  [R.VM_RESET, { request: VmidReq, reply: Empty }],
  [R.VM_SUSPEND, { request: Raw, reply: Raw }],
  [R.VM_RESUME, { request: Raw, reply: Raw }],
  [R.VM_CONFIG_IMAGE, { request: ConfigImageReq, reply: Empty }],
  [R.VM_AUTH_IMAGE, { request: AuthImageReq, reply: Empty }],
  [R.VM_INIT, { request: VmidReqStrict, reply: Empty }],
  [R.VM_SET_BOOT_CONTEXT, { request: SetBootContextReq, reply: Empty }],
  [R.VM_GET_ID, { request: VmidReq, reply: GetIdReply }],
  [R.VM_LOOKUP_URI, { request: Raw, reply: Raw }],
  [R.VM_LOOKUP_GUID, { request: Raw, reply: Raw }],
  [R.VM_LOOKUP_NAME, { request: Raw, reply: Raw }],
  [R.VM_GET_OWNER, { request: Empty, reply: OwnerReply }],
  [R.VM_GET_STATE, { request: VmidReq, reply: GetStateReply }],
  [R.VM_GET_CRASH_MSG, { request: VmidReq, reply: CrashMsg }],
  [R.VM_GET_HYP_RESOURCES, { request: VmidReq, reply: GetHypResourcesReply }],
  [R.VM_GET_HYP_CAPIDS, { request: Raw, reply: Raw }],
  [R.VM_GET_HYP_IRQS, { request: Raw, reply: Raw }],
  [R.VM_GET_VMID, { request: Empty, reply: U32Vmid }],
  [R.VM_GET_PEERS, { request: Empty, reply: PeersReply }],
  [R.VM_SET_TIME_BASE, { request: SetTimeBaseReq, reply: Raw }],
  [R.VM_SET_CONTEXT, { request: Raw, reply: Raw }],
  [R.VM_SET_FIRMWARE_MEM, { request: SetFirmwareMemReq, reply: Raw }],
  [R.VM_SET_DEMAND_PAGING, { request: SetDemandPagingReq, reply: Empty }],
  [R.VM_SET_ADDRESS_LAYOUT, { request: SetAddressLayoutReq, reply: Empty }],
  [R.VM_IRQ_ACCEPT, { request: IrqAcceptReq, reply: IrqAcceptReply }],
  [R.VM_IRQ_LEND, { request: IrqLendReq, reply: IrqLendReply }],
  [R.VM_IRQ_RELEASE, { request: IrqHandleReq, reply: Empty }],
  [R.VM_IRQ_RECLAIM, { request: IrqHandleReq, reply: Empty }],
  [R.VM_IRQ_NOTIFY, { request: IrqNotifyReq, reply: Empty }],
  [R.VM_IRQ_UNMAP, { request: Raw, reply: Raw }],
  [R.VM_SET_STATUS, { request: SetStatusReq, reply: Empty }],
  [R.VM_CONSOLE_OPEN, { request: ConsoleTarget, reply: Empty }],
  [R.VM_CONSOLE_CLOSE, { request: ConsoleTarget, reply: Empty }],
  [R.VM_CONSOLE_WRITE, { request: ConsoleWriteReq, reply: Empty }],
  [R.VM_CONSOLE_FLUSH, { request: ConsoleTarget, reply: Empty }],
  [R.VM_EXIT, { request: VmExitReq, reply: Empty }],
  [R.VM_SET_CRASH_MSG, { request: CrashMsg, reply: Empty }],
  [R.VM_HOST_GET_TYPE, { request: Empty, reply: HostTypeReply }],
  [R.IPA_RESERVE, { request: Raw, reply: Raw }],
  [R.IPA_UNRESERVE, { request: Raw, reply: Raw }],
  [R.MEM_DONATE, { request: MemLendReq, reply: MemHandleReply }],
  [R.MEM_ACCEPT, { request: MemAcceptReq, reply: MemAcceptReply }],
  [R.MEM_LEND, { request: MemLendReq, reply: MemHandleReply }],
  [R.MEM_SHARE, { request: MemLendReq, reply: MemHandleReply }],
  [R.MEM_RELEASE, { request: MemReclaimReq, reply: Empty }],
  [R.MEM_RECLAIM, { request: MemReclaimReq, reply: Empty }],
  [R.MEM_NOTIFY, { request: MemNotifyReq, reply: Empty }],
  [R.MEM_APPEND, { request: MemAppendReq, reply: Empty }],
  [R.MEM_QCOM_LOOKUP_SGL, { request: Raw, reply: Raw }],
  [R.FW_MILESTONE, { request: Raw, reply: Raw }],
  [R.FW_SET_VM_FIRMWARE, { request: Raw, reply: Raw }],
]);

export const NOTIFICATION_LAYOUTS: ReadonlyMap<number, Layout<object>> = new Map<
  number,
  Layout<object>
>([
  [N.VM_EXITED, VmExitedPayload],
  [N.VM_SHUTDOWN, VmShutdownPayload],
  [N.VM_STATUS, VmStatusPayload],
  [N.VM_IRQ_LENT, IrqLentPayload],
  [N.VM_IRQ_RELEASED, IrqHandlePayload],
  [N.VM_IRQ_ACCEPTED, IrqHandlePayload],
  [N.VM_CONSOLE_CHARS, ConsoleCharsPayload],
  [N.MEM_SHARED, MemSharedPayload],
  [N.MEM_RELEASED, MemOwnerNotice],
  [N.MEM_ACCEPTED, MemOwnerNotice],
  [N.MEM_RECALL, MemRecallPayload],
]);

export const MAX_SGL_PER_MESSAGE = MAX_LIST_ENTRIES;

export function requestLayout(msgId: number): Layout<object> {
  return CALL_LAYOUTS.get(msgId)?.request ?? Raw;
}
export function replyLayout(msgId: number): Layout<object> {
  return CALL_LAYOUTS.get(msgId)?.reply ?? Raw;
}
export function notificationLayout(msgId: number): Layout<object> {
  return NOTIFICATION_LAYOUTS.get(msgId) ?? Raw;
}

export function decodePayload<T extends object>(l: Layout<T>, b: Uint8Array): T {
  return decodeLayout(l, b);
}
export function encodePayload<T extends object>(l: Layout<T>, v: T): Uint8Array {
  return encodeLayout(l, v);
}
export { msgName };
