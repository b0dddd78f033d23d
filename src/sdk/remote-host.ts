import { type Deferred, deferred } from "../core/deferred.js";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import type {
  ConsoleOptions,
  ConsoleStream,
  CreateOptions,
  EventOptions,
  ExitInfo,
  HostApi,
  HostEvent,
  HostEventType,
  HostInfo,
  StopOptions,
  VmHandle,
  VmInfo,
  VmSpec,
} from "../host/types.js";
import { Connection, checkVersion, endpointOf, errorFromBody } from "./connection.js";
import { remoteConsole } from "./console.js";
import { EventFeed, feedIterable } from "./events.js";
import { isHostInfo, isVmInfo, isVmList } from "./shapes.js";

/**
 * The HostApi of a running `tsvisor daemon`, over its HTTP/JSON API: the same calls, results
 * and error codes as an in-process LocalHost, so a program can switch between them. Requests
 * share one keep-alive connection pool; events and consoles are WebSockets. close() closes all
 * of it, so a script that calls it exits.
 */

export interface RemoteHostOptions {
  /** The daemon's API Unix socket (`tsvisor daemon --socket PATH`). */
  readonly socket?: string;
  /** Or its TCP endpoint, `http://HOST:PORT` (`tsvisor daemon --listen`); needs `token`. */
  readonly url?: string;
  /** The bearer token for `url`. */
  readonly token?: string;
  /** How long connecting (and a WebSocket handshake) may take, ms (default 10,000). */
  readonly timeoutMs?: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

const vmPath = (id: string) => `/v1/vms/${encodeURIComponent(id)}`;

export class RemoteHost implements HostApi {
  private readonly handles = new Set<RemoteVmHandle>();
  private readonly feeds = new Set<EventFeed>();

  private constructor(private readonly conn: Connection) {}

  /**
   * Connects and checks that a tsvisor daemon answers (GET /v1/host): API_CONNECT when
   * nothing listens there, API_UNAUTHORIZED for a missing or wrong token, API_PROTOCOL when
   * something else answers.
   */
  static async connect(opts: RemoteHostOptions): Promise<RemoteHost> {
    const timeout = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    if (!Number.isSafeInteger(timeout) || timeout <= 0) {
      throw new TsvisorError("API_CONNECT", `timeoutMs must be a positive integer, not ${timeout}`);
    }
    const host = new RemoteHost(new Connection(endpointOf(opts), timeout));
    try {
      await host.hostInfo();
    } catch (e) {
      await host.close();
      throw e;
    }
    return host;
  }

  /** The socket path or URL this client talks to. */
  get endpoint(): string {
    return this.conn.where;
  }

  // ---------------------------------------------------------------- one request each

  hostInfo(): Promise<HostInfo> {
    return this.conn.json("GET", "/v1/host", isHostInfo, "a HostInfo");
  }

  async listVms(): Promise<VmInfo[]> {
    return (await this.conn.json("GET", "/v1/vms", isVmList, "a VM list")).vms;
  }

