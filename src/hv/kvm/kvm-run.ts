import { TsvisorError } from "../../core/errors.js";
import type { VcpuExit } from "../types.js";
import { KVM_EXIT, KVM_FLAG, KVM_RUN_OFF, SYS } from "./constants.js";

/**
 * Decodes the outcome of one KVM_RUN from its return code and the vCPU's kvm_run page.
 * Pure over the bytes, so it is tested with synthetic pages. The io/mmio `data` views alias
 * the page: the vCPU thread fills them in place for guest reads.
 */
export function decodeRunExit(rc: number, page: Uint8Array, view: DataView): VcpuExit {
  // immediate_exit alone leaves exit_reason stale, so a kick is recognised by -EINTR.
  if (rc === -SYS.EINTR) return { kind: "intr" };
  if (rc < 0) {
    throw new TsvisorError("HV_SYSCALL", `KVM_RUN failed: errno ${-rc}`, { errno: -rc });
  }
  const reason = view.getUint32(KVM_RUN_OFF.exit_reason, true);
  switch (reason) {
    case KVM_EXIT.IO: {
      const size = view.getUint8(KVM_RUN_OFF.io_size);
      const count = view.getUint32(KVM_RUN_OFF.io_count, true);
      const offset = Number(view.getBigUint64(KVM_RUN_OFF.io_data_offset, true));
      const length = size * count;
      if (offset + length > page.length || length === 0) {
        throw new TsvisorError(
          "HV_SYSCALL",
          `KVM io exit data at ${offset}+${length} is outside kvm_run`,
        );
      }
      return {
        kind: "io",
        write: view.getUint8(KVM_RUN_OFF.io_direction) === KVM_FLAG.EXIT_IO_OUT,
        port: view.getUint16(KVM_RUN_OFF.io_port, true),
        size,
        count,
        data: page.subarray(offset, offset + length),
      };
    }
    case KVM_EXIT.MMIO: {
      const len = Math.min(view.getUint32(KVM_RUN_OFF.mmio_len, true), 8);
      return {
        kind: "mmio",
        write: view.getUint8(KVM_RUN_OFF.mmio_is_write) !== 0,
        addr: Number(view.getBigUint64(KVM_RUN_OFF.mmio_phys_addr, true)),
        data: page.subarray(KVM_RUN_OFF.mmio_data, KVM_RUN_OFF.mmio_data + len),
      };
    }
    case KVM_EXIT.HLT:
      return { kind: "hlt" };
    case KVM_EXIT.SHUTDOWN:
      return { kind: "shutdown" };
    case KVM_EXIT.INTR:
      return { kind: "intr" };
    case KVM_EXIT.IRQ_WINDOW_OPEN:
      return { kind: "irq-window" };
    case KVM_EXIT.FAIL_ENTRY:
      return {
        kind: "fail-entry",
        reason: view.getBigUint64(KVM_RUN_OFF.fail_entry_hardware_entry_failure_reason, true),
        cpu: view.getUint32(KVM_RUN_OFF.fail_entry_cpu, true),
      };
    case KVM_EXIT.INTERNAL_ERROR:
      return decodeInternalError(page, view);
    default:
      return { kind: "unknown", reason };
  }
}

const MAX_INTERNAL_DATA = 16;

function decodeInternalError(page: Uint8Array, view: DataView): VcpuExit {
  const suberror = view.getUint32(KVM_RUN_OFF.internal_suberror, true);
  const ndata = Math.min(view.getUint32(KVM_RUN_OFF.internal_ndata, true), MAX_INTERNAL_DATA);
  const data: bigint[] = [];
  for (let i = 0; i < ndata; i++) {
    data.push(view.getBigUint64(KVM_RUN_OFF.internal_data + 8 * i, true));
  }
  if (suberror === KVM_FLAG.INTERNAL_ERROR_EMULATION) {
    const flags = view.getBigUint64(KVM_RUN_OFF.emulation_failure_flags, true);
    if ((flags & BigInt(KVM_FLAG.EMULATION_FLAG_INSTRUCTION_BYTES)) !== 0n) {
      const size = Math.min(view.getUint8(KVM_RUN_OFF.emulation_failure_insn_size), 15);
      const at = KVM_RUN_OFF.emulation_failure_insn_bytes;
      return { kind: "internal-error", suberror, insn: page.slice(at, at + size), data };
    }
  }
  return { kind: "internal-error", suberror, data };
}
