import {
  X86_REG_NAMES,
  X86_SEGMENT_NAMES,
  type X86Regs,
  type X86Segment,
  type X86Sregs,
} from "../types.js";
import {
  KVM_DTABLE_OFF,
  KVM_REGS_OFF,
  KVM_SEGMENT_OFF,
  KVM_SIZEOF,
  KVM_SREGS_OFF,
} from "./constants.js";

/** Byte codecs for struct kvm_regs / kvm_sregs, at the offsets the compiler reported. */

export function decodeRegs(view: DataView): X86Regs {
  const out = {} as X86Regs;
  for (const name of X86_REG_NAMES) out[name] = view.getBigUint64(KVM_REGS_OFF[name], true);
  return out;
}

export function encodeRegs(regs: X86Regs, view: DataView): void {
  for (const name of X86_REG_NAMES) {
    view.setBigUint64(KVM_REGS_OFF[name], BigInt.asUintN(64, regs[name]), true);
  }
}

const SEGMENT_BYTES = ["type", "present", "dpl", "db", "s", "l", "g", "avl", "unusable"] as const;

function decodeSegment(view: DataView, at: number): X86Segment {
  const seg = {
    base: view.getBigUint64(at + KVM_SEGMENT_OFF.base, true),
    limit: view.getUint32(at + KVM_SEGMENT_OFF.limit, true),
    selector: view.getUint16(at + KVM_SEGMENT_OFF.selector, true),
  } as X86Segment;
  for (const f of SEGMENT_BYTES) seg[f] = view.getUint8(at + KVM_SEGMENT_OFF[f]);
  return seg;
}

function encodeSegment(seg: X86Segment, view: DataView, at: number): void {
  view.setBigUint64(at + KVM_SEGMENT_OFF.base, BigInt.asUintN(64, seg.base), true);
  view.setUint32(at + KVM_SEGMENT_OFF.limit, seg.limit >>> 0, true);
  view.setUint16(at + KVM_SEGMENT_OFF.selector, seg.selector & 0xffff, true);
  for (const f of SEGMENT_BYTES) view.setUint8(at + KVM_SEGMENT_OFF[f], seg[f] & 0xff);
}

const CONTROL = ["cr0", "cr2", "cr3", "cr4", "cr8", "efer"] as const;
const BITMAP_WORDS = (KVM_SIZEOF.kvm_sregs - KVM_SREGS_OFF.interrupt_bitmap) / 8;

export function decodeSregs(view: DataView): X86Sregs {
  const out = {} as X86Sregs;
  for (const s of X86_SEGMENT_NAMES) out[s] = decodeSegment(view, KVM_SREGS_OFF[s]);
  for (const t of ["gdt", "idt"] as const) {
    out[t] = {
      base: view.getBigUint64(KVM_SREGS_OFF[t] + KVM_DTABLE_OFF.base, true),
      limit: view.getUint16(KVM_SREGS_OFF[t] + KVM_DTABLE_OFF.limit, true),
    };
  }
  for (const c of CONTROL) out[c] = view.getBigUint64(KVM_SREGS_OFF[c], true);
  out.apicBase = view.getBigUint64(KVM_SREGS_OFF.apic_base, true);
  out.interruptBitmap = [];
  for (let i = 0; i < BITMAP_WORDS; i++) {
    out.interruptBitmap.push(view.getBigUint64(KVM_SREGS_OFF.interrupt_bitmap + 8 * i, true));
  }
  return out;
}

export function encodeSregs(sregs: X86Sregs, view: DataView): void {
  for (const s of X86_SEGMENT_NAMES) encodeSegment(sregs[s], view, KVM_SREGS_OFF[s]);
  for (const t of ["gdt", "idt"] as const) {
    view.setBigUint64(
      KVM_SREGS_OFF[t] + KVM_DTABLE_OFF.base,
      BigInt.asUintN(64, sregs[t].base),
      true,
    );
    view.setUint16(KVM_SREGS_OFF[t] + KVM_DTABLE_OFF.limit, sregs[t].limit & 0xffff, true);
  }
  for (const c of CONTROL) view.setBigUint64(KVM_SREGS_OFF[c], BigInt.asUintN(64, sregs[c]), true);
  view.setBigUint64(KVM_SREGS_OFF.apic_base, BigInt.asUintN(64, sregs.apicBase), true);
  for (let i = 0; i < BITMAP_WORDS; i++) {
    const word = sregs.interruptBitmap[i] ?? 0n;
    view.setBigUint64(KVM_SREGS_OFF.interrupt_bitmap + 8 * i, BigInt.asUintN(64, word), true);
  }
}
