/** RM error codes carried in replies (rm-protocol.md §2.1) and the Linux errno each maps to. */

export const RmError = {
  OK: 0x0,
  NOMEM: 0x1,
  NORESOURCE: 0x2,
  DENIED: 0x3,
  MSG_INVALID: 0x4,
  BUSY: 0x5,
  ARGUMENT_INVALID: 0x6,
  HANDLE_INVALID: 0x7,
  VALIDATE_FAILED: 0x8,
  MAP_FAILED: 0x9,
  MEM_INVALID: 0xa,
  MEM_INUSE: 0xb,
  MEM_RELEASED: 0xc,
  VMID_INVALID: 0xd,
  LOOKUP_FAILED: 0xe,
  IRQ_INVALID: 0xf,
  IRQ_INUSE: 0x10,
  IRQ_RELEASED: 0x11,
  IN_USE: 0x12,
  IRQ_NOT_MAPPED: 0x13,
  VM_STATE: 0x14,
  UNIMPLEMENTED: 0xffffffff,
} as const;
export type RmErrorName = keyof typeof RmError;
export type RmError = (typeof RmError)[RmErrorName];

const names = new Map<number, RmErrorName>(
  Object.entries(RmError).map(([k, v]) => [v, k as RmErrorName]),
);

export function rmErrorName(code: number): string {
  return names.get(code >>> 0) ?? `RM_ERROR_0x${(code >>> 0).toString(16)}`;
}

export function rmErrorFromName(name: string): number | undefined {
  return name in RmError ? RmError[name as RmErrorName] : undefined;
}

/** Linux errno names and numbers (positive) for the mapping Linux v16 applies. */
export const Errno = {
  EPERM: 1,
  ENOMEM: 12,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
  EBADMSG: 74,
  EOPNOTSUPP: 95,
} as const;
export type ErrnoName = keyof typeof Errno;

/** What Linux's rsc_mgr returns (negated) for an RM error: unknown codes become EBADMSG. */
export function rmErrorToErrno(code: number): { name: ErrnoName | "OK"; errno: number } {
  switch (code >>> 0) {
    case RmError.OK:
      return { name: "OK", errno: 0 };
    case RmError.UNIMPLEMENTED:
      return { name: "EOPNOTSUPP", errno: -Errno.EOPNOTSUPP };
    case RmError.NOMEM:
      return { name: "ENOMEM", errno: -Errno.ENOMEM };
    case RmError.NORESOURCE:
      return { name: "ENODEV", errno: -Errno.ENODEV };
    case RmError.DENIED:
      return { name: "EPERM", errno: -Errno.EPERM };
    case RmError.BUSY:
      return { name: "EBUSY", errno: -Errno.EBUSY };
    case RmError.MSG_INVALID:
    case RmError.ARGUMENT_INVALID:
    case RmError.HANDLE_INVALID:
    case RmError.VALIDATE_FAILED:
    case RmError.MAP_FAILED:
    case RmError.MEM_INVALID:
    case RmError.MEM_INUSE:
    case RmError.MEM_RELEASED:
    case RmError.VMID_INVALID:
    case RmError.LOOKUP_FAILED:
    case RmError.IRQ_INVALID:
    case RmError.IRQ_INUSE:
    case RmError.IRQ_RELEASED:
      return { name: "EINVAL", errno: -Errno.EINVAL };
    default:
      return { name: "EBADMSG", errno: -Errno.EBADMSG };
  }
}
