/**
 * `tsvisor check doorbell`: runs the interleaving checker (src/check/) on the vCPU doorbell
 * protocol — the production module, or one of the demo designs — and prints a verdict per
 * scenario; on a violation, the counterexample as a per-thread timeline and its replay token.
 */

import { DESIGNS, findDesign } from "../check/designs/index.js";
import {
  type DoorbellDesign,
  doorbellProgram,
  SCENARIOS,
  type ScenarioName,
} from "../check/doorbell.js";
import type { Program, Violation } from "../check/program.js";
import {
  type CheckOptions,
  type CheckResult,
  type Counterexample,
  check,
  type Progress,
  type Replay,
  replayToken,
  STRATEGIES,
  type Strategy,
} from "../check/search.js";
import { formatTimeline } from "../check/timeline.js";
import { TsvisorError } from "../core/errors.js";
import { parseArgs } from "./args.js";
import type { CliIo, Command, CommandGroup } from "./main.js";

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

const DEFAULT_BOUND = 3;
const DEFAULT_EXECUTIONS = 10_000;

const DOORBELL_HELP = `Usage: tsvisor check doorbell [--design NAME] [--scenario NAME|all] [--preemptions N]
                              [--strategy dfs|random|pct] [--executions N] [--depth D]
                              [--seed S] [--replay TOKEN] [--json] [--progress] [--list]

Model-checks the vCPU residency/doorbell protocol (docs/doorbell.md): one vCPU that halts in
WFI until it has every injector's interrupt, two injector threads, and the put+load pairs that
can land inside its WFI window. Every atomic operation of the protocol code is a scheduling
point; the code run is the production module itself (design 'fixed') or a demo design.

Scenarios (default: all, in this order; the run stops at the first violation):
  preempt    the scheduler preempts the vCPU (sched_out → put, sched_in → load), as in Linux
  reconfig   another thread reconfigures twice (put, apply, load), also while the vCPU sleeps
  pause      another thread pauses and resumes the vCPU

Checked in every state: "IN_WFI ⇒ not resident ∧ (doorbell armed ∨ interrupt pending)",
"interrupt pending ∧ vCPU asleep ⇒ a wake-up is in flight", and no deadlock.

Options:
  --design NAME       fixed (default, the production code), pre-fix (Linux before the IN_WFI
                      fix: the seed's bug), or another demo design (see --list)
  --scenario NAME     preempt, reconfig, pause or all (default)
  --strategy S        dfs (default): every schedule with at most N preemptions, state hashing;
                      random: uniformly random schedules; pct: probabilistic concurrency testing
  --preemptions N     dfs preemption bound (default ${DEFAULT_BOUND})
  --executions N      random/pct: executions per scenario (default ${DEFAULT_EXECUTIONS})
  --depth D           pct: bug depth (default 3)
  --seed S            random/pct seed (default 1)
  --replay TOKEN      re-run one schedule from a token printed by an earlier run
  --json              one JSON object on stdout instead of text
  --progress          progress lines on stderr even when it is not a terminal
  --list              list the designs and what the checker finds in each

Exit status: 0 no violation, 1 a violation (or a replayed schedule that fails), 2 usage.

Examples:
  tsvisor check doorbell
  tsvisor check doorbell --design pre-fix
  tsvisor check doorbell --design pre-fix --strategy pct --executions 1000 --seed 7
  tsvisor check doorbell --replay doorbell.pre-fix.preempt:a7b5a4c2d2
  tsvisor check doorbell --scenario reconfig --preemptions 2 --json
`;

function intFlag(flags: Map<string, string | true>, name: string, min: number): number | undefined {
  const v = flags.get(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || !/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min)
    throw usage(`--${name} needs an integer ≥ ${min}, got '${String(v)}'`);
  return n;
}

/** Program ids are doorbell.DESIGN.SCENARIO. */
function resolveProgram(id: string): {
  design: DoorbellDesign;
  scenario: ScenarioName;
  program: Program;
} {
  const [family, name, scenario, ...rest] = id.split(".");
  const design = name === undefined ? undefined : findDesign(name);
  if (
    family !== "doorbell" ||
    !design ||
    rest.length > 0 ||
    !SCENARIOS.includes(scenario as ScenarioName)
  )
    throw new TsvisorError("CHECK_TOKEN", `the token names an unknown program '${id}'`);
  const s = scenario as ScenarioName;
  return { design, scenario: s, program: doorbellProgram(design, s) };
}

const num = (n: number) => n.toLocaleString("en-US");
const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

function violationWord(v: Violation): string {
  if (v.name === "lost-wake-up") return "LOST WAKE-UP";
  return v.kind === "invariant" ? `INVARIANT ${v.name}` : v.kind.toUpperCase();
}

function verdictWord(ce: Counterexample | undefined): string {
  return ce ? violationWord(ce.violation) : "clean";
}

