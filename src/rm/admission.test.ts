import assert from "node:assert/strict";
import { test } from "node:test";
import { RequestId, type RequestName } from "../protocol/catalogue.js";
import { VmStatus, type VmStatusName } from "../protocol/enums.js";
import { MsgType } from "../protocol/header.js";
import { RmError, type RmErrorName } from "../protocol/rm-error.js";
import {
  ADMISSION,
  ALL_STATES,
  admit,
  canTransition,
  TRANSITIONS,
  targetVmid,
  type VmView,
} from "./lifecycle.js";
import { Harness } from "./testing/harness.js";

/*
 * The reference (rm-protocol.md §3.2, §3.3, §4.2, plus tsvisor's documented choices in docs/rm.md), retyped
 * here by hand as text so that a slip in lifecycle.ts cannot be copied into its own test.
 *
 * caller: who may call at all (HLOS = only VMID 3; GUEST = anyone but 3; NOT0 = anyone but 0).
 * relation: owner | owner/self | self/owner/peer | - ; target: p = payload VMID, p0 = payload
 * VMID with 0 = caller, self = the caller, - = none.
 */
const REFERENCE = `
VM_ALLOC_VMID          HLOS  -                -                 -         -                 -
VM_DEALLOC_VMID        ANY   owner            LOAD,RESET        p         VMID_INVALID      DENIED
VM_START               NOT0  owner            READY             p         VMID_INVALID      DENIED
VM_STOP                ANY   owner            RUNNING,PAUSED    p         VMID_INVALID      VMID_INVALID
VM_RESET               ANY   owner            EXITED,READY,INIT_FAILED p  VMID_INVALID      VMID_INVALID
VM_CONFIG_IMAGE        HLOS  owner            LOAD,RESET        p         VMID_INVALID      DENIED
VM_AUTH_IMAGE          HLOS  owner            AUTH              p         VMID_INVALID      DENIED
VM_INIT                HLOS  owner            INIT              p         VMID_INVALID      DENIED
VM_SET_BOOT_CONTEXT    ANY   owner            READY             p         VMID_INVALID      DENIED
VM_SET_DEMAND_PAGING   ANY   owner            INIT              p         VMID_INVALID      DENIED
VM_SET_ADDRESS_LAYOUT  ANY   owner            INIT              p         VMID_INVALID      DENIED
VM_GET_HYP_RESOURCES   NOT0  -                AUTH,INIT,READY,RUNNING,PAUSED,EXITED,INIT_FAILED:NORESOURCE p ARGUMENT_INVALID -
VM_GET_STATE           ANY   self/owner/peer  *                 p0        VMID_INVALID      DENIED
VM_SET_STATUS          GUEST -                *                 self      VMID_INVALID      -
VM_EXIT                GUEST -                RUNNING,PAUSED    self      VMID_INVALID      -
VM_GET_VMID            ANY   -                -                 -         -                 -
VM_GET_OWNER           ANY   -                *                 self      VMID_INVALID      -
VM_GET_PEERS           ANY   -                *                 self      VMID_INVALID      -
VM_HOST_GET_TYPE       ANY   -                -                 -         -                 -
VM_GET_CRASH_MSG       ANY   owner            *                 p         VMID_INVALID      DENIED
VM_SET_CRASH_MSG       ANY   -                *                 self      VMID_INVALID      -
VM_GET_ID              ANY   self/owner/peer  READY,RUNNING,PAUSED p0     VMID_INVALID      DENIED
VM_SET_TIME_BASE       ANY   self/owner/peer  INIT,READY        p0        VMID_INVALID      DENIED
VM_SET_FIRMWARE_MEM    ANY   self/owner/peer  INIT              p0        VMID_INVALID      DENIED
VM_CONSOLE_OPEN        ANY   owner/self       *                 p0        VMID_INVALID      DENIED
VM_CONSOLE_CLOSE       ANY   owner/self       *                 p0        VMID_INVALID      DENIED
VM_CONSOLE_WRITE       ANY   owner/self       *                 p0        VMID_INVALID      DENIED
VM_CONSOLE_FLUSH       ANY   owner/self       *                 p0        VMID_INVALID      DENIED
MEM_LEND               ANY   -                *                 self      DENIED            -
MEM_SHARE              ANY   -                *                 self      DENIED            -
MEM_DONATE             ANY   -                *                 self      DENIED            -
MEM_APPEND             ANY   -                *                 self      DENIED            -
MEM_ACCEPT             ANY   -                *                 self      DENIED            -
MEM_RELEASE            ANY   -                *                 self      DENIED            -
MEM_RECLAIM            ANY   -                *                 self      DENIED            -
MEM_NOTIFY             ANY   -                *                 self      DENIED            -
`;

