import { unreachable } from "../core/errors.js";
import { ExitType, nameOf } from "../protocol/enums.js";
import type { StopReason } from "../vcpu/exit-handler.js";

/**
 * How a vCPU's end becomes the RM's VM_EXITED (exit type and code) and how an exit becomes
 * `tsvisor run`'s process status. Pure; the table is in docs/exits.md and each row is tested.
 */

/**
 * Exit codes tsvisor reports with exit type SOFTWARE_ERROR (5). 1–4 are the open-source RM's
 * ExitCode numbers; tsvisor's vCPU faults use 0x10 and up so a host can tell them apart.
 */
export const FaultCode = {
  /** KVM_EXIT_SHUTDOWN: the guest triple-faulted. */
  TRIPLE_FAULT: 0x10,
  /** KVM_EXIT_INTERNAL_ERROR, suberror 1: the host could not emulate an instruction. */
  EMULATION_FAILURE: 0x11,
  /** KVM_EXIT_INTERNAL_ERROR, any other suberror. */
  INTERNAL_ERROR: 0x12,
  /** KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the guest. */
  FAIL_ENTRY: 0x13,
  /** A KVM exit tsvisor does not handle. */
  UNKNOWN_EXIT: 0x14,
  /** The host side of the vCPU failed (an ioctl, the worker thread). */
  HOST_ERROR: 0x15,
} as const;

export interface ExitMapping {
  /** ExitType of the VM_EXITED notification. */
  readonly exitType: number;
  /** The exit code (bits 23:16 of the exit reason word, so 0–255). */
  readonly exitCode: number;
}

/** KVM_INTERNAL_ERROR_EMULATION. */
const EMULATION_SUBERROR = 1;

/**
 * The VM_EXITED a vCPU stop reason stands for, or undefined for `stopped` (the host asked
 * for it: the RM already moved the VM to EXITED with VM_STOP_FORCED or VM_EXIT).
 */
export function exitForStop(reason: StopReason): ExitMapping | undefined {
  switch (reason.kind) {
    case "power-off":
      return { exitType: ExitType.PLATFORM_OFF, exitCode: reason.code & 0xff };
    case "reset":
      return { exitType: ExitType.PLATFORM_RESET, exitCode: 0 };
    case "shutdown":
      return { exitType: ExitType.SOFTWARE_ERROR, exitCode: FaultCode.TRIPLE_FAULT };
    case "internal-error":
      return {
        exitType: ExitType.SOFTWARE_ERROR,
        exitCode:
          reason.suberror === EMULATION_SUBERROR
            ? FaultCode.EMULATION_FAILURE
            : FaultCode.INTERNAL_ERROR,
      };
    case "fail-entry":
      return { exitType: ExitType.SOFTWARE_ERROR, exitCode: FaultCode.FAIL_ENTRY };
    case "unknown":
      return { exitType: ExitType.SOFTWARE_ERROR, exitCode: FaultCode.UNKNOWN_EXIT };
    case "error":
      return { exitType: ExitType.SOFTWARE_ERROR, exitCode: FaultCode.HOST_ERROR };
    case "stopped":
      return undefined;
    default:
      return unreachable(reason, "stop reason");
  }
}

/** Added to the exit type for exits that carry no guest-chosen status, like a signal. */
export const STATUS_EXIT_TYPE_BASE = 0x80;

/**
 * `tsvisor run`'s process status for a VM exit: the guest's own code for PLATFORM_OFF (the
 * debug-exit byte) and VM_EXIT (the code the guest sent), 0x80 + exit type for the rest.
 */
export function processStatus(exit: ExitMapping): number {
  switch (exit.exitType) {
    case ExitType.PLATFORM_OFF:
    case ExitType.VM_EXIT:
      return exit.exitCode & 0xff;
    default:
      return (STATUS_EXIT_TYPE_BASE + exit.exitType) & 0xff;
  }
}

const hexByte = (b: number) => b.toString(16).padStart(2, "0");

/** The name of an exit code, where tsvisor gives it one. */
export function exitCodeName(exit: ExitMapping): string | undefined {
  if (exit.exitType !== ExitType.SOFTWARE_ERROR) return undefined;
  for (const [k, v] of Object.entries(FaultCode)) if (v === exit.exitCode) return k;
  return undefined;
}

/**
 * One line describing an exit for people: the exit type's name, the code, and what the vCPU
 * reported (faulting instruction bytes of an emulation failure, the host error…).
 */
export function describeExit(exit: ExitMapping, reason?: StopReason): string {
  const name = exitCodeName(exit);
  let text = `${nameOf(ExitType, exit.exitType)} code ${exit.exitCode}${name ? ` (${name})` : ""}`;
  const detail = reason ? stopDetail(reason) : undefined;
  if (detail) text += `: ${detail}`;
  return text;
}

/** The part of a stop reason worth showing beyond its exit type, if any. */
export function stopDetail(reason: StopReason): string | undefined {
  switch (reason.kind) {
    case "internal-error": {
      const bytes = reason.insn ? [...reason.insn].map(hexByte).join(" ") : undefined;
      return bytes
        ? `suberror ${reason.suberror}, instruction bytes ${bytes}`
        : `suberror ${reason.suberror}`;
    }
    case "fail-entry":
      return `hardware entry failure reason 0x${reason.reason.toString(16)} on cpu ${reason.cpu}`;
    case "unknown":
      return `KVM exit reason ${reason.reason}`;
    case "error":
      return `${reason.code}: ${reason.message.split("\n")[0]}`;
    case "shutdown":
      return "triple fault";
    default:
      return undefined;
  }
}

/** A stop reason as plain JSON (bigints as hex strings, bytes as hex). */
export function stopReasonJson(reason: StopReason): Record<string, unknown> {
  switch (reason.kind) {
    case "internal-error":
      return {
        kind: reason.kind,
        suberror: reason.suberror,
        ...(reason.insn ? { insn: [...reason.insn].map(hexByte).join("") } : {}),
        data: reason.data.map((d) => `0x${d.toString(16)}`),
      };
    case "fail-entry":
      return { kind: reason.kind, reason: `0x${reason.reason.toString(16)}`, cpu: reason.cpu };
    default:
      return { ...reason };
  }
}
