import { TsvisorError } from "../../core/errors.js";
import type { Vcpu, VcpuExit, VcpuKicker, VcpuTransfer, X86Regs, X86Sregs } from "../types.js";
import {
  KVM_FLAG,
  KVM_INTERRUPT_OFF,
  KVM_IOCTL,
  KVM_RUN_OFF,
  KVM_SIZEOF,
  SYS,
} from "./constants.js";
import { decodeRunExit } from "./kvm-run.js";
import { kickSignal, loadNative, type NativeSys, sysCheck, sysCheckBig } from "./native.js";
import { decodeRegs, decodeSregs, encodeRegs, encodeSregs } from "./x86-layout.js";

/** The backend-private part of a KVM vCPU transfer. */
export interface KvmVcpuTransfer extends VcpuTransfer {
  readonly backend: "kvm";
  readonly fd: number;
  readonly mmapSize: number;
  /** Int32 word 0: the tid of the thread that opened the vCPU (0 = none), for kicks. */
  readonly kickWords: SharedArrayBuffer;
}

export const KICK_TID = 0;

export function isKvmVcpuTransfer(t: VcpuTransfer): t is KvmVcpuTransfer {
  return (
    t.backend === "kvm" &&
    typeof t.fd === "number" &&
    typeof t.mmapSize === "number" &&
    t.kickWords instanceof SharedArrayBuffer
  );
}

/**
 * Opens a KVM vCPU in the calling thread, which from then on is the only thread that issues
 * its ioctls. The thread maps its own view of kvm_run so its lifetime does not depend on the
 * owning thread's mapping. The vCPU fd itself stays owned by the VcpuHandle.
 */
export function openVcpu(transfer: VcpuTransfer): Vcpu {
  if (!isKvmVcpuTransfer(transfer)) {
    throw new TsvisorError("VCPU_WORKER", "the vCPU transfer is not a KVM vCPU");
  }
  return new KvmVcpu(loadNative(), transfer);
}

class KvmVcpu implements Vcpu {
  readonly index: number;
  private readonly fd: number;
  private readonly runAddr: bigint;
  private readonly runBuffer: ArrayBuffer;
  private readonly page: Uint8Array;
  private readonly view: DataView;
  private readonly kickWords: Int32Array;
  private readonly regsBuf = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_regs));
  private readonly sregsBuf = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_sregs));
  private readonly interruptBuf = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_interrupt));
  private closed = false;

  constructor(
    private readonly sys: NativeSys,
    private readonly transfer: KvmVcpuTransfer,
  ) {
    this.index = transfer.index;
    this.fd = transfer.fd;
    // Process-wide and idempotent; repeated here so a vCPU thread never depends on the order
    // in which the owning thread set things up.
    sysCheck(sys.installNoopHandler(kickSignal(sys)), "installing the kick signal handler");
    this.runAddr = sysCheckBig(
      sys.mmap(transfer.mmapSize, SYS.PROT_READ | SYS.PROT_WRITE, SYS.MAP_SHARED, this.fd, 0),
      "mmap of kvm_run",
    );
    this.runBuffer = sys.view(this.runAddr, transfer.mmapSize);
    this.page = new Uint8Array(this.runBuffer);
    this.view = new DataView(this.runBuffer);
    this.kickWords = new Int32Array(transfer.kickWords);
    Atomics.store(this.kickWords, KICK_TID, sys.gettid());
  }

  run(): VcpuExit {
    this.assertOpen();
    return decodeRunExit(this.sys.ioctl(this.fd, KVM_IOCTL.RUN, 0), this.page, this.view);
  }

  clearKick(): void {
    this.assertOpen();
    this.page[KVM_RUN_OFF.immediate_exit] = 0;
  }

  getRegs(): X86Regs {
    this.ioctl(KVM_IOCTL.GET_REGS, this.regsBuf, "KVM_GET_REGS");
    return decodeRegs(this.regsBuf);
  }

  setRegs(regs: X86Regs): void {
    encodeRegs(regs, this.regsBuf);
    this.ioctl(KVM_IOCTL.SET_REGS, this.regsBuf, "KVM_SET_REGS");
  }

  getSregs(): X86Sregs {
    this.ioctl(KVM_IOCTL.GET_SREGS, this.sregsBuf, "KVM_GET_SREGS");
    return decodeSregs(this.sregsBuf);
  }

  setSregs(sregs: X86Sregs): void {
    encodeSregs(sregs, this.sregsBuf);
    this.ioctl(KVM_IOCTL.SET_SREGS, this.sregsBuf, "KVM_SET_SREGS");
  }

  // Userspace interrupt delivery (no in-kernel irqchip). KVM fills ready_for_interrupt_injection
  // and if_flag on every return from KVM_RUN, -EINTR included; before the first run both are 0.

  interruptReady(): boolean {
    this.assertOpen();
    return (
      this.page[KVM_RUN_OFF.ready_for_interrupt_injection] !== 0 &&
      this.page[KVM_RUN_OFF.if_flag] !== 0
    );
  }

  interruptFlag(): boolean {
    this.assertOpen();
    return this.page[KVM_RUN_OFF.if_flag] !== 0;
  }

  injectInterrupt(vector: number): void {
    if (!Number.isInteger(vector) || vector < 0 || vector > 0xff) {
      throw new TsvisorError("HV_SYSCALL", `interrupt vector ${vector} is not 0..255`);
    }
    this.interruptBuf.setUint32(KVM_INTERRUPT_OFF.irq, vector, true);
    this.ioctl(KVM_IOCTL.INTERRUPT, this.interruptBuf, "KVM_INTERRUPT");
  }

  requestInterruptWindow(on: boolean): void {
    this.assertOpen();
    this.page[KVM_RUN_OFF.request_interrupt_window] = on ? 1 : 0;
  }

  setRunnable(): void {
    const state = new DataView(new ArrayBuffer(KVM_SIZEOF.kvm_mp_state));
    state.setUint32(0, KVM_FLAG.MP_STATE_RUNNABLE, true);
    this.ioctl(KVM_IOCTL.SET_MP_STATE, state, "KVM_SET_MP_STATE");
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.compareExchange(this.kickWords, KICK_TID, this.sys.gettid(), 0);
    this.sys.detach(this.runBuffer);
    sysCheck(this.sys.munmap(this.runAddr, this.transfer.mmapSize), "munmap of kvm_run");
  }

  private ioctl(request: number, arg: DataView, what: string): void {
    this.assertOpen();
    sysCheck(this.sys.ioctl(this.fd, request, arg), what);
  }

  private assertOpen(): void {
    if (this.closed)
      throw new TsvisorError("HV_CLOSED", `vCPU ${this.index} is closed in this thread`);
  }
}

