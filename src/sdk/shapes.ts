import { VM_STATES } from "../host/admission.js";
import type { ExitInfo, HostEvent, HostInfo, VmInfo, VmState } from "../host/types.js";

/**
 * Structural checks of what the daemon sends: enough that code reading a VmInfo, HostInfo or
 * HostEvent finds the fields it relies on with the right types. Fields this client does not
 * know are allowed, so a newer daemon can add some.
 */

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);
const isStr = (v: unknown): v is string => typeof v === "string";
const intOrNull = (v: unknown) => v === null || isInt(v);
const strOrNull = (v: unknown) => v === null || isStr(v);

const STATES: ReadonlySet<string> = new Set<VmState>(VM_STATES);

export function isExitInfo(v: unknown): v is ExitInfo {
  return (
    isObj(v) &&
    isStr(v.exit_type) &&
    isInt(v.exit_code) &&
    isInt(v.exit_flags) &&
    isInt(v.status) &&
    isStr(v.description) &&
    (v.initiator === "guest" || v.initiator === "host") &&
    isStr(v.time)
  );
}

export function isVmInfo(v: unknown): v is VmInfo {
  return (
    isObj(v) &&
    isStr(v.id) &&
    isStr(v.name) &&
    isStr(v.state) &&
    STATES.has(v.state) &&
    intOrNull(v.vmid) &&
    strOrNull(v.rm_status) &&
    isInt(v.os_status) &&
    isInt(v.app_status) &&
    isInt(v.memory) &&
    isInt(v.vcpus) &&
    isStr(v.irqchip) &&
    isStr(v.image) &&
    isStr(v.created_at) &&
    strOrNull(v.started_at) &&
    (v.exit === null || isExitInfo(v.exit)) &&
    Array.isArray(v.resources) &&
    isInt(v.runs) &&
    isInt(v.console_bytes)
  );
}

export function isVmList(v: unknown): v is { vms: VmInfo[] } {
  return isObj(v) && Array.isArray(v.vms) && v.vms.every(isVmInfo);
}

export function isHostInfo(v: unknown): v is HostInfo {
  return (
    isObj(v) &&
    isStr(v.version) &&
    (v.backend === "kvm" || v.backend === "sim") &&
    isObj(v.limits) &&
    isInt(v.limits.max_vms) &&
    isInt(v.limits.memory_budget) &&
    isObj(v.usage) &&
    isInt(v.usage.vms) &&
    isInt(v.usage.memory) &&
    isInt(v.next_event) &&
    isInt(v.oldest_event) &&
    typeof v.shutting_down === "boolean"
  );
}

export function isHostEvent(v: unknown): v is HostEvent {
  return (
    isObj(v) &&
    isInt(v.seq) &&
    v.seq > 0 &&
    isStr(v.time) &&
    isStr(v.type) &&
    isStr(v.vm) &&
    intOrNull(v.vmid) &&
    (v.exit === undefined || isExitInfo(v.exit))
  );
}
