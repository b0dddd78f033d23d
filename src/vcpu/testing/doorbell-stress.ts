/**
 * The doorbell stress run (docs/user-irqchip.md, "The stress test"), shared by
 * doorbell-stress.test.ts and bench/doorbell: guests/doorbell-stress.S on two vCPU threads,
 * one ringer worker per vCPU ringing numbered doorbells one at a time (the next waits for the
 * guest's acknowledgement of the previous), and optionally a chaos worker issuing
 * reconfigurations and pause/resume pairs at random moments.
 *
 * In user-irqchip mode a ring raises a GSI through the user irqchip from the ringer's thread;
 * in kernel mode it writes the eventfd of an irqfd bound to that GSI (in-kernel IOAPIC →
 * LAPIC). Either way the guest's handler writes its count of interrupts to the vCPU's mailbox
 * register, and the ringer checks it is exactly the ring's number: a lost interrupt stalls
 * (reported after `stallMs` with the vCPU's residency words), a doubled or misrouted one
 * shows up as a wrong number.
 */
import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { ByteRing } from "../../devices/byte-ring.js";
import { createMailbox, MailboxView } from "../../devices/mailbox.js";
import { type DeviceSpec, standardDevices } from "../../devices/specs.js";
import { KvmNotifier } from "../../hv/kvm/kvm-hypervisor.js";
import type { Binding, Hypervisor, Notifier, X86BootState } from "../../hv/types.js";
import { guestImage } from "../../loader/guest-builder.js";
import { loadImage } from "../../loader/image.js";
import { VcpuState } from "../control.js";
import { Residency, type ResidencySnapshot } from "../residency.js";
import { type IrqchipMode, UserIrqchip } from "../user-irqchip.js";
import { type VcpuResult, VcpuThread, type VcpuThreadPool } from "../vcpu-thread.js";
import type { IrqRoute } from "../vector-model.js";

/** Port of the guest's acknowledge registers (guests/doorbell-stress.S). */
export const STRESS_ACK_PORT = 0x540;
/** vCPU i's doorbells: GSIs FIRST + 2i and FIRST + 2i + 1 (vectors 0x30 + 2i, 0x31 + 2i). */
export const STRESS_FIRST_GSI = 16;
/** The guest's vCPUs at most (it owns GSIs for two). */
export const STRESS_MAX_VCPUS = 2;
/** The guest powers off with this code after an unexpected vector, recorded at UNEXPECTED. */
const UNEXPECTED_CODE = 0xee;
const UNEXPECTED = 0x7000;

export interface StressOptions {
  readonly hv: Hypervisor;
  readonly mode: IrqchipMode;
  /** Rings in all, split evenly across the vCPUs. */
  readonly rings: number;
  /** 1 or 2 vCPUs, each with its ringer. Default 2. */
  readonly vcpus?: number;
  /** Concurrent reconfigurations and pause/resume (user mode only). Default false. */
  readonly chaos?: boolean;
  /** An acknowledgement slower than this is reported as a stall. Default 10 s. */
  readonly stallMs?: number;
  /** Microseconds a ringer waits after each acknowledgement, so the vCPU is asleep again. */
  readonly gapUs?: number;
  /** Keep every ring's latency (ring → the guest's acknowledgement reaching the host). */
  readonly latencies?: boolean;
  readonly pool?: VcpuThreadPool;
}

export interface Stall {
  readonly vcpu: number;
  readonly ring: number;
  /** What the mailbox held: the last acknowledgement. */
  readonly acked: number;
  /** The vCPU's residency words when the stall was declared (user mode). */
  readonly residency: string | undefined;
  /** The vCPU thread's state then (VcpuState name). */
  readonly state: string;
}

export interface RingerReport {
  readonly vcpu: number;
  /** Acknowledged rings. */
  readonly acked: number;
  readonly stall?: Stall;
  /** The run was ended early (a vCPU stopped by itself). */
  readonly aborted?: boolean;
  /** A wrong acknowledgement: a doubled, misrouted or out-of-order interrupt. */
  readonly wrong?: { readonly ring: number; readonly got: number };
  readonly elapsedMs: number;
  /** Worst ring → acknowledgement time seen by the ringer, in ms. */
  readonly maxAckMs: number;
  /** Ring → acknowledgement written (mailbox stamp), in ns, when asked for. */
  readonly latencyNs?: Float64Array;
  /** Ring → ringer awake with the acknowledgement, in ns, when asked for. */
  readonly roundTripNs?: Float64Array;
  /** How each ring was delivered (user mode): kicked / rang / left-pending. */
  readonly deliveries?: Record<string, number>;
}

export interface ChaosReport {
  readonly reconfigurations: number;
  readonly remoteReloads: number;
  readonly pauses: number;
}

