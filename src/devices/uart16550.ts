import type { DeviceEffect, PioDevice } from "./bus.js";

/** COM1. */
export const COM1_BASE = 0x3f8;
export const UART_PORTS = 8;

const LCR_DLAB = 0x80;
const MCR_LOOP = 0x10;
const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const IIR_NONE = 0x01;
const IIR_FIFO = 0xc0;
const FCR_ENABLE = 0x01;
/** Carrier detect, data set ready and clear to send: "a terminal is attached". */
const MSR_ATTACHED = 0xb0;

/**
 * A 16550A UART as far as a polling guest needs it: transmitted bytes go straight to `output`
 * (the transmitter is always ready, so LSR always reports THRE|TEMT), received bytes queue up
 * until the guest reads RBR. Divisor latch, IER, LCR, MCR and the scratch register keep what
 * the guest writes so probing drivers see a real chip. Interrupts are not generated yet: input
 * reaches a guest that polls LSR.DR.
 */
export class Uart16550 implements PioDevice {
  readonly name = "uart16550";
  private dll = 0x0c;
  private dlm = 0;
  private ier = 0;
  private lcr = 0x03;
  private mcr = 0;
  private scr = 0;
  private fifo = false;
  private readonly rx: number[] = [];

  /**
   * `input`, when given, is asked for newly arrived bytes (terminal input) whenever the guest
   * looks at RBR or LSR with nothing queued, so a polling guest sees them.
   */
  constructor(
    private readonly output: (byte: number) => void,
    private readonly input?: () => Iterable<number>,
  ) {}

  private refill(): void {
    if (this.rx.length === 0 && this.input) this.receive(this.input());
  }

  /** Queues bytes for the guest to read (terminal input). */
  receive(bytes: Iterable<number>): void {
    for (const b of bytes) this.rx.push(b & 0xff);
  }

  pioRead(offset: number, _size: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    if ((offset === 0 && !dlab) || offset === 5) this.refill();
    switch (offset) {
      case 0:
        if (dlab) return this.dll;
        return this.rx.shift() ?? 0;
      case 1:
        return dlab ? this.dlm : this.ier;
      case 2:
        return IIR_NONE | (this.fifo ? IIR_FIFO : 0);
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5:
        return LSR_THRE | LSR_TEMT | (this.rx.length > 0 ? LSR_DR : 0);
      case 6:
        return (this.mcr & MCR_LOOP) !== 0 ? (this.mcr & 0x0f) << 4 : MSR_ATTACHED;
      case 7:
        return this.scr;
      default:
        return 0xff;
    }
  }

  pioWrite(offset: number, _size: number, value: number): DeviceEffect | undefined {
    const byte = value & 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case 0:
        if (dlab) this.dll = byte;
        else if ((this.mcr & MCR_LOOP) !== 0) this.rx.push(byte);
        else this.output(byte);
        break;
      case 1:
        if (dlab) this.dlm = byte;
        else this.ier = byte & 0x0f;
        break;
      case 2:
        this.fifo = (byte & FCR_ENABLE) !== 0;
        break;
      case 3:
        this.lcr = byte;
        break;
      case 4:
        this.mcr = byte & 0x1f;
        break;
      case 7:
        this.scr = byte;
        break;
      default:
        // LSR and MSR are read-only.
        break;
    }
    return undefined;
  }
}
