/**
 * The search strategies. Every execution starts from a fresh program instance and is driven by
 * a sequence of thread choices (stateless model checking, as loom and shuttle do: generators
 * cannot be copied, so a branch is reached again by replaying its prefix).
 *
 * - dfs: exhaustive depth-first search of all schedules with at most N preemptions (a switch
 *   away from a thread that could have continued; CHESS's iterative context bounding), with
 *   state hashing: a state already expanded with no more preemptions used is not expanded
 *   again. Sound for everything the checker detects (all are properties of single states).
 * - random: a uniformly random enabled thread at every step.
 * - pct: Probabilistic Concurrency Testing (Burckhardt et al., ASPLOS 2010): random distinct
 *   thread priorities, always run the highest-priority enabled thread, and at d−1 random steps
 *   drop the running thread below all others. Finds a bug of depth d with probability at least
 *   1/(n·k^(d−1)) per execution (n threads, k steps).
 */
import { TsvisorError } from "../core/errors.js";
import { Execution, type TraceEvent } from "./execution.js";
import { Prng } from "./prng.js";
import type { Program, Violation } from "./program.js";
import { decodeSchedule, encodeSchedule, MAX_THREADS } from "./token.js";

export type Strategy = "dfs" | "random" | "pct";
export const STRATEGIES: readonly Strategy[] = ["dfs", "random", "pct"];

export interface Progress {
  readonly executions: number;
  readonly states: number;
  readonly elapsedMs: number;
}

export interface CheckOptions {
  readonly strategy?: Strategy;
  /** dfs: the preemption bound (default 2). */
  readonly preemptions?: number;
  /** random/pct: how many executions (default 10,000). */
  readonly executions?: number;
  /** random/pct seed (default 1). */
  readonly seed?: number;
  /** pct: the bug depth d (default 3). */
  readonly depth?: number;
  /** dfs: stop (incomplete) after this many distinct states (default 5,000,000). */
  readonly maxStates?: number;
  /** dfs: try bounds 0, 1, … up to `preemptions` (default true). */
  readonly iterative?: boolean;
  /** dfs: state budget for the shortest-counterexample search (default 50,000; 0 = off). */
  readonly shrink?: number;
  /** Called about every `progressEvery` executions (default 1000). */
  readonly onProgress?: (p: Progress) => void;
  readonly progressEvery?: number;
}

export interface CheckStats {
  readonly executions: number;
  /** Distinct states (fingerprints) reached (dfs: in the pass at the final bound). */
  readonly states: number;
  /** Steps taken beyond replayed prefixes. */
  readonly transitions: number;
  /** Steps re-run to reach branch points again. */
  readonly replayed: number;
  /** Executions cut short at an already expanded state (dfs). */
  readonly pruned: number;
  readonly maxDepth: number;
  readonly elapsedMs: number;
  /** dfs: every schedule within the bound was covered. */
  readonly complete: boolean;
}

export interface Counterexample {
  readonly violation: Violation;
  readonly schedule: readonly number[];
  readonly token: string;
  readonly preemptions: number;
  readonly trace: readonly TraceEvent[];
}

export interface CheckResult {
  readonly program: string;
  readonly strategy: Strategy;
  readonly bound: number | undefined;
  readonly stats: CheckStats;
  readonly counterexample: Counterexample | undefined;
}

function validate(program: Program): void {
  if (program.threads.length === 0 || program.threads.length > MAX_THREADS)
    throw new TsvisorError("CHECK_TOKEN", `a program needs 1–${MAX_THREADS} threads`);
  if (/[:\s]/.test(program.id))
    throw new TsvisorError("CHECK_TOKEN", `program id '${program.id}' contains ':' or blanks`);
}

export function check(program: Program, options: CheckOptions = {}): CheckResult {
  validate(program);
  const strategy = options.strategy ?? "dfs";
  if (strategy === "dfs") return dfs(program, options);
  return sample(program, strategy, options);
}

class Clock {
  readonly t0 = performance.now();
  get ms(): number {
    return performance.now() - this.t0;
  }
}

function counterexample(program: Program, schedule: readonly number[]): Counterexample {
  const r = replay(program, schedule);
  if (!r.violation)
    throw new TsvisorError("CHECK_TOKEN", "a failing schedule did not fail again on replay");
  return {
    violation: r.violation,
    schedule: [...schedule],
    token: encodeSchedule(program.id, schedule),
    preemptions: r.preemptions,
    trace: r.trace,
  };
}

interface Totals {
  executions: number;
  transitions: number;
  replayed: number;
  pruned: number;
  maxDepth: number;
}

