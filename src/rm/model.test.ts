import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { NotificationId, RequestId } from "../protocol/catalogue.js";
import { Vmid, VmStatus } from "../protocol/enums.js";
import { MsgType } from "../protocol/header.js";
import { CALL_LAYOUTS } from "../protocol/payloads.js";
import { RmError } from "../protocol/rm-error.js";
import { encodeLayout } from "../protocol/struct.js";
import { encodeVmConfig } from "../protocol/vm-config.js";
import { basicConfig, decodeNote, Harness, lendReq } from "./testing/harness.js";
import type { Outbound } from "./types.js";

/*
 * Model-based property: random call sequences from HLOS (3) and two guest VMIDs against the
 * real RM, each call's reply error and notifications predicted by a small model written here
 * from the reference, plus the bookkeeping invariants after every step.
 */

const HLOS = Vmid.HLOS;
const GUESTS = [0x80, 0x81] as const;
const S = VmStatus;
const E = RmError;
const R = RequestId;

type Cmd =
  | { k: "alloc"; from: number }
  | { k: "dealloc"; from: number; v: number }
  | { k: "lend"; v: number }
  | { k: "config"; from: number; v: number; h: number | "last" }
  | { k: "init"; from: number; v: number }
  | { k: "start"; from: number; v: number }
  | { k: "stop"; from: number; v: number; force: boolean }
  | { k: "reset"; from: number; v: number }
  | { k: "deferred" }
  | { k: "exit"; v: number; code: number }
  | { k: "setStatus"; v: number }
  | { k: "getState"; from: number; v: number }
  | { k: "accept"; v: number; h: number | "last" }
  | { k: "release"; v: number; h: number | "last" }
  | { k: "reclaim"; h: number }
  | { k: "hvExit"; v: number }
  | { k: "link"; v: number; on: boolean }
  | { k: "garbage"; from: number; id: number; cut: number };

// Weighted towards HLOS driving VM 0x80, so that sequences get deep into the lifecycle.
const from = fc.constantFrom(HLOS, HLOS, HLOS, HLOS, HLOS, HLOS, 0x80, 0x81);
const target = fc.constantFrom(0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x81, 0x81, 0x82, HLOS);
const guest = fc.constantFrom(0x80, 0x80, 0x81);
/** "last" = the newest live parcel meant for the VM the command is about (resolved by the model). */
const handle: fc.Arbitrary<number | "last"> = fc.oneof(
  { weight: 3, arbitrary: fc.constant("last" as const) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 }) },
);

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant("alloc" as const), from }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("dealloc" as const), from, v: target }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("lend" as const), v: guest }) },
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant("config" as const), from, v: target, h: handle }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("init" as const), from, v: target }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("start" as const), from, v: target }) },
  {
    weight: 2,
    arbitrary: fc.record({ k: fc.constant("stop" as const), from, v: target, force: fc.boolean() }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("reset" as const), from, v: target }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("deferred" as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("exit" as const),
      v: guest,
      code: fc.constantFrom(0, 1, 2),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("setStatus" as const), v: guest }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("getState" as const), from, v: target }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("accept" as const), v: guest, h: handle }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("release" as const), v: guest, h: handle }) },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant("reclaim" as const), h: fc.integer({ min: 0, max: 3 }) }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("hvExit" as const), v: guest }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("link" as const),
      v: fc.constantFrom(HLOS, ...GUESTS),
      on: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant("garbage" as const),
      from,
      id: fc.constantFrom(
        R.VM_ALLOC_VMID,
        R.VM_START,
        R.VM_STOP,
        R.VM_CONFIG_IMAGE,
        R.VM_RESET,
        R.MEM_RECLAIM,
      ),
      cut: fc.constantFrom(-3, -1, 1, 2),
    }),
  },
);

/** Blocks that walk a VM through its whole life, mixed with single random calls. */
const bootBlock = guest.map((v): Cmd[] => [
  { k: "alloc", from: HLOS },
  { k: "lend", v },
  { k: "config", from: HLOS, v, h: "last" },
  { k: "init", from: HLOS, v },
  { k: "start", from: HLOS, v },
]);
const teardownBlock = guest.map((v): Cmd[] => [
  { k: "stop", from: HLOS, v, force: true },
  { k: "reset", from: HLOS, v },
  ...Array.from({ length: 6 }, (): Cmd => ({ k: "deferred" })),
  { k: "dealloc", from: HLOS, v },
]);
const program = fc
  .array(
    fc.oneof(
      { weight: 8, arbitrary: cmd.map((c) => [c]) },
      { weight: 1, arbitrary: bootBlock },
      { weight: 1, arbitrary: teardownBlock },
    ),
    { minLength: 5, maxLength: 40 },
  )
  .map((blocks) => blocks.flat());

