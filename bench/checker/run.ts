/**
 * bench/checker — throughput of tsvisor's interleaving checker (src/check/) on the doorbell
 * protocol, next to SPIN on a Promela model of the same protocol (bench/checker/doorbell.pml),
 * for both designs (fixed, pre-fix) and two scenarios (preempt, reconfig). Both tools must
 * reach the same verdict on every pair; the run fails otherwise.
 *
 * The two explore differently: tsvisor's dfs covers every schedule with at most N preemptions
 * (default 3) and runs the production TypeScript; SPIN's pan covers every interleaving of the
 * Promela model (no bound) with partial-order reduction. A "state" is a fingerprint of the
 * shared words and every thread's history for tsvisor, and the Promela state vector for SPIN,
 * so the figures compare rates, not state counts.
 *
 * SPIN: installed with apt-get when missing; if that fails, "SPIN unavailable" and only
 * tsvisor's figures. Prints a table and writes bench/results/checker.json.
 * Usage: node dist/bench/checker/run.js [--quick] [--preemptions N]
 */
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { fixedDesign } from "../../src/check/designs/fixed.js";
import { preFixDesign } from "../../src/check/designs/pre-fix.js";
import {
  type DoorbellDesign,
  doorbellProgram,
  type ScenarioName,
} from "../../src/check/doorbell.js";
import { check } from "../../src/check/search.js";

const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("bench: cannot find the repository root");
    dir = up;
  }
  return dir;
})();

const quick = process.argv.includes("--quick");
const boundArg = process.argv.indexOf("--preemptions");
const BOUND = boundArg > 0 ? Number(process.argv[boundArg + 1]) : quick ? 2 : 3;
const DESIGNS: readonly DoorbellDesign[] = [fixedDesign, preFixDesign];
const SCENARIOS: readonly ScenarioName[] = ["preempt", "reconfig"];

interface OurRun {
  readonly verdict: "clean" | "violation";
  readonly violation?: string;
  readonly preemptions?: number;
  readonly states: number;
  readonly executions: number;
  readonly transitions: number;
  readonly seconds: number;
  readonly statesPerSecond: number;
  readonly executionsPerSecond: number;
  readonly transitionsPerSecond: number;
}

interface SpinRun {
  readonly verdict: "clean" | "violation";
  readonly states: number;
  readonly transitions: number;
  readonly depth: number;
  /** pan's search time (its own clock, 10 ms resolution), else the wall time of ./pan. */
  readonly seconds: number;
  readonly wallSeconds: number;
  readonly compileSeconds: number;
  readonly statesPerSecond: number;
  readonly transitionsPerSecond: number;
}

function ours(design: DoorbellDesign, scenario: ScenarioName): OurRun {
  const r = check(doorbellProgram(design, scenario), { preemptions: BOUND });
  const s = r.stats;
  const seconds = s.elapsedMs / 1000;
  const ce = r.counterexample;
  return {
    verdict: ce ? "violation" : "clean",
    ...(ce ? { violation: ce.violation.name, preemptions: ce.preemptions } : {}),
    states: s.states,
    executions: s.executions,
    transitions: s.transitions,
    seconds,
    statesPerSecond: s.states / seconds,
    executionsPerSecond: s.executions / seconds,
    transitionsPerSecond: s.transitions / seconds,
  };
}

