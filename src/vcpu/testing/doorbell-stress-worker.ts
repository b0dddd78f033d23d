/**
 * The doorbell stress run's host threads (see ./doorbell-stress.ts): a ringer rings one vCPU's
 * doorbell, numbered, and waits for the guest's acknowledgement before the next ring; the chaos
 * worker reconfigures routes, reloads and pauses/resumes vCPUs at random moments until the
 * ringers are done. Each posts one report and ends.
 */
import { parentPort, workerData } from "node:worker_threads";
import { MailboxView } from "../../devices/mailbox.js";
import { loadNative, sysCheck } from "../../hv/kvm/native.js";
import { UserIrqchip } from "../user-irqchip.js";
import {
  type ChaosReport,
  type RingerReport,
  StressControl,
  type StressWorkerData,
  stateName,
  stressRoutes,
} from "./doorbell-stress.js";

const data = workerData as StressWorkerData;
const pause = new Int32Array(new SharedArrayBuffer(4));

/** Sleeps this thread for `us` microseconds (Atomics.wait on a word nobody changes). */
function sleepUs(us: number): void {
  if (us > 0) Atomics.wait(pause, 0, 0, us / 1000);
}

async function ringer(d: StressWorkerData & { role: "ringer" }): Promise<RingerReport> {
  const i = d.vcpu;
  const box = new MailboxView(d.mailbox);
  const ctl = new Int32Array(d.control);
  const chip = d.irqchip ? await UserIrqchip.open(d.irqchip) : undefined;
  const deliveries: Record<string, number> = {};
  let ring: () => void;
  if (chip) {
    ring = () => {
      const how = chip.raise(d.gsi);
      deliveries[how] = (deliveries[how] ?? 0) + 1;
    };
  } else {
    const sys = loadNative();
    const fd = d.eventfd ?? -1;
    ring = () => {
      sysCheck(sys.eventfdWrite(fd, 1n), "eventfd write (irqfd)");
    };
  }
  const latencyNs = d.latencies ? new Float64Array(d.rings) : undefined;
  const roundTripNs = d.latencies ? new Float64Array(d.rings) : undefined;
  const started = performance.now();
  let acked = 0;
  let maxAckMs = 0;
  const report = (extra: Partial<RingerReport>): RingerReport => ({
    vcpu: i,
    acked,
    elapsedMs: performance.now() - started,
    maxAckMs,
    ...(latencyNs ? { latencyNs, roundTripNs } : {}),
    ...(chip ? { deliveries } : {}),
    ...extra,
  });
  /**
   * Waits until register i holds `want`, starting from `from`; "ok", a wrong value, "stall"
   * after stallMs, or "abort".
   */
  const await_ = (from: number, want: number): "ok" | "stall" | "abort" | number => {
    const deadline = performance.now() + d.stallMs;
    for (;;) {
      const v = box.read(i);
      if (v === want) return "ok";
      if (v !== from) return v;
      if (Atomics.load(ctl, StressControl.ABORT) !== 0) return "abort";
      const left = deadline - performance.now();
      if (left <= 0) return "stall";
      box.waitChange(i, from, left);
    }
  };
  const stall = (ringNo: number): RingerReport =>
    report({
      stall: {
        vcpu: i,
        ring: ringNo,
        acked: box.read(i),
        residency: chip?.snapshot(i).text,
        state: stateName(Atomics.load(ctl, StressControl.STATE + i)),
      },
    });
  try {
    // The guest writes 0 once its interrupts are on (the register starts at -1).
    const ready = await_(-1, 0);
    if (ready === "stall") return stall(0);
    if (ready !== "ok") return report({ aborted: true });
    for (let n = 1; n <= d.rings; n++) {
      sleepUs(d.gapUs);
      const t0 = process.hrtime.bigint();
      ring();
      const got = await_(n - 1, n);
      if (got === "stall") return stall(n);
      if (got === "abort") return report({ aborted: true });
      if (got !== "ok") return report({ wrong: { ring: n, got } });
      const t1 = process.hrtime.bigint();
      acked = n;
      const ms = Number(t1 - t0) / 1e6;
      if (ms > maxAckMs) maxAckMs = ms;
      if (latencyNs && roundTripNs) {
        latencyNs[n - 1] = Number(box.stamp(i) - t0);
        roundTripNs[n - 1] = Number(t1 - t0);
      }
    }
    return report({});
  } finally {
    chip?.close();
  }
}

/** xorshift32: reproducible chaos from a seed. */
function rng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

async function chaos(d: StressWorkerData & { role: "chaos" }): Promise<ChaosReport> {
  const chip = await UserIrqchip.open(d.irqchip);
  const ctl = new Int32Array(d.control);
  const next = rng(d.seed);
  const flipped = new Array<number>(chip.vcpuCount).fill(0);
  let reconfigurations = 0;
  let remoteReloads = 0;
  let pauses = 0;
  try {
    while (Atomics.load(ctl, StressControl.DONE) === 0) {
      const i = next() % chip.vcpuCount;
      const op = next() % 10;
      if (op < 4) {
        // Re-route the vCPU's ring GSI to its other vector: its thread applies it between a
        // put and a load, woken by the RELOAD request even from WFI.
        flipped[i] = 1 - (flipped[i] ?? 0);
        const { gsi, routes } = stressRoutes(i);
        chip.reconfigure(gsi, routes[flipped[i] ?? 0]);
        reconfigurations++;
      } else if (op < 7) {
        // A put + load pair from this thread, which may land anywhere in the vCPU's WFI path.
        chip.vcpu(i).reload();
        remoteReloads++;
      } else {
        chip.pause(i);
        sleepUs(next() % 100);
        chip.resume(i);
        pauses++;
      }
      Atomics.wait(ctl, StressControl.DONE, 0, (next() % 300) / 1000);
    }
  } finally {
    chip.close();
  }
  return { reconfigurations, remoteReloads, pauses };
}

const result = data.role === "ringer" ? await ringer(data) : await chaos(data);
parentPort?.postMessage(result);
