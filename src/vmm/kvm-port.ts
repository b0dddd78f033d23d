import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { ByteRing, pumpRing } from "../devices/byte-ring.js";
import { createRmMsgqShared, RM_MSGQ_GSI } from "../devices/rm-msgq.js";
import type { DeviceSpec } from "../devices/specs.js";
import type {
  Binding,
  Hypervisor,
  MemoryRegion,
  Notifier,
  VcpuHandle,
  Vm,
  X86BootState,
  X86Regs,
} from "../hv/types.js";
import { RmError } from "../protocol/rm-error.js";
import type { VmConfig } from "../protocol/vm-config.js";
import type {
  BootContext,
  HypervisorPort,
  HypResourceEntry,
  ParcelMapping,
  VmMemoryLayout,
} from "../rm/hypervisor.js";
import { RmMsgqDeviceEndpoint } from "../rpc/device-endpoint.js";
import type { MessageEndpoint } from "../rpc/transport.js";
import type { StopReason } from "../vcpu/exit-handler.js";
import {
  doorbellNotifier,
  type IrqchipMode,
  irqchipMode,
  UserIrqchip,
} from "../vcpu/user-irqchip.js";
import { type VcpuResult, VcpuThread, VcpuThreadPool } from "../vcpu/vcpu-thread.js";
import { USER_GSIS } from "../vcpu/vector-model.js";
import { type ExitMapping, exitForStop } from "./exits.js";
import type { HostMemory } from "./host-memory.js";

/**
 * The RM's HypervisorPort over a real hypervisor backend (KVM): one backend VM per RM VM,
 * parcels mapped as guest memory, one vCPU thread per vCPU, and every way a guest stops
 * reported back to the RM as a hypervisor event (VM_EXITED). docs/vmm.md describes it.
 *
 * The port is synchronous, like the RM: it starts threads and answers at once; what happens
 * later (a vCPU ending, a VM's slow teardown) happens behind it.
 */

/** How the VMM wants one VM run; registered for a VMID before VM_INIT (see `prepare`). */
export interface VmPlan {
  /**
   * CPU state the loader chose: segments, control registers, default registers. The RM's
   * boot context (VM_SET_BOOT_CONTEXT) replaces vCPU 0's general registers and RIP on top.
   * Default: the backend's reset state.
   */
  readonly boot?: X86BootState;
  /**
   * "kernel" (or true, the default): KVM's PIC/IOAPIC/LAPIC and PIT. "user" (or false): none
   * in KVM; the user irqchip delivers interrupts from userspace (docs/user-irqchip.md).
   */
  readonly irqchip?: boolean | IrqchipMode;
  /** COM1 output, in order per vCPU. Default: dropped. */
  readonly console?: (bytes: Uint8Array) => void;
  /**
   * A ByteRing (ByteRing.allocate()) the host writes terminal input into; vCPU 0's COM1
   * receives it (one reader per ring). Default: no input.
   */
  readonly consoleInput?: SharedArrayBuffer;
  /** Device and vCPU-loop messages (unclaimed accesses…). */
  readonly onLog?: (message: string) => void;
  /**
   * The first vCPU stop (the one that decides the VM's exit), called before the RM hears of
   * it, so a front end has the details when VM_EXITED arrives.
   */
  readonly onStop?: (stop: VmStop) => void;
  /** Every vCPU's result, once the last vCPU thread has let go. */
  readonly onFinished?: (results: readonly VcpuResult[]) => void;
  /** Devices every vCPU gets besides COM1, debug-exit and the port's standard devices. */
  readonly devices?: readonly DeviceSpec[];
}

export interface VmStop {
  readonly vmid: number;
  readonly vcpu: number;
  readonly reason: StopReason;
  /** What the RM was told; undefined when the host stopped the VM (forced stop, VM_EXIT). */
  readonly exit: ExitMapping | undefined;
}

/** Where the port reports hypervisor events: the RM server (RmServer fits). */
export interface PortEvents {
  vmExited(vmid: number, exitType: number, exitFlags?: number, exitCode?: number): void;
  /** Serves a guest's own RM link (its message-queue device) as `vmid`. */
  attach?(vmid: number, endpoint: MessageEndpoint): { close(): void };
}

