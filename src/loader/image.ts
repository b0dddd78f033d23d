import { TsvisorError } from "../core/errors.js";
import type { X86BootState, X86Regs } from "../hv/types.js";
import { isElf, parseElf64 } from "./elf.js";
import { E820, type MemmapEntry, pvhStartInfo } from "./pvh.js";
import { type BootWrite, longModeBoot, protectedModeBoot, realModeBoot } from "./x86-boot.js";

/** Guest RAM as the loader sees it: host bytes that appear at guest-physical `gpa`. */
export interface LoadTarget {
  readonly gpa: number;
  readonly bytes: Uint8Array;
}

export interface LoadOptions {
  /** "auto" (default) treats images starting with the ELF magic as ELF, the rest as flat. */
  readonly format?: "auto" | "elf" | "flat";
  /**
   * Which entry of an ELF to use: "elf" (default) starts at e_entry in 64-bit long mode; "pvh"
   * starts at the PVH note's entry in 32-bit protected mode, paging off, as QEMU's -kernel does.
   */
  readonly elfEntry?: "elf" | "pvh";
  /** Where a flat binary goes and starts; default FLAT_LOAD_ADDRESS. */
  readonly flatAddress?: number;
  /** General registers to set on top of the boot state (e.g. the RM boot context). */
  readonly regs?: Partial<X86Regs>;
  /**
   * An initial RAM disk, placed page-aligned as high as it fits in the target. The guest
   * learns of it from RDX (address) and RCX (size) at the ELF and flat entries — both 0
   * without one — and from module 0 of the PVH start_info at the PVH entry.
   */
  readonly initrd?: Uint8Array;
  /** The command line's guest-physical address, for the PVH start_info (0/absent: none). */
  readonly cmdlineAddr?: number;
  /** The memory map the PVH start_info reports; default: the target, as RAM. */
  readonly memoryMap?: readonly MemmapEntry[];
}

export interface LoadedImage {
  readonly format: "elf" | "flat";
  readonly entry: number;
  readonly mode: "long" | "protected" | "real";
  /** Guest-physical ranges written, image and boot structures, in address order. */
  readonly ranges: readonly {
    readonly gpa: number;
    readonly size: number;
    readonly what: string;
  }[];
  readonly boot: X86BootState;
  /** Where the initrd went, when there is one. */
  readonly initrd?: { readonly gpa: number; readonly size: number };
  /** The PVH start_info's address (RBX) when started at the PVH entry. */
  readonly startInfo?: number;
}

/** Flat binaries start here in real mode unless told otherwise. */
export const FLAT_LOAD_ADDRESS = 0x1000;
const PAGE = 4096;

/**
 * Where an initrd of `size` bytes goes in RAM [base, end): the highest page-aligned address
 * with room for it. LOADER_RANGE when it does not fit at all (overlaps are the caller's check).
 */
export function placeInitrd(size: number, base: number, end: number): number {
  if (size === 0) throw new TsvisorError("LOADER_FORMAT", "the initrd is empty");
  const gpa = Math.floor((end - size) / PAGE) * PAGE;
  if (gpa < base) {
    throw new TsvisorError(
      "LOADER_RANGE",
      `an initrd of ${size} bytes does not fit in guest RAM 0x${base.toString(16)}..0x${end.toString(16)}`,
    );
  }
  return gpa;
}

/**
 * Copies an image into guest RAM and returns the register state it starts with: ELF64
 * executables in 64-bit long mode at e_entry, flat binaries in 16-bit real mode at their load
 * address. Nothing is written unless every piece fits and none overlap.
 */
