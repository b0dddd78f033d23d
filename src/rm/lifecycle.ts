import { RequestId } from "../protocol/catalogue.js";
import { Vmid, VmStatus } from "../protocol/enums.js";
import { RmError } from "../protocol/rm-error.js";

/**
 * The VM lifecycle as data (rm-protocol.md §4): which state changes are valid, and for every
 * call the RM implements, who may make it and in which states of the target VM.
 */

export type VmState = VmStatus;

/** Every VM status value the protocol defines, in numeric order. */
export const ALL_STATES: readonly VmState[] = Object.values(VmStatus).sort((a, b) => a - b);

/** §4.1: for each target state, the states a VM may enter it from. */
export const TRANSITIONS: Readonly<Record<VmState, readonly VmState[]>> = {
  [VmStatus.LOAD]: [VmStatus.NO_STATE],
  [VmStatus.AUTH]: [VmStatus.LOAD, VmStatus.RESET],
  [VmStatus.INIT]: [VmStatus.LOAD, VmStatus.AUTH, VmStatus.RESET],
  [VmStatus.READY]: [VmStatus.INIT],
  [VmStatus.RUNNING]: [VmStatus.READY, VmStatus.PAUSED],
  [VmStatus.PAUSED]: [VmStatus.RUNNING],
  [VmStatus.INIT_FAILED]: [
    VmStatus.INIT,
    VmStatus.READY,
    VmStatus.LOAD,
    VmStatus.AUTH,
    VmStatus.RESET,
  ],
  [VmStatus.EXITED]: [VmStatus.RUNNING, VmStatus.PAUSED],
  [VmStatus.RESETTING]: [VmStatus.EXITED, VmStatus.READY, VmStatus.INIT_FAILED],
  [VmStatus.RESET]: [VmStatus.RESETTING],
  [VmStatus.NO_STATE]: [VmStatus.RESET],
};

export function canTransition(from: VmState, to: VmState): boolean {
  return TRANSITIONS[to].includes(from);
}

/** Who the caller must be, judged on its VMID alone. */
export type CallerClass =
  /** only HLOS (VMID 3) */
  | "hlos"
  /** any VM but HLOS: guests talking to the RM about themselves */
  | "guest"
  /** any VM but the hypervisor (VMID 0) */
  | "not-hyp"
  | "any";

/** Which VM the call is about. */
export type TargetRule =
  /** no VM (VM_ALLOC_VMID, VM_GET_VMID, VM_HOST_GET_TYPE) */
  | "none"
  /** the VMID in the payload */
  | "payload"
  /** the VMID in the payload, 0 meaning the caller */
  | "payload-or-self"
  /** the caller itself */
  | "self";

/** How the caller must relate to the target VM. */
export type Relation = "owner" | "owner-or-self" | "related" | "none";

export interface Admission {
  readonly caller: CallerClass;
  /** Error when the caller class does not match. */
  readonly callerError: number;
  readonly target: TargetRule;
  /** Error when the target VMID names no VM. */
  readonly unknownVm: number;
  readonly relation: Relation;
  readonly relationError: number;
  /** States of the target VM the call is allowed in; "any" includes every state. */
  readonly states: readonly VmState[] | "any";
  readonly stateError: number;
}

/** What admission needs to know about the target VM. */
export interface VmView {
  readonly vmid: number;
  readonly status: VmState;
  readonly owner: number;
  /** The VM's peers (owner, vdevice partners, VMs it owns). */
  readonly peers: ReadonlySet<number>;
}

const S = VmStatus;
const E = RmError;

const base = {
  caller: "any",
  callerError: E.DENIED,
  target: "payload",
  unknownVm: E.VMID_INVALID,
  relation: "none",
  relationError: E.DENIED,
  states: "any",
  stateError: E.VM_STATE,
} as const satisfies Admission;

function rule(r: Partial<Admission>): Admission {
  return { ...base, ...r };
}

const ownerIn = (states: readonly VmState[], relationError: number = E.DENIED): Admission =>
  rule({ relation: "owner", relationError, states });
const hlosOwnerIn = (states: readonly VmState[]): Admission =>
  rule({ caller: "hlos", relation: "owner", states });
/** Memory-parcel calls: the caller must be a VM the RM knows; the parcel rules do the rest. */
const memCall = rule({ target: "self", unknownVm: E.DENIED });
const consoleCall = rule({ target: "payload-or-self", relation: "owner-or-self" });

/** States in which a VM has a configuration (CONFIG_IMAGE succeeded and no reset started). */
export const CONFIGURED_STATES: readonly VmState[] = [
  S.AUTH,
  S.INIT,
  S.READY,
  S.RUNNING,
  S.PAUSED,
  S.EXITED,
  S.INIT_FAILED,
];

const R = RequestId;

/**
 * The admission table (§3.2, §3.3, §4.2). Checks run in this order: caller class, target lookup,
 * relation, state; the first failure is the reply's error. Calls that are not listed are not
 * implemented (UNIMPLEMENTED).
 */