export interface KvmPortOptions {
  /** vCPUs a VM may have (the host's recommended KVM_CAP_NR_VCPUS here). Default 2. */
  readonly maxVcpus?: number;
  /** Idle vCPU threads kept for the next VM. Default 4. */
  readonly idleThreads?: number;
  /** Port-level problems (a mapping the backend refused…). */
  readonly log?: (message: string) => void;
}

/** The secondary vCPUs' stacks: vCPU i starts at vCPU 0's RSP minus i × this. */
export const SECONDARY_STACK_GAP = 0x1000n;
/** How long unmapParcel waits for a stopped VM's vCPUs to leave the guest (see there). */
const KICK_WAIT_MS = 10;
/** A BELL_RX doorbell with label L rings at this port + L (a one-byte write). */
export const BELL_RX_PORT_BASE = 0x600;
/** BELL_RX labels the port can give an address. */
export const BELL_RX_MAX_LABEL = 0xff;

type Phase = "created" | "running" | "stopped";

interface PortVm {
  readonly vmid: number;
  readonly config: VmConfig;
  readonly plan: VmPlan;
  readonly vm: Vm;
  phase: Phase;
  /** Parcel handle → the backend mappings made for it. */
  readonly parcels: Map<number, MemoryRegion[]>;
  readonly handles: VcpuHandle[];
  readonly threads: VcpuThread[];
  readonly results: VcpuResult[];
  readonly pumps: Promise<void>[];
  readonly bindings: Binding[];
  /** BELL_TX: the host signals, the guest's GSI rises. */
  readonly bellTx: Map<number, Notifier>;
  /** BELL_RX: the guest rings, the host's notifier counts. */
  readonly bellRx: Map<number, Notifier>;
  first: VmStop | undefined;
  /** The in-kernel irqchip; without it `userIrq` exists once the vCPUs do. */
  readonly irqchip: boolean;
  userIrq: UserIrqchip | undefined;
  /** Set by destroyVm: nothing may touch the backend VM from then on but the teardown. */
  destroyed: boolean;
  endpoint: RmMsgqDeviceEndpoint | undefined;
  session: { close(): void } | undefined;
}

const DEFAULT_PLAN: VmPlan = {};

export class KvmHypervisorPort implements HypervisorPort {
  private readonly vms = new Map<number, PortVm>();
  private readonly plans = new Map<number, VmPlan>();
  private readonly closing = new Set<Promise<void>>();
  private readonly pool: VcpuThreadPool;
  private readonly maxVcpus: number;
  private readonly log: (message: string) => void;
  private events: PortEvents | undefined;
  private closed = false;

  constructor(
    private readonly hv: Hypervisor,
    private readonly memory: HostMemory,
    opts: KvmPortOptions = {},
  ) {
    this.maxVcpus = opts.maxVcpus ?? 2;
    this.pool = new VcpuThreadPool(opts.idleThreads ?? 4);
    this.log = opts.log ?? (() => {});
  }

  /** Where VM exits go (the RM server); set once the server exists. */
  connect(events: PortEvents): void {
    this.events = events;
  }

  /** Registers how VM `vmid` is to be run; consumed at its VM_INIT (createVm). */
  prepare(vmid: number, plan: VmPlan): void {
    this.plans.set(vmid, plan);
  }

  /** Drops a plan that was never consumed (a start that failed before VM_INIT). */
  discardPlan(vmid: number): void {
    this.plans.delete(vmid);
  }

  /** The notifier that raises doorbell `label`'s GSI in VM `vmid` (BELL_TX), while it runs. */
  doorbell(vmid: number, label: number): Notifier | undefined {
    return this.vms.get(vmid)?.bellTx.get(label);
  }

  /**
   * VM `vmid`'s user irqchip (VMs without the in-kernel one), once its vCPUs exist: raise
   * GSIs, reconfigure routes, pause and resume vCPUs.
   */
  userIrqchip(vmid: number): UserIrqchip | undefined {
    return this.vms.get(vmid)?.userIrq;
  }

  /** The notifier guest rings of doorbell-source `label` signal (BELL_RX), while it runs. */
  doorbellSource(vmid: number, label: number): Notifier | undefined {
    return this.vms.get(vmid)?.bellRx.get(label);
  }

