/**
 * DEMO DESIGN — deliberately broken; production code must never use it.
 *
 * Linux's GICv4 residency before b321c31c9b7b ("Make the doorbell request robust w.r.t
 * preemption"), on tsvisor's words: the doorbell is requested by a `need_db` argument that only
 * the WFI put passes as true; put does nothing when the vCPU is not resident; load makes it
 * resident whenever it is not. The block path is kvm_vcpu_block's loop, with the preempt
 * notifiers schedule() runs around the sleep (sched_out → put(false), sched_in → load()).
 *
 * The lost wake-up (doorbell.md §1.4) needs one preemption between the WFI put and the sleep:
 * sched_out's put is a no-op, sched_in's load makes the vCPU resident (cancelling the
 * doorbell), the runnable check finds nothing, and schedule()'s put leaves it non-resident
 * with no doorbell; the next interrupt is left pending and nobody wakes the vCPU.
 */
import {
  Residency,
  ResidencyWord,
  residencyProtocol,
  ringCount,
  VcpuRequest,
} from "../../vcpu/residency.js";
import { cas, fetchAnd, fetchOr, load, notify, type Proc, wait } from "../../vcpu/sync-port.js";
import type { DoorbellDesign } from "../doorbell.js";

const { STATE, PENDING, REQUESTS } = ResidencyWord;
const { RESIDENT, DB_ARMED } = Residency;

/** vgic_v4_put(vcpu, need_db) before the fix. */
function* put(needDb: boolean): Proc<void> {
  const label = `put(need_db=${needDb})`;
  let s = yield* load(STATE, label);
  for (;;) {
    if ((s & RESIDENT) === 0) return; // "will do nothing if we were not resident"
    const next = (s & ~(RESIDENT | DB_ARMED)) | (needDb ? DB_ARMED : 0);
    const seen = yield* cas(STATE, s, next, label);
    if (seen === s) return;
    s = seen;
  }
}

/** vgic_v4_load before the fix: resident whenever it is not. */
function* loadVcpu(): Proc<void> {
  let s = yield* load(STATE, "load");
  for (;;) {
    if ((s & RESIDENT) !== 0) return;
    const seen = yield* cas(STATE, s, (s | RESIDENT) & ~DB_ARMED, "load");
    if (seen === s) return;
    s = seen;
  }
}

/**
 * kvm_vcpu_wfi → kvm_vcpu_block, pre-fix. set_current_state() before the check is modelled by
 * remembering the ring count: a ring after it (a kick in Linux) makes schedule() return at once.
 */
function* wfi(): Proc<void> {
  yield* put(true);
  for (;;) {
    const rings = ringCount(yield* load(STATE, "set_current_state"));
    if ((yield* load(PENDING, "check_block")) !== 0) break;
    yield* put(false); // schedule(): kvm_sched_out
    const s = yield* load(STATE, "schedule");
    if (ringCount(s) === rings) yield* wait(STATE, s, "schedule: sleep");
    yield* loadVcpu(); // kvm_sched_in
  }
  yield* loadVcpu();
}

export const preFixDesign: DoorbellDesign = {
  name: "pre-fix",
  summary: "Linux before the IN_WFI fix: need_db passed by the WFI put only (the seed's bug)",
  verdict: "the seed's lost wake-up after one preemption (preempt); none needed for reconfig",
  load: loadVcpu,
  wfi,
  takePending: () => residencyProtocol.takePending(),
  waitWhilePaused: () => residencyProtocol.waitWhilePaused(),
  schedOut: () => put(false),
  schedIn: loadVcpu,
  inject: (bits) => residencyProtocol.inject(bits),
  // KVM_REQ_RELOAD_GICv4 before the fix: vgic_v4_put(vcpu, false); vgic_v4_load(vcpu).
  *reload() {
    yield* put(false);
    yield* loadVcpu();
  },
  *pause() {
    yield* fetchOr(REQUESTS, VcpuRequest.PAUSE, "pause");
    yield* put(false);
  },
  *resume() {
    yield* fetchAnd(REQUESTS, ~VcpuRequest.PAUSE, "resume");
    yield* notify(REQUESTS, Number.POSITIVE_INFINITY, "resume");
    yield* loadVcpu();
  },
};
