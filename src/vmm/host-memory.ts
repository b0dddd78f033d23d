import { TsvisorError } from "../core/errors.js";
import type { GuestMemory, Hypervisor } from "../hv/types.js";
import { Vmid } from "../protocol/enums.js";
import type { PhysicalMemoryPort } from "../rm/types.js";

const PAGE = 4096n;
/** Host-physical addresses start high so they are never mistaken for guest addresses. */
const HOST_PHYS_BASE = 0x1_0000_0000n;
const ALIGN = 2n * 1024n * 1024n;

/**
 * A block of host memory with the host-physical address the host names it by in parcels.
 *
 * While the block is lent to a VM (a MEM_LEND succeeded and no MEM_RECLAIM yet) the host
 * must not touch it: `bytes`, `read` and `write` refuse with VMM_MEMORY_LENT. The RM still
 * reads it through the PhysicalMemoryPort (that is how it finds the vm-config DTB).
 */
export class HostRegion {
  private lentAs: number | undefined;
  private view: Uint8Array;

  /** @internal use HostMemory.allocate */
  constructor(
    readonly base: bigint,
    readonly size: number,
    /** The hypervisor memory backing the block, when a hypervisor was given. */
    readonly guestMemory: GuestMemory | undefined,
  ) {
    this.view = guestMemory ? guestMemory.bytes : new Uint8Array(size);
  }

  /** Whether the block is lent to a VM now. */
  get lent(): boolean {
    return this.lentAs !== undefined;
  }

  /** The parcel handle the block is lent as, if it is. */
  get parcel(): number | undefined {
    return this.lentAs;
  }

  get freed(): boolean {
    return this.view.length === 0;
  }

  /** The host's view of the whole block. Refused while the block is lent. */
  get bytes(): Uint8Array {
    this.checkAccess("use");
    return this.view;
  }

  /** A copy of `length` bytes at `offset`. Refused while the block is lent. */
  read(offset: number, length: number): Uint8Array {
    this.checkAccess("read");
    this.checkRange(offset, length);
    return this.view.slice(offset, offset + length);
  }

  /** Copies `data` to `offset`. Refused while the block is lent. */
  write(offset: number, data: Uint8Array): void {
    this.checkAccess("write");
    this.checkRange(offset, data.length);
    this.view.set(data, offset);
  }

  /** @internal the RM's path (PhysicalMemoryPort): allowed while lent. */
  physicalView(): Uint8Array {
    return this.view;
  }

  /** @internal */
  setLent(parcel: number | undefined): void {
    this.lentAs = parcel;
  }

  /** @internal */
  drop(): void {
    this.view = new Uint8Array(0);
  }

  private checkAccess(what: string): void {
    if (this.lentAs !== undefined) {
      throw new TsvisorError(
        "VMM_MEMORY_LENT",
        `cannot ${what} host memory at 0x${this.base.toString(16)}: it is lent to a VM as parcel ${this.lentAs}`,
      );
    }
    if (this.freed) {
      throw new TsvisorError(
        "VMM_MEMORY",
        `host memory at 0x${this.base.toString(16)} has been freed`,
      );
    }
  }

  private checkRange(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.size
    ) {
      throw new TsvisorError(
        "VMM_MEMORY",
        `${length} bytes at offset ${offset} do not fit in a ${this.size}-byte region`,
      );
    }
  }
}

/** Where a host-physical range lives: a region and the offset inside it. */
export interface ResolvedRange {
  readonly region: HostRegion;
  readonly offset: number;
}

/**
 * The host's (VMID 3) physical address space as tsvisor models it: regions the VMM allocates
 * for guest RAM and hands to the RM as memory parcels. Given a hypervisor, regions are its
 * guest memory (memfd on KVM), so a parcel can be mapped into a VM without copying; without
 * one they are plain arrays (the recording-hypervisor demo and pure tests). The RM reads the
 * vm-config DTB through the PhysicalMemoryPort side. Freed ranges are reused first-fit.
 */
