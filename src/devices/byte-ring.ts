/**
 * A single-producer single-consumer byte ring in a SharedArrayBuffer: how a device running on
 * a vCPU thread hands console output to the main thread without a message per byte. The
 * writer blocks while the ring is full (a console applies back-pressure) unless the reader
 * has abandoned it; the reader never blocks.
 */

const WRITE = 0;
const READ = 1;
const ABANDONED = 2;
const HEADER_BYTES = 16;
/** How long a blocked writer sleeps before re-checking for abandonment, in ms. */
const FULL_WAIT_MS = 50;

export class ByteRing {
  private readonly words: Int32Array;
  private readonly data: Uint8Array;
  readonly capacity: number;

  /** A new ring's shared memory; pass it to both sides. */
  static allocate(capacity = 4096): SharedArrayBuffer {
    if (!Number.isInteger(capacity) || capacity <= 0 || capacity > 1 << 24) {
      throw new RangeError(`ring capacity ${capacity} is out of range`);
    }
    return new SharedArrayBuffer(HEADER_BYTES + capacity);
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.data = new Uint8Array(buffer, HEADER_BYTES);
    this.capacity = this.data.length;
  }

  /** Bytes written and not yet read. */
  get pending(): number {
    return (Atomics.load(this.words, WRITE) - Atomics.load(this.words, READ)) | 0;
  }

  get abandoned(): boolean {
    return Atomics.load(this.words, ABANDONED) !== 0;
  }

  /** Writer side. Returns false if the byte was dropped because the reader is gone. */
  write(byte: number): boolean {
    for (;;) {
      if (this.abandoned) return false;
      const w = Atomics.load(this.words, WRITE);
      const r = Atomics.load(this.words, READ);
      if (((w - r) | 0) < this.capacity) {
        this.data[(w >>> 0) % this.capacity] = byte;
        Atomics.store(this.words, WRITE, (w + 1) | 0);
        Atomics.notify(this.words, WRITE);
        return true;
      }
      Atomics.wait(this.words, READ, r, FULL_WAIT_MS);
    }
  }

  /**
   * Writer side, never blocking (for the main thread, e.g. terminal input): writes what fits
   * and returns how many bytes were taken.
   */
  tryWrite(bytes: Uint8Array): number {
    if (this.abandoned) return 0;
    const w = Atomics.load(this.words, WRITE);
    const r = Atomics.load(this.words, READ);
    const n = Math.min(bytes.length, this.capacity - ((w - r) | 0));
    for (let i = 0; i < n; i++) this.data[((w + i) >>> 0) % this.capacity] = bytes[i]!;
    Atomics.store(this.words, WRITE, (w + n) | 0);
    Atomics.notify(this.words, WRITE);
    return n;
  }

  /** Reader side: everything available now (possibly nothing). */
  read(): Uint8Array {
    const w = Atomics.load(this.words, WRITE);
    const r = Atomics.load(this.words, READ);
    const n = (w - r) | 0;
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.data[((r + i) >>> 0) % this.capacity]!;
    Atomics.store(this.words, READ, (r + n) | 0);
    Atomics.notify(this.words, READ);
    return out;
  }

  /**
   * Reader side: resolves once data is available (at once if some already is). A pending wait
   * does not keep the process alive by itself.
   */
  async waitReadable(): Promise<void> {
    const w = Atomics.load(this.words, WRITE);
    if (((w - Atomics.load(this.words, READ)) | 0) !== 0) return;
    const res = Atomics.waitAsync(this.words, WRITE, w);
    if (res.async) await res.value;
  }

  /** Reader side: the writer stops blocking and drops further bytes. */
  abandon(): void {
    Atomics.store(this.words, ABANDONED, 1);
    Atomics.notify(this.words, READ);
  }

  /** Wakes a pending waitReadable() without data, e.g. because the writer has finished. */
  wake(): void {
    Atomics.notify(this.words, WRITE);
  }
}

/**
 * Reader side: hands every byte the writer produces to `sink` until `done` settles, then
 * drains what is left and abandons the ring. Resolves when everything has been delivered.
 */
export async function pumpRing(
  ring: ByteRing,
  sink: (bytes: Uint8Array) => void,
  done: Promise<unknown>,
): Promise<void> {
  let finished = false;
  const ended = done.then(
    () => {
      finished = true;
    },
    () => {
      finished = true;
    },
  );
  for (;;) {
    const bytes = ring.read();
    if (bytes.length > 0) sink(bytes);
    if (finished) {
      const rest = ring.read();
      if (rest.length > 0) sink(rest);
      ring.abandon();
      // Settles the waitAsync the last race left pending; it would otherwise keep the ring
      // (and this function's frame) alive until the next write, which never comes.
      ring.wake();
      return;
    }
    await Promise.race([ring.waitReadable(), ended]);
  }
}
