import { TsvisorError } from "../core/errors.js";

/** Wire constants of the RM message queue transport (rm-protocol.md §1). */
export const RM_API_BYTE = 0x21; // API version 1 in bits 3:0, header length 2 words in bits 7:4
export const MSG_MAX_SIZE = 240;
export const HEADER_SIZE = 8;
export const FRAGMENT_PAYLOAD = MSG_MAX_SIZE - HEADER_SIZE; // 232
export const MAX_CONTINUATIONS = 62;
/** Largest logical payload the RM accepts or sends: 63 × 232. */
export const RM_MAX_PAYLOAD = (MAX_CONTINUATIONS + 1) * FRAGMENT_PAYLOAD; // 14616
/** Largest request payload a Linux-style client sends: 62 × 232. */
export const CLIENT_MAX_REQUEST = MAX_CONTINUATIONS * FRAGMENT_PAYLOAD; // 14384

export const MsgType = {
  CONTINUATION: 0,
  REQUEST: 1,
  REPLY: 2,
  NOTIFICATION: 3,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];
export const MSG_TYPE_NAMES: Record<MsgType, string> = {
  0: "CONTINUATION",
  1: "REQUEST",
  2: "REPLY",
  3: "NOTIFICATION",
};

export interface Header {
  readonly type: MsgType;
  /** Number of continuation messages that follow the first one (0…62). */
  readonly numFragments: number;
  readonly seq: number;
  readonly msgId: number;
}

export function encodeHeader(h: Header, out: Uint8Array, at = 0): void {
  const v = new DataView(out.buffer, out.byteOffset + at, HEADER_SIZE);
  v.setUint8(0, RM_API_BYTE);
  v.setUint8(1, (h.type & 3) | ((h.numFragments & 0x3f) << 2));
  v.setUint16(2, h.seq & 0xffff, true);
  v.setUint32(4, h.msgId >>> 0, true);
}

/** Decodes the first 8 bytes of one queue message. */
export function decodeHeader(msg: Uint8Array): Header {
  if (msg.length < HEADER_SIZE) {
    throw new TsvisorError("PROTO_SHORT", `message of ${msg.length} bytes has no 8-byte header`);
  }
  const v = new DataView(msg.buffer, msg.byteOffset, HEADER_SIZE);
  const api = v.getUint8(0);
  if (api !== RM_API_BYTE) {
    throw new TsvisorError(
      "PROTO_API",
      `api byte 0x${api.toString(16).padStart(2, "0")} is not 0x21 (version 1, 2-word header)`,
    );
  }
  const tb = v.getUint8(1);
  const numFragments = tb >> 2;
  if (numFragments > MAX_CONTINUATIONS) {
    throw new TsvisorError("PROTO_FRAGMENTS", `continuation count ${numFragments} exceeds 62`);
  }
  return {
    type: (tb & 3) as MsgType,
    numFragments,
    seq: v.getUint16(2, true),
    msgId: v.getUint32(4, true),
  };
}
