import { invariant, TsvisorError } from "../core/errors.js";
import {
  MsgqWord,
  RM_MSGQ_DEPTH,
  RM_MSGQ_IRQ_RX,
  RM_MSGQ_MSG_SIZE,
  RX_RING_OFFSET,
  ringCount,
  rmMsgqViews,
  SLOT_DATA,
  slotOffset,
  TX_RING_OFFSET,
} from "../devices/rm-msgq.js";
import type { EndpointHandlers, MessageEndpoint } from "./transport.js";

/**
 * The main thread's side of an RM message-queue device (src/devices/rm-msgq.ts): the link an
 * RmServer serves a guest on. `send()` puts a message in the guest's RX queue and drives the
 * device interrupt; what the guest sends arrives through the `message` handler.
 *
 * Nothing polls: the device bumps a sequence word and notifies it after every change (a send,
 * a pop, an IRQ_ENABLE change), and this side sleeps in Atomics.waitAsync on that word, which
 * does not keep the process alive by itself. On each wake it delivers the guest's messages
 * (unless paused), recomputes the interrupt level and signals writable() when the guest made
 * room in a queue that had been full.
 *
 * The interrupt is level-triggered: asserted while RX is not empty and the guest has enabled
 * it, lowered when the guest pops the last message or disables it, and on close.
 * `raiseIrq(level)` is called only when the level changes, always on the main thread.
 */
export class RmMsgqDeviceEndpoint implements MessageEndpoint {
  private readonly words: Int32Array;
  private readonly bytes: Uint8Array;
  private handlers: EndpointHandlers | undefined;
  private paused = false;
  private isClosed = false;
  private closeReason: { reason: TsvisorError | undefined } | undefined;
  private closeDelivered = false;
  private irqLevel = false;
  /** A send found or left RX full: signal writable() once the guest makes room. */
  private wantWritable = false;
  private servicing = false;
  private watching = false;

  constructor(
    shared: SharedArrayBuffer,
    private readonly raiseIrq: (level: boolean) => void,
    readonly label: string,
  ) {
    const v = rmMsgqViews(shared);
    this.words = v.words;
    this.bytes = v.bytes;
    if (Atomics.load(this.words, MsgqWord.CLOSED) !== 0) {
      throw new TsvisorError("RPC_CLOSED", `${label}: the device's link was closed before`);
    }
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get writable(): boolean {
    return !this.isClosed && this.rxCount() < RM_MSGQ_DEPTH;
  }

  /** Messages waiting in the guest's RX queue. */
  private rxCount(): number {
    return ringCount(
      Atomics.load(this.words, MsgqWord.RX_HEAD),
      Atomics.load(this.words, MsgqWord.RX_TAIL),
    );
  }

  send(msg: Uint8Array, _push = false): boolean {
    // PUSH needs no handling: the guest sees a message as soon as the tail moves, and the
    // interrupt follows the queue's state, not a threshold.
    if (this.isClosed) throw new TsvisorError("RPC_CLOSED", `link ${this.label} is closed`);
    if (msg.length > RM_MSGQ_MSG_SIZE) {
      throw new TsvisorError(
        "PROTO_TOO_LONG",
        `message of ${msg.length} bytes exceeds the queue's ${RM_MSGQ_MSG_SIZE}-byte limit`,
      );
    }
    const w = this.words;
    const tail = Atomics.load(w, MsgqWord.RX_TAIL);
    const count = ringCount(Atomics.load(w, MsgqWord.RX_HEAD), tail);
    if (count >= RM_MSGQ_DEPTH) {
      this.wantWritable = true;
      throw new TsvisorError(
        "RPC_QUEUE_FULL",
        `the guest's queue holds ${RM_MSGQ_DEPTH} messages already`,
      );
    }
    const slot = slotOffset(RX_RING_OFFSET, tail);
    this.bytes.set(msg, slot + SLOT_DATA);
    w[slot / 4] = msg.length;
    Atomics.store(w, MsgqWord.RX_TAIL, (tail + 1) | 0);
    this.updateIrq();
    const notFull = count + 1 < RM_MSGQ_DEPTH;
    if (!notFull) this.wantWritable = true;
    return notFull;
  }

  start(handlers: EndpointHandlers): void {
    invariant(this.handlers === undefined, "a device endpoint has one consumer");
    this.handlers = handlers;
    queueMicrotask(() => {
      if (this.closeReason) this.deliverClose();
      else void this.watch();
    });
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    queueMicrotask(() => this.service());
  }

  close(reason?: TsvisorError): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeReason = { reason };
    Atomics.store(this.words, MsgqWord.CLOSED, 1);
    if (this.irqLevel) {
      this.irqLevel = false;
      this.raiseIrq(false);
    }
    // Ends a pending waitAsync now rather than leaving it to the next guest access.
    Atomics.notify(this.words, MsgqWord.GUEST_SEQ);
    queueMicrotask(() => this.deliverClose());
  }

  /** Sleeps on the device's sequence word and services the device after each change. */
  private async watch(): Promise<void> {
    if (this.watching) return;
    this.watching = true;
    try {
      while (!this.isClosed) {
        const seen = Atomics.load(this.words, MsgqWord.GUEST_SEQ);
        this.service();
        if (this.isClosed) break;
        // Returns at once ("not-equal") if the device moved after `seen` was read.
        const r = Atomics.waitAsync(this.words, MsgqWord.GUEST_SEQ, seen);
        if (r.async) await r.value;
      }
    } finally {
      this.watching = false;
    }
  }

  /** Delivers what the guest sent, then updates the interrupt and writable state. */
  private service(): void {
    if (this.servicing || this.isClosed || !this.handlers) return;
    this.servicing = true;
    try {
      const w = this.words;
      while (!this.paused && !this.isClosed) {
        const head = Atomics.load(w, MsgqWord.TX_HEAD);
        if (ringCount(head, Atomics.load(w, MsgqWord.TX_TAIL)) <= 0) break;
        const slot = slotOffset(TX_RING_OFFSET, head);
        // The device writes lengths 1…240; the clamp keeps a bug from reading past the slot.
        const len = Math.min(Math.max(w[slot / 4]!, 0), RM_MSGQ_MSG_SIZE);
        const msg = this.bytes.slice(slot + SLOT_DATA, slot + SLOT_DATA + len);
        Atomics.store(w, MsgqWord.TX_HEAD, (head + 1) | 0);
        this.handlers.message(msg);
      }
      if (this.isClosed) return;
      this.updateIrq();
      if (this.wantWritable && this.rxCount() < RM_MSGQ_DEPTH) {
        this.wantWritable = false;
        this.handlers.writable();
      }
    } catch (e) {
      // A handler failed: the link cannot be trusted to be in step any more.
      const err = e instanceof Error ? e.message : String(e);
      this.close(new TsvisorError("RPC_ABORTED", `${this.label}: a handler failed: ${err}`));
    } finally {
      this.servicing = false;
    }
  }

  private updateIrq(): void {
    const level =
      !this.isClosed &&
      (Atomics.load(this.words, MsgqWord.IRQ_ENABLE) & RM_MSGQ_IRQ_RX) !== 0 &&
      this.rxCount() > 0;
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.raiseIrq(level);
  }

  private deliverClose(): void {
    if (this.closeDelivered || !this.handlers || !this.closeReason) return;
    this.closeDelivered = true;
    this.handlers.close(this.closeReason.reason);
  }
}
