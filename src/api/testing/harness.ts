import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import WebSocket from "ws";
import { LocalHost, type LocalHostOptions } from "../../host/local-host.js";
import type { HostEvent } from "../../host/types.js";
import type { Hypervisor } from "../../hv/types.js";
import { openApiDocument } from "../openapi.js";
import { Router } from "../routes.js";
import {
  type ApiHost,
  type ApiServerOptions,
  createApiServer,
  type Listening,
  type ListenOptions,
} from "../server.js";

/**
 * The API tests' plumbing: a real LocalHost behind a real ApiServer on a Unix socket in a
 * temporary directory, a bare HTTP client that shows the wire as it is (status, headers, raw
 * text), SSE and WebSocket readers, and a checker that validates every response against the
 * OpenAPI document's schema for that route and status.
 */

export interface Api {
  readonly host: LocalHost;
  readonly socketPath: string;
  readonly dir: string;
  readonly listening: Listening;
  readonly logs: string[];
  close(): Promise<void>;
}

export async function startApi(
  opts: {
    backend?: "sim" | Hypervisor;
    host?: Omit<LocalHostOptions, "backend">;
    listen?: Omit<ListenOptions, "socketPath">;
    /** Serve this instead of the LocalHost (still created, for cleanup symmetry). */
    wrap?: (host: LocalHost) => ApiHost;
    server?: Omit<ApiServerOptions, "log">;
  } = {},
): Promise<Api> {
  const dir = mkdtempSync(join(tmpdir(), "tsvisor-api-"));
  const socketPath = join(dir, "api.sock");
  const logs: string[] = [];
  const host = LocalHost.open({ backend: opts.backend ?? "sim", ...opts.host });
  const server = createApiServer(opts.wrap ? opts.wrap(host) : host, {
    ...opts.server,
    log: (l) => logs.push(l),
  });
  const listening = await server.listen({ socketPath, ...opts.listen });
  return {
    host,
    socketPath,
    dir,
    listening,
    logs,
    async close() {
      await listening.close();
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly text: string;
  // biome-ignore lint/suspicious/noExplicitAny: bodies are inspected field by field
  readonly json: any;
}

export type Target = { socketPath: string } | { port: number };

export function request(
  to: Target | string,
  method: string,
  path: string,
  opts: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Reply> {
  const target = typeof to === "string" ? { socketPath: to } : to;
  const raw =
    opts.body === undefined
      ? undefined
      : typeof opts.body === "string" || Buffer.isBuffer(opts.body)
        ? opts.body
        : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        ...("socketPath" in target
          ? { socketPath: target.socketPath }
          : { host: "127.0.0.1", port: target.port }),
        method,
        path,
        agent: false,
        headers: {
          ...(raw !== undefined ? { "content-type": "application/json" } : {}),
          ...opts.headers,
        },
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(raw);
  });
}

/**
 * Writes `head` (and then `chunks`, one per write, while the server keeps the connection) on a
 * raw socket and returns everything the server sent until it closed.
 */
export function rawExchange(
  socketPath: string,
  head: string,
  chunks: Buffer[] = [],
): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const got: Buffer[] = [];
    let closed = false;
    sock.on("data", (d) => got.push(d));
    sock.on("error", (e: NodeJS.ErrnoException) => {
      // The server may close while we still write: what it answered is what counts.
      if (e.code !== "EPIPE" && e.code !== "ECONNRESET") reject(e);
    });
    sock.on("close", () => {
      closed = true;
      resolve(Buffer.concat(got).toString("latin1"));
    });
    sock.write(head);
    let i = 0;
    const next = () => {
      // A client stops sending once the server has answered (as for a 413).
      if (closed || got.length > 0 || i >= chunks.length) return;
      sock.write(chunks[i++]!, () => setImmediate(next));
    };
    next();
  });
}

/** Status and JSON body of a raw HTTP/1.1 response. */
export function parseRaw(text: string): { status: number; headers: string; json: unknown } {
  const end = text.indexOf("\r\n\r\n");
  const headers = text.slice(0, end);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1]);
  const body = text.slice(end + 4);
  return { status, headers, json: body ? JSON.parse(body) : undefined };
}

// ---------------------------------------------------------------- streams

export interface SseStream {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly events: HostEvent[];
  /** Each event's `id:` and `event:` lines as sent. */
  readonly frames: { id: string; event: string }[];
  readonly comments: string[];
  /** The error body when the status is not 200. */
  readonly error: unknown;
  readonly ended: Promise<void>;
  close(): void;
}

