/**
 * vCPU residency and doorbells: the wake-up protocol of a vCPU whose interrupts are delivered
 * from userspace (user irqchip), after the Linux IN_WFI design (commit b321c31c9b7b).
 *
 * Per vCPU, three Int32 words in a SharedArrayBuffer, changed only with atomics:
 *
 * - STATE: RESIDENT (interrupts reach the vCPU by kick + injection at its next guest entry),
 *   IN_WFI (the vCPU is in its WFI/HLT block path), DB_ARMED (the doorbell will wake it), and
 *   in bits 8–31 a ring counter. The sleeper waits on this word; a ring adds one to the
 *   counter before notifying, so every ring changes the value and a value-checked
 *   `Atomics.wait` cannot sleep through one. The doorbell stays armed for the whole WFI
 *   window (firing does not disarm it), so a ring for an interrupt the vCPU had already
 *   taken cannot leave the next one unannounced.
 * - PENDING: interrupt bits published by injectors, taken by the vCPU at guest entry.
 * - REQUESTS: sticky request bits (KICK, STOP, PAUSE, user bits); a bit stays set until the
 *   vCPU has acted on it, so a kick that lands outside guest mode is not lost.
 *
 * The rules (docs/doorbell.md):
 * 1. `put()` arms the doorbell iff IN_WFI — derived from STATE, never passed in — so every
 *    put/load pair (reconfiguration, pause/resume) that lands inside the WFI window keeps it
 *    armed; `load()` refuses to make the vCPU resident while IN_WFI.
 * 2. Entering WFI sets IN_WFI and puts in ONE compare-and-swap: there is no state in which the
 *    vCPU is IN_WFI but still resident or not armed ("IN_WFI ⇒ ¬resident ∧ (armed ∨ pending)").
 * 3. The sleeper announces itself (step 2) before its last check of PENDING; injectors publish
 *    PENDING before they read STATE. All atomics are sequentially consistent, so at least one
 *    side sees the other (Dekker): the vCPU sees the interrupt, or the injector sees the armed
 *    doorbell and rings.
 * 4. A load made by another thread (reload, resume) re-checks PENDING afterwards and kicks,
 *    because injectors that found the vCPU neither resident nor armed left their bits pending.
 *
 * The protocol is written as generators over the sync port (./sync-port.ts) so the model
 * checker in src/check/ runs this very code under every interleaving it explores; every step
 * that touches shared state is a separate port operation. `VcpuResidency` is the synchronous
 * face production code calls.
 *
 * Threads: `load`, `put`, `wfi`, `takePending`, `takeRequests` and `waitWhilePaused` belong to
 * the vCPU thread; `inject`, `request`, `ring`, `kick`, `reload`, `pause` and `resume` may be
 * called from any thread (injectors, the VMM, the RM) at any time, including while the vCPU is
 * in WFI.
 */
import {
  AtomicsPort,
  cas,
  fetchAdd,
  fetchAnd,
  fetchOr,
  kick as kickOp,
  load as loadWord,
  notify,
  type Proc,
  runProc,
  wait,
} from "./sync-port.js";

/** Word indices in a vCPU's residency buffer. */
export const ResidencyWord = { STATE: 0, PENDING: 1, REQUESTS: 2 } as const;
/** Buffer size: the three words and one reserved. */
export const RESIDENCY_BYTES = 16;

/** STATE bits. */
export const Residency = {
  RESIDENT: 1,
  IN_WFI: 2,
  DB_ARMED: 4,
} as const;
/** STATE bits 8–31 count rings (wrapping). */
export const RING_ONE = 256;

/** REQUESTS bits; bits from `USER` upwards are free for the VMM's own requests. */
export const VcpuRequest = {
  /** Set by injectors that kicked a resident vCPU; the vCPU clears it at guest entry. */
  KICK: 1,
  STOP: 2,
  PAUSE: 4,
  USER: 256,
} as const;

