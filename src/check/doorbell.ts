/**
 * The doorbell programs: one vCPU that halts until it has received every injector's
 * interrupt, injectors on other threads, and the put+load pairs that can land inside its WFI
 * window. A design supplies the protocol steps (the production module, or a demo design from
 * ./designs/); a scenario chooses which threads run against it.
 *
 * Scenarios:
 * - preempt: Linux's shape. A scheduler thread preempts the running vCPU (sched_out → put,
 *   sched_in → load, in the vCPU's context: the vCPU cannot run meanwhile). The seed's bug.
 * - reconfig: another thread reconfigures twice (put, apply, load) at any moment, also while
 *   the vCPU sleeps (tsvisor's doorbell re-binding / routing change).
 * - pause: another thread pauses and resumes the vCPU once; the vCPU parks while paused.
 *
 * Shared words: STATE, PENDING, REQUESTS (the production layout) and SCHED, a model-only word
 * (1 while the scheduler holds the vCPU off its CPU).
 */
import {
  describeResidencyState,
  Residency,
  ResidencyWord,
  VcpuRequest,
  WFI_WAKE_REQUESTS,
} from "../vcpu/residency.js";
import { type Proc, store } from "../vcpu/sync-port.js";
import type { Invariant, Program, ThreadSpec, View } from "./program.js";

export const SCHED = 3;
export const DOORBELL_WORDS = 4;
const { STATE, PENDING, REQUESTS } = ResidencyWord;

/** A wake-up protocol under test. Procedures may be called from the threads named. */
export interface DoorbellDesign {
  /** CLI name, e.g. "fixed", "pre-fix". */
  readonly name: string;
  readonly summary: string;
  /** What the checker finds: "clean", or the bug it must report. */
  readonly verdict: string;
  // vCPU thread
  load(): Proc<unknown>;
  wfi(): Proc<unknown>;
  takePending(): Proc<number>;
  waitWhilePaused(): Proc<unknown>;
  /** Preempt notifiers, run in the vCPU's context by the scheduler. */
  schedOut(): Proc<unknown>;
  schedIn(): Proc<unknown>;
  // any thread
  inject(bits: number): Proc<unknown>;
  reload(): Proc<unknown>;
  pause(): Proc<unknown>;
  resume(): Proc<unknown>;
  /** The word the vCPU sleeps on in WFI (default STATE). */
  readonly sleepWord?: number;
}

export type ScenarioName = "preempt" | "reconfig" | "pause";
export const SCENARIOS: readonly ScenarioName[] = ["preempt", "reconfig", "pause"];

export interface ScenarioParams {
  /** Injector threads, each with one distinct interrupt bit. */
  readonly injectors: number;
  /** preempt: preemptions the scheduler thread may make. */
  readonly preemptions: number;
  /** reconfig: reloads. */
  readonly reloads: number;
  /** pause: pause/resume pairs. */
  readonly pauses: number;
}

export const SCENARIO_PARAMS: Record<ScenarioName, ScenarioParams> = {
  preempt: { injectors: 2, preemptions: 2, reloads: 0, pauses: 0 },
  reconfig: { injectors: 2, preemptions: 0, reloads: 2, pauses: 0 },
  pause: { injectors: 2, preemptions: 0, reloads: 0, pauses: 1 },
};

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

export function describeRequests(r: number): string {
  const names = Object.entries(VcpuRequest)
    .filter(([n, bit]) => n !== "USER" && (r & bit) !== 0)
    .map(([n]) => n);
  const user = r & ~(VcpuRequest.KICK | VcpuRequest.STOP | VcpuRequest.PAUSE);
  if (user !== 0) names.push(hex(user));
  return names.length === 0 ? "0" : names.join("|");
}

function formatWord(word: number, value: number): string {
  if (word === STATE) return describeResidencyState(value);
  if (word === REQUESTS) return describeRequests(value);
  if (word === PENDING) return hex(value);
  return String(value);
}

function describe(mem: Int32Array): string {
  const sched = mem[SCHED] === 1 ? "  (vcpu preempted)" : "";
  return (
    `STATE=${describeResidencyState(mem[STATE]!)} PENDING=${hex(mem[PENDING]!)} ` +
    `REQ=${describeRequests(mem[REQUESTS]!)}${sched}`
  );
}

