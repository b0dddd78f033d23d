/**
 * Simulated versions of the single-vCPU test guests in guests/*.S. Each does what its
 * assembly namesake does, operation for operation, so the host sees the same exits (see the
 * .S file's header for the guest's contract; docs/sim.md lists them).
 */
import {
  COM1,
  COM1_LSR,
  debugExit,
  fault,
  type Guest,
  inb,
  inp,
  load32,
  outb,
  print,
  prng,
  type SimCpu,
  spin,
  store32,
} from "../program.js";

/** Unbacked guest-physical memory the real guests poke (nothing lives there). */
export const UNBACKED_MMIO = 0xd000_0000;
/** Port of BELL_RX doorbell-source 0 (kvm-port's BELL_RX_PORT_BASE). */
const BELL_RX_PORT = 0x600;
const I8042_COMMAND = 0x64;
const I8042_RESET = 0xfe;
const UART_SCRATCH = COM1 + 7;

const lowByte = (v: bigint) => Number(v & 0xffn);

/** "Hello\n" on COM1, debug-exit 0. */
export function* hello(): Guest {
  yield* print("Hello\n");
  yield* debugExit(0);
}

/** debug-exit with the low byte of RDI. */
export function* exitCode(cpu: SimCpu): Guest {
  yield* debugExit(lowByte(cpu.regs.rdi));
}

/** `jmp .` for ever: only a kick gets the host back. */
export function* spinForever(): Guest {
  yield* spin();
}

/** `ud2` without an IDT: a triple fault. */
export function* tripleFault(): Guest {
  yield* fault({ kind: "shutdown" });
}

/** Kernel-mode `int3`, which kvm_pvm cannot emulate: the bytes of `int3; jmp .` and zeros. */
export function* emulationFailure(): Guest {
  const insn = new Uint8Array(15);
  insn.set([0xcc, 0xeb, 0xfe]);
  yield* fault({ kind: "internal-error", suberror: 1, insn, data: [] });
}

/** Command 0xFE to the 8042: the reset line. */
export function* i8042Reset(): Guest {
  yield* outb(I8042_COMMAND, I8042_RESET);
}

/** Writes 0x2a to unbacked MMIO, reads it back, exits with the low byte read (0xff). */
export function* mmioProbe(): Guest {
  yield* store32(UNBACKED_MMIO, 0x2a);
  const v = yield* load32(UNBACKED_MMIO);
  yield* debugExit(v & 0xff);
}

/** A byte to port 0x600 and 7 to unbacked MMIO (ioeventfd candidates), then debug-exit 0. */
export function* ioeventfdRing(): Guest {
  yield* outb(BELL_RX_PORT, 1);
  yield* store32(UNBACKED_MMIO, 7);
  yield* debugExit(0);
}

/** Writes a counter to unbacked MMIO for ever (every write an exit). */
export function* mmioStorm(): Guest {
  for (let i = 1; ; i = (i + 1) >>> 0) yield* store32(UNBACKED_MMIO, i);
}

/** Echoes COM1 input (polling LSR.DR) until 'q'; exit code = bytes read before it. */
export function* uartEcho(): Guest {
  let count = 0;
  for (;;) {
    while (((yield* inb(COM1_LSR)) & 1) === 0) {}
    const c = yield* inb(COM1);
    if (c === 0x71) break;
    yield* outb(COM1, c);
    count++;
  }
  yield* debugExit(count & 0xff);
}

/**
 * A seeded random walk over the platform, for determinism tests: letters on COM1, the
 * UART's scratch register written and read back, RAM written and read back, unclaimed MMIO
 * and port reads (all-ones). The seed is RDI when set, else the image's. Exit code: a
 * checksum of what it did; 0xee if anything read back differently.
 */
export function* chaos(cpu: SimCpu): Guest {
  const seed = cpu.regs.rdi !== 0n ? Number(cpu.regs.rdi & 0xffff_ffffn) : cpu.seed;
  const rnd = prng(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  let sum = 0;
  const steps = 40 + int(40);
  for (let i = 0; i < steps; i++) {
    switch (int(5)) {
      case 0: {
        const c = 0x61 + int(26);
        yield* outb(COM1, c);
        sum += c;
        break;
      }
      case 1: {
        const v = int(256);
        yield* outb(UART_SCRATCH, v);
        if ((yield* inb(UART_SCRATCH)) !== v) return yield* mismatch("scratch");
        sum += v;
        break;
      }
      case 2: {
        const addr = cpu.dataAddr + 4 * int(cpu.dataSize / 4);
        const v = int(0x1_0000_0000);
        yield* store32(addr, v);
        if ((yield* load32(addr)) !== v) return yield* mismatch("ram");
        sum += v & 0xff;
        break;
      }
      case 3:
        if ((yield* load32(UNBACKED_MMIO + 4 * int(4))) !== 0xffff_ffff) {
          return yield* mismatch("mmio");
        }
        sum += 3;
        break;
      default:
        if ((yield* inp(0x500 + int(4), 1)) !== 0xff) return yield* mismatch("pio");
        sum += 5;
    }
  }
  yield* outb(COM1, 0x0a);
  yield* debugExit(sum & 0xff);
}

function* mismatch(what: string): Guest {
  yield* print(`chaos: ${what} read back differently\n`);
  yield* debugExit(0xee);
}
