import { TsvisorError } from "../core/errors.js";
import { Writer } from "./bytes.js";

/**
 * Flattened devicetree (DTB, Devicetree Specification v0.4 §5, format version 17).
 *
 * The RM parses a DTB that a less trusted VM owner wrote into a memory parcel, so the decoder
 * treats every byte as hostile: each offset and length is checked against the blob before it is
 * used, nesting and counts are capped, every loop advances by at least one token, and every
 * failure is a TsvisorError("FDT_MALFORMED") with one sentence saying what is wrong.
 */

/** One node: property and child order are kept exactly as written. */
export interface FdtNode {
  name: string;
  props: Map<string, Uint8Array>;
  children: FdtNode[];
}

export interface FdtHeader {
  totalsize: number;
  offDtStruct: number;
  offDtStrings: number;
  offMemRsvmap: number;
  version: number;
  lastCompVersion: number;
  bootCpuidPhys: number;
  sizeDtStrings: number;
  sizeDtStruct: number;
}

export const FDT_MAGIC = 0xd00dfeed;
export const FDT_VERSION = 17;
export const FDT_LAST_COMP_VERSION = 16;
export const FDT_HEADER_SIZE = 40;
export const FDT_BEGIN_NODE = 1;
export const FDT_END_NODE = 2;
export const FDT_PROP = 3;
export const FDT_NOP = 4;
export const FDT_END = 9;

/** Caps that bound the decoder's memory and work whatever the header claims. */
export const FDT_LIMITS = {
  /** Nesting depth, the root counting as depth 1. */
  maxDepth: 32,
  maxNodes: 4096,
  maxProps: 16384,
  /** Longest node or property name in bytes (the spec asks for at most 31; tools allow more). */
  maxNameLength: 255,
  /** Memory-reservation entries before the terminating zero entry. */
  maxReservations: 256,
} as const;

const RSVMAP_ENTRY = 16;

function malformed(sentence: string): TsvisorError {
  return new TsvisorError("FDT_MALFORMED", sentence);
}

export function fdtNode(
  name: string,
  props: Iterable<readonly [string, Uint8Array]> = [],
  children: FdtNode[] = [],
): FdtNode {
  return { name, props: new Map(props), children };
}

// ---------------------------------------------------------------------------------------------
// Names and text

/**
 * Names are printable ASCII without '/' (the path separator) and without spaces. The spec's
 * character sets are narrower, but real blobs use names outside them ("__symbols__", "?" in
 * some vendors' properties), and the only property this module needs is that every accepted
 * name survives encode and decode unchanged.
 */
function nameProblem(name: string): string | undefined {
  if (name.length === 0) return "is empty";
  if (name.length > FDT_LIMITS.maxNameLength) {
    return `is longer than ${FDT_LIMITS.maxNameLength} bytes`;
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x2f) {
      return `contains byte 0x${c.toString(16).padStart(2, "0")} at index ${i}`;
    }
  }
  return undefined;
}

function asciiBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function asciiString(b: Uint8Array, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i++) s += String.fromCharCode(b[i]!);
  return s;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function utf8(s: string, what: string): Uint8Array {
  const b = utf8Encoder.encode(s);
  // TextEncoder silently replaces lone surrogates; such a string would not come back intact.
  if (decodeUtf8(b) !== s) throw new TsvisorError("FDT_CONFIG", `${what} is not well-formed text`);
  if (b.includes(0)) throw new TsvisorError("FDT_CONFIG", `${what} contains a NUL character`);
  return b;
}