/** "IN_WFI ⇒ not resident ∧ (doorbell armed ∨ interrupt pending)". */
export const inWfiInvariant: Invariant = {
  name: "in-wfi",
  check(v: View) {
    const s = v.mem[STATE]!;
    if ((s & Residency.IN_WFI) === 0) return undefined;
    if ((s & Residency.RESIDENT) !== 0)
      return `IN_WFI but resident (STATE=${describeResidencyState(s)}): kicks would go to a sleeper`;
    const woken = v.mem[PENDING] !== 0 || (v.mem[REQUESTS]! & WFI_WAKE_REQUESTS) !== 0;
    if ((s & Residency.DB_ARMED) === 0 && !woken)
      return `IN_WFI with no doorbell armed and nothing pending (STATE=${describeResidencyState(s)})`;
    return undefined;
  },
};

/** "interrupt pending ∧ vCPU asleep ⇒ a wake-up is in flight". */
export function lostWakeupInvariant(sleepWord: number): Invariant {
  return {
    name: "lost-wake-up",
    check(v: View) {
      const vcpu = v.thread("vcpu");
      if (vcpu.status !== "blocked" || vcpu.waitWord !== sleepWord) return undefined;
      if (v.mem[PENDING] === 0) return undefined;
      // An injector that has not finished may still ring; one that has finished will not.
      if (v.threads.some((t) => t.role === "injector" && t.status !== "done")) return undefined;
      return (
        `the vCPU sleeps in WFI with PENDING=${hex(v.mem[PENDING]!)} ` +
        `(STATE=${describeResidencyState(v.mem[STATE]!)}) and no wake-up is in flight`
      );
    },
  };
}

export function doorbellProgramId(design: string, scenario: ScenarioName): string {
  return `doorbell.${design}.${scenario}`;
}

/** Builds the program for a design and a scenario. */
export function doorbellProgram(
  design: DoorbellDesign,
  scenario: ScenarioName,
  params: ScenarioParams = SCENARIO_PARAMS[scenario],
): Program {
  const all = (1 << params.injectors) - 1;
  const parks = scenario === "pause";
  const vcpu: ThreadSpec = {
    name: "vcpu",
    role: "vcpu",
    // Off its CPU while the scheduler runs its notifiers.
    when: (v) => v.mem[SCHED] === 0,
    *body() {
      yield* design.load();
      let got = 0;
      for (;;) {
        if (parks) yield* design.waitWhilePaused();
        // Guest entry: inject what is pending. The guest then runs and halts.
        got |= yield* design.takePending();
        if (got === all) return;
        yield* design.wfi();
      }
    },
  };
  const threads: ThreadSpec[] = [vcpu];
  if (scenario === "preempt") {
    threads.push({
      name: "sched",
      role: "scheduler",
      daemon: true,
      free: true,
      // It preempts a vCPU that runs (not one asleep: that one was put on its way to sleep),
      // and not twice in a row (that is one longer preemption, already covered).
      when: (v) => {
        if (v.mem[SCHED] === 1) return true;
        const t = v.thread("vcpu");
        return t.status === "ready" && t.steps > 0 && v.last !== v.thread("sched").index;
      },
      *body() {
        for (let i = 0; i < params.preemptions; i++) {
          yield* store(SCHED, 1, "preempt vcpu");
          yield* design.schedOut();
          yield* design.schedIn();
          yield* store(SCHED, 0, "vcpu back on CPU");
        }
      },
    });
  }
  for (let i = 0; i < params.injectors; i++) {
    threads.push({
      name: `inj${i + 1}`,
      role: "injector",
      *body() {
        yield* design.inject(1 << i);
      },
    });
  }
  if (scenario === "reconfig") {
    threads.push({
      name: "reconf",
      role: "control",
      *body() {
        for (let i = 0; i < params.reloads; i++) yield* design.reload();
      },
    });
  }
  if (scenario === "pause") {
    threads.push({
      name: "pauser",
      role: "control",
      *body() {
        for (let i = 0; i < params.pauses; i++) {
          yield* design.pause();
          yield* design.resume();
        }
      },
    });
  }
  return {
    id: doorbellProgramId(design.name, scenario),
    words: DOORBELL_WORDS,
    threads,
    invariants: [inWfiInvariant, lostWakeupInvariant(design.sleepWord ?? STATE)],
    wordNames: ["STATE", "PENDING", "REQUESTS", "SCHED"],
    formatWord,
    describe,
    maxSteps: 1000,
  };
}
