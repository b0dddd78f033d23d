import { existsSync, unlinkSync } from "node:fs";
import { type ApiServer, createApiServer } from "../api/server.js";
import { TsvisorError } from "../core/errors.js";
import type { LocalHostOptions } from "../host/local-host.js";
import { LocalHost } from "../host/local-host.js";
import { listenRmSocket, type RmSocketListener } from "../os/socket-server.js";
import type { LogPort } from "../rpc/log.js";

/**
 * `tsvisor daemon`: one LocalHost (RM + VMM, many VMs) served two ways —
 *  * the HTTP/JSON API on a Unix socket (mode 0600), and on TCP only with a bearer token;
 *  * the RM protocol itself on a second Unix socket, `<API socket>.rm` (mode 0600), for
 *    wire-level clients. Every connection there is one RM session of VMID 3 (HLOS): it may do
 *    whatever the host may, including to the daemon's own VMs, and it receives the HLOS
 *    notifications of its own VMs (docs/daemon.md).
 * stop() shuts down in order: new work refused, running VMs stopped gracefully (VM_SHUTDOWN
 * to the guest) then forcibly after the timeout, every VM destroyed, listeners closed, socket
 * files removed, backend closed.
 */

export interface DaemonOptions extends Omit<LocalHostOptions, "onLog"> {
  /** The API's Unix socket. */
  readonly socketPath: string;
  /** The RM socket (default: socketPath + ".rm"); null: none. */
  readonly rmSocketPath?: string | null;
  /** Also serve the API on TCP (needs token). */
  readonly tcp?: { readonly host: string; readonly port: number };
  readonly token?: string;
  readonly maxBodyBytes?: number;
  /** Graceful stop timeout at shutdown, ms (default 5000). */
  readonly stopTimeoutMs?: number;
  /** One line per notable thing (listening, lifecycle events, problems). */
  readonly log?: (line: string) => void;
}

export interface Daemon {
  readonly host: LocalHost;
  readonly api: ApiServer;
  readonly socketPath: string;
  readonly rmSocketPath: string | null;
  /** The TCP port actually bound (for port 0), when TCP is on. */
  readonly tcpPort: number | undefined;
  /** Graceful shutdown; idempotent. */
  stop(opts?: { timeoutMs?: number }): Promise<void>;
}

export const rmSocketPathFor = (apiSocket: string) => `${apiSocket}.rm`;

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = opts.log ?? (() => {});
  if (opts.tcp && !opts.token) {
    throw new TsvisorError(
      "CLI_USAGE",
      "the API is served on TCP only with a bearer token (--token-file); the Unix socket needs none",
    );
  }
  const rmPath =
    opts.rmSocketPath === null ? null : (opts.rmSocketPath ?? rmSocketPathFor(opts.socketPath));
  const host = LocalHost.open({
    backend: opts.backend,
    kvmDevice: opts.kvmDevice,
    maxVms: opts.maxVms,
    memoryBudget: opts.memoryBudget,
    eventRetention: opts.eventRetention,
    onLog: log,
  });
  const unsubscribe = host.subscribe({}, (e) => {
    const detail = e.exit
      ? ` ${e.exit.exit_type} code ${e.exit.exit_code} (${e.exit.initiator})`
      : e.rm_status
        ? ` ${e.rm_status}`
        : e.reason
          ? ` (${e.reason})`
          : "";
    log(
      `event ${e.seq} ${e.vm}${e.vmid === null ? "" : ` vmid 0x${e.vmid.toString(16)}`} ${e.type}${detail}`,
    );
  });
  let api: ApiServer | undefined;
  let listening: Awaited<ReturnType<ApiServer["listen"]>> | undefined;
  let rm: RmSocketListener | undefined;
  const rmLog: LogPort = {
    write: (r) => {
      if (r.level === "warn" || r.level === "error") log(`rm socket: ${r.message}`);
    },
  };
  try {
    api = createApiServer(host, { log });
    listening = await api.listen({
      socketPath: opts.socketPath,
      ...(opts.tcp ? { tcp: opts.tcp } : {}),
      ...(opts.token ? { token: opts.token } : {}),
      ...(opts.maxBodyBytes ? { maxBodyBytes: opts.maxBodyBytes } : {}),
    });
    if (rmPath) {
      rm = await listenRmSocket(host.stack.server, rmPath, {
        replaceStale: true,
        ownerOnly: true,
        log: rmLog,
      });
    }
  } catch (e) {
    await listening?.close().catch(() => {});
    await rm?.close().catch(() => {});
    unsubscribe();
    await host.close();
    throw e;
  }
  const limits = host.hostInfo().limits;
  log(
    `listening on ${opts.socketPath}${rmPath ? ` (RM protocol on ${rmPath})` : ""}${
      listening.tcpPort !== undefined ? ` and TCP ${opts.tcp!.host}:${listening.tcpPort}` : ""
    }; backend ${host.backendKind}; at most ${limits.max_vms} VMs, ${limits.memory_budget} bytes of guest RAM`,
  );
  let stopped: Promise<void> | undefined;
  const served = listening;
  return {
    host,
    api,
    socketPath: opts.socketPath,
    rmSocketPath: rmPath,
    tcpPort: listening.tcpPort,
    stop(o = {}) {
      stopped ??= (async () => {
        const running = host.listVms().filter((v) => v.state === "running").length;
        const timeoutMs = o.timeoutMs ?? opts.stopTimeoutMs ?? 5000;
        log(
          `shutting down: ${host.listVms().length} VMs (${running} running: graceful stop, forced after ${timeoutMs} ms)`,
        );
        await host.shutdown({ timeoutMs });
        await served.close();
        await rm?.close();
        for (const p of [opts.socketPath, rmPath]) {
          if (p && existsSync(p)) {
            try {
              unlinkSync(p);
            } catch {
              // already gone
            }
          }
        }
        unsubscribe();
        await host.close();
        log("stopped");
      })();
      return stopped;
    },
  };
}
