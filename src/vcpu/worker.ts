/**
 * Entry point of a vCPU thread. For each job it opens the vCPU through the backend module
 * named in the transfer, builds its own device bus from the device specs, loads the boot
 * state, runs the loop, releases the vCPU and only then posts one "exit" message, so the
 * owning thread may close the vCPU as soon as it sees it. It alone issues the vCPU's ioctls.
 *
 * A single-use thread gets its job in workerData; a pooled one waits for "run" messages and
 * takes jobs one after the other.
 */
import { parentPort, workerData } from "node:worker_threads";
import { TsvisorError } from "../core/errors.js";
import type { UnclaimedCounts } from "../devices/bus.js";
import { buildBus } from "../devices/specs.js";
import { applyBootState, type OpenVcpu, type Vcpu } from "../hv/types.js";
import { VcpuControl } from "./control.js";
import type { StopReason } from "./exit-handler.js";
import { errorReason, newStats, runVcpu } from "./run-loop.js";
import { openUserIrqVcpu } from "./user-loop.js";
import type { MainMessage, VcpuJob, WorkerMessage, WorkerStart } from "./vcpu-thread.js";

const port = parentPort;

function post(message: WorkerMessage): void {
  port?.postMessage(message);
}

async function openBackend(module: string): Promise<OpenVcpu> {
  const mod = (await import(module).catch((e: unknown) => {
    throw new TsvisorError("VCPU_WORKER", `cannot load the vCPU backend module: ${String(e)}`);
  })) as { openVcpu?: OpenVcpu };
  if (typeof mod.openVcpu !== "function") {
    throw new TsvisorError("VCPU_WORKER", `${module} does not export openVcpu`);
  }
  return mod.openVcpu;
}

async function runJob(job: VcpuJob): Promise<void> {
  const stats = newStats();
  const control = new VcpuControl(job.control);
  let vcpu: Vcpu | undefined;
  let reason: StopReason;
  let unclaimed: UnclaimedCounts | undefined;
  try {
    vcpu = (await openBackend(job.transfer.module))(job.transfer);
    if (job.boot) applyBootState(vcpu, job.boot);
    const bus = buildBus(job.devices, (message) => post({ type: "log", message }));
    const irq = job.irq ? openUserIrqVcpu(job.irq, job.transfer.index) : undefined;
    reason = runVcpu({ vcpu, bus, control, stats, ...(irq ? { irq } : {}) });
    unclaimed = { ...bus.unclaimed };
  } catch (e) {
    reason = errorReason(e);
    unclaimed = undefined;
  }
  try {
    vcpu?.close();
  } catch (e) {
    if (reason.kind !== "error") reason = errorReason(e);
  }
  post({ type: "exit", reason, stats, unclaimed });
}

const start = workerData as WorkerStart;
if (start.job) {
  await runJob(start.job);
} else {
  port?.on("message", (m: MainMessage) => {
    if (m.type === "run") void runJob(m.job);
  });
}
