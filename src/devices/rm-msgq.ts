import { TsvisorError } from "../core/errors.js";
import type { DeviceEffect, MmioDevice } from "./bus.js";

/**
 * The RM message-queue device: a paravirtual MMIO device through which a guest is a client of
 * the Resource Manager, with Gunyah's message-queue semantics (whole messages of at most 240
 * bytes, 8 per direction). docs/devices.md documents the guest-visible register layout.
 *
 * All of the device's state — both rings and the registers — lives in one SharedArrayBuffer
 * the main thread creates (createRmMsgqShared). Each vCPU thread builds its own RmMsgqDevice
 * over it, so the vCPUs of a VM see one register file; the main thread's side is
 * RmMsgqDeviceEndpoint (src/rpc/device-endpoint.ts). Each ring is single-producer
 * single-consumer between "the device" and the main thread; the vCPU threads that together
 * make up "the device" serialise through a lock word, so the main thread never waits.
 */

/** Where the device sits in guest-physical space: below the IOAPIC (0xfec00000), 4 KiB. */
export const RM_MSGQ_MMIO_BASE = 0xfeb0_0000;
export const RM_MSGQ_MMIO_SIZE = 0x1000;
/** The interrupt line (GSI) the VMM wires to RX not-empty; free on a PC (PIC IRQ 10). */
export const RM_MSGQ_GSI = 10;
/** Messages each direction holds, and the largest message, as Gunyah's RM queues. */
export const RM_MSGQ_DEPTH = 8;
export const RM_MSGQ_MSG_SIZE = 240;
/** "RMQ1" as a little-endian u32: what the ID register reads. */
export const RM_MSGQ_ID = 0x3151_4d52;
export const RM_MSGQ_VERSION = 1;

/** Guest-visible register offsets (32-bit registers) and buffer windows. */
export const RmMsgqReg = {
  ID: 0x000,
  VERSION: 0x004,
  STATUS: 0x008,
  IRQ_ENABLE: 0x00c,
  ERROR: 0x010,
  ERROR_COUNT: 0x014,
  TX_LEN: 0x018,
  TX_SEND: 0x01c,
  TX_COUNT: 0x020,
  RX_LEN: 0x024,
  RX_POP: 0x028,
  RX_COUNT: 0x02c,
  DEPTH: 0x030,
  MSG_SIZE: 0x034,
  TX_BUF: 0x100,
  RX_BUF: 0x200,
} as const;

export const RmMsgqStatus = {
  RX_NOT_EMPTY: 1 << 0,
  TX_NOT_FULL: 1 << 1,
  LINK_DOWN: 1 << 2,
  ERROR: 1 << 3,
  IRQ: 1 << 4,
} as const;

/** TX_SEND bit 0: wake the receiver at once (Gunyah's PUSH; every send does here, see docs). */
export const RM_MSGQ_SEND_PUSH = 1;
/** IRQ_ENABLE bit 0: assert the interrupt while RX is not empty. */
export const RM_MSGQ_IRQ_RX = 1;

/** Values of the ERROR register: the last refused access, sticky until the guest writes it. */
export const RmMsgqError = {
  NONE: 0,
  /** TX_LEN written with a value above 240; TX_LEN kept its value. */
  TX_LEN_INVALID: 1,
  /** TX_SEND with TX_LEN 0; nothing sent. */
  TX_EMPTY: 2,
  /** TX_SEND while the TX queue holds 8 messages; nothing sent, TX_LEN and TX_BUF kept. */
  TX_FULL: 3,
  /** RX_POP with RX empty. */
  RX_EMPTY: 4,
  /** TX_SEND after the host closed the link; nothing sent. */
  LINK_DOWN: 5,
  /**
   * A write the layout does not allow (a read-only or reserved offset, a bad width, crossing
   * the TX window's end); ignored as a whole.
   */
  BAD_ACCESS: 6,
} as const;

// ---- Shared-memory layout (private to this file and device-endpoint.ts) ----

