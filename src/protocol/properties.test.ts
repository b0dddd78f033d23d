import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import { Writer } from "./bytes.js";
import { msgName } from "./catalogue.js";
import {
  derivedNames,
  fieldNames,
  type Json,
  layoutFor,
  messageFromJson,
  messageToJson,
} from "./codec.js";
import { MSG_MAX_SIZE, RM_MAX_PAYLOAD } from "./header.js";
import { fragment, Reassembler, type RmMessage, reassembleAll } from "./message.js";
import { CALL_LAYOUTS, NOTIFICATION_LAYOUTS } from "./payloads.js";
import { decodeLayout, encodeLayout, fixedSize, type Layout } from "./struct.js";
import {
  layoutValue,
  queueMessageArb,
  rmMessageArb,
  validMessageArb,
} from "./testing/arbitraries.js";

/** Every request, reply and notification layout, named after its message. */
const LAYOUTS: { name: string; layout: Layout<object> }[] = [
  ...[...CALL_LAYOUTS].flatMap(([id, c]) => [
    { name: `${msgName(id)} request`, layout: c.request },
    { name: `${msgName(id)} reply`, layout: c.reply },
  ]),
  ...[...NOTIFICATION_LAYOUTS].map(([id, l]) => ({ name: msgName(id, true), layout: l })),
];

/** Runs fn and accepts its result or a TsvisorError; anything else fails the property. */
function onlyCodedErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    assert.ok(isTsvisorError(e), `expected a TsvisorError, got ${String(e)}`);
  }
}

describe("encode∘decode is identity for every layout", () => {
  for (const { name, layout } of LAYOUTS) {
    test(`${name}: decodeLayout(encodeLayout(v)) equals v`, () => {
      fc.assert(
        fc.property(layoutValue(layout), (v) => {
          assert.deepEqual(decodeLayout(layout, encodeLayout(layout, v)), v);
        }),
        { numRuns: 25 },
      );
    });
  }
});