// ---- the reference model

/** A handle after Model.resolve(); "last" cannot survive it. */
function num(h: number | "last"): number {
  return h === "last" ? 999 : h;
}

type PState = "pending" | "accepted" | "released";
interface MVm {
  state: number;
  image: number | undefined;
}
interface MParcel {
  readonly target: number;
  state: PState;
}
interface Expect {
  error: number;
  /** Predicted notifications as "NAME->to" (VM_STATUS with its state: "VM_STATUS(3)->3"). */
  notes: string[];
}

class Model {
  readonly vms = new Map<number, MVm>();
  readonly linked = new Set<number>([HLOS, ...GUESTS]);
  readonly parcels = new Map<number, MParcel>();
  readonly resetQueue: { v: number; stage: number }[] = [];
  private nextHandle = 0;

  private status(v: number, state: number, notes: string[]): void {
    this.vms.get(v)!.state = state;
    if (this.linked.has(HLOS)) notes.push(`VM_STATUS(${state})->${HLOS}`);
  }
  private exited(v: number, notes: string[]): void {
    // Entering EXITED releases every parcel meant for the VM (docs/rm.md).
    for (const p of this.parcels.values()) if (p.target === v) p.state = "released";
    this.status(v, S.EXITED, notes);
    if (this.linked.has(HLOS)) notes.push(`VM_EXITED->${HLOS}`);
  }

  /** Admission for owner-only lifecycle calls (every VM here is owned by HLOS). */
  private lifecycle(
    c: number,
    v: number,
    opts: { hlosOnly?: boolean; notHyp?: boolean; ownerError: number; states: number[] },
  ): number {
    if (opts.hlosOnly && c !== HLOS) return E.DENIED;
    // HLOS is a VM too, owned by the RM: nobody passes the owner check for it.
    if (v === HLOS) return opts.ownerError;
    const vm = this.vms.get(v);
    if (!vm) return E.VMID_INVALID;
    if (c !== HLOS) return opts.ownerError;
    if (!opts.states.includes(vm.state)) return E.VM_STATE;
    return E.OK;
  }

  private usable(h: number, v: number): boolean {
    const p = this.parcels.get(h);
    return p !== undefined && p.target === v && p.state !== "released";
  }

  /** Replaces a symbolic "last" handle by a concrete one (999, unknown, if there is none). */
  resolve(c: Cmd): Cmd {
    if (!("h" in c) || c.h !== "last" || !("v" in c)) return c;
    let h = -1;
    for (const [k, p] of this.parcels)
      if (p.target === c.v && p.state !== "released") h = Math.max(h, k);
    return { ...c, h: h < 0 ? 999 : h } as Cmd;
  }