/** Int32 word indexes in the header. */
export const MsgqWord = {
  MAGIC: 0,
  /** Device-side lock: 0 free, 1 held by some vCPU thread. */
  LOCK: 1,
  /** Bumped (and notified) by the device after every change the host must look at. */
  GUEST_SEQ: 2,
  /** Set by the host when it closes the link. */
  CLOSED: 3,
  IRQ_ENABLE: 4,
  TX_LEN: 5,
  ERROR: 6,
  ERROR_COUNT: 7,
  /** TX ring: the host consumes (head), the device produces (tail). Free-running counters. */
  TX_HEAD: 8,
  TX_TAIL: 9,
  /** RX ring: the device consumes (head), the host produces (tail). */
  RX_HEAD: 10,
  RX_TAIL: 11,
} as const;

const HEADER_BYTES = 256;
export const STAGING_OFFSET = HEADER_BYTES;
const STAGING_BYTES = 256;
export const SLOT_BYTES = 256;
/** Within a slot: the message length (Int32) at 0, the bytes from SLOT_DATA. */
export const SLOT_DATA = 16;
export const TX_RING_OFFSET = STAGING_OFFSET + STAGING_BYTES;
export const RX_RING_OFFSET = TX_RING_OFFSET + RM_MSGQ_DEPTH * SLOT_BYTES;
const SHARED_BYTES = RX_RING_OFFSET + RM_MSGQ_DEPTH * SLOT_BYTES;
const MAGIC = RM_MSGQ_ID;

/** The shared state of one RM message-queue device, made on the main thread. */
export function createRmMsgqShared(): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(SHARED_BYTES);
  Atomics.store(new Int32Array(sab), MsgqWord.MAGIC, MAGIC);
  return sab;
}

/** Checks that `shared` came from createRmMsgqShared (it crosses threads as plain data). */
export function rmMsgqViews(shared: SharedArrayBuffer): {
  words: Int32Array;
  bytes: Uint8Array;
} {
  if (!(shared instanceof SharedArrayBuffer) || shared.byteLength !== SHARED_BYTES) {
    throw new TsvisorError("DEV_CONFIG", "rm-msgq: the shared buffer is not an RM msgq buffer");
  }
  const words = new Int32Array(shared);
  if (Atomics.load(words, MsgqWord.MAGIC) !== MAGIC) {
    throw new TsvisorError("DEV_CONFIG", "rm-msgq: the shared buffer was not initialised");
  }
  return { words, bytes: new Uint8Array(shared) };
}

/** Slot byte offset of free-running index `i` in the ring at `ringOffset`. */
export function slotOffset(ringOffset: number, i: number): number {
  return ringOffset + ((i >>> 0) % RM_MSGQ_DEPTH) * SLOT_BYTES;
}

/** Messages in a ring from its two free-running counters. */
export function ringCount(head: number, tail: number): number {
  return (tail - head) | 0;
}

const TX_BUF_END = RmMsgqReg.TX_BUF + RM_MSGQ_MSG_SIZE;
const RX_BUF_END = RmMsgqReg.RX_BUF + RM_MSGQ_MSG_SIZE;
const REG_END = 0x100;
/** Spins before a contended lock waits instead (only vCPU threads of one VM contend). */
const LOCK_SPINS = 200;

/**
 * The guest's side, on a vCPU thread. Every access takes the device lock, so concurrent vCPUs
 * see one device; reads never change state; nothing a guest does makes it throw.
 */
export class RmMsgqDevice implements MmioDevice {
  readonly name = "rm-msgq";
  private readonly words: Int32Array;
  private readonly bytes: Uint8Array;

  constructor(shared: SharedArrayBuffer) {
    const v = rmMsgqViews(shared);
    this.words = v.words;
    this.bytes = v.bytes;
  }

