/**
 * The error catalogue. Expected failures are TsvisorError with a stable code; broken
 * invariants are bugs and throw InvariantError. Codes never change meaning once published.
 */

export const ERROR_CODES = {
  // protocol/: wire format
  PROTO_SHORT: "a message is shorter than its 8-byte header",
  PROTO_API: "the header api byte is not 0x21",
  PROTO_TYPE: "the message type is not valid here",
  PROTO_FRAGMENTS: "the continuation count exceeds 62",
  PROTO_TOO_LONG: "a message is longer than 240 bytes or a payload exceeds the size limit",
  PROTO_CONTINUATION: "a continuation does not match the message being assembled",
  PROTO_PAYLOAD_LENGTH: "a payload has the wrong length for its message",
  PROTO_PAYLOAD_FIELD: "a payload field holds a value the protocol does not allow",
  PROTO_UNKNOWN_MSG: "the message id is not in the catalogue",
  PROTO_HEX: "the text is not valid hexadecimal",
  PROTO_JSON: "the JSON does not describe a message",
  FDT_MALFORMED: "the flattened devicetree is malformed",
  FDT_CONFIG: "the vm-config devicetree does not follow the schema",
  // rpc/: client and transports
  RPC_TIMEOUT: "the RM did not answer within the timeout",
  RPC_CLOSED: "the transport was closed",
  RPC_QUEUE_FULL: "the message queue is full",
  RPC_QUEUE_EMPTY: "the message queue is empty",
  RPC_FRAME: "a socket frame is malformed",
  RPC_RM_ERROR: "the RM replied with an error",
  RPC_BAD_REPLY: "the RM reply payload is malformed",
  RPC_ABORTED: "the call was aborted",
  RPC_BUSY: "every sequence number is taken by a call in flight",
  // vmm/
  VMM_STATE: "the VM is not in a state that allows this",
  VMM_CONFIG: "the VM configuration is invalid",
  VMM_MEMORY_LENT: "the host memory is lent to a VM and the host may not touch it",
  VMM_MEMORY: "the host memory region is unknown, freed or not backed by the hypervisor",
  // cli/
  CLI_USAGE: "the command line is not valid",
  // rm/
  RM_CONFIG: "the resource manager's configuration is invalid",
  // hv/, vcpu/, devices/, loader/: guests on KVM
  HV_NATIVE: "the native addon is missing or was built against different KVM headers",
  HV_UNAVAILABLE: "the hypervisor device cannot be opened",
  HV_SYSCALL: "a system call into the hypervisor failed",
  HV_MEMORY: "a guest memory region is invalid, overlaps another or is not mapped",
  HV_CLOSED: "the hypervisor object has already been closed",
  HV_LIMIT: "the hypervisor refused to create more of this object",
  VCPU_WORKER: "the vCPU worker thread failed",
  VCPU_STATE: "the vCPU is not in a state that allows this",
  DEV_CONFLICT: "two devices claim overlapping addresses",
  DEV_CONFIG: "a device specification is invalid",
  LOADER_FORMAT: "the guest image is malformed or of an unsupported kind",
  LOADER_RANGE: "the guest image does not fit in guest memory",
  // check/: the interleaving model checker
  CHECK_TOKEN: "the schedule token is malformed or does not fit the program",
  // hv/sim: the simulated backend
  SIM_PROGRAM: "a simulated guest program is malformed, unknown or failed",
  // vcpu/: the user irqchip
  IRQ_ROUTE: "an interrupt route names a GSI, vector or vCPU outside the user irqchip's model",
  IRQ_UNSUPPORTED: "the backend cannot deliver interrupts from userspace or kick from this thread",
  // host/, api/, sdk/: many VMs in one host, the daemon's HTTP API and its clients
  API_NOT_FOUND: "no VM, route or resource has that name",
  API_METHOD: "the route does not take this HTTP method",
  API_BAD_JSON: "the request body is not valid JSON",
  API_VALIDATION: "the request does not match the API's schema",
  API_MEDIA_TYPE: "the request body is not application/json",
  API_BODY_TOO_LARGE: "the request body is larger than the daemon accepts",
  API_STATE: "the VM's state does not allow this action",
  API_BUSY: "another operation on this VM is in progress",
  API_NAME_TAKEN: "a live VM already has this name",
  API_LIMIT_VMS: "the host's VM count limit is reached",
  API_LIMIT_MEMORY: "the host's memory budget does not have room for this VM",
  API_UNAUTHORIZED: "the request lacks the bearer token the daemon requires",
  API_CURSOR_EXPIRED: "the event cursor is older than the events the daemon still keeps",
  API_VM_GONE: "the VM was destroyed",
  API_SHUTTING_DOWN: "the host is shutting down and takes no new work",
  API_IMAGE: "the guest image cannot be read or named",
  API_CONNECT: "the daemon cannot be reached",
  API_PROTOCOL: "the daemon's answer is not what the API describes",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class TsvisorError extends Error {
  override readonly name = "TsvisorError";
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>) {
    super(message ?? ERROR_CODES[code]);
    this.code = code;
    this.details = details;
  }
}

export class InvariantError extends Error {
  override readonly name = "InvariantError";
}

/** Asserts a condition that only a bug can break. */
export function invariant(cond: unknown, message: string): asserts cond {
  if (!cond) throw new InvariantError(`invariant violated: ${message}`);
}

/** Marks a switch arm the type checker proves impossible. */
export function unreachable(value: never, message = "unreachable"): never {
  throw new InvariantError(`${message}: ${String(value)}`);
}

export function isTsvisorError(e: unknown, code?: ErrorCode): e is TsvisorError {
  return e instanceof TsvisorError && (code === undefined || e.code === code);
}
