import assert from "node:assert/strict";
import { test } from "node:test";
import { fromHex } from "../protocol/bytes.js";
import { FIXTURES } from "../protocol/fixtures.js";
import { type CliIo, main } from "./main.js";
import { hexWords, jsonValues } from "./msg.js";

interface Run {
  code: number;
  out: string;
  err: string;
}

async function run(argv: string[], stdin = ""): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = {
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    readStdin: async () => stdin,
  };
  const code = await main(argv, io);
  return { code, out: out.join(""), err: err.join("") };
}

const compactHex = (h: string) => h.replace(/\s+/g, "");
const fixture = (name: string) => {
  const f = FIXTURES.find((x) => x.name.startsWith(name));
  assert.ok(f, name);
  return f;
};

test("msg decode prints one pretty-printed JSON object for one queue message", async () => {
  const f = fixture("VM_ALLOC_VMID reply carrying");
  const r = await run(["msg", "decode", compactHex(f.hex[0]!)]);
  assert.equal(r.code, 0);
  assert.equal(r.err, "");
  assert.equal(r.out, `${JSON.stringify(f.json, null, 2)}\n`);
});

test("msg decode reassembles fragments given as separate arguments", async () => {
  const f = fixture("VM_GET_HYP_RESOURCES reply with six");
  const r = await run(["msg", "decode", ...f.hex.map(compactHex)]);
  assert.equal(r.code, 0);
  assert.deepEqual(jsonValues(r.out), [f.json]);
});

test("msg decode - reads hex words from stdin, skipping comments", async () => {
  const a = fixture("VM_START request");
  const b = fixture("VM_START reply VM_STATE");
  const stdin = `# a call and its failure\n${compactHex(a.hex[0]!)}   # the request\n\n${compactHex(b.hex[0]!)}\n`;
  const r = await run(["msg", "decode", "-"], stdin);
  assert.equal(r.code, 0);
  assert.deepEqual(jsonValues(r.out), [a.json, b.json]);
});

test("msg decode --compact prints one object per line", async () => {
  const hex = ["VM_START request", "VM_START reply"].map((n) => compactHex(fixture(n).hex[0]!));
  const r = await run(["msg", "decode", "--compact", ...hex]);
  const lines = r.out.trimEnd().split("\n");
  assert.equal(lines.length, 2);
  assert.deepEqual(JSON.parse(lines[1]!), fixture("VM_START reply").json);
});

test("msg decode --rules=linux accepts a continuation with another seq that rm rules refuse", async () => {
  const [first, second] = fixture("VM_GET_HYP_RESOURCES reply with six").hex.map(compactHex);
  const otherSeq = `${second!.slice(0, 4)}9999${second!.slice(8)}`;
  const rm = await run(["msg", "decode", first!, otherSeq]);
  assert.equal(rm.code, 1);
  assert.match(rm.err, /^tsvisor: PROTO_CONTINUATION: queue message 2 of 2: /);
  const linux = await run(["msg", "decode", "--rules=linux", first!, otherSeq]);
  assert.equal(linux.code, 0);
});

test("msg decode reports bad hex with its position and exits 1", async () => {
  const r = await run(["msg", "decode", "210101000100005600000000", "21zz"]);
  assert.equal(r.code, 1);
  assert.match(r.err, /^tsvisor: PROTO_HEX: queue message 2 of 2: .*\n$/);
});

test("msg decode refuses a sequence that ends inside a fragmented message", async () => {
  const r = await run([
    "msg",
    "decode",
    compactHex(fixture("VM_GET_HYP_RESOURCES reply with six").hex[0]!),
  ]);
  assert.equal(r.code, 1);
  assert.match(r.err, /PROTO_CONTINUATION: the input ends inside a fragmented message/);
});

test("msg decode usage errors exit 2 with one line", async () => {
  for (const argv of [
    ["msg", "decode"],
    ["msg", "decode", "--pretty", "00"],
    ["msg", "decode", "--rules=bsd", "00"],
    ["msg", "decode", "--compact=yes", "00"],
    ["msg", "decode", "-", "-"],
  ]) {
    const r = await run(argv);
    assert.equal(r.code, 2, argv.join(" "));
    assert.match(r.err, /^tsvisor: CLI_USAGE: [^\n]+\n$/);
    assert.equal(r.out, "");
  }
});

