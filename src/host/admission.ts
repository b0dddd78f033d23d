import { type ErrorCode, TsvisorError } from "../core/errors.js";
import type { VmState } from "./types.js";

/**
 * Which action each VM state admits, as data (docs/api.md has the same table). An action that
 * is refused says why in one sentence, with API_BUSY for states that are an operation in
 * flight (try again) and API_STATE for states where the action makes no sense.
 */

export type VmAction = "start" | "stop" | "reset" | "destroy";

export const VM_ACTIONS: readonly VmAction[] = ["start", "stop", "reset", "destroy"];

export const VM_STATES: readonly VmState[] = [
  "creating",
  "created",
  "starting",
  "running",
  "stopping",
  "exited",
  "resetting",
  "destroying",
  "destroyed",
];

type Verdict = "ok" | readonly [ErrorCode, string];

const BUSY = (what: string): Verdict => [
  "API_BUSY",
  `the VM is ${what}; try again when it is done`,
];
const GONE: Verdict = ["API_VM_GONE", "the VM was destroyed"];

export const ADMISSION: Readonly<Record<VmAction, Readonly<Record<VmState, Verdict>>>> = {
  start: {
    creating: BUSY("being created"),
    created: "ok",
    starting: BUSY("starting"),
    running: ["API_STATE", "the VM is already running"],
    stopping: ["API_STATE", "the VM is running (stopping)"],
    exited: ["API_STATE", "the VM has exited; reset it before starting it again"],
    resetting: BUSY("resetting"),
    destroying: BUSY("being destroyed"),
    destroyed: GONE,
  },
  stop: {
    creating: BUSY("being created"),
    created: ["API_STATE", "the VM has not been started"],
    starting: BUSY("starting"),
    running: "ok",
    // A second stop waits for the same exit, and a forced one escalates a graceful one.
    stopping: "ok",
    exited: ["API_STATE", "the VM has already exited"],
    resetting: BUSY("resetting"),
    destroying: BUSY("being destroyed"),
    destroyed: GONE,
  },
  reset: {
    creating: BUSY("being created"),
    created: "ok",
    starting: BUSY("starting"),
    running: "ok",
    stopping: BUSY("stopping"),
    exited: "ok",
    resetting: BUSY("resetting"),
    destroying: BUSY("being destroyed"),
    destroyed: GONE,
  },
  destroy: {
    creating: BUSY("being created"),
    created: "ok",
    starting: BUSY("starting"),
    running: "ok",
    stopping: "ok",
    exited: "ok",
    resetting: BUSY("resetting"),
    destroying: BUSY("being destroyed"),
    destroyed: GONE,
  },
};

/** Throws the coded refusal, if the table has one for this pair. */
export function admit(action: VmAction, state: VmState, vm: string): void {
  const v = ADMISSION[action][state];
  if (v === "ok") return;
  throw new TsvisorError(v[0], `${action} ${vm}: ${v[1]}`, { vm, state, action });
}
