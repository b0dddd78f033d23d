import { chmodSync } from "node:fs";
import net from "node:net";

/**
 * What every Unix-socket listener of tsvisor needs: binding so that the file is owner-only
 * from its first moment, and telling a live socket from one a dead process left behind.
 */

/**
 * Runs `bind` (a listen(path) call: Node binds the path synchronously inside it) under a 0177
 * umask. Worker threads cannot set the umask: call restrictToOwner once listening as well.
 */
export function bindOwnerOnly(bind: () => void): void {
  let old: number | undefined;
  try {
    old = process.umask(0o177);
  } catch {
    // Not settable here; the chmod once listening still applies.
  }
  try {
    bind();
  } finally {
    if (old !== undefined) process.umask(old);
  }
}

/** Once listening: the socket file is 0600 whatever the umask was. */
export function restrictToOwner(path: string): void {
  chmodSync(path, 0o600);
}

/**
 * Whether something accepts connections on `path`. Only a refused connection (or no file)
 * means nobody is there; any other error counts as alive, so a live socket is never removed.
 */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", (e: NodeJS.ErrnoException) =>
      resolve(e.code !== "ECONNREFUSED" && e.code !== "ENOENT"),
    );
  });
}
