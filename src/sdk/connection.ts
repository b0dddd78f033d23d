import http from "node:http";
import { createRequire } from "node:module";
import net from "node:net";
import { resolve as resolvePath } from "node:path";
import type WebSocket from "ws";
import { ERROR_CODES, type ErrorCode, TsvisorError } from "../core/errors.js";

/**
 * How the SDK reaches a daemon: HTTP/1.1 requests over one keep-alive agent (Unix socket or
 * TCP with a bearer token) and WebSockets to the same place. Every answer is checked against
 * the API's shapes here, so the rest of the SDK sees either a typed value or a TsvisorError:
 * the daemon's own code when it sent one we know, API_CONNECT when it cannot be reached,
 * API_PROTOCOL when what came back is not the API.
 */

export const API_VERSION_HEADER = "tsvisor-api";
export const API_VERSION = "1";

/** Where the daemon is. */
export type Endpoint =
  | { readonly kind: "unix"; readonly socketPath: string }
  | { readonly kind: "tcp"; readonly url: URL; readonly token: string | undefined };

export function endpointOf(opts: {
  socket?: string | undefined;
  url?: string | undefined;
  token?: string | undefined;
}): Endpoint {
  if ((opts.socket === undefined) === (opts.url === undefined)) {
    throw new TsvisorError(
      "API_CONNECT",
      "give the daemon's API socket (socket) or its TCP address (url), not both or neither",
    );
  }
  if (opts.socket !== undefined) {
    // ws's ws+unix URL form separates the socket path from the request path with ':'.
    const socketPath = resolvePath(opts.socket);
    if (socketPath.includes(":")) {
      throw new TsvisorError("API_CONNECT", `the socket path '${socketPath}' contains ':'`);
    }
    return { kind: "unix", socketPath };
  }
  let url: URL;
  try {
    url = new URL(opts.url!);
  } catch {
    throw new TsvisorError(
      "API_CONNECT",
      `'${opts.url}' is not a URL (e.g. http://127.0.0.1:7000)`,
    );
  }
  if (url.protocol !== "http:" || url.pathname !== "/" || url.search !== "") {
    throw new TsvisorError(
      "API_CONNECT",
      `'${opts.url}' is not an http://HOST:PORT address (the API lives under /v1 there)`,
    );
  }
  return { kind: "tcp", url, token: opts.token };
}

/** URL hostnames keep IPv6 brackets; sockets want the address without them. */
const bareHost = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, "$1");

export function describeEndpoint(ep: Endpoint): string {
  return ep.kind === "unix" ? ep.socketPath : ep.url.origin;
}

/** A failed connection as API_CONNECT, naming the endpoint and the system's reason. */
export function connectError(ep: Endpoint, e: unknown): TsvisorError {
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  const reason = errno ?? (e instanceof Error ? e.message : String(e));
  const hint =
    ep.kind === "unix"
      ? " (is the daemon running? start one with 'tsvisor daemon --socket PATH')"
      : " (is the daemon listening there? 'tsvisor daemon --listen HOST:PORT --token-file F')";
  return new TsvisorError(
    "API_CONNECT",
    `cannot reach the tsvisor daemon at ${describeEndpoint(ep)}: ${reason}${hint}`,
    { endpoint: describeEndpoint(ep), ...(errno ? { errno } : {}) },
  );
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** An error response's body as a TsvisorError (API_PROTOCOL when it is not the API's shape). */
export function errorFromBody(status: number, text: string): TsvisorError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const err = isObject(body) ? body.error : undefined;
  if (!isObject(err) || typeof err.code !== "string" || typeof err.message !== "string") {
    return new TsvisorError(
      "API_PROTOCOL",
      `the daemon answered HTTP ${status} without the API's error body`,
      { status, body: text.slice(0, 200) },
    );
  }
  const details = isObject(err.details) ? err.details : undefined;
  if (Object.hasOwn(ERROR_CODES, err.code)) {
    return new TsvisorError(err.code as ErrorCode, err.message, details);
  }
  // A code this client does not know (a newer daemon, or INTERNAL): keep everything it said.
  return new TsvisorError("API_PROTOCOL", `${err.code}: ${err.message}`, {
    code: err.code,
    status,
    ...(details ? { details } : {}),
  });
}

export interface RawReply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface RequestOptions {
  readonly body?: unknown;
  readonly signal?: AbortSignal | undefined;
  /** Called when the signal aborts the request (default: RPC_ABORTED). */
  readonly abortError?: () => Error;
}

export class Connection {
  private readonly agent = new http.Agent({ keepAlive: true });
  private readonly sockets = new Set<WebSocket>();
  private closed = false;

  constructor(
    readonly endpoint: Endpoint,
    /** Handshake deadline for connections and WebSocket upgrades. */
    readonly timeoutMs: number,
  ) {}

  get where(): string {
    return describeEndpoint(this.endpoint);
  }

  private authHeaders(): Record<string, string> {
    const ep = this.endpoint;
    return ep.kind === "tcp" && ep.token !== undefined
      ? { authorization: `Bearer ${ep.token}` }
      : {};
  }

  /** One HTTP exchange; the whole body is read. Connection failures become API_CONNECT. */
  raw(method: string, path: string, opts: RequestOptions = {}): Promise<RawReply> {
    return this.rawOnce(method, path, opts, method === "GET");
  }

