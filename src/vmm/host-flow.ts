import { TsvisorError } from "../core/errors.js";
import { AclRights, AddressRange, BootRegSet, ExitType, VmStatus } from "../protocol/enums.js";
import { encodeVmConfig, type VmConfig } from "../protocol/vm-config.js";
import type { HypResource, Notification, RmClient, VmExitedNotification } from "../rpc/client.js";
import type { HostMemory, HostRegion } from "./host-memory.js";

/**
 * The host's (VMID 3) side of a VM's life, as the Linux v16 gunyah driver drives it
 * (rm-protocol.md §5.3): the exact start sequence and the teardown, over a real RM client.
 */

export interface BootRegister {
  /** BootRegSet: 0 X (general register), 1 PC, 2 SP. */
  readonly regSet: number;
  readonly regIndex: number;
  readonly value: bigint;
}

export interface HostVmSpec {
  readonly config: VmConfig;
  /** Guest RAM: one region the host lends whole; it holds the vm-config DTB. */
  readonly ram: HostRegion;
  /** Where the DTB sits inside the RAM region, and how much room it has (RM overlay space). */
  readonly dtbOffset: bigint;
  readonly dtbSize: bigint;
  readonly boot: readonly BootRegister[];
  /**
   * Called with the new VMID right after VM_ALLOC_VMID, before anything else happens to the
   * VM (the VMM registers how the hypervisor is to run it here).
   */
  readonly prepare?: (vmid: number) => void;
}

export interface StartedVm {
  readonly vmid: number;
  readonly parcel: number;
  /** The lent RAM region (the host may not touch it until teardown reclaims it). */
  readonly ram: HostRegion;
  readonly memory: HostMemory;
  readonly resources: readonly HypResource[];
  /** The VM_STATUS / VM_EXITED notifications seen for this VM, in order. */
  readonly events: Notification[];
  exited: VmExitedNotification | undefined;
  /** Stops listening for this VM's notifications. */
  readonly unsubscribe: () => void;
}

/** Called before each step so front ends can show progress. */
export type StepListener = (step: string) => void;

/** Runs the v16 start sequence; on failure undoes what it did and rethrows. */
export async function startVm(
  client: RmClient,
  memory: HostMemory,
  spec: HostVmSpec,
  onStep: StepListener = () => {},
): Promise<StartedVm> {
  const vm = await prepareVm(client, memory, spec, onStep);
  try {
    onStep("VM_START");
    await client.start(vm.vmid);
    return vm;
  } catch (e) {
    await abandon(client, vm.vmid, vm.parcel, vm.ram, memory).catch(() => {});
    vm.unsubscribe();
    throw e;
  }
}

/**
 * The v16 start sequence up to, not including, VM_START: the VM is READY with its resources
 * known. On failure undoes what it did and rethrows.
 */
export async function prepareVm(
  client: RmClient,
  memory: HostMemory,
  spec: HostVmSpec,
  onStep: StepListener = () => {},
): Promise<StartedVm> {
  const { ram } = spec;
  if (spec.dtbOffset < 0n || spec.dtbOffset + spec.dtbSize > BigInt(ram.size)) {
    throw new TsvisorError("VMM_CONFIG", "the DTB does not fit inside the lent RAM region");
  }
  const dtb = encodeVmConfig(spec.config);
  if (BigInt(dtb.length) > spec.dtbSize) {
    throw new TsvisorError(
      "VMM_CONFIG",
      `the vm-config DTB needs ${dtb.length} bytes but only ${spec.dtbSize} are reserved`,
    );
  }
  onStep("VM_ALLOC_VMID");
  const vmid = await client.allocVmid(0);
  const events: Notification[] = [];
  const vm: StartedVm = {
    vmid,
    parcel: -1,
    ram,
    memory,
    resources: [],
    events,
    exited: undefined,
    unsubscribe: client.on("notification", (n) => {
      if ((n.kind === "vmStatus" || n.kind === "vmExited") && n.vmid === vmid) {
        events.push(n);
        if (n.kind === "vmExited") vm.exited = n;
      }
    }),
  };
  let parcel: number | undefined;
  try {
    spec.prepare?.(vmid);
    ram.write(Number(spec.dtbOffset), dtb);
    onStep("MEM_LEND");
    // One ACL entry (the guest, RWX) makes this a LEND, as v16 does for the DTB parcel.
    parcel = await client.memLend({
      acl: [{ vmid, rights: AclRights.R | AclRights.W | AclRights.X }],
      sgl: [{ base: ram.base, size: BigInt(ram.size) }],
    });
    // From here until MEM_RECLAIM the memory is the guest's: the host API refuses it.
    memory.markLent(ram, parcel);
    onStep("VM_CONFIG_IMAGE");
    await client.configImage({
      vmid,
      authMech: 0,
      memHandle: parcel,
      imageOffset: 0n,
      imageSize: 0n,
      dtbOffset: spec.dtbOffset,
      dtbSize: spec.dtbSize,
    });
    const guestRam = { base: spec.config.memory.base, size: spec.config.memory.size };
    onStep("VM_SET_DEMAND_PAGING");
    await client.setDemandPaging(vmid, [guestRam]);
    onStep("VM_SET_ADDRESS_LAYOUT");
    await client.setAddressLayout({
      vmid,
      rangeId: AddressRange.IMAGE,
      base: guestRam.base,
      size: BigInt(ram.size),
    });
    onStep("VM_INIT");
    await client.init(vmid);
    for (const r of spec.boot) {
      onStep("VM_SET_BOOT_CONTEXT");
      await client.setBootContext({ vmid, ...r });
    }
    onStep("VM_GET_HYP_RESOURCES");
    const resources = await client.getHypResources(vmid);
    return Object.assign(vm, { parcel, resources });
  } catch (e) {
    await abandon(client, vmid, parcel, ram, memory).catch(() => {});
    vm.unsubscribe();
    throw e;
  }
}