export interface StressResult {
  readonly mode: IrqchipMode;
  readonly ringers: readonly RingerReport[];
  readonly chaos: ChaosReport | undefined;
  /** User mode: each vCPU's residency once every ring was acknowledged and the vCPUs slept. */
  readonly final: readonly ResidencySnapshot[] | undefined;
  /** Whether every vCPU reached its halt loop (asleep) after the last acknowledgement. */
  readonly settled: boolean;
  readonly vcpus: readonly VcpuResult[];
  readonly elapsedMs: number;
  readonly console: string;
  /** vCPUs that took a vector they should not have: the vector and the top of its frame. */
  readonly unexpected: readonly { vcpu: number; vector: number; frame: string[] }[];
}

/** What a ringer or the chaos worker is given. */
export type StressWorkerData =
  | {
      readonly role: "ringer";
      readonly mode: IrqchipMode;
      readonly vcpu: number;
      readonly gsi: number;
      readonly rings: number;
      readonly mailbox: SharedArrayBuffer;
      readonly control: SharedArrayBuffer;
      readonly irqchip?: UserIrqchip["shared"];
      readonly eventfd?: number;
      readonly stallMs: number;
      readonly gapUs: number;
      readonly latencies: boolean;
    }
  | {
      readonly role: "chaos";
      readonly irqchip: UserIrqchip["shared"];
      readonly control: SharedArrayBuffer;
      readonly seed: number;
    };

/** Words of the run's control buffer. */
export const StressControl = {
  /** Set when the run must end early (a vCPU died); waiters are notified. */
  ABORT: 0,
  /** Set when the ringers are done: the chaos worker stops. */
  DONE: 1,
  /** vCPU thread states, for stall reports (mirrored by the main thread). */
  STATE: 2,
} as const;

const WORKER_URL = new URL("./doorbell-stress-worker.js", import.meta.url);
const STATE_NAMES = Object.fromEntries(Object.entries(VcpuState).map(([k, v]) => [v, k]));

/** vCPU i's ring GSI and its two routes (the chaos worker flips between them). */
export function stressRoutes(vcpu: number): { gsi: number; routes: [IrqRoute, IrqRoute] } {
  const gsi = STRESS_FIRST_GSI + 2 * vcpu;
  return {
    gsi,
    routes: [
      { vcpu, vector: 0x20 + gsi },
      { vcpu, vector: 0x20 + gsi + 1 },
    ],
  };
}

