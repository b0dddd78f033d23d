import { TsvisorError } from "../core/errors.js";
import type { X86BootState, X86Regs } from "../hv/types.js";
import { isElf, parseElf64 } from "./elf.js";
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
}

/** Flat binaries start here in real mode unless told otherwise. */
export const FLAT_LOAD_ADDRESS = 0x1000;

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
  writes.sort((a, b) => a.gpa - b.gpa);
  const end = ram.gpa + ram.bytes.length;
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
  const regs = options.regs ? { ...boot.regs, ...options.regs } : boot.regs;
  return {
    format,
    entry,
    mode,
    ranges: writes.map(({ gpa, size, what }) => ({ gpa, size, what })),
    boot: { regs, sregs: boot.sregs },
  };
}