describe("robustness of the payload decoders", () => {
  const layoutArb = fc.constantFrom(...LAYOUTS);

  test("random bytes decode or fail with a TsvisorError under every layout", () => {
    fc.assert(
      fc.property(layoutArb, fc.uint8Array({ maxLength: 300 }), ({ layout }, bytes) => {
        onlyCodedErrors(() => decodeLayout(layout, bytes));
      }),
      { numRuns: 1500 },
    );
  });

  test("a truncated valid payload decodes or fails with a TsvisorError; a fixed layout always fails", () => {
    fc.assert(
      fc.property(
        layoutArb.chain(({ layout }) =>
          fc.tuple(fc.constant(layout), layoutValue(layout), fc.nat()),
        ),
        ([layout, v, cutSeed]) => {
          const full = encodeLayout(layout, v);
          if (full.length === 0) return;
          const cut = full.subarray(0, cutSeed % full.length);
          onlyCodedErrors(() => decodeLayout(layout, cut));
          if (fixedSize(layout) !== undefined) {
            assert.throws(
              () => decodeLayout(layout, cut),
              (e) => isTsvisorError(e, "PROTO_PAYLOAD_LENGTH"),
            );
          }
        },
      ),
      { numRuns: 800 },
    );
  });

  test("messageToJson() never throws, and its output is plain JSON that encodes back to the same bytes", () => {
    fc.assert(
      fc.property(rmMessageArb(fc.integer({ min: 0, max: 400 })), (m) => {
        const text = JSON.stringify(messageToJson(m));
        const back = messageFromJson(JSON.parse(text));
        assert.deepEqual(back, m);
      }),
      { numRuns: 500 },
    );
  });

  test("arbitrary JSON into messageFromJson() yields a message or a TsvisorError", () => {
    const shaped = fc.record(
      {
        type: fc.oneof(fc.constantFrom("REQUEST", "REPLY", "NOTIFICATION"), fc.jsonValue()),
        msg_name: fc.oneof(
          fc.constantFrom("VM_START", "MEM_LEND", "VM_STATUS", "UNKNOWN_0x1"),
          fc.jsonValue(),
        ),
        msg_id: fc.jsonValue(),
        seq: fc.jsonValue(),
        error: fc.jsonValue(),
        payload: fc.oneof(
          fc.dictionary(fc.constantFrom("vmid", "acl", "sgl", "data", "x"), fc.jsonValue()),
          fc.jsonValue(),
        ),
        payload_hex: fc.oneof(fc.stringMatching(/^[0-9a-f]{0,16}$/), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(shaped, fc.jsonValue()), (j) => {
        onlyCodedErrors(() => messageFromJson(j));
      }),
      { numRuns: 1000 },
    );
  });
});

describe("JSON view of valid messages", () => {
  /** Checks that every key is a wire field or a declared derived name of its layout. */
  function keysBelong(l: Layout<object>, obj: Json, where: string): void {
    assert.ok(obj !== null && typeof obj === "object" && !Array.isArray(obj), where);
    const allowed = new Set([...fieldNames(l), ...derivedNames(l)]);
    for (const [k, v] of Object.entries(obj)) {
      assert.ok(allowed.has(k), `${where}.${k} is neither a field nor a declared derived name`);
      const f = l.fields.find((g) => g.kind === "list" && g.name === k);
      if (f?.kind !== "list") continue;
      for (const [i, e] of (v as Json[]).entries()) keysBelong(f.entry, e, `${where}.${k}[${i}]`);
    }
  }

  test("decodes field by field, with only declared names, and encodes back exactly", () => {
    fc.assert(
      fc.property(validMessageArb(), (m) => {
        const j = messageToJson(m);
        assert.equal(j.payload_error, undefined, j.payload_error?.message);
        keysBelong(layoutFor(m.type, m.msgId), j.payload ?? null, "payload");
        assert.deepEqual(messageFromJson(JSON.parse(JSON.stringify(j))), m);
      }),
      { numRuns: 600 },
    );
  });
});

describe("fragmentation and reassembly", () => {
  test("fragment() then reassembly gives back the message under both receiver rules", () => {
    fc.assert(
      fc.property(rmMessageArb(), fc.constantFrom("rm" as const, "linux" as const), (m, rules) => {
        const msgs = fragment(m);
        assert.ok(msgs.every((q) => q.length <= MSG_MAX_SIZE));
        assert.deepEqual(reassembleAll(msgs, rules), [m]);
      }),
      { numRuns: 150 },
    );
  });

  test("random queue-message streams only produce events, never exceptions", () => {
    fc.assert(
      fc.property(
        fc.array(queueMessageArb, { maxLength: 40 }),
        fc.constantFrom("rm" as const, "linux" as const),
        (stream, rules) => {
          const r = new Reassembler(rules);
          for (const q of stream) {
            const events = r.push(q);
            assert.ok(events.length >= 1);
            for (const ev of events) {
              if (ev.kind === "message") assert.ok(ev.message.payload.length <= RM_MAX_PAYLOAD);
              if (ev.kind === "dropped" || ev.kind === "aborted")
                assert.ok(isTsvisorError(ev.error));
            }
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  test("a message survives when random junk precedes it", () => {
    fc.assert(
      fc.property(fc.array(queueMessageArb, { maxLength: 10 }), rmMessageArb(), (junk, m) => {
        const r = new Reassembler("rm");
        for (const q of junk) r.push(q);
        const got: RmMessage[] = [];
        for (const q of fragment(m))
          for (const ev of r.push(q)) if (ev.kind === "message") got.push(ev.message);
        assert.deepEqual(got, [m]);
      }),
      { numRuns: 150 },
    );
  });
});

test("Writer output equals the bytes written, across buffer growth", () => {
  const op = fc.oneof(
    fc.record({ k: fc.constant("u8" as const), v: fc.integer({ min: 0, max: 0xff }) }),
    fc.record({ k: fc.constant("u16" as const), v: fc.integer({ min: 0, max: 0xffff }) }),
    fc.record({ k: fc.constant("u32" as const), v: fc.integer({ min: 0, max: 0xffffffff }) }),
    fc.record({
      k: fc.constant("u64" as const),
      v: fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }),
    }),
    fc.record({ k: fc.constant("bytes" as const), v: fc.uint8Array({ maxLength: 100 }) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
      const w = new Writer();
      const expected: number[] = [];
      const le = (v: bigint, n: number) => {
        for (let i = 0; i < n; i++) expected.push(Number((v >> BigInt(8 * i)) & 0xffn));
      };
      for (const o of ops) {
        if (o.k === "bytes") {
          w.bytes(o.v);
          expected.push(...o.v);
        } else if (o.k === "u64") {
          w.u64(o.v);
          le(o.v, 8);
        } else {
          w[o.k](o.v);
          le(BigInt(o.v), o.k === "u8" ? 1 : o.k === "u16" ? 2 : 4);
        }
      }
      assert.deepEqual([...w.finish()], expected);
    }),
    { numRuns: 200 },
  );
});