export async function runDoorbellStress(opts: StressOptions): Promise<StressResult> {
  const { hv, mode } = opts;
  const started = performance.now();
  const vm = hv.createVm({ irqchip: mode === "kernel" });
  const memory = hv.allocateMemory(2 << 20);
  const threads: VcpuThread[] = [];
  const workers: Worker[] = [];
  const notifiers: Notifier[] = [];
  const bindings: Binding[] = [];
  const control = new SharedArrayBuffer(16);
  const controlWords = new Int32Array(control);
  const nvcpus = opts.vcpus ?? STRESS_MAX_VCPUS;
  if (nvcpus !== 1 && nvcpus !== 2) throw new Error("the doorbell stress guest runs 1 or 2 vCPUs");
  const mailbox = createMailbox(STRESS_MAX_VCPUS, -1);
  const view = new MailboxView(mailbox);
  const console = ByteRing.allocate();
  let irqchip: UserIrqchip | undefined;
  try {
    vm.mapMemory({ gpa: 0, memory });
    const flags = mode === "kernel" ? 1n : 0n;
    const loaded = loadImage(guestImage("doorbell-stress"), { gpa: 0, bytes: memory.bytes }, {});
    const handles = Array.from({ length: nvcpus }, (_, i) => vm.createVcpu(i));
    if (mode === "user") {
      irqchip = UserIrqchip.create(
        handles,
        handles.map((_, i) => [stressRoutes(i).gsi, stressRoutes(i).routes[0]] as const),
      );
    } else {
      for (let i = 0; i < nvcpus; i++) {
        const n = hv.createNotifier();
        notifiers.push(n);
        bindings.push(vm.irqfd(stressRoutes(i).gsi, n));
      }
    }
    const devices: DeviceSpec[] = [
      ...standardDevices(console),
      { kind: "mailbox", shared: mailbox, base: STRESS_ACK_PORT },
    ];
    handles.forEach((handle, i) => {
      const regs = { ...loaded.boot.regs, rsi: BigInt(i), rdi: flags };
      if (regs.rsp !== undefined) regs.rsp -= 0x1000n * BigInt(i);
      const boot: X86BootState = { ...loaded.boot, regs, ...(i > 0 ? { runnable: true } : {}) };
      threads.push(
        VcpuThread.start(handle, {
          devices,
          boot,
          ...(opts.pool ? { pool: opts.pool } : {}),
          ...(irqchip ? { irq: irqchip.vcpuConfig(i) } : {}),
        }),
      );
    });
    // A vCPU that ends on its own (a wrong vector powers the guest off) ends the run: the
    // ringers would otherwise wait for acknowledgements that never come.
    let ended = false;
    for (const t of threads) {
      void t.result.then(() => {
        if (ended) return;
        Atomics.store(controlWords, StressControl.ABORT, 1);
        for (let i = 0; i < nvcpus; i++) Atomics.notify(view.words, i);
        Atomics.notify(controlWords, StressControl.DONE);
      });
    }
    const perVcpu = Math.floor(opts.rings / nvcpus);
    const ringerReports = threads.map((_, i) => {
      const data: StressWorkerData = {
        role: "ringer",
        mode,
        vcpu: i,
        gsi: stressRoutes(i).gsi,
        rings: i === 0 ? opts.rings - perVcpu * (nvcpus - 1) : perVcpu,
        mailbox,
        control,
        ...(irqchip ? { irqchip: irqchip.shared } : {}),
        ...(mode === "kernel" ? { eventfd: eventfdOf(notifiers[i]) } : {}),
        stallMs: opts.stallMs ?? 10_000,
        gapUs: opts.gapUs ?? 0,
        latencies: opts.latencies ?? false,
      };
      return spawn<RingerReport>(data, workers);
    });
    const chaos =
      opts.chaos && irqchip
        ? spawn<ChaosReport>(
            { role: "chaos", irqchip: irqchip.shared, control, seed: 0x5eed },
            workers,
          )
        : undefined;
    // Mirror the vCPU states for stall reports while the ringers run.
    const mirror = setInterval(() => {
      threads.forEach((t, i) => {
        Atomics.store(controlWords, StressControl.STATE + i, t.state);
      });
    }, 5);
    let ringers: RingerReport[];
    let chaosReport: ChaosReport | undefined;
    try {
      ringers = await Promise.all(ringerReports);
    } finally {
      Atomics.store(controlWords, StressControl.DONE, 1);
      Atomics.notify(controlWords, StressControl.DONE);
      chaosReport = await chaos;
      clearInterval(mirror);
    }
    // Quiescence: no ring is in flight, so each vCPU must end up asleep in its halt loop
    // with nothing pending — a vCPU asleep with a pending interrupt is a lost wake-up.
    const settled = await settle(threads, irqchip);
    const final = irqchip ? threads.map((_, i) => irqchip!.snapshot(i)) : undefined;
    ended = true;
    const vcpus = await stopAll(threads);
    const unexpected = vcpus
      .filter((v) => v.reason.kind === "power-off" && v.reason.code === UNEXPECTED_CODE)
      .map((v) => {
        const q = new DataView(
          memory.bytes.buffer,
          memory.bytes.byteOffset + UNEXPECTED + 64 * v.index,
        );
        const words = Array.from({ length: 6 }, (_, k) => q.getBigUint64(8 * k, true));
        return {
          vcpu: v.index,
          vector: Number(words[0]),
          frame: words.slice(1).map((w) => `0x${w.toString(16)}`),
        };
      });
    return {
      unexpected,
      mode,
      ringers,
      chaos: chaosReport,
      final,
      settled,
      vcpus,
      elapsedMs: performance.now() - started,
      console: Buffer.from(new ByteRing(console).read()).toString("latin1"),
    };
  } finally {
    await stopAll(threads);
    await Promise.all(workers.map((w) => w.terminate()));
    for (const b of bindings) b.close();
    for (const n of notifiers) n.close();
    await vm.close();
    memory.close();
  }
}

/**
 * Stops every vCPU; one that has not ended 5 s later (a protocol bug that lost the STOP as
 * well) is terminated, so a failing run still reports instead of hanging.
 */
async function stopAll(threads: readonly VcpuThread[]): Promise<VcpuResult[]> {
  for (const t of threads) t.stop();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => {
    timer = setTimeout(() => resolve("late"), 5000);
  });
  const ended = await Promise.race([Promise.all(threads.map((t) => t.result)), late]);
  clearTimeout(timer);
  if (ended === "late") await Promise.all(threads.map((t) => t.terminate()));
  return Promise.all(threads.map((t) => t.result));
}

function spawn<T>(data: StressWorkerData, workers: Worker[]): Promise<T> {
  const w = new Worker(WORKER_URL, { workerData: data });
  workers.push(w);
  return new Promise<T>((resolve, reject) => {
    w.once("message", (m: T) => resolve(m));
    w.once("error", reject);
    void once(w, "exit").then(([code]) =>
      reject(new Error(`doorbell stress ${data.role} worker exited with code ${String(code)}`)),
    );
  });
}

/**
 * User mode: waits (bounded, 2 s) until every vCPU sleeps in WFI; whether they all did. A
 * halt inside KVM (kernel mode) is invisible from here, so kernel mode settles at once.
 */
async function settle(threads: readonly VcpuThread[], irqchip: UserIrqchip | undefined) {
  if (irqchip === undefined) return true;
  for (let tries = 0; tries < 400; tries++) {
    const asleep = threads.every(
      (t, i) =>
        t.state === VcpuState.HALTED && (irqchip.snapshot(i).state & Residency.IN_WFI) !== 0,
    );
    if (asleep) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return false;
}

function eventfdOf(n: Notifier | undefined): number {
  if (!(n instanceof KvmNotifier)) throw new Error("kernel mode needs KVM notifiers (eventfds)");
  return n.fd;
}

export function stateName(state: number): string {
  return STATE_NAMES[state] ?? String(state);
}