/**
 * Best-effort cleanup after a failed start, or of a VM in any state: force-stop it if it
 * runs, reclaim its parcel, reset it unless it never got past LOAD, free the VMID.
 */
export async function abandon(
  client: RmClient,
  vmid: number,
  parcel: number | undefined,
  ram: HostRegion,
  memory: HostMemory,
): Promise<void> {
  const state = await client.getState(vmid).catch(() => undefined);
  const status = state?.vmStatus;
  if (status === VmStatus.RUNNING) await forceStop(client, vmid);
  if (parcel !== undefined) {
    const reclaimed = await client.memReclaim(parcel).then(
      () => true,
      () => false,
    );
    if (reclaimed) memory.markReclaimed(ram);
  }
  if (status !== undefined && status !== VmStatus.LOAD && status !== VmStatus.RESET) {
    await resetAndWait(client, vmid).catch(() => {});
  }
  await client.deallocVmid(vmid).catch(() => {});
}

async function forceStop(client: RmClient, vmid: number): Promise<VmExitedNotification> {
  const exited = client.waitFor((n) => n.kind === "vmExited" && n.vmid === vmid);
  try {
    await client.stop(vmid, { force: true, reason: 3 });
  } catch (e) {
    // The VM may have exited by itself in the meantime; then the notification already came.
    exited.catch(() => {});
    throw e;
  }
  return (await exited) as VmExitedNotification;
}

async function resetAndWait(client: RmClient, vmid: number): Promise<void> {
  const reset = client.waitFor(
    (n) => n.kind === "vmStatus" && n.vmid === vmid && n.vmStatus === VmStatus.RESET,
  );
  try {
    await client.reset(vmid);
  } catch (e) {
    reset.catch(() => {});
    throw e;
  }
  await reset;
}

/**
 * Tears a started VM down in the v16 order: forced stop and wait for VM_EXITED (unless the
 * guest already exited), reclaim the parcel, reset and wait for VM_STATUS(RESET), dealloc.
 */
export async function teardownVm(
  client: RmClient,
  vm: StartedVm,
  onStep: StepListener = () => {},
): Promise<VmExitedNotification> {
  try {
    let exited = vm.exited;
    if (!exited) {
      onStep("VM_STOP");
      exited = await forceStop(client, vm.vmid).catch(async (e) => {
        // Lost a race with the guest's own exit: the notification is in vm.exited.
        if (vm.exited) return vm.exited;
        throw e;
      });
    }
    onStep("MEM_RECLAIM");
    await client.memReclaim(vm.parcel);
    vm.memory.markReclaimed(vm.ram);
    onStep("VM_RESET");
    await resetAndWait(client, vm.vmid);
    onStep("VM_DEALLOC_VMID");
    await client.deallocVmid(vm.vmid);
    return exited;
  } finally {
    vm.unsubscribe();
  }
}

/**
 * Resolves with the VM's VM_EXITED notification: at once if it already came (a guest may exit
 * before VM_START's reply is read), otherwise when it comes. Rejects with RPC_CLOSED if the
 * link closes first.
 */
export function waitForExit(client: RmClient, vm: StartedVm): Promise<VmExitedNotification> {
  if (vm.exited) return Promise.resolve(vm.exited);
  return client.waitFor(
    (n) => n.kind === "vmExited" && n.vmid === vm.vmid,
    0,
  ) as Promise<VmExitedNotification>;
}

/** Boot registers for an entry point and stack. */
export function bootRegisters(entry: bigint, stack?: bigint): BootRegister[] {
  const regs: BootRegister[] = [{ regSet: BootRegSet.PC, regIndex: 0, value: entry }];
  if (stack !== undefined) regs.push({ regSet: BootRegSet.SP, regIndex: 0, value: stack });
  return regs;
}

export { ExitType };
