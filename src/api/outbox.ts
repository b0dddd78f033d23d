/**
 * What a stream (events, console) has to send that its client has not taken yet. Chunks go to
 * the transport while it accepts them; once it is backed up they wait here, in order, until it
 * drains. When more than `limit` bytes wait, the client is too far behind to be worth keeping:
 * the queue is discarded and `onDrop` called once — the caller closes the stream, and an event
 * client resumes from the last seq it received, so nothing is lost, only re-sent.
 */

export interface Transport {
  /** Sends a chunk; false when the transport is backed up (whenDrained() tells when not). */
  write(chunk: string | Uint8Array): boolean;
  /** Calls back once, when the transport has room again. */
  whenDrained(cb: () => void): void;
}

const sizeOf = (c: string | Uint8Array) =>
  typeof c === "string" ? Buffer.byteLength(c) : c.byteLength;

export class Outbox {
  private queue: (string | Uint8Array)[] = [];
  private bytes = 0;
  private blocked = false;
  private stopped = false;
  private onEmpty: (() => void) | undefined;

  constructor(
    private readonly transport: Transport,
    private readonly limit: number,
    private readonly onDrop: () => void,
  ) {}

  /** Bytes waiting for the transport. */
  get queuedBytes(): number {
    return this.bytes;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  push(chunk: string | Uint8Array): void {
    if (this.stopped) return;
    if (!this.blocked && this.queue.length === 0) {
      if (!this.transport.write(chunk)) this.wait();
      return;
    }
    this.queue.push(chunk);
    this.bytes += sizeOf(chunk);
    if (this.bytes > this.limit) {
      this.stop();
      this.onDrop();
    }
  }

  /** Calls `cb` once everything queued has gone to the transport (at once if nothing waits). */
  whenFlushed(cb: () => void): void {
    if (this.queue.length === 0 || this.stopped) cb();
    else this.onEmpty = cb;
  }

  /** Sends nothing more (the stream is closed). */
  stop(): void {
    this.stopped = true;
    this.queue = [];
    this.bytes = 0;
    this.onEmpty = undefined;
  }

  private wait(): void {
    this.blocked = true;
    this.transport.whenDrained(() => {
      this.blocked = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.queue.length > 0 && !this.stopped) {
      const chunk = this.queue.shift()!;
      this.bytes -= sizeOf(chunk);
      if (!this.transport.write(chunk)) {
        this.wait();
        return;
      }
    }
    const cb = this.onEmpty;
    this.onEmpty = undefined;
    if (cb && !this.stopped) cb();
  }
}