export class HostMemory implements PhysicalMemoryPort {
  private readonly regions = new Map<bigint, HostRegion>();
  /** Freed while a VM still mapped them; closed by collect() once no VM does. */
  private readonly zombies = new Set<GuestMemory>();
  private readonly hypervisor: Hypervisor | undefined;

  constructor(opts: { hypervisor?: Hypervisor } = {}) {
    this.hypervisor = opts.hypervisor;
  }

  /** Whether regions are hypervisor memory (and so can be mapped into VMs). */
  get backed(): boolean {
    return this.hypervisor !== undefined;
  }

  allocate(size: number, name = "tsvisor-ram"): HostRegion {
    if (!Number.isSafeInteger(size) || size <= 0 || BigInt(size) % PAGE !== 0n) {
      throw new TsvisorError(
        "VMM_CONFIG",
        `memory size ${size} is not a positive multiple of 4 KiB`,
      );
    }
    const sorted = [...this.regions.values()].sort((a, b) => (a.base < b.base ? -1 : 1));
    let base = HOST_PHYS_BASE;
    for (const r of sorted) {
      if (base + BigInt(size) <= r.base) break;
      const end = r.base + BigInt(r.size);
      base = ((end + ALIGN - 1n) / ALIGN) * ALIGN;
    }
    const guest = this.hypervisor?.allocateMemory(size, name);
    const region = new HostRegion(base, size, guest);
    this.regions.set(base, region);
    return region;
  }

  /**
   * Gives a region back. Refused while it is lent (reclaim it first). Hypervisor memory that
   * some VM still maps (a VM whose teardown is in flight) is closed later, by collect().
   */
  free(region: HostRegion): void {
    if (this.regions.get(region.base) !== region) return;
    if (region.lent) {
      throw new TsvisorError(
        "VMM_MEMORY_LENT",
        `cannot free host memory at 0x${region.base.toString(16)}: it is lent as parcel ${region.parcel}`,
      );
    }
    this.regions.delete(region.base);
    region.drop();
    const g = region.guestMemory;
    if (!g) return;
    if (g.mapped) this.zombies.add(g);
    else g.close();
  }

  /** Closes freed hypervisor memory that no VM maps any more; returns how many remain. */
  collect(): number {
    for (const g of [...this.zombies]) {
      if (g.mapped) continue;
      g.close();
      this.zombies.delete(g);
    }
    return this.zombies.size;
  }

  /** Marks a region lent as `parcel` (the VMM's lend helper calls this after MEM_LEND). */
  markLent(region: HostRegion, parcel: number): void {
    if (this.regions.get(region.base) !== region) {
      throw new TsvisorError("VMM_MEMORY", "the region does not belong to this host memory");
    }
    region.setLent(parcel);
  }

  /** Marks a region the host's again (after MEM_RECLAIM). */
  markReclaimed(region: HostRegion): void {
    region.setLent(undefined);
  }

  get regionCount(): number {
    return this.regions.size;
  }

  /** Freed regions whose hypervisor memory is still mapped by some VM. */
  get pendingFrees(): number {
    return this.zombies.size;
  }

  /** The region holding [addr, addr + size), if one holds all of it. */
  resolve(addr: bigint, size: bigint): ResolvedRange | undefined {
    for (const r of this.regions.values()) {
      if (addr >= r.base && addr + size <= r.base + BigInt(r.size)) {
        return { region: r, offset: Number(addr - r.base) };
      }
    }
    return undefined;
  }

  read(owner: number, addr: bigint, length: number): Uint8Array | undefined {
    if (owner !== Vmid.HLOS || length < 0) return undefined;
    const at = this.resolve(addr, BigInt(length));
    if (!at) return undefined;
    return at.region.physicalView().slice(at.offset, at.offset + length);
  }
}
