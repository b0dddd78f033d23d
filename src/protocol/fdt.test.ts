import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import { fromHex, toHex } from "./bytes.js";
import {
  decodeFdt,
  decodeFdtHeader,
  decodeFdtReservations,
  encodeFdt,
  FDT_LIMITS,
  type FdtNode,
  fdtNode,
  propEmpty,
  propString,
  propStringList,
  propU32,
  propU64,
  readCellsAsU64,
  readEmpty,
  readString,
  readStringList,
  readU32,
  readU32Cells,
  readU64,
} from "./fdt.js";

// `/ { model = "t"; cpu { reg = <1>; }; mem { reg = <0 0x1000>; }; };` laid out by hand from the
// Devicetree Specification §5: header, empty reservation map, structure block, strings block.
const SMALL_HEX = [
  // header: magic, totalsize 158, off_dt_struct 0x38, off_dt_strings 0x94, off_mem_rsvmap 0x28,
  // version 17, last_comp_version 16, boot_cpuid_phys 0, size_dt_strings 10, size_dt_struct 92
  "d00dfeed 0000009e 00000038 00000094 00000028 00000011 00000010 00000000 0000000a 0000005c",
  "00000000 00000000 00000000 00000000", // reservation map: one zero entry
  "00000001 00000000", // BEGIN_NODE "" (root)
  "00000003 00000002 00000000 74000000", // PROP len 2, nameoff 0 ("model"), "t\0" + pad
  "00000001 63707500", // BEGIN_NODE "cpu"
  "00000003 00000004 00000006 00000001", // PROP len 4, nameoff 6 ("reg"), <1>
  "00000002", // END_NODE
  "00000001 6d656d00", // BEGIN_NODE "mem"
  "00000003 00000008 00000006 00000000 00001000", // PROP "reg" again: same nameoff, <0 0x1000>
  "00000002", // END_NODE
  "00000002", // END_NODE (root)
  "00000009", // END
  "6d6f64656c00 72656700", // strings: "model\0reg\0", each stored once
].join("");

function smallTree(): FdtNode {
  return fdtNode(
    "",
    [["model", propString("t")]],
    [fdtNode("cpu", [["reg", propU32(1)]]), fdtNode("mem", [["reg", propU32(0, 0x1000)]])],
  );
}

function isMalformed(e: unknown): boolean {
  return isTsvisorError(e, "FDT_MALFORMED");
}

function be(words: readonly number[]): Uint8Array {
  const out = new Uint8Array(words.length * 4);
  const v = new DataView(out.buffer);
  words.forEach((w, i) => {
    v.setUint32(4 * i, w >>> 0);
  });
  return out;
}

/** Assembles a blob around a hand-made structure block (for inputs the encoder never makes). */
function blob(struct: Uint8Array, strings: string, patch: Record<number, number> = {}): Uint8Array {
  const strBytes = new TextEncoder().encode(strings);
  const offStruct = 56;
  const offStrings = offStruct + struct.length;
  const total = offStrings + strBytes.length;
  const header = [
    0xd00dfeed,
    total,
    offStruct,
    offStrings,
    40,
    17,
    16,
    0,
    strBytes.length,
    struct.length,
  ];
  for (const [i, v] of Object.entries(patch)) header[Number(i)] = v;
  const out = new Uint8Array(total);
  out.set(be(header), 0);
  out.set(struct, offStruct);
  out.set(strBytes, offStrings);
  return out;
}

function nameBytes(name: string): Uint8Array {
  const b = new Uint8Array((name.length + 4) & ~3);
  b.set(new TextEncoder().encode(name));
  return b;
}

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const BEGIN_ROOT = cat(be([1]), nameBytes(""));
const END_ROOT = be([2, 9]);

test("encodeFdt() produces the hand-written DTB byte for byte", () => {
  assert.equal(toHex(encodeFdt(smallTree())), toHex(fromHex(SMALL_HEX)));
});

test("decodeFdt() reads the hand-written DTB into the same tree, in order", () => {
  assert.deepEqual(decodeFdt(fromHex(SMALL_HEX)), smallTree());
});

test("decodeFdtHeader() reports the ten header fields of the hand-written DTB", () => {
  assert.deepEqual(decodeFdtHeader(fromHex(SMALL_HEX)), {
    totalsize: 158,
    offDtStruct: 0x38,
    offDtStrings: 0x94,
    offMemRsvmap: 0x28,
    version: 17,
    lastCompVersion: 16,
    bootCpuidPhys: 0,
    sizeDtStrings: 10,
    sizeDtStruct: 92,
  });
});

test("encodeFdt() stores each property name once in the strings block", () => {
  const tree = fdtNode(
    "",
    [["a", propEmpty()]],
    [
      fdtNode("x", [
        ["a", propEmpty()],
        ["b", propEmpty()],
      ]),
    ],
  );
  const h = decodeFdtHeader(encodeFdt(tree));
  assert.equal(h.sizeDtStrings, "a\0b\0".length);
});