  predict(c: Cmd): Expect {
    const notes: string[] = [];
    const ret = (error: number): Expect => ({ error, notes });
    switch (c.k) {
      case "alloc": {
        if (c.from !== HLOS) return ret(E.DENIED);
        let v = 0x80;
        while (this.vms.has(v)) v++;
        if (v > 0xbe) return ret(E.NORESOURCE);
        this.vms.set(v, { state: S.LOAD, image: undefined });
        return ret(E.OK);
      }
      case "dealloc": {
        const err = this.lifecycle(c.from, c.v, {
          ownerError: E.DENIED,
          states: [S.LOAD, S.RESET],
        });
        if (err !== E.OK) return ret(err);
        this.vms.delete(c.v);
        for (const p of this.parcels.values()) if (p.target === c.v) p.state = "released";
        return ret(E.OK);
      }
      case "lend": {
        if (!this.vms.has(c.v)) return ret(E.VMID_INVALID);
        if (this.parcels.size >= 64) return ret(E.DENIED);
        let h = this.nextHandle;
        while (this.parcels.has(h)) h++;
        this.nextHandle = h + 1;
        this.parcels.set(h, { target: c.v, state: "pending" });
        return ret(E.OK);
      }
      case "config": {
        const err = this.lifecycle(c.from, c.v, {
          hlosOnly: true,
          ownerError: E.DENIED,
          states: [S.LOAD, S.RESET],
        });
        if (err !== E.OK) return ret(err);
        if (!this.usable(num(c.h), c.v)) {
          this.status(c.v, S.INIT_FAILED, notes);
          return ret(E.MEM_INVALID);
        }
        this.vms.get(c.v)!.image = num(c.h);
        this.status(c.v, S.INIT, notes);
        return ret(E.OK);
      }
      case "init": {
        const err = this.lifecycle(c.from, c.v, {
          hlosOnly: true,
          ownerError: E.DENIED,
          states: [S.INIT],
        });
        if (err !== E.OK) return ret(err);
        const img = this.vms.get(c.v)!.image!;
        if (!this.usable(img, c.v)) {
          this.status(c.v, S.INIT_FAILED, notes);
          return ret(E.MEM_INVALID);
        }
        this.status(c.v, S.READY, notes);
        return ret(E.OK);
      }
      case "start": {
        const err = this.lifecycle(c.from, c.v, { ownerError: E.DENIED, states: [S.READY] });
        if (err !== E.OK) return ret(err);
        for (const p of this.parcels.values())
          if (p.target === c.v && p.state === "pending") p.state = "accepted";
        this.status(c.v, S.RUNNING, notes);
        return ret(E.OK);
      }
      case "stop": {
        const err = this.lifecycle(c.from, c.v, {
          ownerError: E.VMID_INVALID,
          states: [S.RUNNING],
        });
        if (err !== E.OK) return ret(err);
        if (c.force) this.exited(c.v, notes);
        else if (this.linked.has(c.v)) notes.push(`VM_SHUTDOWN->${c.v}`);
        return ret(E.OK);
      }
      case "reset": {
        const err = this.lifecycle(c.from, c.v, {
          ownerError: E.VMID_INVALID,
          states: [S.EXITED, S.READY, S.INIT_FAILED],
        });
        if (err !== E.OK) return ret(err);
        this.status(c.v, S.RESETTING, notes);
        this.resetQueue.push({ v: c.v, stage: 0 });
        return ret(E.OK);
      }
      case "deferred": {
        const job = this.resetQueue[0];
        if (!job) return ret(E.OK);
        job.stage++;
        const vm = this.vms.get(job.v)!;
        if (job.stage === 2) {
          for (const p of this.parcels.values()) if (p.target === job.v) p.state = "released";
          if (vm.image !== undefined) this.parcels.delete(vm.image);
        }
        if (job.stage === 5) vm.image = undefined;
        if (job.stage === 6) {
          this.status(job.v, S.RESET, notes);
          this.resetQueue.shift();
        }
        return ret(E.OK);
      }
      case "exit": {
        const vm = this.vms.get(c.v);
        if (!vm) return ret(E.VMID_INVALID);
        if (vm.state !== S.RUNNING) return ret(E.VM_STATE);
        if (c.code === 2) return ret(E.ARGUMENT_INVALID);
        this.exited(c.v, notes);
        return ret(E.OK);
      }
      case "setStatus": {
        const vm = this.vms.get(c.v);
        if (!vm) return ret(E.VMID_INVALID);
        this.status(c.v, vm.state, notes);
        return ret(E.OK);
      }
      case "getState": {
        if (c.v === HLOS) return ret(c.from === HLOS || this.vms.has(c.from) ? E.OK : E.DENIED);
        const vm = this.vms.get(c.v);
        if (!vm) return ret(E.VMID_INVALID);
        if (c.from !== HLOS && c.from !== c.v) return ret(E.DENIED);
        return ret(E.OK);
      }
      case "accept": {
        if (!this.vms.has(c.v)) return ret(E.DENIED);
        const p = this.parcels.get(num(c.h));
        if (!p) return ret(E.HANDLE_INVALID);
        if (p.target !== c.v) return ret(E.DENIED);
        if (p.state === "released") return ret(E.MEM_RELEASED);
        if (p.state === "accepted") return ret(E.MEM_INUSE);
        p.state = "accepted";
        if (this.linked.has(HLOS)) notes.push(`MEM_ACCEPTED->${HLOS}`);
        return ret(E.OK);
      }
      case "release": {
        if (!this.vms.has(c.v)) return ret(E.DENIED);
        const p = this.parcels.get(num(c.h));
        if (!p) return ret(E.HANDLE_INVALID);
        if (p.target !== c.v) return ret(E.DENIED);
        if (p.state === "released") return ret(E.MEM_RELEASED);
        p.state = "released";
        if (this.linked.has(HLOS)) notes.push(`MEM_RELEASED->${HLOS}`);
        return ret(E.OK);
      }
      case "reclaim": {
        const p = this.parcels.get(num(c.h));
        if (!p) return ret(E.HANDLE_INVALID);
        if (p.state === "accepted") return ret(E.MEM_INUSE);
        this.parcels.delete(num(c.h));
        return ret(E.OK);
      }
      case "hvExit": {
        if (this.vms.get(c.v)?.state === S.RUNNING) this.exited(c.v, notes);
        return ret(E.OK);
      }
      case "link":
        if (c.on) this.linked.add(c.v);
        else this.linked.delete(c.v);
        return ret(E.OK);
      case "garbage":
        return ret(E.MSG_INVALID);
    }
  }
}

