import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApiServer, type Listening } from "../../api/server.js";
import { LocalHost, type LocalHostOptions } from "../../host/local-host.js";

/**
 * A real daemon stack inside the test process: a LocalHost served by the API server on a Unix
 * socket (and TCP with a token when asked), the same pieces `tsvisor daemon` runs.
 */

export interface Stack {
  readonly host: LocalHost;
  readonly socket: string;
  readonly dir: string;
  readonly tcpPort: number | undefined;
  stop(): Promise<void>;
}

export async function startStack(
  opts: LocalHostOptions & { tcp?: boolean; token?: string } = {},
): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), "tsvisor-sdk-"));
  const socket = join(dir, "api.sock");
  const host = LocalHost.open({ backend: "sim", ...opts });
  let listening: Listening;
  try {
    listening = await createApiServer(host).listen({
      socketPath: socket,
      ...(opts.tcp ? { tcp: { host: "127.0.0.1", port: 0 }, token: opts.token } : {}),
    });
  } catch (e) {
    await host.close();
    throw e;
  }
  return {
    host,
    socket,
    dir,
    tcpPort: listening.tcpPort,
    async stop() {
      await host.shutdown({ timeoutMs: 0 });
      await listening.close();
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A byte-for-byte Unix socket proxy in front of a daemon, so tests can cut every connection
 * the way a network would (the daemon sees an ordinary disconnect) and see what clients sent.
 */
export interface Proxy {
  readonly socket: string;
  /** Connections currently open through the proxy. */
  live(): number;
  /** Destroys every open connection (both sides). */
  dropAll(): void;
  /** What clients sent, as latin1 text. */
  sent(): string;
  close(): Promise<void>;
}

export async function startProxy(target: string, socket: string): Promise<Proxy> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let sent = "";
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    client.on("data", (d: Buffer) => {
      sent += d.toString("latin1");
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const dropAll = () => {
    for (const [a, b] of [...pairs]) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
  };
  return {
    socket,
    live: () => pairs.size,
    dropAll,
    sent: () => sent,
    close() {
      dropAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export { until } from "../../api/testing/harness.js";
