import type { Duplex } from "node:stream";

/**
 * The contract every front end shares: the in-process host (`LocalHost`, one RM + VMM hosting
 * many VMs), the daemon's HTTP API (which serves a LocalHost) and the remote client
 * (`RemoteHost`, which speaks that API). Field names are the JSON API's (snake_case), so the
 * same objects cross the wire unchanged. docs/api.md describes every field.
 */

/** How a VM is created: the body of `POST /v1/vms` and the argument of `Host.create()`. */
export interface VmSpec {
  /** A name for humans (unique among live VMs; default: the id). */
  readonly name?: string;
  /**
   * The guest image: a file on the host (an absolute path, or relative to the daemon's working
   * directory) or a test guest's name (hello, spin, graceful, …). Same as `tsvisor run IMAGE`.
   * Exactly one of image, image_base64 and kernel.
   */
  readonly image?: string;
  /** The guest image's bytes, base64 (for clients on another machine). */
  readonly image_base64?: string;
  /** Another name for `image` when it is a kernel (an x86-64 ELF, started at e_entry or PVH). */
  readonly kernel?: string;
  /** An initial ramdisk file, loaded below the command line (docs/vmm.md "Guest memory"). */
  readonly initrd?: string;
  /** The kernel command line (the page below the DTB; RDI points at it). */
  readonly cmdline?: string;
  /** Guest RAM: bytes, or a size text like "2M"; 64K … 2048M, multiple of 4 KiB; default 2M. */
  readonly memory?: number | string;
  /** 1 … 2; default 1. */
  readonly vcpus?: number;
  /** Interrupt controllers in KVM (default) or tsvisor's user irqchip. */
  readonly irqchip?: "kernel" | "user";
  /** Start an ELF at e_entry in long mode (default) or at its PVH entry. */
  readonly entry?: "elf" | "pvh";
  /** Extra vCPU 0 registers (rax … r15), as numbers or "0x…" strings. */
  readonly registers?: Readonly<Record<string, number | string>>;
  readonly devices?: {
    /** Doorbells the host rings (BELL_TX → guest GSI). */
    readonly doorbells?: readonly { readonly label: number; readonly gsi: number }[];
    /** Doorbells the guest rings (BELL_RX, port 0x600 + label). */
    readonly doorbell_sources?: readonly { readonly label: number }[];
  };
}

/**
 * The host's view of a VM. `creating`, `starting`, `stopping`, `resetting` and `destroying`
 * are operations in flight; `created` (RM READY), `running`, `exited` are at rest;
 * `destroyed` is only ever seen in events and in the result of destroy().
 */
export type VmState =
  | "creating"
  | "created"
  | "starting"
  | "running"
  | "stopping"
  | "exited"
  | "resetting"
  | "destroying"
  | "destroyed";

/** Why a VM stopped: VM_EXITED decoded (docs/exits.md). */
export interface ExitInfo {
  /** ExitType name: PLATFORM_OFF, PLATFORM_RESET, VM_EXIT, SOFTWARE_ERROR, VM_STOP_FORCED, … */
  readonly exit_type: string;
  readonly exit_code: number;
  readonly exit_flags: number;
  /** `tsvisor run`'s process status for this exit. */
  readonly status: number;
  /** One line for humans. */
  readonly description: string;
  /** Who asked: the guest itself, or the host (stop, destroy, shutdown). */
  readonly initiator: "guest" | "host";
  /** ISO time the host saw VM_EXITED. */
  readonly time: string;
}

export interface HypResourceInfo {
  readonly type: string;
  readonly label: number;
  readonly cap_id: string;
  readonly virq: number;
  readonly base: string;
  readonly size: string;
}

/** `GET /v1/vms/{id}`, `Vm.info()`. */
export interface VmInfo {
  readonly id: string;
  readonly name: string;
  readonly state: VmState;
  /** The RM's VMID while the VM has one (0x80 … 0xBE); null before/after. */
  readonly vmid: number | null;
  /** RM vm_status name (LOAD, READY, RUNNING, EXITED, RESET, …) as last reported. */
  readonly rm_status: string | null;
  readonly os_status: number;
  readonly app_status: number;
  readonly memory: number;
  readonly vcpus: number;
  readonly irqchip: "kernel" | "user";
  /** The image name (file base name or guest name). */
  readonly image: string;
  readonly created_at: string;
  readonly started_at: string | null;
  /** The last exit (kept until the VM starts again). */
  readonly exit: ExitInfo | null;
  /** From VM_GET_HYP_RESOURCES at create. */
  readonly resources: readonly HypResourceInfo[];
  /** Times this VM was started. */
  readonly runs: number;
  /** Bytes of console output since create (the buffer keeps the last CONSOLE_BUFFER). */
  readonly console_bytes: number;
}