/**
 * Requests that end a WFI: all but KICK (meant for a resident vCPU, and any interrupt it
 * announces is in PENDING) and PAUSE (a paused vCPU may go on sleeping).
 */
export const WFI_WAKE_REQUESTS = ~(VcpuRequest.KICK | VcpuRequest.PAUSE);

const { STATE, PENDING, REQUESTS } = ResidencyWord;
const { RESIDENT, IN_WFI, DB_ARMED } = Residency;

// The state transitions, as pure functions of the STATE word (they keep the ring counter).

/** put: not resident; the doorbell armed iff IN_WFI. */
export function afterPut(s: number): number {
  return (s & ~(RESIDENT | DB_ARMED)) | ((s & IN_WFI) !== 0 ? DB_ARMED : 0);
}

/** load: resident, no doorbell. Only valid when not IN_WFI (callers check). */
export function afterLoad(s: number): number {
  return (s | RESIDENT) & ~DB_ARMED;
}

/** WFI entry: set IN_WFI and put, in one step. */
export function afterWfiEntry(s: number): number {
  return afterPut(s | IN_WFI);
}

/** WFI exit: clear IN_WFI and the doorbell; the caller loads next. */
export function afterWfiExit(s: number): number {
  return s & ~(IN_WFI | DB_ARMED);
}

/** Rings so far (modulo 2^24). */
export function ringCount(s: number): number {
  return s >>> 8;
}

/** "IN_WFI|DB_ARMED rings=2", or "idle" when no flag is set. */
export function describeResidencyState(s: number): string {
  const names = Object.entries(Residency)
    .filter(([, bit]) => (s & bit) !== 0)
    .map(([n]) => n);
  const flags = names.length === 0 ? "idle" : names.join("|");
  return ringCount(s) === 0 ? flags : `${flags} rings=${ringCount(s)}`;
}

/** What `load` did. */
export type LoadResult = "loaded" | "already-resident" | "refused-in-wfi";
/** Why `wfi` returned. */
export type WfiWake = "interrupt" | "request";
/** What an injection did after publishing its bits. */
export type Delivery = "kicked" | "rang" | "left-pending";

/**
 * Applies `f` to STATE with a compare-and-swap loop; returns the value it replaced. A failed
 * CAS retries with the value it saw, so each attempt is one load or one CAS.
 */
function* update(f: (s: number) => number, label: string): Proc<number> {
  let s = yield* loadWord(STATE, label);
  for (;;) {
    const next = f(s);
    if (next === s) return s;
    const seen = yield* cas(STATE, s, next, label);
    if (seen === s) return s;
    s = seen;
  }
}

/**
 * Fires the doorbell: bump the ring counter (so the sleeper's value check fails even if it
 * has not reached Atomics.wait yet), then notify. Ringing a vCPU that has meanwhile left WFI
 * is harmless: it costs the vCPU at most one extra pass through its check.
 */
function* ringDoorbell(label: string): Proc<void> {
  yield* fetchAdd(STATE, RING_ONE, `${label}: ring`);
  yield* notify(STATE, Number.POSITIVE_INFINITY, `${label}: ring`);
}

function* kick(label = "kick"): Proc<void> {
  yield* fetchOr(REQUESTS, VcpuRequest.KICK, label);
  yield* kickOp(label);
}

/** After publishing: resident → kick; armed → ring; otherwise the next load finds the bits. */
function* deliver(label: string): Proc<Delivery> {
  const s = yield* loadWord(STATE, `${label}: deliver`);
  if ((s & RESIDENT) !== 0) {
    yield* kick(`${label}: kick`);
    return "kicked";
  }
  if ((s & DB_ARMED) !== 0) {
    yield* ringDoorbell(label);
    return "rang";
  }
  // Neither resident nor in WFI: whichever load comes next finds the bits (rule 4).
  return "left-pending";
}

/**
 * Makes the vCPU resident unless it is IN_WFI. With `flush` (loads made by a thread other
 * than the vCPU's), anything published while it was not resident gets a kick.
 */
