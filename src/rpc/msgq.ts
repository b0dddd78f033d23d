import { invariant, TsvisorError } from "../core/errors.js";
import { MSG_MAX_SIZE } from "../protocol/header.js";
import type { EndpointHandlers, MessageEndpoint } from "./transport.js";

/**
 * An in-process model of a Gunyah message queue (rm-protocol.md §1.1): a bounded FIFO of
 * whole messages with a sender side and a receiver side, each woken by a signal that stands
 * for its vIRQ.
 *
 * Signals follow the hypervisor: not-empty when a send makes the count reach the not-empty
 * threshold (default 1) or carries PUSH; not-full when a receive makes the count drop to the
 * not-full threshold (default depth − 1, i.e. full → not full). They are delivered from a
 * microtask so a sender is never re-entered from inside send(); like a pending interrupt,
 * several assertions before delivery arrive as one call, so handlers drain until empty.
 */
export interface MessageQueueOptions {
  /** Messages the queue holds, 1…256 (Gunyah's host RM link uses 8). */
  readonly depth?: number;
  /** Largest message in bytes, 1…1024 (the RM link uses 240). */
  readonly maxSize?: number;
  readonly notEmptyThreshold?: number;
  readonly notFullThreshold?: number;
}

export const MSGQ_DEFAULT_DEPTH = 8;
export const MSGQ_MAX_DEPTH = 256;
const MSGQ_MAX_SIZE_LIMIT = 1024;

export class MessageQueue {
  readonly depth: number;
  readonly maxSize: number;
  readonly notEmptyThreshold: number;
  readonly notFullThreshold: number;
  /** Receiver's vIRQ. */
  onNotEmpty: (() => void) | undefined;
  /** Sender's vIRQ. */
  onNotFull: (() => void) | undefined;

  private readonly items: Uint8Array[] = [];
  private notEmptyRaised = false;
  private notFullRaised = false;

  constructor(opts: MessageQueueOptions = {}) {
    this.depth = opts.depth ?? MSGQ_DEFAULT_DEPTH;
    this.maxSize = opts.maxSize ?? MSG_MAX_SIZE;
    this.notEmptyThreshold = opts.notEmptyThreshold ?? 1;
    this.notFullThreshold = opts.notFullThreshold ?? this.depth - 1;
    invariant(
      Number.isInteger(this.depth) && this.depth >= 1 && this.depth <= MSGQ_MAX_DEPTH,
      `queue depth ${this.depth} is not in 1…${MSGQ_MAX_DEPTH}`,
    );
    invariant(
      Number.isInteger(this.maxSize) && this.maxSize >= 1 && this.maxSize <= MSGQ_MAX_SIZE_LIMIT,
      `message size ${this.maxSize} is not in 1…${MSGQ_MAX_SIZE_LIMIT}`,
    );
    invariant(
      this.notEmptyThreshold >= 1 && this.notEmptyThreshold <= this.depth,
      "not-empty threshold must lie in 1…depth",
    );
    invariant(
      this.notFullThreshold >= 0 && this.notFullThreshold < this.depth,
      "not-full threshold must lie in 0…depth-1",
    );
  }

  get count(): number {
    return this.items.length;
  }

  get full(): boolean {
    return this.items.length >= this.depth;
  }

  /**
   * Copies one message in. Returns not-full (false: the queue is now full). Throws
   * RPC_QUEUE_FULL when it was full already and PROTO_TOO_LONG above maxSize.
   */
  send(msg: Uint8Array, opts: { readonly push?: boolean } = {}): boolean {
    if (msg.length > this.maxSize) {
      throw new TsvisorError(
        "PROTO_TOO_LONG",
        `message of ${msg.length} bytes exceeds the queue's ${this.maxSize}-byte limit`,
      );
    }
    if (this.full) {
      throw new TsvisorError("RPC_QUEUE_FULL", `the queue holds ${this.depth} messages already`);
    }
    this.items.push(msg.slice());
    if (opts.push === true || this.items.length === this.notEmptyThreshold) this.raiseNotEmpty();
    return !this.full;
  }

  /** Takes the oldest message. Throws RPC_QUEUE_EMPTY when there is none. */
  receive(): { readonly msg: Uint8Array; readonly notEmpty: boolean } {
    const msg = this.items.shift();
    if (msg === undefined) throw new TsvisorError("RPC_QUEUE_EMPTY");
    if (this.items.length === this.notFullThreshold) this.raiseNotFull();
    return { msg, notEmpty: this.items.length > 0 };
  }

