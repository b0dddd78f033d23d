/**
 * The user irqchip's vector-delivery model: the smallest interrupt controller our guests need
 * when KVM has no in-kernel irqchip (docs/user-irqchip.md).
 *
 * - 32 vectors, 0x20–0x3f. Vector 0x20 + b is bit b of the vCPU's PENDING residency word, so
 *   "pending" is one bit per vector: raising a vector that is already pending changes nothing
 *   (edge semantics; coalescing).
 * - GSI (doorbell line) n, 0–31, is routed to one vCPU and one vector; by default vCPU 0 and
 *   vector 0x20 + n. A route can be changed while the VM runs (reconfiguration).
 * - Delivery: the lowest pending vector first, one at a time, when the guest can take an
 *   external interrupt (IF set, no interrupt shadow, nothing queued). No priorities, masks,
 *   in-service state or EOI: a guest handler simply returns with iretq; a vector raised while
 *   its handler runs is delivered again once the guest re-enables interrupts.
 *
 * Routes live in a SharedArrayBuffer so that every thread that raises interrupts (the VMM,
 * injector workers) and the vCPU threads that apply reconfigurations see the same table.
 */
import { TsvisorError } from "../core/errors.js";

export const USER_VECTOR_BASE = 0x20;
export const USER_VECTORS = 32;
export const USER_GSIS = 32;

/** The PENDING bit of `vector` (0x20–0x3f). */
export function vectorBit(vector: number): number {
  checkVector(vector);
  return 1 << (vector - USER_VECTOR_BASE);
}

/** The lowest pending vector of a PENDING word, or undefined when none is pending. */
export function lowestVector(pending: number): number | undefined {
  if (pending === 0) return undefined;
  // 31 - clz32(x & -x) is the index of the lowest set bit, also for bit 31.
  return USER_VECTOR_BASE + 31 - Math.clz32(pending & -pending);
}

/** The default route of GSI n: vCPU 0, vector 0x20 + n. */
export function defaultRoute(gsi: number): IrqRoute {
  checkGsi(gsi);
  return { vcpu: 0, vector: USER_VECTOR_BASE + gsi };
}

export interface IrqRoute {
  readonly vcpu: number;
  readonly vector: number;
}

export function checkVector(vector: number): void {
  if (
    !Number.isInteger(vector) ||
    vector < USER_VECTOR_BASE ||
    vector >= USER_VECTOR_BASE + USER_VECTORS
  ) {
    throw new TsvisorError("IRQ_ROUTE", `vector ${vector} is outside the user irqchip's 0x20–0x3f`);
  }
}

function checkRoute(route: IrqRoute, vcpus: number): void {
  checkVector(route.vector);
  if (!Number.isInteger(route.vcpu) || route.vcpu < 0 || route.vcpu >= vcpus) {
    throw new TsvisorError("IRQ_ROUTE", `vCPU ${route.vcpu} does not exist`);
  }
}

export function checkGsi(gsi: number): void {
  if (!Number.isInteger(gsi) || gsi < 0 || gsi >= USER_GSIS) {
    throw new TsvisorError("IRQ_ROUTE", `GSI ${gsi} is outside the user irqchip's 0–31`);
  }
}

// One Int32 per GSI in each of two tables: ACTIVE (what raising the GSI does now) and STAGED
// (a new route waiting for its vCPU to apply it). An entry is (vcpu << 8) | vector.
const ACTIVE = 0;
const STAGED = USER_GSIS;
/** ACTIVE: the GSI goes nowhere (raising it is dropped). */
const UNROUTED = -1;
/** STAGED: nothing waiting. */
const NOTHING = -2;
const ROUTE_BYTES = 2 * USER_GSIS * 4;

function encode(route: IrqRoute | undefined): number {
  return route === undefined ? UNROUTED : (route.vcpu << 8) | route.vector;
}

