/**
 * DEMO DESIGNS — each is the production design with one classic mistake; the checker must
 * catch every one. Production code must never use them.
 */
import {
  afterLoad,
  afterPut,
  afterWfiEntry,
  afterWfiExit,
  residencyProtocol as R,
  Residency,
  ResidencyWord,
  RING_ONE,
  ringCount,
  VcpuRequest,
} from "../../vcpu/residency.js";
import {
  cas,
  fetchAnd,
  fetchOr,
  kick,
  load,
  notify,
  type Proc,
  wait,
} from "../../vcpu/sync-port.js";
import type { DoorbellDesign } from "../doorbell.js";
import { fixedDesign } from "./fixed.js";

const { STATE, PENDING, REQUESTS } = ResidencyWord;
const { RESIDENT, IN_WFI, DB_ARMED } = Residency;

/** STATE ← f(STATE) by compare-and-swap (as the production module does it). */
function* update(f: (s: number) => number, label: string): Proc<number> {
  let s = yield* load(STATE, label);
  for (;;) {
    const next = f(s);
    if (next === s) return s;
    const seen = yield* cas(STATE, s, next, label);
    if (seen === s) return s;
    s = seen;
  }
}

/** The production sleep loop: re-check, then sleep only while STATE is unchanged. */
function* sleepUntilPending(): Proc<void> {
  for (;;) {
    const s = yield* load(STATE, "wfi: snapshot");
    if ((yield* load(PENDING, "wfi: check")) !== 0) return;
    yield* wait(STATE, s, "wfi: sleep");
  }
}

function* leaveWfi(): Proc<void> {
  yield* update(afterWfiExit, "wfi: exit");
  yield* R.load();
}

/** Checks for work before announcing the sleep: an interrupt in between is kicked, not rung. */
export const checkThenSleepDesign: DoorbellDesign = {
  ...fixedDesign,
  name: "check-then-sleep",
  summary: "checks PENDING before setting IN_WFI, then sleeps until the doorbell rings",
  verdict: "lost wake-up after one preemption",
  *wfi() {
    if ((yield* load(PENDING, "wfi: check first")) !== 0) return;
    const entered = yield* update(afterWfiEntry, "wfi: enter");
    for (;;) {
      const s = yield* load(STATE, "wfi: rung?");
      if (ringCount(s) !== ringCount(entered)) break;
      yield* wait(STATE, s, "wfi: sleep");
    }
    yield* leaveWfi();
  },
};

/** Rings with a bare notify: a notify before the wait wakes nobody and leaves no trace. */
export const notifyNotStickyDesign: DoorbellDesign = {
  ...fixedDesign,
  name: "notify-not-sticky",
  summary: "the doorbell only notifies and does not change the word the sleeper waits on",
  verdict: "lost wake-up after one preemption",
  *wfi() {
    yield* update(afterWfiEntry, "wfi: enter");
    yield* sleepUntilPending();
    yield* leaveWfi();
  },
  *inject(bits: number) {
    yield* fetchOr(PENDING, bits, "inject: publish");
    const s = yield* load(STATE, "inject: deliver");
    if ((s & RESIDENT) !== 0) {
      yield* fetchOr(REQUESTS, VcpuRequest.KICK, "inject: kick");
      yield* kick("inject: kick");
    } else if ((s & DB_ARMED) !== 0) yield* notify(STATE, Number.POSITIVE_INFINITY, "inject: ring");
  },
};

/** load() does not refuse while IN_WFI: a reload or preemption in the window cancels the doorbell. */
function* loadIgnoringWfi(flush: boolean): Proc<void> {
  const old = yield* update(afterLoad, "load");
  if ((old & RESIDENT) !== 0 || !flush) return;
  const p = yield* load(PENDING, "load: flush");
  if (p !== 0) {
    yield* fetchOr(REQUESTS, VcpuRequest.KICK, "load: flush");
    yield* kick("load: flush");
  }
}

