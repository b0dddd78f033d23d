import { unreachable } from "../core/errors.js";
import type { DeviceBus, DeviceEffect } from "../devices/bus.js";
import type { VcpuExit } from "../hv/types.js";

/**
 * How a vCPU's run ended, as the vCPU thread reports it. Structured-cloneable.
 * `stopped` is a host request; `error` is a host-side failure (a failed ioctl, a bug).
 */
export type StopReason =
  | { readonly kind: "power-off"; readonly code: number }
  | { readonly kind: "reset" }
  /** The exits that end a vCPU, as the backend reported them. */
  | Extract<VcpuExit, { readonly kind: "shutdown" | "internal-error" | "fail-entry" | "unknown" }>
  | { readonly kind: "stopped" }
  | { readonly kind: "error"; readonly code: string; readonly message: string };

/** What the run loop does next after an exit. */
export type ExitAction =
  | { readonly kind: "continue" }
  /** HLT reached userspace: sleep until woken. */
  | { readonly kind: "halt" }
  /** run() was interrupted: acknowledge the kick and look at the requests. */
  | { readonly kind: "interrupted" }
  | { readonly kind: "stop"; readonly reason: StopReason };

const CONTINUE: ExitAction = { kind: "continue" };

/**
 * Handles one exit against the device bus. Pure apart from the devices it calls and the
 * exit's `data` view it fills for guest reads; no thread, no KVM needed to test it.
 */
export function handleExit(exit: VcpuExit, bus: DeviceBus): ExitAction {
  switch (exit.kind) {
    case "io":
      return handlePio(exit.write, exit.port, exit.size, exit.count, exit.data, bus);
    case "mmio":
      if (exit.write) return fromEffect(bus.mmioWrite(exit.addr, exit.data));
      bus.mmioRead(exit.addr, exit.data);
      return CONTINUE;
    case "hlt":
      return { kind: "halt" };
    case "intr":
      return { kind: "interrupted" };
    case "irq-window":
      // Only the user-irqchip loop asks for it; it injects at the top of its next iteration.
      return CONTINUE;
    case "shutdown":
      return { kind: "stop", reason: { kind: "shutdown" } };
    case "internal-error": {
      const reason: StopReason =
        exit.insn === undefined
          ? { kind: "internal-error", suberror: exit.suberror, data: [...exit.data] }
          : {
              kind: "internal-error",
              suberror: exit.suberror,
              insn: exit.insn.slice(),
              data: [...exit.data],
            };
      return { kind: "stop", reason };
    }
    case "fail-entry":
      return { kind: "stop", reason: { kind: "fail-entry", reason: exit.reason, cpu: exit.cpu } };
    case "unknown":
      return { kind: "stop", reason: { kind: "unknown", reason: exit.reason } };
    default:
      return unreachable(exit, "vCPU exit kind");
  }
}

function handlePio(
  write: boolean,
  port: number,
  size: number,
  count: number,
  data: Uint8Array,
  bus: DeviceBus,
): ExitAction {
  // rep ins/outs arrive as one exit with `count` accesses to the same port.
  for (let i = 0; i < count; i++) {
    const at = i * size;
    if (write) {
      const effect = bus.pioWrite(port, size, readLe(data, at, size));
      if (effect) return fromEffect(effect);
    } else {
      writeLe(data, at, size, bus.pioRead(port, size));
    }
  }
  return CONTINUE;
}

function fromEffect(effect: DeviceEffect | undefined): ExitAction {
  if (effect === undefined) return CONTINUE;
  switch (effect.kind) {
    case "power-off":
      return { kind: "stop", reason: { kind: "power-off", code: effect.code } };
    case "reset":
      return { kind: "stop", reason: { kind: "reset" } };
    default:
      return unreachable(effect, "device effect");
  }
}

function readLe(data: Uint8Array, at: number, size: number): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + (data[at + i] ?? 0);
  return v;
}

function writeLe(data: Uint8Array, at: number, size: number, value: number): void {
  let v = value;
  for (let i = 0; i < size; i++) {
    data[at + i] = v & 0xff;
    v = Math.floor(v / 256);
  }
}
