import { isTsvisorError } from "../core/errors.js";
import { MemExtentLabel, ResourceType } from "../protocol/enums.js";
import type { HypResource } from "../protocol/payloads.js";
import { RmError } from "../protocol/rm-error.js";
import { decodeVmConfig, type VDevice, type VmConfig } from "../protocol/vm-config.js";
import type { GuestRange, HypResourceEntry } from "./hypervisor.js";
import type { PhysicalMemoryPort } from "./types.js";

/**
 * VM_INIT's two halves: reading the vm-config DTB out of the config-image parcel, and turning
 * the configuration into the hypervisor resources the RM hands out in VM_GET_HYP_RESOURCES.
 */

/** Largest dtb_size VM_CONFIG_IMAGE accepts: the RM reads the whole region at VM_INIT. */
export const MAX_DTB_SIZE = 2n * 1024n * 1024n;

/** Linux maps virqs 32–1019 (GIC SPIs); tsvisor's pools stay inside that window. */
export const VIRQ_FIRST = 32;
export const VIRQ_LAST = 1019;
/** What the RM reports for a vCPU that is not proxy-scheduled (Linux cannot map it). */
export const VIRQ_NONE = 0xffffffff;

export type ConfigResult =
  | { readonly ok: true; readonly config: VmConfig }
  | { readonly ok: false; readonly error: number };

/**
 * Reads `length` bytes at `offset` into the parcel whose owner-physical ranges are `sgl`
 * (the parcel's bytes are its SGL entries laid end to end). Undefined if any byte is unbacked.
 */
export function readParcelBytes(
  memory: PhysicalMemoryPort,
  owner: number,
  sgl: readonly GuestRange[],
  offset: bigint,
  length: number,
): Uint8Array | undefined {
  const out = new Uint8Array(length);
  const end = offset + BigInt(length);
  let pos = 0n;
  let filled = 0;
  for (const e of sgl) {
    const from = offset > pos ? offset : pos;
    const to = end < pos + e.size ? end : pos + e.size;
    if (from < to) {
      const n = Number(to - from);
      const chunk = memory.read(owner, e.base + (from - pos), n);
      if (!chunk || chunk.length !== n) return undefined;
      out.set(chunk, Number(from - offset));
      filled += n;
    }
    pos += e.size;
    if (pos >= end) break;
  }
  return filled === length ? out : undefined;
}

/** Decodes the DTB: a broken blob is MEM_INVALID, a blob that breaks the schema ARGUMENT_INVALID. */
export function parseVmConfig(dtb: Uint8Array): ConfigResult {
  try {
    return { ok: true, config: decodeVmConfig(dtb) };
  } catch (e) {
    if (isTsvisorError(e, "FDT_CONFIG")) return { ok: false, error: RmError.ARGUMENT_INVALID };
    if (isTsvisorError(e)) return { ok: false, error: RmError.MEM_INVALID };
    throw e;
  }
}

/** The VM a vdevice connects to: "default" is the VM's owner. */
export function peerOf(vm: { readonly owner: number }, d: VDevice): number {
  return d.peer === "default" ? vm.owner : d.peer;
}

/**
 * Per-holder interrupt numbers, lowest free first. Every VM that holds capabilities has its own
 * interrupt space, so two VMs may be given the same number.
 */
export class VirqPools {
  private readonly used = new Map<number, Set<number>>();

  allocate(holder: number): number | undefined {
    let set = this.used.get(holder);
    if (!set) {
      set = new Set();
      this.used.set(holder, set);
    }
    for (let v = VIRQ_FIRST; v <= VIRQ_LAST; v++) {
      if (!set.has(v)) {
        set.add(v);
        return v;
      }
    }
    return undefined;
  }

  free(holder: number, virq: number): void {
    const set = this.used.get(holder);
    if (!set) return;
    set.delete(virq);
    if (set.size === 0) this.used.delete(holder);
  }

  inUse(holder: number): readonly number[] {
    return [...(this.used.get(holder) ?? [])].sort((a, b) => a - b);
  }

  /** Holders with at least one interrupt allocated. */
  holders(): readonly number[] {
    return [...this.used.keys()].sort((a, b) => a - b);
  }
}

