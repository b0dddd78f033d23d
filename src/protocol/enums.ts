/** Enumerations of the RM protocol (rm-protocol.md §3.5). */

export const VmStatus = {
  NO_STATE: 0,
  INIT: 1,
  READY: 2,
  RUNNING: 3,
  PAUSED: 4,
  LOAD: 5,
  AUTH: 6,
  INIT_FAILED: 8,
  EXITED: 9,
  RESETTING: 10,
  RESET: 11,
} as const;
export type VmStatusName = keyof typeof VmStatus;
export type VmStatus = (typeof VmStatus)[VmStatusName];

export const OsStatus = {
  NONE: 0,
  EARLY_BOOT: 1,
  BOOT: 2,
  INIT: 3,
  RUN: 4,
  SHUTDOWN: 5,
  HALTED: 6,
  CRASHED: 7,
} as const;
export type OsStatus = (typeof OsStatus)[keyof typeof OsStatus];

export const ExitType = {
  VM_EXIT: 0,
  PLATFORM_OFF: 1,
  PLATFORM_RESET: 2,
  PSCI_SYSTEM_RESET2: 3,
  WATCHDOG_BITE: 4,
  SOFTWARE_ERROR: 5,
  ASYNC_HW_ERROR: 6,
  VM_STOP_FORCED: 7,
} as const;
export type ExitType = (typeof ExitType)[keyof typeof ExitType];

/** Exit codes as the open-source RM numbers them (the wire position is bits 23:16 of word 0). */
export const ExitCode = {
  NORMAL: 0,
  SOFTWARE_ERROR: 1,
  UNKNOWN_ERROR: 2,
  BUS_ERROR: 3,
  DEVICE_ERROR: 4,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
/** Exit codes a guest may send in VM_EXIT. */
export const VM_EXIT_VALID_CODES: readonly number[] = [0, 1, 3, 4];

export const ExitFlags = { RESTART: 1 << 0, SMC64: 1 << 15 } as const;

export const StopFlags = { FORCE_STOP: 1 << 0 } as const;
export const StopReason = { SHUTDOWN: 0, RESTART: 1, CRASH: 2, FORCE_STOP: 3 } as const;

/** auth_mech in VM_CONFIG_IMAGE, RM numbering (Linux v16 always sends NONE). */
export const AuthMech = { NONE: 0, PLATFORM: 1, ANDROID: 2 } as const;
export type AuthMech = (typeof AuthMech)[keyof typeof AuthMech];

export const ResourceType = {
  BELL_TX: 0,
  BELL_RX: 1,
  MSGQ_TX: 2,
  MSGQ_RX: 3,
  VCPU: 4,
  VIRTUAL_PM: 5,
  VIRTIO_MMIO: 6,
  VRTC: 7,
  WATCHDOG: 8,
  MEM_EXTENT: 9,
  ADDR_SPACE: 10,
} as const;
export type ResourceType = (typeof ResourceType)[keyof typeof ResourceType];

/** MEM_EXTENT labels Linux v16 tickets on (rm-protocol.md §5.4). */
export const MemExtentLabel = {
  GUEST_PRIVATE: 0,
  HOST_SHARED: 1,
  HOST_PRIVATE: 2,
  GUEST_SHARED: 3,
} as const;

export const Vmid = {
  HYP: 0,
  HLOS: 3,
  DYNAMIC_FIRST: 0x80,
  DYNAMIC_LAST: 0xbe,
  RM: 0xff,
  ANY: 0xfffe,
  PEER_DEFAULT: 0xffff,
} as const;

export const MemType = { NORMAL: 0, IO: 1 } as const;
export const TransType = { DONATE: 0, LEND: 1, SHARE: 2 } as const;
export const MemFlags = { SANITIZE: 1 << 0, APPEND: 1 << 1 } as const;
export const MemAppendFlags = { END: 1 << 0 } as const;
export const AclRights = { X: 1, W: 2, R: 4 } as const;
export const MemAttr = { NORMAL: 0, DEVICE: 1, UNCACHED: 2, CACHED: 3 } as const;
export const MemAcceptFlags = {
  VALIDATE_SANITIZED: 1,
  VALIDATE_ACL_ATTR: 2,
  VALIDATE_LABEL: 4,
  MAP_OTHER: 8,
  MAP_CONTIGUOUS: 16,
  SANITIZE: 32,
  DONE: 128,
} as const;
export const MemNotifyFlags = { SHARED: 1, RELEASED: 2, ACCEPTED: 4, RECALL: 8 } as const;
export const MEM_HANDLE_INVALID = 0xffffffff;
export const MAX_LIST_ENTRIES = 512;
export const MAX_PARCELS_PER_OWNER = 64;

/** Boot-context register sets; on x86 X0–X15 are rax…r15 in KVM order. */
export const BootRegSet = { X: 0, PC: 1, SP: 2 } as const;
export const X86_GPR_NAMES = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rsp",
  "rbp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
] as const;

export const AddressRange = { IMAGE: 0, FIRMWARE: 1 } as const;

/**
 * VM_HOST_GET_TYPE: byte 0 architecture, byte 1 = 1 "Gunyah + RM", byte 3 = version 1.
 * The RM defines 0x64 for AArch64; tsvisor uses 0x86 for x86-64 (docs/rm-protocol.md).
 */
export const HostType = { AARCH64: 0x01000164, X86_64: 0x01000186 } as const;

/** Crash messages are stored up to this many bytes. */
export const CRASH_MSG_MAX = 192;

export function nameOf<T extends Record<string, number>>(table: T, value: number): string {
  for (const [k, v] of Object.entries(table)) if (v === value) return k;
  return `UNKNOWN_${value}`;
}