export function openSse(
  socketPath: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method: "GET", path, agent: false, headers }, (res) => {
      const events: HostEvent[] = [];
      const frames: { id: string; event: string }[] = [];
      const comments: string[] = [];
      let buf = "";
      let errorText = "";
      const ended = new Promise<void>((r) => {
        res.once("close", () => r());
      });
      const stream: SseStream = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events,
        frames,
        comments,
        get error() {
          return errorText ? JSON.parse(errorText) : undefined;
        },
        ended,
        close: () => req.destroy(),
      };
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        if (res.statusCode !== 200) {
          errorText += chunk;
          return;
        }
        buf += chunk;
        for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const fields: Record<string, string> = {};
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) comments.push(line.slice(1).trim());
            else {
              const c = line.indexOf(":");
              fields[line.slice(0, c)] = line.slice(c + 1).replace(/^ /, "");
            }
          }
          if (fields.data !== undefined) {
            events.push(JSON.parse(fields.data));
            frames.push({ id: fields.id ?? "", event: fields.event ?? "" });
          }
        }
      });
      res.on("error", () => {});
      if (res.statusCode === 200) resolve(stream);
      else res.once("end", () => resolve(stream));
    });
    req.on("error", reject);
    req.end();
  });
}

export interface WsFailure {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly json: unknown;
}

export interface WsOpen {
  readonly ws: WebSocket;
  /** Every message since the handshake (kept from the first, before anyone listens). */
  readonly messages: { readonly data: Buffer; readonly binary: boolean }[];
  /** The close code. */
  readonly closed: Promise<number>;
  readonly failure?: undefined;
}

/** Opens a WebSocket on the API socket, or reports the HTTP answer that refused it. */
export function openWs(
  socketPath: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<WsOpen | { ws?: undefined; failure: WsFailure }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${socketPath}:${path}`, { headers });
    const messages: { data: Buffer; binary: boolean }[] = [];
    // Frames that came with the handshake are emitted before an awaiting caller resumes.
    ws.on("message", (data: Buffer, binary) => messages.push({ data, binary }));
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    ws.once("open", () => resolve({ ws, messages, closed }));
    ws.once("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({
          failure: {
            status: res.statusCode ?? 0,
            headers: res.headers,
            json: text ? JSON.parse(text) : undefined,
          },
        });
        ws.terminate();
      });
    });
    ws.once("error", (e) => reject(e));
  });
}

/** An events WebSocket's messages as HostEvents (a live view). */
export function collectWs(open: WsOpen): { readonly events: HostEvent[]; closed: Promise<number> } {
  let parsed: HostEvent[] = [];
  return {
    get events() {
      if (parsed.length !== open.messages.length) {
        parsed = open.messages.map((m) => JSON.parse(m.data.toString("utf8")) as HostEvent);
      }
      return parsed;
    },
    closed: open.closed,
  };
}

/** Resolves once `pred` holds (checked every few ms; the test's own timeout bounds it). */
export async function until(pred: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > 60_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// ---------------------------------------------------------------- document checks

const pointer = (...parts: string[]) =>
  parts.map((p) => encodeURIComponent(p.replace(/~/g, "~0").replace(/\//g, "~1"))).join("/");

/** Validates bodies against the document's schema for (route, status, media type). */
export class DocChecker {
  readonly doc = openApiDocument();
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  private readonly router = new Router();
  private readonly cache = new Map<string, ValidateFunction>();

  constructor() {
    this.ajv.addSchema(this.doc, "openapi");
  }

  /** The operation's documented response for `status` (fails the test when there is none). */
  private validator(method: string, path: string, status: number, media: string) {
    const { route } = this.router.match(method, new URL(path, "http://x").pathname);
    const key = `${route.method} ${route.path} ${status} ${media}`;
    let v = this.cache.get(key);
    if (!v) {
      // biome-ignore lint/suspicious/noExplicitAny: walking the generated document
      const paths = this.doc.paths as any;
      const responses = paths[route.path][route.method.toLowerCase()].responses;
      assert.ok(responses[String(status)], `${key}: the document has no ${status} response`);
      assert.ok(
        responses[String(status)].content?.[media],
        `${key}: the document's ${status} response has no ${media} content`,
      );
      v = this.ajv.compile({
        $ref: `openapi#/${pointer("paths", route.path, route.method.toLowerCase(), "responses", String(status), "content", media, "schema")}`,
      });
      this.cache.set(key, v);
    }
    return v;
  }

  /** Asserts that a JSON reply is what the document says this route answers with this status. */
  check(method: string, path: string, reply: { status: number; json: unknown }): void {
    const v = this.validator(method, path, reply.status, "application/json");
    assert.ok(
      v(reply.json),
      `${method} ${path} → ${reply.status}: ${this.ajv.errorsText(v.errors)}\n${JSON.stringify(reply.json)}`,
    );
  }

  /** Asserts that a value is the named component schema (HostEvent, ErrorBody, …). */
  checkComponent(name: string, value: unknown): void {
    let v = this.cache.get(name);
    if (!v) {
      v = this.ajv.compile({ $ref: `openapi#/components/schemas/${name}` });
      this.cache.set(name, v);
    }
    assert.ok(v(value), `${name}: ${this.ajv.errorsText(v.errors)}\n${JSON.stringify(value)}`);
  }

  checkEvent(e: unknown): void {
    this.checkComponent("HostEvent", e);
  }
}
