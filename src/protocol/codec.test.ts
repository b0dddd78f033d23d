import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type ErrorCode, isTsvisorError } from "../core/errors.js";
import { fromHex, toHex } from "./bytes.js";
import { NotificationId, RequestId } from "./catalogue.js";
import {
  decodeQueueMessages,
  derivedNames,
  fieldNames,
  type MessageJson,
  messageFromJson,
  messageToJson,
  rightsName,
} from "./codec.js";
import { MsgType } from "./header.js";
import { fragment, type RmMessage } from "./message.js";
import { CALL_LAYOUTS, NOTIFICATION_LAYOUTS } from "./payloads.js";
import type { Layout } from "./struct.js";

const coded = (code: ErrorCode) => (e: unknown) => isTsvisorError(e, code);
const payloadHex = (j: unknown) => toHex(messageFromJson(j).payload);

const bootContext = (value: unknown): MessageJson =>
  ({
    type: "REQUEST",
    seq: 1,
    msg_name: "VM_SET_BOOT_CONTEXT",
    payload: { vmid: 0x80, reg_set: 0, reg_index: 0, value },
  }) as unknown as MessageJson;

describe("messageToJson()", () => {
  test("shows a u64 as a number while it is a safe integer, else as a decimal string", () => {
    const m: RmMessage = {
      type: MsgType.REQUEST,
      seq: 0,
      msgId: RequestId.VM_SET_BOOT_CONTEXT,
      payload: fromHex("8000 0000 00000000 ffffffffffff1f00"),
    };
    assert.equal(messageToJson(m).payload?.value, Number.MAX_SAFE_INTEGER);
    const big = { ...m, payload: fromHex("8000 0000 00000000 0000000000002000") };
    assert.equal(messageToJson(big).payload?.value, "9007199254740992");
  });

  test("keeps an undecodable payload as payload_hex with the decode error's code", () => {
    const m: RmMessage = {
      type: MsgType.REQUEST,
      seq: 3,
      msgId: RequestId.VM_START,
      payload: fromHex("800000"),
    };
    const j = messageToJson(m);
    assert.equal(j.payload, undefined);
    assert.equal(j.payload_hex, "800000");
    assert.equal(j.payload_error?.code, "PROTO_PAYLOAD_LENGTH");
    assert.deepEqual(fragment(messageFromJson(j)), fragment(m));
  });

  test("a payload one byte longer than its fixed layout is not decoded", () => {
    const m: RmMessage = {
      type: MsgType.REQUEST,
      seq: 3,
      msgId: RequestId.VM_START,
      payload: fromHex("8000000000"),
    };
    assert.equal(messageToJson(m).payload_error?.code, "PROTO_PAYLOAD_LENGTH");
  });

  test("a non-zero reserved half-word in VM_INIT is reported as a field error", () => {
    const m: RmMessage = {
      type: MsgType.REQUEST,
      seq: 3,
      msgId: RequestId.VM_INIT,
      payload: fromHex("80000100"),
    };
    assert.equal(messageToJson(m).payload_error?.code, "PROTO_PAYLOAD_FIELD");
  });

  test("keeps non-zero reserved bytes by showing the payload as hex, with the fields for reading", () => {
    const m: RmMessage = {
      type: MsgType.REQUEST,
      seq: 3,
      msgId: RequestId.VM_START,
      payload: fromHex("80000100"),
    };
    const j = messageToJson(m);
    assert.equal(j.payload, undefined);
    assert.equal(j.payload_hex, "80000100");
    assert.deepEqual(j.payload_error?.fields, { vmid: 0x80 });
    assert.equal(j.payload_error?.code, "PROTO_PAYLOAD_FIELD");
    assert.deepEqual(messageFromJson(j), m);
  });

  test("an error reply shows whatever follows the error code as payload_hex", () => {
    const m: RmMessage = {
      type: MsgType.REPLY,
      seq: 3,
      msgId: RequestId.VM_ALLOC_VMID,
      error: 2,
      payload: fromHex("80000000"),
    };
    const j = messageToJson(m);
    assert.equal(j.error, "NORESOURCE");
    assert.equal(j.payload_hex, "80000000");
    assert.equal(j.payload, undefined);
  });

  test("names an unknown error code and an unknown message id so they parse back", () => {
    const m: RmMessage = {
      type: MsgType.REPLY,
      seq: 3,
      msgId: 0x56000fff,
      error: 0x99,
      payload: new Uint8Array(0),
    };
    const j = messageToJson(m);
    assert.equal(j.msg_name, "UNKNOWN_0x56000fff");
    assert.equal(j.error, "RM_ERROR_0x99");
    const { msg_id: _id, error_code: _code, ...byNames } = j;
    assert.deepEqual(messageFromJson(byNames), m);
  });

  test("an unknown id's payload is shown as raw data", () => {
    const m: RmMessage = {
      type: MsgType.NOTIFICATION,
      seq: 1,
      msgId: 0x12345678,
      payload: fromHex("abcd"),
    };
    assert.deepEqual(messageToJson(m).payload, { data: "abcd" });
  });

  test("a VM_EXITED with a short exit_reason has no derived exit code", () => {
    const m: RmMessage = {
      type: MsgType.NOTIFICATION,
      seq: 1,
      msgId: NotificationId.VM_EXITED,
      payload: fromHex("8000 0100 00000000"),
    };
    assert.deepEqual(messageToJson(m).payload, {
      vmid: 0x80,
      exit_type: 1,
      exit_reason: "",
      exit_type_name: "PLATFORM_OFF",
    });
  });

  test("rightsName() spells rights as the reference does, R then W then X", () => {
    assert.equal(rightsName(4), "R");
    assert.equal(rightsName(6), "RW");
    assert.equal(rightsName(5), "RX");
    assert.equal(rightsName(7), "RWX");
    assert.equal(rightsName(0), "-");
    assert.equal(rightsName(0x0c), "R+0x8");
  });
});

