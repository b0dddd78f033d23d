import { TsvisorError } from "../core/errors.js";
import {
  decodeFdt,
  encodeFdt,
  type FdtNode,
  fdtNode,
  findChild,
  propEmpty,
  propString,
  propU32,
  propU64,
  readCellsAsU64,
  readEmpty,
  readString,
  readU32,
  readU32Cells,
} from "./fdt.js";

/**
 * The vm-config devicetree: what the VMM writes into the DTB parcel and the RM parses at
 * VM_INIT to learn the VM's memory, vCPUs and virtual devices. The schema is in
 * docs/vm-config.md; property names follow Gunyah's vm-config where Gunyah has one.
 */

/** "default" = the VM's owner (the `peer-default` flag); a number is an explicit peer VMID. */
export type PeerRef = "default" | number;

export type VDevice =
  /** The guest is woken through `interrupt`; the peer gets a BELL_TX to ring it. */
  | { kind: "doorbell"; name: string; label: number; peer: PeerRef; interrupt: number }
  /** The guest rings the peer; the peer gets a BELL_RX. */
  | { kind: "doorbell-source"; name: string; label: number; peer: PeerRef }
  /** Two queues between guest and peer; `interrupts` are the guest's [tx, rx] lines. */
  | {
      kind: "message-queue-pair";
      name: string;
      label: number;
      peer: PeerRef;
      messageSize: number;
      queueDepth: number;
      interrupts: readonly [number, number];
    };

export type VDeviceKind = VDevice["kind"];
export type VcpuAffinity = "proxy" | "static" | "sticky";
export type VmConfigNodeName = "gunyah-vm-config" | "qcom,vm-config";

export interface VmConfig {
  nodeName: VmConfigNodeName;
  imageName?: string;
  memory: { base: bigint; size: bigint };
  vcpus: { count: number; affinity: VcpuAffinity };
  vdevices: readonly VDevice[];
}

export const VM_CONFIG_NODE_NAMES: readonly VmConfigNodeName[] = [
  "gunyah-vm-config",
  "qcom,vm-config",
];
export const VDEVICE_KINDS: readonly VDeviceKind[] = [
  "doorbell",
  "doorbell-source",
  "message-queue-pair",
];
export const VCPU_AFFINITIES: readonly VcpuAffinity[] = ["proxy", "static", "sticky"];

export const VM_CONFIG_LIMITS = {
  maxVcpus: 64,
  maxVdevices: 64,
  pageSize: 0x1000n,
  /** tsvisor's queues carry RM-sized messages (240 bytes); Gunyah's hypervisor allows 1024. */
  maxMessageSize: 240,
  maxQueueDepth: 256,
  /** x86 GSIs tsvisor accepts (one cell per interrupt, unlike the three-cell GIC specifier). */
  maxGsi: 1023,
  /** Numeric peers are real VMIDs; 0xfffe (ANY) and 0xffff (PEER_DEFAULT) are not. */
  maxPeerVmid: 0xfffd,
} as const;

/** The path the RM's parser matches (rm-protocol.md §5.4). */
export const VM_CONFIG_PATH_RULE = /^\/(qcom,|gunyah-)vm-config$/;

const U64_END = 1n << 64n;

function bad(sentence: string): TsvisorError {
  return new TsvisorError("FDT_CONFIG", sentence);
}

// ---------------------------------------------------------------------------------------------
// Validation shared by encoder and decoder

/**
 * A vdevice name becomes a node name, so it follows the devicetree node-name rule: a letter,
 * then letters, digits and , . _ + - (at most 31 characters), optionally @unit-address.
 */
const VDEVICE_NAME = /^[A-Za-z][A-Za-z0-9,._+-]{0,30}(@[A-Za-z0-9,._+-]{1,31})?$/;

function isObject(v: unknown): boolean {
  return typeof v === "object" && v !== null;
}

function isU32(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function checkRange(v: unknown, min: number, max: number, what: string): void {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw bad(`${what} is ${String(v)}; it must be an integer from ${min} to ${max}`);
  }
}

/**
 * Checks every schema rule and throws FDT_CONFIG with a sentence naming the offending node or
 * property. Also checks runtime types, since configs can arrive as parsed JSON.
 */
