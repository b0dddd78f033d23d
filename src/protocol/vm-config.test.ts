import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isTsvisorError } from "../core/errors.js";
import { fromHex, toHex } from "./bytes.js";
import {
  decodeFdt,
  encodeFdt,
  type FdtNode,
  fdtNode,
  findChild,
  propEmpty,
  propString,
  propU32,
} from "./fdt.js";
import {
  decodeVmConfig,
  encodeVmConfig,
  type VDevice,
  type VmConfig,
  vmConfigFromFdt,
  vmConfigToFdt,
} from "./vm-config.js";

/** The smallest useful config: one vCPU, 1 MiB at 2 GiB, one doorbell on GSI 32. */
const SMALL: VmConfig = {
  nodeName: "gunyah-vm-config",
  memory: { base: 0x8000_0000n, size: 0x10_0000n },
  vcpus: { count: 1, affinity: "proxy" },
  vdevices: [{ kind: "doorbell", name: "db", label: 0, peer: "default", interrupt: 32 }],
};

// SMALL laid out by hand from the Devicetree Specification §5 and the schema in docs/vm-config.md.
// String offsets: #address-cells 0x00, #size-cells 0x0f, base-address 0x1b, size-min 0x28,
// affinity 0x31, count 0x3a, generate 0x40, vdevice-type 0x49, label 0x56, peer-default 0x5c,
// interrupts 0x69 (116 bytes in all).
const SMALL_HEX = [
  // header: totalsize 480, struct at 0x38 (308 bytes), strings at 0x16c (116 bytes)
  "d00dfeed 000001e0 00000038 0000016c 00000028 00000011 00000010 00000000 00000074 00000134",
  "00000000 00000000 00000000 00000000", // reservation map terminator
  "00000001 00000000", // / {
  "00000001 67756e79 61682d76 6d2d636f 6e666967 00000000", // gunyah-vm-config {
  "00000001 6d656d6f 72790000", // memory {
  "00000003 00000004 00000000 00000002", // #address-cells = <2>
  "00000003 00000004 0000000f 00000002", // #size-cells = <2>
  "00000003 00000008 0000001b 00000000 80000000", // base-address = <0 0x80000000>
  "00000003 00000008 00000028 00000000 00100000", // size-min = <0 0x100000>
  "00000002", // };
  "00000001 76637075 73000000", // vcpus {
  "00000003 00000006 00000031 70726f78 79000000", // affinity = "proxy"
  "00000003 00000004 0000003a 00000001", // count = <1>
  "00000002", // };
  "00000001 76646576 69636573 00000000", // vdevices {
  "00000003 0000000c 00000040 2f687970 65727669 736f7200", // generate = "/hypervisor"
  "00000001 64620000", // db {
  "00000003 00000009 00000049 646f6f72 62656c6c 00000000", // vdevice-type = "doorbell"
  "00000003 00000004 00000056 00000000", // label = <0>
  "00000003 00000000 0000005c", // peer-default
  "00000003 00000004 00000069 00000020", // interrupts = <32>
  "00000002 00000002 00000002 00000002", // close db, vdevices, gunyah-vm-config, root
  "00000009", // END
  // strings block
  "23616464726573732d63656c6c7300", // #address-cells
  "2373697a652d63656c6c7300", // #size-cells
  "626173652d6164647265737300", // base-address
  "73697a652d6d696e00", // size-min
  "616666696e69747900", // affinity
  "636f756e7400", // count
  "67656e657261746500", // generate
  "766465766963652d7479706500", // vdevice-type
  "6c6162656c00", // label
  "706565722d64656661756c7400", // peer-default
  "696e746572727570747300", // interrupts
].join("");

const FULL: VmConfig = {
  nodeName: "qcom,vm-config",
  imageName: "guest-α",
  memory: { base: 0xffff_ffff_ffff_0000n, size: 0x1_0000n },
  vcpus: { count: 64, affinity: "sticky" },
  vdevices: [
    { kind: "doorbell", name: "doorbell@1", label: 1, peer: "default", interrupt: 1023 },
    { kind: "doorbell-source", name: "ring", label: 1, peer: 3 },
    {
      kind: "message-queue-pair",
      name: "msgq-rm",
      label: 1,
      peer: 0xfffd,
      messageSize: 240,
      queueDepth: 256,
      interrupts: [0, 5],
    },
  ],
};

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    if (isTsvisorError(e)) return e.code;
    throw e;
  }
  return undefined;
}

