import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { fromHex, toHex } from "./bytes.js";
import { msgName, NotificationId, RequestId } from "./catalogue.js";
import {
  AddressRange,
  AuthMech,
  BootRegSet,
  ExitCode,
  ExitType,
  HostType,
  MemAttr,
  MemType,
  nameOf,
  OsStatus,
  ResourceType,
  StopReason,
  TransType,
  VmStatus,
  X86_GPR_NAMES,
} from "./enums.js";
import { MSG_TYPE_NAMES, MsgType } from "./header.js";
import { type ReceiverRules, type RmMessage, reassembleAll } from "./message.js";
import {
  AclEntry,
  AttrEntry,
  ConfigImageReq,
  ConsoleCharsPayload,
  ConsoleWriteReq,
  CrashMsg,
  GetStateReply,
  HostTypeReply,
  HypResource,
  MemAcceptReq,
  MemLendReq,
  MemSharedPayload,
  notificationLayout,
  replyLayout,
  requestLayout,
  SetAddressLayoutReq,
  SetBootContextReq,
  SetStatusReq,
  VmExitedPayload,
  VmExitReq,
  VmShutdownPayload,
  VmStatusPayload,
  VmStopReq,
} from "./payloads.js";
import { rmErrorFromName, rmErrorName } from "./rm-error.js";
import { decodeLayout, encodeLayout, type FieldSpec, type Layout } from "./struct.js";

/**
 * The JSON view of whole RM messages, used by `tsvisor msg` and by traces. Payloads are shown
 * field by field with the reference's snake_case names; a few read-only "derived" fields
 * (names of enumeration values, the exit code hidden in exit_reason…) are added for reading
 * and are ignored when JSON is turned back into bytes.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export type MessageTypeName = "REQUEST" | "REPLY" | "NOTIFICATION";

export interface MessageJson {
  type: MessageTypeName;
  seq: number;
  msg_id: number;
  msg_name: string;
  /** Replies only: the RM error by name (unknown codes print as RM_ERROR_0x…). */
  error?: string;
  error_code?: number;
  payload?: JsonObject;
  /** The raw payload when it is not shown field by field (error replies, undecodable bytes). */
  payload_hex?: string;
  /**
   * Why the payload is not shown field by field. `fields` is the lenient reading of a payload
   * whose only fault is non-zero reserved or padding bytes. Ignored by messageFromJson().
   */
  payload_error?: { code: string; message: string; fields?: JsonObject };
}

/** The payload layout the codec uses for a message of this type and id. */
export function layoutFor(type: MsgType, msgId: number): Layout<object> {
  switch (type) {
    case MsgType.REQUEST:
      return requestLayout(msgId);
    case MsgType.REPLY:
      return replyLayout(msgId);
    case MsgType.NOTIFICATION:
      return notificationLayout(msgId);
    case MsgType.CONTINUATION:
      throw new TsvisorError("PROTO_TYPE", "a continuation is not a whole message");
  }
}

// ---- derived fields

interface Derivation {
  /** Every name derive() may produce; none may be a field of the layout. */
  readonly names: readonly string[];
  derive(v: Readonly<Record<string, unknown>>): JsonObject;
}

const named =
  (table: Record<string, number>, field: string) =>
  (v: Readonly<Record<string, unknown>>): string =>
    nameOf(table, v[field] as number);

const vmStatusNames: Derivation = {
  names: ["vm_status_name", "os_status_name"],
  derive: (v) => ({
    vm_status_name: named(VmStatus, "vm_status")(v),
    os_status_name: named(OsStatus, "os_status")(v),
  }),
};

/** "R", "RW", "RWX"… in the order the reference writes them; unknown bits as +0x… */
export function rightsName(rights: number): string {
  let s = "";
  if (rights & 4) s += "R";
  if (rights & 2) s += "W";
  if (rights & 1) s += "X";
  const other = rights & ~7;
  if (other !== 0) s += `+0x${other.toString(16)}`;
  return s === "" ? "-" : s;
}

const utf8 = new TextDecoder("utf-8", { fatal: false });

function regName(v: Readonly<Record<string, unknown>>): string {
  const set = v.reg_set as number;
  const index = v.reg_index as number;
  if (set === BootRegSet.X) return X86_GPR_NAMES[index] ?? `x${index}`;
  if (set === BootRegSet.PC) return index === 0 ? "rip" : `pc${index}`;
  if (set === BootRegSet.SP) return index === 0 ? "rsp" : `sp${index}`;
  return `set${set}_${index}`;
}