test("msg decode - with an empty stdin is a usage error", async () => {
  assert.equal((await run(["msg", "decode", "-"], "  # nothing\n")).code, 2);
});

test("msg encode prints the queue message as hex", async () => {
  const r = await run([
    "msg",
    "encode",
    '{"type":"REQUEST","msg_name":"VM_START","seq":4,"payload":{"vmid":128}}',
  ]);
  assert.equal(r.code, 0);
  assert.equal(r.out, "210104000400005680000000\n");
});

test("msg encode prints each fragment of a long message on its own line", async () => {
  const f = fixture("VM_GET_HYP_RESOURCES reply with six");
  const r = await run(["msg", "encode", JSON.stringify(f.json)]);
  assert.equal(r.out, `${f.hex.map(compactHex).join("\n")}\n`);
});

test("msg encode takes an array, several objects in a row, and stdin", async () => {
  const a = fixture("VM_STOP request");
  const b = fixture("VM_EXITED after a forced");
  const expected = `${compactHex(a.hex[0]!)}\n${compactHex(b.hex[0]!)}\n`;
  assert.equal((await run(["msg", "encode", JSON.stringify([a.json, b.json])])).out, expected);
  const both = `${JSON.stringify(a.json, null, 2)}\n${JSON.stringify(b.json)}`;
  assert.equal((await run(["msg", "encode", both])).out, expected);
  assert.equal((await run(["msg", "encode", "-"], both)).out, expected);
});

test("msg decode then msg encode gives every fixture's bytes back", async () => {
  const hex = FIXTURES.flatMap((f) => f.hex.map(compactHex));
  const decoded = await run(["msg", "decode", "-"], hex.join("\n"));
  assert.equal(decoded.code, 0);
  const encoded = await run(["msg", "encode", "-"], decoded.out);
  assert.equal(encoded.code, 0);
  assert.deepEqual(encoded.out.trimEnd().split("\n"), hex);
});

test("msg encode reports malformed JSON and bad fields with codes, printing nothing", async () => {
  const cases: [string, RegExp][] = [
    ["{not json", /^tsvisor: PROTO_JSON: JSON value 1 is not valid JSON/],
    [
      '{"type":"REQUEST","msg_name":"VM_START","payload":{"vmid":70000}}',
      /^tsvisor: PROTO_PAYLOAD_FIELD: /,
    ],
    [
      '{"type":"REQUEST","msg_name":"VM_GET_VMID"} {"type":"PING"}',
      /^tsvisor: PROTO_JSON: message 2: type must be/,
    ],
  ];
  for (const [json, re] of cases) {
    const r = await run(["msg", "encode", json]);
    assert.equal(r.code, 1, json);
    assert.match(r.err, re);
    assert.equal(r.out, "");
  }
});

test("msg encode --client refuses a request beyond 14,384 bytes that the RM limit allows", async () => {
  const big = JSON.stringify({
    type: "REQUEST",
    msg_name: "VM_SET_NAME",
    payload_hex: "00".repeat(14385),
  });
  assert.equal((await run(["msg", "encode", big])).code, 0);
  const r = await run(["msg", "encode", "--client", big]);
  assert.equal(r.code, 1);
  assert.match(r.err, /PROTO_TOO_LONG/);
});

test("msg encode without a message is a usage error", async () => {
  assert.equal((await run(["msg", "encode"])).code, 2);
  assert.equal((await run(["msg", "encode", "-"], "   ")).code, 2);
});

test("hexWords() splits on any whitespace and drops # comments", () => {
  assert.deepEqual(hexWords("aa bb\n# cc\n\tdd # ee\r\n"), ["aa", "bb", "dd"]);
  assert.deepEqual(
    hexWords("aa bb").map((w) => fromHex(w).length),
    [1, 1],
  );
});

test("jsonValues() splits concatenated values, minding braces inside strings", () => {
  assert.deepEqual(jsonValues(' {"a":"}{"} [1,{"b":2}]  3 "x y" true '), [
    { a: "}{" },
    [1, { b: 2 }],
    3,
    "x y",
    true,
  ]);
  assert.deepEqual(jsonValues('{"q":"\\"}"}'), [{ q: '"}' }]);
  assert.deepEqual(jsonValues(""), []);
});
