import { TsvisorError } from "../core/errors.js";
import { MSG_MAX_SIZE } from "./header.js";

/**
 * Framing for carrying RM queue messages over a byte stream (the Unix socket transport).
 * A stream socket keeps no message boundaries, so each queue message goes as one frame:
 * a u16 little-endian length (1…240) followed by exactly that many bytes.
 */

export const FRAME_LENGTH_SIZE = 2;
export const FRAME_MAX_SIZE = FRAME_LENGTH_SIZE + MSG_MAX_SIZE;

export function encodeFrame(msg: Uint8Array): Uint8Array {
  if (msg.length < 1 || msg.length > MSG_MAX_SIZE) {
    throw new TsvisorError(
      "RPC_FRAME",
      `a queue message of ${msg.length} bytes cannot be framed (1…240)`,
    );
  }
  const out = new Uint8Array(FRAME_LENGTH_SIZE + msg.length);
  out[0] = msg.length & 0xff;
  out[1] = msg.length >> 8;
  out.set(msg, FRAME_LENGTH_SIZE);
  return out;
}

/**
 * Resumable frame decoder: chunks may split frames anywhere, down to one byte at a time.
 * It holds at most one incomplete frame (≤ 242 bytes), so a peer cannot make it buffer more.
 * A bad length is a protocol violation the stream cannot recover from (there is no way to
 * find the next frame boundary): push() throws RPC_FRAME, keeps failing afterwards, and the
 * caller drops the connection. Frames completed earlier in the same chunk are in the error's
 * `details.frames`.
 */
export class FrameDecoder {
  private lengthBytes = 0;
  private length = 0;
  private readonly body = new Uint8Array(MSG_MAX_SIZE);
  private filled = 0;
  private failure: TsvisorError | undefined;

  /** Bytes of an incomplete frame held back (0 at a frame boundary). */
  get buffered(): number {
    return this.lengthBytes + this.filled;
  }

  /** True once a bad length was seen; every later push() throws. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Consumes a chunk and returns the queue messages it completed, in order. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failure) {
      throw new TsvisorError("RPC_FRAME", `the stream already failed: ${this.failure.message}`, {
        frames: [],
      });
    }
    const frames: Uint8Array[] = [];
    let i = 0;
    while (i < chunk.length) {
      if (this.lengthBytes < FRAME_LENGTH_SIZE) {
        this.length |= chunk[i]! << (8 * this.lengthBytes);
        this.lengthBytes++;
        i++;
        if (this.lengthBytes === FRAME_LENGTH_SIZE) this.checkLength(frames);
        continue;
      }
      const want = this.length - this.filled;
      if (this.filled === 0 && chunk.length - i >= want) {
        // Whole frame inside this chunk: copy it out directly (chunks may be reused by callers).
        frames.push(chunk.slice(i, i + want));
        i += want;
        this.nextFrame();
        continue;
      }
      const take = Math.min(want, chunk.length - i);
      this.body.set(chunk.subarray(i, i + take), this.filled);
      this.filled += take;
      i += take;
      if (this.filled === this.length) {
        frames.push(this.body.slice(0, this.length));
        this.nextFrame();
      }
    }
    return frames;
  }

  private checkLength(frames: Uint8Array[]): void {
    if (this.length >= 1 && this.length <= MSG_MAX_SIZE) return;
    this.failure = new TsvisorError(
      "RPC_FRAME",
      `frame length ${this.length} is outside 1…${MSG_MAX_SIZE}`,
      { length: this.length, frames },
    );
    throw this.failure;
  }

  private nextFrame(): void {
    this.lengthBytes = 0;
    this.length = 0;
    this.filled = 0;
  }
}
