import { TsvisorError } from "../core/errors.js";
import type { BootWrite } from "./x86-boot.js";

/**
 * The PVH boot ABI's start-of-day structure (`hvm_start_info`, version 1): what a kernel
 * entered at its PVH note finds at %ebx — the modules (tsvisor's only one is the initrd), the
 * command line and the guest's memory map. All fields little-endian; addresses are
 * guest-physical. docs/vmm.md ("Guest memory and boot") shows where it goes.
 */

export const PVH_START_INFO_MAGIC = 0x336e_c578;
export const PVH_START_INFO_VERSION = 1;

/**
 * The boot-information page: the last page below 64 KiB that long-mode boot leaves free (the
 * page tables end at 0xefff). start_info (56 bytes), then the module list (32 bytes per
 * module), then the memory map (24 bytes per entry).
 */
export const PVH_LAYOUT = {
  startInfo: 0xf000,
  modlist: 0xf040,
  memmap: 0xf080,
  end: 0x10000,
} as const;

export const START_INFO_SIZE = 56;
export const MODLIST_ENTRY_SIZE = 32;
export const MEMMAP_ENTRY_SIZE = 24;
/** Module-list entries that fit between modlist and memmap. */
export const PVH_MAX_MODULES = (PVH_LAYOUT.memmap - PVH_LAYOUT.modlist) / MODLIST_ENTRY_SIZE;
export const PVH_MAX_MEMMAP = Math.floor((PVH_LAYOUT.end - PVH_LAYOUT.memmap) / MEMMAP_ENTRY_SIZE);

/** E820 types, which the PVH memory map uses. */
export const E820 = { RAM: 1, RESERVED: 2 } as const;

export interface PvhModule {
  readonly gpa: number;
  readonly size: number;
}

export interface MemmapEntry {
  readonly addr: number;
  readonly size: number;
  readonly type: number;
}

export interface StartInfoSpec {
  readonly modules: readonly PvhModule[];
  /** The NUL-terminated command line's address; 0 or absent: none. */
  readonly cmdlineAddr?: number;
  readonly memmap: readonly MemmapEntry[];
}

/**
 * The bytes of the boot-information page's used part, as one write at PVH_LAYOUT.startInfo:
 * start_info {magic, version 1, flags 0, nr_modules, modlist_paddr (0 without modules),
 * cmdline_paddr, rsdp_paddr 0, memmap_paddr, memmap_entries, reserved 0}, module entries
 * {paddr, size, cmdline_paddr 0, reserved 0}, memory-map entries {addr, size, type, reserved 0}.
 */
export function pvhStartInfo(spec: StartInfoSpec): BootWrite {
  const { modules, memmap } = spec;
  if (modules.length > PVH_MAX_MODULES || memmap.length > PVH_MAX_MEMMAP) {
    throw new TsvisorError(
      "LOADER_RANGE",
      `the PVH boot page holds ${PVH_MAX_MODULES} modules and ${PVH_MAX_MEMMAP} memory-map entries`,
    );
  }
  const L = PVH_LAYOUT;
  const size = L.memmap - L.startInfo + memmap.length * MEMMAP_ENTRY_SIZE;
  const v = new DataView(new ArrayBuffer(size));
  const u64 = (at: number, x: number) => v.setBigUint64(at, BigInt(x), true);
  v.setUint32(0, PVH_START_INFO_MAGIC, true);
  v.setUint32(4, PVH_START_INFO_VERSION, true);
  v.setUint32(8, 0, true);
  v.setUint32(12, modules.length, true);
  u64(16, modules.length > 0 ? L.modlist : 0);
  u64(24, spec.cmdlineAddr ?? 0);
  u64(32, 0);
  u64(40, memmap.length > 0 ? L.memmap : 0);
  v.setUint32(48, memmap.length, true);
  modules.forEach((m, i) => {
    const at = L.modlist - L.startInfo + i * MODLIST_ENTRY_SIZE;
    u64(at, m.gpa);
    u64(at + 8, m.size);
  });
  memmap.forEach((e, i) => {
    const at = L.memmap - L.startInfo + i * MEMMAP_ENTRY_SIZE;
    u64(at, e.addr);
    u64(at + 8, e.size);
    v.setUint32(at + 16, e.type, true);
  });
  return { gpa: L.startInfo, bytes: new Uint8Array(v.buffer), what: "PVH start_info" };
}