/** Asserts FDT_CONFIG whose sentence mentions `says`. */
function assertConfigError(f: () => unknown, says: string | RegExp): void {
  assert.throws(f, (e) => {
    assert.ok(isTsvisorError(e, "FDT_CONFIG"), `expected FDT_CONFIG, got ${String(e)}`);
    const ok = typeof says === "string" ? e.message.includes(says) : says.test(e.message);
    assert.ok(ok, `message "${e.message}" does not mention ${String(says)}`);
    return true;
  });
}

function withConfig(patch: Partial<VmConfig>): VmConfig {
  return { ...SMALL, ...patch };
}

/** Encodes SMALL's tree after `edit`, bypassing the config encoder's own validation. */
function editedDtb(
  edit: (vmConfig: FdtNode, root: FdtNode) => void,
  base: VmConfig = SMALL,
): Uint8Array {
  const root = vmConfigToFdt(base);
  edit(root.children[0]!, root);
  return encodeFdt(root);
}

function child(n: FdtNode, ...path: string[]): FdtNode {
  let at = n;
  for (const p of path) at = findChild(at, p)!;
  return at;
}

test("encodeVmConfig() produces the hand-written DTB byte for byte", () => {
  assert.equal(toHex(encodeVmConfig(SMALL)), toHex(fromHex(SMALL_HEX)));
});

test("decodeVmConfig() reads the hand-written DTB", () => {
  assert.deepEqual(decodeVmConfig(fromHex(SMALL_HEX)), SMALL);
});

test("a config using every field, kind and extreme value round-trips", () => {
  assert.deepEqual(decodeVmConfig(encodeVmConfig(FULL)), FULL);
});

test("decodeVmConfig() reads a DTB sitting at the start of a larger parcel region", () => {
  const dtb = encodeVmConfig(FULL);
  const region = new Uint8Array(dtb.length + 0x1000).fill(0xee);
  region.set(dtb);
  assert.deepEqual(decodeVmConfig(region), FULL);
});

test("decodeVmConfig() ignores unknown properties and nodes so later versions can add fields", () => {
  const dtb = editedDtb((vm, root) => {
    root.props.set("compatible", propString("tsvisor,guest"));
    root.children.unshift(fdtNode("chosen", [["bootargs", propString("console=ttyS0")]]));
    vm.props.set("vm-type", propString("aarch64-guest"));
    vm.children.push(fdtNode("interrupts", [["config", propU32(1)]]));
    child(vm, "memory").props.set("size-max", propU32(0, 0x20_0000));
    child(vm, "vcpus").props.set("sched-priority", propU32(0));
    child(vm, "vdevices", "db").props.set("message-size", propU32(8));
  });
  assert.deepEqual(decodeVmConfig(dtb), SMALL);
});

test("decodeVmConfig() reads addresses written with #address-cells = <1>", () => {
  const dtb = editedDtb((vm) => {
    const mem = child(vm, "memory");
    mem.props.set("#address-cells", propU32(1));
    mem.props.set("#size-cells", propU32(1));
    mem.props.set("base-address", propU32(0x8000_0000));
    mem.props.set("size-min", propU32(0x10_0000));
  });
  assert.deepEqual(decodeVmConfig(dtb), SMALL);
});

test("decodeVmConfig() without a vdevices node yields no vdevices", () => {
  const dtb = editedDtb((vm) => {
    vm.children = vm.children.filter((c) => c.name !== "vdevices");
  });
  assert.deepEqual(decodeVmConfig(dtb), withConfig({ vdevices: [] }));
});

test("decodeVmConfig() passes FDT_MALFORMED through for a broken blob", () => {
  const dtb = fromHex(SMALL_HEX);
  dtb[0] = 0;
  assert.equal(
    codeOf(() => decodeVmConfig(dtb)),
    "FDT_MALFORMED",
  );
});

// ---------------------------------------------------------------------------------------------
// Validation rules: the encoder refuses the config, the decoder refuses the same tree.

const DB = (over: Partial<Extract<VDevice, { kind: "doorbell" }>> = {}): VDevice => ({
  kind: "doorbell",
  name: "db",
  label: 0,
  peer: "default",
  interrupt: 32,
  ...over,
});
const MQ = (over: Partial<Extract<VDevice, { kind: "message-queue-pair" }>> = {}): VDevice => ({
  kind: "message-queue-pair",
  name: "mq",
  label: 0,
  peer: "default",
  messageSize: 240,
  queueDepth: 8,
  interrupts: [40, 41],
  ...over,
});

