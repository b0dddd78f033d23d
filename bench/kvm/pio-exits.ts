/**
 * bench/kvm/pio-exits — port-I/O exits per second through tsvisor's vCPU thread and device bus,
 * against a plain C KVM loop (bench/c/kvm-pio-loop.c) running the same guest bytes
 * (bench/kvm/pio-loop.S: COUNT `out` instructions, then debug-exit) on the same machine in the
 * same run. Two ports: an unclaimed one (0x80: the bus counts the write and drops it) and the
 * UART's scratch register (0x3ff: the write reaches a device). Runs alternate C and tsvisor so
 * drift in the machine's load hits both sides alike.
 *
 * Both sides are timed around the exit loop only: C from its first KVM_RUN to the debug-exit
 * write; tsvisor from handing the vCPU to a (pooled, warm) vCPU thread to that thread's result,
 * which adds the job hand-over and the result message (well under a millisecond) to ~1 s.
 *
 * Prints a table and writes bench/results/kvm-pio-exits.json.
 * Usage: node dist/bench/kvm/pio-exits.js [--quick] [--count N] [--reps N]
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { KvmHypervisor, kvmAvailable } from "../../src/hv/kvm/kvm-hypervisor.js";
import { runGuest } from "../../src/vcpu/harness.js";
import { VcpuThreadPool } from "../../src/vcpu/vcpu-thread.js";
import {
  baseline,
  cBaseline,
  checkClean,
  fmt,
  nowNs,
  pioGuest,
  quick,
  spread,
  table,
  writeResults,
} from "./common.js";

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} wants a positive integer`);
  return n;
}

// ~7.5 µs per exit here (most of it the emulated guest instructions and the PVM round trip),
// so 130,000 exits take about one second.
const COUNT = option("--count", quick ? 13_000 : 130_000);
const REPS = option("--reps", quick ? 1 : 3);
const PORTS = [
  { port: 0x80, what: "unclaimed port 0x80" },
  { port: 0x3ff, what: "UART scratch 0x3ff" },
] as const;

interface Run {
  readonly exits: number;
  readonly seconds: number;
}

function runC(binary: string, image: string, port: number): Run {
  const out = execFileSync(binary, ["exits", image, String(COUNT), String(port), "1"], {
    encoding: "utf8",
  });
  const r = JSON.parse(out.trim()) as Run;
  if (r.exits !== COUNT) throw new Error(`C baseline made ${r.exits} exits, expected ${COUNT}`);
  return r;
}

async function runTsvisor(
  hv: KvmHypervisor,
  pool: VcpuThreadPool,
  image: Uint8Array,
  port: number,
  count: number,
): Promise<Run> {
  let t0 = 0n;
  let t1 = 0n;
  const run = await runGuest(hv, image, {
    pool,
    regs: { rcx: BigInt(count), rdx: BigInt(port), rax: 0x55n },
    started: (thread) => {
      t0 = nowNs();
      void thread.result.then(() => {
        t1 = nowNs();
      });
    },
  });
  const { reason, stats, unclaimed } = run.result;
  if (reason.kind !== "power-off" || reason.code !== 0) {
    throw new Error(`the bench guest stopped with ${JSON.stringify(reason)}`);
  }
  // Every `out` of the loop is one exit handled by the bus (the final debug-exit write is the
  // stop, not counted as handled I/O).
  if (stats?.io !== count) throw new Error(`${stats?.io} I/O exits, expected ${count}`);
  if (port === 0x80 && unclaimed?.pioWrites !== count) {
    throw new Error(`${unclaimed?.pioWrites} unclaimed writes, expected ${count}`);
  }
  return { exits: count, seconds: Number(t1 - t0) / 1e9 };
}

const kvm = kvmAvailable();
if (!kvm.ok) {
  process.stdout.write(`pio-exits: skipped, KVM not available: ${kvm.why}\n`);
  writeResults("kvm-pio-exits", { skipped: `KVM not available: ${kvm.why}` });
} else {
  const binary = cBaseline();
  const imagePath = pioGuest();
  const image = new Uint8Array(readFileSync(imagePath));
  const before = await baseline();
  const hv = KvmHypervisor.open();
  const pool = new VcpuThreadPool();
  const rows: {
    port: number;
    what: string;
    c: number[];
    tsvisor: number[];
  }[] = [];
  try {
    // Warm-up: starts the pooled vCPU thread and JIT-compiles the exit path.
    await runTsvisor(hv, pool, image, 0x80, Math.min(COUNT, 5_000));
    runC(binary, imagePath, 0x80);
    for (const { port, what } of PORTS) {
      const row = { port, what, c: [] as number[], tsvisor: [] as number[] };
      for (let i = 0; i < REPS; i++) {
        const c = runC(binary, imagePath, port);
        row.c.push(c.exits / c.seconds);
        const t = await runTsvisor(hv, pool, image, port, COUNT);
        row.tsvisor.push(t.exits / t.seconds);
      }
      rows.push(row);
    }
  } finally {
    await pool.close();
    hv.close();
  }
  const clean = await checkClean(before);

  const results = rows.map((r) => {
    const c = spread(r.c);
    const ts = spread(r.tsvisor);
    return { port: r.port, what: r.what, c, tsvisor: ts, ratio: ts.median / c.median };
  });
  process.stdout.write(
    `\nPIO exits/s, ${fmt(COUNT)} \`out\` exits per run, median of ${REPS} run(s) each:\n\n`,
  );
  process.stdout.write(
    `${table(
      [
        "<guest writes to",
        "tsvisor exits/s",
        "µs/exit",
        "C loop exits/s",
        "µs/exit",
        "ratio tsvisor/C",
      ],
      results.map((r) => [
        r.what,
        fmt(r.tsvisor.median),
        fmt(1e6 / r.tsvisor.median, 2),
        fmt(r.c.median),
        fmt(1e6 / r.c.median, 2),
        fmt(r.ratio, 2),
      ]),
    )}\n\n`,
  );
  writeResults("kvm-pio-exits", { count: COUNT, reps: REPS, results, clean });
  if (!clean.clean) process.exitCode = 1;
}
