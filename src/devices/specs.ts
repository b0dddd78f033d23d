import { unreachable } from "../core/errors.js";
import { DeviceBus } from "./bus.js";
import { ByteRing } from "./byte-ring.js";
import { DEBUG_EXIT_PORT, DEBUG_EXIT_PORTS, DebugExit } from "./debug-exit.js";
import { I8042, I8042_COMMAND_PORT, I8042_DATA_PORT } from "./i8042.js";
import { Mailbox } from "./mailbox.js";
import { RM_MSGQ_MMIO_BASE, RM_MSGQ_MMIO_SIZE, RmMsgqDevice } from "./rm-msgq.js";
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
      /** ByteRing memory the host writes terminal input into; the guest reads it from RBR. */
      readonly input?: SharedArrayBuffer;
    }
  | { readonly kind: "debug-exit"; readonly port?: number }
  /** The 8042 keyboard controller at ports 0x60/0x64, for its reset line. */
  | { readonly kind: "i8042" }
  | {
      readonly kind: "rm-msgq";
      /** From createRmMsgqShared(); the main thread serves it with an RmMsgqDeviceEndpoint. */
      readonly shared: SharedArrayBuffer;
      /** Guest-physical base of the 4 KiB register page; default RM_MSGQ_MMIO_BASE. */
      readonly base?: number;
    }
  /** 32-bit registers in a SharedArrayBuffer (createMailbox()) at port base + 4i. */
  | { readonly kind: "mailbox"; readonly shared: SharedArrayBuffer; readonly base: number };

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
        const input = spec.input ? new ByteRing(spec.input) : undefined;
        bus.addPio(
          spec.base ?? COM1_BASE,
          UART_PORTS,
          new Uart16550((b) => ring.write(b), input ? () => input.read() : undefined),
        );
        break;
      }
      case "debug-exit":
        bus.addPio(spec.port ?? DEBUG_EXIT_PORT, DEBUG_EXIT_PORTS, new DebugExit());
        break;
      case "i8042": {
        const kbc = new I8042();
        bus.addPio(I8042_DATA_PORT, 1, kbc.dataPort);
        bus.addPio(I8042_COMMAND_PORT, 1, kbc.commandPort);
        break;
      }
      case "rm-msgq":
        bus.addMmio(
          spec.base ?? RM_MSGQ_MMIO_BASE,
          RM_MSGQ_MMIO_SIZE,
          new RmMsgqDevice(spec.shared),
        );
        break;
      case "mailbox": {
        const mailbox = new Mailbox(spec.shared);
        bus.addPio(spec.base, mailbox.ports, mailbox);
        break;
      }
      default:
        unreachable(spec, "device kind");
    }
  }
  return bus;
}