/** Configs breaking one rule each, and what the sentence must name. */
const INVALID: [string, VmConfig, string | RegExp][] = [
  [
    "zero vCPUs",
    withConfig({ vcpus: { count: 0, affinity: "proxy" } }),
    "/gunyah-vm-config/vcpus/count",
  ],
  [
    "65 vCPUs",
    withConfig({ vcpus: { count: 65, affinity: "proxy" } }),
    "/gunyah-vm-config/vcpus/count",
  ],
  [
    "an unknown affinity",
    withConfig({ vcpus: { count: 1, affinity: "loose" as "proxy" } }),
    "/gunyah-vm-config/vcpus/affinity",
  ],
  [
    "an unaligned memory base",
    withConfig({ memory: { base: 0x800n, size: 0x1000n } }),
    "base-address 0x800",
  ],
  [
    "an unaligned memory size",
    withConfig({ memory: { base: 0n, size: 0x1800n } }),
    "size-min 0x1800",
  ],
  [
    "an empty memory range",
    withConfig({ memory: { base: 0n, size: 0n } }),
    "/gunyah-vm-config/memory/size-min",
  ],
  [
    "memory past 2^64",
    withConfig({ memory: { base: 0xffff_ffff_ffff_f000n, size: 0x2000n } }),
    /memory ends past the 64-bit/,
  ],
  [
    "a duplicate doorbell label",
    withConfig({ vdevices: [DB(), DB({ name: "db2", interrupt: 33 })] }),
    "db2/label 0",
  ],
  ["message-size 0", withConfig({ vdevices: [MQ({ messageSize: 0 })] }), "mq/message-size"],
  ["message-size 241", withConfig({ vdevices: [MQ({ messageSize: 241 })] }), "mq/message-size"],
  ["queue-depth 0", withConfig({ vdevices: [MQ({ queueDepth: 0 })] }), "mq/queue-depth"],
  ["queue-depth 257", withConfig({ vdevices: [MQ({ queueDepth: 257 })] }), "mq/queue-depth"],
  ["GSI 1024 on a doorbell", withConfig({ vdevices: [DB({ interrupt: 1024 })] }), "db/interrupts"],
  [
    "GSI 1024 on a queue pair",
    withConfig({ vdevices: [MQ({ interrupts: [1, 1024] })] }),
    "mq/interrupts (rx)",
  ],
  [
    "one GSI used twice",
    withConfig({ vdevices: [DB(), MQ({ interrupts: [32, 33] })] }),
    /uses GSI 32, which/,
  ],
  ["peer 0xffff", withConfig({ vdevices: [DB({ peer: 0xffff })] }), "db/peer"],
  [
    "65 vdevices",
    withConfig({
      vdevices: Array.from({ length: 65 }, (_, i) => ({
        kind: "doorbell-source" as const,
        name: `s${i}`,
        label: i,
        peer: "default" as const,
      })),
    }),
    "65 devices",
  ],
];

for (const [what, config, says] of INVALID) {
  test(`encodeVmConfig() and decodeVmConfig() both refuse ${what}`, () => {
    assertConfigError(() => encodeVmConfig(config), says);
    // Build the tree for the bad config by hand so the decoder sees exactly that config.
    const tree = vmConfigToFdt(SMALL);
    const vm = tree.children[0]!;
    const mem = child(vm, "memory");
    mem.props.set(
      "base-address",
      propU32(Number(config.memory.base >> 32n), Number(config.memory.base & 0xffff_ffffn)),
    );
    mem.props.set(
      "size-min",
      propU32(Number(config.memory.size >> 32n), Number(config.memory.size & 0xffff_ffffn)),
    );
    child(vm, "vcpus").props.set("count", propU32(config.vcpus.count));
    child(vm, "vcpus").props.set("affinity", propString(config.vcpus.affinity));
    const vd = child(vm, "vdevices");
    vd.children = config.vdevices.map((d) => {
      const n = fdtNode(d.name, [
        ["vdevice-type", propString(d.kind)],
        ["label", propU32(d.label)],
      ]);
      if (d.peer === "default") n.props.set("peer-default", propEmpty());
      else n.props.set("peer", propU32(d.peer));
      if (d.kind === "doorbell") n.props.set("interrupts", propU32(d.interrupt));
      if (d.kind === "message-queue-pair") {
        n.props.set("interrupts", propU32(...d.interrupts));
        n.props.set("message-size", propU32(d.messageSize));
        n.props.set("queue-depth", propU32(d.queueDepth));
      }
      return n;
    });
    assertConfigError(() => decodeVmConfig(encodeFdt(tree)), says);
  });
}