function decodeUtf8(b: Uint8Array): string | undefined {
  try {
    return utf8Decoder.decode(b);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Encoder

export interface EncodeFdtOptions {
  bootCpuidPhys?: number;
}

/**
 * Encodes a tree as a version-17 DTB laid out the way dtc lays it out: header, an empty
 * memory-reservation map (one zero entry), structure block, strings block. Names repeated
 * across properties are stored once in the strings block.
 *
 * A tree that cannot be represented (bad names, duplicate names, a named root, too deep or
 * too large for the decoder to accept back) is refused with FDT_MALFORMED, so whatever this
 * returns decodes to the same tree.
 */
export function encodeFdt(root: FdtNode, options: EncodeFdtOptions = {}): Uint8Array {
  if (root.name !== "")
    throw malformed(`the root node must have an empty name, not "${root.name}"`);
  const bootCpuidPhys = options.bootCpuidPhys ?? 0;
  if (!Number.isInteger(bootCpuidPhys) || bootCpuidPhys < 0 || bootCpuidPhys > 0xffffffff) {
    throw malformed(`boot_cpuid_phys ${bootCpuidPhys} is not a u32`);
  }

  const struct = new Writer();
  const strings = new Writer();
  const stringOffsets = new Map<string, number>();
  let nodes = 0;
  let props = 0;

  const nameOffset = (name: string): number => {
    let off = stringOffsets.get(name);
    if (off === undefined) {
      off = strings.length;
      stringOffsets.set(name, off);
      strings.bytes(asciiBytes(name));
      strings.bytes(new Uint8Array(1));
    }
    return off;
  };

  const walk = (node: FdtNode, path: string, depth: number): void => {
    if (depth > FDT_LIMITS.maxDepth) {
      throw malformed(`node ${path} is nested deeper than ${FDT_LIMITS.maxDepth} levels`);
    }
    if (++nodes > FDT_LIMITS.maxNodes)
      throw malformed(`the tree has more than ${FDT_LIMITS.maxNodes} nodes`);
    struct.u32be(FDT_BEGIN_NODE);
    struct.bytes(asciiBytes(node.name));
    struct.bytes(new Uint8Array(1));
    struct.align4();
    for (const [name, value] of node.props) {
      const bad = nameProblem(name);
      if (bad !== undefined) throw malformed(`property name "${name}" in ${path} ${bad}`);
      if (++props > FDT_LIMITS.maxProps)
        throw malformed(`the tree has more than ${FDT_LIMITS.maxProps} properties`);
      struct.u32be(FDT_PROP);
      struct.u32be(value.length);
      struct.u32be(nameOffset(name));
      struct.bytes(value);
      struct.align4();
    }
    const seen = new Set<string>();
    for (const child of node.children) {
      const childPath = path === "/" ? `/${child.name}` : `${path}/${child.name}`;
      const bad = nameProblem(child.name);
      if (bad !== undefined) throw malformed(`node name "${child.name}" under ${path} ${bad}`);
      if (seen.has(child.name)) throw malformed(`node ${childPath} appears twice`);
      seen.add(child.name);
      walk(child, childPath, depth + 1);
    }
    struct.u32be(FDT_END_NODE);
  };
  walk(root, "/", 1);
  struct.u32be(FDT_END);

  const structBytes = struct.finish();
  const stringBytes = strings.finish();
  const offRsvmap = FDT_HEADER_SIZE;
  const offStruct = offRsvmap + RSVMAP_ENTRY;
  const offStrings = offStruct + structBytes.length;
  const total = offStrings + stringBytes.length;

  const out = new Writer();
  for (const v of [
    FDT_MAGIC,
    total,
    offStruct,
    offStrings,
    offRsvmap,
    FDT_VERSION,
    FDT_LAST_COMP_VERSION,
    bootCpuidPhys,
    stringBytes.length,
    structBytes.length,
  ]) {
    out.u32be(v);
  }
  out.bytes(new Uint8Array(RSVMAP_ENTRY));
  out.bytes(structBytes);
  out.bytes(stringBytes);
  return out.finish();
}

// ---------------------------------------------------------------------------------------------
// Decoder

function be32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/**
 * Reads and checks the header. The blob may be followed by unused bytes (the DTB sits in a
 * parcel region with free room for an overlay), so only `totalsize` bytes count.
 */
export function decodeFdtHeader(bytes: Uint8Array): FdtHeader {
  if (bytes.length < FDT_HEADER_SIZE) {
    throw malformed(
      `the blob is ${bytes.length} bytes, shorter than the ${FDT_HEADER_SIZE}-byte header`,
    );
  }
  const magic = be32(bytes, 0);
  if (magic !== FDT_MAGIC) {
    throw malformed(`the magic is 0x${magic.toString(16).padStart(8, "0")}, not 0xd00dfeed`);
  }
  const h: FdtHeader = {
    totalsize: be32(bytes, 4),
    offDtStruct: be32(bytes, 8),
    offDtStrings: be32(bytes, 12),
    offMemRsvmap: be32(bytes, 16),
    version: be32(bytes, 20),
    lastCompVersion: be32(bytes, 24),
    bootCpuidPhys: be32(bytes, 28),
    sizeDtStrings: be32(bytes, 32),
    sizeDtStruct: be32(bytes, 36),
  };
  // Version 17 is the first with size_dt_struct, which bounds the walk; a newer blob is readable
  // as long as it still declares itself compatible with 17.
  if (h.version < FDT_VERSION) throw malformed(`format version ${h.version} is older than 17`);
  if (h.lastCompVersion > FDT_VERSION) {
    throw malformed(`last compatible version ${h.lastCompVersion} is newer than 17`);
  }
  if (h.totalsize < FDT_HEADER_SIZE)
    throw malformed(`totalsize ${h.totalsize} is smaller than the header`);
  if (h.totalsize > bytes.length) {
    throw malformed(`totalsize ${h.totalsize} exceeds the ${bytes.length} bytes available`);
  }
  const block = (what: string, off: number, size: number, align: number): void => {
    if (off < FDT_HEADER_SIZE)
      throw malformed(`the ${what} block offset ${off} overlaps the header`);
    if (off % align !== 0)
      throw malformed(`the ${what} block offset ${off} is not ${align}-byte aligned`);
    if (off + size > h.totalsize) {
      throw malformed(
        `the ${what} block (${size} bytes at ${off}) runs past totalsize ${h.totalsize}`,
      );
    }
  };
  block("memory-reservation", h.offMemRsvmap, RSVMAP_ENTRY, 8);
  block("structure", h.offDtStruct, h.sizeDtStruct, 4);
  block("strings", h.offDtStrings, h.sizeDtStrings, 1);
  return h;
}

/** The memory-reservation entries before the zero terminator (tsvisor writes none). */
export function decodeFdtReservations(bytes: Uint8Array): { address: bigint; size: bigint }[] {
  const h = decodeFdtHeader(bytes);
  const out: { address: bigint; size: bigint }[] = [];
  for (let at = h.offMemRsvmap; ; at += RSVMAP_ENTRY) {
    if (at + RSVMAP_ENTRY > h.totalsize) {
      throw malformed("the memory-reservation map has no terminating zero entry within totalsize");
    }
    const address = (BigInt(be32(bytes, at)) << 32n) | BigInt(be32(bytes, at + 4));
    const size = (BigInt(be32(bytes, at + 8)) << 32n) | BigInt(be32(bytes, at + 12));
    if (address === 0n && size === 0n) return out;
    if (out.length === FDT_LIMITS.maxReservations) {
      throw malformed(
        `the memory-reservation map has more than ${FDT_LIMITS.maxReservations} entries`,
      );
    }
    out.push({ address, size });
  }
}

/** Decodes a DTB into its root node (whose name is ""). */
export function decodeFdt(bytes: Uint8Array): FdtNode {
  const h = decodeFdtHeader(bytes);
  decodeFdtReservations(bytes);

  const end = h.offDtStruct + h.sizeDtStruct;
  const stringsEnd = h.offDtStrings + h.sizeDtStrings;
  let at = h.offDtStruct;

  const token = (): number => {
    if (at + 4 > end)
      throw malformed(`the structure block ends at byte ${end} without an END token`);
    const t = be32(bytes, at);
    at += 4;
    return t;
  };
  /** The next token that is not NOP; NOPs may appear anywhere a token may. */
  const nextToken = (): number => {
    for (;;) {
      const t = token();
      if (t !== FDT_NOP) return t;
    }
  };
  const propName = (nameoff: number, path: string): string => {
    const from = h.offDtStrings + nameoff;
    if (nameoff >= h.sizeDtStrings) {
      throw malformed(
        `a property of ${path} names string offset ${nameoff}, past the strings block`,
      );
    }
    let i = from;
    while (i < stringsEnd && bytes[i] !== 0 && i - from <= FDT_LIMITS.maxNameLength) i++;
    if (i < stringsEnd && bytes[i] !== 0) {
      throw malformed(
        `the property name at string offset ${nameoff} is longer than ${FDT_LIMITS.maxNameLength} bytes`,
      );
    }
    if (i === stringsEnd)
      throw malformed(`the property name at string offset ${nameoff} is unterminated`);
    const name = asciiString(bytes, from, i);
    const bad = nameProblem(name);
    if (bad !== undefined) throw malformed(`a property name of ${path} ${bad}`);
    return name;
  };

  let nodes = 0;
  let props = 0;

  /** Reads a node whose BEGIN_NODE token has just been consumed, up to its END_NODE. */
  const readNode = (parentPath: string | undefined, depth: number): FdtNode => {
    if (depth > FDT_LIMITS.maxDepth)
      throw malformed(`nodes are nested deeper than ${FDT_LIMITS.maxDepth} levels`);
    if (++nodes > FDT_LIMITS.maxNodes)
      throw malformed(`the tree has more than ${FDT_LIMITS.maxNodes} nodes`);
    const nameStart = at;
    while (at < end && bytes[at] !== 0 && at - nameStart <= FDT_LIMITS.maxNameLength) at++;
    if (at === end) throw malformed(`the node name at byte ${nameStart} is unterminated`);
    if (bytes[at] !== 0) {
      throw malformed(
        `the node name at byte ${nameStart} is longer than ${FDT_LIMITS.maxNameLength} bytes`,
      );
    }
    const name = asciiString(bytes, nameStart, at);
    at = nameStart + ((name.length + 1 + 3) & ~3);
    let path: string;
    if (parentPath === undefined) {
      if (name !== "") throw malformed(`the root node is named "${name}" instead of ""`);
      path = "/";
    } else {
      const bad = nameProblem(name);
      if (bad !== undefined) throw malformed(`a node name under ${parentPath} ${bad}`);
      path = parentPath === "/" ? `/${name}` : `${parentPath}/${name}`;
    }
    const node = fdtNode(name);
    const childNames = new Set<string>();
    for (;;) {
      const t = nextToken();
      switch (t) {
        case FDT_PROP: {
          if (node.children.length > 0)
            throw malformed(`node ${path} has a property after a child node`);
          if (++props > FDT_LIMITS.maxProps) {
            throw malformed(`the tree has more than ${FDT_LIMITS.maxProps} properties`);
          }
          const len = token();
          const nameoff = token();
          if (len > end - at)
            throw malformed(
              `a property value of ${path} (${len} bytes) runs past the structure block`,
            );
          const value = bytes.slice(at, at + len);
          at += (len + 3) & ~3;
          const pname = propName(nameoff, path);
          if (node.props.has(pname)) throw malformed(`node ${path} has property "${pname}" twice`);
          node.props.set(pname, value);
          break;
        }
        case FDT_BEGIN_NODE: {
          const child = readNode(path, depth + 1);
          if (childNames.has(child.name))
            throw malformed(`node ${path} has two children named "${child.name}"`);
          childNames.add(child.name);
          node.children.push(child);
          break;
        }
        case FDT_END_NODE:
          return node;
        case FDT_END:
          throw malformed(`the structure block ends inside node ${path}`);
        default:
          throw malformed(
            `unknown token 0x${t.toString(16)} at byte ${at - 4} inside node ${path}`,
          );
      }
    }
  };

  const first = nextToken();
  if (first !== FDT_BEGIN_NODE) {
    throw malformed(
      `the structure block starts with token 0x${first.toString(16)}, not BEGIN_NODE`,
    );
  }
  const root = readNode(undefined, 1);
  const last = nextToken();
  if (last !== FDT_END) {
    throw malformed(`token 0x${last.toString(16)} follows the root node where END was expected`);
  }
  // Bytes after END inside size_dt_struct are ignored: nothing reads them.
  return root;
}

// ---------------------------------------------------------------------------------------------
// Tree access

export function findChild(node: FdtNode, name: string): FdtNode | undefined {
  return node.children.find((c) => c.name === name);
}

// ---------------------------------------------------------------------------------------------
// Property values: writers

/** One or more big-endian 32-bit cells. */
export function propU32(...cells: number[]): Uint8Array {
  const out = new Uint8Array(4 * cells.length);
  cells.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new TsvisorError("FDT_CONFIG", `cell value ${v} is not a u32`);
    }
    out[4 * i] = v >>> 24;
    out[4 * i + 1] = (v >>> 16) & 0xff;
    out[4 * i + 2] = (v >>> 8) & 0xff;
    out[4 * i + 3] = v & 0xff;
  });
  return out;
}

