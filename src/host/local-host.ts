import { randomUUID } from "node:crypto";
import { Duplex } from "node:stream";
import { type Deferred, deferred } from "../core/deferred.js";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { ByteRing } from "../devices/byte-ring.js";
import { KvmHypervisor } from "../hv/kvm/kvm-hypervisor.js";
import { SimHypervisor } from "../hv/sim/sim-hypervisor.js";
import type { Hypervisor } from "../hv/types.js";
import { ExitType, nameOf, ResourceType, StopReason, VmStatus } from "../protocol/enums.js";
import type { Notification, RmClient, VmExitedNotification } from "../rpc/client.js";
import { type BuiltVm, buildVm } from "../vmm/builder.js";
import { describeExit, processStatus } from "../vmm/exits.js";
import { abandon, prepareVm, type StartedVm } from "../vmm/host-flow.js";
import type { VmStop } from "../vmm/kvm-port.js";
import { createRmStack, type RmStack } from "../vmm/rm-stack.js";
import { exitOf } from "../vmm/run-vm.js";
import { admit } from "./admission.js";
import { ConsoleBuffer } from "./console-buffer.js";
import {
  DEFAULT_MAX_VMS,
  DEFAULT_MEMORY_BUDGET,
  DEFAULT_STOP_TIMEOUT_MS,
  VERSION,
} from "./defaults.js";
import { type EventDraft, EventLog } from "./event-log.js";
import { type NormalizedSpec, normalizeSpec } from "./spec.js";
import type {
  ConsoleOptions,
  ConsoleStream,
  CreateOptions,
  EventOptions,
  ExitInfo,
  HostApi,
  HostEvent,
  HostInfo,
  HypResourceInfo,
  StopOptions,
  VmHandle,
  VmInfo,
  VmSpec,
  VmState,
} from "./types.js";

/**
 * Many VMs in one process: one RM (with its server) and one VMM over one hypervisor backend.
 * The host is the RM's HLOS client (VMID 3) and drives every VM through the RM protocol: the
 * v16 sequence up to READY at create, VM_START at start, VM_STOP (graceful: the guest gets
 * VM_SHUTDOWN; forced: VM_STOP_FORCED), and stop → reclaim → reset → dealloc at reset and
 * destroy. Every VM_STATUS / VM_EXITED notification and every lifecycle step becomes a
 * HostEvent in one log with a global cursor. The daemon serves this object over HTTP; a program
 * can use it directly (`Host.open()`).
 */

export { DEFAULT_MAX_VMS, DEFAULT_MEMORY_BUDGET, DEFAULT_STOP_TIMEOUT_MS, VERSION };

/** How long teardown waits for a VM's vCPU threads to let go before it reports and moves on. */
const THREADS_GRACE_MS = 10_000;
/** The host's RM calls: generous, since 20 VMs share one HLOS session on a slow machine. */
const RM_CALL_TIMEOUT_MS = 30_000;

export interface LocalHostOptions {
  /** "kvm" (default; HV_UNAVAILABLE without /dev/kvm), "sim", or a backend the caller owns. */
  readonly backend?: "kvm" | "sim" | Hypervisor;
  readonly kvmDevice?: string;
  /** VMs that may exist at once (default 32; the RM has 63 VMIDs). */
  readonly maxVms?: number;
  /** Guest RAM of all VMs together, in bytes (default 1 GiB). */
  readonly memoryBudget?: number;
  /** Events kept for resuming clients (default 10,000). */
  readonly eventRetention?: number;
  /** Messages from devices and vCPU loops, and teardown problems. */
  readonly onLog?: (message: string) => void;
}

