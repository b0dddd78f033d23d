import { TsvisorError } from "../core/errors.js";

/**
 * What a device access can ask of the VM besides returning data. Devices never stop vCPUs
 * themselves; the exit handler turns an effect into the vCPU's final outcome.
 */
export type DeviceEffect =
  | { readonly kind: "power-off"; readonly code: number }
  | { readonly kind: "reset" };

/** A port-I/O device. Offsets are relative to the device's base port; size is 1, 2 or 4. */
export interface PioDevice {
  readonly name: string;
  pioRead(offset: number, size: number): number;
  pioWrite(offset: number, size: number, value: number): DeviceEffect | undefined;
}

/** An MMIO device. `data` holds the access's bytes (1–8), little-endian. */
export interface MmioDevice {
  readonly name: string;
  mmioRead(offset: number, data: Uint8Array): void;
  mmioWrite(offset: number, data: Uint8Array): DeviceEffect | undefined;
}

interface Range<D> {
  readonly base: number;
  readonly length: number;
  readonly device: D;
}

export interface UnclaimedCounts {
  pioReads: number;
  pioWrites: number;
  mmioReads: number;
  mmioWrites: number;
}

/** How many distinct unclaimed addresses are logged before the bus goes quiet. */
export const UNCLAIMED_LOG_LIMIT = 16;

/**
 * Routes guest port and MMIO accesses to devices. Accesses no device claims follow one policy:
 * reads return all-ones (what an empty ISA bus floats to), writes are dropped, both are
 * counted, and each address is logged once (up to UNCLAIMED_LOG_LIMIT addresses).
 */
export class DeviceBus {
  private readonly pio: Range<PioDevice>[] = [];
  private readonly mmio: Range<MmioDevice>[] = [];
  private readonly logged = new Set<string>();
  readonly unclaimed: UnclaimedCounts = { pioReads: 0, pioWrites: 0, mmioReads: 0, mmioWrites: 0 };

  constructor(private readonly log: (message: string) => void = () => {}) {}

  addPio(base: number, length: number, device: PioDevice): void {
    if (
      !Number.isInteger(base) ||
      !Number.isInteger(length) ||
      base < 0 ||
      length <= 0 ||
      base + length > 0x10000
    ) {
      throw new TsvisorError(
        "DEV_CONFIG",
        `${device.name}: port range ${base}+${length} is not inside 0..0xffff`,
      );
    }
    claim(this.pio, { base, length, device });
  }

  addMmio(base: number, length: number, device: MmioDevice): void {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length <= 0) {
      throw new TsvisorError(
        "DEV_CONFIG",
        `${device.name}: MMIO range ${base}+${length} is invalid`,
      );
    }
    claim(this.mmio, { base, length, device });
  }

  pioRead(port: number, size: number): number {
    const r = find(this.pio, port);
    if (r) return r.device.pioRead(port - r.base, size);
    this.unclaimed.pioReads++;
    this.note("pio", port, "read");
    return size >= 4 ? 0xffff_ffff : (1 << (8 * size)) - 1;
  }

  pioWrite(port: number, size: number, value: number): DeviceEffect | undefined {
    const r = find(this.pio, port);
    if (r) return r.device.pioWrite(port - r.base, size, value);
    this.unclaimed.pioWrites++;
    this.note("pio", port, "write");
    return undefined;
  }

  mmioRead(addr: number, data: Uint8Array): void {
    const r = find(this.mmio, addr);
    if (r) {
      r.device.mmioRead(addr - r.base, data);
      return;
    }
    this.unclaimed.mmioReads++;
    this.note("mmio", addr, "read");
    data.fill(0xff);
  }

  mmioWrite(addr: number, data: Uint8Array): DeviceEffect | undefined {
    const r = find(this.mmio, addr);
    if (r) return r.device.mmioWrite(addr - r.base, data);
    this.unclaimed.mmioWrites++;
    this.note("mmio", addr, "write");
    return undefined;
  }

  private note(space: "pio" | "mmio", addr: number, access: string): void {
    const key = `${space}:${addr}`;
    if (this.logged.has(key) || this.logged.size > UNCLAIMED_LOG_LIMIT) return;
    this.logged.add(key);
    if (this.logged.size > UNCLAIMED_LOG_LIMIT) {
      this.log(
        `unclaimed ${space} accesses at more than ${UNCLAIMED_LOG_LIMIT} addresses; no longer logging them`,
      );
      return;
    }
    const width = space === "pio" ? 4 : 8;
    this.log(
      `unclaimed ${space} ${access} at 0x${addr.toString(16).padStart(width, "0")} (reads all-ones, writes ignored)`,
    );
  }
}

function claim<D extends { readonly name: string }>(ranges: Range<D>[], r: Range<D>): void {
  const clash = ranges.find((o) => r.base < o.base + o.length && o.base < r.base + r.length);
  if (clash) {
    throw new TsvisorError(
      "DEV_CONFLICT",
      `${r.device.name} at 0x${r.base.toString(16)} overlaps ${clash.device.name} at 0x${clash.base.toString(16)}`,
    );
  }
  ranges.push(r);
  ranges.sort((a, b) => a.base - b.base);
}

function find<D>(ranges: readonly Range<D>[], addr: number): Range<D> | undefined {
  // Buses hold a handful of devices; a scan beats anything cleverer here.
  for (const r of ranges) {
    if (addr < r.base) return undefined;
    if (addr < r.base + r.length) return r;
  }
  return undefined;
}
