/**
 * Test-only helpers for the RM (never imported by production code): a fake physical memory, and
 * a harness that sends real encoded requests through fragmentation and reassembly into a real
 * ResourceManager and decodes what comes back.
 */
import assert from "node:assert/strict";
import { msgName, NotificationId, RequestId } from "../../protocol/catalogue.js";
import { TransType, Vmid, VmStatus } from "../../protocol/enums.js";
import { CLIENT_MAX_REQUEST, MsgType } from "../../protocol/header.js";
import { fragment, type RmMessage, reassembleAll } from "../../protocol/message.js";
import { CALL_LAYOUTS, NOTIFICATION_LAYOUTS } from "../../protocol/payloads.js";
import { decodeLayout, encodeLayout } from "../../protocol/struct.js";
import { encodeVmConfig, type VmConfig } from "../../protocol/vm-config.js";
import { RecordingHypervisor } from "../recording-hypervisor.js";
import { ResourceManager } from "../resource-manager.js";
import type { Outbound, PhysicalMemoryPort } from "../types.js";

/** Byte regions per owner VM; reads outside them are unbacked. */
export class FakeMemory implements PhysicalMemoryPort {
  private readonly regions = new Map<number, { base: bigint; bytes: Uint8Array }[]>();

  write(owner: number, base: bigint, bytes: Uint8Array): void {
    let list = this.regions.get(owner);
    if (!list) {
      list = [];
      this.regions.set(owner, list);
    }
    list.push({ base, bytes: bytes.slice() });
  }

  read(owner: number, addr: bigint, length: number): Uint8Array | undefined {
    // Later writes shadow earlier ones, like writing over the same memory.
    for (const r of [...(this.regions.get(owner) ?? [])].reverse()) {
      if (addr >= r.base && addr + BigInt(length) <= r.base + BigInt(r.bytes.length)) {
        const at = Number(addr - r.base);
        return r.bytes.slice(at, at + length);
      }
    }
    return undefined;
  }
}

export interface DecodedNote {
  readonly to: number;
  readonly seq: number;
  readonly name: string;
  readonly msgId: number;
  readonly body: Record<string, unknown>;
}

export interface CallOutcome {
  readonly error: number;
  /** The reply's data, decoded with the call's reply layout (empty object for error replies). */
  readonly reply: Record<string, unknown>;
  /** Notifications sent while handling the call, in order. */
  readonly notes: DecodedNote[];
  /** Everything handle() returned, raw. */
  readonly out: Outbound[];
}

/** Sends `m` the way a Linux-style client does and reassembles it the way the RM does. */
function overTheWire(m: RmMessage, maxBody: number, rules: "rm" | "linux"): RmMessage {
  const msgs = reassembleAll(fragment(m, maxBody), rules);
  assert.equal(msgs.length, 1);
  return msgs[0]!;
}

export function decodeNote(o: Outbound): DecodedNote {
  const m = overTheWire(o.message, 14616, "linux");
  assert.equal(m.type, MsgType.NOTIFICATION, "expected a notification");
  const layout = NOTIFICATION_LAYOUTS.get(m.msgId);
  assert.ok(layout, `notification 0x${m.msgId.toString(16)} has a layout`);
  return {
    to: o.to,
    seq: m.seq,
    msgId: m.msgId,
    name: msgName(m.msgId, true),
    body: decodeLayout(layout, m.payload) as Record<string, unknown>,
  };
}

export const DTB_BASE = 0x4000_0000n;
export const DTB_PARCEL_SIZE = 0x4000n;

export function basicConfig(over: Partial<VmConfig> = {}): VmConfig {
  return {
    nodeName: "gunyah-vm-config",
    imageName: "test-guest",
    memory: { base: 0x4000_0000n, size: 0x100_0000n },
    vcpus: { count: 2, affinity: "proxy" },
    vdevices: [
      { kind: "doorbell", name: "bell", label: 1, peer: "default", interrupt: 40 },
      {
        kind: "message-queue-pair",
        name: "msgq",
        label: 2,
        peer: "default",
        messageSize: 240,
        queueDepth: 8,
        interrupts: [41, 42],
      },
    ],
    ...over,
  };
}

export class Harness {
  readonly hv = new RecordingHypervisor();
  readonly memory = new FakeMemory();
  readonly rm: ResourceManager;
  private seq = 0;

  constructor(opts: { secondaryVmids?: readonly number[]; link?: readonly number[] } = {}) {
    this.rm = new ResourceManager({
      hypervisor: this.hv,
      memory: this.memory,
      ...(opts.secondaryVmids ? { secondaryVmids: opts.secondaryVmids } : {}),
    });
    for (const v of opts.link ?? [Vmid.HLOS]) this.rm.connect(v);
  }

  /** Sends a request with raw payload bytes; checks the one-reply rule and decodes. */
  raw(from: number, msgId: number, payload: Uint8Array): CallOutcome {
    const seq = this.seq;
    this.seq = (this.seq + 1) & 0xffff;
    const req = overTheWire(
      { type: MsgType.REQUEST, seq, msgId, payload },
      CLIENT_MAX_REQUEST,
      "rm",
    );
    const out = this.rm.handle(from, req);
    assert.ok(out.length >= 1, "every request gets a reply");
    const last = out[out.length - 1]!;
    assert.equal(last.to, from, "the reply goes to the caller");
    const reply = overTheWire(last.message, 14616, "linux");
    assert.equal(reply.type, MsgType.REPLY, "the reply comes last");
    assert.equal(reply.seq, seq);
    assert.equal(reply.msgId, msgId);
    const notes = out.slice(0, -1).map(decodeNote);
    if (reply.type !== MsgType.REPLY) throw new Error("unreachable");
    let body: Record<string, unknown> = {};
    if (reply.error === 0) {
      const l = CALL_LAYOUTS.get(msgId);
      assert.ok(l);
      body = decodeLayout(l.reply, reply.payload) as Record<string, unknown>;
    } else {
      assert.equal(reply.payload.length, 0, "error replies carry no data");
    }
    return { error: reply.error, reply: body, notes, out };
  }

