import { ByteRing, pumpRing } from "../devices/byte-ring.js";
import { type DeviceSpec, standardDevices } from "../devices/specs.js";
import type { Hypervisor, X86Regs } from "../hv/types.js";
import { type LoadedImage, loadImage } from "../loader/image.js";
import { type VcpuResult, VcpuThread, type VcpuThreadPool } from "./vcpu-thread.js";

/**
 * One guest on one vCPU, start to finish, with COM1 and debug-exit: the smallest complete
 * use of hv + loader + vCPU thread, for tests and benchmarks. (The VMM's builder is the real
 * assembler of VMs; this is deliberately minimal.)
 */
export interface RunGuestOptions {
  readonly memSize?: number;
  readonly irqchip?: boolean;
  readonly regs?: Partial<X86Regs>;
  /** Which ELF entry to start at (see LoadOptions.elfEntry). */
  readonly elfEntry?: "elf" | "pvh";
  /** Extra devices besides COM1 and debug-exit. */
  readonly devices?: readonly DeviceSpec[];
  readonly onLog?: (message: string) => void;
  /** Reuse vCPU threads from this pool. */
  readonly pool?: VcpuThreadPool;
  /** Called once the vCPU thread is started, e.g. to stop it later. */
  readonly started?: (thread: VcpuThread) => void;
}

export interface GuestRun {
  readonly console: string;
  readonly result: VcpuResult;
  readonly loaded: LoadedImage;
}

export async function runGuest(
  hv: Hypervisor,
  image: Uint8Array,
  options: RunGuestOptions = {},
): Promise<GuestRun> {
  const vm = hv.createVm({ irqchip: options.irqchip ?? true });
  const memory = hv.allocateMemory(options.memSize ?? 2 << 20);
  let thread: VcpuThread | undefined;
  try {
    vm.mapMemory({ gpa: 0, memory });
    const loaded = loadImage(
      image,
      { gpa: 0, bytes: memory.bytes },
      {
        ...(options.regs ? { regs: options.regs } : {}),
        ...(options.elfEntry ? { elfEntry: options.elfEntry } : {}),
      },
    );
    const handle = vm.createVcpu(0);
    const ring = ByteRing.allocate();
    thread = VcpuThread.start(handle, {
      devices: [...standardDevices(ring), ...(options.devices ?? [])],
      boot: loaded.boot,
      ...(options.onLog ? { onLog: options.onLog } : {}),
      ...(options.pool ? { pool: options.pool } : {}),
    });
    const chunks: Uint8Array[] = [];
    const pumped = pumpRing(new ByteRing(ring), (b) => chunks.push(b), thread.result);
    options.started?.(thread);
    const result = await thread.result;
    await pumped;
    return { console: Buffer.concat(chunks).toString("latin1"), result, loaded };
  } finally {
    if (thread && !thread.done) {
      thread.stop();
      await thread.result;
    }
    await vm.close();
    memory.close();
  }
}
