/**
 * bench/api/memory — the extra memory each running VM costs inside one daemon, beside the
 * whole-process memory of QEMU microvm (and of `tsvisor run`) for the same guest, in the same
 * run.
 *
 * * The daemon (`tsvisor daemon` as a child process; KVM, or the simulator with a loud note)
 *   first runs one `graceful` VM through create → start → graceful stop → destroy, untimed, so
 *   loaded code, JIT and a pooled vCPU thread are in the baseline. Then its RSS is read
 *   (/proc/PID/status VmRSS), and K = 1, 5, 10, 20 `graceful` VMs (2 MiB of RAM each; they
 *   print one line and sleep in HLT) are created and started, adding VMs level by level; at
 *   each level, once every guest has printed its line and a moment has passed:
 *   extra per VM = (ΔVmRSS − Δ guest RAM touched) / K. Guest RAM touched is measured: the
 *   resident bytes of the daemon's mappings of the guest-RAM memfds (/proc/PID/smaps,
 *   mappings named /memfd:tsvisor-…), which hold every page the loader or the guest touched.
 *   (On the simulator guest RAM is not a memfd: its full size is subtracted, an upper bound,
 *   which makes the figures low — even negative at one VM, as untouched pages are not resident.)
 *   Then every VM is stopped gracefully (each must exit PLATFORM_OFF 0) and destroyed.
 * * QEMU microvm with the same image (dist/guests/graceful.elf, entered at its PVH note, which
 *   prints the same line and halts), -m 2M: VmRSS once the line is out, and VmHWM; median of
 *   3 processes. Missing QEMU or no KVM: said so.
 * * Context: `tsvisor run graceful` as a whole process, measured the same way.
 *
 * Prints a table and writes bench/results/api-memory.json.
 * Usage: node dist/bench/api/memory.js [--quick]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { guestPath } from "../../src/loader/guest-builder.js";
import { fmt, median, quick, ROOT, table, writeResults } from "../kvm/common.js";
import {
  chooseBackend,
  Daemon,
  memfdResident,
  pool,
  procStatus,
  QEMU,
  qemuArgs,
  qemuVersion,
  TSVISOR,
  type VmInfo,
} from "./daemon.js";

const LEVELS = quick ? [1, 5, 10] : [1, 5, 10, 20];
const MEM = 2 * 1024 * 1024;
const LINE = "graceful: running\n";
/** Lets lazily freed memory and just-started threads settle before a reading. */
const SETTLE_MS = 300;
const MiB = 1024 * 1024;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runningLine(d: Daemon, id: string): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    const vm = await d.request<VmInfo>("GET", `/v1/vms/${id}`);
    if (vm.console_bytes >= LINE.length) return;
    if (vm.state !== "running" && vm.state !== "starting") {
      throw new Error(`${id} is ${vm.state} before printing its line`);
    }
    await sleep(10);
  }
  throw new Error(`${id} never printed its line`);
}

async function createStarted(d: Daemon, image: string): Promise<string> {
  const vm = await d.request<VmInfo>("POST", "/v1/vms", { image, memory: MEM });
  await d.request("POST", `/v1/vms/${vm.id}/start`);
  await runningLine(d, vm.id);
  return vm.id;
}

async function stopAndDestroy(d: Daemon, id: string): Promise<void> {
  const after = await d.request<VmInfo>("POST", `/v1/vms/${id}/stop`, { timeout_ms: 10_000 });
  if (after.exit?.exit_type !== "PLATFORM_OFF" || after.exit.exit_code !== 0) {
    throw new Error(`${id}: a graceful stop ended as ${JSON.stringify(after.exit)}`);
  }
  await d.request("DELETE", `/v1/vms/${id}`);
  d.forget(id);
}

interface Reading {
  readonly vms: number;
  readonly rss: number;
  readonly anon: number;
  readonly touched: number;
  readonly threads: number;
}

