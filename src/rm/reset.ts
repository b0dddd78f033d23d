import { VmStatus } from "../protocol/enums.js";
import type { Consoles } from "./console.js";
import type { HypervisorPort } from "./hypervisor.js";
import type { Memparcels } from "./memparcels.js";
import type { Notifier } from "./notifier.js";
import { isVdeviceEntry, type ResourceAllocator } from "./resources.js";
import type { Outbound } from "./types.js";
import { clearConfiguration, type VmRecord, type VmTable } from "./vm-table.js";

/**
 * VM_RESET answers at once (RESETTING) and tears the VM down afterwards, one stage per
 * `runDeferred()` call, in the RM's order. The last stage sets RESET, tells the peers, and then
 * drops the VM's vdevice links.
 */
export const RESET_STAGES = [
  "destroy-vdevices",
  "release-memparcels",
  "release-irqs",
  "destroy-vm-objects",
  "cleanup",
  "finish",
] as const;
export type ResetStage = (typeof RESET_STAGES)[number];

export interface ResetDeps {
  readonly vms: VmTable;
  readonly parcels: Memparcels;
  readonly resources: ResourceAllocator;
  readonly hypervisor: HypervisorPort;
  readonly notifier: Notifier;
  readonly consoles: Consoles;
}

/**
 * Port failures during teardown are ignored: nobody is waiting for an answer (the reply went out
 * already) and Linux waits forever for VM_STATUS(RESET), so the reset must always complete.
 */
export function runResetStage(
  stage: ResetStage,
  d: ResetDeps,
  vm: VmRecord,
  out: Outbound[],
): void {
  switch (stage) {
    case "destroy-vdevices":
      vm.retired = vm.resources.filter(isVdeviceEntry);
      vm.resources = vm.resources.filter((e) => !isVdeviceEntry(e));
      return;
    case "release-memparcels": {
      d.parcels.releaseAllFor(vm.vmid);
      // The config image (and firmware) parcel became the VM's own memory at start: a Linux
      // v16 host takes those pages back through the hypervisor, never with MEM_RECLAIM, so the
      // RM forgets the parcel with the VM. Shared parcels stay with their owner.
      for (const h of [vm.image?.handle, vm.firmwareMem?.handle]) {
        if (h === undefined) continue;
        const p = d.parcels.get(h);
        if (p && p.targets.size === 1 && p.targets.has(vm.vmid) && p.owner === vm.owner)
          d.parcels.drop(h);
      }
      return;
    }
    case "release-irqs":
      d.resources.release(vm.retired);
      d.resources.release(vm.resources);
      vm.retired = [];
      return;
    case "destroy-vm-objects":
      if (vm.hvCreated) d.hypervisor.destroyVm(vm.vmid);
      vm.hvCreated = false;
      vm.resources = [];
      return;
    case "cleanup":
      clearConfiguration(vm);
      d.consoles.forget(vm.vmid, false);
      return;
    case "finish":
      d.vms.setStatus(vm, VmStatus.RESET);
      d.notifier.vmStatus(out, vm);
      vm.links.clear();
      return;
  }
}