describe("messageFromJson()", () => {
  test("accepts a u64 as a number, a decimal string, a 0x string or a bigint", () => {
    const expected = "8000000000000000" + "efcdab8967452301";
    for (const v of [0x0123456789abcdefn, "81985529216486895", "0x0123456789ABCDEF"]) {
      assert.equal(payloadHex(bootContext(v)), expected);
    }
    assert.equal(payloadHex(bootContext(4096)), "8000000000000000" + "0010000000000000");
  });

  test("refuses a u64 written as an unsafe JSON number (its digits are already lost)", () => {
    assert.throws(() => messageFromJson(bootContext(2 ** 60)), coded("PROTO_JSON"));
  });

  test("refuses values out of their field's range as field errors", () => {
    assert.throws(
      () => messageFromJson(bootContext("0x10000000000000000")),
      coded("PROTO_PAYLOAD_FIELD"),
    );
    assert.throws(() => messageFromJson(bootContext(-1)), coded("PROTO_PAYLOAD_FIELD"));
    assert.throws(
      () => messageFromJson({ type: "REQUEST", msg_name: "VM_START", payload: { vmid: 0x10000 } }),
      coded("PROTO_PAYLOAD_FIELD"),
    );
  });

  test("applies a layout's own limit (os_status ≤ 7)", () => {
    assert.throws(
      () =>
        messageFromJson({
          type: "REQUEST",
          msg_name: "VM_SET_STATUS",
          payload: { os_status: 8, app_status: 0 },
        }),
      coded("PROTO_PAYLOAD_FIELD"),
    );
  });

  test("accepts integers written as strings in any numeric field", () => {
    const j = { type: "REQUEST", msg_id: "0x56000004", seq: "0x10", payload: { vmid: "0x80" } };
    assert.deepEqual(fragment(messageFromJson(j)).map(toHex), ["2101100004000056" + "80000000"]);
  });

  test("takes the message by msg_name alone, by msg_id alone, and refuses a mismatch", () => {
    const byName = messageFromJson({ type: "REQUEST", msg_name: "VM_START", payload: { vmid: 1 } });
    const byId = messageFromJson({ type: "REQUEST", msg_id: 0x56000004, payload: { vmid: 1 } });
    assert.deepEqual(byName, byId);
    assert.throws(
      () =>
        messageFromJson({
          type: "REQUEST",
          msg_name: "VM_STOP",
          msg_id: 0x56000004,
          payload: { vmid: 1 },
        }),
      coded("PROTO_JSON"),
    );
    assert.throws(() => messageFromJson({ type: "REQUEST", payload: {} }), coded("PROTO_JSON"));
    assert.throws(
      () => messageFromJson({ type: "REQUEST", msg_name: "VM_FLY" }),
      coded("PROTO_JSON"),
    );
  });

  test("accepts the error by name, by number, or by error_code, and refuses a disagreement", () => {
    const base = { type: "REPLY", seq: 1, msg_name: "VM_START" };
    for (const e of [
      { error: "VM_STATE" },
      { error: 20 },
      { error_code: 0x14 },
      { error: "vm_state", error_code: 20 },
    ]) {
      const m = messageFromJson({ ...base, ...e, payload_hex: "" });
      assert.ok(m.type === MsgType.REPLY && m.error === 0x14);
    }
    assert.throws(
      () => messageFromJson({ ...base, error: "DENIED", error_code: 20 }),
      coded("PROTO_JSON"),
    );
    assert.throws(() => messageFromJson({ ...base, error: "SORRY" }), coded("PROTO_JSON"));
  });

  test("defaults a reply's error to OK and seq to 0", () => {
    const m = messageFromJson({ type: "REPLY", msg_name: "VM_GET_VMID", payload: { vmid: 3 } });
    assert.deepEqual(m, {
      type: MsgType.REPLY,
      seq: 0,
      msgId: RequestId.VM_GET_VMID,
      error: 0,
      payload: fromHex("03000000"),
    });
  });

  test("refuses an error on a request or notification", () => {
    assert.throws(
      () => messageFromJson({ type: "REQUEST", msg_name: "VM_GET_VMID", error: "OK" }),
      coded("PROTO_JSON"),
    );
  });

  test("refuses a continuation type and unknown types", () => {
    for (const type of ["CONTINUATION", 0, "PING", undefined]) {
      assert.throws(() => messageFromJson({ type, msg_name: "VM_GET_VMID" }), coded("PROTO_JSON"));
    }
  });

  test("refuses unknown keys at the top and inside the payload (typos)", () => {
    assert.throws(
      () => messageFromJson({ type: "REQUEST", msg_name: "VM_GET_VMID", sequence: 1 }),
      coded("PROTO_JSON"),
    );
    assert.throws(
      () => messageFromJson({ type: "REQUEST", msg_name: "VM_START", payload: { vmdi: 1 } }),
      coded("PROTO_JSON"),
    );
  });

  test("reports a missing field by its path", () => {
    assert.throws(
      () =>
        messageFromJson({
          type: "REQUEST",
          msg_name: "MEM_LEND",
          payload: { mem_type: 0, flags: 0, label: 0, acl: [{ vmid: 1 }], sgl: [], attrs: [] },
        }),
      (e) => isTsvisorError(e, "PROTO_JSON") && e.message.includes("payload.acl[0].rights"),
    );
  });

  test("ignores derived fields, even edited ones", () => {
    const j = {
      type: "NOTIFICATION",
      msg_name: "VM_EXITED",
      payload: {
        vmid: 0x80,
        exit_type: 7,
        exit_reason: "00000000",
        exit_type_name: "VM_EXIT",
        exit_code: 3,
      },
    };
    assert.equal(payloadHex(j), "8000070004000000" + "00000000");
  });

  test("takes an optional tail all together or not at all", () => {
    const head = {
      type: "REQUEST",
      msg_name: "MEM_NOTIFY",
      payload: { mem_handle: 1, flags: 2, mem_info_tag: 0 },
    };
    assert.equal(payloadHex(head), "0100000002000000" + "00000000");
    const accept = { type: "REPLY", msg_name: "MEM_ACCEPT", payload: { flags: 1 } };
    assert.throws(() => messageFromJson(accept), coded("PROTO_JSON"));
  });

  test("accepts payload_hex in place of payload, but not both", () => {
    const j = { type: "REQUEST", msg_name: "VM_START", payload_hex: "81 00 00 00" };
    assert.equal(payloadHex(j), "81000000");
    assert.throws(() => messageFromJson({ ...j, payload: { vmid: 1 } }), coded("PROTO_JSON"));
    assert.throws(() => messageFromJson({ ...j, payload_hex: "8" }), coded("PROTO_JSON"));
  });

  test("refuses bytes that are not hex", () => {
    assert.throws(
      () =>
        messageFromJson({
          type: "REQUEST",
          msg_name: "VM_CONSOLE_WRITE",
          payload: { target: 1, data: "hi" },
        }),
      coded("PROTO_JSON"),
    );
  });

  test("refuses a non-object message and a non-object payload", () => {
    for (const j of [null, 3, "x", [], { type: "REQUEST", msg_name: "VM_START", payload: [1] }]) {
      assert.throws(() => messageFromJson(j), coded("PROTO_JSON"));
    }
  });
});