  /** What is alive, for leak checks. */
  get stats(): {
    vms: number;
    runningVcpus: number;
    mappedParcels: number;
    closing: number;
    plans: number;
    idleThreads: number;
  } {
    let running = 0;
    let mapped = 0;
    for (const v of this.vms.values()) {
      running += v.threads.filter((t) => !t.done).length;
      mapped += v.parcels.size;
    }
    return {
      vms: this.vms.size,
      runningVcpus: running,
      mappedParcels: mapped,
      closing: this.closing.size,
      plans: this.plans.size,
      idleThreads: this.pool.idleCount,
    };
  }

  // ---- HypervisorPort

  createVm(
    vmid: number,
    config: VmConfig,
    _resources: readonly HypResourceEntry[],
    _layout: VmMemoryLayout,
  ): number {
    if (this.closed || this.vms.has(vmid)) return RmError.DENIED;
    const plan = this.plans.get(vmid) ?? DEFAULT_PLAN;
    this.plans.delete(vmid);
    if (config.vcpus.count > this.maxVcpus) {
      this.log(
        `VM ${vmid}: ${config.vcpus.count} vCPUs asked for, this host runs ${this.maxVcpus}`,
      );
      return RmError.NORESOURCE;
    }
    const irqchip = irqchipMode(plan.irqchip) === "kernel";
    for (const d of config.vdevices) {
      if (d.kind === "doorbell" && !irqchip && d.interrupt >= USER_GSIS) {
        this.log(
          `VM ${vmid}: doorbell ${d.name}'s GSI ${d.interrupt} is beyond the user irqchip's`,
        );
        return RmError.ARGUMENT_INVALID;
      }
      if (d.kind === "doorbell-source" && d.label > BELL_RX_MAX_LABEL) {
        this.log(`VM ${vmid}: doorbell-source ${d.name} label ${d.label} has no ring address`);
        return RmError.ARGUMENT_INVALID;
      }
    }
    let vm: Vm;
    try {
      vm = this.hv.createVm({ irqchip });
    } catch (e) {
      return this.failed(`VM ${vmid}: creating the backend VM failed`, e, RmError.NORESOURCE);
    }
    this.vms.set(vmid, {
      vmid,
      config,
      plan,
      vm,
      phase: "created",
      parcels: new Map(),
      handles: [],
      threads: [],
      results: [],
      pumps: [],
      bindings: [],
      bellTx: new Map(),
      bellRx: new Map(),
      first: undefined,
      irqchip,
      userIrq: undefined,
      destroyed: false,
      endpoint: undefined,
      session: undefined,
    });
    return RmError.OK;
  }

  mapParcel(vmid: number, parcel: ParcelMapping): number {
    const rec = this.vms.get(vmid);
    if (!rec || rec.parcels.has(parcel.handle)) return RmError.DENIED;
    const made: MemoryRegion[] = [];
    try {
      parcel.sgl.forEach((range, i) => {
        const guest = parcel.guest[i];
        const at = this.memory.resolve(range.base, range.size);
        const backing = at?.region.guestMemory;
        if (!at || !backing || !guest) {
          throw new TsvisorError(
            "VMM_MEMORY",
            `SGL range 0x${range.base.toString(16)}+0x${range.size.toString(16)} is not hypervisor memory`,
          );
        }
        made.push(
          rec.vm.mapMemory({
            gpa: Number(guest.base),
            memory: backing,
            offset: at.offset,
            size: Number(range.size),
            // Without W in the VM's rights the guest may read the parcel but not change it.
            readonly: (parcel.rights & 0b010) === 0,
          }),
        );
      });
    } catch (e) {
      for (const r of made) rec.vm.unmapMemory(r);
      return this.failed(
        `VM ${vmid}: mapping parcel ${parcel.handle} failed`,
        e,
        RmError.MAP_FAILED,
      );
    }
    rec.parcels.set(parcel.handle, made);
    return RmError.OK;
  }

  unmapParcel(vmid: number, handle: number): number {
    const rec = this.vms.get(vmid);
    const regions = rec?.parcels.get(handle);
    if (!rec || !regions) return RmError.DENIED;
    rec.parcels.delete(handle);
    // Deleting a KVM memory slot once the irqchip exists costs ~7 ms here. A stopped VM never
    // runs again (only a reset follows), so its slots can go with the VM — once no vCPU can
    // still be in the guest, since the host may reclaim and reuse the memory as soon as this
    // returns. A kick takes well under a millisecond, so waiting for it is the cheap way; a
    // vCPU that does not leave in time gets the slot deleted under it instead.
    if (rec.phase === "stopped" && rec.threads.every((t) => t.waitOutOfGuest(KICK_WAIT_MS))) {
      return RmError.OK;
    }
    try {
      for (const r of regions) rec.vm.unmapMemory(r);
    } catch (e) {
      return this.failed(`VM ${vmid}: unmapping parcel ${handle} failed`, e, RmError.MAP_FAILED);
    }
    return RmError.OK;
  }

