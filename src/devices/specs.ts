import { unreachable } from "../core/errors.js";
import { DeviceBus } from "./bus.js";
import { ByteRing } from "./byte-ring.js";
import { DEBUG_EXIT_PORT, DEBUG_EXIT_PORTS, DebugExit } from "./debug-exit.js";
import { COM1_BASE, UART_PORTS, Uart16550 } from "./uart16550.js";

/**
 * Devices described as data, so the main thread can tell a vCPU thread which devices to build
 * (functions and class instances do not cross postMessage; SharedArrayBuffers do).
 */
export type DeviceSpec =
  | {
      readonly kind: "uart16550";
      readonly base?: number;
      /** ByteRing memory that receives transmitted bytes. */
      readonly console: SharedArrayBuffer;
    }
  | { readonly kind: "debug-exit"; readonly port?: number };

/** The usual pair: COM1 writing into `console` and the debug-exit port. */
export function standardDevices(console: SharedArrayBuffer): DeviceSpec[] {
  return [{ kind: "uart16550", console }, { kind: "debug-exit" }];
}

export function buildBus(specs: readonly DeviceSpec[], log?: (message: string) => void): DeviceBus {
  const bus = new DeviceBus(log);
  for (const spec of specs) {
    switch (spec.kind) {
      case "uart16550": {
        const ring = new ByteRing(spec.console);
        bus.addPio(spec.base ?? COM1_BASE, UART_PORTS, new Uart16550((b) => ring.write(b)));
        break;
      }
      case "debug-exit":
        bus.addPio(spec.port ?? DEBUG_EXIT_PORT, DEBUG_EXIT_PORTS, new DebugExit());
        break;
      default:
        unreachable(spec, "device kind");
    }
  }
  return bus;
}
