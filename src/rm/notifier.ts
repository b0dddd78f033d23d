import { NotificationId } from "../protocol/catalogue.js";
import { VmStatus } from "../protocol/enums.js";
import { MsgType } from "../protocol/header.js";
import { VmExitedPayload, VmStatusPayload } from "../protocol/payloads.js";
import { encodeLayout, type Layout } from "../protocol/struct.js";
import type { Outbound } from "./types.js";
import type { VmRecord, VmTable } from "./vm-table.js";

/** A handler's answer: the RM error code and, on success, the reply data after it. */
export interface CallResult {
  readonly error: number;
  readonly payload?: Uint8Array;
}

export const OK: CallResult = { error: 0 };

export function fail(error: number): CallResult {
  return { error };
}

export function okWith<T extends object>(layout: Layout<T>, value: T): CallResult {
  return { error: 0, payload: encodeLayout(layout, value) };
}

/**
 * Builds notifications. Sequence numbers come from one global u16 counter that wraps, as the
 * RM stamps them; a client without an RPC link receives nothing (and consumes no number).
 */
export class Notifier {
  private seq = 0;

  constructor(
    private readonly vms: VmTable,
    private readonly linked: ReadonlySet<number>,
  ) {}

  isLinked(vmid: number): boolean {
    return this.linked.has(vmid);
  }

  send<T extends object>(
    out: Outbound[],
    to: number,
    msgId: number,
    layout: Layout<T>,
    value: T,
  ): void {
    if (!this.linked.has(to)) return;
    const seq = this.seq;
    this.seq = (this.seq + 1) & 0xffff;
    out.push({
      to,
      message: { type: MsgType.NOTIFICATION, seq, msgId, payload: encodeLayout(layout, value) },
    });
  }

  /** VM_STATUS about `vm` to every peer that is RUNNING and linked (HLOS always runs). */
  vmStatus(out: Outbound[], vm: VmRecord): void {
    const peers = [...this.vms.peersOf(vm.vmid)].sort((a, b) => a - b);
    for (const p of peers) {
      if (this.vms.get(p)?.status !== VmStatus.RUNNING) continue;
      this.send(out, p, NotificationId.VM_STATUS, VmStatusPayload, {
        vmid: vm.vmid,
        vm_status: vm.status,
        os_status: vm.osStatus,
        app_status: vm.appStatus,
      });
    }
  }

  /** VM_EXITED to the owner: reason word 0 = exit_flags (15:0) | exit_code << 16. */
  vmExited(out: Outbound[], vm: VmRecord, exitType: number, flags: number, code: number): void {
    const reason = new Uint8Array(4);
    new DataView(reason.buffer).setUint32(
      0,
      ((flags & 0xffff) | ((code & 0xff) << 16)) >>> 0,
      true,
    );
    this.send(out, vm.owner, NotificationId.VM_EXITED, VmExitedPayload, {
      vmid: vm.vmid,
      exit_type: exitType,
      exit_reason: reason,
    });
  }
}