  startVcpus(vmid: number, boot: BootContext): number {
    const rec = this.vms.get(vmid);
    if (rec?.phase !== "created") return RmError.DENIED;
    try {
      // vCPUs and irq bindings create the in-kernel irqchip, so they come after the
      // parcels are mapped (slot changes are cheap only before it exists).
      for (let i = 0; i < rec.config.vcpus.count; i++) rec.handles.push(rec.vm.createVcpu(i));
      if (!rec.irqchip) rec.userIrq = UserIrqchip.create(rec.handles);
      this.bindDoorbells(rec);
    } catch (e) {
      this.releaseBindings(rec);
      return this.failed(`VM ${vmid}: creating vCPUs failed`, e, RmError.NORESOURCE);
    }
    rec.phase = "running";
    const msgq = this.openGuestLink(rec);
    const base = rec.plan.boot ?? { regs: {}, sregs: {} };
    const regs0: Partial<X86Regs> = { ...base.regs, ...boot };
    rec.handles.forEach((handle, i) => {
      const ring = ByteRing.allocate();
      // The platform every guest gets (docs/vmm.md): COM1, debug-exit, the i8042's reset
      // line and the RM message-queue device, whose state all vCPUs share.
      const devices: DeviceSpec[] = [
        {
          kind: "uart16550",
          console: ring,
          ...(i === 0 && rec.plan.consoleInput ? { input: rec.plan.consoleInput } : {}),
        },
        { kind: "debug-exit" },
        { kind: "i8042" },
        { kind: "rm-msgq", shared: msgq },
        ...(rec.plan.devices ?? []),
      ];
      const thread = VcpuThread.start(handle, {
        devices,
        boot: i === 0 ? { ...base, regs: regs0 } : secondaryBoot(base, regs0, i),
        pool: this.pool,
        ...(rec.plan.onLog ? { onLog: rec.plan.onLog } : {}),
        ...(rec.userIrq ? { irq: rec.userIrq.vcpuConfig(i) } : {}),
      });
      rec.threads.push(thread);
      const sink = rec.plan.console;
      rec.pumps.push(pumpRing(new ByteRing(ring), (b) => sink?.(b), thread.result));
      void thread.result.then((r) => this.vcpuEnded(rec, r));
    });
    return RmError.OK;
  }

  stopVm(vmid: number): number {
    const rec = this.vms.get(vmid);
    if (!rec) return RmError.DENIED;
    this.stopAll(rec);
    return RmError.OK;
  }

  destroyVm(vmid: number): number {
    const rec = this.vms.get(vmid);
    if (!rec) return RmError.DENIED;
    this.vms.delete(vmid);
    rec.destroyed = true;
    this.stopAll(rec);
    const done = this.teardown(rec);
    this.closing.add(done);
    void done.then(() => this.closing.delete(done));
    return RmError.OK;
  }

  // ---- lifetime

  /** Resolves once every VM teardown started so far has released its last host resource. */
  async settled(): Promise<void> {
    while (this.closing.size > 0) await Promise.all([...this.closing]);
  }

  /**
   * Stops and destroys whatever VMs remain, waits for every teardown, and ends the idle vCPU
   * threads. The RM must not use the port afterwards.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const vmid of [...this.vms.keys()]) this.destroyVm(vmid);
    this.plans.clear();
    await this.settled();
    await this.pool.close();
  }

  // ---- internals

  private stopAll(rec: PortVm): void {
    rec.phase = "stopped";
    for (const t of rec.threads) t.stop();
  }

  private vcpuEnded(rec: PortVm, result: VcpuResult): void {
    rec.results[result.index] = result;
    if (rec.first === undefined) {
      // The first stop decides the VM's exit; a host stop (phase already "stopped") has
      // been accounted for by the RM, so nothing is reported for it.
      const exit = rec.phase === "running" ? exitForStop(result.reason) : undefined;
      rec.first = { vmid: rec.vmid, vcpu: result.index, reason: result.reason, exit };
      this.stopAll(rec);
      rec.plan.onStop?.(rec.first);
      if (exit) this.events?.vmExited(rec.vmid, exit.exitType, 0, exit.exitCode);
    }
    if (rec.threads.every((t) => t.done)) rec.plan.onFinished?.(rec.results);
  }

  /** Everything after the last vCPU thread let go: bindings, the VM, freed memory. */
  private async teardown(rec: PortVm): Promise<void> {
    await Promise.all(rec.threads.map((t) => t.result));
    await Promise.all(rec.pumps);
    this.releaseBindings(rec);
    const session = rec.session;
    rec.session = undefined;
    session?.close();
    rec.endpoint?.close();
    rec.parcels.clear();
    // vm.close() releases the vCPU handles and memory slots at once; the slow kernel part
    // (~15 ms with an irqchip) runs off this thread.
    const closed = rec.vm.close();
    this.memory.collect();
    await closed;
  }

