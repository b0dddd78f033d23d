/**
 * Test-only: a guest driver for the RM message-queue device that uses nothing but MMIO reads
 * and writes, the way guest code would (8-byte accesses for buffers, 4-byte for registers).
 */
import type { TsvisorError } from "../../core/errors.js";
import type { EndpointHandlers } from "../../rpc/transport.js";
import { RM_MSGQ_MSG_SIZE, type RmMsgqDevice, RmMsgqReg, RmMsgqStatus } from "../rm-msgq.js";

export class MsgqGuest {
  constructor(readonly device: RmMsgqDevice) {}

  read(offset: number, size: number): Uint8Array {
    const data = new Uint8Array(size);
    this.device.mmioRead(offset, data);
    return data;
  }

  write(offset: number, bytes: Uint8Array): void {
    const effect = this.device.mmioWrite(offset, bytes);
    if (effect !== undefined) throw new Error("the msgq device never has a device effect");
  }

  r32(offset: number): number {
    const d = this.read(offset, 4);
    return (d[0]! | (d[1]! << 8) | (d[2]! << 16) | (d[3]! << 24)) >>> 0;
  }

  w32(offset: number, value: number): void {
    this.write(offset, new Uint8Array(new Uint32Array([value >>> 0]).buffer));
  }

  get status(): number {
    return this.r32(RmMsgqReg.STATUS);
  }

  /** Takes and clears the ERROR register. */
  takeError(): number {
    const e = this.r32(RmMsgqReg.ERROR);
    if (e !== 0) this.w32(RmMsgqReg.ERROR, 0);
    return e;
  }

  /** Stages `msg` and sends it; returns the ERROR code the send left (0 = sent). */
  send(msg: Uint8Array, push = true): number {
    this.takeError();
    for (let at = 0; at < msg.length; at += 8) {
      this.write(RmMsgqReg.TX_BUF + at, msg.subarray(at, Math.min(at + 8, msg.length)));
    }
    this.w32(RmMsgqReg.TX_LEN, msg.length);
    this.w32(RmMsgqReg.TX_SEND, push ? 1 : 0);
    return this.takeError();
  }

  /** The oldest RX message, popped; undefined when RX is empty. */
  receive(): Uint8Array | undefined {
    if ((this.status & RmMsgqStatus.RX_NOT_EMPTY) === 0) return undefined;
    const len = this.r32(RmMsgqReg.RX_LEN);
    if (len > RM_MSGQ_MSG_SIZE) throw new Error(`RX_LEN ${len} is above 240`);
    const out = new Uint8Array(len);
    for (let at = 0; at < len; at += 8) {
      out.set(this.read(RmMsgqReg.RX_BUF + at, Math.min(8, len - at)), at);
    }
    this.w32(RmMsgqReg.RX_POP, 1);
    return out;
  }
}

/**
 * The host's view in tests: the endpoint handlers and the interrupt line, recording everything
 * and letting a test await a condition on what was recorded (checked at every event, no polling).
 */
export class HostRecorder implements EndpointHandlers {
  readonly messages: Uint8Array[] = [];
  /** Every raiseIrq(level) call, in order. */
  readonly irq: boolean[] = [];
  readonly closes: (TsvisorError | undefined)[] = [];
  writables = 0;
  private waiters: { cond: () => boolean; resolve: () => void }[] = [];

  readonly raiseIrq = (level: boolean): void => {
    this.irq.push(level);
    this.check();
  };

  get irqLevel(): boolean {
    return this.irq.at(-1) ?? false;
  }

  message(msg: Uint8Array): void {
    this.messages.push(msg);
    this.check();
  }

  writable(): void {
    this.writables++;
    this.check();
  }

  close(reason: TsvisorError | undefined): void {
    this.closes.push(reason);
    this.check();
  }

  /** Re-checks the waiting conditions after a change the recorder does not see itself. */
  poke(): void {
    this.check();
  }

  /** Resolves once `cond()` holds (at once if it does now). */
  when(cond: () => boolean): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ cond, resolve }));
  }

  private check(): void {
    const ready = this.waiters.filter((w) => w.cond());
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }
}
