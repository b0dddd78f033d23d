import type { IncomingMessage } from "node:http";
import { Duplex } from "node:stream";
import type WebSocket from "ws";
import { TsvisorError } from "../core/errors.js";
import type { ConsoleStream } from "../host/types.js";
import { type Connection, checkVersion, connectError, errorFromBody } from "./connection.js";

/**
 * A VM's console over the daemon's console WebSocket, as the same Duplex LocalHost gives:
 * reading yields COM1's output (the retained history first unless history is false), writing
 * types into COM1. It ends when the daemon closes the socket (the VM was destroyed); a refused
 * upgrade (no such VM) or a lost connection destroys it with a TsvisorError. Destroying it
 * closes the socket.
 */
export function remoteConsole(
  conn: Connection,
  id: string,
  opts: { history?: boolean | undefined },
): ConsoleStream {
  const path = `/v1/vms/${encodeURIComponent(id)}/console${opts.history === false ? "?history=0" : ""}`;
  let ws: WebSocket | undefined;
  let gone: Error | undefined;
  /** Writes made before the socket opened, sent in order once it does. */
  const pending: { chunk: Buffer; cb: (e?: Error | null) => void }[] = [];

  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      if (gone) return cb(gone);
      if (!ws || ws.readyState === ws.CONNECTING) {
        pending.push({ chunk, cb });
        return;
      }
      ws.send(chunk, { binary: true }, (e) => cb(e ? connectError(conn.endpoint, e) : null));
    },
    final(cb) {
      cb();
    },
    destroy(err, cb) {
      gone ??= new TsvisorError("API_VM_GONE", `the console of ${id} was closed`);
      for (const p of pending.splice(0)) p.cb(gone);
      if (ws) {
        ws.removeAllListeners();
        ws.on("error", () => {});
        if (ws.readyState === ws.OPEN) ws.close(1000);
        else ws.terminate();
        ws = undefined;
      }
      cb(err);
    },
  });

  const failAll = (e: Error) => {
    gone = e;
    for (const p of pending.splice(0)) p.cb(e);
    stream.destroy(e);
  };

  let opened: ReturnType<Connection["websocket"]>;
  try {
    opened = conn.websocket(path);
  } catch (e) {
    process.nextTick(() => failAll(e as Error));
    return stream;
  }
  const socket = opened.ws;
  ws = socket;
  let lastError: unknown;
  let wasOpen = false;
  socket.on("open", () => {
    wasOpen = true;
    for (const p of pending.splice(0)) {
      socket.send(p.chunk, { binary: true }, (e) =>
        p.cb(e ? connectError(conn.endpoint, e) : null),
      );
    }
  });
  socket.on("message", (data: WebSocket.RawData) => {
    const bytes = Array.isArray(data)
      ? Buffer.concat(data)
      : Buffer.isBuffer(data)
        ? data
        : Buffer.from(data);
    stream.push(bytes);
  });
  socket.on("unexpected-response", (_req, res: IncomingMessage) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    const decide = () => {
      if (ws !== socket) return;
      ws = undefined;
      socket.removeAllListeners();
      socket.on("error", () => {});
      socket.terminate();
      const status = res.statusCode ?? 0;
      let err: Error;
      try {
        checkVersion(status, res.headers);
        err = errorFromBody(status, Buffer.concat(chunks).toString("utf8"));
      } catch (e) {
        err = e as Error;
      }
      failAll(err);
    };
    res.once("end", decide);
    res.once("error", decide);
  });
  socket.on("error", (e) => {
    lastError = e;
  });
  socket.on("close", (code: number) => {
    if (ws !== socket) return;
    ws = undefined;
    if (conn.isClosed) {
      // The client was closed on purpose: end quietly.
      gone = new TsvisorError("API_CONNECT", "the client was closed");
      stream.destroy();
      return;
    }
    if (!wasOpen) {
      failAll(connectError(conn.endpoint, lastError));
      return;
    }
    // 1000 is the daemon's "the VM was destroyed" and 1001 its shutting down: the output is
    // complete either way. Anything else lost bytes.
    gone = new TsvisorError("API_VM_GONE", `${id} was destroyed; its console is closed`);
    if (code === 1000 || code === 1001) stream.push(null);
    else failAll(connectError(conn.endpoint, lastError ?? new Error(`closed with code ${code}`)));
  });
  return stream;
}