interface VmRecord {
  readonly id: string;
  readonly name: string;
  readonly spec: NormalizedSpec;
  state: VmState;
  vmid: number | null;
  rmStatus: string | null;
  osStatus: number;
  appStatus: number;
  built: BuiltVm | undefined;
  vm: StartedVm | undefined;
  /** This incarnation's vCPU threads were started (so teardown waits for them). */
  started: boolean;
  finished: Deferred<void>;
  stop: VmStop | undefined;
  exit: ExitInfo | null;
  /** The host asked for this run's end (stop, reset, destroy, shutdown). */
  hostStop: boolean;
  resources: HypResourceInfo[];
  readonly createdAt: string;
  startedAt: string | null;
  runs: number;
  readonly console: ConsoleBuffer;
  input: SharedArrayBuffer;
  exited: Deferred<ExitInfo>;
  /** vm.created has been emitted: later notifications become events. */
  announced: boolean;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

export class LocalHost implements HostApi {
  readonly backendKind: "kvm" | "sim";
  /** See HostInfo.instance. */
  readonly instance = randomUUID();
  readonly stack: RmStack;
  readonly maxVms: number;
  readonly memoryBudget: number;
  private readonly client: RmClient;
  private readonly log: EventLog;
  private readonly records = new Map<string, VmRecord>();
  private readonly byVmid = new Map<number, VmRecord>();
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly onLog: (message: string) => void;
  private nextId = 1;
  private shuttingDown = false;
  private shutdownDone: Promise<void> | undefined;
  /** Resolved by hurry(): graceful stops in progress stop waiting and force. */
  private readonly hurried = deferred<void>();
  private closed: Promise<void> | undefined;

  private constructor(
    private readonly hv: Hypervisor,
    private readonly ownsBackend: boolean,
    opts: LocalHostOptions,
  ) {
    this.backendKind = hv.kind === "sim" ? "sim" : "kvm";
    this.maxVms = opts.maxVms ?? DEFAULT_MAX_VMS;
    this.memoryBudget = opts.memoryBudget ?? DEFAULT_MEMORY_BUDGET;
    if (!Number.isSafeInteger(this.maxVms) || this.maxVms < 1 || this.maxVms > 63) {
      throw new TsvisorError("API_VALIDATION", `maxVms must be 1 to 63, not ${this.maxVms}`);
    }
    if (!Number.isSafeInteger(this.memoryBudget) || this.memoryBudget < 0) {
      throw new TsvisorError("API_VALIDATION", `memoryBudget must be a byte count`);
    }
    this.onLog = opts.onLog ?? (() => {});
    this.log = new EventLog(opts.eventRetention);
    this.stack = createRmStack({ backend: hv });
    this.client = this.stack.connectHost({ timeoutMs: RM_CALL_TIMEOUT_MS });
    this.client.on("notification", (n) => this.onNotification(n));
  }

  /** Opens a backend (or takes the caller's) and an RM + VMM over it. */
  static open(opts: LocalHostOptions = {}): LocalHost {
    const b = opts.backend ?? "kvm";
    if (typeof b === "object") return new LocalHost(b, false, opts);
    if (b !== "kvm" && b !== "sim") {
      throw new TsvisorError("API_VALIDATION", `backend must be kvm or sim, not '${String(b)}'`);
    }
    const hv =
      b === "sim"
        ? SimHypervisor.open()
        : KvmHypervisor.open(opts.kvmDevice ? { path: opts.kvmDevice } : {});
    try {
      return new LocalHost(hv, true, opts);
    } catch (e) {
      hv.close();
      throw e;
    }
  }

  // ---------------------------------------------------------------- server-facing API