/** Keyed by layout identity: entry layouts (ACL, resources…) get theirs wherever they appear. */
const DERIVED = new Map<Layout<object>, Derivation>([
  [VmStatusPayload, vmStatusNames],
  [GetStateReply, vmStatusNames],
  [
    SetStatusReq,
    {
      names: ["os_status_name"],
      derive: (v) => ({ os_status_name: named(OsStatus, "os_status")(v) }),
    },
  ],
  [
    VmExitedPayload,
    {
      names: ["exit_type_name", "exit_flags", "exit_code", "exit_code_name"],
      derive: (v) => {
        const out: JsonObject = { exit_type_name: named(ExitType, "exit_type")(v) };
        const reason = v.exit_reason as Uint8Array;
        if (reason.length >= 4) {
          // Word 0 of every RM exit reason: flags in bits 15:0, code in bits 23:16.
          const w0 = new DataView(reason.buffer, reason.byteOffset, 4).getUint32(0, true);
          out.exit_flags = w0 & 0xffff;
          out.exit_code = (w0 >>> 16) & 0xff;
          out.exit_code_name = nameOf(ExitCode, out.exit_code);
        }
        return out;
      },
    },
  ],
  [
    VmExitReq,
    {
      names: ["exit_code_name"],
      derive: (v) => ({ exit_code_name: named(ExitCode, "exit_code")(v) }),
    },
  ],
  [
    VmStopReq,
    {
      names: ["stop_reason_name"],
      derive: (v) => ({ stop_reason_name: named(StopReason, "stop_reason")(v) }),
    },
  ],
  [
    VmShutdownPayload,
    {
      names: ["stop_reason_name"],
      derive: (v) => ({ stop_reason_name: named(StopReason, "stop_reason")(v) }),
    },
  ],
  [
    ConfigImageReq,
    {
      names: ["auth_mech_name"],
      derive: (v) => ({ auth_mech_name: named(AuthMech, "auth_mech")(v) }),
    },
  ],
  [
    SetBootContextReq,
    {
      names: ["reg_set_name", "reg_name"],
      derive: (v) => ({ reg_set_name: named(BootRegSet, "reg_set")(v), reg_name: regName(v) }),
    },
  ],
  [
    SetAddressLayoutReq,
    {
      names: ["range_id_name"],
      derive: (v) => ({ range_id_name: named(AddressRange, "range_id")(v) }),
    },
  ],
  [
    HypResource,
    {
      names: ["resource_type_name"],
      derive: (v) => ({ resource_type_name: named(ResourceType, "resource_type")(v) }),
    },
  ],
  [
    AclEntry,
    { names: ["rights_name"], derive: (v) => ({ rights_name: rightsName(v.rights as number) }) },
  ],
  [AttrEntry, { names: ["attr_name"], derive: (v) => ({ attr_name: named(MemAttr, "attr")(v) }) }],
  [
    MemLendReq,
    { names: ["mem_type_name"], derive: (v) => ({ mem_type_name: named(MemType, "mem_type")(v) }) },
  ],
  [
    MemAcceptReq,
    {
      names: ["mem_type_name", "trans_type_name"],
      derive: (v) => ({
        mem_type_name: named(MemType, "mem_type")(v),
        trans_type_name: named(TransType, "trans_type")(v),
      }),
    },
  ],
  [
    MemSharedPayload,
    {
      names: ["mem_type_name", "trans_type_name"],
      derive: (v) => ({
        mem_type_name: named(MemType, "mem_type")(v),
        trans_type_name: named(TransType, "trans_type")(v),
      }),
    },
  ],
  [
    HostTypeReply,
    {
      names: ["host_type_name"],
      derive: (v) => ({ host_type_name: named(HostType, "host_type")(v) }),
    },
  ],
  [
    ConsoleWriteReq,
    { names: ["data_text"], derive: (v) => ({ data_text: utf8.decode(v.data as Uint8Array) }) },
  ],
  [
    ConsoleCharsPayload,
    { names: ["data_text"], derive: (v) => ({ data_text: utf8.decode(v.data as Uint8Array) }) },
  ],
  [
    CrashMsg,
    { names: ["msg_text"], derive: (v) => ({ msg_text: utf8.decode(v.msg as Uint8Array) }) },
  ],
]);

/** The derived (read-only) field names of a layout; exported for tests and docs. */
export function derivedNames(l: Layout<object>): readonly string[] {
  return DERIVED.get(l)?.names ?? [];
}

