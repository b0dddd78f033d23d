import { TsvisorError } from "../core/errors.js";
import {
  decodeHeader,
  encodeHeader,
  FRAGMENT_PAYLOAD,
  HEADER_SIZE,
  MAX_CONTINUATIONS,
  MSG_MAX_SIZE,
  MsgType,
  RM_MAX_PAYLOAD,
} from "./header.js";

/** One logical RM message, after reassembly or before fragmentation. */
export type RmMessage =
  | {
      readonly type: typeof MsgType.REQUEST;
      readonly seq: number;
      readonly msgId: number;
      readonly payload: Uint8Array;
    }
  | {
      readonly type: typeof MsgType.REPLY;
      readonly seq: number;
      readonly msgId: number;
      /** RM error code (u32 right after the header in the first fragment). */
      readonly error: number;
      /** Call-specific data after the error code. */
      readonly payload: Uint8Array;
    }
  | {
      readonly type: typeof MsgType.NOTIFICATION;
      readonly seq: number;
      readonly msgId: number;
      readonly payload: Uint8Array;
    };

/** The bytes carried across fragments: for a reply the error code comes first. */
export function messageBody(m: RmMessage): Uint8Array {
  if (m.type !== MsgType.REPLY) return m.payload;
  const body = new Uint8Array(4 + m.payload.length);
  new DataView(body.buffer).setUint32(0, m.error >>> 0, true);
  body.set(m.payload, 4);
  return body;
}

export function continuationCount(bodyLength: number): number {
  return bodyLength === 0 ? 0 : Math.floor((bodyLength - 1) / FRAGMENT_PAYLOAD);
}

/**
 * Splits a logical message into ≤240-byte queue messages. `maxBody` is the sender's limit:
 * the RM's 14,616 bytes by default; a Linux-style client passes 14,384.
 */
export function fragment(m: RmMessage, maxBody = RM_MAX_PAYLOAD): Uint8Array[] {
  const body = messageBody(m);
  // The header has room for 62 continuations only; a larger limit would wrap the count.
  const limit = Math.min(maxBody, RM_MAX_PAYLOAD);
  if (body.length > limit) {
    throw new TsvisorError(
      "PROTO_TOO_LONG",
      `payload of ${body.length} bytes exceeds the ${limit}-byte limit`,
      { length: body.length, limit },
    );
  }
  if (m.msgId === 0) {
    throw new TsvisorError("PROTO_PAYLOAD_FIELD", "message id 0 is reserved");
  }
  // encodeHeader masks its fields, so an out-of-range value would go out as a different one.
  if (!isUint(m.seq, 0xffff) || !isUint(m.msgId, 0xffffffff)) {
    throw new TsvisorError(
      "PROTO_PAYLOAD_FIELD",
      `seq ${m.seq} or msg id ${m.msgId} is out of range`,
    );
  }
  if (m.type === MsgType.REPLY && !isUint(m.error, 0xffffffff)) {
    throw new TsvisorError("PROTO_PAYLOAD_FIELD", `error code ${m.error} is not a u32`);
  }
  const numFragments = continuationCount(body.length);
  const out: Uint8Array[] = [];
  for (let i = 0; i <= numFragments; i++) {
    const chunk = body.subarray(i * FRAGMENT_PAYLOAD, (i + 1) * FRAGMENT_PAYLOAD);
    const msg = new Uint8Array(HEADER_SIZE + chunk.length);
    encodeHeader(
      { type: i === 0 ? m.type : MsgType.CONTINUATION, numFragments, seq: m.seq, msgId: m.msgId },
      msg,
    );
    msg.set(chunk, HEADER_SIZE);
    out.push(msg);
  }
  return out;
}

function isUint(x: number, max: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= max;
}

/** Which receiver rules apply (rm-protocol.md §1.4). */
export type ReceiverRules = "rm" | "linux";

export type ReassemblyEvent =
  | { readonly kind: "message"; readonly message: RmMessage }
  | { readonly kind: "partial" }
  /** A queue message was ignored; nothing in progress was lost. */
  | { readonly kind: "dropped"; readonly error: TsvisorError }
  /** An incomplete message was discarded; seq/msgId say which (a waiting call may fail). */
  | {
      readonly kind: "aborted";
      readonly type: MsgType;
      readonly seq: number;
      readonly msgId: number;
      readonly error: TsvisorError;
    };

interface Partial {
  type: MsgType;
  seq: number;
  msgId: number;
  numFragments: number;
  received: number;
  /** Sized for the whole message at its first fragment ((count + 1) × 232), filled in place. */
  body: Uint8Array;
  length: number;
}

/**
 * Reassembles queue messages into logical messages, one at a time, as the receiver rules say.
 * "rm": a continuation must match msg_id, seq and count, else it is dropped.
 * "linux": it must match msg_id and count (seq unchecked), else the active message is aborted.
 * Under both, a new first fragment discards an incomplete one.
 */