  /** Drops every queued message without signalling (link torn down). */
  flush(): void {
    this.items.length = 0;
  }

  private raiseNotEmpty(): void {
    if (this.notEmptyRaised) return;
    this.notEmptyRaised = true;
    queueMicrotask(() => {
      this.notEmptyRaised = false;
      this.onNotEmpty?.();
    });
  }

  private raiseNotFull(): void {
    if (this.notFullRaised) return;
    this.notFullRaised = true;
    queueMicrotask(() => {
      this.notFullRaised = false;
      this.onNotFull?.();
    });
  }
}

/** Shared fate of the two endpoints of one link. */
class LinkState {
  closed = false;
  readonly endpoints: MsgqEndpoint[] = [];

  close(reason: TsvisorError | undefined, queues: readonly MessageQueue[]): void {
    if (this.closed) return;
    this.closed = true;
    for (const q of queues) q.flush();
    for (const e of this.endpoints) e.linkClosed(reason);
  }
}

/** One side of a msgq link: sends into `tx`, receives from `rx`. */
export class MsgqEndpoint implements MessageEndpoint {
  private handlers: EndpointHandlers | undefined;
  private paused = false;
  private draining = false;
  private closeReason: { reason: TsvisorError | undefined } | undefined;
  private closeDelivered = false;

  constructor(
    private readonly link: LinkState,
    readonly tx: MessageQueue,
    readonly rx: MessageQueue,
    readonly label: string,
  ) {
    link.endpoints.push(this);
    tx.onNotFull = () => {
      if (!this.link.closed) this.handlers?.writable();
    };
    rx.onNotEmpty = () => this.drain();
  }

  get closed(): boolean {
    return this.link.closed;
  }

  get writable(): boolean {
    return !this.link.closed && !this.tx.full;
  }

  send(msg: Uint8Array, push = false): boolean {
    if (this.link.closed) throw new TsvisorError("RPC_CLOSED", `link ${this.label} is closed`);
    return this.tx.send(msg, { push });
  }

  start(handlers: EndpointHandlers): void {
    invariant(this.handlers === undefined, "a msgq endpoint has one consumer");
    this.handlers = handlers;
    queueMicrotask(() => {
      if (this.closeReason) this.deliverClose();
      else this.drain();
    });
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    queueMicrotask(() => this.drain());
  }

  close(reason?: TsvisorError): void {
    this.link.close(reason, [this.tx, this.rx]);
  }

  /** Called by the link on close, for both sides. */
  linkClosed(reason: TsvisorError | undefined): void {
    this.closeReason = { reason };
    queueMicrotask(() => this.deliverClose());
  }

  private deliverClose(): void {
    if (this.closeDelivered || !this.handlers || !this.closeReason) return;
    this.closeDelivered = true;
    this.handlers.close(this.closeReason.reason);
  }

  /** Receives until the queue is empty, the consumer pauses, or the link closes. */
  private drain(): void {
    if (!this.handlers || this.draining) return;
    this.draining = true;
    try {
      while (!this.paused && !this.link.closed && this.rx.count > 0) {
        this.handlers.message(this.rx.receive().msg);
      }
    } finally {
      this.draining = false;
    }
  }
}

export interface MsgqLink {
  /** The client's side (a VM): sends requests, receives replies and notifications. */
  readonly client: MsgqEndpoint;
  /** The RM's side. */
  readonly server: MsgqEndpoint;
  /** client → RM ("TX" in Gunyah's naming, seen from the VM). */
  readonly toServer: MessageQueue;
  /** RM → client ("RX"). */
  readonly toClient: MessageQueue;
}

/** A pair of queues = one client's channel to the RM. */
export function createMsgqLink(
  opts: MessageQueueOptions & { readonly label?: string } = {},
): MsgqLink {
  const toServer = new MessageQueue(opts);
  const toClient = new MessageQueue(opts);
  const state = new LinkState();
  const label = opts.label ?? "msgq";
  return {
    client: new MsgqEndpoint(state, toServer, toClient, `${label}:client`),
    server: new MsgqEndpoint(state, toClient, toServer, `${label}:server`),
    toServer,
    toClient,
  };
}
