import { TsvisorError } from "../core/errors.js";
import { msgName } from "../protocol/catalogue.js";
import { MSG_TYPE_NAMES, MsgType } from "../protocol/header.js";
import { fragment, Reassembler, type RmMessage } from "../protocol/message.js";
import type { Outbound, ResourceManagerCore } from "../rm/types.js";
import { type LogPort, nullLog } from "./log.js";
import type { MessageEndpoint } from "./transport.js";

/**
 * The RM's side of the RPC: one session per client link. A session reassembles what its
 * client sends (RM receiver rules), hands whole requests to the core one at a time in arrival
 * order, and sends what the core answers with the RM's flow control (rm-protocol.md §1.7):
 * one logical message in flight; behind it at most one pending reply and a bounded list of
 * pending notifications (oldest dropped); when the link frees up, the pending reply first.
 *
 * Where the RM would drop an older pending reply to make room for a newer one, a session
 * instead stops reading its client's requests while a reply is pending, so every request is
 * answered exactly once and a client that never reads cannot make the server buffer without
 * bound.
 */
export interface RmServerOptions {
  /** Pending notifications kept per session before the oldest is dropped (RM: 256). */
  readonly maxPendingNotifications?: number;
}

export const MAX_PENDING_NOTIFICATIONS = 256;

export interface SessionHandle {
  readonly id: number;
  readonly vmid: number;
  readonly label: string;
  /** Notifications dropped because the client did not read them in time. */
  readonly droppedNotifications: number;
  /** Closes the link and forgets the session. */
  close(reason?: TsvisorError): void;
}

/** A logical message already cut into queue messages (so sending can never fail on size). */
interface Outgoing {
  readonly message: RmMessage;
  readonly fragments: readonly Uint8Array[];
}

interface InFlight {
  readonly fragments: readonly Uint8Array[];
  next: number;
}

class Session implements SessionHandle {
  readonly reassembler = new Reassembler("rm");
  readonly inbox: RmMessage[] = [];
  inFlight: InFlight | undefined;
  pendingReply: Outgoing | undefined;
  readonly pendingNotifications: Outgoing[] = [];
  droppedNotifications = 0;
  closed = false;
  paused = false;
  processing = false;

  constructor(
    private readonly server: RmServer,
    readonly id: number,
    readonly vmid: number,
    readonly endpoint: MessageEndpoint,
  ) {}

  get label(): string {
    return this.endpoint.label;
  }

  close(reason?: TsvisorError): void {
    this.server.closeSession(this, reason);
  }
}

export class RmServer {
  private readonly sessionsByVmid = new Map<number, Set<Session>>();
  private readonly allSessions = new Set<Session>();
  private readonly maxPending: number;
  private nextSessionId = 1;
  private pumpTimer: ReturnType<typeof setImmediate> | undefined;
  private closed = false;

  constructor(
    private readonly core: ResourceManagerCore,
    private readonly log: LogPort = nullLog,
    opts: RmServerOptions = {},
  ) {
    this.maxPending = opts.maxPendingNotifications ?? MAX_PENDING_NOTIFICATIONS;
  }

  /** Live sessions. */
  get sessions(): readonly SessionHandle[] {
    return [...this.allSessions];
  }

  /**
   * Serves one client link as `vmid`. Several links may share a VMID: replies go to the link
   * that asked, notifications to every link of the VMID; the core sees the VMID connected
   * while at least one of its links is open.
   */
  attach(vmid: number, endpoint: MessageEndpoint): SessionHandle {
    if (this.closed) throw new TsvisorError("RPC_CLOSED", "the RM server is closed");
    const s = new Session(this, this.nextSessionId++, vmid, endpoint);
    this.allSessions.add(s);
    let peers = this.sessionsByVmid.get(vmid);
    if (!peers) {
      peers = new Set();
      this.sessionsByVmid.set(vmid, peers);
    }
    peers.add(s);
    if (peers.size === 1) this.core.connect(vmid);
    this.log.write({
      level: "info",
      event: "session.opened",
      message: `session ${s.id} opened for VMID ${vmid} on ${endpoint.label}`,
      session: s.id,
      vmid,
    });
    endpoint.start({
      message: (msg) => this.receive(s, msg),
      writable: () => {
        this.pump(s);
        this.processInbox(s);
      },
      close: (reason) => this.closeSession(s, reason),
    });
    return s;
  }

  /**
   * Runs a core call made outside any request (a hypervisor event) and sends what it
   * produces, e.g. `server.event((core) => core.vmExited(vmid, ExitType.PLATFORM_OFF))`.
   */
  event(run: (core: ResourceManagerCore) => readonly Outbound[]): void {
    if (this.closed) return;
    this.route(run(this.core), undefined);
    this.schedulePump();
  }