export const ADMISSION: ReadonlyMap<number, Admission> = new Map<number, Admission>([
  [R.VM_ALLOC_VMID, rule({ caller: "hlos", target: "none" })],
  [R.VM_DEALLOC_VMID, ownerIn([S.LOAD, S.RESET])],
  [R.VM_START, rule({ caller: "not-hyp", relation: "owner", states: [S.READY] })],
  // The RM answers VMID_INVALID to a non-owner for STOP and RESET (it looks the VM up among
  // the caller's own VMs), but DENIED for DEALLOC.
  [R.VM_STOP, ownerIn([S.RUNNING, S.PAUSED], E.VMID_INVALID)],
  [R.VM_RESET, ownerIn([S.EXITED, S.READY, S.INIT_FAILED], E.VMID_INVALID)],
  [R.VM_CONFIG_IMAGE, hlosOwnerIn([S.LOAD, S.RESET])],
  [R.VM_AUTH_IMAGE, hlosOwnerIn([S.AUTH])],
  [R.VM_INIT, hlosOwnerIn([S.INIT])],
  [R.VM_SET_BOOT_CONTEXT, ownerIn([S.READY])],
  [R.VM_SET_DEMAND_PAGING, ownerIn([S.INIT])],
  [R.VM_SET_ADDRESS_LAYOUT, ownerIn([S.INIT])],
  [
    R.VM_GET_HYP_RESOURCES,
    rule({
      caller: "not-hyp",
      unknownVm: E.ARGUMENT_INVALID,
      states: CONFIGURED_STATES,
      stateError: E.NORESOURCE,
    }),
  ],
  [R.VM_GET_STATE, rule({ target: "payload-or-self", relation: "related" })],
  [R.VM_SET_STATUS, rule({ caller: "guest", target: "self" })],
  [R.VM_EXIT, rule({ caller: "guest", target: "self", states: [S.RUNNING, S.PAUSED] })],
  [R.VM_GET_VMID, rule({ target: "none" })],
  [R.VM_GET_OWNER, rule({ target: "self" })],
  [R.VM_GET_PEERS, rule({ target: "self" })],
  [R.VM_HOST_GET_TYPE, rule({ target: "none" })],
  [R.VM_GET_CRASH_MSG, rule({ relation: "owner" })],
  [R.VM_SET_CRASH_MSG, rule({ target: "self" })],
  [
    R.VM_GET_ID,
    rule({
      target: "payload-or-self",
      relation: "related",
      states: [S.READY, S.RUNNING, S.PAUSED],
    }),
  ],
  [
    R.VM_SET_TIME_BASE,
    rule({ target: "payload-or-self", relation: "related", states: [S.INIT, S.READY] }),
  ],
  [
    R.VM_SET_FIRMWARE_MEM,
    rule({ target: "payload-or-self", relation: "related", states: [S.INIT] }),
  ],
  [R.VM_CONSOLE_OPEN, consoleCall],
  [R.VM_CONSOLE_CLOSE, consoleCall],
  [R.VM_CONSOLE_WRITE, consoleCall],
  [R.VM_CONSOLE_FLUSH, consoleCall],
  [R.MEM_LEND, memCall],
  [R.MEM_SHARE, memCall],
  [R.MEM_DONATE, memCall],
  [R.MEM_APPEND, memCall],
  [R.MEM_ACCEPT, memCall],
  [R.MEM_RELEASE, memCall],
  [R.MEM_RECLAIM, memCall],
  [R.MEM_NOTIFY, memCall],
]);

function callerMatches(c: CallerClass, caller: number): boolean {
  switch (c) {
    case "hlos":
      return caller === Vmid.HLOS;
    case "guest":
      return caller !== Vmid.HLOS;
    case "not-hyp":
      return caller !== Vmid.HYP;
    case "any":
      return true;
  }
}

/** The VMID a call is about, or undefined for calls about no VM. */
export function targetVmid(
  a: Admission,
  caller: number,
  payloadVmid: number | undefined,
): number | undefined {
  switch (a.target) {
    case "none":
      return undefined;
    case "self":
      return caller;
    case "payload":
      return payloadVmid;
    case "payload-or-self":
      return payloadVmid === 0 ? caller : payloadVmid;
  }
}

function relationHolds(r: Relation, caller: number, vm: VmView): boolean {
  switch (r) {
    case "none":
      return true;
    case "owner":
      return vm.owner === caller;
    case "owner-or-self":
      return vm.owner === caller || vm.vmid === caller;
    case "related":
      return vm.owner === caller || vm.vmid === caller || vm.peers.has(caller);
  }
}

/**
 * Judges one call: RmError.OK if it may proceed, else the error to reply. `vm` is the target
 * looked up by `targetVmid` (undefined when the VMID names no VM, or for calls without target).
 */
export function admit(a: Admission, caller: number, vm: VmView | undefined): number {
  if (!callerMatches(a.caller, caller)) return a.callerError;
  if (a.target === "none") return E.OK;
  if (vm === undefined) return a.unknownVm;
  if (!relationHolds(a.relation, caller, vm)) return a.relationError;
  if (a.states !== "any" && !a.states.includes(vm.status)) return a.stateError;
  return E.OK;
}