  async createVm(spec: VmSpec, signal?: AbortSignal): Promise<VmInfo> {
    this.refuseNewWork("create");
    const n = normalizeSpec(spec, this.backendKind);
    if (n.name !== undefined && this.find(n.name)) {
      throw new TsvisorError("API_NAME_TAKEN", `a VM named '${n.name}' already exists`, {
        name: n.name,
      });
    }
    if (this.records.size >= this.maxVms) {
      throw new TsvisorError(
        "API_LIMIT_VMS",
        `the host already has ${this.records.size} VMs, its limit (destroy one first)`,
        { max_vms: this.maxVms, vms: this.records.size },
      );
    }
    const used = this.memoryInUse();
    if (used + n.memSize > this.memoryBudget) {
      throw new TsvisorError(
        "API_LIMIT_MEMORY",
        `a VM with ${n.memSize} bytes of RAM does not fit: ${used} of the ${this.memoryBudget}-byte budget are in use`,
        { memory_budget: this.memoryBudget, in_use: used, requested: n.memSize },
      );
    }
    if (signal?.aborted) throw aborted();
    // Reserved before the first await, so concurrent creates cannot overcommit the limits.
    const id = `vm-${this.nextId++}`;
    const rec: VmRecord = {
      id,
      name: n.name ?? id,
      spec: n,
      state: "creating",
      vmid: null,
      rmStatus: null,
      osStatus: 0,
      appStatus: 0,
      built: undefined,
      vm: undefined,
      started: false,
      finished: deferred<void>(),
      stop: undefined,
      exit: null,
      hostStop: false,
      resources: [],
      createdAt: new Date().toISOString(),
      startedAt: null,
      runs: 0,
      console: new ConsoleBuffer(),
      input: ByteRing.allocate(),
      exited: deferred<ExitInfo>(),
      announced: false,
    };
    this.records.set(id, rec);
    return this.track(
      (async () => {
        try {
          await this.incarnate(rec);
          if (signal?.aborted) throw aborted();
        } catch (e) {
          // Nothing of a VM whose create failed or was abandoned stays behind, and it never
          // appeared in the event log.
          await this.teardown(rec);
          this.records.delete(id);
          rec.console.end();
          rec.exited.reject(new TsvisorError("API_VM_GONE", `${id} was never created`));
          throw e;
        }
        rec.state = "created";
        rec.announced = true;
        this.emit(rec, { type: "vm.created" });
        return this.infoOf(rec);
      })(),
    );
  }

  inspect(idOrName: string): VmInfo {
    return this.infoOf(this.get(idOrName));
  }

  listVms(): VmInfo[] {
    return [...this.records.values()].map((r) => this.infoOf(r));
  }

  async startVm(idOrName: string): Promise<VmInfo> {
    const rec = this.get(idOrName);
    this.refuseNewWork("start");
    admit("start", rec.state, rec.id);
    rec.state = "starting";
    rec.hostStop = false;
    rec.stop = undefined;
    return this.track(
      (async () => {
        try {
          await this.client.start(this.vmidOf(rec));
        } catch (e) {
          if (rec.state === "starting") rec.state = "created";
          throw e;
        }
        rec.started = true;
        rec.runs++;
        rec.startedAt ??= new Date().toISOString();
        // The RM reports RUNNING before it answers, so the state is usually running by now;
        // a guest that exited at once has already made it exited.
        if (rec.state === "starting") this.markRunning(rec);
        return this.infoOf(rec);
      })(),
    );
  }

  async stopVm(idOrName: string, opts: StopOptions = {}): Promise<VmInfo> {
    const rec = this.get(idOrName);
    admit("stop", rec.state, rec.id);
    const timeout = opts.timeout_ms ?? DEFAULT_STOP_TIMEOUT_MS;
    if (!Number.isSafeInteger(timeout) || timeout < 0 || timeout > 600_000) {
      throw new TsvisorError("API_VALIDATION", "timeout_ms: must be an integer from 0 to 600000");
    }
    rec.hostStop = true;
    return this.track(
      (async () => {
        if (opts.force) await this.forceStop(rec);
        else if (rec.state === "stopping") await rec.exited.promise;
        else await this.gracefulStop(rec, timeout, "stop");
        return this.infoOf(rec);
      })(),
    );
  }

  async resetVm(idOrName: string): Promise<VmInfo> {
    const rec = this.get(idOrName);
    this.refuseNewWork("reset");
    admit("reset", rec.state, rec.id);
    const was = rec.state;
    rec.state = "resetting";
    return this.track(
      (async () => {
        try {
          if (was === "running") {
            rec.hostStop = true;
            await this.forceStop(rec);
          }
          await this.teardown(rec);
          if (rec.exited.settled) rec.exited = deferred<ExitInfo>();
          rec.input = ByteRing.allocate();
          await this.incarnate(rec);
        } catch (e) {
          // A VM that cannot be brought back is gone: say so rather than leave a husk.
          await this.teardown(rec);
          this.forget(rec, `reset failed: ${errorText(e)}`);
          throw e;
        }
        rec.state = "created";
        this.emit(rec, { type: "vm.reset" });
        return this.infoOf(rec);
      })(),
    );
  }

