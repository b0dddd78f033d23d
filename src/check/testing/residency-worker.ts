/**
 * Test fixture: a vCPU thread that runs the production residency protocol for real (Atomics on
 * a SharedArrayBuffer, in a worker): take what is pending, acknowledge each round, halt in
 * WFI otherwise, park while paused, stop on STOP.
 */
import { parentPort, workerData } from "node:worker_threads";
import { VcpuResidency } from "../../vcpu/residency.js";

interface Start {
  readonly residency: SharedArrayBuffer;
  /** Word 0: rounds acknowledged. */
  readonly ack: SharedArrayBuffer;
  readonly rounds: number;
}

const { residency, ack, rounds } = workerData as Start;
const r = new VcpuResidency(residency);
const acks = new Int32Array(ack);
let wfis = 0;
r.load();
let done = 0;
while (done < rounds) {
  if (!r.waitWhilePaused()) break;
  const got = r.takePending();
  if (got !== 0) {
    done++;
    Atomics.store(acks, 0, done);
    Atomics.notify(acks, 0);
    continue;
  }
  wfis++;
  r.wfi();
}
r.put();
parentPort?.postMessage({ done, wfis });
