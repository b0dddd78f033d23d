import { Worker } from "node:worker_threads";
import type { UnclaimedCounts } from "../devices/bus.js";
import type { DeviceSpec } from "../devices/specs.js";
import type { VcpuHandle, VcpuTransfer, X86BootState } from "../hv/types.js";
import { VcpuControl, VcpuState } from "./control.js";
import type { StopReason } from "./exit-handler.js";
import type { RunStats } from "./run-loop.js";

/** One vCPU run, as sent to a vCPU thread. */
export interface VcpuJob {
  readonly transfer: VcpuTransfer;
  readonly control: SharedArrayBuffer;
  readonly devices: readonly DeviceSpec[];
  readonly boot?: X86BootState;
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
  private finished = false;

  private constructor(
    private readonly handle: VcpuHandle,
    options: VcpuThreadOptions,
  ) {
    const control = VcpuControl.allocate();
    this.control = new VcpuControl(control);
    const job: VcpuJob = {
      transfer: handle.transfer,
      control,
      devices: options.devices,
      ...(options.boot ? { boot: options.boot } : {}),
    };
    const onLog = options.onLog ?? (() => {});
    const pool = options.pool;
    const worker = pool
      ? pool.take()
      : new Worker(WORKER_URL, { workerData: { job } satisfies WorkerStart });
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

  /** Whether the run has ended and the thread has let go of the vCPU. */
  get done(): boolean {
    return this.finished;
  }

  /** Asks the vCPU to stop and kicks it out of the guest; the result reports `stopped`. */
  stop(): void {
    if (this.finished) return;
    this.control.requestStop();
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

  /** Ends a userspace halt (VMs without the in-kernel irqchip). */
  wake(): void {
    if (this.finished) return;
    this.control.requestWake();
  }
}
