import type { IncomingMessage } from "node:http";
import type net from "node:net";
import type WebSocket from "ws";
import { TsvisorError } from "../core/errors.js";
import { INSTANCE_HEADER } from "../host/defaults.js";
import type { HostEvent } from "../host/types.js";
import { type Connection, checkVersion, connectError, errorFromBody } from "./connection.js";
import { isHostEvent } from "./shapes.js";

/**
 * The daemon's event stream over a WebSocket, as an async iterator that survives dropped
 * connections: it reconnects by itself with `since` = the last seq it received, so the events
 * it yields are exactly the daemon's, once each and in order, however often the connection
 * breaks (while the daemon still retains them; API_CURSOR_EXPIRED otherwise).
 *
 * Failures before the first connection opened are thrown to the consumer (API_CONNECT, or
 * the daemon's refusal); after that, connection failures and 5xx answers are retried with
 * backoff until the consumer stops, and 4xx refusals (an expired cursor) are thrown.
 */

/** First retry delay; it doubles up to BACKOFF_MAX_MS and starts over once a connection opens. */
export const BACKOFF_MIN_MS = 25;
export const BACKOFF_MAX_MS = 2000;

export interface FeedOptions {
  /** `(since) => request path` for this stream. */
  readonly path: (since: number) => string;
  /** Yield events with seq > since. */
  readonly since: number;
  /** Whether the stream keeps the process alive (default true); see setRef(). */
  readonly ref?: boolean;
  readonly signal?: AbortSignal | undefined;
  /** Called once when the feed stops for good (closed, or failed). */
  readonly onClosed?: () => void;
}

export class EventFeed implements AsyncIterator<HostEvent> {
  private readonly queue: HostEvent[] = [];
  private lastSeq: number;
  private ws: WebSocket | undefined;
  private socket: (() => net.Socket | undefined) | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failure: unknown;
  private ended = false;
  private opened = false;
  private attempt = 0;
  /** The daemon instance the cursor belongs to (the first handshake's tsvisor-instance). */
  private instance: string | undefined;
  private refd: boolean;
  private wake: (() => void) | undefined;
  /** Connections opened so far (the first and every reconnection). */
  connections = 0;

  constructor(
    private readonly conn: Connection,
    private readonly opts: FeedOptions,
  ) {
    this.lastSeq = opts.since;
    this.refd = opts.ref ?? true;
    const signal = opts.signal;
    if (signal) {
      if (signal.aborted) this.ended = true;
      else signal.addEventListener("abort", () => this.close(), { once: true });
    }
    if (!this.ended) this.open();
  }

  /** The last seq received: where a reconnection resumes. */
  /** The feed has stopped for good. */
  get isClosed(): boolean {
    return this.ended;
  }

  get cursor(): number {
    return this.lastSeq;
  }

  /** Keeps the process alive while waiting (true) or not (false). */
  setRef(on: boolean): void {
    this.refd = on;
    const s = this.socket?.();
    if (s) {
      if (on) s.ref();
      else s.unref();
    }
    if (this.timer) {
      if (on) this.timer.ref();
      else this.timer.unref();
    }
  }

  async next(): Promise<IteratorResult<HostEvent>> {
    for (;;) {
      const e = this.queue.shift();
      if (e) return { value: e, done: false };
      if (this.failure !== undefined) {
        const f = this.failure;
        this.failure = undefined;
        this.close();
        throw f;
      }
      if (this.ended) return { value: undefined, done: true };
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = undefined;
    }
  }

  async return(): Promise<IteratorResult<HostEvent>> {
    this.close();
    return { value: undefined, done: true };
  }

  /** Stops for good: the socket is closed, pending and later next() calls end the iteration. */
  close(): void {
    if (this.ended && !this.ws && !this.timer) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.drop();
    this.wake?.();
    this.opts.onClosed?.();
  }

  private drop(): void {
    const ws = this.ws;
    this.ws = undefined;
    this.socket = undefined;
    if (!ws) return;
    ws.removeAllListeners();
    ws.on("error", () => {});
    if (ws.readyState === ws.OPEN) ws.close(1000);
    else ws.terminate();
  }

  private fail(e: unknown): void {
    if (this.ended) return;
    this.failure = e;
    this.ended = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.drop();
    this.wake?.();
    this.opts.onClosed?.();
  }