function read(d: Daemon, vms: number): Reading {
  const s = procStatus(d.pid);
  const t = memfdResident(d.pid, "tsvisor-");
  if (d.backend === "kvm" && t.mappings < vms) {
    throw new Error(`found ${t.mappings} guest-RAM memfd mappings for ${vms} VMs`);
  }
  return {
    vms,
    rss: s.VmRSS ?? 0,
    anon: s.RssAnon ?? 0,
    touched: d.backend === "kvm" ? t.bytes : vms * MEM,
    threads: s.Threads ?? 0,
  };
}

/** Spawns a whole process, waits for the guest's line, reads its memory, then ends it. */
function processMemory(
  command: string,
  args: readonly string[],
  signal: NodeJS.Signals,
): Promise<{ rss: number; hwm: number }> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(command, args, {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    let reading: { rss: number; hwm: number } | undefined;
    let failure: Error | undefined;
    const timer = setTimeout(() => {
      failure = new Error(`${command}: no '${LINE.trim()}' in 30 s; stderr ${err.slice(0, 300)}`);
      child.kill("SIGKILL");
    }, 30_000);
    child.stderr?.on("data", (b: Buffer) => {
      err += b.toString("latin1");
    });
    child.stdout?.on("data", (b: Buffer) => {
      out += b.toString("latin1");
      if (reading || !out.includes(LINE.trim())) return;
      reading = { rss: 0, hwm: 0 };
      setTimeout(() => {
        try {
          const s = procStatus(child.pid ?? 0);
          reading = { rss: s.VmRSS ?? 0, hwm: s.VmHWM ?? 0 };
        } catch (e) {
          failure = e as Error;
        }
        // Only this measurement's own child.
        child.kill(signal);
      }, SETTLE_MS);
    });
    child.on("error", reject);
    child.on("close", () => {
      clearTimeout(timer);
      if (failure || !reading || reading.rss === 0) {
        reject(failure ?? new Error(`${command} ended early: ${err.slice(0, 300)}`));
      } else resolve(reading);
    });
  });
}

async function medianOf3(
  command: string,
  args: readonly string[],
  signal: NodeJS.Signals,
): Promise<{ rss: number; hwm: number }> {
  const runs: { rss: number; hwm: number }[] = [];
  for (let i = 0; i < 3; i++) runs.push(await processMemory(command, args, signal));
  return { rss: median(runs.map((r) => r.rss)), hwm: median(runs.map((r) => r.hwm)) };
}

const { backend, why, kvmArgs } = chooseBackend();
if (why) {
  process.stdout.write(
    `\n*** KVM not available (${why}): the daemon uses the SIMULATED backend and QEMU is ` +
      "skipped; guest RAM is subtracted at its full size. Not KVM numbers. ***\n\n",
  );
}
const image = backend === "kvm" ? guestPath("graceful") : "graceful";

const readings: Reading[] = [];
let base: Reading;
let afterAll: Reading;
const daemon = await Daemon.start(backend, kvmArgs);
try {
  await daemon.follow();
  await stopAndDestroy(daemon, await createStarted(daemon, image));
  await sleep(SETTLE_MS);
  base = read(daemon, 0);
  const ids: string[] = [];
  for (const k of LEVELS) {
    const more = await pool(k - ids.length, 4, () => createStarted(daemon, image));
    ids.push(...more);
    await sleep(SETTLE_MS);
    readings.push(read(daemon, k));
  }
  await pool(ids.length, 4, (i) => stopAndDestroy(daemon, ids[i] as string));
  await sleep(SETTLE_MS);
  afterAll = read(daemon, 0);
} finally {
  await daemon.stop();
}

