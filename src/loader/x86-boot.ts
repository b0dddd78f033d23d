import type { X86BootState, X86Segment } from "../hv/types.js";

/**
 * x86 start states. Long mode needs page tables and a GDT in guest memory; the hidden
 * segment state is loaded directly (KVM_SET_SREGS), so the guest never executes a mode switch,
 * which also keeps it away from this host's slow instruction emulator.
 */

/** Guest-physical layout of the structures long-mode boot writes. */
export const LONG_MODE_LAYOUT = {
  gdt: 0x500,
  pml4: 0x9000,
  pdpt: 0xa000,
  /** Four page directories of 2 MiB pages: the first 4 GiB, identity-mapped. */
  pd: 0xb000,
  pdCount: 4,
  /** Initial stack pointer (grows down, below the page tables). */
  stack: 0x9000,
} as const;

export const CODE64_SELECTOR = 0x08;
export const DATA_SELECTOR = 0x10;
export const CODE32_SELECTOR = 0x18;

const CR0_PE = 1n;
const CR0_MP = 1n << 1n;
const CR0_ET = 1n << 4n;
const CR0_NE = 1n << 5n;
const CR0_WP = 1n << 16n;
const CR0_PG = 1n << 31n;
const CR4_PAE = 1n << 5n;
const CR4_OSFXSR = 1n << 9n;
const CR4_OSXMMEXCPT = 1n << 10n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;
const PTE_PRESENT = 1n;
const PTE_WRITE = 2n;
const PTE_HUGE = 1n << 7n;
const RFLAGS_RESERVED = 2n;

/** A block of bytes the boot setup needs at a guest-physical address. */
export interface BootWrite {
  readonly gpa: number;
  readonly bytes: Uint8Array;
  readonly what: string;
}

function segment(fields: Partial<X86Segment>): X86Segment {
  return {
    base: 0n,
    limit: 0xffff_ffff,
    selector: 0,
    type: 0,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 0,
    g: 1,
    avl: 0,
    unusable: 0,
    ...fields,
  };
}

/** GDT: null, 64-bit code (0x08), flat data (0x10), 32-bit code (0x18), matching the hidden state. */
function gdtBytes(): Uint8Array {
  const gdt = new DataView(new ArrayBuffer(32));
  gdt.setBigUint64(CODE64_SELECTOR, 0x00af_9b00_0000_ffffn, true);
  gdt.setBigUint64(DATA_SELECTOR, 0x00cf_9300_0000_ffffn, true);
  gdt.setBigUint64(CODE32_SELECTOR, 0x00cf_9b00_0000_ffffn, true);
  return new Uint8Array(gdt.buffer);
}

/** PML4 → PDPT → four PDs of 2 MiB pages covering 0..4 GiB, identity-mapped. */
function pageTableBytes(): BootWrite[] {
  const L = LONG_MODE_LAYOUT;
  const pml4 = new DataView(new ArrayBuffer(4096));
  pml4.setBigUint64(0, BigInt(L.pdpt) | PTE_PRESENT | PTE_WRITE, true);
  const pdpt = new DataView(new ArrayBuffer(4096));
  const pds = new DataView(new ArrayBuffer(4096 * L.pdCount));
  for (let d = 0; d < L.pdCount; d++) {
    pdpt.setBigUint64(8 * d, BigInt(L.pd + 4096 * d) | PTE_PRESENT | PTE_WRITE, true);
    for (let e = 0; e < 512; e++) {
      const addr = (BigInt(d) << 30n) | (BigInt(e) << 21n);
      pds.setBigUint64(4096 * d + 8 * e, addr | PTE_PRESENT | PTE_WRITE | PTE_HUGE, true);
    }
  }
  return [
    { gpa: L.pml4, bytes: new Uint8Array(pml4.buffer), what: "PML4" },
    { gpa: L.pdpt, bytes: new Uint8Array(pdpt.buffer), what: "PDPT" },
    { gpa: L.pd, bytes: new Uint8Array(pds.buffer), what: "page directories" },
  ];
}

/** 64-bit long mode at `entry`, paging on with the first 4 GiB identity-mapped. */
export function longModeBoot(entry: number): { writes: BootWrite[]; boot: X86BootState } {
  const L = LONG_MODE_LAYOUT;
  const code = segment({ selector: CODE64_SELECTOR, type: 0xb, l: 1, db: 0 });
  const data = segment({ selector: DATA_SELECTOR, type: 0x3, db: 1 });
  const writes: BootWrite[] = [{ gpa: L.gdt, bytes: gdtBytes(), what: "GDT" }, ...pageTableBytes()];
  return {
    writes,
    boot: {
      regs: { rip: BigInt(entry), rsp: BigInt(L.stack), rflags: RFLAGS_RESERVED },
      sregs: {
        cs: code,
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        // A busy 64-bit TSS: entry checks want a usable TR even though nothing switches tasks.
        tr: segment({ selector: 0, type: 0xb, s: 0, limit: 0x67, g: 0 }),
        gdt: { base: BigInt(L.gdt), limit: 31 },
        idt: { base: 0n, limit: 0 },
        cr0: CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG,
        cr3: BigInt(L.pml4),
        cr4: CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT,
        efer: EFER_LME | EFER_LMA,
      },
    },
  };
}

/** 16-bit real mode with every segment at 0, starting at `entry` (below 64 KiB). */
export function realModeBoot(entry: number): X86BootState {
  const seg = (type: number) => segment({ type, limit: 0xffff, g: 0 });
  const data = seg(0x3);
  return {
    regs: { rip: BigInt(entry), rsp: BigInt(entry), rflags: RFLAGS_RESERVED },
    sregs: { cs: seg(0xb), ds: data, es: data, fs: data, gs: data, ss: data },
  };
}

/**
 * 32-bit protected mode with paging off and flat 4 GiB segments, as the PVH boot protocol
 * enters a kernel. %ebx points at the hvm_start_info that loadImage writes (src/loader/pvh.ts)
 * and sets on top of this state.
 */
export function protectedModeBoot(entry: number): X86BootState {
  const code = segment({ selector: CODE32_SELECTOR, type: 0xb, db: 1 });
  const data = segment({ selector: DATA_SELECTOR, type: 0x3, db: 1 });
  return {
    regs: { rip: BigInt(entry), rbx: 0n, rflags: RFLAGS_RESERVED },
    sregs: {
      cs: code,
      ds: data,
      es: data,
      fs: data,
      gs: data,
      ss: data,
      tr: segment({ selector: 0, type: 0xb, s: 0, limit: 0x67, g: 0 }),
      cr0: CR0_PE | CR0_ET,
      cr4: 0n,
      efer: 0n,
    },
  };
}
