import { TsvisorError } from "../core/errors.js";
import type { X86BootState } from "../hv/types.js";
import { type LoadedImage, loadImage } from "../loader/image.js";
import { E820 } from "../loader/pvh.js";
import { BootRegSet, X86_GPR_NAMES } from "../protocol/enums.js";
import { encodeVmConfig, type VDevice, type VmConfig } from "../protocol/vm-config.js";
import type { X86Register } from "../rm/hypervisor.js";
import type { BootRegister, HostVmSpec } from "./host-flow.js";
import type { HostMemory, HostRegion } from "./host-memory.js";

/**
 * Assembles a VM from an image: guest RAM (one host region, lent whole as the config parcel),
 * the image and its boot structures loaded into it, the vm-config DTB and the command line at
 * the top of RAM, and the boot registers the host sends with VM_SET_BOOT_CONTEXT. The layout
 * is in docs/vmm.md ("Guest memory").
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const PAGE = 4096;

export const MEM_DEFAULT = 2 * MiB;
/** Room for a real-mode image at 0x1000 and the two pages at the top. */
export const MEM_MIN = 64 * KiB;
/** Below the 32-bit MMIO holes (unclaimed 0xd0000000, the msgq device, IOAPIC, LAPIC). */
export const MEM_MAX = 2048 * MiB;
/** vCPUs this host runs per VM (KVM's recommended NR_VCPUS here). */
export const VCPUS_MAX = 2;
/** The command line's room, NUL included: the page below the DTB. */
export const CMDLINE_MAX = PAGE;

export interface BuildSpec {
  readonly image: Uint8Array;
  /** The vm-config's image-name. */
  readonly name?: string;
  /** Guest RAM in bytes, a multiple of 4 KiB from MEM_MIN to MEM_MAX; default 2 MiB. */
  readonly memSize?: number;
  /** 1 … VCPUS_MAX; default 1. */
  readonly vcpus?: number;
  /** Placed NUL-terminated at CMDLINE address; RDI points at it. */
  readonly cmdline?: string;
  /**
   * An initial RAM disk, page-aligned at the highest address below the command-line page:
   * RDX/RCX (address/size) at the ELF and flat entries, module 0 of the PVH start_info.
   */
  readonly initrd?: Uint8Array;
  /** Extra general registers for vCPU 0, sent as VM_SET_BOOT_CONTEXT X registers. */
  readonly regs?: Partial<Record<(typeof X86_GPR_NAMES)[number], bigint>>;
  /** Start an ELF at its PVH entry (32-bit) instead of e_entry (64-bit). */
  readonly elfEntry?: "elf" | "pvh";
  /** Doorbells the host rings (BELL_TX → the guest's GSI). */
  readonly doorbells?: readonly { readonly label: number; readonly gsi: number }[];
  /** Doorbells the guest rings (BELL_RX, port 0x600 + label). */
  readonly doorbellSources?: readonly { readonly label: number }[];
}

export interface GuestLayout {
  readonly ramBase: number;
  readonly ramSize: number;
  readonly dtbOffset: number;
  readonly dtbSize: number;
  readonly cmdlineAddr: number;
}

export interface BuiltVm {
  readonly config: VmConfig;
  readonly ram: HostRegion;
  readonly loaded: LoadedImage;
  readonly layout: GuestLayout;
  /** The CPU state the loader chose, for the hypervisor port's plan. */
  readonly boot: X86BootState;
  /** What startVm needs (plus a `prepare` hook the caller adds). */
  readonly host: Omit<HostVmSpec, "prepare">;
}

/** The guest layout for a RAM size: DTB in the last page, the command line below it. */
export function guestLayout(ramSize: number): GuestLayout {
  return {
    ramBase: 0,
    ramSize,
    dtbOffset: ramSize - PAGE,
    dtbSize: PAGE,
    cmdlineAddr: ramSize - 2 * PAGE,
  };
}

/** What a guest RAM size must be, for messages. */
export const MEM_SIZE_RULE = `a multiple of 4 KiB from ${MEM_MIN / KiB}K to ${MEM_MAX / MiB}M`;

/** Whether this host runs a guest with `size` bytes of RAM (MEM_SIZE_RULE). */
export function isMemSize(size: number): boolean {
  return Number.isSafeInteger(size) && size >= MEM_MIN && size <= MEM_MAX && size % PAGE === 0;
}

export function checkMemSize(size: number): void {
  if (!isMemSize(size)) {
    throw new TsvisorError(
      "VMM_CONFIG",
      `guest memory must be a multiple of 4 KiB from ${MEM_MIN / KiB} KiB to ${MEM_MAX / MiB} MiB, not ${size} bytes`,
    );
  }
}

export function checkVcpus(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > VCPUS_MAX) {
    throw new TsvisorError("VMM_CONFIG", `a VM has 1 to ${VCPUS_MAX} vCPUs here, not ${n}`);
  }
}

/** The vm-config for a build: RAM at 0, the vCPUs, one vdevice per doorbell. */
export function vmConfigFor(spec: BuildSpec, memSize: number, vcpus: number): VmConfig {
  const vdevices: VDevice[] = [
    ...(spec.doorbells ?? []).map(
      (d): VDevice => ({
        kind: "doorbell",
        name: `doorbell-${d.label}`,
        label: d.label,
        peer: "default",
        interrupt: d.gsi,
      }),
    ),
    ...(spec.doorbellSources ?? []).map(
      (d): VDevice => ({
        kind: "doorbell-source",
        name: `ring-${d.label}`,
        label: d.label,
        peer: "default",
      }),
    ),
  ];
  return {
    nodeName: "gunyah-vm-config",
    ...(spec.name ? { imageName: spec.name } : {}),
    memory: { base: 0n, size: BigInt(memSize) },
    vcpus: { count: vcpus, affinity: "proxy" },
    vdevices,
  };
}