  /** POST /v1/vms; aborting the signal drops the request, which rolls the create back. */
  createVm(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo> {
    return this.conn.json("POST", "/v1/vms", isVmInfo, "a VmInfo", {
      body: spec,
      signal,
      abortError: () => new TsvisorError("RPC_ABORTED", "the create was abandoned by its caller"),
    });
  }

  inspect(idOrName: string): Promise<VmInfo> {
    return this.conn.json("GET", vmPath(idOrName), isVmInfo, "a VmInfo");
  }

  startVm(idOrName: string): Promise<VmInfo> {
    return this.conn.json("POST", `${vmPath(idOrName)}/start`, isVmInfo, "a VmInfo");
  }

  /** Answers after the VM's exit (a graceful stop is forced after timeout_ms). */
  stopVm(idOrName: string, opts: StopOptions = {}): Promise<VmInfo> {
    const body: Record<string, unknown> = {};
    if (opts.force !== undefined) body.force = opts.force;
    if (opts.timeout_ms !== undefined) body.timeout_ms = opts.timeout_ms;
    return this.conn.json("POST", `${vmPath(idOrName)}/stop`, isVmInfo, "a VmInfo", { body });
  }

  resetVm(idOrName: string): Promise<VmInfo> {
    return this.conn.json("POST", `${vmPath(idOrName)}/reset`, isVmInfo, "a VmInfo");
  }

  /** The VM as it was, with state "destroyed". */
  destroyVm(idOrName: string): Promise<VmInfo> {
    return this.conn.json("DELETE", vmPath(idOrName), isVmInfo, "a VmInfo");
  }

  /** The console output the daemon retains (the last 64 KiB). */
  async consoleOutput(idOrName: string): Promise<Uint8Array> {
    const reply = await this.conn.raw("GET", `${vmPath(idOrName)}/console`);
    if (reply.status >= 400) {
      checkVersion(reply.status, reply.headers);
      throw errorFromBody(reply.status, reply.body.toString("utf8"));
    }
    return new Uint8Array(reply.body);
  }

  /** A console stream (see ConsoleStream); it is closed by close() too. */
  openConsole(idOrName: string, opts: ConsoleOptions = {}): ConsoleStream {
    return remoteConsole(this.conn, idOrName, opts);
  }

  /**
   * An event feed from `since` (default: from now on, the daemon's next_event − 1 read first
   * so that a reconnection has a cursor even before the first event).
   */
  async openFeed(opts: EventOptions & { ref?: boolean }): Promise<EventFeed> {
    const since = opts.since ?? (await this.hostInfo()).next_event - 1;
    const vm = opts.vm;
    const path = (cursor: number) =>
      vm === undefined ? `/v1/events?since=${cursor}` : `${vmPath(vm)}/events?since=${cursor}`;
    let made: EventFeed | undefined;
    const feed = new EventFeed(this.conn, {
      path,
      since,
      signal: opts.signal,
      ...(opts.ref !== undefined ? { ref: opts.ref } : {}),
      onClosed: () => {
        if (made) this.feeds.delete(made);
      },
    });
    made = feed;
    if (!feed.isClosed) this.feeds.add(feed);
    return feed;
  }

  // ---------------------------------------------------------------- HostApi

  async create(spec: VmSpec, opts: CreateOptions = {}): Promise<VmHandle> {
    return this.handle(await this.createVm(spec, opts.signal));
  }

  async vm(idOrName: string): Promise<VmHandle> {
    return this.handle(await this.inspect(idOrName));
  }

  list(): Promise<VmInfo[]> {
    return this.listVms();
  }

  info(): Promise<HostInfo> {
    return this.hostInfo();
  }

  events(opts: EventOptions = {}): AsyncIterable<HostEvent> {
    return feedIterable(() => this.openFeed(opts));
  }

  /** Disconnects: every request pool, event stream and console of this client is closed. */
  async close(): Promise<void> {
    for (const h of this.handles) h.detach();
    this.handles.clear();
    for (const f of this.feeds) f.close();
    this.feeds.clear();
    this.conn.close();
  }

  private handle(info: VmInfo): RemoteVmHandle {
    return new RemoteVmHandle(this, info);
  }

  /** @internal a handle whose `exited` follows a stream, until its VM is gone or close(). */
  trackHandle(h: RemoteVmHandle): void {
    this.handles.add(h);
  }

  /** @internal */
  forgetHandle(h: RemoteVmHandle): void {
    this.handles.delete(h);
  }
}

const sameExit = (a: ExitInfo | null | undefined, b: ExitInfo | null | undefined) =>
  !!a && !!b && JSON.stringify(a) === JSON.stringify(b);

/**
 * A handle on one of the daemon's VMs. `exited` follows the VM's event stream, opened the first
 * time `exited` is read (from the cursor current then, with the VM's state read right after):
 * vm.exited resolves it, vm.destroyed before an exit rejects it with API_VM_GONE, and a start
 * or reset after a settled exit makes a new one, as LocalHost's does. The handle's own start()
 * and reset() renew it from their answers, so a read right after them never sees the previous
 * run's exit. The stream keeps the process alive only while a pending `exited` has been read.
 */
class RemoteVmHandle implements VmHandle {
  readonly id: string;
  private current: Deferred<ExitInfo> = deferred<ExitInfo>();
  /** Someone read `exited` while it was pending: keep the process alive for it. */
  private wanted = false;
  /** The last exit that settled a promise here (to tell a new exit from a stale one). */
  private lastExit: ExitInfo | undefined;
  /** After a renewal from our own call: events up to this type are already accounted for. */
  private skipUntil: HostEventType | undefined;
  private feed: EventFeed | undefined;
  private watching = false;
  private done = false;

  constructor(
    private readonly host: RemoteHost,
    info: VmInfo,
  ) {
    this.id = info.id;
    if (info.state === "exited" && info.exit) this.settle(info.exit);
  }

  get exited(): Promise<ExitInfo> {
    if (!this.current.settled) this.wanted = true;
    this.watch();
    this.refresh();
    return this.current.promise;
  }

  info(): Promise<VmInfo> {
    return this.host.inspect(this.id);
  }

  start(): Promise<VmInfo> {
    return this.renewing("vm.started", () => this.host.startVm(this.id));
  }

