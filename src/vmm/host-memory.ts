import { TsvisorError } from "../core/errors.js";
import { Vmid } from "../protocol/enums.js";
import type { PhysicalMemoryPort } from "../rm/types.js";

/** A block of host memory with the host-physical address the host names it by in parcels. */
export interface HostRegion {
  readonly base: bigint;
  readonly size: number;
  readonly bytes: Uint8Array;
}

const PAGE = 4096n;
/** Host-physical addresses start high so they are never mistaken for guest addresses. */
const HOST_PHYS_BASE = 0x1_0000_0000n;
const ALIGN = 2n * 1024n * 1024n;

/**
 * The host's (VMID 3) physical address space as tsvisor models it: regions the VMM allocates
 * for guest RAM and hands to the RM as memory parcels. The RM reads the vm-config DTB through
 * the PhysicalMemoryPort side. Freed ranges are reused first-fit.
 */
export class HostMemory implements PhysicalMemoryPort {
  private readonly regions = new Map<bigint, HostRegion>();

  allocate(size: number): HostRegion {
    if (!Number.isSafeInteger(size) || size <= 0 || BigInt(size) % PAGE !== 0n) {
      throw new TsvisorError("VMM_CONFIG", `memory size ${size} is not a positive multiple of 4 KiB`);
    }
    const sorted = [...this.regions.values()].sort((a, b) => (a.base < b.base ? -1 : 1));
    let base = HOST_PHYS_BASE;
    for (const r of sorted) {
      if (base + BigInt(size) <= r.base) break;
      const end = r.base + BigInt(r.size);
      base = ((end + ALIGN - 1n) / ALIGN) * ALIGN;
    }
    const region: HostRegion = { base, size, bytes: new Uint8Array(size) };
    this.regions.set(base, region);
    return region;
  }

  free(region: HostRegion): void {
    this.regions.delete(region.base);
  }

  get regionCount(): number {
    return this.regions.size;
  }

  read(owner: number, addr: bigint, length: number): Uint8Array | undefined {
    if (owner !== Vmid.HLOS || length < 0) return undefined;
    for (const r of this.regions.values()) {
      if (addr >= r.base && addr + BigInt(length) <= r.base + BigInt(r.size)) {
        const off = Number(addr - r.base);
        return r.bytes.slice(off, off + length);
      }
    }
    return undefined;
  }
}
