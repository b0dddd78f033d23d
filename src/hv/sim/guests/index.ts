/**
 * The simulated guests, by name: what a sim image's `guest` field names and the sim vCPU
 * runs. `simGuest(name)` makes the image (an ELF the loader and VMM treat like any guest).
 * To add a guest: write its program (a generator over SimCpu, see program.ts) next to the
 * others and list it here; docs/sim.md has the walk-through.
 */
import { TsvisorError } from "../../../core/errors.js";
import { encodeSimImage, type SimImageHeader } from "../image.js";
import { parseScript, type ScriptOp, type SimProgram } from "../program.js";
import {
  chaos,
  emulationFailure,
  exitCode,
  hello,
  i8042Reset,
  ioeventfdRing,
  mmioProbe,
  mmioStorm,
  spinForever,
  tripleFault,
  uartEcho,
} from "./basic.js";
import { doorbellWait, graceful, initrdEcho, msgqClient, osStatus, twoVcpu } from "./platform.js";

export interface SimGuestDef {
  readonly summary: string;
  readonly program: SimProgram;
}

export const SIM_GUESTS: ReadonlyMap<string, SimGuestDef> = new Map<string, SimGuestDef>([
  ["hello", { summary: "Hello on COM1, debug-exit 0", program: hello }],
  ["exit-code", { summary: "debug-exit with RDI's low byte", program: exitCode }],
  ["spin", { summary: "spins until stopped", program: spinForever }],
  ["triple-fault", { summary: "triple fault (shutdown exit)", program: tripleFault }],
  [
    "emulation-failure",
    { summary: "internal error, suberror 1, with instruction bytes", program: emulationFailure },
  ],
  ["i8042-reset", { summary: "0xFE to port 0x64: reset", program: i8042Reset }],
  [
    "mmio-probe",
    { summary: "writes and reads unbacked MMIO, exits with the byte read", program: mmioProbe },
  ],
  [
    "ioeventfd-ring",
    { summary: "rings port 0x600 and MMIO 0xd0000000, debug-exit 0", program: ioeventfdRing },
  ],
  ["mmio-storm", { summary: "writes unbacked MMIO until stopped", program: mmioStorm }],
  [
    "uart-echo",
    { summary: "echoes COM1 input until q; exit code = bytes read", program: uartEcho },
  ],
  [
    "msgq-client",
    { summary: "VM_EXIT (code = RDI) through the RM message queue", program: msgqClient },
  ],
  [
    "os-status",
    {
      summary: "VM_SET_STATUS (os = RDI, app = RSI) through the RM message queue, exits 0",
      program: osStatus,
    },
  ],
  [
    "two-vcpu",
    {
      summary: "vCPU 1 prints B and sets a flag; vCPU 0 prints A, waits, exits 0",
      program: twoVcpu,
    },
  ],
  [
    "doorbell-wait",
    {
      summary: "halts until the interrupt on GSI RDI (0 → 5), prints W, exits 0",
      program: doorbellWait,
    },
  ],
  [
    "graceful",
    {
      summary: "sleeps until the RM's VM_SHUTDOWN, then prints it and exits 0",
      program: graceful,
    },
  ],
  [
    "initrd-echo",
    {
      summary: "prints the initrd's first 16 bytes, exits with its last byte (none: 0xe0)",
      program: initrdEcho,
    },
  ],
  [
    "chaos",
    { summary: "a seeded random walk over COM1, RAM, MMIO and ports (seed = RDI)", program: chaos },
  ],
]);

export function simGuestNames(): string[] {
  return [...SIM_GUESTS.keys()];
}

export interface SimImageOptions {
  /** The program's PRNG seed (SimCpu.seed); default 1. */
  readonly seed?: number;
  readonly args?: Readonly<Record<string, unknown>>;
}

/** The image of simulated guest `name`; SIM_PROGRAM if there is none. */
export function simGuest(name: string, options: SimImageOptions = {}): Uint8Array {
  if (!SIM_GUESTS.has(name)) {
    throw new TsvisorError(
      "SIM_PROGRAM",
      `no simulated guest '${name}' (there are: ${simGuestNames().join(", ")})`,
    );
  }
  return encodeSimImage({ guest: name, ...options });
}

/** The image of a script (a program as data; see ScriptOp). */
export function simScript(script: readonly ScriptOp[], options: SimImageOptions = {}): Uint8Array {
  return encodeSimImage({ script: parseScript(script), ...options });
}

/** An image from JSON text: a script (an array) or a SimImageHeader object. */
export function simImageFromJson(text: string): Uint8Array {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TsvisorError(
      "SIM_PROGRAM",
      `the sim image JSON does not parse: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  if (Array.isArray(value)) return simScript(value as ScriptOp[]);
  const header = value as SimImageHeader;
  if (typeof header?.guest === "string") return simGuest(header.guest, header);
  return encodeSimImage(header);
}
