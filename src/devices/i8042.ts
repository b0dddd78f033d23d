import type { DeviceEffect, PioDevice } from "./bus.js";

/** The controller's data port (keyboard data in both directions). */
export const I8042_DATA_PORT = 0x60;
/** The controller's status (read) / command (write) port. */
export const I8042_COMMAND_PORT = 0x64;

/** Status bits. */
const STATUS_SYSTEM_FLAG = 0x04; // "self-test passed"; firmware leaves it set
const STATUS_LAST_WAS_COMMAND = 0x08;
const STATUS_UNLOCKED = 0x10; // keyboard not inhibited

/** Controller commands tsvisor acts on. */
export const I8042_CMD_READ_OUTPUT_PORT = 0xd0;
export const I8042_CMD_WRITE_OUTPUT_PORT = 0xd1;
/** Pulse output line 0 (the CPU reset line): how Linux and most firmware reboot a PC. */
export const I8042_CMD_RESET = 0xfe;

/** Output-port bit 0 drives the CPU's reset line (active low); bit 1 is the A20 gate. */
const OUTPUT_PORT_DEFAULT = 0x03;

/**
 * The 8042 keyboard controller, only as far as a guest uses it to reset the machine: there is
 * no keyboard behind it, so the output buffer is always empty and the status register always
 * says so. A reset request is a device effect; the vCPU thread turns it into the `reset` stop
 * reason, and the RM reports PLATFORM_RESET.
 *
 * Reset paths, as on a PC: command 0xFE, and any "pulse output lines" command (0xF0–0xFF) that
 * includes line 0 (bit 0 clear); or command 0xD1 followed by a data byte with bit 0 clear.
 * Every other command and data byte is accepted and ignored. Reads of the data port return the
 * last output-port value after 0xD0, otherwise 0.
 */
export class I8042 {
  readonly name = "i8042";
  private lastWasCommand = false;
  private pending: number | undefined;
  private outputPort = OUTPUT_PORT_DEFAULT;
  private data = 0;

  /** Port 0x60, to register at I8042_DATA_PORT. */
  readonly dataPort: PioDevice = {
    name: "i8042-data",
    pioRead: () => {
      const v = this.data;
      this.data = 0;
      return v;
    },
    pioWrite: (_offset, _size, value) => this.writeData(value & 0xff),
  };

  /** Port 0x64, to register at I8042_COMMAND_PORT. */
  readonly commandPort: PioDevice = {
    name: "i8042-command",
    pioRead: () =>
      STATUS_SYSTEM_FLAG | STATUS_UNLOCKED | (this.lastWasCommand ? STATUS_LAST_WAS_COMMAND : 0),
    pioWrite: (_offset, _size, value) => this.writeCommand(value & 0xff),
  };

  private writeCommand(cmd: number): DeviceEffect | undefined {
    this.lastWasCommand = true;
    this.pending = undefined;
    if (cmd >= 0xf0) {
      // Pulse the output lines whose bits are clear; line 0 is reset.
      return (cmd & 1) === 0 ? { kind: "reset" } : undefined;
    }
    if (cmd === I8042_CMD_WRITE_OUTPUT_PORT) this.pending = cmd;
    else if (cmd === I8042_CMD_READ_OUTPUT_PORT) this.data = this.outputPort;
    return undefined;
  }

  private writeData(value: number): DeviceEffect | undefined {
    this.lastWasCommand = false;
    const pending = this.pending;
    this.pending = undefined;
    if (pending !== I8042_CMD_WRITE_OUTPUT_PORT) return undefined;
    this.outputPort = value;
    return (value & 1) === 0 ? { kind: "reset" } : undefined;
  }
}