test("encodeFdt() writes boot_cpuid_phys when asked", () => {
  assert.equal(decodeFdtHeader(encodeFdt(smallTree(), { bootCpuidPhys: 3 })).bootCpuidPhys, 3);
});

test("decodeFdt() reads only totalsize bytes of a larger region", () => {
  const dtb = fromHex(SMALL_HEX);
  const region = new Uint8Array(dtb.length + 4096).fill(0xa5);
  region.set(dtb);
  assert.deepEqual(decodeFdt(region), smallTree());
});

test("decodeFdt() skips NOP tokens wherever a token may stand", () => {
  const struct = cat(
    be([4]),
    BEGIN_ROOT,
    be([4, 3, 0, 0, 4]),
    be([1]),
    nameBytes("n"),
    be([4, 2, 4]),
    END_ROOT,
  );
  assert.deepEqual(
    decodeFdt(blob(struct, "p\0")),
    fdtNode("", [["p", propEmpty()]], [fdtNode("n")]),
  );
});

test("decodeFdtReservations() lists entries before the zero terminator", () => {
  const dtb = fromHex(SMALL_HEX);
  assert.deepEqual(decodeFdtReservations(dtb), []);
  // Replace the empty map with one entry: the terminator then falls on the BEGIN_NODE words,
  // which are not zero, so the map runs on and must be caught by the totalsize bound.
  const patched = dtb.slice();
  patched.set(be([0, 0x1000, 0, 0x2000]), 40);
  assert.throws(() => decodeFdtReservations(patched), isMalformed);
});

test("property writers lay cells out big-endian", () => {
  assert.equal(toHex(propU32(1, 0xdeadbeef)), "00000001deadbeef");
  assert.equal(toHex(propU64(0x1_0000_2000n)), "0000000100002000");
  assert.equal(toHex(propString("ab")), "616200");
  assert.equal(toHex(propStringList(["a", "bc"])), "6100626300");
  assert.equal(propEmpty().length, 0);
});

test("property readers invert the writers", () => {
  assert.deepEqual(readU32Cells(propU32(1, 2, 3), "p"), [1, 2, 3]);
  assert.equal(readU32(propU32(0xffffffff), "p"), 0xffffffff);
  assert.equal(readU64(propU64(0xffff_ffff_0000_0001n), "p"), 0xffff_ffff_0000_0001n);
  assert.equal(readCellsAsU64(propU32(7), 1, "p"), 7n);
  assert.equal(readString(propString("héllo"), "p"), "héllo");
  assert.deepEqual(readStringList(propStringList(["x", "", "yz"]), "p"), ["x", "", "yz"]);
  assert.equal(readEmpty(propEmpty(), "p"), true);
});

test("property readers report a value of the wrong shape as FDT_CONFIG naming it", () => {
  const cases: [() => unknown, string][] = [
    [() => readU32(propU32(1, 2), "/n/a"), "/n/a"],
    [() => readU64(propU32(1), "/n/b"), "/n/b"],
    [() => readU32Cells(new Uint8Array(3), "/n/c"), "/n/c"],
    [() => readString(fromHex("6162"), "/n/d"), "/n/d"],
    [() => readString(propStringList(["a", "b"]), "/n/e"), "/n/e"],
    [() => readString(fromHex("ff00"), "/n/f"), "/n/f"],
    [() => readEmpty(propU32(0), "/n/g"), "/n/g"],
  ];
  for (const [f, what] of cases) {
    assert.throws(f, (e) => isTsvisorError(e, "FDT_CONFIG") && e.message.includes(what));
  }
});

test("property writers refuse values they cannot represent", () => {
  assert.throws(
    () => propU32(-1),
    (e) => isTsvisorError(e, "FDT_CONFIG"),
  );
  assert.throws(
    () => propU32(1.5),
    (e) => isTsvisorError(e, "FDT_CONFIG"),
  );
  assert.throws(
    () => propU64(1n << 64n),
    (e) => isTsvisorError(e, "FDT_CONFIG"),
  );
  assert.throws(
    () => propString("a\0b"),
    (e) => isTsvisorError(e, "FDT_CONFIG"),
  );
  assert.throws(
    () => propString("\ud800"),
    (e) => isTsvisorError(e, "FDT_CONFIG"),
  );
});

test("encodeFdt() refuses trees that would not decode back to themselves", () => {
  const bad: FdtNode[] = [
    fdtNode("root"),
    fdtNode("", [], [fdtNode("")]),
    fdtNode("", [], [fdtNode("a/b")]),
    fdtNode("", [], [fdtNode("sp ace")]),
    fdtNode("", [], [fdtNode("x".repeat(256))]),
    fdtNode("", [["", propEmpty()]]),
    fdtNode("", [], [fdtNode("twin"), fdtNode("twin")]),
  ];
  for (const t of bad) assert.throws(() => encodeFdt(t), isMalformed);
});