test("labels need only be unique within one vdevice kind", () => {
  const c = withConfig({
    vdevices: [DB(), MQ(), { kind: "doorbell-source", name: "src", label: 0, peer: "default" }],
  });
  assert.deepEqual(decodeVmConfig(encodeVmConfig(c)), c);
});

test("encodeVmConfig() refuses bad names, duplicate names and malformed JSON-shaped input", () => {
  assertConfigError(
    () => encodeVmConfig(withConfig({ vdevices: [DB({ name: "9lives" })] })),
    '"9lives"',
  );
  assertConfigError(() => encodeVmConfig(withConfig({ vdevices: [DB({ name: "a/b" })] })), '"a/b"');
  assertConfigError(
    () => encodeVmConfig(withConfig({ vdevices: [DB(), DB({ label: 1, interrupt: 33 })] })),
    "/gunyah-vm-config/vdevices/db appears twice",
  );
  assertConfigError(
    () => encodeVmConfig(withConfig({ nodeName: "vm-config" as "qcom,vm-config" })),
    '"vm-config"',
  );
  assertConfigError(() => encodeVmConfig(withConfig({ imageName: "a\0b" })), "image-name");
  assertConfigError(() => encodeVmConfig(withConfig({ memory: undefined as never })), "/memory");
  assertConfigError(
    () =>
      encodeVmConfig(withConfig({ vdevices: [{ ...DB(), kind: "uart" } as unknown as VDevice] })),
    'vdevice-type "uart"',
  );
  assertConfigError(
    () => encodeVmConfig(withConfig({ vdevices: [DB({ label: -1 })] })),
    "db/label -1",
  );
  assertConfigError(
    () =>
      encodeVmConfig(
        withConfig({ vdevices: [MQ({ interrupts: [1] as unknown as [number, number] })] }),
      ),
    "mq/interrupts must be two",
  );
});

