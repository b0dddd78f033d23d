import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { fromHex, toHex } from "./bytes.js";
import { ConfigImageReq, MemAcceptReply, MemLendReq, VmidReqStrict } from "./payloads.js";
import { decodeLayout, encodeLayout, fixedSize } from "./struct.js";

test("decodeLayout() reads VM_CONFIG_IMAGE's 40 bytes field by field", () => {
  const hex = "8000000007000000" + "0000000000000000" + "0000000000000000" + "0010000000000000" + "0020000000000000";
  const v = decodeLayout(ConfigImageReq, fromHex(hex));
  assert.deepEqual(v, {
    vmid: 0x80,
    auth_mech: 0,
    mem_handle: 7,
    image_offset: 0n,
    image_size: 0n,
    dtb_offset: 0x1000n,
    dtb_size: 0x2000n,
  });
  assert.equal(toHex(encodeLayout(ConfigImageReq, v)), hex);
  assert.equal(fixedSize(ConfigImageReq), 40);
});

test("decodeLayout() rejects a payload one byte longer than its layout", () => {
  assert.throws(
    () => decodeLayout(ConfigImageReq, new Uint8Array(41)),
    (e) => isTsvisorError(e, "PROTO_PAYLOAD_LENGTH"),
  );
});

test("decodeLayout() rejects a non-zero reserved half-word where the RM requires zero", () => {
  assert.throws(
    () => decodeLayout(VmidReqStrict, fromHex("80000100")),
    (e) => isTsvisorError(e, "PROTO_PAYLOAD_FIELD"),
  );
});

test("MEM_LEND's three lists round-trip with their u16 count + reserved headers", () => {
  const v = {
    mem_type: 0,
    flags: 0,
    label: 9,
    acl: [{ vmid: 0x80, rights: 6 }],
    sgl: [{ base: 0x10000n, size: 0x1000n }],
    attrs: [],
  };
  const b = encodeLayout(MemLendReq, v);
  assert.equal(b.length, 8 + 4 + 4 + 4 + 16 + 4);
  assert.deepEqual(decodeLayout(MemLendReq, b), v);
});

test("MEM_ACCEPT's reply is empty or carries n_sgl, flags and entries", () => {
  assert.deepEqual(decodeLayout(MemAcceptReply, new Uint8Array(0)), {});
  const v = { sgl: [{ base: 1n, size: 2n }], flags: 1 };
  const b = encodeLayout(MemAcceptReply, v);
  assert.equal(toHex(b.subarray(0, 4)), "01000100");
  assert.deepEqual(decodeLayout(MemAcceptReply, b), v);
});

test("a list count larger than the payload is a length error, not an allocation", () => {
  assert.throws(
    () => decodeLayout(MemLendReq, fromHex("0000000000000000ffff0000")),
    (e) => isTsvisorError(e, "PROTO_PAYLOAD_LENGTH"),
  );
});
