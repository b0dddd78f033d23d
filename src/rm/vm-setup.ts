import { AddressRange, BootRegSet, X86_GPR_NAMES } from "../protocol/enums.js";
import type {
  SetAddressLayoutReq,
  SetBootContextReq,
  SetDemandPagingReq,
} from "../protocol/payloads.js";
import { RmError } from "../protocol/rm-error.js";
import type { Decoded } from "../protocol/struct.js";
import type { GuestRange, X86Register } from "./hypervisor.js";
import { type Memparcels, rangesValid } from "./memparcels.js";
import type { VmRecord } from "./vm-table.js";

/**
 * The three calls Linux v16 makes that the open-source RM lacks. tsvisor's semantics (see
 * docs/rm.md): they configure a VM between VM_CONFIG_IMAGE and VM_INIT (boot context: between
 * VM_INIT and VM_START) and only record what the hypervisor port needs later.
 */

/** The x86 register a (reg_set, reg_index) pair names, or undefined if it names none. */
export function bootRegister(regSet: number, index: number): X86Register | undefined {
  switch (regSet) {
    case BootRegSet.X:
      return X86_GPR_NAMES[index];
    case BootRegSet.PC:
      return index === 0 ? "rip" : undefined;
    case BootRegSet.SP:
      return index === 0 ? "rsp" : undefined;
    default:
      return undefined;
  }
}

export function setBootContext(vm: VmRecord, req: Decoded<typeof SetBootContextReq>): number {
  const reg = bootRegister(req.reg_set, req.reg_index);
  if (reg === undefined) return RmError.ARGUMENT_INVALID;
  vm.boot[reg] = req.value;
  return RmError.OK;
}

/** Ranges the host backs lazily: non-empty list of page-aligned, disjoint, non-wrapping ranges. */
export function setDemandPaging(vm: VmRecord, req: Decoded<typeof SetDemandPagingReq>): number {
  const ranges: GuestRange[] = req.ranges.map((r) => ({ base: r.guest_phys_base, size: r.size }));
  if (ranges.length === 0 || !rangesValid(ranges)) return RmError.ARGUMENT_INVALID;
  vm.demandPaging = ranges;
  return RmError.OK;
}

/**
 * IMAGE names the guest-physical range where the config-image parcel appears (its SGL ranges
 * back to back from `base`), so it must be at least as large as the parcel; FIRMWARE is
 * recorded for the port. Either may be set again before VM_INIT.
 */
export function setAddressLayout(
  vm: VmRecord,
  req: Decoded<typeof SetAddressLayoutReq>,
  parcels: Memparcels,
): number {
  const range: GuestRange = { base: req.base, size: req.size };
  if (!rangesValid([range])) return RmError.ARGUMENT_INVALID;
  switch (req.range_id) {
    case AddressRange.IMAGE: {
      const p = vm.image === undefined ? undefined : parcels.get(vm.image.handle);
      if (!p) return RmError.ARGUMENT_INVALID;
      let bytes = 0n;
      for (const e of p.sgl) bytes += e.size;
      if (range.size < bytes) return RmError.ARGUMENT_INVALID;
      vm.imageRange = range;
      return RmError.OK;
    }
    case AddressRange.FIRMWARE:
      vm.firmwareRange = range;
      return RmError.OK;
    default:
      return RmError.ARGUMENT_INVALID;
  }
}
