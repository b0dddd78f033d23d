import { TsvisorError } from "../core/errors.js";

/** One PT_LOAD segment: `bytes` go to guest-physical `paddr`, zero-filled up to `memsz`. */
export interface ElfSegment {
  readonly paddr: number;
  readonly vaddr: number;
  readonly memsz: number;
  readonly bytes: Uint8Array;
}

export interface ElfImage {
  readonly entry: number;
  readonly segments: readonly ElfSegment[];
  /** The 32-bit entry of a Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY), if the image has one. */
  readonly pvhEntry?: number;
}

const ELF_MAGIC = 0x464c457f;
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const EM_X86_64 = 62;
const ET_EXEC = 2;
const PT_LOAD = 1;
const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const MAX_PHDRS = 64;

export function isElf(image: Uint8Array): boolean {
  return (
    image.length >= 4 &&
    new DataView(image.buffer, image.byteOffset, 4).getUint32(0, true) === ELF_MAGIC
  );
}

/**
 * Reads a static x86-64 ELF executable. Segments are loaded by physical address (p_paddr),
 * which is how freestanding kernels and test guests are linked.
 */
export function parseElf64(image: Uint8Array): ElfImage {
  const fail = (why: string): never => {
    throw new TsvisorError("LOADER_FORMAT", `not a loadable ELF64 image: ${why}`);
  };
  if (image.length < EHDR_SIZE) fail("shorter than an ELF header");
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (v.getUint32(0, true) !== ELF_MAGIC) fail("bad magic");
  if (v.getUint8(4) !== ELFCLASS64) fail("not 64-bit");
  if (v.getUint8(5) !== ELFDATA2LSB) fail("not little-endian");
  if (v.getUint16(16, true) !== ET_EXEC) fail("not an executable (ET_EXEC)");
  if (v.getUint16(18, true) !== EM_X86_64) fail("not x86-64");
  const entry = safe(v.getBigUint64(24, true), "entry", fail);
  const phoff = safe(v.getBigUint64(32, true), "phoff", fail);
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  if (phentsize < PHDR_SIZE) fail(`program header size ${phentsize}`);
  if (phnum > MAX_PHDRS) fail(`${phnum} program headers`);
  if (phoff + phnum * phentsize > image.length) fail("program headers run past the end");
  const segments: ElfSegment[] = [];
  let pvhEntry: number | undefined;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const type = v.getUint32(at, true);
    if (type === PT_NOTE) {
      const offset = safe(v.getBigUint64(at + 8, true), "p_offset", fail);
      const filesz = safe(v.getBigUint64(at + 32, true), "p_filesz", fail);
      if (offset + filesz > image.length) fail(`note segment ${i} runs past the end of the file`);
      pvhEntry ??= findPvhEntry(v, offset, offset + filesz);
      continue;
    }
    if (type !== PT_LOAD) continue;
    const offset = safe(v.getBigUint64(at + 8, true), "p_offset", fail);
    const vaddr = safe(v.getBigUint64(at + 16, true), "p_vaddr", fail);
    const paddr = safe(v.getBigUint64(at + 24, true), "p_paddr", fail);
    const filesz = safe(v.getBigUint64(at + 32, true), "p_filesz", fail);
    const memsz = safe(v.getBigUint64(at + 40, true), "p_memsz", fail);
    if (filesz > memsz) fail(`segment ${i} has filesz > memsz`);
    if (offset + filesz > image.length) fail(`segment ${i} runs past the end of the file`);
    if (memsz === 0) continue;
    segments.push({ paddr, vaddr, memsz, bytes: image.subarray(offset, offset + filesz) });
  }
  if (segments.length === 0) fail("no PT_LOAD segment");
  const sorted = [...segments].sort((a, b) => a.paddr - b.paddr);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    if (prev.paddr + prev.memsz > sorted[i]!.paddr) fail("PT_LOAD segments overlap");
  }
  return pvhEntry === undefined ? { entry, segments } : { entry, segments, pvhEntry };
}

/** Walks the notes in [start, end) for a "Xen" PHYS32_ENTRY note; malformed notes end the walk. */
function findPvhEntry(v: DataView, start: number, end: number): number | undefined {
  const align4 = (n: number) => (n + 3) & ~3;
  let at = start;
  while (at + 12 <= end) {
    const namesz = v.getUint32(at, true);
    const descsz = v.getUint32(at + 4, true);
    const type = v.getUint32(at + 8, true);
    const name = at + 12;
    const desc = name + align4(namesz);
    const next = desc + align4(descsz);
    if (next > end || next <= at) return undefined;
    const isXen =
      namesz === 4 &&
      v.getUint8(name) === 0x58 &&
      v.getUint8(name + 1) === 0x65 &&
      v.getUint8(name + 2) === 0x6e &&
      v.getUint8(name + 3) === 0;
    if (isXen && type === XEN_ELFNOTE_PHYS32_ENTRY && (descsz === 4 || descsz === 8)) {
      return descsz === 4
        ? v.getUint32(desc, true)
        : Number(v.getBigUint64(desc, true) & 0xffff_ffffn);
    }
    at = next;
  }
  return undefined;
}

function safe(x: bigint, what: string, fail: (why: string) => never): number {
  if (x > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} 0x${x.toString(16)} is too large`);
  return Number(x);
}
