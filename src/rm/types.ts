import type { RmMessage } from "../protocol/message.js";

/**
 * The contract between the RM core (pure, src/rm/) and the server that carries its messages
 * (src/rpc/). The RM sees logical messages (already reassembled, payload still raw bytes) and
 * answers with logical messages addressed by VMID, in the order they must be sent:
 * notifications caused by a request come before that request's reply.
 */
export interface Outbound {
  /** VMID of the client the message goes to. */
  readonly to: number;
  readonly message: RmMessage;
}

export interface ResourceManagerCore {
  /** A client with this VMID now has an RPC link (message-queue pair) to the RM. */
  connect(vmid: number): void;
  /** The client's link is gone; it receives nothing until it connects again. */
  disconnect(vmid: number): void;
  /** Handles one reassembled message from `from`. Every REQUEST gets exactly one REPLY. */
  handle(from: number, msg: RmMessage): Outbound[];
  /** True while asynchronous RM work (VM_RESET's stages) is queued. */
  readonly hasDeferredWork: boolean;
  /** Runs one queued asynchronous stage and returns what it sends. */
  runDeferred(): Outbound[];
  /**
   * A hypervisor event: the VM stopped by itself (power-off, reset request, watchdog bite, vCPU
   * fault…; `exitType` is an ExitType). A RUNNING or PAUSED VM becomes EXITED, its running
   * linked peers get VM_STATUS and its owner VM_EXITED; for any other VM the event is stale and
   * nothing is sent.
   */
  vmExited(vmid: number, exitType: number, exitFlags?: number, exitCode?: number): Outbound[];
}

/**
 * Memory as the RM sees it: the physical address space of a VM that lends or shares memory
 * (for tsvisor's host, VMID 3, the addresses its SGL entries name). The RM reads a VM-config
 * devicetree through it at VM_INIT.
 */
export interface PhysicalMemoryPort {
  /** Reads `length` bytes at `addr` of `owner`'s physical space; undefined if unbacked. */
  read(owner: number, addr: bigint, length: number): Uint8Array | undefined;
}
