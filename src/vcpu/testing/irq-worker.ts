/**
 * A test helper thread that acts on a vCPU's user irqchip from outside, as an injector or the
 * VMM would: each step optionally waits until the vCPU's residency STATE has some bits, then
 * injects, raises or requests. With `shared` it opens the VM's user irqchip (kicking through
 * the backend's kickers); with `residency` it uses one vCPU's words and no kick (scripted
 * vCPUs need none). Posts "done" (or the error's message) when the steps are over.
 */
import { parentPort, workerData } from "node:worker_threads";
import { VcpuControl, VcpuState } from "../control.js";
import { ResidencyWord, VcpuResidency } from "../residency.js";
import { UserIrqchip, type UserIrqchipShared } from "../user-irqchip.js";
import { IrqRoutes } from "../vector-model.js";

/** When a step may run; all given conditions must hold. */
export interface IrqWhen {
  /** These residency STATE bits are set. */
  readonly whenState?: number;
  /** The vCPU thread published HALTED (asleep in userspace: WFI, a pause…); needs `control`. */
  readonly whenHalted?: boolean;
  /** GSI `gsi` is routed to `vector` (checked before the STATE bits); needs `routes`. */
  readonly whenRouted?: { readonly gsi: number; readonly vector: number };
}

export type IrqStep = IrqWhen &
  (
    | { readonly op: "inject"; readonly bits: number }
    | { readonly op: "request"; readonly bits: number }
    | { readonly op: "raise"; readonly gsi: number }
    | { readonly op: "pause" | "resume" }
  );

export interface IrqWorkerData {
  readonly shared?: UserIrqchipShared;
  readonly residency?: SharedArrayBuffer;
  /** The VM's route table, for `whenRouted`. */
  readonly routes?: SharedArrayBuffer;
  /** The vCPU's control words (VcpuControl), for `whenHalted`. */
  readonly control?: SharedArrayBuffer;
  /** The vCPU the steps address (its STATE is what `whenState` waits on). */
  readonly vcpu: number;
  readonly steps: readonly IrqStep[];
}

function holds(
  step: IrqWhen,
  words: Int32Array,
  control: VcpuControl | undefined,
  routes: IrqRoutes | undefined,
): boolean {
  if (step.whenRouted && routes?.route(step.whenRouted.gsi)?.vector !== step.whenRouted.vector) {
    return false;
  }
  const s = Atomics.load(words, ResidencyWord.STATE);
  if (step.whenState !== undefined && (s & step.whenState) !== step.whenState) return false;
  if (step.whenHalted && control?.state !== VcpuState.HALTED) return false;
  return true;
}

const d = workerData as IrqWorkerData;
const nap = new Int32Array(new SharedArrayBuffer(4));

async function main(): Promise<string> {
  const chip = d.shared ? await UserIrqchip.open(d.shared) : undefined;
  try {
    const r = chip ? chip.vcpu(d.vcpu) : new VcpuResidency(d.residency as SharedArrayBuffer);
    const words = new Int32Array(r.buffer);
    const control = d.control ? new VcpuControl(d.control) : undefined;
    const routes = d.routes ? new IrqRoutes(d.routes, 255) : undefined;
    for (const [i, step] of d.steps.entries()) {
      // Polled in 1 ms sleeps: the conditions span two words, and this bounds a hang only.
      const deadline = Date.now() + 10_000;
      while (!holds(step, words, control, routes)) {
        if (Date.now() > deadline) return `step ${i}: its condition never held`;
        Atomics.wait(nap, 0, 0, 1);
      }
      if (step.op === "inject") r.inject(step.bits);
      else if (step.op === "request") r.request(step.bits);
      else if (step.op === "raise") chip?.raise(step.gsi);
      else if (step.op === "pause") r.pause();
      else r.resume();
    }
    return "done";
  } finally {
    chip?.close();
  }
}

parentPort?.postMessage(await main().catch((e: unknown) => String(e)));