function counterexampleText(program: Program, ce: Counterexample, replayCmd: string): string {
  const p = ce.preemptions;
  return [
    `${verdictWord(ce)} after ${p} preemption${p === 1 ? "" : "s"}, ${ce.schedule.length} steps:`,
    `  ${ce.violation.message}`,
    "",
    formatTimeline(program, ce.trace).replace(/^/gm, "  ").trimEnd(),
    "",
    "Lanes: ● acting, │ can run, z asleep; * marks a preemption.",
    `Replay: ${replayCmd} ${ce.token}`,
    "",
  ].join("\n");
}

/** A trace with thread names instead of indexes, for --json. */
function traceJson(trace: Counterexample["trace"], program: Program) {
  return trace.map((e) => ({
    step: e.step,
    thread: program.threads[e.thread]?.name,
    op: e.op,
    result: e.result,
    preempted: e.preempted,
    mem: e.mem,
  }));
}

function counterexampleJson(ce: Counterexample, program: Program) {
  return {
    violation: ce.violation,
    preemptions: ce.preemptions,
    steps: ce.schedule.length,
    token: ce.token,
    trace: traceJson(ce.trace, program),
  };
}

interface Progressor {
  update(scenario: string, p: Progress): void;
  done(): void;
}

/** Progress on stderr: a rewritten line on a terminal, else (with --progress) ~1 line/s. */
function progressor(io: CliIo, mode: "tty" | "lines" | "off"): Progressor {
  // The first report always shows, however soon after the process started it comes.
  let lastAt = Number.NEGATIVE_INFINITY;
  let shown = false;
  return {
    update(scenario, p) {
      if (mode === "off") return;
      const now = performance.now();
      if (now - lastAt < (mode === "tty" ? 100 : 1000)) return;
      lastAt = now;
      const rate = p.elapsedMs > 0 ? Math.round((p.states * 1000) / p.elapsedMs) : 0;
      const text = `  ${scenario}: ${num(p.executions)} executions, ${num(p.states)} states, ${secs(p.elapsedMs)} (${num(rate)} states/s)`;
      if (mode === "tty") {
        io.stderr(`\r${text.padEnd(78)}`);
        shown = true;
      } else io.stderr(`${text}\n`);
    },
    done() {
      if (shown) io.stderr(`\r${" ".repeat(78)}\r`);
      shown = false;
    },
  };
}

const OPTIONS = {
  design: "value",
  scenario: "value",
  strategy: "value",
  preemptions: "value",
  executions: "value",
  depth: "value",
  seed: "value",
  replay: "value",
  json: "flag",
  progress: "flag",
  list: "flag",
} as const;