/** A 64-bit value as two cells, most significant first. */
export function propU64(v: bigint): Uint8Array {
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn)
    throw new TsvisorError("FDT_CONFIG", `value ${v} is not a u64`);
  return propU32(Number(v >> 32n), Number(v & 0xffff_ffffn));
}

/** A NUL-terminated UTF-8 string. */
export function propString(s: string): Uint8Array {
  const b = utf8(s, `string "${s.slice(0, 40)}"`);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

/** Several NUL-terminated strings back to back (a "stringlist"). */
export function propStringList(list: readonly string[]): Uint8Array {
  const parts = list.map(propString);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A property with no value: its presence is the information (a boolean). */
export function propEmpty(): Uint8Array {
  return new Uint8Array(0);
}

// ---------------------------------------------------------------------------------------------
// Property values: readers
//
// A value of the wrong shape does not make the blob malformed; it breaks the consumer's schema,
// so these readers report FDT_CONFIG and name the property as `what` (e.g. "/vcpus/count").

function shape(what: string, expected: string, len: number): TsvisorError {
  return new TsvisorError(
    "FDT_CONFIG",
    `${what} must be ${expected}, but its value is ${len} bytes`,
  );
}

export function readU32Cells(value: Uint8Array, what: string): number[] {
  if (value.length % 4 !== 0) throw shape(what, "a list of 32-bit cells", value.length);
  const out: number[] = [];
  for (let i = 0; i < value.length; i += 4) out.push(be32(value, i));
  return out;
}

export function readU32(value: Uint8Array, what: string): number {
  if (value.length !== 4) throw shape(what, "one 32-bit cell", value.length);
  return be32(value, 0);
}

export function readU64(value: Uint8Array, what: string): bigint {
  if (value.length !== 8) throw shape(what, "two 32-bit cells (a 64-bit value)", value.length);
  return (BigInt(be32(value, 0)) << 32n) | BigInt(be32(value, 4));
}

/** A number of `cells` 32-bit cells (1 or 2) read as one integer, as #address-cells directs. */
export function readCellsAsU64(value: Uint8Array, cells: 1 | 2, what: string): bigint {
  return cells === 1 ? BigInt(readU32(value, what)) : readU64(value, what);
}

export function readStringList(value: Uint8Array, what: string): string[] {
  if (value.length === 0 || value[value.length - 1] !== 0) {
    throw new TsvisorError("FDT_CONFIG", `${what} must be NUL-terminated text`);
  }
  const out: string[] = [];
  let from = 0;
  for (let i = 0; i < value.length; i++) {
    if (value[i] !== 0) continue;
    const s = decodeUtf8(value.subarray(from, i));
    if (s === undefined) throw new TsvisorError("FDT_CONFIG", `${what} is not valid UTF-8`);
    out.push(s);
    from = i + 1;
  }
  return out;
}

export function readString(value: Uint8Array, what: string): string {
  const list = readStringList(value, what);
  if (list.length !== 1)
    throw new TsvisorError("FDT_CONFIG", `${what} must be one string, not ${list.length}`);
  return list[0]!;
}

export function readEmpty(value: Uint8Array, what: string): true {
  if (value.length !== 0) throw shape(what, "empty (a flag)", value.length);
  return true;
}