// ---- driving the real RM

let lendCount = 0;

function send(h: Harness, c: Cmd): { error: number; out: Outbound[] } | { event: Outbound[] } {
  const call = (f: number, id: number, v: object) => {
    const r = h.call(f, id, v);
    return { error: r.error, out: r.out };
  };
  switch (c.k) {
    case "alloc":
      return call(c.from, R.VM_ALLOC_VMID, { vmid: 0 });
    case "dealloc":
      return call(c.from, R.VM_DEALLOC_VMID, { vmid: c.v });
    case "lend": {
      const base = 0x1_0000_0000n + BigInt(lendCount++) * 0x10_0000n;
      const region = new Uint8Array(0x4000);
      region.set(encodeVmConfig(basicConfig()));
      h.memory.write(HLOS, base, region);
      return call(HLOS, R.MEM_LEND, lendReq(c.v, [{ base, size: 0x4000n }]));
    }
    case "config":
      return call(c.from, R.VM_CONFIG_IMAGE, {
        vmid: c.v,
        auth_mech: 0,
        mem_handle: num(c.h),
        image_offset: 0n,
        image_size: 0n,
        dtb_offset: 0n,
        dtb_size: 0x4000n,
      });
    case "init":
      return call(c.from, R.VM_INIT, { vmid: c.v });
    case "start":
      return call(c.from, R.VM_START, { vmid: c.v });
    case "stop":
      return call(c.from, R.VM_STOP, { vmid: c.v, flags: c.force ? 1 : 0, stop_reason: 3 });
    case "reset":
      return call(c.from, R.VM_RESET, { vmid: c.v });
    case "deferred":
      return { event: h.rm.runDeferred() };
    case "exit":
      return call(c.v, R.VM_EXIT, { exit_flags: 0, exit_code: c.code });
    case "setStatus":
      return call(c.v, R.VM_SET_STATUS, { os_status: 4, app_status: 0 });
    case "getState":
      return call(c.from, R.VM_GET_STATE, { vmid: c.v });
    case "accept":
      return call(c.v, R.MEM_ACCEPT, {
        mem_handle: num(c.h),
        mem_type: 0,
        trans_type: 1,
        flags: 0,
        label: 0,
        acl: [],
        sgl: [],
        map_vmid: 0,
        attrs: [],
      });
    case "release":
      return call(c.v, R.MEM_RELEASE, { mem_handle: num(c.h), flags: 0 });
    case "reclaim":
      return call(HLOS, R.MEM_RECLAIM, { mem_handle: num(c.h), flags: 0 });
    case "hvExit":
      return { event: h.rm.vmExited(c.v, 1) };
    case "link":
      if (c.on) h.rm.connect(c.v);
      else h.rm.disconnect(c.v);
      return { event: [] };
    case "garbage": {
      const l = CALL_LAYOUTS.get(c.id)!.request;
      const good = encodeLayout(l, sample(c.id));
      const bad =
        c.cut > 0 ? good.subarray(0, good.length - c.cut) : concat(good, new Uint8Array(-c.cut));
      const r = h.raw(c.from, c.id, bad);
      return { error: r.error, out: r.out };
    }
  }
}

