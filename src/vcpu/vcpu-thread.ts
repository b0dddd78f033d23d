import { Worker } from "node:worker_threads";
import type { UnclaimedCounts } from "../devices/bus.js";
import type { DeviceSpec } from "../devices/specs.js";
import type { VcpuHandle, VcpuTransfer, X86BootState } from "../hv/types.js";
import { VcpuControl, VcpuState, type VcpuStateValue } from "./control.js";
import type { StopReason } from "./exit-handler.js";
import { VcpuRequest, VcpuResidency } from "./residency.js";
import type { RunStats } from "./run-loop.js";
import type { UserIrqVcpuConfig } from "./user-irqchip.js";

/** One vCPU run, as sent to a vCPU thread. */
export interface VcpuJob {
  readonly transfer: VcpuTransfer;
  readonly control: SharedArrayBuffer;
  readonly devices: readonly DeviceSpec[];
  readonly boot?: X86BootState;
  readonly irq?: UserIrqVcpuConfig;
}

/** workerData of a vCPU thread: its one job, or none for a pooled thread. */
export interface WorkerStart {
  readonly job?: VcpuJob;
}

export type MainMessage = { readonly type: "run"; readonly job: VcpuJob };
export type WorkerMessage =
  | { readonly type: "log"; readonly message: string }
  | {
      readonly type: "exit";
      readonly reason: StopReason;
      readonly stats: RunStats;
      readonly unclaimed: UnclaimedCounts | undefined;
    };

export interface VcpuResult {
  readonly index: number;
  readonly reason: StopReason;
  readonly stats: RunStats | undefined;
  readonly unclaimed: UnclaimedCounts | undefined;
}

export interface VcpuThreadOptions {
  readonly devices: readonly DeviceSpec[];
  readonly boot?: X86BootState;
  /** Device and loop messages (unclaimed accesses…). Default: dropped. */
  readonly onLog?: (message: string) => void;
  /** Run on a reusable thread from this pool instead of a new one. */
  readonly pool?: VcpuThreadPool;
  /**
   * Run under the user irqchip (UserIrqchip.vcpuConfig): HLT sleeps in the residency's WFI
   * path, interrupts are injected from userspace. For VMs without the in-kernel irqchip.
   */
  readonly irq?: UserIrqVcpuConfig;
}

const WORKER_URL = new URL("./worker.js", import.meta.url);

/**
 * Keeps finished vCPU threads for the next vCPU. Starting a worker thread and loading its
 * modules costs tens of milliseconds on this host, far more than a tiny guest's whole life,
 * so VM lifecycles reuse threads. Idle threads do not keep the process alive.
 */
export class VcpuThreadPool {
  private readonly idle: Worker[] = [];
  private closed = false;

  constructor(readonly maxIdle = 4) {}

  get idleCount(): number {
    return this.idle.length;
  }

  /** @internal */
  take(): Worker {
    const w = this.idle.pop() ?? new Worker(WORKER_URL, { workerData: {} satisfies WorkerStart });
    w.ref();
    return w;
  }

  /** @internal */
  give(w: Worker): void {
    if (this.closed || this.idle.length >= this.maxIdle) {
      void w.terminate();
      return;
    }
    w.unref();
    this.idle.push(w);
  }

  /** Ends every idle thread; threads still running a vCPU end when their vCPU does. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.idle.splice(0).map((w) => w.terminate()));
  }
}

/**
 * The main thread's side of one vCPU run on its own thread. `result` settles once that thread
 * has released the vCPU (and a thread that is not pooled has ended), so the VcpuHandle and
 * the VM can be closed safely after awaiting it.
 */
export class VcpuThread {
  readonly result: Promise<VcpuResult>;
  private readonly control: VcpuControl;
  /** The user irqchip's words for this vCPU, seen from the owning thread. */
  readonly residency: VcpuResidency | undefined;
  private readonly worker: Worker;
  private finished = false;

