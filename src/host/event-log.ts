import { TsvisorError } from "../core/errors.js";
import type { HostEvent } from "./types.js";

/**
 * The host's event log: every event gets the next `seq` (from 1, never reused) and the last
 * `retention` events are kept so a client that reconnects with the last seq it saw resumes
 * without a gap. Subscribers are called synchronously, in seq order, once per event.
 */

export type EventDraft = Omit<HostEvent, "seq" | "time">;

export interface Subscription {
  readonly vm: string | undefined;
  readonly listener: (e: HostEvent) => void;
}

export const DEFAULT_EVENT_RETENTION = 10_000;

export class EventLog {
  private readonly ring: (HostEvent | undefined)[];
  private next = 1;
  private readonly subs = new Set<Subscription>();

  constructor(
    readonly retention = DEFAULT_EVENT_RETENTION,
    private readonly now: () => string = () => new Date().toISOString(),
  ) {
    if (!Number.isSafeInteger(retention) || retention < 1) {
      throw new TsvisorError("API_VALIDATION", `event retention must be a positive integer`);
    }
    this.ring = new Array(retention);
  }

  /** The seq the next event will get. */
  get nextSeq(): number {
    return this.next;
  }

  /** The oldest retained seq (nextSeq when nothing is retained yet). */
  get oldestSeq(): number {
    return Math.max(1, this.next - this.retention);
  }

  get subscribers(): number {
    return this.subs.size;
  }

  append(draft: EventDraft): HostEvent {
    const e: HostEvent = { seq: this.next, time: this.now(), ...draft };
    this.ring[(this.next - 1) % this.retention] = e;
    this.next++;
    for (const s of [...this.subs]) {
      if (this.subs.has(s) && (s.vm === undefined || s.vm === e.vm)) s.listener(e);
    }
    return e;
  }

  /** Retained events with seq > since (for vm, if given), oldest first. */
  since(since: number, vm?: string): HostEvent[] {
    this.checkCursor(since);
    const out: HostEvent[] = [];
    for (let seq = Math.max(since + 1, this.oldestSeq); seq < this.next; seq++) {
      const e = this.ring[(seq - 1) % this.retention]!;
      if (vm === undefined || e.vm === vm) out.push(e);
    }
    return out;
  }

  /** Whether any retained event names this VM. */
  mentions(vm: string): boolean {
    for (let seq = this.oldestSeq; seq < this.next; seq++) {
      if (this.ring[(seq - 1) % this.retention]?.vm === vm) return true;
    }
    return false;
  }

  /**
   * Replays what `since` has not seen, then delivers live events until the returned function is
   * called. Without `since`, only events from now on.
   */
  subscribe(
    opts: { since?: number | undefined; vm?: string | undefined },
    listener: (e: HostEvent) => void,
  ): () => void {
    const backlog = opts.since === undefined ? [] : this.since(opts.since, opts.vm);
    // Registered before the replay so that an event a listener causes while the backlog is
    // replayed is queued behind it: every event still arrives once and in seq order.
    let replayed = false;
    const queued: HostEvent[] = [];
    const sub: Subscription = {
      vm: opts.vm,
      listener: (e) => (replayed ? listener(e) : queued.push(e)),
    };
    this.subs.add(sub);
    for (const e of backlog) listener(e);
    replayed = true;
    for (const e of queued) listener(e);
    return () => {
      this.subs.delete(sub);
    };
  }

  private checkCursor(since: number): void {
    if (!Number.isSafeInteger(since) || since < 0) {
      throw new TsvisorError("API_VALIDATION", `since: '${since}' is not an event seq`);
    }
    if (since >= this.next) {
      throw new TsvisorError(
        "API_VALIDATION",
        `since: event ${since} has not happened yet (the last is ${this.next - 1})`,
        { next_event: this.next },
      );
    }
    if (since + 1 < this.oldestSeq) {
      throw new TsvisorError(
        "API_CURSOR_EXPIRED",
        `events after ${since} are no longer kept (the oldest kept is ${this.oldestSeq}); list the VMs and resume from ${this.next - 1}`,
        { oldest_event: this.oldestSeq, next_event: this.next },
      );
    }
  }
}
