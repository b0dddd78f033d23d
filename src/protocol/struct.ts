import { TsvisorError } from "../core/errors.js";
import { Reader, Writer } from "./bytes.js";

/**
 * A declarative layout language for packed little-endian RM payloads. One layout gives the
 * decoder, the encoder, exact-length checking and (in tests) a fast-check arbitrary, so the
 * wire tables of rm-protocol.md are written down exactly once.
 */

export type ListCount =
  /** u16 count followed by a reserved u16 (the RM list header). */
  | "u16r"
  /**
   * u16 count followed by a named u16 (MEM_ACCEPT's map_vmid), or with width "u8r" by a named
   * u8 and a reserved byte (MEM_ACCEPT's reply flags).
   */
  | { readonly extra: string; readonly width?: "u16" | "u8r" }
  /** a bare u16 count. */
  | "u16"
  /** a u32 count. */
  | "u32";

export type BytesLen = "u16" | "u16r" | "u32" | "rest";

export type FieldSpec =
  | { readonly kind: "u8" | "u16" | "u32"; readonly name: string; readonly max?: number }
  | { readonly kind: "u64"; readonly name: string }
  | { readonly kind: "reserved"; readonly name: ""; readonly size: number; readonly zero: boolean }
  | { readonly kind: "list"; readonly name: string; readonly count: ListCount; readonly entry: Layout<object> }
  | { readonly kind: "bytes"; readonly name: string; readonly len: BytesLen; readonly pad4: boolean; readonly max?: number }
  /** Every field after this marker may be absent as a whole (payload ends here). */
  | { readonly kind: "optional"; readonly name: "" };

/** The fields of a layout and the object type they decode to. */
export interface Layout<T extends object> {
  readonly fields: readonly FieldSpec[];
  /** Phantom: the decoded type. */
  readonly _type?: T;
}

type Num<N extends string> = { readonly kind: "u8" | "u16" | "u32"; readonly name: N; readonly max?: number };
type Big<N extends string> = { readonly kind: "u64"; readonly name: N };
type Lst<N extends string, E extends object> = {
  readonly kind: "list";
  readonly name: N;
  readonly count: ListCount;
  readonly entry: Layout<E>;
};
type Byt<N extends string> = {
  readonly kind: "bytes";
  readonly name: N;
  readonly len: BytesLen;
  readonly pad4: boolean;
  readonly max?: number;
};
type Marker = { readonly kind: "reserved" | "optional"; readonly name: "" };

type ValueOf<F> = F extends Num<string>
  ? number
  : F extends Big<string>
    ? bigint
    : F extends Lst<string, infer E>
      ? E[]
      : F extends Byt<string>
        ? Uint8Array
        : never;

type ExtraName<F> = F extends { kind: "list"; count: { extra: infer X extends string } } ? X : never;

export type FieldsObject<F extends readonly FieldSpec[]> = {
  [E in F[number] as E extends Marker ? never : E["name"]]: ValueOf<E>;
} & { [X in ExtraName<F[number]>]: number };

export const u8 = <N extends string>(name: N, max?: number) => ({ kind: "u8", name, max }) as const;
export const u16 = <N extends string>(name: N, max?: number) => ({ kind: "u16", name, max }) as const;
export const u32 = <N extends string>(name: N, max?: number) => ({ kind: "u32", name, max }) as const;
export const u64 = <N extends string>(name: N) => ({ kind: "u64", name }) as const;
/** Reserved bytes: written as zero; `zero` makes a non-zero value a decode error. */
export const reserved = (size: number, zero = false) => ({ kind: "reserved", name: "", size, zero }) as const;
export const optionalTail = () => ({ kind: "optional", name: "" }) as const;
export const list = <N extends string, E extends object, const C extends ListCount>(
  name: N,
  count: C,
  entry: Layout<E>,
) => ({ kind: "list", name, count, entry }) as const;
export const bytes = <N extends string>(name: N, len: BytesLen, pad4 = false, max?: number) =>
  ({ kind: "bytes", name, len, pad4, max }) as const;