export function loadImage(
  image: Uint8Array,
  ram: LoadTarget,
  options: LoadOptions = {},
): LoadedImage {
  const format =
    options.format === "elf" || options.format === "flat"
      ? options.format
      : isElf(image)
        ? "elf"
        : "flat";
  let writes: { gpa: number; bytes: Uint8Array; size: number; what: string }[];
  let entry: number;
  let boot: X86BootState;
  let mode: LoadedImage["mode"];
  if (format === "elf") {
    const elf = parseElf64(image);
    const lm = longModeBoot(elf.entry);
    if (options.elfEntry === "pvh") {
      if (elf.pvhEntry === undefined) {
        throw new TsvisorError("LOADER_FORMAT", "the ELF image has no PVH entry note");
      }
      entry = elf.pvhEntry;
      // The GDT still goes in: a PVH kernel may load those selectors itself.
      boot = protectedModeBoot(entry);
      boot = { regs: boot.regs, sregs: { ...boot.sregs, gdt: lm.boot.sregs.gdt } };
      mode = "protected";
    } else {
      entry = elf.entry;
      boot = lm.boot;
      mode = "long";
    }
    writes = [
      ...elf.segments.map((s, i) => ({
        gpa: s.paddr,
        bytes: s.bytes,
        size: s.memsz,
        what: `segment ${i}`,
      })),
      ...lm.writes.map((w: BootWrite) => ({ ...w, size: w.bytes.length })),
    ];
  } else {
    entry = options.flatAddress ?? FLAT_LOAD_ADDRESS;
    if (!Number.isInteger(entry) || entry < 0 || entry + image.length > 0x10000) {
      throw new TsvisorError(
        "LOADER_RANGE",
        `a flat image of ${image.length} bytes at 0x${entry.toString(16)} leaves real mode's first 64 KiB`,
      );
    }
    if (image.length === 0) throw new TsvisorError("LOADER_FORMAT", "the image is empty");
    boot = realModeBoot(entry);
    mode = "real";
    writes = [{ gpa: entry, bytes: image, size: image.length, what: "image" }];
  }
  const end = ram.gpa + ram.bytes.length;
  let initrd: { gpa: number; size: number } | undefined;
  if (options.initrd) {
    const bytes = options.initrd;
    initrd = { gpa: placeInitrd(bytes.length, ram.gpa, end), size: bytes.length };
    writes.push({ gpa: initrd.gpa, bytes, size: bytes.length, what: "initrd" });
  }
  let startInfo: number | undefined;
  let handoff: Partial<X86Regs>;
  if (mode === "protected") {
    const info = pvhStartInfo({
      modules: initrd ? [initrd] : [],
      ...(options.cmdlineAddr !== undefined ? { cmdlineAddr: options.cmdlineAddr } : {}),
      memmap: options.memoryMap ?? [{ addr: ram.gpa, size: ram.bytes.length, type: E820.RAM }],
    });
    writes.push({ ...info, size: info.bytes.length });
    startInfo = info.gpa;
    handoff = { rbx: BigInt(info.gpa) };
  } else {
    // Set even without an initrd: a vCPU comes out of reset with its signature in RDX.
    handoff = { rdx: BigInt(initrd?.gpa ?? 0), rcx: BigInt(initrd?.size ?? 0) };
  }
  writes.sort((a, b) => a.gpa - b.gpa);
  for (let i = 0; i < writes.length; i++) {
    const w = writes[i]!;
    if (w.gpa < ram.gpa || w.gpa + w.size > end) {
      throw new TsvisorError(
        "LOADER_RANGE",
        `${w.what} at 0x${w.gpa.toString(16)}+0x${w.size.toString(16)} is outside guest RAM 0x${ram.gpa.toString(16)}..0x${end.toString(16)}`,
      );
    }
    const next = writes[i + 1];
    if (next && w.gpa + w.size > next.gpa) {
      throw new TsvisorError(
        "LOADER_RANGE",
        `${w.what} at 0x${w.gpa.toString(16)} overlaps ${next.what} at 0x${next.gpa.toString(16)}`,
      );
    }
  }
  for (const w of writes) {
    const at = w.gpa - ram.gpa;
    ram.bytes.set(w.bytes, at);
    ram.bytes.fill(0, at + w.bytes.length, at + w.size);
  }
  const regs = { ...boot.regs, ...handoff, ...options.regs };
  return {
    format,
    entry,
    mode,
    ranges: writes.map(({ gpa, size, what }) => ({ gpa, size, what })),
    boot: { regs, sregs: boot.sregs },
    ...(initrd ? { initrd } : {}),
    ...(startInfo !== undefined ? { startInfo } : {}),
  };
}