  mmioRead(offset: number, data: Uint8Array): void {
    this.lock();
    try {
      // Byte by byte, so any width at any offset reads the little-endian register image.
      let reg = -1;
      let value = 0;
      for (let i = 0; i < data.length; i++) {
        const at = offset + i;
        if (at < REG_END) {
          const r = at & ~3;
          if (r !== reg) {
            reg = r;
            value = this.readRegister(r);
          }
          data[i] = (value >>> (8 * (at & 3))) & 0xff;
        } else if (at >= RmMsgqReg.TX_BUF && at < TX_BUF_END) {
          data[i] = this.bytes[STAGING_OFFSET + at - RmMsgqReg.TX_BUF]!;
        } else if (at >= RmMsgqReg.RX_BUF && at < RX_BUF_END) {
          data[i] = this.rxByte(at - RmMsgqReg.RX_BUF);
        } else {
          data[i] = 0;
        }
      }
    } finally {
      this.unlock();
    }
  }

  mmioWrite(offset: number, data: Uint8Array): DeviceEffect | undefined {
    this.lock();
    try {
      if (offset >= RmMsgqReg.TX_BUF && offset < TX_BUF_END) {
        if (offset + data.length > TX_BUF_END) this.fail(RmMsgqError.BAD_ACCESS);
        else this.bytes.set(data, STAGING_OFFSET + offset - RmMsgqReg.TX_BUF);
        return undefined;
      }
      if (offset >= REG_END || (offset & 3) !== 0 || data.length > 4) {
        this.fail(RmMsgqError.BAD_ACCESS);
        return undefined;
      }
      let value = 0;
      for (let i = data.length - 1; i >= 0; i--) value = value * 256 + data[i]!;
      this.writeRegister(offset, value >>> 0);
      return undefined;
    } finally {
      this.unlock();
    }
  }

  private readRegister(reg: number): number {
    const w = this.words;
    switch (reg) {
      case RmMsgqReg.ID:
        return RM_MSGQ_ID;
      case RmMsgqReg.VERSION:
        return RM_MSGQ_VERSION;
      case RmMsgqReg.STATUS:
        return this.status();
      case RmMsgqReg.IRQ_ENABLE:
        return Atomics.load(w, MsgqWord.IRQ_ENABLE);
      case RmMsgqReg.ERROR:
        return Atomics.load(w, MsgqWord.ERROR);
      case RmMsgqReg.ERROR_COUNT:
        return Atomics.load(w, MsgqWord.ERROR_COUNT) >>> 0;
      case RmMsgqReg.TX_LEN:
        return Atomics.load(w, MsgqWord.TX_LEN);
      case RmMsgqReg.TX_COUNT:
        return this.txCount();
      case RmMsgqReg.RX_LEN:
        return this.rxCount() > 0 ? this.rxHeadLength() : 0;
      case RmMsgqReg.RX_COUNT:
        return this.rxCount();
      case RmMsgqReg.DEPTH:
        return RM_MSGQ_DEPTH;
      case RmMsgqReg.MSG_SIZE:
        return RM_MSGQ_MSG_SIZE;
      default:
        // TX_SEND, RX_POP (write-only) and reserved offsets read as zero.
        return 0;
    }
  }

  private writeRegister(reg: number, value: number): void {
    const w = this.words;
    switch (reg) {
      case RmMsgqReg.IRQ_ENABLE: {
        const v = value & RM_MSGQ_IRQ_RX;
        if (Atomics.exchange(w, MsgqWord.IRQ_ENABLE, v) !== v) this.notifyHost();
        return;
      }
      case RmMsgqReg.ERROR:
        Atomics.store(w, MsgqWord.ERROR, RmMsgqError.NONE);
        return;
      case RmMsgqReg.TX_LEN:
        if (value > RM_MSGQ_MSG_SIZE) this.fail(RmMsgqError.TX_LEN_INVALID);
        else Atomics.store(w, MsgqWord.TX_LEN, value);
        return;
      case RmMsgqReg.TX_SEND:
        this.send();
        return;
      case RmMsgqReg.RX_POP:
        this.pop();
        return;
      default:
        this.fail(RmMsgqError.BAD_ACCESS);
    }
  }

