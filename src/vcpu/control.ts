/**
 * The words the main thread and a vCPU thread share. The main thread posts requests (bit
 * flags, so a wake never hides a stop); the vCPU thread publishes its state. Both sides use
 * Atomics only, so either can be a worker.
 */

const REQUEST = 0;
const STATE = 1;
const WORDS = 4;

export const Request = {
  STOP: 1,
  WAKE: 2,
} as const;

export const VcpuState = {
  CREATED: 0,
  RUNNING: 1,
  HALTED: 2,
  EXITED: 3,
} as const;
export type VcpuStateValue = (typeof VcpuState)[keyof typeof VcpuState];

export class VcpuControl {
  private readonly words: Int32Array;

  static allocate(): SharedArrayBuffer {
    return new SharedArrayBuffer(WORDS * 4);
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer);
  }

  requestStop(): void {
    Atomics.or(this.words, REQUEST, Request.STOP);
    Atomics.notify(this.words, REQUEST);
  }

  /** Ends a userspace halt (no in-kernel irqchip) without stopping the vCPU. */
  requestWake(): void {
    Atomics.or(this.words, REQUEST, Request.WAKE);
    Atomics.notify(this.words, REQUEST);
  }

  get stopRequested(): boolean {
    return (Atomics.load(this.words, REQUEST) & Request.STOP) !== 0;
  }

  /** Consumes a pending wake; returns whether there was one. */
  takeWake(): boolean {
    return (Atomics.and(this.words, REQUEST, ~Request.WAKE) & Request.WAKE) !== 0;
  }

  /** vCPU thread: sleeps until some request is pending (returns at once if one is). */
  waitForRequest(): void {
    for (;;) {
      const r = Atomics.load(this.words, REQUEST);
      if (r !== 0) return;
      Atomics.wait(this.words, REQUEST, 0);
    }
  }

  get state(): VcpuStateValue {
    return Atomics.load(this.words, STATE) as VcpuStateValue;
  }

  /** Sleeps while the state is `state`, at most `timeoutMs`; returns the state seen then. */
  waitWhile(state: VcpuStateValue, timeoutMs: number): VcpuStateValue {
    Atomics.wait(this.words, STATE, state, timeoutMs);
    return this.state;
  }

  setState(state: VcpuStateValue): void {
    Atomics.store(this.words, STATE, state);
    Atomics.notify(this.words, STATE);
  }
}
