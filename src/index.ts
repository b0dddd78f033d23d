/**
 * tsvisor as a library: `import { Host } from "tsvisor"`.
 *
 *   const host = Host.open({ backend: "kvm" });             // in this process
 *   const host = await Host.connect({ socket: "/run/tsvisor.sock" }); // a daemon's
 *
 * Both give the same HostApi: create VMs, start/stop/reset/destroy them, read their state,
 * follow events with a resumable cursor, talk to their consoles, await their exits.
 */
import { LocalHost, type LocalHostOptions } from "./host/local-host.js";
import type { HostApi } from "./host/types.js";
import { RemoteHost, type RemoteHostOptions } from "./sdk/remote-host.js";

export { ERROR_CODES, type ErrorCode, isTsvisorError, TsvisorError } from "./core/errors.js";
export { LocalHost, type LocalHostOptions } from "./host/local-host.js";
export type * from "./host/types.js";
export { RemoteHost, type RemoteHostOptions } from "./sdk/remote-host.js";

/** A host of VMs: this process's own (open) or a daemon's (connect). */
export type Host = HostApi;

export const Host = {
  /** An RM + VMM in this process (KVM by default; `backend: "sim"` needs no /dev/kvm). */
  open(opts: LocalHostOptions = {}): LocalHost {
    return LocalHost.open(opts);
  },
  /** A running `tsvisor daemon`, through its API socket (or TCP URL + token). */
  connect(opts: RemoteHostOptions): Promise<RemoteHost> {
    return RemoteHost.connect(opts);
  },
} as const;