/** Trees that only the decoder can meet: each breaks the schema once. */
const BAD_TREES: [string, (vm: FdtNode, root: FdtNode) => void, string | RegExp][] = [
  [
    "no vm-config node",
    (vm) => {
      vm.name = "vm-config";
    },
    "no /gunyah-vm-config",
  ],
  [
    "two vm-config nodes",
    (_vm, root) => root.children.push(fdtNode("qcom,vm-config")),
    /2 vm-config nodes \(\/gunyah-vm-config, \/qcom,vm-config\)/,
  ],
  [
    "no memory node",
    (vm) => vm.children.splice(0, 1),
    "/gunyah-vm-config lacks the required node memory",
  ],
  ["no vcpus node", (vm) => vm.children.splice(1, 1), "lacks the required node vcpus"],
  [
    "no base-address",
    (vm) => child(vm, "memory").props.delete("base-address"),
    "memory lacks the required property base-address",
  ],
  [
    "no size-min",
    (vm) => child(vm, "memory").props.delete("size-min"),
    "memory lacks the required property size-min",
  ],
  [
    "#address-cells = <3>",
    (vm) => child(vm, "memory").props.set("#address-cells", propU32(3)),
    "#address-cells is 3",
  ],
  [
    "a one-cell base with two address cells",
    (vm) => child(vm, "memory").props.set("base-address", propU32(0)),
    "memory/base-address must be two",
  ],
  [
    "no vcpu count",
    (vm) => child(vm, "vcpus").props.delete("count"),
    "vcpus lacks the required property count",
  ],
  [
    "no affinity",
    (vm) => child(vm, "vcpus").props.delete("affinity"),
    "vcpus lacks the required property affinity",
  ],
  [
    "a numeric affinity",
    (vm) => child(vm, "vcpus").props.set("affinity", propU32(1)),
    "vcpus/affinity must be NUL-terminated",
  ],
  ["a non-string image-name", (vm) => vm.props.set("image-name", propU32(7)), "image-name"],
  [
    "a numeric generate",
    (vm) => child(vm, "vdevices").props.set("generate", propU32(1)),
    "vdevices/generate",
  ],
  [
    "no vdevice-type",
    (vm) => child(vm, "vdevices", "db").props.delete("vdevice-type"),
    "db lacks the required property vdevice-type",
  ],
  [
    "an unknown vdevice-type",
    (vm) => child(vm, "vdevices", "db").props.set("vdevice-type", propString("shm")),
    'vdevice-type "shm" is not',
  ],
  [
    "no label",
    (vm) => child(vm, "vdevices", "db").props.delete("label"),
    "db lacks the required property label",
  ],
  [
    "a two-cell label",
    (vm) => child(vm, "vdevices", "db").props.set("label", propU32(0, 1)),
    "db/label must be one",
  ],
  ["no peer", (vm) => child(vm, "vdevices", "db").props.delete("peer-default"), "db lacks a peer"],
  [
    "both peer forms",
    (vm) => child(vm, "vdevices", "db").props.set("peer", propU32(3)),
    "both peer-default and peer",
  ],
  [
    "a peer-default with a value",
    (vm) => child(vm, "vdevices", "db").props.set("peer-default", propU32(3)),
    "db/peer-default must be empty",
  ],
  [
    "a doorbell without interrupts",
    (vm) => child(vm, "vdevices", "db").props.delete("interrupts"),
    "db lacks the required property interrupts",
  ],
  [
    "a doorbell with two interrupts",
    (vm) => child(vm, "vdevices", "db").props.set("interrupts", propU32(1, 2)),
    "db/interrupts must be one GSI",
  ],
  [
    "a vdevice with an invalid name",
    (vm) => {
      child(vm, "vdevices", "db").name = "_db";
    },
    '"_db" is not a valid node name',
  ],
  [
    "a doorbell-source with interrupts",
    (vm) => child(vm, "vdevices", "db").props.set("vdevice-type", propString("doorbell-source")),
    "not allowed on a doorbell-source",
  ],
  [
    "a queue pair without message-size",
    (vm) => {
      const db = child(vm, "vdevices", "db");
      db.props.set("vdevice-type", propString("message-queue-pair"));
      db.props.set("interrupts", propU32(1, 2));
      db.props.set("queue-depth", propU32(8));
    },
    "db lacks the required property message-size",
  ],
  [
    "a queue pair with one interrupt",
    (vm) => {
      const db = child(vm, "vdevices", "db");
      db.props.set("vdevice-type", propString("message-queue-pair"));
      db.props.set("message-size", propU32(8));
      db.props.set("queue-depth", propU32(8));
    },
    "db/interrupts must be two GSI cells",
  ],
];

for (const [what, edit, says] of BAD_TREES) {
  test(`decodeVmConfig() refuses ${what} with FDT_CONFIG naming the place`, () => {
    assertConfigError(() => decodeVmConfig(editedDtb(edit)), says);
  });
}

test("decodeVmConfig() refuses more than 64 vdevice nodes before reading them", () => {
  const dtb = editedDtb((vm) => {
    child(vm, "vdevices").children = Array.from({ length: 65 }, (_, i) => fdtNode(`x${i}`));
  });
  assertConfigError(() => decodeVmConfig(dtb), "/gunyah-vm-config/vdevices has 65 devices");
});

// ---------------------------------------------------------------------------------------------
// Properties

const peer = fc.oneof(fc.constant("default" as const), fc.integer({ min: 0, max: 0xfffd }));
const label = fc.nat({ max: 0xffffffff });
const vname = fc.stringMatching(/^[a-z][a-z0-9,._+-]{0,10}(@[0-9a-f]{1,4})?$/);
const doorbell = fc
  .record({ name: vname, label, peer, interrupt: fc.nat({ max: 1023 }) })
  .map((r): VDevice => ({ kind: "doorbell", ...r }));
const doorbellSource = fc
  .record({ name: vname, label, peer })
  .map((r): VDevice => ({ kind: "doorbell-source", ...r }));
const queuePair = fc
  .record({
    name: vname,
    label,
    peer,
    messageSize: fc.integer({ min: 1, max: 240 }),
    queueDepth: fc.integer({ min: 1, max: 256 }),
    interrupts: fc.tuple(fc.nat({ max: 1023 }), fc.nat({ max: 1023 })),
  })
  // Spreading also gives plain prototypes, which deepEqual compares.
  .map(
    (r): VDevice => ({
      kind: "message-queue-pair",
      ...r,
      interrupts: [r.interrupts[0], r.interrupts[1]],
    }),
  );