  /**
   * The guest's own RM link: an RM message-queue device whose main-thread endpoint the RM
   * server serves as the guest's VMID. Attached after the current RM call returns (the port
   * runs inside one, and attaching tells the RM core a client connected).
   */
  private openGuestLink(rec: PortVm): SharedArrayBuffer {
    const shared = createRmMsgqShared();
    const raise = (level: boolean) => {
      if (rec.destroyed) return;
      if (!rec.irqchip) {
        // The user irqchip has edges only: the rising edge raises GSI 10, and the guest's
        // handler pops until RX is empty (docs/devices.md), so no message is left unseen.
        if (level) rec.userIrq?.raise(RM_MSGQ_GSI);
        return;
      }
      try {
        rec.vm.setIrqLine(RM_MSGQ_GSI, level);
      } catch (e) {
        this.failed(`VM ${rec.vmid}: driving the msgq interrupt failed`, e, 0);
      }
    };
    const endpoint = new RmMsgqDeviceEndpoint(shared, raise, `guest-msgq:${rec.vmid}`);
    queueMicrotask(() => {
      const events = this.events;
      if (rec.destroyed || !events?.attach) {
        endpoint.close();
        return;
      }
      rec.session = events.attach(rec.vmid, endpoint);
    });
    rec.endpoint = endpoint;
    return shared;
  }

  private bindDoorbells(rec: PortVm): void {
    for (const d of rec.config.vdevices) {
      if (d.kind === "doorbell" && rec.userIrq) {
        // No irqfd without the in-kernel irqchip: the notifier raises the GSI itself.
        rec.bellTx.set(d.label, doorbellNotifier(rec.userIrq, d.interrupt));
      } else if (d.kind === "doorbell") {
        const n = this.hv.createNotifier();
        rec.bellTx.set(d.label, n);
        rec.bindings.push(rec.vm.irqfd(d.interrupt, n));
      } else if (d.kind === "doorbell-source") {
        const n = this.hv.createNotifier();
        rec.bellRx.set(d.label, n);
        rec.bindings.push(
          rec.vm.ioeventfd({ space: "pio", addr: BELL_RX_PORT_BASE + d.label, len: 1 }, n),
        );
      }
    }
  }

  private releaseBindings(rec: PortVm): void {
    for (const b of rec.bindings.splice(0)) b.close();
    for (const n of [...rec.bellTx.values(), ...rec.bellRx.values()]) n.close();
    rec.bellTx.clear();
    rec.bellRx.clear();
  }

  private failed(what: string, e: unknown, code: number): number {
    // Anything but a coded failure is a bug and must not be folded into an RM error.
    if (!isTsvisorError(e)) throw e;
    this.log(`${what}: ${e.message}`);
    return code;
  }
}

/**
 * A secondary vCPU starts where vCPU 0 does, with RSI = its index, its own stack below vCPU
 * 0's, and without waiting for INIT/SIPI (docs/vmm.md, "Several vCPUs").
 */
export function secondaryBoot(
  base: X86BootState,
  regs0: Partial<X86Regs>,
  index: number,
): X86BootState {
  const regs: Partial<X86Regs> = { ...regs0, rsi: BigInt(index) };
  if (regs0.rsp !== undefined) {
    const rsp = regs0.rsp - SECONDARY_STACK_GAP * BigInt(index);
    regs.rsp = rsp > 0n ? rsp : 0n;
  }
  return { ...base, regs, runnable: true };
}