function have(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/** SPIN's version line, installing the Debian package first if needed; undefined if none. */
function ensureSpin(): string | undefined {
  if (!have("spin")) {
    process.stdout.write("spin not found: apt-get update && apt-get install -y spin\n");
    const r = spawnSync("sh", ["-c", "apt-get update && apt-get install -y spin"], {
      stdio: "inherit",
    });
    if (r.status !== 0 || !have("spin")) return undefined;
  }
  if (!have("cc")) return undefined;
  return execFileSync("spin", ["-V"], { encoding: "utf8" }).trim();
}

function spin(dir: string, design: DoorbellDesign, scenario: ScenarioName): SpinRun {
  const defs = [
    ...(design.name === "pre-fix" ? ["-DPREFIX"] : []),
    ...(scenario === "reconfig" ? ["-DRECONFIG"] : []),
  ];
  const work = join(dir, `${design.name}-${scenario}`);
  mkdirSync(work);
  copyFileSync(join(ROOT, "bench", "checker", "doorbell.pml"), join(work, "doorbell.pml"));
  const c0 = performance.now();
  execFileSync("spin", ["-a", ...defs, "doorbell.pml"], { cwd: work, stdio: "ignore" });
  execFileSync("cc", ["-O2", "-DSAFETY", "-o", "pan", "pan.c"], { cwd: work, stdio: "inherit" });
  const compileSeconds = (performance.now() - c0) / 1000;
  const w0 = performance.now();
  const out = spawnSync("./pan", ["-m1000000"], { cwd: work, encoding: "utf8" });
  const wallSeconds = (performance.now() - w0) / 1000;
  const text = `${out.stdout}${out.stderr}`;
  const num = (re: RegExp) => {
    const m = re.exec(text);
    if (!m) throw new Error(`bench: cannot read ${re} from pan's output:\n${text}`);
    return Number(m[1]);
  };
  const errors = num(/errors: (\d+)/);
  const states = num(/(\d+) states, stored/);
  const transitions = num(/(\d+) transitions \(= stored\+matched\)/);
  const depth = num(/depth reached (\d+)/);
  const panSeconds = num(/elapsed time ([\d.e+-]+) seconds/);
  const seconds = panSeconds >= 0.05 ? panSeconds : wallSeconds;
  return {
    verdict: errors > 0 ? "violation" : "clean",
    states,
    transitions,
    depth,
    seconds,
    wallSeconds,
    compileSeconds,
    statesPerSecond: states / seconds,
    transitionsPerSecond: transitions / seconds,
  };
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const sec = (s: number) => `${s.toFixed(2)} s`;

function main(): number {
  const spinVersion = ensureSpin();
  if (!spinVersion) process.stdout.write("SPIN unavailable: tsvisor's figures only\n");
  const dir = mkdtempSync(join(tmpdir(), "tsvisor-bench-checker-"));
  const rows: {
    design: string;
    scenario: ScenarioName;
    tsvisor: OurRun;
    spin?: SpinRun;
    agree?: boolean;
  }[] = [];
  try {
    for (const design of DESIGNS)
      for (const scenario of SCENARIOS) {
        const t = ours(design, scenario);
        const s = spinVersion ? spin(dir, design, scenario) : undefined;
        rows.push({
          design: design.name,
          scenario,
          tsvisor: t,
          ...(s ? { spin: s, agree: s.verdict === t.verdict } : {}),
        });
      }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const head = [
    "design",
    "scenario",
    "verdict",
    `tsvisor (≤${BOUND} preemptions)`,
    "states",
    "states/s",
    "executions/s",
    "SPIN (exhaustive)",
    "states",
    "states/s",
    "agree",
  ];
  const table = rows.map((r) => [
    r.design,
    r.scenario,
    r.tsvisor.verdict,
    sec(r.tsvisor.seconds),
    fmt(r.tsvisor.states),
    fmt(r.tsvisor.statesPerSecond),
    fmt(r.tsvisor.executionsPerSecond),
    r.spin ? sec(r.spin.seconds) : "—",
    r.spin ? fmt(r.spin.states) : "—",
    r.spin ? fmt(r.spin.statesPerSecond) : "—",
    r.agree === undefined ? "—" : r.agree ? "yes" : "NO",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  process.stdout.write(`${line(head)}\n${table.map(line).join("\n")}\n`);
  const clean = rows.filter((r) => r.tsvisor.verdict === "clean" && r.spin);
  if (clean.length > 0) {
    const rate = (k: "tsvisor" | "spin") =>
      clean.reduce((a, r) => a + r[k]!.states, 0) / clean.reduce((a, r) => a + r[k]!.seconds, 0);
    process.stdout.write(
      `clean runs: tsvisor ${fmt(rate("tsvisor"))} states/s, SPIN ${fmt(rate("spin"))} states/s ` +
        `(SPIN/tsvisor ${(rate("spin") / rate("tsvisor")).toFixed(1)}×)\n`,
    );
  }

  const json = {
    bench: "checker",
    node: process.version,
    spin: spinVersion ?? "unavailable",
    cpu: cpus()[0]?.model,
    quick,
    preemptionBound: BOUND,
    rows,
  };
  const resultsDir = join(ROOT, "bench", "results");
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, "checker.json"), `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write("wrote bench/results/checker.json\n");
  const disagree = rows.filter((r) => r.agree === false);
  if (disagree.length > 0) {
    process.stdout.write(
      `VERDICTS DISAGREE: ${disagree.map((r) => `${r.design}/${r.scenario}`).join(", ")}\n`,
    );
    return 1;
  }
  return 0;
}

process.exitCode = main();