  stop(opts?: StopOptions): Promise<VmInfo> {
    return this.host.stopVm(this.id, opts);
  }

  reset(): Promise<VmInfo> {
    return this.renewing("vm.reset", () => this.host.resetVm(this.id));
  }

  async destroy(): Promise<void> {
    await this.host.destroyVm(this.id);
  }

  console(opts: ConsoleOptions = {}): ConsoleStream {
    return this.host.openConsole(this.id, opts);
  }

  events(opts: Omit<EventOptions, "vm"> = {}): AsyncIterable<HostEvent> {
    return this.host.events({ ...opts, vm: this.id });
  }

  /** host.close(): the stream closes and a pending exit is rejected. */
  detach(): void {
    this.done = true;
    this.feed?.close();
    this.current.reject(new TsvisorError("API_CONNECT", "the client was closed"));
  }

  private settle(exit: ExitInfo): void {
    this.lastExit = exit;
    this.current.resolve(exit);
    this.wanted = false;
  }

  private renew(): void {
    this.current = deferred<ExitInfo>();
    this.wanted = false;
  }

  private refresh(): void {
    this.feed?.setRef(this.wanted && !this.current.settled);
  }

  /**
   * start() and reset() from their answers: a run that ended during the call settles its
   * promise, and a new run (or the VM back at created) gets a new one. When the stream did this
   * already, nothing is left to do; otherwise it skips what the answer accounted for.
   */
  private async renewing(kind: HostEventType, call: () => Promise<VmInfo>): Promise<VmInfo> {
    const before = this.current;
    const wasSettled = before.settled;
    const info = await call();
    if (this.current !== before || this.done) return info;
    const ended = info.exit && !sameExit(info.exit, this.lastExit) ? info.exit : undefined;
    if (kind === "vm.started") {
      if (wasSettled) this.renew();
      if (ended) this.settle(ended);
    } else {
      if (ended) this.settle(ended);
      if (this.current.settled) this.renew();
    }
    if (this.current !== before && this.watching) this.skipUntil = kind;
    this.refresh();
    return info;
  }

  private watch(): void {
    if (this.watching || this.done) return;
    this.watching = true;
    this.host.trackHandle(this);
    void this.follow();
  }

  /** Cursor, then state, then the stream from the cursor: no exit falls between them. */
  private async follow(): Promise<void> {
    let feed: EventFeed;
    try {
      const cursor = (await this.host.hostInfo()).next_event - 1;
      const info = await this.host.inspect(this.id);
      if (info.state === "exited" && info.exit && !sameExit(info.exit, this.lastExit)) {
        this.settle(info.exit);
      }
      this.skipUntil = undefined;
      feed = await this.host.openFeed({
        since: cursor,
        vm: this.id,
        ref: this.wanted && !this.current.settled,
      });
    } catch (e) {
      return this.lost(e);
    }
    if (this.done) {
      feed.close();
      return;
    }
    this.feed = feed;
    this.refresh();
    try {
      for (;;) {
        const r = await feed.next();
        if (r.done || this.apply(r.value)) break;
        this.refresh();
      }
    } catch (e) {
      return this.lost(e);
    } finally {
      feed.close();
      if (this.feed === feed) this.feed = undefined;
    }
  }

  /** One event of this VM; true when the VM is gone and the stream can stop. */
  private apply(e: HostEvent): boolean {
    if (this.skipUntil !== undefined && e.type !== "vm.destroyed") {
      if (e.type === this.skipUntil) this.skipUntil = undefined;
      return false;
    }
    switch (e.type) {
      case "vm.exited":
        if (e.exit && !this.current.settled) this.settle(e.exit);
        return false;
      case "vm.started":
      case "vm.reset":
        if (this.current.settled) this.renew();
        return false;
      case "vm.destroyed":
        this.done = true;
        this.current.reject(
          new TsvisorError("API_VM_GONE", `${this.id} was destroyed before it exited`, {
            vm: this.id,
          }),
        );
        this.host.forgetHandle(this);
        return true;
      default:
        return false;
    }
  }

  /**
   * The stream failed. An expired cursor starts over from the VM's state; a VM that no longer
   * exists is API_VM_GONE; anything else settles a pending exit with the failure.
   */
  private async lost(e: unknown): Promise<void> {
    if (this.done) return;
    if (isTsvisorError(e, "API_CURSOR_EXPIRED")) return this.follow();
    if (isTsvisorError(e, "API_NOT_FOUND")) {
      e = new TsvisorError("API_VM_GONE", `${this.id} was destroyed`, { vm: this.id });
    }
    this.done = true;
    this.watching = false;
    this.current.reject(e);
    this.host.forgetHandle(this);
  }
}