function chain(depth: number): FdtNode {
  let node = fdtNode("leaf");
  for (let i = 2; i < depth; i++) node = fdtNode(`n${i}`, [], [node]);
  return fdtNode("", [], [node]);
}

test("nesting is allowed to 32 levels and refused beyond, by encoder and decoder", () => {
  assert.deepEqual(decodeFdt(encodeFdt(chain(32))), chain(32));
  assert.throws(() => encodeFdt(chain(33)), isMalformed);
  const deep = cat(BEGIN_ROOT, ...Array.from({ length: 32 }, () => cat(be([1]), nameBytes("d"))));
  assert.throws(
    () => decodeFdt(blob(cat(deep, be(Array(33).fill(2)), be([9])), "")),
    (e) => isMalformed(e) && /deeper than 32/.test((e as Error).message),
  );
});

test("decodeFdt() caps the number of nodes", () => {
  const many = Array.from({ length: FDT_LIMITS.maxNodes }, (_, i) =>
    cat(be([1]), nameBytes(`n${i}`), be([2])),
  );
  assert.throws(
    () => decodeFdt(blob(cat(BEGIN_ROOT, ...many, END_ROOT), "")),
    (e) => isMalformed(e) && /more than 4096 nodes/.test((e as Error).message),
  );
});

/** Each entry: a blob the decoder must refuse, and a word of the sentence it must say. */
const MALFORMED: [string, () => Uint8Array, RegExp][] = [
  ["a blob shorter than the header", () => fromHex(SMALL_HEX).subarray(0, 39), /header/],
  ["a bad magic", () => blob(cat(BEGIN_ROOT, END_ROOT), "", { 0: 0xd00dfeee }), /magic/],
  ["version 16", () => blob(cat(BEGIN_ROOT, END_ROOT), "", { 5: 16 }), /version 16/],
  [
    "last_comp_version 18",
    () => blob(cat(BEGIN_ROOT, END_ROOT), "", { 6: 18 }),
    /compatible version 18/,
  ],
  ["totalsize beyond the buffer", () => fromHex(SMALL_HEX).subarray(0, 157), /totalsize 158/],
  [
    "totalsize below the header",
    () => blob(cat(BEGIN_ROOT, END_ROOT), "", { 1: 39 }),
    /totalsize 39/,
  ],
  [
    "a structure block past totalsize",
    () => blob(cat(BEGIN_ROOT, END_ROOT), "", { 9: 1000 }),
    /structure block/,
  ],
  [
    "a strings block past totalsize",
    () => blob(cat(BEGIN_ROOT, END_ROOT), "", { 8: 1 }),
    /strings block/,
  ],
  ["a misaligned structure block", () => blob(cat(BEGIN_ROOT, END_ROOT), "", { 2: 57 }), /aligned/],
  [
    "a block inside the header",
    () => blob(cat(BEGIN_ROOT, END_ROOT), "", { 4: 8 }),
    /overlaps the header/,
  ],
  [
    "a first token other than BEGIN_NODE",
    () => blob(cat(be([3, 0, 0]), END_ROOT), "a\0"),
    /starts with token/,
  ],
  ["a named root", () => blob(cat(be([1]), nameBytes("r"), END_ROOT), ""), /root node/],
  [
    "an unterminated node name",
    () => blob(cat(BEGIN_ROOT, be([1, 0x61616161])), ""),
    /unterminated/,
  ],
  [
    "a node name with a slash",
    () => blob(cat(BEGIN_ROOT, be([1]), nameBytes("a/b"), be([2]), END_ROOT), ""),
    /contains byte 0x2f/,
  ],
  [
    "an unterminated property name",
    () => blob(cat(BEGIN_ROOT, be([3, 0, 0]), END_ROOT), "abc"),
    /unterminated/,
  ],
  [
    "a name offset past the strings",
    () => blob(cat(BEGIN_ROOT, be([3, 0, 9]), END_ROOT), "a\0"),
    /past the strings/,
  ],
  [
    "a property value past the block",
    () => blob(cat(BEGIN_ROOT, be([3, 0x100, 0]), END_ROOT), "a\0"),
    /runs past/,
  ],
  [
    "a huge property length",
    () => blob(cat(BEGIN_ROOT, be([3, 0xffffffff, 0]), END_ROOT), "a\0"),
    /runs past/,
  ],
  ["an unknown token", () => blob(cat(BEGIN_ROOT, be([5]), END_ROOT), ""), /unknown token 0x5/],
  ["END inside a node", () => blob(cat(BEGIN_ROOT, be([9])), ""), /ends inside/],
  ["a missing END", () => blob(cat(BEGIN_ROOT, be([2])), ""), /without an END/],
  [
    "a second root",
    () => blob(cat(BEGIN_ROOT, be([2]), BEGIN_ROOT, END_ROOT), ""),
    /follows the root/,
  ],
  [
    "a duplicate property",
    () => blob(cat(BEGIN_ROOT, be([3, 0, 0, 3, 0, 0]), END_ROOT), "a\0"),
    /twice/,
  ],
  [
    "a 300-byte node name",
    () => blob(cat(BEGIN_ROOT, be([1]), nameBytes("n".repeat(300)), be([2]), END_ROOT), ""),
    /longer than 255/,
  ],
  [
    "a 300-byte property name",
    () => blob(cat(BEGIN_ROOT, be([3, 0, 0]), END_ROOT), `${"p".repeat(300)}\0`),
    /longer than 255/,
  ],
  [
    "a property after a child node",
    () => blob(cat(BEGIN_ROOT, be([1]), nameBytes("c"), be([2, 3, 0, 0]), END_ROOT), "a\0"),
    /after a child/,
  ],
  [
    "two children with one name",
    () =>
      blob(
        cat(BEGIN_ROOT, be([1]), nameBytes("c"), be([2, 1]), nameBytes("c"), be([2]), END_ROOT),
        "",
      ),
    /two children named "c"/,
  ],
];

