import type { TsvisorError } from "../core/errors.js";

/**
 * One side of an RM link as both the server and the client see it: it carries whole queue
 * messages (≤240 bytes each, header included) in order, in both directions. Implementations:
 * the in-process message-queue pair (msgq.ts) and a Unix stream socket (src/os/).
 */
export interface MessageEndpoint {
  /** For logs: "msgq", "unix:/run/rm.sock#2", … */
  readonly label: string;
  /** True when a send() now would not fail with RPC_QUEUE_FULL. */
  readonly writable: boolean;
  readonly closed: boolean;
  /**
   * Sends one queue message. Returns the queue's not-full flag: false means the next send
   * would fail until `writable()` is signalled. Throws RPC_QUEUE_FULL when the queue is full
   * already, RPC_CLOSED after close, PROTO_TOO_LONG above the transport's message size.
   * `push` asks the receiver to be woken even below its not-empty threshold.
   */
  send(msg: Uint8Array, push?: boolean): boolean;
  /**
   * Installs the handlers (once). Messages that arrived earlier are delivered afterwards.
   * Handlers are never called re-entrantly from inside send().
   */
  start(handlers: EndpointHandlers): void;
  /** Stops delivering received messages until resume(); the peer feels back-pressure. */
  pause(): void;
  resume(): void;
  /** Closes both directions; the close handler runs once (on either side) with `reason`. */
  close(reason?: TsvisorError): void;
}

export interface EndpointHandlers {
  /** One received queue message. */
  message(msg: Uint8Array): void;
  /** The endpoint became writable again after a send returned not-full = false. */
  writable(): void;
  /** The link is gone; `reason` says why when it was not an orderly close. */
  close(reason: TsvisorError | undefined): void;
}
