import { invariant } from "../core/errors.js";
import { OsStatus, Vmid, VmStatus } from "../protocol/enums.js";
import type { VmConfig } from "../protocol/vm-config.js";
import type { BootContext, GuestRange, HypResourceEntry, X86Register } from "./hypervisor.js";
import { canTransition, type VmState, type VmView } from "./lifecycle.js";

/** What VM_CONFIG_IMAGE recorded. */
export interface ConfigImage {
  readonly handle: number;
  readonly authMech: number;
  readonly imageOffset: bigint;
  readonly imageSize: bigint;
  readonly dtbOffset: bigint;
  readonly dtbSize: bigint;
}

/** Everything the RM knows about one VM. */
export interface VmRecord {
  readonly vmid: number;
  readonly owner: number;
  /** HLOS: always present, never allocated, freed or reset. */
  readonly permanent: boolean;
  status: VmState;
  osStatus: number;
  appStatus: number;
  /** VMs this VM's vdevices connect to (set at VM_INIT, dropped after VM_RESET). */
  readonly links: Set<number>;
  image: ConfigImage | undefined;
  config: VmConfig | undefined;
  /** Resources created from this VM's configuration, whoever holds them. */
  resources: HypResourceEntry[];
  /** vdevice resources destroyed by a reset whose interrupts are not yet released. */
  retired: HypResourceEntry[];
  demandPaging: readonly GuestRange[];
  imageRange: GuestRange | undefined;
  firmwareRange: GuestRange | undefined;
  firmwareMem:
    | { readonly handle: number; readonly offset: bigint; readonly size: bigint }
    | undefined;
  timeBase: { readonly timeBase: bigint; readonly sysTimerRef: bigint } | undefined;
  boot: Partial<Record<X86Register, bigint>>;
  /** The hypervisor port holds objects for this VM (createVm succeeded, destroyVm not yet run). */
  hvCreated: boolean;
  crashMsg: Uint8Array;
}

function newRecord(vmid: number, owner: number, status: VmState, permanent: boolean): VmRecord {
  return {
    vmid,
    owner,
    permanent,
    status,
    osStatus: OsStatus.NONE,
    appStatus: 0,
    links: new Set(),
    image: undefined,
    config: undefined,
    resources: [],
    retired: [],
    demandPaging: [],
    imageRange: undefined,
    firmwareRange: undefined,
    firmwareMem: undefined,
    timeBase: undefined,
    boot: {},
    hvCreated: false,
    crashMsg: new Uint8Array(0),
  };
}

/** Forgets everything a VM learnt since VM_ALLOC_VMID except identity and status. */
export function clearConfiguration(vm: VmRecord): void {
  vm.image = undefined;
  vm.config = undefined;
  vm.demandPaging = [];
  vm.imageRange = undefined;
  vm.firmwareRange = undefined;
  vm.firmwareMem = undefined;
  vm.timeBase = undefined;
  vm.boot = {};
  vm.osStatus = OsStatus.NONE;
  vm.appStatus = 0;
}

export function bootContext(vm: VmRecord): BootContext {
  return { ...vm.boot };
}

/**
 * The VMs the RM knows. HLOS is a permanent member: it is RUNNING from the start, owned by the
 * RM, and counts as a peer of every VM it owns, so the same peer and admission rules serve it.
 */
export class VmTable {
  private readonly vms = new Map<number, VmRecord>();

  constructor() {
    this.vms.set(Vmid.HLOS, newRecord(Vmid.HLOS, Vmid.RM, VmStatus.RUNNING, true));
  }

  get(vmid: number): VmRecord | undefined {
    return this.vms.get(vmid);
  }

  /** A new VM in LOAD (VM_ALLOC_VMID). */
  create(vmid: number, owner: number): VmRecord {
    invariant(!this.vms.has(vmid), `VMID ${vmid} is allocated twice`);
    invariant(canTransition(VmStatus.NO_STATE, VmStatus.LOAD), "NO_STATE → LOAD");
    const vm = newRecord(vmid, owner, VmStatus.LOAD, false);
    this.vms.set(vmid, vm);
    return vm;
  }

  remove(vm: VmRecord): void {
    invariant(!vm.permanent, "HLOS is never removed");
    this.vms.delete(vm.vmid);
    for (const other of this.vms.values()) other.links.delete(vm.vmid);
  }

  all(): IterableIterator<VmRecord> {
    return this.vms.values();
  }

  /** Moves a VM to a new state; the transition table makes anything else a bug. */
  setStatus(vm: VmRecord, to: VmState): void {
    invariant(
      canTransition(vm.status, to),
      `VM ${vm.vmid}: ${vm.status} → ${to} is not a valid transition`,
    );
    vm.status = to;
  }

  /**
   * Peers are symmetric: the owner and the VMs it owns, and both ends of every vdevice link.
   * The RM (0xFF) is nobody's peer.
   */
  peersOf(vmid: number): Set<number> {
    const peers = new Set<number>();
    const vm = this.vms.get(vmid);
    if (!vm) return peers;
    if (this.vms.has(vm.owner)) peers.add(vm.owner);
    for (const l of vm.links) peers.add(l);
    for (const other of this.vms.values()) {
      if (other.owner === vmid || other.links.has(vmid)) peers.add(other.vmid);
    }
    peers.delete(vmid);
    return peers;
  }

  view(vm: VmRecord): VmView {
    return { vmid: vm.vmid, status: vm.status, owner: vm.owner, peers: this.peersOf(vm.vmid) };
  }
}
