/**
 * Counterexamples as per-thread timelines: one lane per thread and one row per step, the
 * acting thread's lane marked, then what it did and the shared state after it.
 *
 *   step  vcpu pre  inj1   thread  action                                   state after
 *      5  ●    │    │      vcpu    wfi: enter: cas STATE RESIDENT→DB_ARMED  …
 *      6* │    ●    │      pre     put: ld STATE → DB_ARMED                 …
 *
 * Lanes: ● acting, │ can run, z asleep in wait, blank finished. A * after the step number
 * marks a preemption (the previous thread could have gone on).
 */
import type { Op } from "../vcpu/sync-port.js";
import type { TraceEvent } from "./execution.js";
import type { Program } from "./program.js";

function wordName(p: Program, w: number): string {
  return p.wordNames?.[w] ?? `W${w}`;
}

function value(p: Program, w: number, v: number): string {
  return p.formatWord ? p.formatWord(w, v) : String(v);
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

/** One op and its result, in words. */
export function describeOp(p: Program, e: TraceEvent): string {
  const op: Op = e.op;
  const r = e.result as number;
  const name = "word" in op ? wordName(p, op.word) : "";
  switch (op.kind) {
    case "load":
      return `ld ${name} → ${value(p, op.word, r)}`;
    case "store":
      return `st ${name} ← ${value(p, op.word, op.value)}`;
    case "or":
      return `${name} |= ${hex(op.value)} (was ${value(p, op.word, r)})`;
    case "and":
      return `${name} &= ${hex(op.value)} (was ${value(p, op.word, r)})`;
    case "add":
      return `${name} += ${op.value} (was ${r})`;
    case "exchange":
      return `xchg ${name} ← ${value(p, op.word, op.value)} (was ${value(p, op.word, r)})`;
    case "cas":
      return r === op.expected
        ? `cas ${name} ${value(p, op.word, op.expected)} → ${value(p, op.word, op.value)}`
        : `cas ${name} failed: saw ${value(p, op.word, r)}`;
    case "wait":
      return e.blocked
        ? `wait ${name} = ${value(p, op.word, op.expected)}: sleeps`
        : `wait ${name}: not-equal, no sleep`;
    case "notify":
      return e.woke.length === 0
        ? `notify ${name}: nobody waits`
        : `notify ${name}: wakes ${e.woke.map((t) => p.threads[t]?.name ?? t).join(", ")}`;
    case "kick":
      return "kick (force exit from guest mode)";
  }
}

export interface TimelineOptions {
  /** Width of the action column (longer text is cut with …). */
  readonly actionWidth?: number;
}

export function formatTimeline(
  p: Program,
  trace: readonly TraceEvent[],
  options: TimelineOptions = {},
): string {
  const aw = options.actionWidth ?? 58;
  const names = p.threads.map((t) => t.name);
  const lane = names.map((n) => Math.max(n.length, 1) + 1);
  const tw = Math.max(...names.map((n) => n.length), 6);
  const cut = (s: string, w: number) => (s.length <= w ? s.padEnd(w) : `${s.slice(0, w - 1)}…`);
  const header =
    "step  " +
    names.map((n, i) => n.padEnd(lane[i]!)).join("") +
    "  " +
    "thread".padEnd(tw) +
    "  " +
    "action".padEnd(aw) +
    "  state after";
  const rows = [header];
  for (const e of trace) {
    const lanes = names
      .map((_, i) => {
        const mark =
          i === e.thread
            ? "●"
            : e.statuses[i] === "blocked"
              ? "z"
              : e.statuses[i] === "ready"
                ? "│"
                : " ";
        return mark.padEnd(lane[i]!);
      })
      .join("");
    const label = e.op.label ? `${e.op.label}: ` : "";
    const state = p.describe ? p.describe(Int32Array.from(e.mem)) : e.mem.join(" ");
    rows.push(
      `${String(e.step).padStart(4)}${e.preempted ? "*" : " "} ${lanes}  ${(names[e.thread] ?? "?").padEnd(tw)}  ${cut(label + describeOp(p, e), aw)}  ${state}`,
    );
  }
  return `${rows.map((r) => r.trimEnd()).join("\n")}\n`;
}
