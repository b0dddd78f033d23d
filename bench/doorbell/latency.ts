/**
 * bench/doorbell — doorbell → guest interrupt handler latency, p50/p99: the user irqchip
 * (residency protocol, KVM_INTERRUPT) against the kernel irqchip (irqfd → in-kernel IOAPIC →
 * LAPIC) on the same guest, and a C futex ping-pong (bench/doorbell/futex.c) as the floor of
 * "wake a sleeping thread" on this machine — plus the same ping-pong between two Node threads
 * with Atomics.wait/notify (what the user irqchip's doorbell costs by itself) — all in one run.
 *
 * The guest is guests/doorbell-stress.S on one vCPU; the harness is the stress test's
 * (src/vcpu/testing/doorbell-stress.ts): a ringer thread rings, the guest's handler writes
 * its acknowledgement to a mailbox port, and the vCPU thread's device stamps the host clock
 * when that write arrives. Latency = that stamp − the stamp taken just before the ring, so it
 * covers the wake-up, the injection and entry, the handler and the one port exit that reports
 * it. Round trip = until the ringer itself is awake again with the acknowledgement.
 *
 * Two regimes: "asleep" waits GAP µs after each acknowledgement, so the vCPU is halted again
 * when the doorbell rings (user irqchip: WFI, doorbell rung; kernel: HLT inside KVM); "back to
 * back" rings at once, while the vCPU is still finishing the previous interrupt (user irqchip:
 * resident, kicked). The futex baseline does the same with two plain threads.
 *
 * Prints a table and writes bench/results/doorbell.json.
 * Usage: node dist/bench/doorbell/latency.js [--quick] [--rings N] [--gap US]
 */
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { KvmHypervisor, kvmAvailable } from "../../src/hv/kvm/kvm-hypervisor.js";
import { runDoorbellStress } from "../../src/vcpu/testing/doorbell-stress.js";
import type { IrqchipMode } from "../../src/vcpu/user-irqchip.js";
import { VcpuThreadPool } from "../../src/vcpu/vcpu-thread.js";
import { baseline, checkClean, fmt, quick, ROOT, table, writeResults } from "../kvm/common.js";

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} wants a non-negative integer`);
  return n;
}

const RINGS = option("--rings", quick ? 500 : 5_000);
const GAP_US = option("--gap", 200);

/** bench/doorbell/futex.c, compiled with the machine's cc into dist/bench/doorbell/. */
function futexBinary(): string {
  const src = join(ROOT, "bench", "doorbell", "futex.c");
  const out = join(ROOT, "dist", "bench", "doorbell", "futex");
  execFileSync("cc", ["-O2", "-Wall", "-Wextra", "-pthread", "-o", out, src], { stdio: "inherit" });
  return out;
}

interface Percentiles {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly min: number;
  readonly max: number;
}

/** Nearest-rank percentiles of nanosecond samples, in microseconds. */
function percentiles(ns: ArrayLike<number>): Percentiles {
  const s = Float64Array.from(ns).sort();
  const at = (q: number) => (s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? NaN) / 1e3;
  return {
    n: s.length,
    p50: at(0.5),
    p99: at(0.99),
    p999: at(0.999),
    min: (s[0] ?? NaN) / 1e3,
    max: (s[s.length - 1] ?? NaN) / 1e3,
  };
}

interface Row {
  readonly what: string;
  readonly regime: "asleep" | "back to back";
  readonly latencyUs: Percentiles;
  readonly roundTripUs: Percentiles;
  /** User irqchip: how the rings reached the vCPU (rang / kicked / left-pending). */
  readonly deliveries?: Record<string, number>;
}

/** Node's own wake-up: futexRow's ping-pong with Atomics.wait/notify between two threads. */
async function atomicsRow(gapUs: number): Promise<Row> {
  const buffer = new SharedArrayBuffer(24);
  const words = new Int32Array(buffer, 0, 2);
  const woke = new BigInt64Array(buffer, 16, 1);
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL("./atomics-sleeper.js", import.meta.url), {
    workerData: { buffer, rounds: RINGS },
  });
  await once(worker, "online");
  const latency = new Float64Array(RINGS);
  const roundTrip = new Float64Array(RINGS);
  try {
    for (let n = 1; n <= RINGS; n++) {
      if (gapUs > 0) Atomics.wait(nap, 0, 0, gapUs / 1000);
      const t0 = process.hrtime.bigint();
      Atomics.store(words, 0, n);
      Atomics.notify(words, 0);
      while (Atomics.load(words, 1) !== n) Atomics.wait(words, 1, n - 1);
      roundTrip[n - 1] = Number(process.hrtime.bigint() - t0);
      latency[n - 1] = Number(Atomics.load(woke, 0) - t0);
    }
    await once(worker, "exit");
  } finally {
    await worker.terminate();
  }
  return {
    what: "Node Atomics.wait/notify ping-pong",
    regime: gapUs > 0 ? "asleep" : "back to back",
    latencyUs: percentiles(latency),
    roundTripUs: percentiles(roundTrip),
  };
}

function futexRow(binary: string, gapUs: number): Row {
  const out = execFileSync(binary, [String(RINGS), String(gapUs)], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  const r = JSON.parse(out) as { latencyNs: number[]; roundTripNs: number[] };
  return {
    what: "C futex ping-pong (two threads)",
    regime: gapUs > 0 ? "asleep" : "back to back",
    latencyUs: percentiles(r.latencyNs),
    roundTripUs: percentiles(r.roundTripNs),
  };
}

async function guestRow(
  hv: KvmHypervisor,
  pool: VcpuThreadPool,
  mode: IrqchipMode,
  gapUs: number,
): Promise<Row> {
  const r = await runDoorbellStress({
    hv,
    mode,
    rings: RINGS,
    vcpus: 1,
    gapUs,
    latencies: true,
    pool,
  });
  const g = r.ringers[0];
  if (!g || g.acked !== RINGS || !g.latencyNs || !g.roundTripNs) {
    throw new Error(`${mode} irqchip: ${g?.acked ?? 0} of ${RINGS} rings acknowledged`);
  }
  return {
    what: mode === "user" ? "user irqchip (doorbell → KVM_INTERRUPT)" : "kernel irqchip (irqfd)",
    regime: gapUs > 0 ? "asleep" : "back to back",
    latencyUs: percentiles(g.latencyNs),
    roundTripUs: percentiles(g.roundTripNs),
    ...(g.deliveries ? { deliveries: g.deliveries } : {}),
  };
}

const kvm = kvmAvailable();
if (!kvm.ok) {
  process.stdout.write(`bench/doorbell skipped: KVM not available (${kvm.why})\n`);
  writeResults("doorbell", { skipped: `KVM not available: ${kvm.why}` });
} else {
  const before = await baseline();
  const futex = futexBinary();
  const hv = KvmHypervisor.open();
  const pool = new VcpuThreadPool(1);
  const rows: Row[] = [];
  try {
    // Unmeasured warm-up of both modes and the worker pool (JIT, pooled vCPU thread).
    for (const mode of ["user", "kernel"] as const) {
      await runDoorbellStress({ hv, mode, rings: 200, vcpus: 1, pool });
    }
    for (const gap of [GAP_US, 0]) {
      rows.push(futexRow(futex, gap));
      rows.push(await atomicsRow(gap));
      rows.push(await guestRow(hv, pool, "user", gap));
      rows.push(await guestRow(hv, pool, "kernel", gap));
    }
  } finally {
    await pool.close();
    hv.close();
  }
  const floor = (regime: Row["regime"]) =>
    rows.find((r) => r.regime === regime && r.what.startsWith("C futex"))?.latencyUs.p50 ?? NaN;
  process.stdout.write(
    `doorbell → guest interrupt handler, ${fmt(RINGS)} rings per row, one vCPU; "asleep" = ` +
      `${GAP_US} µs between acknowledgement and next ring\n\n`,
  );
  process.stdout.write(
    `${table(
      [
        "<path",
        "<regime",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "round trip p50 µs",
        "p50 / futex p50",
        "<delivered",
      ],
      rows.map((r) => [
        r.what,
        r.regime,
        fmt(r.latencyUs.p50, 1),
        fmt(r.latencyUs.p99, 1),
        fmt(r.latencyUs.p999, 1),
        fmt(r.roundTripUs.p50, 1),
        `${fmt(r.latencyUs.p50 / floor(r.regime), 1)}×`,
        r.deliveries
          ? Object.entries(r.deliveries)
              .map(([k, v]) => `${k} ${fmt(v)}`)
              .join(", ")
          : "",
      ]),
    )}\n`,
  );
  const clean = await checkClean(before);
  writeResults("doorbell", { rings: RINGS, gapUs: GAP_US, rows, clean });
  if (!clean.clean) process.exitCode = 1;
}