/** One exhaustive pass at a fixed bound; returns the first failing schedule, if any. */
function dfsPass(
  program: Program,
  bound: number,
  options: CheckOptions,
  totals: Totals,
  clock: Clock,
): { found: readonly number[] | undefined; states: number; complete: boolean } {
  const maxStates = options.maxStates ?? 5_000_000;
  const every = options.progressEvery ?? 1000;
  // Fingerprint → fewest preemptions it was expanded with.
  const visited = new Map<number, number>();
  // The current path: at depth i, the candidate threads, which one is being explored, their
  // preemption costs, and the preemptions used before the step.
  const candidates: number[][] = [];
  const choice: number[] = [];
  const costs: number[][] = [];
  const usedBefore: number[] = [];
  let complete = true;
  let found: readonly number[] | undefined;

  for (;;) {
    const exec = new Execution(program);
    const schedule: number[] = [];
    let used = 0;
    for (let i = 0; i < choice.length; i++) {
      const t = candidates[i]![choice[i]!]!;
      used = usedBefore[i]! + costs[i]![choice[i]!]!;
      exec.step(t);
      schedule.push(t);
    }
    totals.replayed += Math.max(0, choice.length - 1);
    if (choice.length > 0) totals.transitions++;
    for (;;) {
      const enabled = exec.enabled();
      if (exec.check(enabled)) {
        found = schedule;
        break;
      }
      if (exec.terminal()) break;
      const key = exec.fingerprint();
      const seen = visited.get(key);
      if (seen !== undefined && seen <= used) {
        totals.pruned++;
        break;
      }
      visited.set(key, used);
      // Keep running the current thread first; switching away from it while it could go on
      // costs a preemption.
      const cur = exec.last;
      const opts: number[] = [];
      const cost: number[] = [];
      if (enabled.includes(cur)) {
        opts.push(cur);
        cost.push(0);
      }
      for (const t of enabled) {
        if (t === cur) continue;
        const c = exec.isPreemption(t) ? 1 : 0;
        if (used + c > bound) continue;
        opts.push(t);
        cost.push(c);
      }
      candidates.push(opts);
      choice.push(0);
      costs.push(cost);
      usedBefore.push(used);
      const t = opts[0]!;
      used += cost[0]!;
      exec.step(t);
      schedule.push(t);
      totals.transitions++;
    }
    totals.executions++;
    totals.maxDepth = Math.max(totals.maxDepth, schedule.length);
    if (found) break;
    if (visited.size >= maxStates) {
      complete = false;
      break;
    }
    if (options.onProgress && totals.executions % every === 0)
      options.onProgress({
        executions: totals.executions,
        states: visited.size,
        elapsedMs: clock.ms,
      });
    // Backtrack to the deepest branch point with an alternative left.
    while (choice.length > 0) {
      const d = choice.length - 1;
      choice[d]!++;
      if (choice[d]! < candidates[d]!.length) break;
      choice.pop();
      candidates.pop();
      costs.pop();
      usedBefore.pop();
    }
    if (choice.length === 0) break;
  }
  return { found, states: visited.size, complete: complete && !found };
}

function runSchedule(program: Program, schedule: readonly number[]): Execution {
  const exec = new Execution(program);
  for (const t of schedule) exec.step(t);
  return exec;
}

/**
 * Breadth-first search, within the bound, for the shortest failing schedule: counterexamples
 * are easier to read without the detours depth-first order takes. Gives up (undefined) after
 * `budget` distinct states.
 */
export function shortestCounterexample(
  program: Program,
  bound: number,
  budget: number,
): number[] | undefined {
  const visited = new Map<number, number>();
  let frontier: { schedule: number[]; used: number }[] = [{ schedule: [], used: 0 }];
  if (runSchedule(program, []).check()) return [];
  while (frontier.length > 0) {
    const next: typeof frontier = [];
    for (const node of frontier) {
      const parent = runSchedule(program, node.schedule);
      for (const t of parent.enabled()) {
        const used = node.used + (parent.isPreemption(t) ? 1 : 0);
        if (used > bound) continue;
        const schedule = [...node.schedule, t];
        const child = runSchedule(program, schedule);
        if (child.check()) return schedule;
        if (child.terminal()) continue;
        const key = child.fingerprint();
        const seen = visited.get(key);
        if (seen !== undefined && seen <= used) continue;
        visited.set(key, used);
        if (visited.size > budget) return undefined;
        next.push({ schedule, used });
      }
    }
    frontier = next;
  }
  return undefined;
}

function dfs(program: Program, options: CheckOptions): CheckResult {
  const bound = options.preemptions ?? 2;
  const clock = new Clock();
  const totals: Totals = { executions: 0, transitions: 0, replayed: 0, pruned: 0, maxDepth: 0 };
  // Iterative context bounding: bounds 0, 1, … so a failure is reported with the fewest
  // preemptions that produce it (each pass is cheap next to the last one).
  const first = options.iterative === false ? bound : 0;
  let last = { found: undefined as readonly number[] | undefined, states: 0, complete: true };
  let at = first;
  for (; at <= bound; at++) {
    last = dfsPass(program, at, options, totals, clock);
    if (last.found || !last.complete) break;
  }
  let found = last.found;
  const budget = options.shrink ?? 50_000;
  if (found && budget > 0) found = shortestCounterexample(program, at, budget) ?? found;
  return {
    program: program.id,
    strategy: "dfs",
    bound,
    stats: {
      executions: totals.executions,
      states: last.states,
      transitions: totals.transitions,
      replayed: totals.replayed,
      pruned: totals.pruned,
      maxDepth: totals.maxDepth,
      elapsedMs: clock.ms,
      complete: last.complete,
    },
    counterexample: found ? counterexample(program, found) : undefined,
  };
}

