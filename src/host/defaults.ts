/** The host's defaults, in a module of their own so help texts need not load the VMM. */

export const VERSION = "0.1.0";
/** VMs that may exist at once (the RM has 63 dynamic VMIDs). */
export const DEFAULT_MAX_VMS = 32;
/** Guest RAM of all VMs together. */
export const DEFAULT_MEMORY_BUDGET = 1024 * 1024 * 1024;
/** How long a graceful stop waits for the guest before forcing it. */
export const DEFAULT_STOP_TIMEOUT_MS = 5000;

/** The response header naming the daemon instance (HostInfo.instance). */
export const INSTANCE_HEADER = "tsvisor-instance";