  /**
   * A cursor counts events of one daemon instance. Reconnecting to a daemon that has restarted
   * would silently resume in a different log (seqs start at 1 again), so that ends the feed
   * with API_CURSOR_EXPIRED instead. Returns false when it did.
   */
  private checkInstance(header: string | string[] | undefined): boolean {
    if (typeof header !== "string") return true;
    this.instance ??= header;
    if (header === this.instance) return true;
    this.fail(
      new TsvisorError(
        "API_CURSOR_EXPIRED",
        `the daemon restarted (instance ${this.instance} is gone, ${header} answers): events after ${this.lastSeq} are lost; list the VMs and follow the new log`,
        { previous_instance: this.instance, instance: header, last_seq: this.lastSeq },
      ),
    );
    return false;
  }

  private open(): void {
    this.timer = undefined;
    if (this.ended) return;
    let opened: ReturnType<Connection["websocket"]>;
    try {
      opened = this.conn.websocket(this.opts.path(this.lastSeq), { ref: this.refd });
    } catch (e) {
      this.fail(e);
      return;
    }
    const { ws, socket } = opened;
    this.ws = ws;
    this.socket = socket;
    let lastError: unknown;
    ws.on("upgrade", (res: IncomingMessage) => {
      if (this.ws === ws) this.checkInstance(res.headers[INSTANCE_HEADER]);
    });
    ws.on("open", () => {
      this.opened = true;
      this.attempt = 0;
      this.connections++;
    });
    ws.on("message", (data: WebSocket.RawData, isBinary: boolean) => {
      if (this.ws !== ws) return;
      let e: unknown;
      try {
        e = isBinary ? undefined : JSON.parse(String(data));
      } catch {
        e = undefined;
      }
      if (!isHostEvent(e)) {
        this.fail(
          new TsvisorError("API_PROTOCOL", "an event message is not a HostEvent", {
            message: String(data).slice(0, 200),
          }),
        );
        return;
      }
      // A reconnection replays from the cursor, so nothing at or before it can be new.
      if (e.seq <= this.lastSeq) return;
      this.lastSeq = e.seq;
      this.queue.push(e);
      this.wake?.();
    });
    ws.on("unexpected-response", (_req, res: IncomingMessage) => {
      this.ws = undefined;
      this.socket = undefined;
      ws.removeAllListeners();
      ws.on("error", () => {});
      const chunks: Buffer[] = [];
      const decide = () => {
        ws.terminate();
        const status = res.statusCode ?? 0;
        if (!this.checkInstance(res.headers[INSTANCE_HEADER])) return;
        let err: TsvisorError;
        try {
          checkVersion(status, res.headers);
          err = errorFromBody(status, Buffer.concat(chunks).toString("utf8"));
        } catch (e) {
          err = e as TsvisorError;
        }
        if (this.opened && status >= 500) this.retry();
        else this.fail(err);
      };
      res.on("data", (c: Buffer) => chunks.push(c));
      res.once("end", decide);
      res.once("error", decide);
    });
    ws.on("error", (e) => {
      lastError = e;
    });
    ws.on("close", () => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      this.socket = undefined;
      if (this.ended) return;
      if (!this.opened) this.fail(connectError(this.conn.endpoint, lastError));
      else this.retry();
    });
  }

  private retry(): void {
    if (this.ended) return;
    if (this.conn.isClosed) {
      this.close();
      return;
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt++;
    this.timer = setTimeout(() => this.open(), delay);
    if (!this.refd) this.timer.unref();
  }
}

/** An async iterable whose iterator is a fresh EventFeed (made when iteration begins). */
export function feedIterable(make: () => Promise<EventFeed>): AsyncIterable<HostEvent> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<HostEvent> {
      let feed: EventFeed | undefined;
      let starting: Promise<EventFeed> | undefined;
      let stopped = false;
      const get = async () => {
        starting ??= make().then((f) => {
          feed = f;
          if (stopped) f.close();
          return f;
        });
        return starting;
      };
      return {
        async next() {
          if (stopped) return { value: undefined, done: true };
          return (await get()).next();
        },
        async return() {
          stopped = true;
          feed?.close();
          return { value: undefined, done: true };
        },
      };
    },
  };
}