  /** Sends a request encoded from its payload layout. */
  call(from: number, msgId: number, value: object = {}): CallOutcome {
    const l = CALL_LAYOUTS.get(msgId);
    assert.ok(l, `request 0x${msgId.toString(16)} has a layout`);
    return this.raw(from, msgId, encodeLayout(l.request, value));
  }

  ok(from: number, msgId: number, value: object = {}): CallOutcome {
    const r = this.call(from, msgId, value);
    assert.equal(r.error, 0, `${msgName(msgId)} from ${from} failed with ${r.error}`);
    return r;
  }

  /** Runs every queued reset stage; returns the notifications they sent. */
  drain(): DecodedNote[] {
    const notes: DecodedNote[] = [];
    let guard = 0;
    while (this.rm.hasDeferredWork) {
      notes.push(...this.rm.runDeferred().map(decodeNote));
      assert.ok(++guard < 10_000, "deferred work terminates");
    }
    return notes;
  }

  alloc(vmid = 0): number {
    const r = this.ok(Vmid.HLOS, RequestId.VM_ALLOC_VMID, { vmid });
    return vmid === 0 ? (r.reply.vmid as number) : vmid;
  }

  /** Writes the DTB into host memory and lends the region to `vmid`; returns the handle. */
  lendDtb(
    vmid: number,
    config: VmConfig = basicConfig(),
    base = DTB_BASE,
    size = DTB_PARCEL_SIZE,
  ): number {
    const dtb = encodeVmConfig(config);
    const region = new Uint8Array(Number(size));
    region.set(dtb);
    this.memory.write(Vmid.HLOS, base, region);
    const r = this.ok(Vmid.HLOS, RequestId.MEM_LEND, lendReq(vmid, [{ base, size }]));
    return r.reply.mem_handle as number;
  }

  configImage(vmid: number, handle: number, over: Record<string, unknown> = {}): CallOutcome {
    return this.call(Vmid.HLOS, RequestId.VM_CONFIG_IMAGE, {
      vmid,
      auth_mech: 0,
      mem_handle: handle,
      image_offset: 0n,
      image_size: 0n,
      dtb_offset: 0n,
      dtb_size: DTB_PARCEL_SIZE,
      ...over,
    });
  }

  /** alloc → lend DTB → config image → address layout → init: a READY VM. */
  ready(config: VmConfig = basicConfig()): { vmid: number; handle: number } {
    const vmid = this.alloc();
    const handle = this.lendDtb(vmid, config);
    assert.equal(this.configImage(vmid, handle).error, 0);
    this.ok(Vmid.HLOS, RequestId.VM_SET_ADDRESS_LAYOUT, {
      vmid,
      range_id: 0,
      base: DTB_BASE,
      size: DTB_PARCEL_SIZE,
    });
    this.ok(Vmid.HLOS, RequestId.VM_INIT, { vmid });
    return { vmid, handle };
  }

  running(config: VmConfig = basicConfig()): { vmid: number; handle: number } {
    const r = this.ready(config);
    this.ok(Vmid.HLOS, RequestId.VM_START, { vmid: r.vmid });
    return r;
  }

  /** Finish loading (INIT/AUTH) → forced stop (if running) → reset (unless LOAD/RESET) → dealloc. */
  teardown(vmid: number): void {
    let st = this.ok(Vmid.HLOS, RequestId.VM_GET_STATE, { vmid }).reply.vm_status;
    // INIT and AUTH cannot be reset: the VM must first succeed or fail to load.
    if (st === VmStatus.AUTH) this.call(Vmid.HLOS, RequestId.VM_AUTH_IMAGE, { vmid, params: [] });
    st = this.ok(Vmid.HLOS, RequestId.VM_GET_STATE, { vmid }).reply.vm_status;
    if (st === VmStatus.INIT) this.call(Vmid.HLOS, RequestId.VM_INIT, { vmid });
    st = this.ok(Vmid.HLOS, RequestId.VM_GET_STATE, { vmid }).reply.vm_status;
    if (st === VmStatus.RUNNING)
      this.ok(Vmid.HLOS, RequestId.VM_STOP, { vmid, flags: 1, stop_reason: 3 });
    if (st !== VmStatus.LOAD && st !== VmStatus.RESET) {
      this.ok(Vmid.HLOS, RequestId.VM_RESET, { vmid });
      this.drain();
    }
    this.ok(Vmid.HLOS, RequestId.VM_DEALLOC_VMID, { vmid });
  }
}

export function lendReq(
  target: number,
  sgl: { base: bigint; size: bigint }[],
  over: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    mem_type: 0,
    flags: 0,
    label: 0,
    acl: [{ vmid: target, rights: 7 }],
    sgl,
    attrs: [],
    ...over,
  };
}

export function names(notes: readonly DecodedNote[]): string[] {
  return notes.map((n) => `${n.name}->${n.to}`);
}

export { NotificationId, RequestId, TransType };