const qemu = backend === "kvm" ? qemuVersion() : undefined;
const qemuMem = qemu ? await medianOf3(QEMU, qemuArgs(image), "SIGTERM") : undefined;
if (!qemu) {
  process.stdout.write(
    backend === "kvm" ? `QEMU unavailable (${QEMU} not found)\n` : "QEMU skipped: no KVM\n",
  );
}
// tsvisor run ends a VM on SIGINT (a forced stop, status 135).
const runMem = await medianOf3(
  process.execPath,
  [TSVISOR, "run", ...(backend === "sim" ? ["--backend", "sim"] : kvmArgs), image, "--mem", "2M"],
  "SIGINT",
);

const mib = (b: number) => fmt(b / MiB, 1);
const kib = (b: number) => fmt(b / 1024, 0);
const extra = (from: Reading, to: Reading) =>
  (to.rss - from.rss - (to.touched - from.touched)) / (to.vms - from.vms);
const perVm = readings.map((r, i) => ({
  vms: r.vms,
  rss: r.rss,
  threads: r.threads,
  delta_rss: r.rss - base.rss,
  delta_touched: r.touched - base.touched,
  delta_anon: r.anon - base.anon,
  extra_per_vm: extra(base, r),
  // From the previous level: free of the one-off costs the first VM meets or avoids.
  marginal_per_vm: extra(i === 0 ? base : (readings[i - 1] as Reading), r),
}));
process.stdout.write(
  `\nMemory per running VM (graceful guest, ${MEM / MiB} MiB RAM, idle in HLT); backend ${backend}; daemon baseline VmRSS ${mib(base.rss)} MiB, ${base.threads} threads${qemu ? `; ${qemu}` : ""}\n` +
    "extra per VM = (ΔVmRSS − Δ guest RAM touched) / VMs, from the baseline; marginal: the same from the previous row\n\n",
);
process.stdout.write(
  `${table(
    [
      "VMs in the daemon",
      "VmRSS MiB",
      "ΔVmRSS MiB",
      `guest RAM touched MiB (${backend === "kvm" ? "memfd Rss" : "RAM size"})`,
      "extra per VM KiB",
      "marginal per VM KiB",
      "ΔRssAnon per VM KiB",
      "threads",
    ],
    perVm.map((r) => [
      String(r.vms),
      mib(r.rss),
      mib(r.delta_rss),
      mib(r.delta_touched),
      kib(r.extra_per_vm),
      kib(r.marginal_per_vm),
      kib(r.delta_anon / r.vms),
      String(r.threads),
    ]),
  )}\n\n`,
);
process.stdout.write(
  `${table(
    ["<Whole process, one VM", "VmRSS MiB", "VmHWM MiB"],
    [
      qemuMem
        ? [`QEMU microvm -m 2M -kernel graceful.elf`, mib(qemuMem.rss), mib(qemuMem.hwm)]
        : ["QEMU microvm", "unavailable", "–"],
      ["tsvisor run graceful (node, RM, VMM, one VM)", mib(runMem.rss), mib(runMem.hwm)],
    ],
  )}\n`,
);
process.stdout.write(
  `after stopping and destroying every VM: daemon VmRSS ${mib(afterAll.rss)} MiB, guest RAM still resident ${mib(afterAll.touched)} MiB\n`,
);
writeResults("api-memory", {
  backend,
  ...(why ? { simulated: `KVM not available: ${why}` } : {}),
  guest: backend === "kvm" ? "dist/guests/graceful.elf" : "graceful (simulated)",
  guest_ram: MEM,
  touched_method:
    backend === "kvm"
      ? "Rss of the daemon's /memfd:tsvisor-* mappings in /proc/PID/smaps"
      : "guest RAM size (upper bound; the simulator's RAM is not a memfd)",
  baseline: base,
  levels: perVm,
  after_destroy: afterAll,
  qemu: qemu ? { version: qemu, median_of: 3, vm_rss: qemuMem?.rss, vm_hwm: qemuMem?.hwm } : null,
  tsvisor_run: { median_of: 3, vm_rss: runMem.rss, vm_hwm: runMem.hwm },
});