/**
 * Allocates the guest RAM from `memory` and fills it. Nothing is lent yet: startVm lends the
 * region (and from then on the host API refuses to touch it). On failure nothing stays
 * allocated.
 */
export function buildVm(memory: HostMemory, spec: BuildSpec): BuiltVm {
  const memSize = spec.memSize ?? MEM_DEFAULT;
  const vcpus = spec.vcpus ?? 1;
  checkMemSize(memSize);
  checkVcpus(vcpus);
  const layout = guestLayout(memSize);
  const config = vmConfigFor(spec, memSize, vcpus);
  // Fails early (FDT_CONFIG) for a bad doorbell before any memory is taken.
  const dtbBytes = encodeVmConfig(config).length;
  if (dtbBytes > layout.dtbSize) {
    throw new TsvisorError(
      "VMM_CONFIG",
      `the vm-config needs ${dtbBytes} bytes, more than its ${layout.dtbSize}-byte page`,
    );
  }
  let cmdline: Uint8Array | undefined;
  if (spec.cmdline !== undefined) {
    cmdline = new TextEncoder().encode(`${spec.cmdline}\0`);
    if (cmdline.length > CMDLINE_MAX || spec.cmdline.includes("\0")) {
      throw new TsvisorError(
        "VMM_CONFIG",
        `the command line must be at most ${CMDLINE_MAX - 1} bytes without NUL characters`,
      );
    }
  }
  const ram = memory.allocate(memSize, spec.name ? `tsvisor-${spec.name}` : "tsvisor-ram");
  try {
    // The image may use everything below the command line's page.
    const usable = ram.bytes.subarray(0, layout.cmdlineAddr);
    const loaded = loadImage(
      spec.image,
      { gpa: layout.ramBase, bytes: usable },
      {
        ...(spec.elfEntry ? { elfEntry: spec.elfEntry } : {}),
        ...(spec.initrd ? { initrd: spec.initrd } : {}),
        ...(cmdline ? { cmdlineAddr: layout.cmdlineAddr } : {}),
        memoryMap: [
          { addr: layout.ramBase, size: layout.dtbOffset - layout.ramBase, type: E820.RAM },
          { addr: layout.dtbOffset, size: layout.dtbSize, type: E820.RESERVED },
        ],
      },
    );
    if (cmdline) ram.write(layout.cmdlineAddr, cmdline);
    const r = loaded.boot.regs;
    // The hand-over registers go through the RM like the rest of the boot context; without
    // an initrd RDX/RCX stay out of it (the port's plan holds their 0).
    const regs: Partial<Record<X86Register, bigint>> = {
      rip: r.rip,
      ...(r.rsp !== undefined ? { rsp: r.rsp } : {}),
      ...(loaded.startInfo !== undefined ? { rbx: BigInt(loaded.startInfo) } : {}),
      ...(loaded.initrd && loaded.mode !== "protected" ? { rdx: r.rdx, rcx: r.rcx } : {}),
      ...(cmdline ? { rdi: BigInt(layout.cmdlineAddr) } : {}),
      ...spec.regs,
    };
    return {
      config,
      ram,
      loaded,
      layout,
      boot: loaded.boot,
      host: {
        config,
        ram,
        dtbOffset: BigInt(layout.dtbOffset),
        dtbSize: BigInt(layout.dtbSize),
        boot: bootContextRegisters(regs),
      },
    };
  } catch (e) {
    memory.free(ram);
    throw e;
  }
}

/** VM_SET_BOOT_CONTEXT calls for registers: PC for rip, SP for rsp, X n for the rest. */
export function bootContextRegisters(regs: Partial<Record<X86Register, bigint>>): BootRegister[] {
  const out: BootRegister[] = [];
  for (const [name, value] of Object.entries(regs) as [X86Register, bigint | undefined][]) {
    if (value === undefined) continue;
    if (name === "rip") out.push({ regSet: BootRegSet.PC, regIndex: 0, value });
    else if (name === "rsp") out.push({ regSet: BootRegSet.SP, regIndex: 0, value });
    else out.push({ regSet: BootRegSet.X, regIndex: X86_GPR_NAMES.indexOf(name), value });
  }
  return out;
}

/** Parses "rdi=42,rsi=0x10" into registers (CLI and tests). */
export function parseRegisters(
  text: string,
): Partial<Record<(typeof X86_GPR_NAMES)[number], bigint>> {
  const out: Partial<Record<(typeof X86_GPR_NAMES)[number], bigint>> = {};
  for (const part of text.split(",")) {
    const m = /^\s*([a-z0-9]+)\s*=\s*(0x[0-9a-f]+|\d+)\s*$/i.exec(part);
    const name = m?.[1]?.toLowerCase() as (typeof X86_GPR_NAMES)[number] | undefined;
    if (!m || !name || !X86_GPR_NAMES.includes(name)) {
      throw new TsvisorError(
        "VMM_CONFIG",
        `'${part}' is not NAME=VALUE with NAME one of ${X86_GPR_NAMES.join(", ")}`,
      );
    }
    const value = BigInt(m[2]!);
    if (value >= 1n << 64n) throw new TsvisorError("VMM_CONFIG", `${name}=${m[2]} exceeds 64 bits`);
    out[name] = value;
  }
  return out;
}