/** Every name a layout's object may hold on the wire: its fields and list-header extras. */
export function fieldNames(l: Layout<object>): string[] {
  const out: string[] = [];
  for (const f of l.fields) {
    if (f.kind === "reserved" || f.kind === "optional") continue;
    if (f.kind === "list" && typeof f.count === "object") out.push(f.count.extra);
    out.push(f.name);
  }
  return out;
}

// ---- value → JSON

function u64ToJson(x: bigint): number | string {
  return x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x.toString();
}

function fieldToJson(f: FieldSpec, v: Readonly<Record<string, unknown>>, out: JsonObject): void {
  switch (f.kind) {
    case "u8":
    case "u16":
    case "u32":
      out[f.name] = v[f.name] as number;
      return;
    case "u64":
      out[f.name] = u64ToJson(v[f.name] as bigint);
      return;
    case "bytes":
      out[f.name] = toHex(v[f.name] as Uint8Array);
      return;
    case "list":
      if (typeof f.count === "object") out[f.count.extra] = v[f.count.extra] as number;
      out[f.name] = (v[f.name] as Record<string, unknown>[]).map((e) => valueToJson(f.entry, e));
      return;
    case "reserved":
    case "optional":
      return;
  }
}

/** A decoded layout value as JSON: fields in wire order, then any derived fields. */
export function valueToJson(l: Layout<object>, v: Readonly<Record<string, unknown>>): JsonObject {
  const out: JsonObject = {};
  for (const f of l.fields) {
    if (f.kind === "optional") {
      // An absent tail decodes to an object without its fields.
      const first = l.fields.slice(l.fields.indexOf(f) + 1).find((g) => g.kind !== "reserved");
      if (first && v[first.name] === undefined) break;
      continue;
    }
    fieldToJson(f, v, out);
  }
  const d = DERIVED.get(l);
  if (d) Object.assign(out, d.derive(v));
  return out;
}

function typeName(t: MsgType): MessageTypeName {
  if (t === MsgType.CONTINUATION)
    throw new TsvisorError("PROTO_TYPE", "a continuation is not a whole message");
  return MSG_TYPE_NAMES[t] as MessageTypeName;
}

/** The JSON view of one logical message. Never throws for a well-formed RmMessage. */
export function messageToJson(m: RmMessage): MessageJson {
  const out: MessageJson = {
    type: typeName(m.type),
    seq: m.seq,
    msg_id: m.msgId,
    msg_name: msgName(m.msgId, m.type === MsgType.NOTIFICATION),
  };
  if (m.type === MsgType.REPLY) {
    out.error = rmErrorName(m.error);
    out.error_code = m.error >>> 0;
    // A failed call's payload has no layout (RM sometimes appends a hypervisor error code).
    if (m.error !== 0) {
      out.payload_hex = toHex(m.payload);
      return out;
    }
  }
  const l = layoutFor(m.type, m.msgId);
  let value: Record<string, unknown>;
  try {
    value = decodeLayout(l, m.payload) as Record<string, unknown>;
  } catch (e) {
    if (!isTsvisorError(e)) throw e;
    out.payload_hex = toHex(m.payload);
    out.payload_error = { code: e.code, message: e.message };
    return out;
  }
  const fields = valueToJson(l, value);
  // Reserved and padding bytes are not fields, so a payload with non-zero ones would come
  // back different from the JSON. Keep its exact bytes; show the fields for reading only.
  if (!sameBytes(encodeLayout(l, value), m.payload)) {
    out.payload_hex = toHex(m.payload);
    out.payload_error = {
      code: "PROTO_PAYLOAD_FIELD",
      message: "reserved or padding bytes are not zero",
      fields,
    };
    return out;
  }
  out.payload = fields;
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---- JSON → message

const jsonError = (message: string) => new TsvisorError("PROTO_JSON", message);
const rangeError = (message: string) => new TsvisorError("PROTO_PAYLOAD_FIELD", message);

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
}

