import { RmError } from "../protocol/rm-error.js";
import type { VmConfig } from "../protocol/vm-config.js";
import type {
  BootContext,
  HypervisorPort,
  HypResourceEntry,
  ParcelMapping,
  VmMemoryLayout,
} from "./hypervisor.js";

export type HypervisorCall =
  | {
      readonly method: "createVm";
      readonly vmid: number;
      readonly config: VmConfig;
      readonly resources: readonly HypResourceEntry[];
      readonly layout: VmMemoryLayout;
    }
  | { readonly method: "mapParcel"; readonly vmid: number; readonly parcel: ParcelMapping }
  | { readonly method: "unmapParcel"; readonly vmid: number; readonly handle: number }
  | { readonly method: "startVcpus"; readonly vmid: number; readonly boot: BootContext }
  | { readonly method: "stopVm"; readonly vmid: number }
  | { readonly method: "destroyVm"; readonly vmid: number };

export type HypervisorMethod = HypervisorCall["method"];

interface Failure {
  readonly method: HypervisorMethod;
  readonly vmid: number | undefined;
  readonly code: number;
  remaining: number;
}

/** What a VM looks like inside the recording hypervisor. */
export interface RecordedVm {
  running: boolean;
  readonly mapped: Map<number, ParcelMapping>;
}

/**
 * A HypervisorPort that keeps a log of every call in order and the objects those calls leave
 * alive, so tests can check both what the RM asked for and that it cleaned up. It can be told to
 * fail chosen calls. It also checks the port contract (no mapping into a VM that does not exist,
 * no double creation…): a violation is an RM bug, listed in `violations` and answered with an
 * error instead of silently succeeding.
 */
export class RecordingHypervisor implements HypervisorPort {
  readonly calls: HypervisorCall[] = [];
  readonly violations: string[] = [];
  readonly vms = new Map<number, RecordedVm>();
  private readonly failures: Failure[] = [];

  /** Makes the next `times` calls of `method` (for `vmid`, if given) answer `code`. */
  failNext(
    method: HypervisorMethod,
    code: number = RmError.NORESOURCE,
    opts: { vmid?: number; times?: number } = {},
  ): void {
    this.failures.push({ method, vmid: opts.vmid, code, remaining: opts.times ?? 1 });
  }

  /** The calls of one method, in order. */
  callsOf<M extends HypervisorMethod>(method: M): Extract<HypervisorCall, { method: M }>[] {
    return this.calls.filter(
      (c): c is Extract<HypervisorCall, { method: M }> => c.method === method,
    );
  }

  createVm(
    vmid: number,
    config: VmConfig,
    resources: readonly HypResourceEntry[],
    layout: VmMemoryLayout,
  ): number {
    this.calls.push({ method: "createVm", vmid, config, resources, layout });
    const f = this.injected("createVm", vmid);
    if (f !== undefined) return f;
    if (this.vms.has(vmid)) return this.violation(`createVm(${vmid}) while the VM exists`);
    this.vms.set(vmid, { running: false, mapped: new Map() });
    return RmError.OK;
  }

  mapParcel(vmid: number, parcel: ParcelMapping): number {
    this.calls.push({ method: "mapParcel", vmid, parcel });
    const f = this.injected("mapParcel", vmid);
    if (f !== undefined) return f;
    const vm = this.vms.get(vmid);
    if (!vm)
      return this.violation(`mapParcel(${vmid}, ${parcel.handle}) for a VM that does not exist`);
    if (vm.mapped.has(parcel.handle)) {
      return this.violation(`mapParcel(${vmid}, ${parcel.handle}) maps the parcel twice`);
    }
    vm.mapped.set(parcel.handle, parcel);
    return RmError.OK;
  }

  unmapParcel(vmid: number, handle: number): number {
    this.calls.push({ method: "unmapParcel", vmid, handle });
    const f = this.injected("unmapParcel", vmid);
    if (f !== undefined) return f;
    const vm = this.vms.get(vmid);
    if (!vm?.mapped.delete(handle)) {
      return this.violation(`unmapParcel(${vmid}, ${handle}) for a parcel that is not mapped`);
    }
    return RmError.OK;
  }

  startVcpus(vmid: number, boot: BootContext): number {
    this.calls.push({ method: "startVcpus", vmid, boot });
    const f = this.injected("startVcpus", vmid);
    if (f !== undefined) return f;
    const vm = this.vms.get(vmid);
    if (!vm) return this.violation(`startVcpus(${vmid}) for a VM that does not exist`);
    if (vm.running) return this.violation(`startVcpus(${vmid}) while it runs`);
    vm.running = true;
    return RmError.OK;
  }

  stopVm(vmid: number): number {
    this.calls.push({ method: "stopVm", vmid });
    const f = this.injected("stopVm", vmid);
    if (f !== undefined) return f;
    const vm = this.vms.get(vmid);
    if (!vm) return this.violation(`stopVm(${vmid}) for a VM that does not exist`);
    vm.running = false;
    return RmError.OK;
  }

  destroyVm(vmid: number): number {
    this.calls.push({ method: "destroyVm", vmid });
    const f = this.injected("destroyVm", vmid);
    if (f !== undefined) return f;
    const vm = this.vms.get(vmid);
    if (!vm) return this.violation(`destroyVm(${vmid}) for a VM that does not exist`);
    if (vm.mapped.size > 0) {
      this.violation(`destroyVm(${vmid}) with ${vm.mapped.size} parcels still mapped`);
    }
    this.vms.delete(vmid);
    return RmError.OK;
  }

  private injected(method: HypervisorMethod, vmid: number): number | undefined {
    const i = this.failures.findIndex(
      (f) => f.method === method && (f.vmid === undefined || f.vmid === vmid),
    );
    if (i < 0) return undefined;
    const f = this.failures[i]!;
    f.remaining--;
    if (f.remaining <= 0) this.failures.splice(i, 1);
    return f.code;
  }

  private violation(text: string): number {
    this.violations.push(text);
    return RmError.DENIED;
  }
}
