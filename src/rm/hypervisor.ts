import type { X86_GPR_NAMES } from "../protocol/enums.js";
import type { VmConfig } from "../protocol/vm-config.js";

/**
 * The narrow port through which the RM drives "the hypervisor" (KVM backend, simulator, or the
 * RecordingHypervisor in tests). The RM owns every decision; the port only carries them out.
 *
 * Every method returns an RM error code: `RmError.OK` (0) on success, otherwise the code the RM
 * should report (NORESOURCE for exhausted host resources, MAP_FAILED for a mapping the backend
 * cannot make, …). Expected failures are never thrown. Calls are synchronous because the RM is a
 * pure state machine: a backend that needs asynchronous work does it behind the port and reports
 * later failures as hypervisor events (`ResourceManagerCore.vmExited`).
 */
export interface HypervisorPort {
  /**
   * Creates the VM's hypervisor objects (address space, vCPUs in a stopped state, vdevices) at
   * VM_INIT, after the RM parsed the vm-config and allocated the resources it hands out.
   */
  createVm(
    vmid: number,
    config: VmConfig,
    resources: readonly HypResourceEntry[],
    layout: VmMemoryLayout,
  ): number;
  /**
   * Maps an accepted memory parcel into the VM at the guest ranges the RM chose
   * (`ParcelMapping.guest`).
   */
  mapParcel(vmid: number, parcel: ParcelMapping): number;
  /** Removes a parcel mapping made by mapParcel (release, reset, deallocation). */
  unmapParcel(vmid: number, handle: number): number;
  /** Loads the boot context into vCPU 0 and lets every vCPU run (VM_START). */
  startVcpus(vmid: number, boot: BootContext): number;
  /**
   * Stops every vCPU of the VM, forcibly and in bounded time (forced VM_STOP, VM_EXIT, a
   * hypervisor-reported exit). Stopping a VM that is already stopped succeeds.
   */
  stopVm(vmid: number): number;
  /** Destroys every hypervisor object of the VM (VM_RESET's "destroy VM objects" stage). */
  destroyVm(vmid: number): number;
}

/** One hypervisor resource as the RM hands it out in VM_GET_HYP_RESOURCES. */
export interface HypResourceEntry {
  /** The VM whose configuration created the resource. */
  readonly of: number;
  /** The VM that receives the capability (sees the entry in VM_GET_HYP_RESOURCES). */
  readonly holder: number;
  readonly type: number;
  readonly label: number;
  /** The other VM, from the holder's point of view. */
  readonly partnerVmid: number;
  readonly handle: number;
  readonly capId: bigint;
  /** Interrupt number in the holder; 0 = none. */
  readonly virq: number;
  readonly base: bigint;
  readonly size: bigint;
  /** Name of the vdevice the entry comes from, when it comes from one. */
  readonly vdevice?: string;
}

/** A guest-physical range (page aligned, non-empty). */
export interface GuestRange {
  readonly base: bigint;
  readonly size: bigint;
}

/** What the v16-only setup calls recorded before VM_INIT. */
export interface VmMemoryLayout {
  /** VM_SET_DEMAND_PAGING ranges: memory the host provides lazily on guest faults. */
  readonly demandPaging: readonly GuestRange[];
  /** VM_SET_ADDRESS_LAYOUT IMAGE range (covers the config-image parcel). */
  readonly image: GuestRange | undefined;
  /** VM_SET_ADDRESS_LAYOUT FIRMWARE range. */
  readonly firmware: GuestRange | undefined;
}

export interface ParcelMapping {
  readonly handle: number;
  readonly owner: number;
  /** 0 NORMAL, 1 IO. */
  readonly memType: number;
  /** The rights this VM has in the parcel's ACL (bit0 X, bit1 W, bit2 R). */
  readonly rights: number;
  /** Owner physical ranges, in parcel order. */
  readonly sgl: readonly GuestRange[];
  /**
   * Where the guest sees each SGL range (same length and order as `sgl`). Identity for parcels
   * a VM accepts; the config-image parcel is laid out contiguously from the
   * VM_SET_ADDRESS_LAYOUT IMAGE base when one was set (docs/rm.md, "Guest addresses").
   */
  readonly guest: readonly GuestRange[];
}

export type X86Register = (typeof X86_GPR_NAMES)[number] | "rip";

/**
 * VM_SET_BOOT_CONTEXT values for vCPU 0, by x86 register. X0–X15 are rax…r15 in KVM order, PC 0
 * is rip, SP 0 is rsp (the same register as X6; the later call wins).
 */
export type BootContext = Readonly<Partial<Record<X86Register, bigint>>>;
