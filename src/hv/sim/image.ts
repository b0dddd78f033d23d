/**
 * The sim image format. A simulated guest is an ordinary x86-64 ELF executable as far as
 * the loader and the VMM are concerned — one PT_LOAD segment at 1 MiB (entry there, started
 * in long mode like the real test guests) and a Xen PVH note pointing at the same place — so
 * it goes through exactly the path a real guest does: builder, RM, port, vCPU threads. The
 * segment holds, instead of instructions, a small header and JSON naming the program:
 *
 *   offset 0   "TSVSIM" 0x00 0x01   magic and format version 1
 *   offset 8   u32 LE               length of the JSON text
 *   offset 12  u32 LE               0
 *   offset 16  JSON (UTF-8)         SimImageHeader
 *
 * followed in memory (not in the file) by a zeroed 4 KiB data area (SimCpu.dataAddr). The sim
 * vCPU reads the header at its entry RIP when it first runs; anything else there (a real x86
 * image) ends the run as an emulation failure carrying the first bytes, as KVM reports
 * instructions it cannot emulate.
 */
import { TsvisorError } from "../../core/errors.js";
import { parseScript, type ScriptOp } from "./program.js";

export const SIM_MAGIC = Uint8Array.of(0x54, 0x53, 0x56, 0x53, 0x49, 0x4d, 0x00, 0x01);
export const SIM_HEADER_BYTES = 16;
/** Where the program lands and starts: the real test guests' link address. */
export const SIM_ENTRY = 0x10_0000;
/** The zeroed area after the program. */
export const SIM_DATA_BYTES = 4096;
/** JSON larger than this is refused (the image must fit in small guests). */
export const SIM_MAX_JSON = 256 * 1024;

export interface SimImageHeader {
  /** A program from the registry (src/hv/sim/guests) … */
  readonly guest?: string;
  /** … or a script (exactly one of the two). */
  readonly script?: readonly ScriptOp[];
  /** Seed of the program's PRNG (SimCpu.random); default 1. */
  readonly seed?: number;
  /** Free-form parameters for the program (SimCpu.args). */
  readonly args?: Readonly<Record<string, unknown>>;
}

const bad = (why: string): never => {
  throw new TsvisorError("SIM_PROGRAM", `bad sim image: ${why}`);
};

/** Checks a header's shape (not whether a named guest exists: the vCPU knows the registry). */
export function checkHeader(value: unknown): SimImageHeader {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return bad("the header is not a JSON object");
  }
  const h = value as Record<string, unknown>;
  for (const k of Object.keys(h)) {
    if (!["guest", "script", "seed", "args"].includes(k)) bad(`unknown header field '${k}'`);
  }
  if ((h.guest === undefined) === (h.script === undefined)) {
    bad("the header needs exactly one of 'guest' and 'script'");
  }
  if (
    h.guest !== undefined &&
    (typeof h.guest !== "string" || !/^[a-z0-9][a-z0-9-]*$/.test(h.guest))
  ) {
    bad("'guest' must be a guest name like hello");
  }
  if (h.script !== undefined) parseScript(h.script);
  if (
    h.seed !== undefined &&
    !(Number.isInteger(h.seed) && (h.seed as number) >= 0 && (h.seed as number) <= 0xffff_ffff)
  ) {
    bad("'seed' must be a u32");
  }
  if (
    h.args !== undefined &&
    (typeof h.args !== "object" || h.args === null || Array.isArray(h.args))
  ) {
    bad("'args' must be an object");
  }
  return h as SimImageHeader;
}

/** The payload: magic, length, JSON. */
export function encodePayload(header: SimImageHeader): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(checkHeader(header)));
  if (json.length > SIM_MAX_JSON) bad(`the JSON is ${json.length} bytes (at most ${SIM_MAX_JSON})`);
  const out = new Uint8Array(SIM_HEADER_BYTES + json.length);
  out.set(SIM_MAGIC, 0);
  new DataView(out.buffer).setUint32(8, json.length, true);
  out.set(json, SIM_HEADER_BYTES);
  return out;
}

