import { TsvisorError } from "../core/errors.js";

/** Little-endian cursor over a byte array; every read past the end is a coded error. */
export class Reader {
  private readonly view: DataView;
  offset = 0;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  private need(n: number, what: string): number {
    if (this.remaining < n) {
      throw new TsvisorError(
        "PROTO_PAYLOAD_LENGTH",
        `payload ends at byte ${this.bytes.length} while reading ${what} (needs ${n} more)`,
      );
    }
    const at = this.offset;
    this.offset += n;
    return at;
  }

  u8(what = "u8"): number {
    return this.view.getUint8(this.need(1, what));
  }
  u16(what = "u16"): number {
    return this.view.getUint16(this.need(2, what), true);
  }
  u32(what = "u32"): number {
    return this.view.getUint32(this.need(4, what), true);
  }
  u64(what = "u64"): bigint {
    return this.view.getBigUint64(this.need(8, what), true);
  }
  bytesN(n: number, what = "bytes"): Uint8Array {
    const at = this.need(n, what);
    return this.bytes.slice(at, at + n);
  }
  rest(): Uint8Array {
    return this.bytesN(this.remaining);
  }
}

/** Growable little-endian writer. */
export class Writer {
  private buf = new Uint8Array(64);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private grow(n: number): number {
    const need = this.length + n;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length = need;
    return at;
  }

  // grow() may replace buf and view, so it must run before either is read: in
  // `this.view.setUint8(this.grow(1), v)` the old view would be used.
  u8(v: number): this {
    const at = this.grow(1);
    this.view.setUint8(at, v);
    return this;
  }
  u16(v: number): this {
    const at = this.grow(2);
    this.view.setUint16(at, v, true);
    return this;
  }
  u32(v: number): this {
    const at = this.grow(4);
    this.view.setUint32(at, v >>> 0, true);
    return this;
  }
  u64(v: bigint): this {
    const at = this.grow(8);
    this.view.setBigUint64(at, v, true);
    return this;
  }
  /** Big-endian u32 (flattened devicetrees are big-endian, the RM wire format is not). */
  u32be(v: number): this {
    const at = this.grow(4);
    this.view.setUint32(at, v >>> 0, false);
    return this;
  }
  bytes(b: Uint8Array): this {
    const at = this.grow(b.length);
    this.buf.set(b, at);
    return this;
  }
  zeros(n: number): this {
    this.grow(n); // buffers are zero-filled on allocation and never reused
    return this;
  }
  /** Zero padding up to the next multiple of 4. */
  align4(): this {
    return this.zeros((4 - (this.length % 4)) % 4);
  }
  finish(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** Parses hex, tolerating whitespace, colons, underscores and a 0x prefix. */
export function fromHex(text: string): Uint8Array {
  const clean = text.replace(/^0x/i, "").replace(/[\s:_]/g, "");
  if (clean.length % 2 !== 0 || /[^0-9a-f]/i.test(clean)) {
    throw new TsvisorError("PROTO_HEX", `not an even-length hex string: ${text.slice(0, 40)}`);
  }
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