describe("derived fields", () => {
  const all: Layout<object>[] = [];
  const collect = (l: Layout<object>) => {
    if (all.includes(l)) return;
    all.push(l);
    for (const f of l.fields) if (f.kind === "list") collect(f.entry);
  };
  for (const c of CALL_LAYOUTS.values()) {
    collect(c.request);
    collect(c.reply);
  }
  for (const l of NOTIFICATION_LAYOUTS.values()) collect(l);

  test("no derived name is also a wire field of the same layout", () => {
    for (const l of all) {
      const clash = derivedNames(l).filter((n) => fieldNames(l).includes(n));
      assert.deepEqual(clash, []);
    }
  });
});

describe("decodeQueueMessages()", () => {
  test("reassembles a request and its fragmented reply in one sequence", () => {
    const reply: RmMessage = {
      type: MsgType.REPLY,
      seq: 4,
      msgId: RequestId.VM_GET_HYP_RESOURCES,
      error: 0,
      payload: fromHex(`05000000${"00".repeat(5 * 44)}`),
    };
    const req: RmMessage = {
      type: MsgType.REQUEST,
      seq: 4,
      msgId: RequestId.VM_GET_HYP_RESOURCES,
      payload: fromHex("80000000"),
    };
    assert.deepEqual(decodeQueueMessages([...fragment(req), ...fragment(reply)]), [req, reply]);
  });

  test("throws the first coded error for a broken sequence", () => {
    assert.throws(() => decodeQueueMessages([fromHex("3101000004000056")]), coded("PROTO_API"));
  });
});