function* load(flush = false): Proc<LoadResult> {
  const old = yield* update((s) => ((s & IN_WFI) !== 0 ? s : afterLoad(s)), "load");
  if ((old & IN_WFI) !== 0) return "refused-in-wfi";
  if ((old & RESIDENT) !== 0) return "already-resident";
  if (flush) {
    const pending = yield* loadWord(PENDING, "load: flush");
    const requests = yield* loadWord(REQUESTS, "load: flush");
    if (pending !== 0 || (requests & WFI_WAKE_REQUESTS) !== 0) yield* kick("load: flush");
  }
  return "loaded";
}

function* put(): Proc<void> {
  yield* update(afterPut, "put");
}

/**
 * The WFI/HLT block path (vCPU thread): announce (IN_WFI + put, armed), check, sleep on STATE
 * until it changes, re-check; then clear IN_WFI and load. Returns at once if something is
 * already pending.
 */
function* wfi(): Proc<WfiWake> {
  yield* update(afterWfiEntry, "wfi: enter");
  let why: WfiWake;
  for (;;) {
    // Read the word we sleep on BEFORE the checks: a ring after this read changes it, so the
    // wait below returns at once. (Read after the checks, a ring landing between the PENDING
    // check and this read would be folded into the value we sleep on — the checker found that
    // lost wake-up in a first draft.)
    const s = yield* loadWord(STATE, "wfi: snapshot");
    if ((yield* loadWord(PENDING, "wfi: check")) !== 0) {
      why = "interrupt";
      break;
    }
    if (((yield* loadWord(REQUESTS, "wfi: check")) & WFI_WAKE_REQUESTS) !== 0) {
      why = "request";
      break;
    }
    yield* wait(STATE, s, "wfi: sleep");
  }
  yield* update(afterWfiExit, "wfi: exit");
  yield* load();
  return why;
}

function* inject(bits: number): Proc<Delivery> {
  yield* fetchOr(PENDING, bits, "inject: publish");
  return yield* deliver("inject");
}

function* request(bits: number): Proc<Delivery> {
  yield* fetchOr(REQUESTS, bits, "request: publish");
  // A vCPU parked in waitWhilePaused sleeps on REQUESTS.
  yield* notify(REQUESTS, Number.POSITIVE_INFINITY, "request: wake");
  return yield* deliver("request");
}

function* ring(): Proc<boolean> {
  const s = yield* loadWord(STATE, "ring");
  if ((s & (RESIDENT | DB_ARMED)) !== DB_ARMED) return false;
  yield* ringDoorbell("ring");
  return true;
}

function* takePending(mask = -1): Proc<number> {
  return (yield* fetchAnd(PENDING, ~mask, "take pending")) & mask;
}

function* takeRequests(mask: number): Proc<number> {
  return (yield* fetchAnd(REQUESTS, ~mask, "take requests")) & mask;
}

/**
 * Reconfiguration (a doorbell's binding or the interrupt routing changes; the analogue of
 * KVM_REQ_RELOAD_GICv4): put, apply, load. Safe inside the WFI window: the put keeps the
 * doorbell armed and the load is refused.
 */
function* reload(apply?: () => void): Proc<LoadResult> {
  yield* put();
  apply?.();
  return yield* load(true);
}

/** Pause: sticky PAUSE, force the vCPU out of guest mode, put. */
function* pause(): Proc<void> {
  yield* fetchOr(REQUESTS, VcpuRequest.PAUSE, "pause");
  yield* kickOp("pause");
  yield* put();
}

/** Resume: clear PAUSE, wake the parked vCPU, load (flushing what piled up). */
function* resume(): Proc<LoadResult> {
  yield* fetchAnd(REQUESTS, ~VcpuRequest.PAUSE, "resume");
  yield* notify(REQUESTS, Number.POSITIVE_INFINITY, "resume");
  return yield* load(true);
}