export class Reassembler {
  private active: Partial | undefined;

  constructor(readonly rules: ReceiverRules) {}

  get busy(): boolean {
    return this.active !== undefined;
  }

  /** Feeds one queue message; returns what it completed, dropped or aborted (in order). */
  push(msg: Uint8Array): ReassemblyEvent[] {
    const events: ReassemblyEvent[] = [];
    if (msg.length > MSG_MAX_SIZE) {
      events.push({
        kind: "dropped",
        error: new TsvisorError(
          "PROTO_TOO_LONG",
          `queue message of ${msg.length} bytes exceeds 240`,
        ),
      });
      return events;
    }
    let h: ReturnType<typeof decodeHeader>;
    try {
      h = decodeHeader(msg);
    } catch (e) {
      events.push({ kind: "dropped", error: e as TsvisorError });
      return events;
    }
    const data = msg.subarray(HEADER_SIZE);
    if (h.type === MsgType.CONTINUATION) {
      const a = this.active;
      if (!a) {
        events.push({
          kind: "dropped",
          error: new TsvisorError("PROTO_CONTINUATION", "continuation with no message in progress"),
        });
        return events;
      }
      const matches =
        a.msgId === h.msgId &&
        a.numFragments === h.numFragments &&
        (this.rules === "linux" || a.seq === h.seq);
      if (!matches) {
        const error = new TsvisorError(
          "PROTO_CONTINUATION",
          `continuation (seq ${h.seq}, id 0x${h.msgId.toString(16)}, count ${h.numFragments}) does not match seq ${a.seq}, id 0x${a.msgId.toString(16)}, count ${a.numFragments}`,
        );
        if (this.rules === "rm") {
          events.push({ kind: "dropped", error });
        } else {
          this.active = undefined;
          events.push({ kind: "aborted", type: a.type, seq: a.seq, msgId: a.msgId, error });
        }
        return events;
      }
      a.body.set(data, a.length);
      a.length += data.length;
      a.received++;
      if (a.received === a.numFragments) this.complete(events);
      else events.push({ kind: "partial" });
      return events;
    }
    if (this.active) {
      const a = this.active;
      this.active = undefined;
      events.push({
        kind: "aborted",
        type: a.type,
        seq: a.seq,
        msgId: a.msgId,
        error: new TsvisorError(
          "PROTO_CONTINUATION",
          `new message arrived after ${a.received} of ${a.numFragments} continuations`,
        ),
      });
    }
    this.active = {
      type: h.type,
      seq: h.seq,
      msgId: h.msgId,
      numFragments: h.numFragments,
      received: 0,
      body: new Uint8Array((h.numFragments + 1) * FRAGMENT_PAYLOAD),
      length: data.length,
    };
    this.active.body.set(data);
    if (h.numFragments === 0) this.complete(events);
    else events.push({ kind: "partial" });
    return events;
  }

  /** Discards a message in progress (e.g. on transport reset). */
  reset(): void {
    this.active = undefined;
  }

  private complete(events: ReassemblyEvent[]): void {
    const a = this.active;
    this.active = undefined;
    if (!a) return;
    // A view, not a copy: the buffer belongs to this message alone from here on.
    const body = a.body.subarray(0, a.length);
    switch (a.type) {
      case MsgType.REQUEST:
      case MsgType.NOTIFICATION:
        events.push({
          kind: "message",
          message: { type: a.type, seq: a.seq, msgId: a.msgId, payload: body },
        });
        return;
      case MsgType.REPLY: {
        if (body.length < 4) {
          events.push({
            kind: "aborted",
            type: a.type,
            seq: a.seq,
            msgId: a.msgId,
            error: new TsvisorError(
              "PROTO_PAYLOAD_LENGTH",
              `reply of ${body.length} bytes has no 4-byte error code`,
            ),
          });
          return;
        }
        const error = new DataView(body.buffer, body.byteOffset, 4).getUint32(0, true);
        events.push({
          kind: "message",
          message: { type: a.type, seq: a.seq, msgId: a.msgId, error, payload: body.slice(4) },
        });
        return;
      }
      case MsgType.CONTINUATION:
        return; // never active: a continuation cannot start a message
    }
  }
}

/** Reassembles a whole sequence of queue messages (CLI, tests). Throws on the first drop/abort. */
export function reassembleAll(
  msgs: readonly Uint8Array[],
  rules: ReceiverRules = "rm",
): RmMessage[] {
  const r = new Reassembler(rules);
  const out: RmMessage[] = [];
  for (const m of msgs) {
    for (const ev of r.push(m)) {
      if (ev.kind === "message") out.push(ev.message);
      else if (ev.kind === "dropped" || ev.kind === "aborted") throw ev.error;
    }
  }
  if (r.busy)
    throw new TsvisorError("PROTO_CONTINUATION", "the sequence ends inside a fragmented message");
  return out;
}

export { MAX_CONTINUATIONS };
