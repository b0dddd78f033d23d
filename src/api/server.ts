import { createHash, timingSafeEqual } from "node:crypto";
import { lstatSync, statSync, unlinkSync } from "node:fs";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type WebSocket from "ws";
import { WebSocketServer } from "ws";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { INSTANCE_HEADER } from "../host/defaults.js";
import type { LocalHost } from "../host/local-host.js";
import type { HostEvent } from "../host/types.js";
import { bindOwnerOnly, restrictToOwner, socketAnswers } from "../os/unix-socket.js";
import {
  API_VERSION,
  API_VERSION_HEADER,
  errorResponse,
  rawErrorResponse,
  writeError,
  writeJson,
} from "./errors.js";
import { openApiDocument } from "./openapi.js";
import { Outbox, type Transport } from "./outbox.js";
import { type OperationId, type RouteDef, type RouteMatch, Router } from "./routes.js";
import { validate } from "./schemas.js";

/**
 * The daemon's HTTP/JSON API over node:http (no framework) and `ws` for the WebSocket streams.
 * It serves a LocalHost: every route is a call on it, every TsvisorError becomes the coded JSON
 * error body, and anything else is a 500 the server survives. Streams (events over SSE or a
 * WebSocket, the console over a WebSocket) validate their request — cursor, VM — and answer an
 * HTTP error before they upgrade or start streaming, so a client never sees a stream that fails
 * at once.
 */

/** What the server needs of a host: LocalHost's server-facing methods. */
export type ApiHost = Pick<
  LocalHost,
  | "createVm"
  | "inspect"
  | "startVm"
  | "stopVm"
  | "resetVm"
  | "destroyVm"
  | "listVms"
  | "hostInfo"
  | "subscribe"
  | "attachConsole"
  | "instance"
>;

export interface ApiServerOptions {
  /** Problems (500s, slow consumers dropped, abandoned creates), one line each. */
  readonly log?: (line: string) => void;
  /** A stream client this many bytes behind is dropped (default SLOW_CONSUMER_BYTES). */
  readonly slowConsumerBytes?: number;
}

export interface ListenOptions {
  /** The Unix socket to serve on (created 0600; a stale one is replaced, a live one refused). */
  readonly socketPath?: string;
  /** Also serve on TCP; needs `token`. Port 0 picks a free port (see Listening.tcpPort). */
  readonly tcp?: { readonly host: string; readonly port: number };
  /** The bearer token TCP clients must send. The Unix socket ignores it. */
  readonly token?: string;
  /** Largest request body accepted (default 1 MiB). */
  readonly maxBodyBytes?: number;
}