/** vCPU thread: parks while PAUSE is set; false if STOP ended the wait. */
function* waitWhilePaused(): Proc<boolean> {
  for (;;) {
    const r = yield* loadWord(REQUESTS, "paused?");
    if ((r & VcpuRequest.STOP) !== 0) return false;
    if ((r & VcpuRequest.PAUSE) === 0) return true;
    yield* wait(REQUESTS, r, "paused: sleep");
  }
}

/** The protocol as port procedures (what the model checker runs). */
export const residencyProtocol = {
  load,
  put,
  wfi,
  inject,
  request,
  ring,
  kick,
  takePending,
  takeRequests,
  reload,
  pause,
  resume,
  waitWhilePaused,
} as const;

export interface ResidencySnapshot {
  readonly state: number;
  readonly pending: number;
  readonly requests: number;
  /** e.g. "IN_WFI|DB_ARMED pending=0x1 requests=0x0" */
  readonly text: string;
}

/**
 * One vCPU's residency over its SharedArrayBuffer. Several threads build their own instance
 * over the same buffer; `onKick` is what a kick does besides setting the sticky KICK bit
 * (the KVM backend's kick, forcing KVM_RUN to return), on whichever thread kicks.
 */
export class VcpuResidency {
  private readonly words: Int32Array;
  private readonly port: AtomicsPort;

  static allocate(): SharedArrayBuffer {
    return new SharedArrayBuffer(RESIDENCY_BYTES);
  }

  constructor(
    readonly buffer: SharedArrayBuffer,
    onKick: () => void = () => {},
  ) {
    this.words = new Int32Array(buffer, 0, RESIDENCY_BYTES / 4);
    this.port = new AtomicsPort(this.words, onKick);
  }

  /** vCPU thread: become resident (refused while IN_WFI). */
  load(): LoadResult {
    return runProc(load(), this.port);
  }

  /** vCPU thread: stop being resident; the doorbell is armed iff IN_WFI. */
  put(): void {
    runProc(put(), this.port);
  }

  /** vCPU thread: block until an interrupt or a wake request is pending; ends resident. */
  wfi(): WfiWake {
    return runProc(wfi(), this.port);
  }

  /** vCPU thread, at guest entry: takes (clears) the pending interrupt bits in `mask`. */
  takePending(mask = -1): number {
    return runProc(takePending(mask), this.port);
  }

  /** vCPU thread: takes (clears) the request bits in `mask` it is about to act on. */
  takeRequests(mask: number): number {
    return runProc(takeRequests(mask), this.port);
  }

  /** vCPU thread: parks while paused; false if a STOP request ended the wait. */
  waitWhilePaused(): boolean {
    return runProc(waitWhilePaused(), this.port);
  }

  /** Any thread: publish interrupt bits, then kick, ring, or leave them for the next load. */
  inject(bits: number): Delivery {
    return runProc(inject(bits), this.port);
  }

  /** Any thread: post sticky request bits (e.g. STOP) and make sure the vCPU sees them. */
  request(bits: number): Delivery {
    return runProc(request(bits), this.port);
  }

  /** Any thread: fire the doorbell if it is armed; whether it fired. */
  ring(): boolean {
    return runProc(ring(), this.port);
  }

  /** Any thread: sticky KICK plus the backend kick. */
  kick(): void {
    runProc(kick(), this.port);
  }

  /** Any thread: a reconfiguration's put + apply + load. */
  reload(apply?: () => void): LoadResult {
    return runProc(reload(apply), this.port);
  }

  /** Any thread. */
  pause(): void {
    runProc(pause(), this.port);
  }

  /** Any thread. */
  resume(): LoadResult {
    return runProc(resume(), this.port);
  }

  /** For diagnostics (a stall report); the three reads are not one atomic snapshot. */
  snapshot(): ResidencySnapshot {
    const state = Atomics.load(this.words, STATE);
    const pending = Atomics.load(this.words, PENDING);
    const requests = Atomics.load(this.words, REQUESTS);
    const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;
    return {
      state,
      pending,
      requests,
      text: `${describeResidencyState(state)} pending=${hex(pending)} requests=${hex(requests)}`,
    };
  }
}