const vdevice = fc.oneof(doorbell, doorbellSource, queuePair);

function gsisOf(d: VDevice): number[] {
  switch (d.kind) {
    case "doorbell":
      return [d.interrupt];
    case "doorbell-source":
      return [];
    case "message-queue-pair":
      return [...d.interrupts];
  }
}

/** Drops devices that would repeat a name, a (kind, label) pair or a GSI. */
function uniqueDevices(list: VDevice[]): VDevice[] {
  const names = new Set<string>();
  const labels = new Set<string>();
  const gsis = new Set<number>();
  return list.filter((d) => {
    const g = gsisOf(d);
    if (
      names.has(d.name) ||
      labels.has(`${d.kind}:${d.label}`) ||
      g.some((x) => gsis.has(x)) ||
      new Set(g).size !== g.length
    ) {
      return false;
    }
    names.add(d.name);
    labels.add(`${d.kind}:${d.label}`);
    for (const x of g) gsis.add(x);
    return true;
  });
}

const minBig = (a: bigint, b: bigint): bigint => (a < b ? a : b);
const vmConfig: fc.Arbitrary<VmConfig> = fc
  .record(
    {
      nodeName: fc.constantFrom("gunyah-vm-config" as const, "qcom,vm-config" as const),
      imageName: fc.string({ maxLength: 16 }).filter((s) => !s.includes("\0")),
      basePage: fc.bigInt({ min: 0n, max: (1n << 52n) - 1n }),
      sizePages: fc.bigInt({ min: 1n, max: 1n << 20n }),
      count: fc.integer({ min: 1, max: 64 }),
      affinity: fc.constantFrom("proxy" as const, "static" as const, "sticky" as const),
      vdevices: fc.array(vdevice, { maxLength: 12 }),
    },
    { requiredKeys: ["nodeName", "basePage", "sizePages", "count", "affinity", "vdevices"] },
  )
  .map((r) => {
    const c: VmConfig = {
      nodeName: r.nodeName,
      // Keep the range inside 64 bits: base page + page count never passes 2^52.
      memory: {
        base: minBig(r.basePage, (1n << 52n) - r.sizePages) * 0x1000n,
        size: r.sizePages * 0x1000n,
      },
      vcpus: { count: r.count, affinity: r.affinity },
      vdevices: uniqueDevices(r.vdevices),
    };
    if (r.imageName !== undefined) c.imageName = r.imageName;
    return c;
  });

test("decodeVmConfig(encodeVmConfig(c)) is c, for random valid configs", () => {
  fc.assert(
    fc.property(vmConfig, (c) => {
      assert.deepEqual(decodeVmConfig(encodeVmConfig(c)), c);
      assert.deepEqual(vmConfigFromFdt(decodeFdt(encodeVmConfig(c))), c);
    }),
    { numRuns: 200 },
  );
});

const CODED = new Set(["FDT_MALFORMED", "FDT_CONFIG"]);

test("random bytes only ever yield FDT_MALFORMED or FDT_CONFIG", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      const code = codeOf(() => decodeVmConfig(b));
      assert.ok(code !== undefined && CODED.has(code), `decoded or threw ${String(code)}`);
    }),
    { numRuns: 300 },
  );
});

test("every truncation of a valid config DTB fails with FDT_MALFORMED", () => {
  const dtb = encodeVmConfig(FULL);
  for (let n = 0; n < dtb.length; n++)
    assert.equal(
      codeOf(() => decodeVmConfig(dtb.subarray(0, n))),
      "FDT_MALFORMED",
    );
});

test("bit flips in valid config DTBs decode or yield FDT_MALFORMED / FDT_CONFIG only", () => {
  fc.assert(
    fc.property(
      vmConfig,
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 7 })), { minLength: 1, maxLength: 3 }),
      (c, flips) => {
        const dtb = encodeVmConfig(c);
        for (const [pos, bit] of flips) dtb[pos % dtb.length]! ^= 1 << bit;
        const code = codeOf(() => decodeVmConfig(dtb));
        assert.ok(code === undefined || CODED.has(code), `threw ${code}`);
      },
    ),
    { numRuns: 300 },
  );
});
