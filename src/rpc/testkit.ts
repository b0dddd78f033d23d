/**
 * Test doubles for the RPC layer (never imported by production code): a scripted RM core,
 * a log that can be awaited, and a raw peer that speaks queue messages by hand.
 */
import { MsgType } from "../protocol/header.js";
import {
  fragment,
  Reassembler,
  type ReassemblyEvent,
  type RmMessage,
} from "../protocol/message.js";
import type { Outbound, ResourceManagerCore } from "../rm/types.js";
import { type LogEntry, MemoryLog } from "./log.js";
import type { MessageEndpoint } from "./transport.js";

/** Message ids the scripted core understands (outside the RM catalogue on purpose). */
export const TestMsg = {
  /** Replies OK with the request payload. */
  ECHO: 0x7e000001,
  /** u32 n: sends n notifications (TestMsg.NOTE, payload u32 index) to the caller, then OK. */
  NOTIFY: 0x7e000002,
  /** Throws inside the core. */
  THROW: 0x7e000003,
  /** u32 n: queues n deferred stages, each notifying the caller (TestMsg.NOTE), then OK. */
  DEFER: 0x7e000004,
  /** u16 vmid, u16 0: one notification (TestMsg.NOTE) to that VMID, then OK to the caller. */
  NOTIFY_VMID: 0x7e000005,
  NOTE: 0x7e100001,
} as const;

export const u32le = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
};
export const readU32 = (b: Uint8Array, at = 0): number =>
  new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);

export function replyTo(
  req: RmMessage,
  error = 0,
  payload: Uint8Array = new Uint8Array(0),
): RmMessage {
  return { type: MsgType.REPLY, seq: req.seq, msgId: req.msgId, error, payload };
}

export function note(seq: number, payload: Uint8Array, msgId: number = TestMsg.NOTE): RmMessage {
  return { type: MsgType.NOTIFICATION, seq, msgId, payload };
}

/** A tiny RM core driven by TestMsg ids; unknown ids are answered UNIMPLEMENTED. */
export class ScriptedCore implements ResourceManagerCore {
  readonly events: string[] = [];
  readonly handled: { from: number; msg: RmMessage }[] = [];
  private readonly deferred: (() => Outbound[])[] = [];
  private noteSeq = 0;

  connect(vmid: number): void {
    this.events.push(`connect ${vmid}`);
  }
  disconnect(vmid: number): void {
    this.events.push(`disconnect ${vmid}`);
  }
  get hasDeferredWork(): boolean {
    return this.deferred.length > 0;
  }
  runDeferred(): Outbound[] {
    return this.deferred.shift()?.() ?? [];
  }
  /** Tells the owner (VMID 3 here) with one TestMsg.NOTE carrying the VMID. */
  vmExited(vmid: number): Outbound[] {
    this.events.push(`exited ${vmid}`);
    return [{ to: 3, message: note(this.noteSeq++ & 0xffff, u32le(vmid)) }];
  }

  handle(from: number, msg: RmMessage): Outbound[] {
    this.handled.push({ from, msg });
    const out: Outbound[] = [];
    const notify = (to: number, i: number) =>
      out.push({ to, message: note(this.noteSeq++ & 0xffff, u32le(i)) });
    switch (msg.msgId) {
      case TestMsg.ECHO:
        break;
      case TestMsg.NOTIFY:
        for (let i = 0; i < readU32(msg.payload); i++) notify(from, i);
        break;
      case TestMsg.THROW:
        throw new Error("scripted core failure");
      case TestMsg.DEFER:
        for (let i = 0; i < readU32(msg.payload); i++) {
          this.deferred.push(() => [
            { to: from, message: note(this.noteSeq++ & 0xffff, u32le(i)) },
          ]);
        }
        break;
      case TestMsg.NOTIFY_VMID:
        notify(msg.payload[0]! | (msg.payload[1]! << 8), 0);
        break;
      default:
        out.push({ to: from, message: replyTo(msg, 0xffffffff) });
        return out;
    }
    out.push({
      to: from,
      message: replyTo(msg, 0, msg.msgId === TestMsg.ECHO ? msg.payload : undefined),
    });
    return out;
  }
}

/** A MemoryLog whose entries can be awaited. */
export class WatchLog extends MemoryLog {
  private readonly watchers: { pred: (e: LogEntry) => boolean; resolve: (e: LogEntry) => void }[] =
    [];

  override write(entry: LogEntry): void {
    super.write(entry);
    for (const w of [...this.watchers]) {
      if (w.pred(entry)) {
        this.watchers.splice(this.watchers.indexOf(w), 1);
        w.resolve(entry);
      }
    }
  }

  /** Resolves with the first entry (already written or future) that matches. */
  next(pred: (e: LogEntry) => boolean): Promise<LogEntry> {
    const seen = this.entries.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.watchers.push({ pred, resolve }));
  }

  event(event: string): Promise<LogEntry> {
    return this.next((e) => e.event === event);
  }
}

/** Speaks raw queue messages on an endpoint; records what it receives, reassembled. */
export class RawPeer {
  readonly received: RmMessage[] = [];
  readonly events: ReassemblyEvent[] = [];
  readonly raw: Uint8Array[] = [];
  closedWith: { reason: unknown } | undefined;
  private readonly reassembler: Reassembler;
  private readonly waiters: { n: number; resolve: () => void }[] = [];

  constructor(
    readonly endpoint: MessageEndpoint,
    rules: "rm" | "linux" = "linux",
  ) {
    this.reassembler = new Reassembler(rules);
    endpoint.start({
      message: (m) => {
        this.raw.push(m);
        for (const ev of this.reassembler.push(m)) {
          this.events.push(ev);
          if (ev.kind === "message") this.received.push(ev.message);
        }
        for (const w of [...this.waiters]) {
          if (this.received.length >= w.n) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve();
          }
        }
      },
      writable: () => this.flush(),
      close: (reason) => {
        this.closedWith = { reason };
      },
    });
  }

  private readonly outbox: { bytes: Uint8Array; push: boolean }[] = [];

  /** Sends a logical message (fragmented), waiting for room as a real sender would. */
  send(m: RmMessage): void {
    const frags = fragment(m);
    frags.forEach((bytes, i) => {
      this.outbox.push({ bytes, push: i === frags.length - 1 });
    });
    this.flush();
  }

  /** Sends one queue message as is. */
  sendRaw(bytes: Uint8Array): void {
    this.outbox.push({ bytes, push: true });
    this.flush();
  }

  private flush(): void {
    while (this.outbox.length > 0 && this.endpoint.writable) {
      const f = this.outbox.shift()!;
      this.endpoint.send(f.bytes, f.push);
    }
  }

  /** Resolves once `n` logical messages have been received in total. */
  until(n: number): Promise<void> {
    if (this.received.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
}

/** Lets queued microtasks and immediates run (signals are microtasks; the pump uses setImmediate). */
export function settle(rounds = 3): Promise<void> {
  return new Promise((resolve) => {
    const step = (left: number) => {
      if (left === 0) resolve();
      else setImmediate(() => step(left - 1));
    };
    step(rounds);
  });
}