export function layout<const F extends readonly FieldSpec[]>(...fields: F): Layout<FieldsObject<F>> {
  return { fields };
}

/** A layout's decoded object type. */
export type Decoded<L> = L extends Layout<infer T> ? T : never;

const fieldError = (msg: string) => new TsvisorError("PROTO_PAYLOAD_FIELD", msg);

function readFields(r: Reader, l: Layout<object>, out: Record<string, unknown>): void {
  for (const f of l.fields) {
    if (f.kind === "optional") {
      if (r.remaining === 0) return;
      continue;
    }
    readField(r, f, out);
  }
}

function readField(r: Reader, f: FieldSpec, out: Record<string, unknown>): void {
  switch (f.kind) {
    case "u8":
    case "u16":
    case "u32": {
      const v = f.kind === "u8" ? r.u8(f.name) : f.kind === "u16" ? r.u16(f.name) : r.u32(f.name);
      if (f.max !== undefined && v > f.max) throw fieldError(`${f.name} = ${v} exceeds ${f.max}`);
      out[f.name] = v;
      return;
    }
    case "u64":
      out[f.name] = r.u64(f.name);
      return;
    case "reserved": {
      const b = r.bytesN(f.size, "reserved");
      if (f.zero && b.some((x) => x !== 0)) throw fieldError("a reserved field is not zero");
      return;
    }
    case "list": {
      let n: number;
      if (f.count === "u32") n = r.u32(`${f.name} count`);
      else {
        n = r.u16(`${f.name} count`);
        if (f.count === "u16r") r.u16("reserved");
        else if (typeof f.count === "object") {
          if (f.count.width === "u8r") {
            out[f.count.extra] = r.u8(f.count.extra);
            r.u8("reserved");
          } else out[f.count.extra] = r.u16(f.count.extra);
        }
      }
      // Each entry needs at least one byte: a count beyond the payload is a length error,
      // caught here before any allocation proportional to the claimed count.
      if (n > r.remaining) {
        throw new TsvisorError("PROTO_PAYLOAD_LENGTH", `${f.name} claims ${n} entries in ${r.remaining} bytes`);
      }
      const items: object[] = [];
      for (let i = 0; i < n; i++) {
        const e: Record<string, unknown> = {};
        readFields(r, f.entry, e);
        items.push(e);
      }
      out[f.name] = items;
      return;
    }
    case "bytes": {
      let n: number;
      if (f.len === "rest") n = r.remaining;
      else if (f.len === "u32") n = r.u32(`${f.name} length`);
      else {
        n = r.u16(`${f.name} length`);
        if (f.len === "u16r") r.u16("reserved");
      }
      if (f.max !== undefined && n > f.max) throw fieldError(`${f.name} length ${n} exceeds ${f.max}`);
      out[f.name] = r.bytesN(n, f.name);
      if (f.pad4 && n % 4 !== 0) r.bytesN(4 - (n % 4), "padding");
      return;
    }
    case "optional":
      return;
  }
}

function writeFields(w: Writer, l: Layout<object>, v: Record<string, unknown>): void {
  let optional = false;
  for (const f of l.fields) {
    if (f.kind === "optional") {
      optional = true;
      const rest = l.fields.slice(l.fields.indexOf(f) + 1);
      if (rest.every((g) => g.kind === "reserved" || v[g.name] === undefined)) return;
      continue;
    }
    writeField(w, f, v, optional);
  }
}

function need<T>(v: Record<string, unknown>, name: string, ok: (x: unknown) => x is T, what: string): T {
  const x = v[name];
  if (!ok(x)) throw fieldError(`field ${name} must be ${what}`);
  return x;
}
const isInt = (x: unknown): x is number => typeof x === "number" && Number.isInteger(x);
const isBig = (x: unknown): x is bigint => typeof x === "bigint";
const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array;
const isArr = (x: unknown): x is Record<string, unknown>[] => Array.isArray(x);