/** Daemon / host limits and what is in use: `GET /v1/host`, `Host.info()`. */
export interface HostInfo {
  readonly version: string;
  /**
   * This host's identity for its lifetime (a new one at every daemon start). Event seqs count
   * from 1 again in a new instance, so a cursor is only meaningful with the instance it came
   * from; every API response carries it in the `tsvisor-instance` header.
   */
  readonly instance: string;
  readonly backend: "kvm" | "sim";
  readonly limits: { readonly max_vms: number; readonly memory_budget: number };
  readonly usage: { readonly vms: number; readonly memory: number };
  /** The next event's seq (a cursor that means "from now on"). */
  readonly next_event: number;
  /** The oldest event still retained (resuming before it is API_CURSOR_EXPIRED). */
  readonly oldest_event: number;
  readonly shutting_down: boolean;
}

export type HostEventType =
  /** A VM now exists (state created). */
  | "vm.created"
  /** VM_START answered: the guest runs. */
  | "vm.started"
  /** A graceful stop was asked (VM_STOP without FORCE: the guest got VM_SHUTDOWN). */
  | "vm.stopping"
  /** The RM's VM_STATUS notification for this VM. */
  | "vm.status"
  /** The RM's VM_EXITED notification for this VM. */
  | "vm.exited"
  /** Reset done: the VM is created again (same id, a new VMID). */
  | "vm.reset"
  /** The VM is gone: its VMID deallocated and its RAM freed. */
  | "vm.destroyed";

/**
 * One event. `seq` is the cursor: global to the host, strictly increasing, never reused;
 * reconnect with `since = last seq seen` to miss nothing.
 */
export interface HostEvent {
  readonly seq: number;
  readonly time: string;
  readonly type: HostEventType;
  readonly vm: string;
  readonly vmid: number | null;
  /** vm.status: VM_STATUS's fields. */
  readonly rm_status?: string;
  readonly os_status?: number;
  readonly app_status?: number;
  /** vm.exited: the exit. */
  readonly exit?: ExitInfo;
  /** vm.stopping, vm.destroyed: why (a stop, a destroy, the daemon shutting down). */
  readonly reason?: string;
}

export interface EventOptions {
  /** Deliver events with seq > since (default: only new ones). */
  readonly since?: number;
  /** Only this VM's events. */
  readonly vm?: string;
  readonly signal?: AbortSignal;
}

export interface StopOptions {
  /** VM_STOP with FORCE at once (default false: graceful first). */
  readonly force?: boolean;
  /** Graceful: force after this many ms without an exit (default 5000). */
  readonly timeout_ms?: number;
}

/**
 * A VM's console: reading gives COM1's output (the retained history first, then live bytes;
 * it ends when the VM is destroyed), writing types into COM1. Destroy it to detach.
 */
export type ConsoleStream = Duplex;

export interface ConsoleOptions {
  /** Replay the retained output first (default true). */
  readonly history?: boolean;
}

/** A handle on one VM. Every method re-reads the host; the handle holds no state of its own. */
export interface VmHandle {
  readonly id: string;
  info(): Promise<VmInfo>;
  start(): Promise<VmInfo>;
  stop(opts?: StopOptions): Promise<VmInfo>;
  /** Forced stop if running, then back to created (new VMID, RAM reloaded from the image). */
  reset(): Promise<VmInfo>;
  /** Stops it if running, tears it down and frees it. */
  destroy(): Promise<void>;
  /**
   * Resolves with the exit of the VM's current (or next) run; rejects with API_VM_GONE if the
   * VM is destroyed without having run. A new promise after each start.
   */
  readonly exited: Promise<ExitInfo>;
  console(opts?: ConsoleOptions): ConsoleStream;
  events(opts?: Omit<EventOptions, "vm">): AsyncIterable<HostEvent>;
}

export interface CreateOptions {
  /** Aborting rolls the create back: the VM never appears (or is destroyed at once). */
  readonly signal?: AbortSignal;
}

/** What both LocalHost and RemoteHost implement. */
export interface HostApi {
  create(spec: VmSpec, opts?: CreateOptions): Promise<VmHandle>;
  /** A handle by id or name; rejects with API_NOT_FOUND. */
  vm(idOrName: string): Promise<VmHandle>;
  list(): Promise<VmInfo[]>;
  info(): Promise<HostInfo>;
  events(opts?: EventOptions): AsyncIterable<HostEvent>;
  /** Local: stops every VM (graceful, then forced) and frees everything. Remote: disconnects. */
  close(): Promise<void>;
}