export function validateVmConfig(c: VmConfig): void {
  if (!isObject(c)) throw bad("the vm-config must be an object");
  if (!VM_CONFIG_NODE_NAMES.includes(c.nodeName)) {
    throw bad(
      `the vm-config node name "${String(c.nodeName)}" is not gunyah-vm-config or qcom,vm-config`,
    );
  }
  const top = `/${c.nodeName}`;
  if (c.imageName !== undefined) {
    if (typeof c.imageName !== "string") throw bad(`${top}/image-name must be a string`);
    if (c.imageName.includes("\0")) throw bad(`${top}/image-name contains a NUL character`);
  }

  if (!isObject(c.memory)) throw bad(`${top}/memory must be an object with base and size`);
  if (!isObject(c.vcpus)) throw bad(`${top}/vcpus must be an object with count and affinity`);
  const { base, size } = c.memory;
  if (typeof base !== "bigint" || base < 0n || base >= U64_END) {
    throw bad(`${top}/memory/base-address ${String(base)} is not a u64`);
  }
  if (typeof size !== "bigint" || size <= 0n || size >= U64_END) {
    throw bad(`${top}/memory/size-min ${String(size)} must be a u64 greater than zero`);
  }
  const page = VM_CONFIG_LIMITS.pageSize;
  if (base % page !== 0n)
    throw bad(`${top}/memory/base-address 0x${base.toString(16)} is not 4 KiB aligned`);
  if (size % page !== 0n)
    throw bad(`${top}/memory/size-min 0x${size.toString(16)} is not a multiple of 4 KiB`);
  if (base + size > U64_END) {
    throw bad(
      `${top}/memory ends past the 64-bit address space (base 0x${base.toString(16)} + size 0x${size.toString(16)})`,
    );
  }

  checkRange(c.vcpus.count, 1, VM_CONFIG_LIMITS.maxVcpus, `${top}/vcpus/count`);
  if (!VCPU_AFFINITIES.includes(c.vcpus.affinity)) {
    throw bad(`${top}/vcpus/affinity "${String(c.vcpus.affinity)}" is not proxy, static or sticky`);
  }

  if (!Array.isArray(c.vdevices)) throw bad(`${top}/vdevices must be a list`);
  if (c.vdevices.length > VM_CONFIG_LIMITS.maxVdevices) {
    throw bad(
      `${top}/vdevices has ${c.vdevices.length} devices; at most ${VM_CONFIG_LIMITS.maxVdevices} are allowed`,
    );
  }
  const names = new Set<string>();
  const labels = new Map<VDeviceKind, Map<number, string>>();
  const gsis = new Map<number, string>();
  const claimGsi = (gsi: number, what: string): void => {
    checkRange(gsi, 0, VM_CONFIG_LIMITS.maxGsi, what);
    const prior = gsis.get(gsi);
    // A guest interrupt line is bound to one source; a second binding would be refused later by
    // the hypervisor, so it is refused here where the message can name both users.
    if (prior !== undefined) throw bad(`${what} uses GSI ${gsi}, which ${prior} already uses`);
    gsis.set(gsi, what);
  };
  for (const d of c.vdevices) {
    if (!isObject(d)) throw bad(`${top}/vdevices holds an entry that is not an object`);
    if (typeof d.name !== "string" || !VDEVICE_NAME.test(d.name)) {
      throw bad(`${top}/vdevices: "${String(d.name)}" is not a valid node name for a vdevice`);
    }
    const at = `${top}/vdevices/${d.name}`;
    if (names.has(d.name)) throw bad(`${at} appears twice`);
    names.add(d.name);
    if (!VDEVICE_KINDS.includes(d.kind))
      throw bad(`${at}/vdevice-type "${String(d.kind)}" is not a known type`);
    if (!isU32(d.label)) throw bad(`${at}/label ${String(d.label)} is not a u32`);
    let byLabel = labels.get(d.kind);
    if (byLabel === undefined) {
      byLabel = new Map();
      labels.set(d.kind, byLabel);
    }
    const twin = byLabel.get(d.label);
    if (twin !== undefined)
      throw bad(`${at}/label ${d.label} is already used by ${d.kind} ${twin}`);
    byLabel.set(d.label, d.name);
    if (d.peer !== "default") checkRange(d.peer, 0, VM_CONFIG_LIMITS.maxPeerVmid, `${at}/peer`);
    switch (d.kind) {
      case "doorbell":
        claimGsi(d.interrupt, `${at}/interrupts`);
        break;
      case "doorbell-source":
        break;
      case "message-queue-pair":
        checkRange(d.messageSize, 1, VM_CONFIG_LIMITS.maxMessageSize, `${at}/message-size`);
        checkRange(d.queueDepth, 1, VM_CONFIG_LIMITS.maxQueueDepth, `${at}/queue-depth`);
        if (!Array.isArray(d.interrupts) || d.interrupts.length !== 2) {
          throw bad(`${at}/interrupts must be two GSIs (tx, rx)`);
        }
        claimGsi(d.interrupts[0], `${at}/interrupts (tx)`);
        claimGsi(d.interrupts[1], `${at}/interrupts (rx)`);
        break;
      default:
        throw bad(`${at}/vdevice-type is not a known type`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Encoder

function vdeviceNode(d: VDevice): FdtNode {
  const n = fdtNode(d.name, [
    ["vdevice-type", propString(d.kind)],
    ["label", propU32(d.label)],
  ]);
  if (d.peer === "default") n.props.set("peer-default", propEmpty());
  else n.props.set("peer", propU32(d.peer));
  switch (d.kind) {
    case "doorbell":
      n.props.set("interrupts", propU32(d.interrupt));
      break;
    case "doorbell-source":
      break;
    case "message-queue-pair":
      n.props.set("interrupts", propU32(d.interrupts[0], d.interrupts[1]));
      n.props.set("message-size", propU32(d.messageSize));
      n.props.set("queue-depth", propU32(d.queueDepth));
      break;
  }
  return n;
}

/** The config as a tree: `/ { <nodeName> { … } }`. */
export function vmConfigToFdt(c: VmConfig): FdtNode {
  validateVmConfig(c);
  const top = fdtNode(c.nodeName);
  if (c.imageName !== undefined) top.props.set("image-name", propString(c.imageName));
  top.children.push(
    fdtNode("memory", [
      ["#address-cells", propU32(2)],
      ["#size-cells", propU32(2)],
      ["base-address", propU64(c.memory.base)],
      ["size-min", propU64(c.memory.size)],
    ]),
    fdtNode("vcpus", [
      ["affinity", propString(c.vcpus.affinity)],
      ["count", propU32(c.vcpus.count)],
    ]),
    fdtNode("vdevices", [["generate", propString("/hypervisor")]], c.vdevices.map(vdeviceNode)),
  );
  return fdtNode("", [], [top]);
}

/** A whole DTB holding the config; throws FDT_CONFIG if the config breaks a schema rule. */
export function encodeVmConfig(c: VmConfig): Uint8Array {
  return encodeFdt(vmConfigToFdt(c));
}

// ---------------------------------------------------------------------------------------------
// Decoder

/** Property access that names the full path in every error. */
class At {
  constructor(
    readonly node: FdtNode,
    readonly path: string,
  ) {}

  what(prop: string): string {
    return `${this.path}/${prop}`;
  }
  has(prop: string): boolean {
    return this.node.props.has(prop);
  }
  raw(prop: string): Uint8Array {
    const v = this.node.props.get(prop);
    if (v === undefined) throw bad(`${this.path} lacks the required property ${prop}`);
    return v;
  }
  u32(prop: string): number {
    return readU32(this.raw(prop), this.what(prop));
  }
  cells(prop: string): number[] {
    return readU32Cells(this.raw(prop), this.what(prop));
  }
  string(prop: string): string {
    return readString(this.raw(prop), this.what(prop));
  }
  child(name: string): At {
    const c = findChild(this.node, name);
    if (c === undefined) throw bad(`${this.path} lacks the required node ${name}`);
    return new At(c, `${this.path}/${name}`);
  }
  /** #address-cells / #size-cells: 1 or 2, defaulting to 2 (64-bit) when absent. */
  cellCount(prop: string): 1 | 2 {
    if (!this.has(prop)) return 2;
    const n = this.u32(prop);
    if (n !== 1 && n !== 2) throw bad(`${this.what(prop)} is ${n}; only 1 or 2 is supported`);
    return n;
  }
}

function peerOf(d: At): PeerRef {
  const isDefault = d.has("peer-default");
  const explicit = d.has("peer");
  if (isDefault && explicit) throw bad(`${d.path} has both peer-default and peer; give one`);
  if (isDefault) {
    readEmpty(d.raw("peer-default"), d.what("peer-default"));
    return "default";
  }
  if (explicit) return d.u32("peer");
  throw bad(`${d.path} lacks a peer: give peer-default or peer = <vmid>`);
}

function decodeVdevice(d: At): VDevice {
  const type = d.string("vdevice-type");
  const name = d.node.name;
  const label = d.u32("label");
  const peer = peerOf(d);
  switch (type) {
    case "doorbell": {
      const irqs = d.cells("interrupts");
      if (irqs.length !== 1)
        throw bad(`${d.what("interrupts")} must be one GSI cell, not ${irqs.length}`);
      return { kind: "doorbell", name, label, peer, interrupt: irqs[0]! };
    }
    case "doorbell-source":
      // The guest only rings; it has no interrupt to receive (the RM refuses one too).
      if (d.has("interrupts"))
        throw bad(`${d.what("interrupts")} is not allowed on a doorbell-source`);
      return { kind: "doorbell-source", name, label, peer };
    case "message-queue-pair": {
      const irqs = d.cells("interrupts");
      if (irqs.length !== 2)
        throw bad(`${d.what("interrupts")} must be two GSI cells (tx, rx), not ${irqs.length}`);
      return {
        kind: "message-queue-pair",
        name,
        label,
        peer,
        messageSize: d.u32("message-size"),
        queueDepth: d.u32("queue-depth"),
        interrupts: [irqs[0]!, irqs[1]!],
      };
    }
    default:
      throw bad(
        `${d.what("vdevice-type")} "${type}" is not doorbell, doorbell-source or message-queue-pair`,
      );
  }
}

/** Reads a config out of a tree; other nodes under the root (a guest's full DT) are ignored. */
export function vmConfigFromFdt(root: FdtNode): VmConfig {
  const matches = root.children.filter((c) => VM_CONFIG_PATH_RULE.test(`/${c.name}`));
  if (matches.length === 0)
    throw bad("the devicetree has no /gunyah-vm-config or /qcom,vm-config node");
  if (matches.length > 1) {
    throw bad(
      `the devicetree has ${matches.length} vm-config nodes (${matches.map((m) => `/${m.name}`).join(", ")}); exactly one is allowed`,
    );
  }
  const node = matches[0]!;
  const top = new At(node, `/${node.name}`);

  const mem = top.child("memory");
  const addressCells = mem.cellCount("#address-cells");
  const sizeCells = mem.cellCount("#size-cells");
  const memory = {
    base: readCellsAsU64(mem.raw("base-address"), addressCells, mem.what("base-address")),
    size: readCellsAsU64(mem.raw("size-min"), sizeCells, mem.what("size-min")),
  };

  const cpus = top.child("vcpus");
  const vcpus = { count: cpus.u32("count"), affinity: cpus.string("affinity") as VcpuAffinity };

  const vdevices: VDevice[] = [];
  const vdevNode = findChild(node, "vdevices");
  if (vdevNode !== undefined) {
    const vd = new At(vdevNode, `${top.path}/vdevices`);
    if (vd.has("generate")) vd.string("generate");
    if (vdevNode.children.length > VM_CONFIG_LIMITS.maxVdevices) {
      throw bad(
        `${vd.path} has ${vdevNode.children.length} devices; at most ${VM_CONFIG_LIMITS.maxVdevices} are allowed`,
      );
    }
    for (const child of vdevNode.children)
      vdevices.push(decodeVdevice(new At(child, `${vd.path}/${child.name}`)));
  }

  const config: VmConfig = { nodeName: node.name as VmConfigNodeName, memory, vcpus, vdevices };
  if (top.has("image-name")) config.imageName = top.string("image-name");
  validateVmConfig(config);
  return config;
}

/**
 * Parses the DTB the RM finds in the parcel. `dtb` may be longer than the blob's totalsize
 * (the region includes room for an overlay). Throws FDT_MALFORMED for a broken blob and
 * FDT_CONFIG for a well-formed blob that breaks the schema.
 */
export function decodeVmConfig(dtb: Uint8Array): VmConfig {
  return vmConfigFromFdt(decodeFdt(dtb));
}
