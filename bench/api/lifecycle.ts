/**
 * bench/api/lifecycle — VM lifecycles per second through a real daemon's HTTP API, beside one
 * whole process per VM (tsvisor run, QEMU microvm), all in the same run.
 *
 * * API: `tsvisor daemon` as a child process on a Unix socket (KVM; the simulator with a loud
 *   note when KVM cannot be opened). One lifecycle = POST /v1/vms {image: hello} → POST
 *   /v1/vms/{id}/start → the `vm.exited` event on the WebSocket event stream (checked:
 *   PLATFORM_OFF code 0) → DELETE /v1/vms/{id}. N lifecycles back to back, then N with 4 in
 *   flight at once; each after untimed warm-up lifecycles at the same width (the daemon keeps
 *   finished vCPU threads for reuse, so the warm-up grows its pool to the width).
 * * Baselines, one whole process per VM, spawn to exit, output and status checked:
 *   `node bin/tsvisor.js run hello` (the same RM lifecycle in a fresh process) and QEMU
 *   microvm on the same image (dist/guests/hello.elf, entered at its PVH note), 1 and 4 at a
 *   time. QEMU missing, or no KVM: its rows say so.
 *
 * Prints a table and writes bench/results/api-lifecycle.json.
 * Usage: node dist/bench/api/lifecycle.js [--quick] [--n N] [--procs N]
 */
import { spawn } from "node:child_process";
import { guestPath } from "../../src/loader/guest-builder.js";
import { fmt, nowNs, quick, ROOT, table, writeResults } from "../kvm/common.js";
import {
  chooseBackend,
  Daemon,
  pool,
  QEMU,
  qemuArgs,
  qemuVersion,
  TSVISOR,
  type VmInfo,
} from "./daemon.js";