async function runDoorbell(args: readonly string[], io: CliIo): Promise<number> {
  const { flags, operands } = parseArgs(args, OPTIONS, "check doorbell", { spacedValues: true });
  if (operands.length > 0) throw usage(`'check doorbell' takes no operands, got '${operands[0]}'`);
  const json = flags.has("json");
  if (flags.has("list")) {
    if (json)
      io.stdout(
        `${JSON.stringify(DESIGNS.map((d) => ({ name: d.name, summary: d.summary, verdict: d.verdict })))}\n`,
      );
    else {
      const w = Math.max(...DESIGNS.map((d) => d.name.length));
      for (const d of DESIGNS)
        io.stdout(`${d.name.padEnd(w)}  ${d.summary}\n${"".padEnd(w)}  → ${d.verdict}\n`);
    }
    return 0;
  }
  const token = flags.get("replay");
  if (typeof token === "string") return replayCommand(token, flags, io, json);

  const designName = (flags.get("design") as string | undefined) ?? "fixed";
  const design = findDesign(designName);
  if (!design)
    throw usage(
      `unknown design '${designName}' (one of: ${DESIGNS.map((d) => d.name).join(", ")})`,
    );
  const scenarioFlag = (flags.get("scenario") as string | undefined) ?? "all";
  if (scenarioFlag !== "all" && !SCENARIOS.includes(scenarioFlag as ScenarioName))
    throw usage(`unknown scenario '${scenarioFlag}' (one of: ${SCENARIOS.join(", ")}, all)`);
  const scenarios = scenarioFlag === "all" ? SCENARIOS : [scenarioFlag as ScenarioName];
  const strategy = ((flags.get("strategy") as string | undefined) ?? "dfs") as Strategy;
  if (!STRATEGIES.includes(strategy))
    throw usage(`unknown strategy '${strategy}' (one of: ${STRATEGIES.join(", ")})`);
  const bound = intFlag(flags, "preemptions", 0) ?? DEFAULT_BOUND;
  const executions = intFlag(flags, "executions", 1) ?? DEFAULT_EXECUTIONS;
  const depth = intFlag(flags, "depth", 1) ?? 3;
  const seed = intFlag(flags, "seed", 0) ?? 1;
  const mode =
    json && !flags.has("progress")
      ? "off"
      : process.stderr.isTTY && !flags.has("progress")
        ? "tty"
        : flags.has("progress")
          ? "lines"
          : "off";
  const progress = progressor(io, mode);

  const what =
    strategy === "dfs"
      ? `dfs, every schedule with ≤ ${bound} preemption${bound === 1 ? "" : "s"}`
      : strategy === "pct"
        ? `pct depth ${depth}, ${num(executions)} executions per scenario, seed ${seed}`
        : `random, ${num(executions)} executions per scenario, seed ${seed}`;
  if (!json)
    io.stdout(
      `tsvisor check doorbell: design ${design.name} — ${design.summary}\nstrategy: ${what}\n\n`,
    );

  const results: { scenario: ScenarioName; program: Program; result: CheckResult }[] = [];
  let failed: (typeof results)[number] | undefined;
  for (const scenario of scenarios) {
    const program = doorbellProgram(design, scenario);
    const options: CheckOptions = {
      strategy,
      preemptions: bound,
      executions,
      depth,
      seed,
      onProgress: (p) => progress.update(scenario, p),
    };
    const result = check(program, options);
    progress.done();
    const entry = { scenario, program, result };
    results.push(entry);
    if (!json) {
      const s = result.stats;
      const ce = result.counterexample;
      io.stdout(
        `${scenario.padEnd(9)} ${verdictWord(ce).padEnd(12)} ${num(s.executions).padStart(9)} executions ` +
          `${num(s.states).padStart(9)} states ${num(s.transitions).padStart(10)} transitions ` +
          `${secs(s.elapsedMs).padStart(8)}${strategy === "dfs" && !ce && !s.complete ? "  (state cap hit: incomplete)" : ""}\n`,
      );
      if (ce) io.stdout(`\n${counterexampleText(program, ce, "tsvisor check doorbell --replay")}`);
    }
    if (result.counterexample) {
      failed = entry;
      break;
    }
  }
  const total = results.reduce(
    (a, r) => ({
      executions: a.executions + r.result.stats.executions,
      states: a.states + r.result.stats.states,
      transitions: a.transitions + r.result.stats.transitions,
      ms: a.ms + r.result.stats.elapsedMs,
    }),
    { executions: 0, states: 0, transitions: 0, ms: 0 },
  );
  if (json) {
    io.stdout(
      `${JSON.stringify({
        design: design.name,
        strategy,
        bound: strategy === "dfs" ? bound : undefined,
        executionsPerScenario: strategy === "dfs" ? undefined : executions,
        seed: strategy === "dfs" ? undefined : seed,
        verdict: failed ? "violation" : "clean",
        total: {
          ...total,
          statesPerSecond: Math.round((total.states * 1000) / Math.max(total.ms, 1e-9)),
        },
        scenarios: results.map((r) => ({
          scenario: r.scenario,
          program: r.program.id,
          verdict: r.result.counterexample ? "violation" : "clean",
          stats: r.result.stats,
          counterexample: r.result.counterexample
            ? counterexampleJson(r.result.counterexample, r.program)
            : undefined,
        })),
      })}\n`,
    );
  } else if (!failed) {
    const rate = Math.round((total.states * 1000) / Math.max(total.ms, 1e-9));
    io.stdout(
      `${"total".padEnd(9)} ${"clean".padEnd(12)} ${num(total.executions).padStart(9)} executions ` +
        `${num(total.states).padStart(9)} states ${num(total.transitions).padStart(10)} transitions ` +
        `${secs(total.ms).padStart(8)}  (${num(rate)} states/s)\n\n` +
        (strategy === "dfs"
          ? `No violation in any schedule with at most ${bound} preemption${bound === 1 ? "" : "s"}.\n`
          : `No violation in ${num(total.executions)} sampled schedules (sampling proves nothing; dfs does, within its bound).\n`),
    );
  }
  return failed ? 1 : 0;
}

function replayCommand(
  token: string,
  flags: Map<string, string | true>,
  io: CliIo,
  json: boolean,
): Promise<number> {
  for (const f of ["design", "scenario", "strategy", "preemptions", "executions", "depth", "seed"])
    if (flags.has(f)) throw usage(`--replay takes the program from the token; drop --${f}`);
  const { program, schedule, result } = replayToken(token, (id) => resolveProgram(id).program);
  const r: Replay = result;
  if (json) {
    io.stdout(
      `${JSON.stringify({
        program: program.id,
        steps: schedule.length,
        verdict: r.violation ? "violation" : "clean",
        violation: r.violation,
        preemptions: r.preemptions,
        trace: traceJson(r.trace, program),
      })}\n`,
    );
  } else {
    io.stdout(
      `replay of ${program.id}, ${schedule.length} steps, ${r.preemptions} preemptions\n\n`,
    );
    io.stdout(formatTimeline(program, r.trace));
    io.stdout(
      r.violation
        ? `\n${violationWord(r.violation)}: ${r.violation.message}\n`
        : `\nno violation along this schedule${r.terminal ? " (every thread finished)" : ""}\n`,
    );
  }
  return Promise.resolve(r.violation ? 1 : 0);
}

export const checkGroup: CommandGroup = {
  name: "check",
  summary: "model-check concurrency protocols under every interleaving",
  commands: [
    {
      name: "doorbell",
      args: "[--design NAME] [--strategy S] [--preemptions N] [--replay TOKEN]",
      summary: "check the vCPU residency/doorbell protocol for lost wake-ups",
      help: DOORBELL_HELP,
      run: runDoorbell,
    } satisfies Command,
  ],
};
