import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The real daemon as a child process (`node bin/tsvisor.js daemon …`), for integration tests. */

const BIN = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
  "..",
  "bin",
  "tsvisor.js",
);

export interface SpawnedDaemon {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly dir: string;
  readonly socket: string;
  readonly rmSocket: string;
  /** Everything it wrote on stderr so far. */
  readonly log: () => string;
  /** Resolves with its exit code (or signal name). */
  readonly exited: Promise<number | string>;
  /** SIGTERM (default) and wait for the exit; removes the temp dir. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export async function spawnDaemon(args: readonly string[] = []): Promise<SpawnedDaemon> {
  const dir = mkdtempSync(join(tmpdir(), "tsvisor-daemon-"));
  const socket = join(dir, "api.sock");
  const child = spawn(process.execPath, [BIN, "daemon", "--socket", socket, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  child.stderr!.setEncoding("utf8");
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, sig) => resolve(code ?? sig ?? -1));
  });
  await new Promise<void>((resolve, reject) => {
    const onData = (d: string) => {
      err += d;
      if (err.includes("listening on")) {
        child.stderr!.off("data", onData);
        child.stderr!.on("data", (more: string) => {
          err += more;
        });
        resolve();
      }
    };
    child.stderr!.on("data", onData);
    exited.then((code) =>
      reject(new Error(`the daemon exited (${code}) before listening:\n${err}`)),
    );
  });
  return {
    child,
    pid: child.pid!,
    dir,
    socket,
    rmSocket: `${socket}.rm`,
    log: () => err,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
