import { isTsvisorError, unreachable } from "../core/errors.js";
import type { DeviceBus } from "../devices/bus.js";
import type { Vcpu } from "../hv/types.js";
import type { VcpuControl } from "./control.js";
import { VcpuState } from "./control.js";
import { handleExit, type StopReason } from "./exit-handler.js";
import { runUserIrqchip, type UserIrqStats, type UserIrqVcpu } from "./user-loop.js";

export interface RunStats {
  exits: number;
  io: number;
  mmio: number;
  halts: number;
  kicks: number;
  /** Only under the user irqchip. */
  irq?: UserIrqStats;
}

export interface RunContext {
  readonly vcpu: Vcpu;
  readonly bus: DeviceBus;
  readonly control: VcpuControl;
  readonly stats: RunStats;
  /** The user irqchip (VMs without the in-kernel one): its loop replaces running/halted. */
  readonly irq?: UserIrqVcpu;
}

export function newStats(): RunStats {
  return { exits: 0, io: 0, mmio: 0, halts: 0, kicks: 0 };
}

type Step =
  | { readonly next: "running" | "halted" }
  | { readonly next: "done"; readonly reason: StopReason };

const STOPPED: Step = { next: "done", reason: { kind: "stopped" } };

/** Runs the guest until an exit needs the host beyond the device bus. */
export function running(ctx: RunContext): Step {
  ctx.control.setState(VcpuState.RUNNING);
  for (;;) {
    // Checked before every entry: a stop posted while the previous exit was being handled
    // is seen here even if its kick landed outside KVM_RUN.
    if (ctx.control.stopRequested) return STOPPED;
    const exit = ctx.vcpu.run();
    ctx.stats.exits++;
    const action = handleExit(exit, ctx.bus);
    switch (action.kind) {
      case "continue":
        if (exit.kind === "io") ctx.stats.io++;
        else if (exit.kind === "mmio") ctx.stats.mmio++;
        break;
      case "interrupted":
        ctx.stats.kicks++;
        ctx.vcpu.clearKick();
        break;
      case "halt":
        ctx.stats.halts++;
        return { next: "halted" };
      case "stop":
        return { next: "done", reason: action.reason };
      default:
        unreachable(action, "exit action");
    }
  }
}

/**
 * HLT came back to userspace (no in-kernel irqchip): sleep until the host wakes or stops
 * the vCPU. Nothing in the guest can end this sleep on its own.
 */
export function halted(ctx: RunContext): Step {
  ctx.control.setState(VcpuState.HALTED);
  for (;;) {
    if (ctx.control.stopRequested) return STOPPED;
    if (ctx.control.takeWake()) return { next: "running" };
    ctx.control.waitForRequest();
  }
}

/** The driver: steps through the state functions until the vCPU is done. Never throws. */
export function runVcpu(ctx: RunContext): StopReason {
  let state: "running" | "halted" = "running";
  try {
    if (ctx.irq) return runUserIrqchip(ctx, ctx.irq);
    for (;;) {
      const step: Step = state === "running" ? running(ctx) : halted(ctx);
      if (step.next === "done") return step.reason;
      state = step.next;
    }
  } catch (e) {
    return errorReason(e);
  } finally {
    ctx.control.setState(VcpuState.EXITED);
  }
}

export function errorReason(e: unknown): StopReason {
  if (isTsvisorError(e)) return { kind: "error", code: e.code, message: e.message };
  const message = e instanceof Error ? (e.stack ?? e.message) : String(e);
  return { kind: "error", code: "BUG", message };
}
