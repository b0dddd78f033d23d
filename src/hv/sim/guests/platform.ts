/**
 * Simulated versions of the guests that use the platform beyond COM1: the RM message-queue
 * client, the two-vCPU guest and the doorbell waiter (guests/msgq-client.S, two-vcpu.S,
 * doorbell-wait.S; docs/devices.md gives their contracts).
 */
import {
  RM_MSGQ_MMIO_BASE,
  RM_MSGQ_SEND_PUSH,
  RmMsgqReg,
  RmMsgqStatus,
} from "../../../devices/rm-msgq.js";
import {
  debugExit,
  enableIrq,
  type Guest,
  hlt,
  load32,
  load64,
  peek32,
  print,
  type SimCpu,
  spin,
  store32,
  store64,
} from "../program.js";

/** api 0x21, REQUEST, seq 1, VM_EXIT (0x56000085): the header as one little-endian u64. */
const VM_EXIT_REQUEST = 0x5600_0085_0001_0121n;
const VM_EXIT_REPLY = 0x5600_0085_0001_0221n;
/** doorbell-wait's ready word (docs/devices.md). */
export const DOORBELL_READY = 0x7000;

function* printHex32(v: number): Guest {
  yield* print(`${(v >>> 0).toString(16).padStart(8, "0")}\n`);
}

/**
 * VM_EXIT through the RM message-queue device with exit code = RDI's low byte, then polls RX
 * for the reply (every poll an MMIO exit, as on KVM), skipping anything else. OK: halts for
 * good. RM error: prints it and exits 0xe1. Device refused the send: prints it, exits 0xe2.
 */
export function* msgqClient(cpu: SimCpu): Guest {
  const q = RM_MSGQ_MMIO_BASE;
  yield* store64(q + RmMsgqReg.TX_BUF, VM_EXIT_REQUEST);
  yield* store32(q + RmMsgqReg.TX_BUF + 8, Number(cpu.regs.rdi & 0xffn) << 16);
  yield* store32(q + RmMsgqReg.TX_LEN, 12);
  yield* store32(q + RmMsgqReg.TX_SEND, RM_MSGQ_SEND_PUSH);
  const error = yield* load32(q + RmMsgqReg.ERROR);
  if (error !== 0) {
    yield* print("msgq-client: the msgq device refused the send, error 0x");
    yield* printHex32(error);
    yield* debugExit(0xe2);
    return;
  }
  for (;;) {
    while (((yield* load32(q + RmMsgqReg.STATUS)) & RmMsgqStatus.RX_NOT_EMPTY) === 0) {}
    const header = yield* load64(q + RmMsgqReg.RX_BUF);
    if (header !== VM_EXIT_REPLY) {
      yield* store32(q + RmMsgqReg.RX_POP, 1);
      continue;
    }
    const rmError = yield* load32(q + RmMsgqReg.RX_BUF + 8);
    yield* store32(q + RmMsgqReg.RX_POP, 1);
    if (rmError !== 0) {
      yield* print("msgq-client: VM_EXIT refused, RM error 0x");
      yield* printHex32(rmError);
      yield* debugExit(0xe1);
    }
    // OK: the RM has exited the VM; the host stops this vCPU.
    return;
  }
}

/**
 * Two vCPUs from one entry, told apart by RSI: vCPU 1 prints B, sets a flag in guest RAM
 * (the image's data area) and halts; vCPU 0 prints A, spins until the flag is set and
 * powers off with 0.
 */
export function* twoVcpu(cpu: SimCpu): Guest {
  const flag = cpu.dataAddr;
  if (cpu.regs.rsi !== 0n) {
    yield* print("B");
    yield* store32(flag, 1);
    return;
  }
  yield* print("A");
  yield* spin(() => (peek32(cpu, flag) ?? 0) !== 0);
  yield* debugExit(0);
}

/**
 * Programs the controller for the GSI in RDI's low 4 bits (0 → 5), stores 1 at 0x7000
 * (from then on a signal is latched even before the halt), then sti; hlt until that GSI's
 * interrupt: prints W and exits 0. Without the irqchip every halt exits to the host and the
 * guest halts again after each wake.
 */
export function* doorbellWait(cpu: SimCpu): Guest {
  const low = Number(cpu.regs.rdi & 0xfn);
  const gsi = low === 0 ? 5 : low;
  yield* enableIrq(gsi);
  yield* store32(DOORBELL_READY, 1);
  while ((yield* hlt()) !== gsi) {}
  yield* print("W");
  yield* debugExit(0);
}
