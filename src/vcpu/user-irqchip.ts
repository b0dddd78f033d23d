/**
 * The user irqchip: interrupt delivery from userspace for VMs without KVM's in-kernel irqchip
 * (`--irqchip user`). docs/user-irqchip.md describes the mode; ./vector-model.ts the vectors and
 * routes; ./residency.ts the wake-up protocol; ./user-loop.ts the vCPU thread's side.
 *
 * This file is the raising side. A `UserIrqchip` is one VM's set of per-vCPU residency words
 * plus its route table, seen from one thread:
 * - the owner (the VMM's thread) makes it from the vCPU handles (`UserIrqchip.create`) and
 *   kicks through them;
 * - any other thread (an injector worker) opens it from `shared`, a structured-cloneable
 *   description (`UserIrqchip.open`), and kicks through kickers it maps itself.
 * Raising a GSI publishes the vector's pending bit first, then kicks a resident vCPU, rings an
 * armed doorbell or leaves the bit for the vCPU's next load (residency.ts `inject`): the
 * user-level equivalent of an irqfd, callable from any thread.
 */
import { TsvisorError } from "../core/errors.js";
import type { Notifier, OpenKicker, VcpuHandle, VcpuKicker, VcpuTransfer } from "../hv/types.js";
import {
  type Delivery,
  type LoadResult,
  type ResidencySnapshot,
  VcpuRequest,
  VcpuResidency,
} from "./residency.js";
import { type IrqRoute, IrqRoutes, vectorBit } from "./vector-model.js";

/**
 * Where a VM's interrupt controllers live: "kernel" — KVM's PIC/IOAPIC/LAPIC and PIT, HLT and
 * delivery inside KVM, irqfd; "user" — none in KVM, the user irqchip delivers from userspace.
 */
export type IrqchipMode = "kernel" | "user";

/** A VmPlan-style `irqchip` option (true: kernel, false: user) as a mode; default kernel. */
export function irqchipMode(option: boolean | IrqchipMode | undefined): IrqchipMode {
  if (option === undefined || option === true) return "kernel";
  return option === false ? "user" : option;
}

/** REQUESTS bit: apply the staged routes (a put + apply + load on the vCPU thread). */
export const IrqRequest = { RELOAD: VcpuRequest.USER } as const;

/** What raising a GSI did. */
export type RaiseResult = Delivery | "unrouted";

/** What a vCPU thread needs to run under the user irqchip. Structured-cloneable. */
export interface UserIrqVcpuConfig {
  readonly residency: SharedArrayBuffer;
  readonly routes: SharedArrayBuffer;
  readonly vcpus: number;
}

/** What any thread needs to raise a VM's interrupts. Structured-cloneable. */
export interface UserIrqchipShared {
  readonly routes: SharedArrayBuffer;
  readonly vcpus: readonly {
    readonly residency: SharedArrayBuffer;
    readonly transfer: VcpuTransfer;
  }[];
}

export class UserIrqchip {
  private readonly residencies: VcpuResidency[];
  readonly routes: IrqRoutes;

  private constructor(
    readonly shared: UserIrqchipShared,
    kick: (vcpu: number) => void,
    private release: () => void = () => {},
  ) {
    this.routes = new IrqRoutes(shared.routes, shared.vcpus.length);
    this.residencies = shared.vcpus.map((v, i) => new VcpuResidency(v.residency, () => kick(i)));
  }

  /**
   * The owner's view: fresh words for the VM's vCPUs (`handles` in index order), kicks through
   * the handles. Every GSI starts on its default route unless `routes` says otherwise.
   */
  static create(
    handles: readonly VcpuHandle[],
    routes: readonly (readonly [gsi: number, route: IrqRoute | undefined])[] = [],
  ): UserIrqchip {
    const shared: UserIrqchipShared = {
      routes: IrqRoutes.allocate(handles.length, routes),
      vcpus: handles.map((h) => ({ residency: VcpuResidency.allocate(), transfer: h.transfer })),
    };
    return new UserIrqchip(shared, (i) => handles[i]?.kick());
  }