export const noRefuseLoadDesign: DoorbellDesign = {
  ...fixedDesign,
  name: "no-refuse-load",
  summary: "load() makes the vCPU resident even while IN_WFI",
  verdict: "IN_WFI while resident, with no preemption needed",
  schedIn: () => loadIgnoringWfi(false),
  *reload() {
    yield* R.put();
    yield* loadIgnoringWfi(true);
  },
  *resume() {
    yield* fetchAnd(REQUESTS, ~VcpuRequest.PAUSE, "resume");
    yield* notify(REQUESTS, Number.POSITIVE_INFINITY, "resume");
    yield* loadIgnoringWfi(true);
  },
};

/** Sets IN_WFI and puts in two steps: in between the vCPU is IN_WFI and still resident. */
export const splitWfiPutDesign: DoorbellDesign = {
  ...fixedDesign,
  name: "split-wfi-put",
  summary: "sets IN_WFI, then puts, as two separate atomic steps",
  verdict: "IN_WFI while resident, with no preemption at all",
  *wfi() {
    yield* update((s) => s | IN_WFI, "wfi: set IN_WFI");
    yield* update(afterPut, "wfi: put");
    yield* sleepUntilPending();
    yield* leaveWfi();
  },
};

/** Reads the vCPU's state before publishing: acts on a stale "resident". */
export const decideThenPublishDesign: DoorbellDesign = {
  ...fixedDesign,
  name: "decide-then-publish",
  summary: "the injector reads STATE before it publishes PENDING",
  verdict: "lost wake-up: two preemptions (preempt), one (reconfig, pause)",
  *inject(bits: number) {
    const s = yield* load(STATE, "inject: decide");
    yield* fetchOr(PENDING, bits, "inject: publish");
    if ((s & RESIDENT) !== 0) {
      yield* fetchOr(REQUESTS, VcpuRequest.KICK, "inject: kick");
      yield* kick("inject: kick");
    } else yield* R.ring();
  },
};

/**
 * This module's own first draft: the WFI loop read STATE for its wait AFTER checking PENDING,
 * so a ring between the check and the read was folded into the value it slept on.
 */
export const snapshotAfterCheckDesign: DoorbellDesign = {
  ...fixedDesign,
  name: "snapshot-after-check",
  summary: "(a draft of residency.ts) reads the word to sleep on after checking PENDING",
  verdict: "lost wake-up after one preemption",
  *wfi() {
    yield* update(afterWfiEntry, "wfi: enter");
    for (;;) {
      if ((yield* load(PENDING, "wfi: check")) !== 0) break;
      const s = yield* load(STATE, "wfi: snapshot (too late)");
      yield* wait(STATE, s, "wfi: sleep");
    }
    yield* leaveWfi();
  },
};

/**
 * This module's second draft: a ring disarmed the doorbell (as a GICv4.0 doorbell masks
 * itself). A late ring for an interrupt the vCPU had already taken disarms its NEXT sleep, and
 * the following injector finds it neither resident nor armed.
 */
export const disarmOnRingDesign: DoorbellDesign = {
  ...fixedDesign,
  name: "disarm-on-ring",
  summary: "(a draft of residency.ts) ringing the doorbell disarms it",
  verdict: "IN_WFI with no doorbell and nothing pending, after one preemption",
  *inject(bits: number) {
    yield* fetchOr(PENDING, bits, "inject: publish");
    let s = yield* load(STATE, "inject: deliver");
    for (;;) {
      if ((s & RESIDENT) !== 0) {
        yield* fetchOr(REQUESTS, VcpuRequest.KICK, "inject: kick");
        yield* kick("inject: kick");
        return;
      }
      if ((s & DB_ARMED) === 0) return;
      const seen = yield* cas(STATE, s, ((s & ~DB_ARMED) + RING_ONE) | 0, "inject: ring+disarm");
      if (seen === s) {
        yield* notify(STATE, Number.POSITIVE_INFINITY, "inject: ring");
        return;
      }
      s = seen;
    }
  },
};
