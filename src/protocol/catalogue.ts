/**
 * The RM message catalogue (rm-protocol.md §3.1): every request and notification id, named.
 * Names follow Linux v16 where it has one, else the open-source RM.
 */

export const RequestId = {
  VM_ALLOC_VMID: 0x56000001,
  VM_DEALLOC_VMID: 0x56000002,
  VM_SET_NAME: 0x56000003,
  VM_START: 0x56000004,
  VM_STOP: 0x56000005,
  VM_RESET: 0x56000006,
  VM_SUSPEND: 0x56000007,
  VM_RESUME: 0x56000008,
  VM_CONFIG_IMAGE: 0x56000009,
  VM_AUTH_IMAGE: 0x5600000a,
  VM_INIT: 0x5600000b,
  VM_SET_BOOT_CONTEXT: 0x5600000c,
  VM_GET_ID: 0x56000010,
  VM_LOOKUP_URI: 0x56000011,
  VM_LOOKUP_GUID: 0x56000012,
  VM_LOOKUP_NAME: 0x56000013,
  VM_GET_OWNER: 0x56000015,
  VM_GET_STATE: 0x56000017,
  VM_GET_CRASH_MSG: 0x56000019,
  VM_GET_HYP_RESOURCES: 0x56000020,
  VM_GET_HYP_CAPIDS: 0x56000021,
  VM_GET_HYP_IRQS: 0x56000022,
  VM_GET_VMID: 0x56000024,
  VM_GET_PEERS: 0x56000025,
  VM_SET_TIME_BASE: 0x56000030,
  VM_SET_CONTEXT: 0x56000031,
  VM_SET_FIRMWARE_MEM: 0x56000032,
  VM_SET_DEMAND_PAGING: 0x56000033,
  VM_SET_ADDRESS_LAYOUT: 0x56000034,
  VM_IRQ_ACCEPT: 0x56000050,
  VM_IRQ_LEND: 0x56000051,
  VM_IRQ_RELEASE: 0x56000052,
  VM_IRQ_RECLAIM: 0x56000053,
  VM_IRQ_NOTIFY: 0x56000054,
  VM_IRQ_UNMAP: 0x56000055,
  VM_SET_STATUS: 0x56000080,
  VM_CONSOLE_OPEN: 0x56000081,
  VM_CONSOLE_CLOSE: 0x56000082,
  VM_CONSOLE_WRITE: 0x56000083,
  VM_CONSOLE_FLUSH: 0x56000084,
  VM_EXIT: 0x56000085,
  VM_SET_CRASH_MSG: 0x56000086,
  VM_HOST_GET_TYPE: 0x560000a0,
  IPA_RESERVE: 0x560000b0,
  IPA_UNRESERVE: 0x560000b1,
  MEM_DONATE: 0x51000010,
  MEM_ACCEPT: 0x51000011,
  MEM_LEND: 0x51000012,
  MEM_SHARE: 0x51000013,
  MEM_RELEASE: 0x51000014,
  MEM_RECLAIM: 0x51000015,
  MEM_NOTIFY: 0x51000017,
  MEM_APPEND: 0x51000018,
  MEM_QCOM_LOOKUP_SGL: 0x5100001a,
  FW_MILESTONE: 0x51000020,
  FW_SET_VM_FIRMWARE: 0x51000021,
} as const;
export type RequestName = keyof typeof RequestId;
export type RequestId = (typeof RequestId)[RequestName];

export const NotificationId = {
  VM_EXITED: 0x56100001,
  VM_SHUTDOWN: 0x56100002,
  VM_STATUS: 0x56100008,
  VM_IRQ_LENT: 0x56100011,
  VM_IRQ_RELEASED: 0x56100012,
  VM_IRQ_ACCEPTED: 0x56100013,
  VM_CONSOLE_CHARS: 0x56100080,
  MEM_SHARED: 0x51100011,
  MEM_RELEASED: 0x51100012,
  MEM_ACCEPTED: 0x51100013,
  MEM_RECALL: 0x51100014,
} as const;
export type NotificationName = keyof typeof NotificationId;
export type NotificationId = (typeof NotificationId)[NotificationName];

const requestNames = new Map<number, RequestName>(
  Object.entries(RequestId).map(([k, v]) => [v, k as RequestName]),
);
const notificationNames = new Map<number, NotificationName>(
  Object.entries(NotificationId).map(([k, v]) => [v, k as NotificationName]),
);

export function requestName(id: number): RequestName | undefined {
  return requestNames.get(id);
}
export function notificationName(id: number): NotificationName | undefined {
  return notificationNames.get(id);
}
/** A printable name for any message id (unknown ids print as hex). */
export function msgName(id: number, notification = false): string {
  return (
    (notification ? notificationNames.get(id) : requestNames.get(id)) ??
    requestNames.get(id) ??
    notificationNames.get(id) ??
    `UNKNOWN_0x${(id >>> 0).toString(16).padStart(8, "0")}`
  );
}