  private rawOnce(
    method: string,
    path: string,
    opts: RequestOptions,
    mayRetry: boolean,
  ): Promise<RawReply> {
    if (this.closed) {
      return Promise.reject(new TsvisorError("API_CONNECT", "this client has been closed"));
    }
    const ep = this.endpoint;
    const text = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    return new Promise<RawReply>((resolve, reject) => {
      const signal = opts.signal;
      const abortError =
        opts.abortError ??
        (() => new TsvisorError("RPC_ABORTED", `${method} ${path} was abandoned by its caller`));
      if (signal?.aborted) return reject(abortError());
      const req = http.request({
        agent: this.agent,
        method,
        path,
        ...(ep.kind === "unix"
          ? { socketPath: ep.socketPath }
          : { host: bareHost(ep.url), port: Number(ep.url.port || 80) }),
        headers: {
          accept: "application/json",
          ...this.authHeaders(),
          ...(text !== undefined
            ? {
                "content-type": "application/json",
                "content-length": String(Buffer.byteLength(text)),
              }
            : {}),
        },
      });
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        // Dropping the connection is how the API hears that a create is abandoned.
        req.destroy();
        reject(abortError());
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = () => {
        settled = true;
        signal?.removeEventListener("abort", onAbort);
      };
      // Connecting is bounded; the answer is not (a stop answers after the guest's exit).
      const connectTimer = setTimeout(() => {
        req.destroy(Object.assign(new Error("timed out connecting"), { code: "ETIMEDOUT" }));
      }, this.timeoutMs);
      req.on("socket", (s) => {
        if (!s.connecting) clearTimeout(connectTimer);
        else s.once("connect", () => clearTimeout(connectTimer));
      });
      req.once("close", () => clearTimeout(connectTimer));
      req.on("error", (e: NodeJS.ErrnoException) => {
        if (settled) return;
        done();
        // A pooled keep-alive connection the daemon closed just as we reused it: once more
        // on a fresh one, for requests that are safe to repeat.
        if (mayRetry && req.reusedSocket && (e.code === "ECONNRESET" || e.code === "EPIPE")) {
          this.rawOnce(method, path, opts, false).then(resolve, reject);
          return;
        }
        reject(connectError(ep, e));
      });
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", (e) => {
          if (settled) return;
          done();
          reject(connectError(ep, e));
        });
        res.on("end", () => {
          if (settled) return;
          done();
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          });
        });
      });
      req.end(text);
    });
  }

  /**
   * A JSON exchange: the success body checked by `check` (API_PROTOCOL if it does not pass),
   * an error body turned into its TsvisorError.
   */
  async json<T>(
    method: string,
    path: string,
    check: (v: unknown) => v is T,
    what: string,
    opts: RequestOptions = {},
  ): Promise<T> {
    const reply = await this.raw(method, path, opts);
    const text = reply.body.toString("utf8");
    checkVersion(reply.status, reply.headers);
    if (reply.status >= 400) throw errorFromBody(reply.status, text);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new TsvisorError("API_PROTOCOL", `${method} ${path}: the answer is not JSON`, {
        status: reply.status,
      });
    }
    if (!check(value)) {
      throw new TsvisorError("API_PROTOCOL", `${method} ${path}: the answer is not ${what}`, {
        status: reply.status,
      });
    }
    return value;
  }

  /**
   * A WebSocket to `path` on the daemon. `ref: false` sockets never keep the process alive.
   * close() of the Connection terminates every socket still open.
   */
  websocket(
    path: string,
    opts: { ref?: boolean } = {},
  ): { ws: WebSocket; socket: () => net.Socket | undefined } {
    if (this.closed) throw new TsvisorError("API_CONNECT", "this client has been closed");
    const ep = this.endpoint;
    let socket: net.Socket | undefined;
    const address =
      ep.kind === "unix" ? `ws+unix://${ep.socketPath}:${path}` : `ws://${ep.url.host}${path}`;
    const WebSocketClass = loadWs();
    const ws = new WebSocketClass(address, {
      headers: this.authHeaders(),
      handshakeTimeout: this.timeoutMs,
      perMessageDeflate: false,
      // Our own connection (the address is the endpoint's, whatever ws derived from the URL),
      // so that background streams can be unref'd.
      createConnection: () => {
        socket =
          ep.kind === "unix"
            ? net.connect({ path: ep.socketPath })
            : net.connect({ host: bareHost(ep.url), port: Number(ep.url.port || 80) });
        if (opts.ref === false) socket.unref();
        return socket;
      },
    } as WebSocket.ClientOptions);
    this.sockets.add(ws);
    ws.once("close", () => this.sockets.delete(ws));
    return { ws, socket: () => socket };
  }

  /** Closes the agent's connections and every WebSocket. Idempotent. */
  close(): void {
    this.closed = true;
    this.agent.destroy();
    for (const ws of this.sockets) {
      ws.on("error", () => {});
      ws.terminate();
    }
    this.sockets.clear();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

/** Every answer carries `tsvisor-api: 1`; anything else is not this API. */
export function checkVersion(status: number, headers: http.IncomingHttpHeaders): void {
  const v = headers[API_VERSION_HEADER];
  if (v !== API_VERSION) {
    throw new TsvisorError(
      "API_PROTOCOL",
      v === undefined
        ? `the answer (HTTP ${status}) has no ${API_VERSION_HEADER} header: is this a tsvisor daemon?`
        : `the daemon speaks API version ${String(v)}, this client ${API_VERSION}`,
      { status },
    );
  }
}

let wsModule: typeof WebSocket | undefined;
/**
 * The `ws` client, required on first use: commands that never open a stream (`tsvisor vm ls`)
 * do not pay for loading it.
 */
function loadWs(): typeof WebSocket {
  wsModule ??= createRequire(import.meta.url)("ws") as typeof WebSocket;
  return wsModule;
}
