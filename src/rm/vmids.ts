import { TsvisorError } from "../core/errors.js";
import { Vmid } from "../protocol/enums.js";
import { RmError } from "../protocol/rm-error.js";

/**
 * VMIDs the platform lets HLOS request by number ("secondary" VMIDs, < 64). The protocol fixes
 * only that they are below 64 and come from a platform list; tsvisor's default list is small and
 * avoids the hypervisor (0) and HLOS (3). Configurable per ResourceManager.
 */
export const DEFAULT_SECONDARY_VMIDS: readonly number[] = [45, 49];

/** Secondary VMIDs are below this bound. */
export const SECONDARY_VMID_LIMIT = 64;

export type VmidResult =
  | { readonly ok: true; readonly vmid: number }
  | { readonly ok: false; readonly error: number };

/**
 * Hands out VMIDs (rm-protocol.md §3.2 VM_ALLOC_VMID): 0 asks for a dynamic VMID, the lowest
 * free one in 0x80…0xBE; a non-zero request must name a free VMID of the platform list.
 */
export class VmidAllocator {
  private readonly used = new Set<number>();
  private readonly secondary: ReadonlySet<number>;

  constructor(secondary: readonly number[] = DEFAULT_SECONDARY_VMIDS) {
    for (const v of secondary) {
      if (!Number.isInteger(v) || v <= 0 || v >= SECONDARY_VMID_LIMIT || v === Vmid.HLOS) {
        throw new TsvisorError("RM_CONFIG", `secondary VMID ${v} is not in 1…63 (HLOS 3 excluded)`);
      }
    }
    this.secondary = new Set(secondary);
  }

  /**
   * Requested VMIDs at or above 64 can never be secondary VMIDs: the request is malformed
   * (ARGUMENT_INVALID). A VMID below 64 that the platform does not offer, or that is taken, is a
   * resource the RM does not have (NORESOURCE), as is an exhausted dynamic range.
   */
  allocate(requested: number): VmidResult {
    if (requested === 0) {
      for (let v = Vmid.DYNAMIC_FIRST; v <= Vmid.DYNAMIC_LAST; v++) {
        if (!this.used.has(v)) {
          this.used.add(v);
          return { ok: true, vmid: v };
        }
      }
      return { ok: false, error: RmError.NORESOURCE };
    }
    if (requested >= SECONDARY_VMID_LIMIT) return { ok: false, error: RmError.ARGUMENT_INVALID };
    if (!this.secondary.has(requested) || this.used.has(requested)) {
      return { ok: false, error: RmError.NORESOURCE };
    }
    this.used.add(requested);
    return { ok: true, vmid: requested };
  }

  free(vmid: number): void {
    this.used.delete(vmid);
  }

  isAllocated(vmid: number): boolean {
    return this.used.has(vmid);
  }

  get allocated(): readonly number[] {
    return [...this.used].sort((a, b) => a - b);
  }
}