function describe(x: unknown): string {
  if (typeof x === "string") return JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}…` : x);
  if (typeof x === "bigint") return `${x}n`;
  if (Array.isArray(x)) return "an array";
  if (x === null) return "null";
  if (typeof x === "object") return "an object";
  return String(x);
}

/** Accepts a safe integer, a bigint, or a decimal or 0x-hex string. */
function parseUint(x: unknown, max: bigint, path: string): bigint {
  let v: bigint;
  if (typeof x === "bigint") v = x;
  else if (typeof x === "number") {
    if (!Number.isSafeInteger(x)) {
      throw jsonError(
        `${path} = ${describe(x)} is not an exact integer (write large values as strings)`,
      );
    }
    v = BigInt(x);
  } else if (typeof x === "string" && /^(0x[0-9a-f]+|[0-9]+)$/i.test(x.trim()))
    v = BigInt(x.trim());
  else throw jsonError(`${path} must be an integer, got ${describe(x)}`);
  if (v < 0n || v > max) throw rangeError(`${path} = ${v} is out of range 0…${max}`);
  return v;
}

const LIMITS = { u8: 0xffn, u16: 0xffffn, u32: 0xffffffffn, u64: 0xffffffffffffffffn } as const;

function parseBytes(x: unknown, path: string): Uint8Array {
  if (x instanceof Uint8Array) return x;
  if (typeof x !== "string") throw jsonError(`${path} must be a hex string, got ${describe(x)}`);
  try {
    return fromHex(x);
  } catch (e) {
    if (isTsvisorError(e, "PROTO_HEX"))
      throw jsonError(`${path} is not a hex string: ${describe(x)}`);
    throw e;
  }
}

function requireKey(o: Record<string, unknown>, name: string, path: string): unknown {
  if (o[name] === undefined) throw jsonError(`${path}${name} is missing`);
  return o[name];
}

function fieldFromJson(
  f: FieldSpec,
  o: Record<string, unknown>,
  out: Record<string, unknown>,
  path: string,
): void {
  switch (f.kind) {
    case "u8":
    case "u16":
    case "u32":
      out[f.name] = Number(
        parseUint(requireKey(o, f.name, path), LIMITS[f.kind], `${path}${f.name}`),
      );
      return;
    case "u64":
      out[f.name] = parseUint(requireKey(o, f.name, path), LIMITS.u64, `${path}${f.name}`);
      return;
    case "bytes":
      out[f.name] = parseBytes(requireKey(o, f.name, path), `${path}${f.name}`);
      return;
    case "list": {
      if (typeof f.count === "object") {
        const max = f.count.width === "u8r" ? LIMITS.u8 : LIMITS.u16;
        out[f.count.extra] = Number(
          parseUint(requireKey(o, f.count.extra, path), max, `${path}${f.count.extra}`),
        );
      }
      const items = requireKey(o, f.name, path);
      if (!Array.isArray(items))
        throw jsonError(`${path}${f.name} must be an array, got ${describe(items)}`);
      out[f.name] = items.map((it, i) => valueFromJson(f.entry, it, `${path}${f.name}[${i}].`));
      return;
    }
    case "reserved":
    case "optional":
      return;
  }
}

/**
 * The inverse of valueToJson: a layout value ready for encodeLayout. Unknown keys are errors
 * (they are usually typos); derived keys are accepted and ignored.
 */
export function valueFromJson(
  l: Layout<object>,
  obj: unknown,
  path = "payload.",
): Record<string, unknown> {
  if (!isPlainObject(obj))
    throw jsonError(`${path.slice(0, -1)} must be an object, got ${describe(obj)}`);
  const known = new Set([...fieldNames(l), ...derivedNames(l)]);
  for (const k of Object.keys(obj)) {
    if (!known.has(k) && obj[k] !== undefined) {
      const expected = fieldNames(l);
      throw jsonError(
        `${path}${k} is not a field here (expected ${expected.length ? expected.join(", ") : "no fields"})`,
      );
    }
  }
  const out: Record<string, unknown> = {};
  const fields = l.fields;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.kind === "optional") {
      const tail = fieldNames({ fields: fields.slice(i + 1) });
      const present = tail.filter((n) => obj[n] !== undefined);
      if (present.length === 0) break;
      if (present.length !== tail.length) {
        throw jsonError(`${path}{${tail.join(", ")}} must be given all together or not at all`);
      }
      continue;
    }
    fieldFromJson(f, obj, out, path);
  }
  return out;
}

/** The types a whole (reassembled) message can have. */
type WholeType = Exclude<MsgType, typeof MsgType.CONTINUATION>;

const TYPE_BY_NAME: Record<string, WholeType> = {
  REQUEST: MsgType.REQUEST,
  REPLY: MsgType.REPLY,
  NOTIFICATION: MsgType.NOTIFICATION,
};

function parseType(x: unknown): WholeType {
  if (typeof x === "string" && TYPE_BY_NAME[x.toUpperCase()] !== undefined)
    return TYPE_BY_NAME[x.toUpperCase()]!;
  if (x === 1 || x === 2 || x === 3) return x;
  throw jsonError(`type must be REQUEST, REPLY or NOTIFICATION, got ${describe(x)}`);
}

function idFromName(name: string, type: MsgType): number {
  const n = name.trim().toUpperCase();
  const unknown = /^UNKNOWN_0X([0-9A-F]{1,8})$/.exec(n);
  if (unknown) return Number.parseInt(unknown[1]!, 16);
  // The same preference order as msgName(): the type's own table first.
  const own: Record<string, number> = type === MsgType.NOTIFICATION ? NotificationId : RequestId;
  const other: Record<string, number> = type === MsgType.NOTIFICATION ? RequestId : NotificationId;
  const id = own[n] ?? other[n];
  if (id === undefined)
    throw jsonError(`msg_name ${describe(name)} is not in the message catalogue`);
  return id;
}

function parseError(o: Record<string, unknown>): number {
  let fromName: number | undefined;
  if (o.error !== undefined) {
    const e = o.error;
    if (typeof e === "string" && !/^(0x[0-9a-f]+|[0-9]+)$/i.test(e.trim())) {
      const n = e.trim().toUpperCase();
      const hex = /^RM_ERROR_0X([0-9A-F]{1,8})$/.exec(n);
      fromName = hex ? Number.parseInt(hex[1]!, 16) : rmErrorFromName(n);
      if (fromName === undefined) throw jsonError(`error ${describe(e)} is not an RM error name`);
    } else fromName = Number(parseUint(e, LIMITS.u32, "error"));
  }
  const code =
    o.error_code === undefined
      ? undefined
      : Number(parseUint(o.error_code, LIMITS.u32, "error_code"));
  if (fromName !== undefined && code !== undefined && fromName !== code) {
    throw jsonError(`error ${describe(o.error)} and error_code ${code} disagree`);
  }
  return fromName ?? code ?? 0;
}

const TOP_KEYS = new Set([
  "type",
  "seq",
  "msg_id",
  "msg_name",
  "error",
  "error_code",
  "payload",
  "payload_hex",
  "payload_error",
]);

/**
 * The exact inverse of messageToJson. Lenient where it costs nothing: seq defaults to 0, a
 * reply's error to OK, `payload` to {}; numbers may be written as strings (decimal or 0x).
 */
export function messageFromJson(obj: unknown): RmMessage {
  if (!isPlainObject(obj)) throw jsonError(`a message must be a JSON object, got ${describe(obj)}`);
  for (const k of Object.keys(obj)) {
    if (!TOP_KEYS.has(k) && obj[k] !== undefined) {
      throw jsonError(`${k} is not a message field (expected ${[...TOP_KEYS].join(", ")})`);
    }
  }
  const type = parseType(requireKey(obj, "type", ""));
  const seq = obj.seq === undefined ? 0 : Number(parseUint(obj.seq, LIMITS.u16, "seq"));

  let msgId: number | undefined;
  if (obj.msg_id !== undefined) msgId = Number(parseUint(obj.msg_id, LIMITS.u32, "msg_id"));
  if (obj.msg_name !== undefined) {
    if (typeof obj.msg_name !== "string")
      throw jsonError(`msg_name must be a string, got ${describe(obj.msg_name)}`);
    const byName = idFromName(obj.msg_name, type);
    if (msgId !== undefined && msgId !== byName) {
      throw jsonError(
        `msg_name ${obj.msg_name} is 0x${byName.toString(16)}, but msg_id is 0x${msgId.toString(16)}`,
      );
    }
    msgId = byName;
  }
  if (msgId === undefined) throw jsonError("a message needs msg_name or msg_id");
  if (msgId === 0) throw rangeError("message id 0 is reserved");

  if (type !== MsgType.REPLY && (obj.error !== undefined || obj.error_code !== undefined)) {
    throw jsonError("only a REPLY carries an error");
  }
  const error = type === MsgType.REPLY ? parseError(obj) : 0;

  let payload: Uint8Array;
  if (obj.payload_hex !== undefined) {
    if (obj.payload !== undefined) throw jsonError("give payload or payload_hex, not both");
    payload = parseBytes(obj.payload_hex, "payload_hex");
  } else {
    const l = layoutFor(type, msgId);
    payload = encodeLayout(l, valueFromJson(l, obj.payload ?? {}));
  }

  switch (type) {
    case MsgType.REQUEST:
    case MsgType.NOTIFICATION:
      return { type, seq, msgId, payload };
    case MsgType.REPLY:
      return { type, seq, msgId, error, payload };
  }
}

/** Reassembles a sequence of queue messages and returns the logical messages. */
export function decodeQueueMessages(
  msgs: readonly Uint8Array[],
  rules: ReceiverRules = "rm",
): RmMessage[] {
  return reassembleAll(msgs, rules);
}
