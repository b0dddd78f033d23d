/**
 * The vCPU thread's loop under the user irqchip (no in-kernel irqchip; docs/user-irqchip.md).
 * The kernel-irqchip loop (run-loop.ts `running`/`halted`) is untouched by this mode.
 *
 * Per iteration, before each guest entry:
 *   1. STOP ends the run; PAUSE parks the vCPU (put, wait while paused, load); RELOAD applies
 *      the staged routes between a put and a load. All three are sticky request bits that the
 *      requester follows with a kick or a doorbell ring (residency.ts `request`, `pause`).
 *   2. A halted vCPU (it executed HLT) sleeps in the residency's WFI path until an interrupt
 *      is pending or a request ends the sleep; it does not enter the guest without one.
 *   3. The sticky KICK bit is cleared, then PENDING read: if the guest can take an interrupt
 *      now (kvm_run.ready_for_interrupt_injection && if_flag from the last exit) the lowest
 *      pending vector is taken and queued with KVM_INTERRUPT, at most one per entry; if
 *      anything is still pending the interrupt window is requested, so KVM returns as soon
 *      as the guest can take the next one.
 * The vCPU stays resident throughout, except inside WFI, a pause or a reload: an injector
 * that finds it resident kicks it (immediate_exit + signal), so a run that started before the
 * publish returns and this loop sees the new bit.
 */
import { TsvisorError } from "../core/errors.js";
import type { Vcpu } from "../hv/types.js";
import { VcpuState } from "./control.js";
import { handleExit, type StopReason } from "./exit-handler.js";
import { ResidencyWord, VcpuRequest, VcpuResidency } from "./residency.js";
import type { RunContext } from "./run-loop.js";
import { IrqRequest, type UserIrqVcpuConfig } from "./user-irqchip.js";
import { IrqRoutes, lowestVector, vectorBit } from "./vector-model.js";

export interface UserIrqStats {
  /** Interrupts queued with KVM_INTERRUPT. */
  injected: number;
  /** Interrupt-window exits. */
  windows: number;
  /** Sleeps in WFI (each HLT with nothing pending is one, and so is each re-sleep). */
  wfis: number;
  /** Route reloads applied (put + apply + load). */
  reloads: number;
  /** Pauses parked through. */
  pauses: number;
}

export function newIrqStats(): UserIrqStats {
  return { injected: 0, windows: 0, wfis: 0, reloads: 0, pauses: 0 };
}

/** The vCPU thread's side of the user irqchip for one vCPU. */
export interface UserIrqVcpu {
  readonly index: number;
  /** This thread's view: it never kicks itself (it reads PENDING before every entry). */
  readonly residency: VcpuResidency;
  readonly routes: IrqRoutes;
  /**
   * The residency words, read directly for the two peeks the residency API lacks (PENDING
   * and REQUESTS without taking them); every change still goes through `residency`.
   */
  readonly words: Int32Array;
}

export function openUserIrqVcpu(config: UserIrqVcpuConfig, index: number): UserIrqVcpu {
  return {
    index,
    residency: new VcpuResidency(config.residency),
    routes: new IrqRoutes(config.routes, config.vcpus),
    words: new Int32Array(config.residency),
  };
}

const { PENDING, REQUESTS } = ResidencyWord;
const { KICK, STOP, PAUSE } = VcpuRequest;
const { RELOAD } = IrqRequest;
/** Bits this loop acts on; any other would end every WFI at once, so it is dropped. */
const KNOWN = KICK | STOP | PAUSE | RELOAD;
const STOPPED: StopReason = { kind: "stopped" };

type UserVcpu = Vcpu &
  Required<
    Pick<Vcpu, "interruptReady" | "interruptFlag" | "injectInterrupt" | "requestInterruptWindow">
  >;

function userVcpu(vcpu: Vcpu): UserVcpu {
  if (
    !vcpu.interruptReady ||
    !vcpu.interruptFlag ||
    !vcpu.injectInterrupt ||
    !vcpu.requestInterruptWindow
  ) {
    throw new TsvisorError(
      "IRQ_UNSUPPORTED",
      "this backend's vCPUs cannot take interrupts from userspace (user irqchip)",
    );
  }
  return vcpu as UserVcpu;
}

/** Runs the vCPU under the user irqchip until it stops. Throws only on host failures. */
export function runUserIrqchip(ctx: RunContext, irq: UserIrqVcpu): StopReason {
  const { bus, control, stats } = ctx;
  const vcpu = userVcpu(ctx.vcpu);
  const r = irq.residency;
  const s = newIrqStats();
  stats.irq = s;
  /** The guest executed HLT and has not taken an interrupt since. */
  let halted = false;
  /** An interrupt was queued since the last run(), whose ready flag is therefore stale. */
  let queued = false;
  let window = false;
  r.load();
  try {
    for (;;) {
      const req = Atomics.load(irq.words, REQUESTS);
      if (control.stopRequested || (req & STOP) !== 0) return STOPPED;
      if ((req & ~KNOWN) !== 0) r.takeRequests(~KNOWN);
      if ((req & PAUSE) !== 0) {
        control.setState(VcpuState.HALTED);
        r.put();
        if (!r.waitWhilePaused()) return STOPPED;
        r.load();
        s.pauses++;
        continue;
      }
      if ((req & RELOAD) !== 0) {
        // Taken before applying: a route staged after this is applied on the next RELOAD.
        r.takeRequests(RELOAD);
        r.put();
        irq.routes.applyStaged(irq.index);
        r.load();
        s.reloads++;
        continue;
      }
      if (halted) {
        if (!vcpu.interruptFlag()) {
          // HLT with interrupts off: no interrupt can end it (real hardware would need an NMI
          // or INIT); only a request does.
          control.setState(VcpuState.HALTED);
          Atomics.wait(irq.words, REQUESTS, req);
          continue;
        }
        if (Atomics.load(irq.words, PENDING) === 0) {
          control.setState(VcpuState.HALTED);
          r.wfi();
          s.wfis++;
          continue;
        }
        halted = false;
      }
      // Cleared before PENDING is read: a kick after this point finds its bit below, or
      // makes the coming KVM_RUN return at once (immediate_exit).
      r.takeRequests(KICK);
      let pending = Atomics.load(irq.words, PENDING);
      if (pending !== 0 && !queued && vcpu.interruptReady()) {
        const vector = lowestVector(pending);
        if (vector !== undefined && r.takePending(vectorBit(vector)) !== 0) {
          vcpu.injectInterrupt(vector);
          queued = true;
          s.injected++;
        }
        pending = Atomics.load(irq.words, PENDING);
      }
      const want = pending !== 0;
      if (want !== window) {
        vcpu.requestInterruptWindow(want);
        window = want;
      }
      if (control.state !== VcpuState.RUNNING) control.setState(VcpuState.RUNNING);
      const exit = vcpu.run();
      // From here kvm_run's ready flag is current again: false while an interrupt is queued
      // but not yet delivered (a run that returned -EINTR before entering keeps it queued).
      queued = false;
      stats.exits++;
      const action = handleExit(exit, bus);
      switch (action.kind) {
        case "continue":
          if (exit.kind === "io") stats.io++;
          else if (exit.kind === "mmio") stats.mmio++;
          else if (exit.kind === "irq-window") s.windows++;
          break;
        case "interrupted":
          stats.kicks++;
          vcpu.clearKick();
          break;
        case "halt":
          stats.halts++;
          halted = true;
          break;
        case "stop":
          return action.reason;
      }
    }
  } finally {
    // Gone: injectors leave their bits pending from now on instead of kicking.
    r.put();
  }
}