/**
 * Kicks a KVM vCPU from a thread that is neither its owner nor its own: this thread maps its
 * own view of the vCPU's kvm_run (the fd is process-wide), so it can set immediate_exit, then
 * signals the vCPU thread as VcpuHandle.kick() does. The mapping holds a reference to the vCPU
 * (and so to the VM) until close(), which therefore must come before the VM is expected gone.
 */
export function openKicker(transfer: VcpuTransfer): VcpuKicker {
  if (!isKvmVcpuTransfer(transfer)) {
    throw new TsvisorError("VCPU_WORKER", "the vCPU transfer is not a KVM vCPU");
  }
  return new KvmKicker(loadNative(), transfer);
}

class KvmKicker implements VcpuKicker {
  private readonly runAddr: bigint;
  private runBuffer: ArrayBuffer | undefined;
  private readonly page: Uint8Array;
  private readonly kickWords: Int32Array;
  private readonly signal: number;

  constructor(
    private readonly sys: NativeSys,
    private readonly transfer: KvmVcpuTransfer,
  ) {
    // A signal sent before a handler exists would kill the process; process-wide, idempotent.
    sysCheck(sys.installNoopHandler(kickSignal(sys)), "installing the kick signal handler");
    this.signal = kickSignal(sys);
    this.runAddr = sysCheckBig(
      sys.mmap(transfer.mmapSize, SYS.PROT_READ | SYS.PROT_WRITE, SYS.MAP_SHARED, transfer.fd, 0),
      "mmap of kvm_run (kicker)",
    );
    this.runBuffer = sys.view(this.runAddr, transfer.mmapSize);
    this.page = new Uint8Array(this.runBuffer);
    this.kickWords = new Int32Array(transfer.kickWords);
  }

  kick(): void {
    if (this.runBuffer === undefined) return;
    // Same order as KvmVcpuHandle.kick(): immediate_exit for a thread about to enter KVM_RUN,
    // the signal for one inside it.
    this.page[KVM_RUN_OFF.immediate_exit] = 1;
    const tid = Atomics.load(this.kickWords, KICK_TID);
    if (tid !== 0) this.sys.tgkill(process.pid, tid, this.signal);
  }

  close(): void {
    if (this.runBuffer === undefined) return;
    this.sys.detach(this.runBuffer);
    this.runBuffer = undefined;
    this.sys.munmap(this.runAddr, this.transfer.mmapSize);
  }
}