interface Row {
  call: RequestName;
  caller: string;
  relation: string;
  states: VmStatus[] | "*";
  stateError: number;
  target: string;
  unknown: number;
  relationError: number;
}

const err = (n: string): number => RmError[n as RmErrorName];

function parse(): Row[] {
  return REFERENCE.trim()
    .split("\n")
    .map((line) => {
      const [call, caller, relation, statesText, target, unknown, relationError] = line
        .trim()
        .split(/\s+/) as [RequestName, string, string, string, string, string, string];
      const [list, stateErr] = statesText.split(":");
      return {
        call,
        caller,
        relation,
        states:
          list === "*" || list === "-"
            ? "*"
            : list!.split(",").map((s) => VmStatus[s as VmStatusName]),
        stateError: stateErr ? err(stateErr) : RmError.VM_STATE,
        target,
        unknown: unknown === "-" ? RmError.OK : err(unknown),
        relationError: relationError === "-" ? RmError.OK : err(relationError),
      };
    });
}

const ROWS = parse();

// The cast: target VM 0x80 owned by HLOS, with 0x81 as a vdevice peer; plus a VM owned by a
// guest (0x90) so that "HLOS only" and "owner" can be told apart.
const HLOS = 3;
const GUEST = 0x80;
const PEER = 0x81;
const STRANGER = 0x82;
const GUEST_OWNER = 0x90;
const CALLERS = [HLOS, GUEST, PEER, STRANGER, GUEST_OWNER, 0];

function expected(row: Row, caller: number, vm: VmView | undefined): number {
  const callerOk =
    row.caller === "ANY" ||
    (row.caller === "HLOS" && caller === HLOS) ||
    (row.caller === "GUEST" && caller !== HLOS) ||
    (row.caller === "NOT0" && caller !== 0);
  if (!callerOk) return RmError.DENIED;
  if (row.target === "-") return RmError.OK;
  if (!vm) return row.unknown;
  const isOwner = vm.owner === caller;
  const isSelf = vm.vmid === caller;
  const isPeer = vm.peers.has(caller);
  const related =
    row.relation === "-" ||
    (row.relation === "owner" && isOwner) ||
    (row.relation === "owner/self" && (isOwner || isSelf)) ||
    (row.relation === "self/owner/peer" && (isOwner || isSelf || isPeer));
  if (!related) return row.relationError;
  if (row.states !== "*" && !row.states.includes(vm.status)) return row.stateError;
  return RmError.OK;
}

test("the admission table lists exactly the calls of the reference", () => {
  const listed = [...ADMISSION.keys()].sort();
  const reference = ROWS.map((r) => RequestId[r.call]).sort();
  assert.deepEqual(listed, reference);
});

test("admit() matches the reference for every call × state × caller, known and unknown VM", () => {
  let checked = 0;
  for (const row of ROWS) {
    const a = ADMISSION.get(RequestId[row.call]);
    assert.ok(a, row.call);
    for (const status of ALL_STATES) {
      for (const owner of [HLOS, GUEST_OWNER]) {
        const vmid = owner === HLOS ? GUEST : 0x91;
        const vm: VmView = { vmid, status, owner, peers: new Set([owner, PEER]) };
        for (const caller of [...CALLERS, vmid]) {
          const got = admit(a, caller, vm);
          const want = expected(row, caller, vm);
          assert.equal(
            got,
            want,
            `${row.call} by 0x${caller.toString(16)} on a VM in state ${status} owned by ${owner}`,
          );
          checked++;
        }
      }
    }
    for (const caller of CALLERS) {
      assert.equal(
        admit(a, caller, undefined),
        expected(row, caller, undefined),
        `${row.call} on no VM`,
      );
    }
  }
  assert.ok(checked > 2000);
});