  private send(): void {
    const w = this.words;
    if (Atomics.load(w, MsgqWord.CLOSED) !== 0) {
      this.fail(RmMsgqError.LINK_DOWN);
      return;
    }
    const len = Atomics.load(w, MsgqWord.TX_LEN);
    if (len === 0) {
      this.fail(RmMsgqError.TX_EMPTY);
      return;
    }
    const tail = Atomics.load(w, MsgqWord.TX_TAIL);
    if (ringCount(Atomics.load(w, MsgqWord.TX_HEAD), tail) >= RM_MSGQ_DEPTH) {
      this.fail(RmMsgqError.TX_FULL);
      return;
    }
    const slot = slotOffset(TX_RING_OFFSET, tail);
    this.bytes.copyWithin(slot + SLOT_DATA, STAGING_OFFSET, STAGING_OFFSET + len);
    w[slot / 4] = len;
    // Publishing the tail releases the slot's bytes to the host (Atomics order them).
    Atomics.store(w, MsgqWord.TX_TAIL, (tail + 1) | 0);
    Atomics.store(w, MsgqWord.TX_LEN, 0);
    this.notifyHost();
  }

  private pop(): void {
    const w = this.words;
    const head = Atomics.load(w, MsgqWord.RX_HEAD);
    if (ringCount(head, Atomics.load(w, MsgqWord.RX_TAIL)) <= 0) {
      this.fail(RmMsgqError.RX_EMPTY);
      return;
    }
    Atomics.store(w, MsgqWord.RX_HEAD, (head + 1) | 0);
    this.notifyHost();
  }

  private status(): number {
    const rx = this.rxCount() > 0;
    let s = 0;
    if (rx) s |= RmMsgqStatus.RX_NOT_EMPTY;
    if (this.txCount() < RM_MSGQ_DEPTH) s |= RmMsgqStatus.TX_NOT_FULL;
    if (Atomics.load(this.words, MsgqWord.CLOSED) !== 0) s |= RmMsgqStatus.LINK_DOWN;
    if (Atomics.load(this.words, MsgqWord.ERROR) !== 0) s |= RmMsgqStatus.ERROR;
    if (rx && (Atomics.load(this.words, MsgqWord.IRQ_ENABLE) & RM_MSGQ_IRQ_RX) !== 0) {
      s |= RmMsgqStatus.IRQ;
    }
    return s;
  }

  private txCount(): number {
    return ringCount(
      Atomics.load(this.words, MsgqWord.TX_HEAD),
      Atomics.load(this.words, MsgqWord.TX_TAIL),
    );
  }

  private rxCount(): number {
    return ringCount(
      Atomics.load(this.words, MsgqWord.RX_HEAD),
      Atomics.load(this.words, MsgqWord.RX_TAIL),
    );
  }

  private rxHeadLength(): number {
    const slot = slotOffset(RX_RING_OFFSET, Atomics.load(this.words, MsgqWord.RX_HEAD));
    // The host writes lengths 0…240; clamp anyway so no read can leave the slot.
    return Math.min(Math.max(this.words[slot / 4]!, 0), RM_MSGQ_MSG_SIZE);
  }

  private rxByte(i: number): number {
    if (this.rxCount() <= 0 || i >= this.rxHeadLength()) return 0;
    const slot = slotOffset(RX_RING_OFFSET, Atomics.load(this.words, MsgqWord.RX_HEAD));
    return this.bytes[slot + SLOT_DATA + i]!;
  }

  private fail(code: number): void {
    Atomics.store(this.words, MsgqWord.ERROR, code);
    Atomics.add(this.words, MsgqWord.ERROR_COUNT, 1);
  }

  private notifyHost(): void {
    Atomics.add(this.words, MsgqWord.GUEST_SEQ, 1);
    Atomics.notify(this.words, MsgqWord.GUEST_SEQ);
  }

  private lock(): void {
    const w = this.words;
    let spins = 0;
    while (Atomics.compareExchange(w, MsgqWord.LOCK, 0, 1) !== 0) {
      // Another vCPU thread of this VM is inside a (short, non-blocking) access. Threads end
      // only between jobs, never inside one, so the holder always releases it.
      if (++spins > LOCK_SPINS) Atomics.wait(w, MsgqWord.LOCK, 1, 1);
    }
  }

  private unlock(): void {
    Atomics.store(this.words, MsgqWord.LOCK, 0);
    Atomics.notify(this.words, MsgqWord.LOCK, 1);
  }
}