export interface Listening {
  readonly socketPath?: string;
  readonly tcpPort?: number;
  /** Stops accepting, ends the streams, waits for requests in flight, removes the socket. */
  close(): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export { INSTANCE_HEADER };
/** A stream client this far behind is dropped; it resumes with its cursor (docs/api.md). */
export const SLOW_CONSUMER_BYTES = 8 * 1024 * 1024;
export const SSE_KEEPALIVE_MS = 15_000;
/** How long a closing stream's client gets to take the rest before the connection is cut. */
const CLOSE_GRACE_MS = 1000;
/** A WebSocket holding this many unsent bytes takes no more from its outbox until it drains. */
const WS_HIGH_WATER = 64 * 1024;
/** How often console input the guest has not taken yet is offered again. */
const INPUT_RETRY_MS = 10;

interface Reply {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Record<string, string>;
}

interface Call {
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly body: unknown;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly ep: Endpoint;
  /** Aborts when the client goes away before the response is written. */
  readonly signal: AbortSignal;
}

/** A route's work: a reply to write, or undefined when it wrote (or streams) itself. */
type Handler = (call: Call) => Promise<Reply | undefined>;

/** A live stream that close() ends. */
interface Stream {
  end(): void;
}

/** One listen(): its servers, auth and bookkeeping. */
interface Endpoint {
  readonly tokenHash: Buffer | undefined;
  readonly maxBody: number;
  readonly streams: Set<Stream>;
  readonly inflight: Set<Promise<unknown>>;
  closing: boolean;
}

export class ApiServer {
  private readonly router = new Router();
  private readonly log: (line: string) => void;
  private readonly wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    clientTracking: false,
    // Console input arrives in messages no larger than a request body.
    maxPayload: DEFAULT_MAX_BODY_BYTES,
  });
  private readonly handlers: Record<OperationId, Handler>;
  private readonly listeners = new Set<Listening>();
  private openapi: Record<string, unknown> | undefined;
  private readonly slowBytes: number;
  private readonly instance: string;

  constructor(
    private readonly host: ApiHost,
    opts: ApiServerOptions = {},
  ) {
    this.log = opts.log ?? (() => {});
    this.slowBytes = opts.slowConsumerBytes ?? SLOW_CONSUMER_BYTES;
    this.handlers = this.makeHandlers();
    this.instance = host.instance;
    // WebSocket handshakes carry the instance too: a resuming client checks its cursor's origin.
    this.wss.on("headers", (headers: string[]) => {
      headers.push(`${INSTANCE_HEADER}: ${this.instance}`);
    });
  }

  async listen(opts: ListenOptions): Promise<Listening> {
    if (!opts.socketPath && !opts.tcp) {
      throw new TsvisorError("CLI_USAGE", "the API needs a Unix socket path or a TCP address");
    }
    if (opts.tcp && !opts.token) {
      throw new TsvisorError(
        "CLI_USAGE",
        "the API is served on TCP only with a bearer token; the Unix socket needs none",
      );
    }
    const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    if (!Number.isSafeInteger(maxBody) || maxBody < 2) {
      throw new TsvisorError("CLI_USAGE", `maxBodyBytes must be a byte count, not ${maxBody}`);
    }
    const unixEp: Endpoint = newEndpoint(undefined, maxBody);
    const tcpEp: Endpoint = newEndpoint(
      opts.token ? createHash("sha256").update(opts.token).digest() : undefined,
      maxBody,
    );
    const servers: { server: http.Server; ep: Endpoint }[] = [];
    let socketIno: number | undefined;
    const socketPath = opts.socketPath;
    try {
      if (socketPath) {
        await clearStaleSocket(socketPath);
        const server = this.httpServer(unixEp);
        servers.push({ server, ep: unixEp });
        await listenOwnerOnly(server, socketPath);
        socketIno = statSync(socketPath).ino;
      }
      if (opts.tcp) {
        const server = this.httpServer(tcpEp);
        servers.push({ server, ep: tcpEp });
        await listenTcp(server, opts.tcp.host, opts.tcp.port);
      }
    } catch (e) {
      await Promise.all(servers.map((s) => closeServer(s.server, s.ep)));
      if (socketPath && socketIno !== undefined) removeOwnSocket(socketPath, socketIno);
      throw e;
    }
    const tcpServer = opts.tcp ? servers[servers.length - 1]!.server : undefined;
    let closed: Promise<void> | undefined;
    const listening: Listening = {
      ...(socketPath ? { socketPath } : {}),
      ...(tcpServer ? { tcpPort: (tcpServer.address() as AddressInfo).port } : {}),
      close: () => {
        closed ??= (async () => {
          await Promise.all(servers.map((s) => closeServer(s.server, s.ep)));
          if (socketPath && socketIno !== undefined) removeOwnSocket(socketPath, socketIno);
          this.listeners.delete(listening);
        })();
        return closed;
      },
    };
    this.listeners.add(listening);
    return listening;
  }

  /** Closes every listener this server opened. */
  async close(): Promise<void> {
    await Promise.all([...this.listeners].map((l) => l.close()));
  }

  // ---------------------------------------------------------------- plumbing

  private httpServer(ep: Endpoint): http.Server {
    const server = http.createServer((req, res) => {
      const p = this.onRequest(ep, req, res).catch((e) => {
        this.log(`api: request handling failed: ${describe(e)}`);
        if (!res.headersSent) writeError(res, e);
        else res.destroy();
      });
      ep.inflight.add(p);
      void p.finally(() => ep.inflight.delete(p));
    });
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      try {
        this.onUpgrade(ep, req, socket, head);
      } catch (e) {
        if (!isTsvisorError(e)) this.log(`api: upgrade failed: ${describe(e)}`);
        refuse(socket, e, { [INSTANCE_HEADER]: this.instance });
      }
    });
    server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable || err.code === "ECONNRESET") {
        socket.destroy();
        return;
      }
      refuse(
        socket,
        new TsvisorError("API_VALIDATION", `malformed HTTP request (${err.code ?? err.message})`),
      );
    });
    return server;
  }

  private async onRequest(ep: Endpoint, req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader(API_VERSION_HEADER, API_VERSION);
    res.setHeader(INSTANCE_HEADER, this.instance);
    let match: RouteMatch;
    let url: URL;
    const ac = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) ac.abort();
    });
    // A client that closes its end before the answer has gone: the HTTP server keeps a
    // half-closed connection open until it answers, so 'close' alone would come too late
    // (after a 201 nobody reads, for a create).
    const onEnd = () => {
      if (!res.writableFinished) ac.abort();
    };
    req.socket.once("end", onEnd);
    res.once("close", () => req.socket.off("end", onEnd));
    try {
      gate(ep, req);
      url = parseUrl(req.url);
      match = this.router.match(req.method ?? "", url.pathname);
    } catch (e) {
      const allow = isTsvisorError(e, "API_METHOD") ? (e.details?.allow as string[]) : undefined;
      writeError(res, e, {
        ...(allow ? { allow: allow.join(", ") } : {}),
        ...(ep.closing ? { connection: "close" } : {}),
      });
      return;
    }
    const { route, params } = match;
    let body: unknown;
    try {
      checkQuery(route, url.searchParams);
      if (route.body) {
        const raw = await readBody(req, ep.maxBody);
        if (raw === undefined && !route.body.optional) {
          throw new TsvisorError("API_VALIDATION", "(body): this route needs a JSON body", {
            issues: [{ path: "(body)", message: "this route needs a JSON body" }],
          });
        }
        body = validate(route.body.schema, raw === undefined ? {} : raw);
      }
    } catch (e) {
      // A body cut off at the limit leaves the rest unread on the connection: it is not
      // reused, but closed gently, so a client still sending its body reads the 413.
      const drop = isTsvisorError(e, "API_BODY_TOO_LARGE");
      if (drop) lingerOnClose(req.socket);
      writeError(res, e, drop ? { connection: "close" } : {});
      return;
    }
    let reply: Reply | undefined;
    try {
      reply = await this.handlers[route.operationId]({
        params,
        query: url.searchParams,
        body,
        req,
        res,
        ep,
        signal: ac.signal,
      });
    } catch (e) {
      if (!isTsvisorError(e)) this.log(`api: ${route.operationId} failed: ${describe(e)}`);
      if (res.headersSent || res.destroyed) return;
      writeError(res, e);
      return;
    }
    if (reply && !res.headersSent && !res.destroyed) {
      writeJson(res, reply.status, reply.body, reply.headers);
    } else if (!reply && !res.headersSent && !res.destroyed && ac.signal.aborted) {
      // Its client is gone (an abandoned create): nobody to answer, close the connection.
      res.destroy();
    }
  }

  private onUpgrade(ep: Endpoint, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    gate(ep, req);
    const url = parseUrl(req.url);
    const { route, params } = this.router.match(req.method ?? "", url.pathname);
    if (!route.stream) {
      throw new TsvisorError(
        "API_VALIDATION",
        `${url.pathname} does not take a WebSocket upgrade (only the console and event streams do)`,
      );
    }
    if ((req.headers.upgrade ?? "").toLowerCase() !== "websocket") {
      throw new TsvisorError("API_VALIDATION", "the only upgrade offered is websocket");
    }
    // What ws would refuse with a bare 400, refused here with the API's error body.
    const key = req.headers["sec-websocket-key"];
    const version = req.headers["sec-websocket-version"];
    if (typeof key !== "string" || !/^[+/0-9A-Za-z]{22}==$/.test(key.trim())) {
      throw new TsvisorError("API_VALIDATION", "the WebSocket handshake has no valid key");
    }
    if (version !== "13" && version !== "8") {
      throw new TsvisorError("API_VALIDATION", "the WebSocket version must be 13");
    }
    checkQuery(route, url.searchParams);
    // Subscribe (or attach) first, so a bad cursor or an unknown VM is an HTTP error; what
    // arrives before the handshake completes is kept and sent first.
    const pending: (string | Uint8Array)[] = [];
    let outbox: Outbox | undefined;
    let ws: WebSocket | undefined;
    let ended = false;
    let stop: () => void;
    let input: ((b: Uint8Array) => void) | undefined;
    const send = (m: string | Uint8Array) => {
      if (outbox) outbox.push(m);
      else pending.push(m);
    };
    const endOfVm = () => {
      ended = true;
      const sock = ws;
      if (sock && outbox) outbox.whenFlushed(() => sock.close(1000, "the VM was destroyed"));
    };
    if (route.stream === "events") {
      stop = this.host.subscribe(eventFilter(route, params, url.searchParams, req), (e) =>
        send(JSON.stringify(e)),
      );
    } else {
      const handle = this.host.attachConsole(
        params.id!,
        { history: url.searchParams.get("history") !== "0" },
        (b) => send(b),
        endOfVm,
      );
      stop = handle.detach;
      input = consoleInput(handle, () => ws, this.log);
    }
    let upgraded = false;
    // If the handshake still fails (ws answers it), nothing must stay subscribed.
    socket.once("close", () => {
      if (!upgraded) stop();
    });
    this.wss.handleUpgrade(req, socket, head, (sock) => {
      upgraded = true;
      ws = sock;
      const box = new Outbox(wsTransport(sock), this.slowBytes, () => {
        this.log(`api: websocket client dropped: over ${this.slowBytes} bytes behind`);
        closeWs(sock, 1013, "too slow: reconnect (with since = your last seq for events)");
      });
      outbox = box;
      const stream: Stream = {
        end: () => closeWs(sock, 1001, "the daemon is shutting down"),
      };
      ep.streams.add(stream);
      sock.once("close", () => {
        ep.streams.delete(stream);
        box.stop();
        stop();
      });
      sock.on("error", (e) => this.log(`api: websocket: ${describe(e)}`));
      if (input) {
        const take = input;
        sock.on("message", (data) => take(toBytes(data)));
      }
      for (const m of pending.splice(0)) box.push(m);
      if (ended) endOfVm();
      // close() began while the handshake was under way: it did not see this stream.
      if (ep.closing) stream.end();
    });
  }

  // ---------------------------------------------------------------- routes

  private makeHandlers(): Record<OperationId, Handler> {
    const host = this.host;
    const ok = (body: unknown): Reply => ({ status: 200, body });
    return {
      getHost: async () => ok(host.hostInfo()),
      getOpenApi: async () => {
        this.openapi ??= openApiDocument();
        return ok(this.openapi);
      },
      listVms: async () => ok({ vms: host.listVms() }),
      createVm: async ({ body, signal }) => {
        const info = await host.createVm(body as Parameters<ApiHost["createVm"]>[0], signal);
        // A create can finish within one turn of the event loop (all RM calls are in-process),
        // before the poll phase has read a disconnect that is already waiting on the socket:
        // let it run once, so a client that left is seen as gone before it is answered.
        await new Promise((resolve) => setImmediate(resolve));
        if (signal.aborted) {
          // The client left after the create finished but before it heard so: nobody knows
          // this VM exists, so it must not stay.
          this.log(`api: ${info.id}: create abandoned by its client; destroying it`);
          await host.destroyVm(info.id, "create abandoned by its client").catch((e) => {
            this.log(`api: ${info.id}: destroy after abandoned create: ${describe(e)}`);
          });
          return undefined;
        }
        return {
          status: 201,
          body: info,
          headers: { location: `/v1/vms/${encodeURIComponent(info.id)}` },
        };
      },
      getVm: async ({ params }) => ok(host.inspect(params.id!)),
      destroyVm: async ({ params }) => ok(await host.destroyVm(params.id!)),
      startVm: async ({ params }) => ok(await host.startVm(params.id!)),
      stopVm: async ({ params, body }) => ok(await host.stopVm(params.id!, body as object)),
      resetVm: async ({ params }) => ok(await host.resetVm(params.id!)),
      vmConsole: async ({ params, query, res }) => {
        const chunks: Uint8Array[] = [];
        const handle = host.attachConsole(
          params.id!,
          { history: query.get("history") !== "0" },
          (b) => chunks.push(b),
          () => {},
        );
        handle.detach();
        const bytes = Buffer.concat(chunks);
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": String(bytes.length),
        });
        res.end(bytes);
        return undefined;
      },
      streamEvents: async (call) => this.sse(call, ROUTE_EVENTS),
      streamVmEvents: async (call) => this.sse(call, ROUTE_VM_EVENTS),
    };
  }

  /** Server-sent events: the subscription is made before the 200, so errors are plain HTTP. */
  private sse(call: Call, route: "events" | "vm-events"): undefined {
    const { req, res, params, query, ep } = call;
    // Gone before its stream began: its 'close' has passed, so nothing would unsubscribe.
    if (res.destroyed) return undefined;
    const pending: HostEvent[] = [];
    let outbox: Outbox | undefined;
    const frame = (e: HostEvent) =>
      `id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
    const unsubscribe = this.host.subscribe(eventFilterFor(route, params, query, req), (e) => {
      if (outbox) outbox.push(frame(e));
      else pending.push(e);
    });
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    });
    const box = new Outbox(
      { write: (c) => res.write(c), whenDrained: (cb) => res.once("drain", cb) },
      this.slowBytes,
      () => {
        this.log(`api: event stream client dropped: over ${this.slowBytes} bytes behind`);
        endResponse(res);
      },
    );
    outbox = box;
    box.push(": tsvisor events\n\n");
    for (const e of pending.splice(0)) box.push(frame(e));
    const keepalive = setInterval(() => box.push(": keep-alive\n\n"), SSE_KEEPALIVE_MS);
    keepalive.unref();
    const stream: Stream = { end: () => endResponse(res) };
    ep.streams.add(stream);
    res.once("close", () => {
      clearInterval(keepalive);
      box.stop();
      unsubscribe();
      ep.streams.delete(stream);
    });
    return undefined;
  }
}

export function createApiServer(host: ApiHost, opts: ApiServerOptions = {}): ApiServer {
  return new ApiServer(host, opts);
}

// ---------------------------------------------------------------- helpers

const ROUTE_EVENTS = "events" as const;
const ROUTE_VM_EVENTS = "vm-events" as const;

function newEndpoint(tokenHash: Buffer | undefined, maxBody: number): Endpoint {
  return { tokenHash, maxBody, streams: new Set(), inflight: new Set(), closing: false };
}

/** Refuses work once closing, and requests without the token on TCP. */
function gate(ep: Endpoint, req: IncomingMessage): void {
  if (ep.closing) {
    throw new TsvisorError("API_SHUTTING_DOWN", "the API server is closing");
  }
  if (ep.tokenHash && !authorized(req.headers.authorization, ep.tokenHash)) {
    throw new TsvisorError(
      "API_UNAUTHORIZED",
      req.headers.authorization
        ? "the bearer token is wrong"
        : "this listener needs Authorization: Bearer <token>",
    );
  }
}

function authorized(header: string | undefined, tokenHash: Buffer): boolean {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? "");
  if (!m) return false;
  // Hashing first makes the comparison's length fixed, so its time says nothing of the token.
  return timingSafeEqual(createHash("sha256").update(m[1]!).digest(), tokenHash);
}

function parseUrl(raw: string | undefined): URL {
  if (!raw?.startsWith("/")) {
    throw new TsvisorError("API_NOT_FOUND", "the request target must be a path");
  }
  try {
    return new URL(raw, "http://tsvisor");
  } catch {
    throw new TsvisorError("API_NOT_FOUND", "the request target is not a valid path");
  }
}

function checkQuery(route: RouteDef, query: URLSearchParams): void {
  const known = new Set(route.query.map((q) => q.name));
  const seen = new Set<string>();
  for (const [name, value] of query) {
    if (!known.has(name)) {
      throw new TsvisorError(
        "API_VALIDATION",
        `${name}: is not a query parameter of this route${known.size ? ` (${[...known].join(", ")})` : ""}`,
        { issues: [{ path: name, message: "is not a query parameter of this route" }] },
      );
    }
    if (seen.has(name)) {
      throw new TsvisorError("API_VALIDATION", `${name}: given twice`, {
        issues: [{ path: name, message: "given twice" }],
      });
    }
    seen.add(name);
    const q = route.query.find((p) => p.name === name)!;
    validateParam(q.schema, name, value);
  }
}

function validateParam(schema: RouteDef["query"][number]["schema"], name: string, value: string) {
  const r = schema.safeParse(value);
  if (!r.success) {
    const message =
      name === "since" ? "must be an event seq (an integer ≥ 0)" : `'${value}' is not allowed`;
    throw new TsvisorError("API_VALIDATION", `${name}: ${message}`, {
      issues: [{ path: name, message }],
    });
  }
}

function parseSeq(text: string, field: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    const message = "must be an event seq (an integer ≥ 0)";
    throw new TsvisorError("API_VALIDATION", `${field}: ${message}`, {
      issues: [{ path: field, message }],
    });
  }
  return n;
}

/** since: the Last-Event-ID header (a reconnecting EventSource) wins over the query. */
function eventFilterFor(
  route: "events" | "vm-events",
  params: Readonly<Record<string, string>>,
  query: URLSearchParams,
  req: IncomingMessage,
): { since?: number; vm?: string } {
  const header = req.headers["last-event-id"];
  const last = typeof header === "string" && header.trim() !== "" ? header.trim() : undefined;
  const sinceText = last ?? query.get("since") ?? undefined;
  const since =
    sinceText === undefined
      ? undefined
      : parseSeq(sinceText, last !== undefined ? "Last-Event-ID" : "since");
  const vm = route === "vm-events" ? params.id : (query.get("vm") ?? undefined);
  return { ...(since !== undefined ? { since } : {}), ...(vm !== undefined ? { vm } : {}) };
}

function eventFilter(
  route: RouteDef,
  params: Readonly<Record<string, string>>,
  query: URLSearchParams,
  req: IncomingMessage,
): { since?: number; vm?: string } {
  return eventFilterFor(
    route.operationId === "streamVmEvents" ? ROUTE_VM_EVENTS : ROUTE_EVENTS,
    params,
    query,
    req,
  );
}

function isJsonMediaType(header: string | undefined): boolean {
  if (!header) return false;
  const [type, ...params] = header.split(";").map((s) => s.trim().toLowerCase());
  if (type !== "application/json") return false;
  return params.every((p) => !p.startsWith("charset=") || /^charset="?utf-8"?$/.test(p));
}

/** How long a connection refused for its body size waits for the client to finish sending. */
const LINGER_MS = 2000;

/**
 * Node ends a `Connection: close` answer with socket.destroySoon(), which resets a client that
 * is still sending its body: it sees EPIPE before it can read the 413. Instead this socket
 * closes its own side, goes on discarding what arrives (the parser dumps the unread body), and
 * lets go once the client has finished, or after LINGER_MS whatever it does.
 */
function lingerOnClose(socket: net.Socket): void {
  socket.destroySoon = function lingeringClose(this: net.Socket) {
    const timer = setTimeout(() => this.destroy(), LINGER_MS);
    timer.unref();
    this.once("end", () => this.destroy());
    this.once("close", () => clearTimeout(timer));
    this.end();
    this.resume();
  };
}

/**
 * The JSON body (undefined when there is none), read up to `limit` bytes. A declared or actual
 * length over the limit stops reading at once: API_BODY_TOO_LARGE.
 */
async function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = req.headers["content-length"];
  const chunked = req.headers["transfer-encoding"] !== undefined;
  if (!chunked && (declared === undefined || declared === "0")) return undefined;
  if (!isJsonMediaType(req.headers["content-type"])) {
    throw new TsvisorError(
      "API_MEDIA_TYPE",
      `a request body must be application/json, not ${req.headers["content-type"] ?? "untyped"}`,
    );
  }
  const tooLarge = () =>
    new TsvisorError("API_BODY_TOO_LARGE", `the body exceeds ${limit} bytes`, {
      max_body_bytes: limit,
    });
  if (declared !== undefined && Number(declared) > limit) throw tooLarge();
  const bytes = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (c: Buffer) => {
      total += c.length;
      if (total > limit) {
        done();
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks));
    };
    const onError = (e: Error) => {
      done();
      reject(e);
    };
    const done = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
  });
  if (bytes.length === 0) return undefined;
  const text = bytes.toString("utf8");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TsvisorError("API_BAD_JSON", `the body is not JSON: ${(e as Error).message}`);
  }
}

/** Console input: what COM1's ring does not take now is offered again, and reading pauses. */
function consoleInput(
  handle: { write(b: Uint8Array): number },
  ws: () => WebSocket | undefined,
  log: (line: string) => void,
): (b: Uint8Array) => void {
  const queue: Uint8Array[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const pump = () => {
    timer = undefined;
    const sock = ws();
    if (!sock || sock.readyState !== sock.OPEN) {
      queue.length = 0;
      return;
    }
    try {
      while (queue.length > 0) {
        const head = queue[0]!;
        const n = handle.write(head);
        if (n < head.length) {
          queue[0] = head.subarray(n);
          break;
        }
        queue.shift();
      }
    } catch (e) {
      queue.length = 0;
      if (!isTsvisorError(e, "API_VM_GONE")) log(`api: console input: ${describe(e)}`);
      sock.close(1000, "the VM was destroyed");
      return;
    }
    if (queue.length > 0) {
      sock.pause();
      timer = setTimeout(pump, INPUT_RETRY_MS);
    } else sock.resume();
  };
  return (b) => {
    queue.push(b);
    if (timer === undefined) pump();
  };
}

function toBytes(data: WebSocket.RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

/** A WebSocket as an outbox transport: backed up while ws holds WS_HIGH_WATER bytes unsent. */
function wsTransport(ws: WebSocket): Transport {
  const waiters: (() => void)[] = [];
  const sent = () => {
    if (ws.bufferedAmount < WS_HIGH_WATER) for (const w of waiters.splice(0)) w();
  };
  return {
    write: (c) => {
      if (ws.readyState !== ws.OPEN) return true;
      ws.send(c, { binary: typeof c !== "string" }, sent);
      return ws.bufferedAmount < WS_HIGH_WATER;
    },
    whenDrained: (cb) => waiters.push(cb),
  };
}

function closeWs(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === ws.CLOSED) return;
  ws.close(code, reason);
  setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
}

/** Ends a streaming response after what the socket holds; cuts it if the client never reads. */
function endResponse(res: ServerResponse): void {
  if (res.destroyed) return;
  res.end();
  setTimeout(() => res.destroy(), CLOSE_GRACE_MS).unref();
}

function refuse(socket: Duplex, e: unknown, headers: Record<string, string> = {}): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const { status } = errorResponse(e);
  socket.end(
    rawErrorResponse(e, {
      ...headers,
      ...(status === 405 && isTsvisorError(e) ? allowOf(e) : {}),
    }),
  );
}

function allowOf(e: TsvisorError): Record<string, string> {
  const allow = e.details?.allow;
  return Array.isArray(allow) ? { allow: allow.join(", ") } : {};
}

function describe(e: unknown): string {
  if (isTsvisorError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? (e.stack ?? e.message) : String(e);
}

// ---------------------------------------------------------------- sockets

/** A socket file left by a dead daemon is removed; a live one, or any other file, is kept. */
async function clearStaleSocket(path: string): Promise<void> {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) {
    throw new TsvisorError("API_STATE", `${path} exists and is not a socket; not replacing it`);
  }
  if (await socketAnswers(path)) {
    throw new TsvisorError(
      "API_STATE",
      `another process is serving on ${path} (a daemon already running?)`,
      { socket: path },
    );
  }
  unlinkSync(path);
}

function listenOwnerOnly(server: http.Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    bindOwnerOnly(() =>
      server.listen(path, () => {
        server.off("error", reject);
        restrictToOwner(path);
        resolve();
      }),
    );
  });
}

function listenTcp(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

async function closeServer(server: http.Server, ep: Endpoint): Promise<void> {
  ep.closing = true;
  const stopped = new Promise<void>((resolve) => {
    if (!server.listening) resolve();
    else server.close(() => resolve());
  });
  for (const s of [...ep.streams]) s.end();
  server.closeIdleConnections();
  while (ep.inflight.size > 0) await Promise.allSettled([...ep.inflight]);
  server.closeAllConnections();
  await stopped;
}

function removeOwnSocket(path: string, ino: number): void {
  try {
    // Another daemon may have replaced a file we no longer serve; only ours is removed.
    if (statSync(path).ino === ino) unlinkSync(path);
  } catch {
    // already gone
  }
}