  async destroyVm(idOrName: string, reason = "destroy"): Promise<VmInfo> {
    const rec = this.get(idOrName);
    admit("destroy", rec.state, rec.id);
    const was = rec.state;
    rec.state = "destroying";
    return this.track(
      (async () => {
        if (was === "running" || was === "stopping") {
          rec.hostStop = true;
          await this.forceStop(rec).catch((e) =>
            this.onLog(`${rec.id}: forced stop: ${errorText(e)}`),
          );
        }
        await this.teardown(rec);
        const info = this.infoOf(rec);
        this.forget(rec, reason);
        return { ...info, state: "destroyed" as const, vmid: null };
      })(),
    );
  }

  hostInfo(): HostInfo {
    return {
      version: VERSION,
      instance: this.instance,
      backend: this.backendKind,
      limits: { max_vms: this.maxVms, memory_budget: this.memoryBudget },
      usage: { vms: this.records.size, memory: this.memoryInUse() },
      next_event: this.log.nextSeq,
      oldest_event: this.log.oldestSeq,
      shutting_down: this.shuttingDown,
    };
  }

  subscribe(
    opts: { since?: number | undefined; vm?: string | undefined },
    onEvent: (e: HostEvent) => void,
  ): () => void {
    let vm: string | undefined;
    if (opts.vm !== undefined) {
      const rec = this.find(opts.vm);
      if (rec) vm = rec.id;
      else if (this.log.mentions(opts.vm)) vm = opts.vm;
      else throw notFound(opts.vm);
    }
    return this.log.subscribe({ since: opts.since, vm }, onEvent);
  }

  attachConsole(
    idOrName: string,
    opts: { history?: boolean },
    onData: (b: Uint8Array) => void,
    onEnd: () => void,
  ): { write(b: Uint8Array): number; detach(): void } {
    const rec = this.get(idOrName);
    const detach = rec.console.attach({ data: onData, end: onEnd }, opts.history ?? true);
    return {
      write: (b) => {
        if (rec.console.isEnded) throw new TsvisorError("API_VM_GONE", `${rec.id} was destroyed`);
        // Input reaches a running guest only; typing at a stopped VM is dropped, not queued.
        if (rec.state !== "running" && rec.state !== "stopping") return b.length;
        return new ByteRing(rec.input).tryWrite(b);
      },
      detach,
    };
  }

  /**
   * Stops taking new work, lets operations in flight finish, stops every running VM gracefully
   * (VM_SHUTDOWN to the guest) and forcibly after timeoutMs, then destroys every VM.
   */
  shutdown(opts: { timeoutMs?: number } = {}): Promise<void> {
    this.shuttingDown = true;
    this.shutdownDone ??= (async () => {
      while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
      const timeout = opts.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
      const recs = [...this.records.values()];
      await Promise.allSettled(
        recs
          .filter((r) => r.state === "running" || r.state === "stopping")
          .map((r) => {
            r.hostStop = true;
            return r.state === "stopping"
              ? r.exited.promise
              : this.gracefulStop(r, timeout, "host shutdown");
          }),
      );
      await Promise.allSettled(
        [...this.records.values()].map((r) =>
          this.destroyVm(r.id, "host shutdown").catch((e) =>
            this.onLog(`${r.id}: destroy at shutdown: ${errorText(e)}`),
          ),
        ),
      );
    })();
    return this.shutdownDone;
  }

  /** Graceful stops in progress (a shutdown's, say) force their VMs now instead of waiting. */
  hurry(): void {
    this.hurried.resolve();
  }

  // ---------------------------------------------------------------- HostApi

  async create(spec: VmSpec, opts: CreateOptions = {}): Promise<VmHandle> {
    const info = await this.createVm(spec, opts.signal);
    return new LocalVmHandle(this, info.id);
  }

  async vm(idOrName: string): Promise<VmHandle> {
    return new LocalVmHandle(this, this.get(idOrName).id);
  }

  async list(): Promise<VmInfo[]> {
    return this.listVms();
  }

  async info(): Promise<HostInfo> {
    return this.hostInfo();
  }