test("targetVmid() reads the payload, treats 0 as the caller where the reference says so", () => {
  for (const row of ROWS) {
    const a = ADMISSION.get(RequestId[row.call])!;
    const fromPayload = targetVmid(a, GUEST, 0x85);
    const zero = targetVmid(a, GUEST, 0);
    switch (row.target) {
      case "-":
        assert.equal(fromPayload, undefined, row.call);
        break;
      case "self":
        assert.equal(fromPayload, GUEST, row.call);
        break;
      case "p":
        assert.equal(fromPayload, 0x85, row.call);
        assert.equal(zero, 0, row.call);
        break;
      case "p0":
        assert.equal(fromPayload, 0x85, row.call);
        assert.equal(zero, GUEST, row.call);
        break;
      default:
        assert.fail(`bad target ${row.target}`);
    }
  }
});

test("the transition table is §4.1 and nothing else", () => {
  const S = VmStatus;
  const allowed = new Set(
    [
      [S.NO_STATE, S.LOAD],
      [S.LOAD, S.AUTH],
      [S.RESET, S.AUTH],
      [S.LOAD, S.INIT],
      [S.AUTH, S.INIT],
      [S.RESET, S.INIT],
      [S.INIT, S.READY],
      [S.READY, S.RUNNING],
      [S.PAUSED, S.RUNNING],
      [S.RUNNING, S.PAUSED],
      [S.INIT, S.INIT_FAILED],
      [S.READY, S.INIT_FAILED],
      [S.LOAD, S.INIT_FAILED],
      [S.AUTH, S.INIT_FAILED],
      [S.RESET, S.INIT_FAILED],
      [S.RUNNING, S.EXITED],
      [S.PAUSED, S.EXITED],
      [S.EXITED, S.RESETTING],
      [S.READY, S.RESETTING],
      [S.INIT_FAILED, S.RESETTING],
      [S.RESETTING, S.RESET],
      [S.RESET, S.NO_STATE],
    ].map(([a, b]) => `${a}>${b}`),
  );
  for (const from of ALL_STATES) {
    for (const to of ALL_STATES) {
      assert.equal(canTransition(from, to), allowed.has(`${from}>${to}`), `${from} → ${to}`);
    }
  }
  assert.equal(Object.keys(TRANSITIONS).length, ALL_STATES.length);
});

test("every catalogue request outside the admission table is answered UNIMPLEMENTED", () => {
  const h = new Harness();
  for (const id of Object.values(RequestId)) {
    if (ADMISSION.has(id)) continue;
    assert.equal(h.raw(HLOS, id, new Uint8Array(0)).error, RmError.UNIMPLEMENTED);
  }
  assert.equal(h.raw(HLOS, 0x12345678, new Uint8Array(4)).error, RmError.UNIMPLEMENTED);
});

test("admission reaches the wire: a guest's VM_ALLOC_VMID is DENIED, an unknown VM is VMID_INVALID", () => {
  const h = new Harness();
  assert.equal(h.call(GUEST, RequestId.VM_ALLOC_VMID, { vmid: 0 }).error, RmError.DENIED);
  assert.equal(h.call(HLOS, RequestId.VM_START, { vmid: 0x99 }).error, RmError.VMID_INVALID);
  assert.equal(
    h.call(HLOS, RequestId.VM_GET_HYP_RESOURCES, { vmid: 0x99 }).error,
    RmError.ARGUMENT_INVALID,
  );
  assert.equal(h.call(0, RequestId.VM_GET_HYP_RESOURCES, { vmid: 0x99 }).error, RmError.DENIED);
});

test("the RM ignores replies and notifications that clients send", () => {
  const h = new Harness();
  const payload = new Uint8Array(4);
  assert.deepEqual(
    h.rm.handle(HLOS, {
      type: MsgType.REPLY,
      seq: 1,
      msgId: RequestId.VM_START,
      error: 0,
      payload,
    }),
    [],
  );
  assert.deepEqual(
    h.rm.handle(HLOS, { type: MsgType.NOTIFICATION, seq: 1, msgId: 0x56100008, payload }),
    [],
  );
});
