/**
 * bench/kvm/whole-process — wall time of a whole process that boots guests/hello ("Hello" on
 * COM1, then debug-exit 0) and exits: tsvisor against QEMU's microvm on the same image
 * (dist/guests/hello.elf; QEMU enters it at its PVH note, tsvisor at its ELF entry — the same
 * six `out`s and one debug-exit write), timed in the same run, alternating.
 *
 * * tsvisor: `node bin/tsvisor.js run IMAGE` (the whole RM lifecycle), and with `--pvh` (the
 *   same 32-bit entry as QEMU); if that command is missing, a clearly labelled stand-in takes
 *   its place: `node dist/bench/kvm/hello-once.js IMAGE`, the hv-level harness in a fresh node
 *   process without the RM (otherwise a context row);
 * * QEMU: qemu-system-x86_64 -M microvm,… -kernel IMAGE (the issue's command line); its exit
 *   status is (code << 1) | 1 = 1 for debug-exit 0. Missing QEMU makes its row "QEMU
 *   unavailable" (bench/run-all.sh installs it from Debian first);
 * * context floors: `node -e 0`, `tsvisor run --help` (node plus loading the CLI's modules)
 *   and `qemu-system-x86_64 --version` (process start alone).
 *
 * Each run is timed from spawn to the child's exit; every run's output and status are checked.
 * Prints a table and writes bench/results/kvm-whole-process.json.
 * Usage: node dist/bench/kvm/whole-process.js [--quick] [--runs N]
 */
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { kvmAvailable } from "../../src/hv/kvm/kvm-hypervisor.js";
import { guestPath } from "../../src/loader/guest-builder.js";
import {
  fmt,
  nowNs,
  qemuArgs,
  quick,
  ROOT,
  type Spread,
  spread,
  table,
  writeResults,
} from "./common.js";

const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg >= 0 ? Number(process.argv[runsArg + 1]) : quick ? 5 : 20;
if (!Number.isInteger(RUNS) || RUNS < 1) throw new Error("--runs wants a positive integer");
const TIMEOUT_MS = 30_000;
const QEMU = "qemu-system-x86_64";

interface Contender {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  /** Expected exit status and a string stdout must contain (undefined: anything). */
  readonly status: number;
  readonly stdout?: string;
  readonly role: "measured" | "baseline" | "floor";
}

/** Spawns one run; resolves with its wall time in ms, rejects on a wrong status or output. */
function timeOnce(c: Contender): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = nowNs();
    const child = spawn(c.command, c.args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let ms = 0;
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString("latin1");
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString("latin1");
    });
    // Only this run's own child is ever killed, and only if it hangs.
    const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
    child.on("exit", () => {
      ms = Number(nowNs() - t0) / 1e6;
    });
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== c.status || (c.stdout !== undefined && !out.includes(c.stdout))) {
        reject(
          new Error(
            `${c.name}: status ${code ?? signal}, expected ${c.status}; stdout ${JSON.stringify(out)}; stderr ${JSON.stringify(err.slice(0, 500))}`,
          ),
        );
        return;
      }
      resolve(ms);
    });
  });
}

function qemuAvailable(): string | undefined {
  const r = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split("\n")[0];
}

/** Whether bin/tsvisor.js has a `run` command yet (its --help exits 0). */
function tsvisorRunExists(): boolean {
  const r = spawnSync(process.execPath, [join(ROOT, "bin", "tsvisor.js"), "run", "--help"], {
    encoding: "utf8",
  });
  return r.status === 0 && r.stdout.includes("tsvisor run");
}

