/**
 * A VM's console output: the last `capacity` bytes are kept for clients that attach late, and
 * live listeners get every chunk as it comes. Input goes the other way through a ByteRing that
 * vCPU 0's COM1 reads (see LocalHost).
 */

export const CONSOLE_BUFFER = 64 * 1024;

export interface ConsoleListener {
  data(bytes: Uint8Array): void;
  end(): void;
}

export class ConsoleBuffer {
  private readonly bytes: Uint8Array;
  private total = 0;
  private readonly listeners = new Set<ConsoleListener>();
  private ended = false;

  constructor(readonly capacity = CONSOLE_BUFFER) {
    this.bytes = new Uint8Array(capacity);
  }

  /** Bytes written since the VM was created. */
  get written(): number {
    return this.total;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  write(chunk: Uint8Array): void {
    if (this.ended || chunk.length === 0) return;
    const n = Math.min(chunk.length, this.capacity);
    const src = chunk.subarray(chunk.length - n);
    for (let i = 0; i < n; i++)
      this.bytes[(this.total + chunk.length - n + i) % this.capacity] = src[i]!;
    this.total += chunk.length;
    const copy = chunk.slice();
    for (const l of [...this.listeners]) l.data(copy);
  }

  /** The retained output, oldest first. */
  history(): Uint8Array {
    const n = Math.min(this.total, this.capacity);
    const out = new Uint8Array(n);
    const start = this.total - n;
    for (let i = 0; i < n; i++) out[i] = this.bytes[(start + i) % this.capacity]!;
    return out;
  }

  /** Adds a listener; it gets the history first when asked. Returns the detach function. */
  attach(listener: ConsoleListener, history: boolean): () => void {
    if (history) {
      const h = this.history();
      if (h.length > 0) listener.data(h);
    }
    if (this.ended) {
      listener.end();
      return () => {};
    }
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** The VM is gone: every listener ends, later ones end at once. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const ls = [...this.listeners];
    this.listeners.clear();
    for (const l of ls) l.end();
  }
}