  events(opts: EventOptions = {}): AsyncIterable<HostEvent> {
    return eventIterable((listener) => this.subscribe(opts, listener), opts.signal);
  }

  /** Shuts down (see shutdown()), then closes the RM and, if the host opened it, the backend. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.shutdown();
      await this.stack.close();
      if (this.ownsBackend) this.hv.close();
    })();
    return this.closed;
  }

  /** @internal for handles */
  exitedOf(id: string): Promise<ExitInfo> {
    const rec = this.records.get(id);
    if (!rec) {
      const p = Promise.reject(new TsvisorError("API_VM_GONE", `${id} was destroyed`));
      p.catch(() => {});
      return p;
    }
    return rec.exited.promise;
  }

  // ---------------------------------------------------------------- internals

  private get(idOrName: string): VmRecord {
    const rec = this.find(idOrName);
    if (!rec) throw notFound(idOrName);
    return rec;
  }

  private find(idOrName: string): VmRecord | undefined {
    const byId = this.records.get(idOrName);
    if (byId) return byId;
    for (const r of this.records.values()) if (r.name === idOrName) return r;
    return undefined;
  }

  private refuseNewWork(what: string): void {
    if (this.shuttingDown) {
      throw new TsvisorError("API_SHUTTING_DOWN", `the host is shutting down; cannot ${what}`);
    }
  }