const kvm = kvmAvailable();
if (!kvm.ok) {
  process.stdout.write(`whole-process: skipped, KVM not available: ${kvm.why}\n`);
  writeResults("kvm-whole-process", { skipped: `KVM not available: ${kvm.why}` });
} else {
  const image = guestPath("hello");
  const qemuVersion = qemuAvailable();
  const realRun = tsvisorRunExists();
  const tsvisorRun = (pvh: boolean): Contender => ({
    name: `tsvisor run${pvh ? " --pvh" : ""} hello.elf`,
    command: process.execPath,
    args: [join(ROOT, "bin", "tsvisor.js"), "run", ...(pvh ? ["--pvh"] : []), image],
    status: 0,
    stdout: "Hello",
    role: "measured",
  });
  const harness: Contender = {
    name: realRun
      ? "context: hv harness in a fresh node, no RM (hello-once)"
      : "STAND-IN for tsvisor run: hv harness in a fresh node, no RM (hello-once)",
    command: process.execPath,
    args: [join(ROOT, "dist", "bench", "kvm", "hello-once.js"), image],
    status: 0,
    stdout: "Hello",
    role: realRun ? "floor" : "measured",
  };
  const tsvisor = realRun ? tsvisorRun(false) : harness;
  // The PVH row starts tsvisor at the same 32-bit entry QEMU uses.
  const contenders: Contender[] = realRun ? [tsvisor, tsvisorRun(true), harness] : [tsvisor];
  if (qemuVersion) {
    contenders.push(
      {
        name: "QEMU microvm -kernel hello.elf",
        command: QEMU,
        args: qemuArgs(image, null),
        status: 1, // isa-debug-exit: (0 << 1) | 1
        stdout: "Hello",
        role: "baseline",
      },
      {
        name: "floor: qemu-system-x86_64 --version",
        command: QEMU,
        args: ["--version"],
        status: 0,
        role: "floor",
      },
    );
  }
  if (realRun) {
    contenders.push({
      name: "floor: tsvisor run --help (node + the CLI's modules, no VM)",
      command: process.execPath,
      args: [join(ROOT, "bin", "tsvisor.js"), "run", "--help"],
      status: 0,
      stdout: "Usage: tsvisor run",
      role: "floor",
    });
  }
  contenders.push({
    name: "floor: node -e 0",
    command: process.execPath,
    args: ["-e", "0"],
    status: 0,
    role: "floor",
  });

  // One untimed run each warms the page cache; then the contenders take turns.
  for (const c of contenders) await timeOnce(c);
  const times = new Map<Contender, number[]>(contenders.map((c) => [c, []]));
  for (let i = 0; i < RUNS; i++) {
    for (let k = 0; k < contenders.length; k++) {
      const c = contenders[(i + k) % contenders.length] as Contender;
      times.get(c)?.push(await timeOnce(c));
    }
  }

  const stat = new Map<Contender, Spread>(contenders.map((c) => [c, spread(times.get(c) ?? [])]));
  const qemu = contenders.find((c) => c.role === "baseline");
  const qemuMedian = qemu ? (stat.get(qemu)?.median ?? Number.NaN) : Number.NaN;
  const rows = contenders.map((c) => {
    const s = stat.get(c) as Spread;
    return [
      c.name,
      fmt(s.median, 1),
      `${fmt(s.min, 1)}–${fmt(s.max, 1)}`,
      qemu ? fmt(s.median / qemuMedian, 2) : "–",
    ];
  });
  if (!qemu) rows.push(["QEMU unavailable", "–", "–", "–"]);
  process.stdout.write(
    `\nWhole process, boot hello and exit: median wall time of ${RUNS} runs each (alternating)${
      qemuVersion ? `; ${qemuVersion}` : ""
    }:\n\n`,
  );
  process.stdout.write(
    `${table(["<process", "median ms", "min–max ms", "ratio to QEMU"], rows)}\n\n`,
  );
  writeResults("kvm-whole-process", {
    runs: RUNS,
    image: "dist/guests/hello.elf",
    tsvisorRun: realRun ? "tsvisor run" : "stand-in: dist/bench/kvm/hello-once.js",
    qemu: qemuVersion ?? "QEMU unavailable",
    results: contenders.map((c) => ({
      name: c.name,
      role: c.role,
      command: [c.command, ...c.args].join(" "),
      ms: stat.get(c),
    })),
    ratios: qemu
      ? Object.fromEntries(
          contenders.map((c) => [c.name, (stat.get(c) as Spread).median / qemuMedian]),
        )
      : {},
  });
}
