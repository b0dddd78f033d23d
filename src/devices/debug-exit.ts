import type { DeviceEffect, PioDevice } from "./bus.js";

/** QEMU's isa-debug-exit location, which tsvisor keeps so the same guests run on both. */
export const DEBUG_EXIT_PORT = 0xf4;
/** Ports claimed, like QEMU's `iosize=4`. */
export const DEBUG_EXIT_PORTS = 4;

/**
 * The debug-exit port: a guest write to its first port powers the VM off with the written
 * byte as the exit code. (QEMU reports (code << 1) | 1 as its process status; tsvisor reports
 * the byte itself.) Reads return 0; writes to the other claimed ports are ignored.
 */
export class DebugExit implements PioDevice {
  readonly name = "debug-exit";

  pioRead(_offset: number, _size: number): number {
    return 0;
  }

  pioWrite(offset: number, _size: number, value: number): DeviceEffect | undefined {
    if (offset !== 0) return undefined;
    return { kind: "power-off", code: value & 0xff };
  }
}