function intArg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt;
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} wants a positive integer`);
  return v;
}

const N = intArg("--n", quick ? 20 : 100);
/** Whole processes per row: each costs a node (or QEMU) start, so fewer than N by default. */
const PROCS = intArg("--procs", quick ? 8 : 40);
const WIDTH = 4;
const WARMUP = 5;
const TIMEOUT_MS = 30_000;

interface Row {
  readonly name: string;
  readonly concurrency: number;
  readonly count: number;
  readonly seconds: number;
  /** Per-lifecycle latencies, ms. */
  readonly latency: readonly number[];
  readonly note?: string;
}

const pct = (xs: readonly number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

async function apiLifecycle(d: Daemon, image: string): Promise<number> {
  const t0 = nowNs();
  const vm = await d.request<VmInfo>("POST", "/v1/vms", { image });
  const exited = d.event(vm.id, "vm.exited");
  await d.request("POST", `/v1/vms/${vm.id}/start`);
  const e = await exited;
  if (e.exit?.exit_type !== "PLATFORM_OFF" || e.exit.exit_code !== 0) {
    throw new Error(`${vm.id}: exited ${JSON.stringify(e.exit)}, expected PLATFORM_OFF 0`);
  }
  const gone = await d.request<VmInfo>("DELETE", `/v1/vms/${vm.id}`);
  if (gone.state !== "destroyed") throw new Error(`${vm.id}: DELETE answered ${gone.state}`);
  d.forget(vm.id);
  return Number(nowNs() - t0) / 1e6;
}

async function timed(
  name: string,
  count: number,
  width: number,
  once: () => Promise<number>,
  note?: string,
): Promise<Row> {
  const t0 = nowNs();
  const latency = await pool(count, width, once);
  const seconds = Number(nowNs() - t0) / 1e9;
  return { name, concurrency: width, count, seconds, latency, ...(note ? { note } : {}) };
}

/** One whole process, spawn to exit; resolves with its wall time, rejects on a wrong result. */
function processOnce(
  command: string,
  args: readonly string[],
  status: number,
  stdout: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = nowNs();
    const child = spawn(command, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString("latin1");
    });
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString("latin1");
    });
    // Only this run's own child, and only if it hangs.
    const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const ms = Number(nowNs() - t0) / 1e6;
      if (code !== status || !out.includes(stdout)) {
        reject(
          new Error(
            `${command} ${args.join(" ")}: status ${code ?? signal} (expected ${status}), stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err.slice(0, 300))}`,
          ),
        );
      } else resolve(ms);
    });
  });
}

const { backend, why, kvmArgs } = chooseBackend();
if (why) {
  process.stdout.write(
    `\n*** KVM not available (${why}): the daemon and tsvisor run use the SIMULATED backend; ` +
      "QEMU is skipped. These numbers do not describe KVM guests. ***\n\n",
  );
}
const imageArg = backend === "kvm" ? guestPath("hello") : "hello";
const rows: Row[] = [];

const daemon = await Daemon.start(backend, kvmArgs);
try {
  await daemon.follow();
  for (const width of [1, WIDTH]) {
    // Warm-up at the same width, so the daemon's pool already holds `width` vCPU threads.
    await pool(WARMUP * width, width, () => apiLifecycle(daemon, imageArg));
    rows.push(
      await timed("API (daemon, Unix socket)", N, width, () => apiLifecycle(daemon, imageArg)),
    );
  }
  const host = await daemon.request<{ usage: { vms: number } }>("GET", "/v1/host");
  if (host.usage.vms !== 0) throw new Error(`${host.usage.vms} VMs left in the daemon`);
} finally {
  await daemon.stop();
}

const runArgs = [TSVISOR, "run", ...(backend === "sim" ? ["--backend", "sim"] : kvmArgs), imageArg];
const runOnce = () => processOnce(process.execPath, runArgs, 0, "Hello");
await runOnce();
for (const width of [1, WIDTH]) {
  rows.push(await timed("tsvisor run hello (a process per VM)", PROCS, width, runOnce));
}

const qemu = backend === "kvm" ? qemuVersion() : undefined;
if (qemu) {
  const args = qemuArgs(guestPath("hello"));
  // isa-debug-exit makes QEMU exit with (code << 1) | 1.
  const qemuOnce = () => processOnce(QEMU, args, 1, "Hello");
  await qemuOnce();
  for (const width of [1, WIDTH]) {
    rows.push(
      await timed("QEMU microvm -kernel hello.elf (a process per VM)", PROCS, width, qemuOnce),
    );
  }
} else {
  process.stdout.write(
    backend === "kvm"
      ? `QEMU unavailable (${QEMU} not found): its rows are skipped\n`
      : "QEMU skipped: no KVM\n",
  );
}

process.stdout.write(
  `\nLifecycles per second, hello guest (create → start → exited → destroyed); backend ${backend}${
    qemu ? `; ${qemu}` : ""
  }\n\n`,
);
process.stdout.write(
  `${table(
    ["<Path", "In flight", "VMs", "VMs/s", "p50 ms", "p90 ms", "max ms"],
    rows.map((r) => [
      r.name,
      String(r.concurrency),
      String(r.count),
      fmt(r.count / r.seconds, 1),
      fmt(pct(r.latency, 50), 1),
      fmt(pct(r.latency, 90), 1),
      fmt(Math.max(...r.latency), 1),
    ]),
  )}\n`,
);
if (!qemu) process.stdout.write("| QEMU microvm | – | – | unavailable | – | – | – |\n");
writeResults("api-lifecycle", {
  backend,
  ...(why ? { simulated: `KVM not available: ${why}` } : {}),
  qemu: qemu ?? null,
  image: backend === "kvm" ? "dist/guests/hello.elf" : "hello (simulated)",
  rows: rows.map((r) => ({
    name: r.name,
    concurrency: r.concurrency,
    count: r.count,
    seconds: r.seconds,
    per_second: r.count / r.seconds,
    latency_ms: {
      p50: pct(r.latency, 50),
      p90: pct(r.latency, 90),
      max: Math.max(...r.latency),
    },
  })),
});