  private memoryInUse(): number {
    let sum = 0;
    for (const r of this.records.values()) sum += r.spec.memSize;
    return sum;
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = () => this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  private vmidOf(rec: VmRecord): number {
    if (rec.vmid === null) throw new TsvisorError("API_STATE", `${rec.id} has no VMID now`);
    return rec.vmid;
  }

  private emit(rec: VmRecord, draft: Omit<EventDraft, "vm" | "vmid">): void {
    this.log.append({ vm: rec.id, vmid: rec.vmid, ...draft });
  }

  /** Builds the VM (RAM, image, DTB) and runs the v16 sequence up to READY. */
  private async incarnate(rec: VmRecord): Promise<void> {
    const port = this.stack.port;
    if (!port) throw new TsvisorError("VMM_CONFIG", "the host has no backend");
    const built = buildVm(this.stack.memory, rec.spec.build);
    rec.built = built;
    rec.started = false;
    rec.finished = deferred<void>();
    rec.stop = undefined;
    const finished = rec.finished;
    rec.vm = await prepareVm(this.client, this.stack.memory, {
      ...built.host,
      prepare: (vmid) => {
        rec.vmid = vmid;
        this.byVmid.set(vmid, rec);
        port.prepare(vmid, {
          boot: built.boot,
          irqchip: rec.spec.irqchip,
          console: (b) => rec.console.write(b),
          consoleInput: rec.input,
          onLog: (m) => this.onLog(`${rec.id}: ${m}`),
          onStop: (s) => {
            rec.stop = s;
          },
          onFinished: () => finished.resolve(),
        });
      },
    });
    rec.resources = rec.vm.resources.map((r) => ({
      type: nameOf(ResourceType, r.resourceType),
      label: r.resourceLabel,
      cap_id: hex(r.capId),
      virq: r.virq,
      base: hex(r.base),
      size: hex(r.size),
    }));
  }

  /**
   * Gives everything of the VM's current incarnation back, whatever state it reached: stop it
   * if it runs, reclaim the parcel, reset, deallocate the VMID, wait for its vCPU threads and
   * free its RAM. Problems are reported, never thrown: teardown always finishes.
   */
  private async teardown(rec: VmRecord): Promise<void> {
    const built = rec.built;
    const vmid = rec.vmid;
    const vm = rec.vm;
    if (vmid !== null) {
      await abandon(this.client, vmid, vm?.parcel, built?.ram ?? vm!.ram, this.stack.memory).catch(
        (e) => this.onLog(`${rec.id}: teardown: ${errorText(e)}`),
      );
      vm?.unsubscribe();
      this.stack.port?.discardPlan(vmid);
      this.byVmid.delete(vmid);
    }
    if (rec.started) {
      if (!(await settlesWithin(rec.finished.promise, THREADS_GRACE_MS)))
        this.onLog(`${rec.id}: vCPU threads still running ${THREADS_GRACE_MS} ms after teardown`);
    }
    if (built) {
      if (built.ram.lent) this.onLog(`${rec.id}: guest RAM is still lent to the RM; left to it`);
      else this.stack.memory.free(built.ram);
    }
    rec.built = undefined;
    rec.vm = undefined;
    rec.vmid = null;
    rec.started = false;
  }

  private forget(rec: VmRecord, reason: string): void {
    const announced = rec.announced;
    rec.state = "destroyed";
    this.records.delete(rec.id);
    rec.console.end();
    rec.exited.reject(new TsvisorError("API_VM_GONE", `${rec.id} was destroyed without running`));
    if (announced) this.log.append({ vm: rec.id, vmid: null, type: "vm.destroyed", reason });
  }

  private async forceStop(rec: VmRecord): Promise<void> {
    if (rec.exited.settled && rec.exit) return;
    const vmid = rec.vmid;
    if (vmid === null) return;
    try {
      await this.client.stop(vmid, { force: true, reason: StopReason.FORCE_STOP });
    } catch (e) {
      // The guest may have exited on its own meanwhile; then VM_EXITED is on its way or here.
      const state = await this.client.getState(vmid).catch(() => undefined);
      if (state?.vmStatus !== VmStatus.EXITED) throw e;
    }
    await rec.exited.promise;
  }

  private async gracefulStop(rec: VmRecord, timeoutMs: number, reason: string): Promise<void> {
    const vmid = this.vmidOf(rec);
    if (rec.state === "running") rec.state = "stopping";
    this.emit(rec, { type: "vm.stopping", reason });
    try {
      await this.client.stop(vmid, { force: false, reason: StopReason.SHUTDOWN });
    } catch (e) {
      if (rec.exit) return;
      this.onLog(`${rec.id}: graceful stop refused (${errorText(e)}); forcing`);
      return this.forceStop(rec);
    }
    // hurry() makes the exit "late" at once: a shutdown's second signal forces now.
    const exitedInTime = await settlesWithin(
      Promise.race([rec.exited.promise, this.hurried.promise.then(() => Promise.reject())]),
      timeoutMs,
    );
    if (!exitedInTime) await this.forceStop(rec);
  }

  private markRunning(rec: VmRecord): void {
    rec.state = "running";
    rec.startedAt = new Date().toISOString();
    rec.exit = null;
    this.emit(rec, { type: "vm.started" });
  }

  private onNotification(n: Notification): void {
    if (n.kind === "vmStatus") {
      const rec = this.byVmid.get(n.vmid);
      if (!rec) return;
      rec.rmStatus = nameOf(VmStatus, n.vmStatus);
      rec.osStatus = n.osStatus;
      rec.appStatus = n.appStatus;
      if (!rec.announced) return;
      this.emit(rec, {
        type: "vm.status",
        rm_status: rec.rmStatus,
        os_status: n.osStatus,
        app_status: n.appStatus,
      });
      if (n.vmStatus === VmStatus.RUNNING && rec.state === "starting") this.markRunning(rec);
    } else if (n.kind === "vmExited") {
      const rec = this.byVmid.get(n.vmid);
      if (rec) this.onExited(rec, n);
    }
  }

  private onExited(rec: VmRecord, n: VmExitedNotification): void {
    const { exit, flags } = exitOf(n);
    const info: ExitInfo = {
      exit_type: nameOf(ExitType, exit.exitType),
      exit_code: exit.exitCode,
      exit_flags: flags,
      status: processStatus(exit),
      description: describeExit(exit, rec.stop?.exit ? rec.stop.reason : undefined),
      initiator: rec.hostStop ? "host" : "guest",
      time: new Date().toISOString(),
    };
    rec.exit = info;
    if (rec.state === "starting" || rec.state === "running" || rec.state === "stopping") {
      rec.state = "exited";
    }
    if (rec.announced) this.emit(rec, { type: "vm.exited", exit: info });
    rec.exited.resolve(info);
  }

  private infoOf(rec: VmRecord): VmInfo {
    return {
      id: rec.id,
      name: rec.name,
      state: rec.state,
      vmid: rec.vmid,
      rm_status: rec.rmStatus,
      os_status: rec.osStatus,
      app_status: rec.appStatus,
      memory: rec.spec.memSize,
      vcpus: rec.spec.vcpus,
      irqchip: rec.spec.irqchip,
      image: rec.spec.imageName,
      created_at: rec.createdAt,
      started_at: rec.startedAt,
      exit: rec.exit,
      resources: rec.resources,
      runs: rec.runs,
      console_bytes: rec.console.written,
    };
  }
}

/** Whether `p` fulfils within `ms` (false on timeout or rejection); the timer never lingers. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => false,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const aborted = () => new TsvisorError("RPC_ABORTED", "the create was abandoned by its caller");
const notFound = (name: string) =>
  new TsvisorError("API_NOT_FOUND", `no VM has the id or name '${name}'`, { vm: name });

function errorText(e: unknown): string {
  if (isTsvisorError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

/** A subscription as an async iterable; leaving the loop (or aborting) unsubscribes. */
export function eventIterable(
  subscribe: (listener: (e: HostEvent) => void) => () => void,
  signal?: AbortSignal,
): AsyncIterable<HostEvent> {
  return {
    [Symbol.asyncIterator]() {
      const queue: HostEvent[] = [];
      let wake: (() => void) | undefined;
      let done = false;
      const unsubscribe = subscribe((e) => {
        queue.push(e);
        wake?.();
      });
      const onAbort = () => {
        done = true;
        wake?.();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      const finish = () => {
        done = true;
        unsubscribe();
        signal?.removeEventListener("abort", onAbort);
      };
      if (signal?.aborted) finish();
      return {
        async next(): Promise<IteratorResult<HostEvent>> {
          for (;;) {
            const e = queue.shift();
            if (e) return { value: e, done: false };
            if (done || signal?.aborted) {
              finish();
              return { value: undefined, done: true };
            }
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
          }
        },
        async return(): Promise<IteratorResult<HostEvent>> {
          finish();
          return { value: undefined, done: true };
        },
      };
    },
  };
}

class LocalVmHandle implements VmHandle {
  constructor(
    private readonly host: LocalHost,
    readonly id: string,
  ) {}

  async info(): Promise<VmInfo> {
    return this.host.inspect(this.id);
  }
  start(): Promise<VmInfo> {
    return this.host.startVm(this.id);
  }
  stop(opts?: StopOptions): Promise<VmInfo> {
    return this.host.stopVm(this.id, opts);
  }
  reset(): Promise<VmInfo> {
    return this.host.resetVm(this.id);
  }
  async destroy(): Promise<void> {
    await this.host.destroyVm(this.id);
  }
  get exited(): Promise<ExitInfo> {
    return this.host.exitedOf(this.id);
  }
  console(opts: ConsoleOptions = {}): ConsoleStream {
    return localConsole(this.host, this.id, opts);
  }
  events(opts: Omit<EventOptions, "vm"> = {}): AsyncIterable<HostEvent> {
    return this.host.events({ ...opts, vm: this.id });
  }
}

/** COM1 as a Duplex: output (history, then live) to read, input to write. */
function localConsole(host: LocalHost, id: string, opts: ConsoleOptions): ConsoleStream {
  let handle: { write(b: Uint8Array): number; detach(): void } | undefined;
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      let rest = new Uint8Array(chunk);
      const pump = () => {
        let n: number;
        try {
          if (!handle) throw new TsvisorError("API_VM_GONE", `${id} was destroyed`);
          n = handle.write(rest);
        } catch (e) {
          return cb(e as Error);
        }
        rest = rest.subarray(n);
        if (rest.length === 0) return cb();
        // COM1's input ring is full: the guest has not read it yet.
        setTimeout(pump, 10);
      };
      pump();
    },
    destroy(err, cb) {
      handle?.detach();
      handle = undefined;
      cb(err);
    },
  });
  handle = host.attachConsole(
    id,
    { history: opts.history ?? true },
    (b) => stream.push(Buffer.from(b)),
    () => {
      handle = undefined;
      stream.push(null);
    },
  );
  return stream;
}