  /**
   * Another thread's view of `shared`: it maps its own kickers through the backend module's
   * `openKicker` (IRQ_UNSUPPORTED when the backend has none). close() releases them, and must
   * come before the VM is closed (a KVM kicker's mapping holds the vCPU).
   */
  static async open(shared: UserIrqchipShared): Promise<UserIrqchip> {
    const kickers: VcpuKicker[] = [];
    try {
      for (const v of shared.vcpus) kickers.push((await kickerOpener(v.transfer))(v.transfer));
    } catch (e) {
      for (const k of kickers) k.close();
      throw e;
    }
    return new UserIrqchip(
      shared,
      (i) => kickers[i]?.kick(),
      () => {
        for (const k of kickers) k.close();
      },
    );
  }

  get vcpuCount(): number {
    return this.residencies.length;
  }

  /** What vCPU `index`'s thread needs (VcpuThreadOptions.irq). */
  vcpuConfig(index: number): UserIrqVcpuConfig {
    return {
      residency: this.vcpu(index).buffer,
      routes: this.shared.routes,
      vcpus: this.residencies.length,
    };
  }

  /** Raises GSI `gsi` (a doorbell ring): its routed vector becomes pending on its vCPU. */
  raise(gsi: number): RaiseResult {
    const route = this.routes.route(gsi);
    if (route === undefined) return "unrouted";
    return this.vcpu(route.vcpu).inject(vectorBit(route.vector));
  }

  /** Makes `vector` pending on vCPU `index` directly, bypassing the routes. */
  inject(index: number, vector: number): Delivery {
    return this.vcpu(index).inject(vectorBit(vector));
  }

  /**
   * Re-routes `gsi` (undefined: nowhere). The vCPU the GSI targets now applies the change
   * between a put and a load on its own thread, asked by a sticky RELOAD request plus a kick
   * or a ring — also when it is halted (it applies, then halts again). Until then raising
   * the GSI uses the old route.
   */
  reconfigure(gsi: number, route: IrqRoute | undefined): Delivery {
    const owner = this.routes.stage(gsi, route);
    return this.vcpu(owner).request(IrqRequest.RELOAD);
  }

  /** Parks vCPU `index` before its next guest entry (residency.ts `pause`). */
  pause(index: number): void {
    this.vcpu(index).pause();
  }

  resume(index: number): LoadResult {
    return this.vcpu(index).resume();
  }

  /** vCPU `index`'s residency, seen from this thread (reload, request, snapshot…). */
  vcpu(index: number): VcpuResidency {
    const r = this.residencies[index];
    if (r === undefined) throw new TsvisorError("IRQ_ROUTE", `vCPU ${index} does not exist`);
    return r;
  }

  snapshot(index: number): ResidencySnapshot {
    return this.vcpu(index).snapshot();
  }

  /** Releases what `open` mapped; the owner's view has nothing to release. Idempotent. */
  close(): void {
    this.release();
    this.release = () => {};
  }
}

/**
 * A BELL_TX doorbell under the user irqchip, as the Notifier the VMM hands out: signal()
 * raises `gsi` (repeated signals before delivery coalesce into one pending vector); nothing
 * ever reads it, so take() is 0n.
 */
export function doorbellNotifier(irqchip: UserIrqchip, gsi: number): Notifier {
  irqchip.routes.route(gsi);
  return {
    signal: () => {
      irqchip.raise(gsi);
    },
    take: () => 0n,
    close: () => {},
  };
}

async function kickerOpener(transfer: VcpuTransfer): Promise<OpenKicker> {
  const mod = (await import(transfer.module).catch((e: unknown) => {
    throw new TsvisorError("IRQ_UNSUPPORTED", `cannot load the vCPU backend module: ${String(e)}`);
  })) as { openKicker?: OpenKicker };
  if (typeof mod.openKicker !== "function") {
    throw new TsvisorError(
      "IRQ_UNSUPPORTED",
      `the ${transfer.backend} backend cannot kick a vCPU from another thread`,
    );
  }
  return mod.openKicker;
}