/** Whether an entry of this type carries an interrupt in its holder. */
function needsVirq(type: number): boolean {
  return (
    type === ResourceType.VCPU ||
    type === ResourceType.BELL_RX ||
    type === ResourceType.MSGQ_TX ||
    type === ResourceType.MSGQ_RX
  );
}

export type AllocationResult =
  | { readonly ok: true; readonly entries: readonly HypResourceEntry[] }
  | { readonly ok: false; readonly error: number };

/**
 * Creates the resources of one VM: for the owner its vCPUs (label = index), one ADDR_SPACE
 * (label 0) and four MEM_EXTENTs (labels 0–3); for each vdevice the peer's side (doorbell →
 * BELL_TX, doorbell-source → BELL_RX, message-queue-pair → MSGQ_TX + MSGQ_RX). Capability ids
 * and resource handles come from counters and are never reused.
 */
export class ResourceAllocator {
  readonly virqs = new VirqPools();
  private nextCap = 1n;
  private nextHandle = 1;

  allocate(
    vm: { readonly vmid: number; readonly owner: number },
    config: VmConfig,
  ): AllocationResult {
    const entries: HypResourceEntry[] = [];
    const add = (
      holder: number,
      type: number,
      label: number,
      virq: number | "pool",
      vdevice?: string,
    ): boolean => {
      let n = 0;
      if (virq === "pool") {
        const v = this.virqs.allocate(holder);
        if (v === undefined) return false;
        n = v;
      } else n = virq;
      const capId = this.nextCap;
      this.nextCap++;
      const handle = this.nextHandle;
      this.nextHandle = (this.nextHandle + 1) >>> 0 || 1;
      entries.push({
        of: vm.vmid,
        holder,
        type,
        label,
        partnerVmid: vm.vmid,
        handle,
        capId,
        virq: n,
        base: 0n,
        size: 0n,
        ...(vdevice === undefined ? {} : { vdevice }),
      });
      return true;
    };
    let ok = true;
    const proxy = config.vcpus.affinity === "proxy";
    for (let i = 0; ok && i < config.vcpus.count; i++) {
      ok = add(vm.owner, ResourceType.VCPU, i, proxy ? "pool" : VIRQ_NONE);
    }
    ok &&= add(vm.owner, ResourceType.ADDR_SPACE, 0, 0);
    for (const label of Object.values(MemExtentLabel))
      ok &&= add(vm.owner, ResourceType.MEM_EXTENT, label, 0);
    for (const d of config.vdevices) {
      if (!ok) break;
      const peer = peerOf(vm, d);
      switch (d.kind) {
        case "doorbell":
          ok = add(peer, ResourceType.BELL_TX, d.label, 0, d.name);
          break;
        case "doorbell-source":
          ok = add(peer, ResourceType.BELL_RX, d.label, "pool", d.name);
          break;
        case "message-queue-pair":
          ok =
            add(peer, ResourceType.MSGQ_TX, d.label, "pool", d.name) &&
            add(peer, ResourceType.MSGQ_RX, d.label, "pool", d.name);
          break;
      }
    }
    if (!ok) {
      this.release(entries);
      return { ok: false, error: RmError.NORESOURCE };
    }
    return { ok: true, entries };
  }

  /** Gives the entries' interrupts back to their holders' pools. */
  release(entries: readonly HypResourceEntry[]): void {
    for (const e of entries) {
      if (needsVirq(e.type) && e.virq !== 0 && e.virq !== VIRQ_NONE)
        this.virqs.free(e.holder, e.virq);
    }
  }
}

/** vdevice entries (destroyed first on reset); the rest belong to the VM's core objects. */
export function isVdeviceEntry(e: HypResourceEntry): boolean {
  return e.vdevice !== undefined;
}

/** The 44-byte wire form of an entry. */
export function toWire(e: HypResourceEntry): HypResource {
  return {
    resource_type: e.type,
    partner_vmid: e.partnerVmid,
    resource_handle: e.handle,
    resource_label: e.label,
    cap_id: e.capId,
    virq_handle: 0,
    virq: e.virq,
    base: e.base,
    size: e.size,
  };
}
