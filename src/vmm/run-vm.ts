import { TsvisorError } from "../core/errors.js";
import type { LoadedImage } from "../loader/image.js";
import type { RmClient, VmExitedNotification, VmStatusNotification } from "../rpc/client.js";
import type { IrqchipMode } from "../vcpu/user-irqchip.js";
import type { VcpuResult } from "../vcpu/vcpu-thread.js";
import { type BuildSpec, buildVm } from "./builder.js";
import { describeExit, type ExitMapping, processStatus } from "./exits.js";
import {
  type StartedVm,
  type StepListener,
  startVm,
  teardownVm,
  waitForExit,
} from "./host-flow.js";
import type { VmStop } from "./kvm-port.js";
import type { RmStack } from "./rm-stack.js";

/**
 * One image, one VM, its whole life through the RM as the host drives it: build → the v16
 * start sequence → wait for VM_EXITED → teardown (reclaim, reset, dealloc) → free the RAM.
 * What `tsvisor run` does, and what the end-to-end tests drive.
 */

export interface RunVmOptions extends BuildSpec {
  /** Where the interrupt controllers live (VmPlan.irqchip); default the kernel. */
  readonly irqchip?: boolean | IrqchipMode;
  /** COM1 output as it arrives. */
  readonly console?: (bytes: Uint8Array) => void;
  /** A ByteRing the caller writes COM1 input into (see VmPlan.consoleInput). */
  readonly consoleInput?: SharedArrayBuffer;
  /** Device and vCPU messages (unclaimed accesses…). */
  readonly onLog?: (message: string) => void;
  /** This VM's VM_STATUS and VM_EXITED notifications, as they arrive. */
  readonly onEvent?: (n: VmStatusNotification | VmExitedNotification) => void;
  readonly onStep?: StepListener;
  /** Called once VM_START has been answered. */
  readonly started?: (vm: StartedVm) => void;
  /** Aborting force-stops the VM (the exit is then VM_STOP_FORCED) and tears it down. */
  readonly signal?: AbortSignal;
}

export interface RunVmResult {
  readonly vmid: number;
  /** From the VM_EXITED notification. */
  readonly exit: ExitMapping;
  readonly exitFlags: number;
  /** The vCPU stop that decided the exit (a host stop for VM_EXIT and forced stops). */
  readonly stop: VmStop | undefined;
  /** Every vCPU's result (exits, unclaimed accesses…). */
  readonly vcpus: readonly VcpuResult[];
  /** `tsvisor run`'s process status for this exit (docs/exits.md). */
  readonly status: number;
  /** One line: exit type, code, details. */
  readonly description: string;
  readonly loaded: LoadedImage;
}

/** Decodes VM_EXITED's reason word 0: exit_flags in bits 15:0, exit_code in 23:16. */
export function exitOf(n: VmExitedNotification): { exit: ExitMapping; flags: number } {
  const r = n.exitReason;
  const word = r.length >= 4 ? new DataView(r.buffer, r.byteOffset, 4).getUint32(0, true) : 0;
  return { exit: { exitType: n.exitType, exitCode: (word >>> 16) & 0xff }, flags: word & 0xffff };
}

export async function runVm(
  stack: RmStack,
  client: RmClient,
  opts: RunVmOptions,
): Promise<RunVmResult> {
  const port = stack.port;
  if (!port) throw new TsvisorError("VMM_CONFIG", "running a VM needs a stack with a backend");
  const built = buildVm(stack.memory, opts);
  let stop: VmStop | undefined;
  let results: readonly VcpuResult[] = [];
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let vmid: number | undefined;
  let unsubscribe = () => {};
  let vm: StartedVm;
  try {
    vm = await startVm(
      client,
      stack.memory,
      {
        ...built.host,
        prepare: (id) => {
          vmid = id;
          const onEvent = opts.onEvent;
          if (onEvent) {
            unsubscribe = client.on("notification", (n) => {
              if ((n.kind === "vmStatus" || n.kind === "vmExited") && n.vmid === id) onEvent(n);
            });
          }
          port.prepare(id, {
            boot: built.boot,
            irqchip: opts.irqchip ?? true,
            ...(opts.console ? { console: opts.console } : {}),
            ...(opts.consoleInput ? { consoleInput: opts.consoleInput } : {}),
            ...(opts.onLog ? { onLog: opts.onLog } : {}),
            onStop: (s) => {
              stop = s;
            },
            onFinished: (r) => {
              results = r;
              finish();
            },
          });
        },
      },
      opts.onStep,
    );
  } catch (e) {
    unsubscribe();
    if (vmid !== undefined) port.discardPlan(vmid);
    // A parcel the RM would not give back stays lent: the region is then left to the RM.
    if (!built.ram.lent) stack.memory.free(built.ram);
    throw e;
  }
  try {
    opts.started?.(vm);
    const signal = opts.signal;
    if (!signal?.aborted) {
      let onAbort = () => {};
      const aborted = new Promise<void>((resolve) => {
        onAbort = () => resolve();
        signal?.addEventListener("abort", onAbort, { once: true });
      });
      await Promise.race([waitForExit(client, vm), aborted]);
      signal?.removeEventListener("abort", onAbort);
    }
    // Forced stop first if the guest has not exited (an abort), then the v16 teardown.
    const exited = await teardownVm(client, vm, opts.onStep);
    stack.memory.free(built.ram);
    await finished;
    const { exit, flags } = exitOf(exited);
    return {
      vmid: vm.vmid,
      exit,
      exitFlags: flags,
      stop,
      vcpus: results,
      status: processStatus(exit),
      description: describeExit(exit, stop?.exit ? stop.reason : undefined),
      loaded: built.loaded,
    };
  } finally {
    unsubscribe();
  }
}