  /** A VM stopped by itself (see ResourceManagerCore.vmExited). */
  vmExited(vmid: number, exitType: number, exitFlags?: number, exitCode?: number): void {
    this.event((core) => core.vmExited(vmid, exitType, exitFlags, exitCode));
  }

  /** Closes every session and stops the deferred-work pump. */
  close(): void {
    if (this.closed) return;
    for (const s of [...this.allSessions]) this.closeSession(s, undefined);
    this.closed = true;
    if (this.pumpTimer !== undefined) clearImmediate(this.pumpTimer);
    this.pumpTimer = undefined;
  }

  /** @internal Session.close and endpoint close both land here; idempotent. */
  closeSession(s: Session, reason: TsvisorError | undefined): void {
    if (s.closed) return;
    s.closed = true;
    const incomplete = s.reassembler.busy;
    const unanswered = s.inbox.length;
    s.inbox.length = 0;
    s.pendingNotifications.length = 0;
    s.pendingReply = undefined;
    s.inFlight = undefined;
    s.reassembler.reset();
    this.allSessions.delete(s);
    const peers = this.sessionsByVmid.get(s.vmid);
    peers?.delete(s);
    if (peers?.size === 0) {
      this.sessionsByVmid.delete(s.vmid);
      this.core.disconnect(s.vmid);
    }
    if (!s.endpoint.closed) s.endpoint.close(reason);
    this.log.write({
      level: reason ? "warn" : "info",
      event: reason ? "session.dropped" : "session.closed",
      message: reason
        ? `session ${s.id} (VMID ${s.vmid}) dropped: ${reason.message}`
        : `session ${s.id} (VMID ${s.vmid}) closed`,
      session: s.id,
      vmid: s.vmid,
      // What the client left behind: half a message, requests never handled.
      incomplete,
      unanswered,
      ...(reason ? { code: reason.code, reason: reason.message } : {}),
    });
    this.schedulePump();
  }

  private receive(s: Session, msg: Uint8Array): void {
    if (s.closed) return;
    for (const ev of s.reassembler.push(msg)) {
      switch (ev.kind) {
        case "partial":
          break;
        case "message":
          if (ev.message.type === MsgType.REQUEST) s.inbox.push(ev.message);
          else {
            // The RM dispatches only requests from clients (§1.3).
            this.log.write({
              level: "warn",
              event: "message.ignored",
              message: `session ${s.id}: ignored a ${MSG_TYPE_NAMES[ev.message.type]} from a client`,
              session: s.id,
              vmid: s.vmid,
              code: "PROTO_TYPE",
              msgId: ev.message.msgId,
              seq: ev.message.seq,
            });
          }
          break;
        case "dropped":
          this.log.write({
            level: "warn",
            event: "message.ignored",
            message: `session ${s.id}: ignored a malformed queue message: ${ev.error.message}`,
            session: s.id,
            vmid: s.vmid,
            code: ev.error.code,
          });
          break;
        case "aborted":
          this.log.write({
            level: "warn",
            event: "message.aborted",
            message: `session ${s.id}: discarded an incomplete message: ${ev.error.message}`,
            session: s.id,
            vmid: s.vmid,
            code: ev.error.code,
            msgId: ev.msgId,
            seq: ev.seq,
          });
          break;
      }
    }
    this.processInbox(s);
  }

  private processInbox(s: Session): void {
    if (s.processing) return;
    s.processing = true;
    try {
      while (!s.closed && s.pendingReply === undefined && s.inbox.length > 0) {
        const req = s.inbox.shift()!;
        this.dispatch(s, req);
      }
    } finally {
      s.processing = false;
    }
    if (s.closed) return;
    // Back-pressure: while a reply waits, the client's requests stay in its queue.
    const blocked = s.pendingReply !== undefined;
    if (blocked && !s.paused) {
      s.paused = true;
      s.endpoint.pause();
    } else if (!blocked && s.paused) {
      s.paused = false;
      s.endpoint.resume();
    }
    this.schedulePump();
  }

  private dispatch(s: Session, req: RmMessage): void {
    try {
      const out = this.core.handle(s.vmid, req);
      this.route(out, s);
    } catch (e) {
      // A throw from the core is a bug; the client is dropped rather than left waiting
      // forever, and the other sessions keep being served.
      const err = e instanceof Error ? e : new Error(String(e));
      this.log.write({
        level: "error",
        event: "core.error",
        message: `the RM core failed on ${msgName(req.msgId)} from VMID ${s.vmid}: ${err.message}`,
        session: s.id,
        vmid: s.vmid,
        msgId: req.msgId,
        seq: req.seq,
        error: err.stack ?? err.message,
      });
      this.closeSession(
        s,
        new TsvisorError("RPC_ABORTED", `the RM failed while handling ${msgName(req.msgId)}`),
      );
    }
  }