function decode(entry: number): IrqRoute | undefined {
  return entry < 0 ? undefined : { vcpu: entry >>> 8, vector: entry & 0xff };
}

/**
 * The GSI → (vCPU, vector) table. Raising reads ACTIVE; `stage` writes STAGED and the vCPU
 * the GSI currently targets moves it to ACTIVE (`applyStaged`) between a put and a load —
 * the analogue of KVM_REQ_RELOAD_GICv4. An interrupt raised under the old route before that
 * is delivered under the old route (like an MSI in flight while it is retargeted).
 */
export class IrqRoutes {
  private readonly words: Int32Array;

  /** A table with every GSI on its default route, except those `initial` routes elsewhere. */
  static allocate(
    vcpus: number,
    initial: readonly (readonly [gsi: number, route: IrqRoute | undefined])[] = [],
  ): SharedArrayBuffer {
    if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 255) {
      throw new TsvisorError("IRQ_ROUTE", `${vcpus} vCPUs is outside the user irqchip's 1–255`);
    }
    const buffer = new SharedArrayBuffer(ROUTE_BYTES);
    const words = new Int32Array(buffer);
    for (let g = 0; g < USER_GSIS; g++) {
      words[ACTIVE + g] = encode(defaultRoute(g));
      words[STAGED + g] = NOTHING;
    }
    for (const [gsi, route] of initial) {
      checkGsi(gsi);
      if (route !== undefined) checkRoute(route, vcpus);
      words[ACTIVE + gsi] = encode(route);
    }
    return buffer;
  }

  constructor(
    readonly buffer: SharedArrayBuffer,
    /** vCPUs a route may name. */
    readonly vcpus: number,
  ) {
    if (buffer.byteLength !== ROUTE_BYTES) {
      throw new TsvisorError("IRQ_ROUTE", "the buffer is not a user irqchip route table");
    }
    this.words = new Int32Array(buffer);
  }

  /** Where raising `gsi` goes now; undefined when it goes nowhere. */
  route(gsi: number): IrqRoute | undefined {
    checkGsi(gsi);
    return decode(Atomics.load(this.words, ACTIVE + gsi));
  }

  /** The route waiting to be applied, if any (null: "unroute" is waiting). */
  staged(gsi: number): IrqRoute | null | undefined {
    checkGsi(gsi);
    const e = Atomics.load(this.words, STAGED + gsi);
    return e === NOTHING ? undefined : (decode(e) ?? null);
  }

  /**
   * Stages a new route (undefined: route it nowhere) and returns the vCPU that must apply it:
   * the one the GSI targets now, or the new target when it targets none.
   */
  stage(gsi: number, route: IrqRoute | undefined): number {
    checkGsi(gsi);
    if (route !== undefined) checkRoute(route, this.vcpus);
    Atomics.store(this.words, STAGED + gsi, encode(route));
    return this.route(gsi)?.vcpu ?? route?.vcpu ?? 0;
  }

  /**
   * vCPU thread of `vcpu`, between its put and load: makes the staged routes of the GSIs that
   * target it (or target nothing) active; returns how many changed. A route staged again
   * meanwhile stays staged for the next apply.
   */
  applyStaged(vcpu: number): number {
    let applied = 0;
    for (let g = 0; g < USER_GSIS; g++) {
      const staged = Atomics.load(this.words, STAGED + g);
      if (staged === NOTHING) continue;
      const active = Atomics.load(this.words, ACTIVE + g);
      const owner = active === UNROUTED ? (decode(staged)?.vcpu ?? vcpu) : active >>> 8;
      if (owner !== vcpu) continue;
      // Only the owner applies, so ACTIVE has no concurrent writer; STAGED may be re-staged.
      if (Atomics.compareExchange(this.words, STAGED + g, staged, NOTHING) !== staged) continue;
      Atomics.store(this.words, ACTIVE + g, staged);
      applied++;
    }
    return applied;
  }
}