const EHDR = 64;
const PHDR = 56;
const NOTE = 20; // namesz, descsz, type, "Xen\0", u32 entry

/** A sim image: an ELF64 x86-64 executable whose one segment is the payload. */
export function encodeSimImage(header: SimImageHeader): Uint8Array {
  const payload = encodePayload(header);
  const noteAt = EHDR + 2 * PHDR;
  const payloadAt = noteAt + NOTE + 4; // 8-aligned
  const image = new Uint8Array(payloadAt + payload.length);
  const v = new DataView(image.buffer);
  // e_ident: magic, ELFCLASS64, little-endian, version 1
  image.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  v.setUint16(16, 2, true); // ET_EXEC
  v.setUint16(18, 62, true); // EM_X86_64
  v.setUint32(20, 1, true); // EV_CURRENT
  v.setBigUint64(24, BigInt(SIM_ENTRY), true); // e_entry
  v.setBigUint64(32, BigInt(EHDR), true); // e_phoff
  v.setUint16(52, EHDR, true); // e_ehsize
  v.setUint16(54, PHDR, true); // e_phentsize
  v.setUint16(56, 2, true); // e_phnum
  // PT_LOAD: the payload at SIM_ENTRY, followed by the zeroed data area.
  const dataAt = alignUp(payload.length, 16);
  let p = EHDR;
  v.setUint32(p, 1, true);
  v.setUint32(p + 4, 5, true); // R+X
  v.setBigUint64(p + 8, BigInt(payloadAt), true);
  v.setBigUint64(p + 16, BigInt(SIM_ENTRY), true);
  v.setBigUint64(p + 24, BigInt(SIM_ENTRY), true);
  v.setBigUint64(p + 32, BigInt(payload.length), true);
  v.setBigUint64(p + 40, BigInt(dataAt + SIM_DATA_BYTES), true);
  v.setBigUint64(p + 48, 16n, true);
  // PT_NOTE: XEN_ELFNOTE_PHYS32_ENTRY → the same entry, so --pvh starts it too.
  p += PHDR;
  v.setUint32(p, 4, true);
  v.setBigUint64(p + 8, BigInt(noteAt), true);
  v.setBigUint64(p + 32, BigInt(NOTE), true);
  v.setBigUint64(p + 48, 4n, true);
  v.setUint32(noteAt, 4, true);
  v.setUint32(noteAt + 4, 4, true);
  v.setUint32(noteAt + 8, 18, true);
  image.set([0x58, 0x65, 0x6e, 0], noteAt + 12);
  v.setUint32(noteAt + 16, SIM_ENTRY, true);
  image.set(payload, payloadAt);
  return image;
}

export interface DecodedPayload {
  readonly header: SimImageHeader;
  /** Bytes of magic, length and JSON: the data area starts at the next 16-byte boundary. */
  readonly length: number;
}

/**
 * Reads a payload through `read(offset, len)` (guest memory at the entry): undefined when the
 * magic is not there (not a sim image); throws SIM_PROGRAM when it is but the rest is bad.
 */
export function decodePayload(
  read: (offset: number, len: number) => Uint8Array | undefined,
): DecodedPayload | undefined {
  const head = read(0, SIM_HEADER_BYTES);
  if (!head || !SIM_MAGIC.every((b, i) => head[i] === b)) return undefined;
  const len = new DataView(head.buffer, head.byteOffset, SIM_HEADER_BYTES).getUint32(8, true);
  if (len > SIM_MAX_JSON) bad(`JSON length ${len}`);
  const json = read(SIM_HEADER_BYTES, len);
  if (!json) return bad("the JSON runs past guest RAM");
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (e) {
    return bad(`the JSON does not parse: ${e instanceof Error ? e.message : String(e)}`);
  }
  return { header: checkHeader(parsed), length: SIM_HEADER_BYTES + len };
}

export function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
