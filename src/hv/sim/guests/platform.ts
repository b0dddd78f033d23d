/**
 * Simulated versions of the guests that use the platform beyond COM1: the RM message-queue
 * client, the two-vCPU guest, the doorbell waiter, the guest that shuts down on VM_SHUTDOWN
 * and the one that shows its initrd (guests/msgq-client.S, two-vcpu.S, doorbell-wait.S,
 * graceful.S, initrd-echo.S; docs/devices.md and docs/vmm.md give their contracts).
 */
import {
  RM_MSGQ_GSI,
  RM_MSGQ_IRQ_RX,
  RM_MSGQ_MMIO_BASE,
  RM_MSGQ_SEND_PUSH,
  RmMsgqReg,
  RmMsgqStatus,
} from "../../../devices/rm-msgq.js";
import { PVH_START_INFO_MAGIC } from "../../../loader/pvh.js";
import {
  COM1,
  debugExit,
  enableIrq,
  type Guest,
  hlt,
  load,
  load32,
  load64,
  outb,
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
/** api 0x21, NOTIFICATION without continuations, VM_SHUTDOWN (0x56100002); seq masked out. */
const SHUTDOWN_HEADER = 0x5610_0002_0000_0321n;
const HEADER_MASK = 0xffff_ffff_0000_ffffn;
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

/** api 0x21, REQUEST, seq 1, VM_SET_STATUS (0x56000080), and its reply. */
const SET_STATUS_REQUEST = 0x5600_0080_0001_0121n;
const SET_STATUS_REPLY = 0x5600_0080_0001_0221n;

/**
 * VM_SET_STATUS through the RM message-queue device, os_status = RDI's low byte, app_status =
 * RSI's low 16 bits; polls RX for the reply, skipping anything else. OK: prints
 * "os-status: reported" and exits 0. RM error: exits 0xe1. Device refused the send: 0xe2.
 */
export function* osStatus(cpu: SimCpu): Guest {
  const q = RM_MSGQ_MMIO_BASE;
  yield* store64(q + RmMsgqReg.TX_BUF, SET_STATUS_REQUEST);
  const os = Number(cpu.regs.rdi & 0xffn);
  const app = Number(cpu.regs.rsi & 0xffffn);
  yield* store32(q + RmMsgqReg.TX_BUF + 8, ((os << 8) | (app << 16)) >>> 0);
  yield* store32(q + RmMsgqReg.TX_LEN, 12);
  yield* store32(q + RmMsgqReg.TX_SEND, RM_MSGQ_SEND_PUSH);
  if ((yield* load32(q + RmMsgqReg.ERROR)) !== 0) {
    yield* print("os-status: the msgq device refused the send\n");
    yield* debugExit(0xe2);
    return;
  }
  for (;;) {
    while (((yield* load32(q + RmMsgqReg.STATUS)) & RmMsgqStatus.RX_NOT_EMPTY) === 0) {}
    const header = yield* load64(q + RmMsgqReg.RX_BUF);
    if (header !== SET_STATUS_REPLY) {
      yield* store32(q + RmMsgqReg.RX_POP, 1);
      continue;
    }
    const rmError = yield* load32(q + RmMsgqReg.RX_BUF + 8);
    yield* store32(q + RmMsgqReg.RX_POP, 1);
    if (rmError !== 0) {
      yield* print("os-status: VM_SET_STATUS refused\n");
      yield* debugExit(0xe1);
      return;
    }
    yield* print("os-status: reported\n");
    yield* debugExit(0);
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

/**
 * Prints "graceful: running", enables the msgq interrupt and sleeps (`sti; hlt`) while RX is
 * empty. Each message is popped; the RM's VM_SHUTDOWN notification prints "graceful: shutdown"
 * and powers off with 0, anything else is ignored. As on KVM the queue is read before every
 * halt, so a message that came before the interrupt was enabled is not missed.
 */
export function* graceful(): Guest {
  const q = RM_MSGQ_MMIO_BASE;
  yield* enableIrq(RM_MSGQ_GSI);
  yield* print("graceful: running\n");
  yield* store32(q + RmMsgqReg.IRQ_ENABLE, RM_MSGQ_IRQ_RX);
  for (;;) {
    if (((yield* load32(q + RmMsgqReg.STATUS)) & RmMsgqStatus.RX_NOT_EMPTY) === 0) {
      yield* hlt();
      continue;
    }
    const header = yield* load64(q + RmMsgqReg.RX_BUF);
    yield* store32(q + RmMsgqReg.RX_POP, 1);
    if ((header & HEADER_MASK) === SHUTDOWN_HEADER) break;
  }
  yield* print("graceful: shutdown\n");
  yield* debugExit(0);
}

/**
 * Prints the initrd's first bytes (at most 16) and exits with its last byte; no initrd: exits
 * 0xe0. The ELF entry is told through RDX/RCX; a sim image's PVH entry is the same program, so
 * a non-zero RBX (the PVH start_info) selects that path: wrong magic 0xe1, else module 0.
 */
export function* initrdEcho(cpu: SimCpu): Guest {
  let addr = Number(cpu.regs.rdx);
  let size = Number(cpu.regs.rcx);
  const info = Number(cpu.regs.rbx);
  if (info !== 0) {
    if ((yield* load32(info)) !== PVH_START_INFO_MAGIC) {
      yield* debugExit(0xe1);
      return;
    }
    const modules = yield* load32(info + 12);
    const list = Number(yield* load64(info + 16));
    addr = modules === 0 ? 0 : Number(yield* load64(list));
    size = modules === 0 ? 0 : Number(yield* load64(list + 8));
  }
  if (size === 0) {
    yield* debugExit(0xe0);
    return;
  }
  const shown = yield* load(addr, Math.min(size, 16));
  for (const b of shown) yield* outb(COM1, b);
  const last = yield* load(addr + size - 1, 1);
  yield* debugExit(last[0]!);
}