  private constructor(
    private readonly handle: VcpuHandle,
    options: VcpuThreadOptions,
  ) {
    const control = VcpuControl.allocate();
    this.control = new VcpuControl(control);
    this.residency = options.irq
      ? new VcpuResidency(options.irq.residency, () => handle.kick())
      : undefined;
    const job: VcpuJob = {
      transfer: handle.transfer,
      control,
      devices: options.devices,
      ...(options.boot ? { boot: options.boot } : {}),
      ...(options.irq ? { irq: options.irq } : {}),
    };
    const onLog = options.onLog ?? (() => {});
    const pool = options.pool;
    const worker = pool
      ? pool.take()
      : new Worker(WORKER_URL, { workerData: { job } satisfies WorkerStart });
    this.worker = worker;
    const failed = (message: string): VcpuResult => ({
      index: handle.index,
      reason: { kind: "error", code: "VCPU_WORKER", message },
      stats: undefined,
      unclaimed: undefined,
    });
    this.result = new Promise<VcpuResult>((resolve) => {
      let final: (WorkerMessage & { type: "exit" }) | undefined;
      let failure: unknown;
      const finish = (r: VcpuResult) => {
        worker.off("message", onMessage);
        worker.off("error", onError);
        worker.off("exit", onExit);
        this.finished = true;
        resolve(r);
      };
      const onMessage = (m: WorkerMessage) => {
        if (m.type === "log") {
          onLog(m.message);
          return;
        }
        final = m;
        if (pool) {
          finish({ index: handle.index, reason: m.reason, stats: m.stats, unclaimed: m.unclaimed });
          pool.give(worker);
        }
      };
      const onError = (e: unknown) => {
        failure = e;
      };
      const onExit = (code: number) => {
        if (final) {
          finish({
            index: handle.index,
            reason: final.reason,
            stats: final.stats,
            unclaimed: final.unclaimed,
          });
          return;
        }
        finish(
          failed(
            failure instanceof Error ? failure.message : `vCPU thread exited with code ${code}`,
          ),
        );
      };
      worker.on("message", onMessage);
      worker.on("error", onError);
      worker.on("exit", onExit);
    });
    if (pool) worker.postMessage({ type: "run", job } satisfies MainMessage);
  }

  /** Starts running `handle`'s vCPU on a thread: it opens the vCPU, loads `boot` and runs it. */
  static start(handle: VcpuHandle, options: VcpuThreadOptions): VcpuThread {
    return new VcpuThread(handle, options);
  }

  get index(): number {
    return this.handle.index;
  }

  /**
   * What the vCPU thread last published: RUNNING (in or around the guest; also a halt inside
   * KVM with the in-kernel irqchip), HALTED (asleep in userspace: a user-mode halt, WFI or a
   * pause), EXITED.
   */
  get state(): VcpuStateValue {
    return this.control.state;
  }

  /** Whether the run has ended and the thread has let go of the vCPU. */
  get done(): boolean {
    return this.finished;
  }

  /** Asks the vCPU to stop and kicks it out of the guest; the result reports `stopped`. */
  stop(): void {
    if (this.finished) return;
    this.control.requestStop();
    // Under the user irqchip the vCPU may sleep in WFI or a pause, outside KVM_RUN: the
    // sticky STOP request rings or wakes it there.
    this.residency?.request(VcpuRequest.STOP);
    this.handle.kick();
  }

  /**
   * After stop(): blocks the calling thread until this vCPU has left the guest for good (its
   * thread saw the stop request, or has ended), for at most `timeoutMs`; returns whether it
   * has. A thread that saw the request never enters the guest again. For short, bounded
   * waits only: on the main thread it blocks the event loop.
   */
  waitOutOfGuest(timeoutMs: number): boolean {
    if (this.finished) return true;
    if (!this.control.stopRequested) return false;
    const end = performance.now() + timeoutMs;
    for (;;) {
      if (this.control.state !== VcpuState.RUNNING) return true;
      const left = end - performance.now();
      if (left <= 0) return false;
      this.control.waitWhile(VcpuState.RUNNING, left);
    }
  }

  /**
   * Last resort for a vCPU that does not end after stop() — only a bug does that, such as a
   * lost wake-up that swallowed the STOP too: ends its thread outright, so a failing test
   * still ends. `result` then reports a VCPU_WORKER error. The thread's own kvm_run mapping
   * is never unmapped, so the VM's kernel object lives until the process ends; a thread
   * inside KVM_RUN ends only when that run returns.
   */
  async terminate(): Promise<void> {
    if (this.finished) return;
    await this.worker.terminate();
  }

  /** Ends a userspace halt (VMs without the in-kernel irqchip). */
  wake(): void {
    if (this.finished) return;
    this.control.requestWake();
  }
}
