import { TsvisorError } from "../core/errors.js";
import type { PioDevice } from "./bus.js";

/**
 * A port-I/O mailbox: 32-bit registers whose values live in a SharedArrayBuffer, so that host
 * threads see guest writes at once and can sleep until one arrives (Atomics.wait on the
 * register's word). The doorbell stress test and benchmark acknowledge through it
 * (guests/doorbell-stress.S).
 *
 * Register i is at port base + 4i. A 32-bit write stores the value (and the host's
 * process.hrtime.bigint() of the write, for latency measurements) and notifies waiters on the
 * register's word; a 32-bit read returns it. Other widths and misaligned accesses are
 * ignored (reads return 0).
 *
 * Buffer: Int32 words [0, n) the registers, then n BigInt64 timestamps (ns).
 */
export const MAILBOX_MAX_REGISTERS = 64;

export function createMailbox(registers: number, initial = 0): SharedArrayBuffer {
  if (!Number.isInteger(registers) || registers < 1 || registers > MAILBOX_MAX_REGISTERS) {
    throw new TsvisorError(
      "DEV_CONFIG",
      `a mailbox has 1 to ${MAILBOX_MAX_REGISTERS} registers, not ${registers}`,
    );
  }
  const buffer = new SharedArrayBuffer(stampOffset(registers) + registers * 8);
  new Int32Array(buffer, 0, registers).fill(initial);
  return buffer;
}

/** Registers of a mailbox buffer. */
export function mailboxRegisters(buffer: SharedArrayBuffer): number {
  // Solve bytes = stampOffset(n) + 8n for n: n words of 4 bytes padded to 8, then n × 8.
  for (let n = 1; n <= MAILBOX_MAX_REGISTERS; n++) {
    if (stampOffset(n) + n * 8 === buffer.byteLength) return n;
  }
  throw new TsvisorError("DEV_CONFIG", "the buffer is not a mailbox");
}

function stampOffset(registers: number): number {
  return Math.ceil((registers * 4) / 8) * 8;
}

/** The host's view of a mailbox buffer. */
export class MailboxView {
  readonly registers: number;
  readonly words: Int32Array;
  readonly stamps: BigInt64Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.registers = mailboxRegisters(buffer);
    this.words = new Int32Array(buffer, 0, this.registers);
    this.stamps = new BigInt64Array(buffer, stampOffset(this.registers), this.registers);
  }

  read(i: number): number {
    return Atomics.load(this.words, i);
  }

  /** process.hrtime.bigint() of register i's last guest write (0n before any). */
  stamp(i: number): bigint {
    return Atomics.load(this.stamps, i);
  }

  /**
   * Blocks this thread until register i no longer holds `value`, at most `timeoutMs`; returns
   * the register's value then. Not for the main thread of a process that serves guests.
   */
  waitChange(i: number, value: number, timeoutMs = Number.POSITIVE_INFINITY): number {
    Atomics.wait(this.words, i, value, timeoutMs);
    return this.read(i);
  }
}

export class Mailbox implements PioDevice {
  readonly name = "mailbox";
  private readonly view: MailboxView;

  constructor(buffer: SharedArrayBuffer) {
    this.view = new MailboxView(buffer);
  }

  get ports(): number {
    return this.view.registers * 4;
  }

  pioRead(offset: number, size: number): number {
    if (size !== 4 || offset % 4 !== 0) return 0;
    return this.view.read(offset / 4) >>> 0;
  }

  pioWrite(offset: number, size: number, value: number): undefined {
    if (size !== 4 || offset % 4 !== 0) return undefined;
    const i = offset / 4;
    // The stamp first: whoever sees the new value sees this write's stamp (or a later one).
    Atomics.store(this.view.stamps, i, process.hrtime.bigint());
    Atomics.store(this.view.words, i, value | 0);
    Atomics.notify(this.view.words, i);
    return undefined;
  }
}