function writeField(w: Writer, f: FieldSpec, v: Record<string, unknown>, _optional: boolean): void {
  switch (f.kind) {
    case "u8":
    case "u16":
    case "u32": {
      const x = need(v, f.name, isInt, "an integer");
      const lim = f.kind === "u8" ? 0xff : f.kind === "u16" ? 0xffff : 0xffffffff;
      if (x < 0 || x > (f.max ?? lim)) throw fieldError(`field ${f.name} = ${x} is out of range`);
      if (f.kind === "u8") w.u8(x);
      else if (f.kind === "u16") w.u16(x);
      else w.u32(x);
      return;
    }
    case "u64": {
      const x = need(v, f.name, isBig, "a bigint");
      if (x < 0n || x > 0xffffffffffffffffn) throw fieldError(`field ${f.name} is out of u64 range`);
      w.u64(x);
      return;
    }
    case "reserved":
      w.zeros(f.size);
      return;
    case "list": {
      const items = need(v, f.name, isArr, "an array");
      const lim = f.count === "u32" ? 0xffffffff : 0xffff;
      if (items.length > lim) throw fieldError(`list ${f.name} has too many entries`);
      if (f.count === "u32") w.u32(items.length);
      else {
        w.u16(items.length);
        if (f.count === "u16r") w.u16(0);
        else if (typeof f.count === "object") {
          const x = need(v, f.count.extra, isInt, "an integer");
          const narrow = f.count.width === "u8r";
          if (x < 0 || x > (narrow ? 0xff : 0xffff)) {
            throw fieldError(`field ${f.count.extra} is out of range`);
          }
          if (narrow) w.u8(x).u8(0);
          else w.u16(x);
        }
      }
      for (const it of items) {
        if (typeof it !== "object" || it === null) throw fieldError(`list ${f.name} holds a non-object`);
        writeFields(w, f.entry, it);
      }
      return;
    }
    case "bytes": {
      const b = need(v, f.name, isBytes, "bytes");
      const lim = f.len === "u32" ? 0xffffffff : f.len === "rest" ? Number.POSITIVE_INFINITY : 0xffff;
      if (b.length > Math.min(lim, f.max ?? lim)) throw fieldError(`${f.name} is too long (${b.length})`);
      if (f.len === "u32") w.u32(b.length);
      else if (f.len !== "rest") {
        w.u16(b.length);
        if (f.len === "u16r") w.u16(0);
      }
      w.bytes(b);
      if (f.pad4 && b.length % 4 !== 0) w.zeros(4 - (b.length % 4));
      return;
    }
    case "optional":
      return;
  }
}

/** Decodes a whole payload; bytes left over are a length error (the RM checks exact lengths). */
export function decodeLayout<T extends object>(l: Layout<T>, payload: Uint8Array): T {
  const r = new Reader(payload);
  const out: Record<string, unknown> = {};
  readFields(r, l, out);
  if (r.remaining !== 0) {
    throw new TsvisorError(
      "PROTO_PAYLOAD_LENGTH",
      `payload has ${r.remaining} bytes beyond its ${payload.length - r.remaining}-byte layout`,
    );
  }
  return out as T;
}

export function encodeLayout<T extends object>(l: Layout<T>, value: T): Uint8Array {
  const w = new Writer();
  writeFields(w, l, value as Record<string, unknown>);
  return w.finish();
}

/** Fixed size of a layout, or undefined when it has lists, bytes or an optional tail. */
export function fixedSize(l: Layout<object>): number | undefined {
  let n = 0;
  for (const f of l.fields) {
    switch (f.kind) {
      case "u8":
        n += 1;
        break;
      case "u16":
        n += 2;
        break;
      case "u32":
        n += 4;
        break;
      case "u64":
        n += 8;
        break;
      case "reserved":
        n += f.size;
        break;
      case "list":
      case "bytes":
      case "optional":
        return undefined;
    }
  }
  return n;
}