function sample(program: Program, strategy: "random" | "pct", options: CheckOptions): CheckResult {
  const budget = options.executions ?? 10_000;
  const every = options.progressEvery ?? 1000;
  const depth = Math.max(1, options.depth ?? 3);
  const rng = new Prng(options.seed ?? 1);
  const clock = new Clock();
  const seen = new Set<number>();
  const n = program.threads.length;
  let transitions = 0;
  let maxDepth = 0;
  let executions = 0;
  // PCT's k: the longest execution so far (a first guess until one has run).
  let k = 50;
  let found: readonly number[] | undefined;

  while (executions < budget && !found) {
    const exec = new Execution(program);
    const schedule: number[] = [];
    // PCT: priorities d..d+n-1 at random; change points lower the runner to d-1-i.
    const prio = strategy === "pct" ? rng.permutation(n).map((r) => depth + r) : [];
    const changeAt = new Map<number, number>();
    if (strategy === "pct")
      for (let i = 0; i < depth - 1; i++) changeAt.set(1 + rng.below(k), depth - 1 - i);
    for (;;) {
      if (seen.size < 4_000_000) seen.add(exec.fingerprint());
      const enabled = exec.enabled();
      const v = exec.check(enabled);
      if (v) {
        found = schedule;
        break;
      }
      if (exec.terminal()) break;
      let t: number;
      if (strategy === "random") t = enabled[rng.below(enabled.length)]!;
      else {
        t = enabled[0]!;
        for (const c of enabled) if (prio[c]! > prio[t]!) t = c;
      }
      exec.step(t);
      schedule.push(t);
      transitions++;
      const lower = changeAt.get(schedule.length);
      if (lower !== undefined) prio[t] = lower;
    }
    executions++;
    maxDepth = Math.max(maxDepth, schedule.length);
    k = Math.max(k, schedule.length);
    if (options.onProgress && executions % every === 0)
      options.onProgress({ executions, states: seen.size, elapsedMs: clock.ms });
  }
  return {
    program: program.id,
    strategy,
    bound: undefined,
    stats: {
      executions,
      states: seen.size,
      transitions,
      replayed: 0,
      pruned: 0,
      maxDepth,
      elapsedMs: clock.ms,
      complete: false,
    },
    counterexample: found ? shrunk(program, found, options) : undefined,
  };
}

/**
 * A sampled failure, replaced if possible by one with the fewest preemptions and, among
 * those, the fewest steps (BFS at bounds 0, 1, … up to the sample's own count).
 */
function shrunk(program: Program, found: readonly number[], options: CheckOptions): Counterexample {
  const ce = counterexample(program, found);
  const budget = options.shrink ?? 50_000;
  if (budget === 0) return ce;
  for (let b = 0; b <= ce.preemptions; b++) {
    const shorter = shortestCounterexample(program, b, budget);
    if (shorter) return counterexample(program, shorter);
  }
  return ce;
}

export interface Replay {
  readonly violation: Violation | undefined;
  readonly trace: readonly TraceEvent[];
  readonly preemptions: number;
  /** Every non-daemon thread finished. */
  readonly terminal: boolean;
}

/** Runs one schedule with tracing; stops at the first violation. */
export function replay(program: Program, schedule: readonly number[]): Replay {
  validate(program);
  const exec = new Execution(program, { trace: true });
  let violation: Violation | undefined;
  for (const t of schedule) {
    violation = exec.check();
    if (violation) break;
    if (!exec.isEnabled(t))
      throw new TsvisorError(
        "CHECK_TOKEN",
        `the schedule does not fit program ${program.id}: at step ${exec.steps + 1} thread ` +
          `${program.threads[t]?.name ?? t} cannot run`,
      );
    exec.step(t);
  }
  violation ??= exec.check();
  const trace = exec.trace ?? [];
  return {
    violation,
    trace,
    preemptions: trace.filter((e) => e.preempted).length,
    terminal: exec.terminal(),
  };
}

/** Replays a token against the program it names (the caller resolves the id). */
export function replayToken(
  token: string,
  resolve: (programId: string) => Program,
): { program: Program; schedule: number[]; result: Replay } {
  const { programId, schedule } = decodeSchedule(token);
  const program = resolve(programId);
  return { program, schedule, result: replay(program, schedule) };
}
