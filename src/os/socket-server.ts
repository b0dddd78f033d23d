import { unlinkSync } from "node:fs";
import net from "node:net";
import { TsvisorError } from "../core/errors.js";
import { Vmid } from "../protocol/enums.js";
import type { LogPort } from "../rpc/log.js";
import { nullLog } from "../rpc/log.js";
import type { RmServer } from "../rpc/server.js";
import { SocketEndpoint } from "./socket-endpoint.js";
import { bindOwnerOnly, restrictToOwner, socketAnswers } from "./unix-socket.js";

export interface RmSocketListenerOptions {
  /**
   * VMID every connection is served as. A socket carries no identity an RM could trust, so
   * one listener speaks for one VMID; the default is the host, HLOS (3).
   */
  readonly vmid?: number;
  readonly log?: LogPort;
  /**
   * When the path exists but nobody accepts connections on it (a socket left by a process
   * that died), remove it and bind again. A live listener is never displaced.
   */
  readonly replaceStale?: boolean;
  /** Bind the socket owner-only (0600) from its first moment (os/unix-socket.ts). */
  readonly ownerOnly?: boolean;
}

export interface RmSocketListener {
  readonly path: string;
  /** Connections currently open. */
  readonly connections: number;
  /** Stops listening and drops every connection (their sessions close on the server). */
  close(): Promise<void>;
}

/**
 * Serves an RmServer on a Unix stream socket: every connection becomes one session of
 * `vmid`. Resolves once listening; rejects with RPC_CLOSED if the path cannot be bound
 * (for example because it exists already; see `replaceStale`).
 */
export function listenRmSocket(
  server: RmServer,
  path: string,
  opts: RmSocketListenerOptions = {},
): Promise<RmSocketListener> {
  const vmid = opts.vmid ?? Vmid.HLOS;
  const log = opts.log ?? nullLog;
  const sockets = new Set<net.Socket>();
  let counter = 0;
  const listener = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    const endpoint = new SocketEndpoint(socket, `unix:${path}#${++counter}`);
    try {
      server.attach(vmid, endpoint);
    } catch (e) {
      log.write({
        level: "warn",
        event: "connection.refused",
        message: `refused a connection on ${path}: ${(e as Error).message}`,
      });
      socket.destroy();
    }
  });
  const bind = () =>
    opts.ownerOnly ? bindOwnerOnly(() => listener.listen(path)) : listener.listen(path);
  return new Promise((resolve, reject) => {
    let retried = false;
    const fail = (e: NodeJS.ErrnoException) => {
      if (e.code === "EADDRINUSE" && opts.replaceStale && !retried) {
        retried = true;
        socketAnswers(path).then((alive) => {
          if (alive) reject(listenError(path, e));
          else {
            try {
              unlinkSync(path);
            } catch {
              // Gone already: binding again is all that is needed.
            }
            bind();
          }
        }, reject);
        return;
      }
      listener.off("error", fail);
      reject(listenError(path, e));
    };
    listener.on("error", fail);
    listener.once("listening", () => {
      listener.off("error", fail);
      if (opts.ownerOnly) restrictToOwner(path);
      listener.on("error", (e) => {
        log.write({
          level: "error",
          event: "listener.error",
          message: `the socket listener on ${path} failed: ${e.message}`,
        });
      });
      log.write({
        level: "info",
        event: "listener.opened",
        message: `RM listening on ${path}`,
        vmid,
      });
      resolve({
        path,
        get connections() {
          return sockets.size;
        },
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            listener.close(() => {
              log.write({
                level: "info",
                event: "listener.closed",
                message: `stopped listening on ${path}`,
              });
              done();
            });
          }),
      });
    });
    bind();
  });
}

function listenError(path: string, e: NodeJS.ErrnoException): TsvisorError {
  return new TsvisorError("RPC_CLOSED", `cannot listen on ${path}: ${e.message}`, {
    errno: e.code,
  });
}

/** True when something accepts connections on `path`. */