  private route(out: readonly Outbound[], origin: Session | undefined): void {
    for (const o of out) {
      const m = o.message;
      if (m.type === MsgType.REPLY) {
        if (origin && !origin.closed && o.to === origin.vmid) this.enqueue(origin, m);
        else {
          this.log.write({
            level: "error",
            event: "reply.misrouted",
            message: `a reply to ${msgName(m.msgId)} for VMID ${o.to} has no asking session`,
            vmid: o.to,
            msgId: m.msgId,
            seq: m.seq,
          });
        }
        continue;
      }
      if (m.type !== MsgType.NOTIFICATION) {
        this.log.write({
          level: "error",
          event: "message.unsendable",
          message: `the RM produced a ${MSG_TYPE_NAMES[m.type]}, which it never sends`,
          vmid: o.to,
          msgId: m.msgId,
        });
        continue;
      }
      const targets = this.sessionsByVmid.get(o.to);
      if (!targets) {
        this.log.write({
          level: "debug",
          event: "notification.unrouted",
          message: `no session of VMID ${o.to} for ${msgName(m.msgId, true)}`,
          vmid: o.to,
          msgId: m.msgId,
        });
        continue;
      }
      for (const t of targets) this.enqueue(t, m);
    }
  }

  private enqueue(s: Session, m: RmMessage): void {
    if (s.closed) return;
    const out: Outgoing = { message: m, fragments: fragment(m) };
    if (m.type === MsgType.REPLY) {
      // Requests are handled only while no reply is pending, and the core answers each once.
      if (s.pendingReply !== undefined) {
        throw new TsvisorError(
          "RPC_ABORTED",
          `a second reply (${msgName(m.msgId)}) while one is pending`,
        );
      }
      s.pendingReply = out;
    } else {
      s.pendingNotifications.push(out);
      if (s.pendingNotifications.length > this.maxPending) {
        const lost = s.pendingNotifications.shift()!.message;
        s.droppedNotifications++;
        this.log.write({
          level: "warn",
          event: "notification.dropped",
          message: `session ${s.id} (VMID ${s.vmid}): dropped pending ${msgName(lost.msgId, true)}; the client is not reading`,
          session: s.id,
          vmid: s.vmid,
          msgId: lost.msgId,
          seq: lost.seq,
          dropped: s.droppedNotifications,
        });
      }
    }
    this.pump(s);
  }

  /** Sends as much as the link takes: in-flight fragments, then pending reply, then notifications. */
  private pump(s: Session): void {
    const ep = s.endpoint;
    try {
      while (!s.closed) {
        const f = s.inFlight;
        if (f) {
          while (f.next < f.fragments.length) {
            if (!ep.writable) return;
            ep.send(f.fragments[f.next]!, false);
            f.next++;
          }
          s.inFlight = undefined;
        }
        if (!ep.writable) return;
        let next = s.pendingReply;
        if (next !== undefined) s.pendingReply = undefined;
        else next = s.pendingNotifications.shift();
        if (next === undefined) return;
        s.inFlight = { fragments: next.fragments, next: 0 };
      }
    } catch (e) {
      if (e instanceof TsvisorError && e.code === "RPC_CLOSED") {
        this.closeSession(s, undefined);
        return;
      }
      const err = e instanceof Error ? e : new Error(String(e));
      this.log.write({
        level: "error",
        event: "transport.error",
        message: `session ${s.id}: sending failed: ${err.message}`,
        session: s.id,
        vmid: s.vmid,
        error: err.stack ?? err.message,
      });
      this.closeSession(s, new TsvisorError("RPC_ABORTED", `sending failed: ${err.message}`));
    }
  }

  private schedulePump(): void {
    if (this.closed || this.pumpTimer !== undefined || !this.core.hasDeferredWork) return;
    this.pumpTimer = setImmediate(() => {
      this.pumpTimer = undefined;
      if (this.closed) return;
      try {
        this.route(this.core.runDeferred(), undefined);
      } catch (e) {
        const err = e instanceof Error ? e : new Error(String(e));
        this.log.write({
          level: "error",
          event: "core.error",
          message: `the RM core failed in deferred work: ${err.message}`,
          error: err.stack ?? err.message,
        });
        // Not rescheduled: a failing stage would spin; the next request retries it.
        return;
      }
      this.schedulePump();
    });
  }
}