for (const [what, make, says] of MALFORMED) {
  test(`decodeFdt() refuses ${what} with FDT_MALFORMED`, () => {
    assert.throws(
      () => decodeFdt(make()),
      (e) => isMalformed(e) && says.test((e as Error).message),
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Properties

const nameChar = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyzABCXYZ0123456789,._+-#@?".split(""));
const fdtName = fc.string({ unit: nameChar, minLength: 1, maxLength: 12 });

const arbNode: fc.Memo<FdtNode> = fc.memo((n) =>
  fc
    .record({
      name: fdtName,
      props: fc.uniqueArray(fc.tuple(fdtName, fc.uint8Array({ maxLength: 12 })), {
        maxLength: 4,
        selector: (p) => p[0],
      }),
      children:
        n > 1
          ? fc.uniqueArray(arbNode(n - 1), { maxLength: 3, selector: (c) => c.name })
          : fc.constant<FdtNode[]>([]),
    })
    .map(({ name, props, children }) => fdtNode(name, props, children)),
);
const arbTree = fc
  .record({
    props: fc.uniqueArray(fc.tuple(fdtName, fc.uint8Array({ maxLength: 12 })), {
      maxLength: 4,
      selector: (p) => p[0],
    }),
    children: fc.uniqueArray(arbNode(3), { maxLength: 3, selector: (c) => c.name }),
  })
  .map(({ props, children }) => fdtNode("", props, children));

test("decodeFdt(encodeFdt(tree)) is the tree, for random trees", () => {
  fc.assert(
    fc.property(arbTree, (t) => {
      assert.deepEqual(decodeFdt(encodeFdt(t)), t);
    }),
    { numRuns: 200 },
  );
});

/** Runs the decoder and fails on anything but success or FDT_MALFORMED. */
function decodesOrMalformed(b: Uint8Array): void {
  try {
    decodeFdt(b);
  } catch (e) {
    if (!isMalformed(e)) throw e;
  }
}

test("random bytes only ever decode or fail with FDT_MALFORMED", () => {
  const header = fromHex(SMALL_HEX).subarray(0, 8);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, keepMagic) => {
      // Half the inputs get a valid magic so the walk past the header is exercised too.
      const b = keepMagic && bytes.length >= 8 ? cat(header, bytes.subarray(8)) : bytes;
      decodesOrMalformed(b);
    }),
    { numRuns: 400 },
  );
});

test("every truncation of a valid DTB fails with FDT_MALFORMED", () => {
  const dtb = encodeFdt(smallTree());
  for (let n = 0; n < dtb.length; n++)
    assert.throws(() => decodeFdt(dtb.subarray(0, n)), isMalformed);
});

test("bit flips and word overwrites in valid DTBs only decode or fail with FDT_MALFORMED", () => {
  fc.assert(
    fc.property(
      arbTree,
      fc.nat(),
      fc.nat({ max: 7 }),
      fc.option(fc.constantFrom(0, 1, 2, 3, 4, 9, 0xffffffff, 0x7fffffff, 40, 56)),
      (t, pos, bit, word) => {
        const b = encodeFdt(t);
        const at = pos % b.length;
        if (word === null) {
          b[at]! ^= 1 << bit;
        } else {
          const w = at & ~3;
          if (w + 4 <= b.length) new DataView(b.buffer, b.byteOffset).setUint32(w, word);
        }
        decodesOrMalformed(b);
      },
    ),
    { numRuns: 400 },
  );
});