function sample(id: number): object {
  switch (id) {
    case R.VM_STOP:
      return { vmid: 0x80, flags: 1, stop_reason: 3 };
    case R.VM_CONFIG_IMAGE:
      return {
        vmid: 0x80,
        auth_mech: 0,
        mem_handle: 0,
        image_offset: 0n,
        image_size: 0n,
        dtb_offset: 0n,
        dtb_size: 1n,
      };
    case R.MEM_RECLAIM:
      return { mem_handle: 0, flags: 0 };
    default:
      return { vmid: 0x80 };
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function describe(o: Outbound): string {
  const n = decodeNote(o);
  return n.msgId === NotificationId.VM_STATUS
    ? `VM_STATUS(${n.body.vm_status})->${o.to}`
    : `${n.name}->${o.to}`;
}

/** What must hold after every step, whatever the model says. */
function checkInvariants(h: Harness, m: Model): void {
  assert.deepEqual(h.hv.violations, []);
  const snap = h.rm.snapshot();
  const known = new Set(snap.vms.map((v) => v.vmid));
  assert.deepEqual(
    [...known].filter((v) => v !== HLOS).sort(),
    [...m.vms.keys()].sort(),
    "the RM's VMs are the model's VMs (no VMID reused while allocated)",
  );
  assert.deepEqual(snap.allocatedVmids, [...m.vms.keys()].sort());
  for (const v of snap.vms) {
    const gone = v.vmid !== HLOS && (v.status === S.RESET || v.status === S.LOAD);
    if (gone) {
      assert.equal(v.resources, 0, `VM ${v.vmid} in ${v.status} holds no resources`);
      assert.equal(v.hvCreated, false);
      assert.equal(h.hv.vms.has(v.vmid), false, `the port holds nothing for VM ${v.vmid}`);
    }
    assert.equal(
      v.status,
      v.vmid === HLOS ? S.RUNNING : m.vms.get(v.vmid)!.state,
      `VM ${v.vmid}'s state`,
    );
  }
  for (const vmid of h.hv.vms.keys())
    assert.ok(known.has(vmid), `port VM ${vmid} belongs to a live VM`);
  for (const holder of snap.virqHolders)
    assert.ok(known.has(holder.holder), "interrupts only for live VMs");
  for (const p of snap.parcels) {
    for (const t of p.targets) {
      const vm = snap.vms.find((v) => v.vmid === t.vmid);
      if (!vm) assert.equal(t.state, "released", "a parcel is released for a deallocated VM");
      if (t.mapped) assert.ok(h.hv.vms.get(t.vmid)?.mapped.has(p.handle), "mapped in the port too");
      if (vm && (vm.status === S.RESET || vm.status === S.LOAD)) assert.equal(t.mapped, false);
    }
    const mp = m.parcels.get(p.handle);
    assert.ok(mp, `parcel ${p.handle} exists in the model`);
    assert.equal(p.targets[0]!.state, mp.state, `parcel ${p.handle}'s state`);
  }
  assert.equal(snap.parcels.length, m.parcels.size);
}

test("random call sequences from HLOS and guests agree with the reference model", () => {
  fc.assert(
    fc.property(program, (cmds) => {
      const h = new Harness({ link: [HLOS, ...GUESTS] });
      const m = new Model();
      let seq: number | undefined;
      for (const symbolic of cmds) {
        const c = m.resolve(symbolic);
        const want = m.predict(c);
        const got = send(h, c);
        const out = "event" in got ? got.event : got.out;
        const notes = "event" in got ? out : out.slice(0, -1);
        if (!("event" in got)) {
          assert.equal(got.error, want.error, `${JSON.stringify(c)}: error`);
          assert.equal(
            out.filter((o) => o.message.type === MsgType.REPLY).length,
            1,
            "exactly one reply",
          );
        }
        for (const n of notes) {
          assert.equal(n.message.type, MsgType.NOTIFICATION, "notifications come before the reply");
          assert.ok(m.linked.has(n.to), "only linked clients hear notifications");
          if (seq !== undefined)
            assert.equal(n.message.seq, (seq + 1) & 0xffff, "one global counter");
          seq = n.message.seq;
        }
        assert.deepEqual(notes.map(describe), want.notes, `${JSON.stringify(c)}: notifications`);
        if (c.k === "getState" && want.error === E.OK) {
          const st = h.ok(c.from, R.VM_GET_STATE, { vmid: c.v }).reply.vm_status;
          assert.equal(st, c.v === HLOS ? S.RUNNING : m.vms.get(c.v)!.state);
        }
        checkInvariants(h, m);
      }
      // Tear everything down: nothing may be left.
      for (let i = 0; i < 64 && h.rm.hasDeferredWork; i++) h.rm.runDeferred();
      for (const v of [...m.vms.keys()]) h.teardown(v);
      for (const p of h.rm.snapshot().parcels)
        h.ok(HLOS, R.MEM_RECLAIM, { mem_handle: p.handle, flags: 0 });
      const snap = h.rm.snapshot();
      assert.deepEqual(
        snap.vms.map((v) => v.vmid),
        [HLOS],
      );
      assert.deepEqual(snap.parcels, []);
      assert.deepEqual(snap.virqHolders, []);
      assert.deepEqual(snap.allocatedVmids, []);
      assert.equal(h.hv.vms.size, 0);
      assert.deepEqual(h.hv.violations, []);
    }),
    { numRuns: 200 },
  );
});
