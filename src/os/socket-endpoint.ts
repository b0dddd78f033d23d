import net from "node:net";
import { invariant, isTsvisorError, TsvisorError } from "../core/errors.js";
import { MSG_MAX_SIZE } from "../protocol/header.js";
import { encodeFrame, FrameDecoder } from "../protocol/stream.js";
import { RmClient, type RmClientOptions } from "../rpc/client.js";
import type { EndpointHandlers, MessageEndpoint } from "../rpc/transport.js";

/**
 * A MessageEndpoint over a Node stream socket (Unix domain in practice). Each queue message
 * travels as one frame of protocol/stream.ts. The socket's write buffer stands in for the
 * queue: when socket.write() reports its high-water mark, send() returns not-full = false
 * and the endpoint stays unwritable until 'drain'. A malformed frame ends the connection
 * with an RPC_FRAME reason: a byte stream has no way to find the next frame boundary.
 */
export class SocketEndpoint implements MessageEndpoint {
  private readonly decoder = new FrameDecoder();
  private handlers: EndpointHandlers | undefined;
  private readonly held: Uint8Array[] = [];
  private paused = false;
  private delivering = false;
  private full = false;
  private isClosed = false;
  private closeReason: TsvisorError | undefined;
  private closeDelivered = false;

  constructor(
    private readonly socket: net.Socket,
    readonly label: string,
  ) {
    socket.setNoDelay(true);
    socket.on("drain", () => {
      if (!this.full || this.isClosed) return;
      this.full = false;
      this.handlers?.writable();
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      // 'close' follows; keep the first reason that explains it.
      this.closeReason ??= new TsvisorError("RPC_CLOSED", `socket error: ${e.message}`, {
        errno: e.code,
      });
    });
    socket.on("close", () => {
      this.isClosed = true;
      this.held.length = 0;
      if (this.closeReason === undefined && this.decoder.buffered > 0) {
        this.closeReason = new TsvisorError(
          "RPC_FRAME",
          `the peer closed the connection inside a frame (${this.decoder.buffered} bytes held)`,
          { buffered: this.decoder.buffered },
        );
      }
      this.deliverClose();
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get writable(): boolean {
    return !this.isClosed && !this.full;
  }

  send(msg: Uint8Array, _push = false): boolean {
    // PUSH has no meaning on a stream: every frame is handed to the kernel at once.
    if (this.isClosed) throw new TsvisorError("RPC_CLOSED", `${this.label} is closed`);
    if (msg.length > MSG_MAX_SIZE) {
      throw new TsvisorError("PROTO_TOO_LONG", `queue message of ${msg.length} bytes exceeds 240`);
    }
    if (this.full) throw new TsvisorError("RPC_QUEUE_FULL", `${this.label} is waiting for drain`);
    const ok = this.socket.write(encodeFrame(msg));
    if (!ok) this.full = true;
    return ok;
  }

  start(handlers: EndpointHandlers): void {
    invariant(this.handlers === undefined, "a socket endpoint has one consumer");
    this.handlers = handlers;
    if (this.isClosed) {
      queueMicrotask(() => this.deliverClose());
      return;
    }
    // Attaching 'data' switches the stream to flowing mode; nothing is lost before that.
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
  }

  pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    queueMicrotask(() => {
      this.deliverHeld();
      if (!this.paused && !this.isClosed) this.socket.resume();
    });
  }

  close(reason?: TsvisorError): void {
    if (this.isClosed) return;
    this.closeReason ??= reason;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.isClosed) return;
    let frames: Uint8Array[];
    try {
      frames = this.decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } catch (e) {
      if (!isTsvisorError(e, "RPC_FRAME")) throw e;
      this.close(e);
      return;
    }
    this.held.push(...frames);
    this.deliverHeld();
  }

  private deliverHeld(): void {
    if (!this.handlers || this.delivering) return;
    this.delivering = true;
    try {
      while (!this.paused && !this.isClosed && this.held.length > 0) {
        this.handlers.message(this.held.shift()!);
      }
    } finally {
      this.delivering = false;
    }
  }

  private deliverClose(): void {
    if (this.closeDelivered || !this.handlers) return;
    this.closeDelivered = true;
    this.handlers.close(this.closeReason);
  }
}

/** Connects to an RM socket; resolves once connected, rejects with RPC_CLOSED otherwise. */
export function connectSocketEndpoint(path: string): Promise<SocketEndpoint> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path });
    const fail = (e: NodeJS.ErrnoException) => {
      reject(
        new TsvisorError("RPC_CLOSED", `cannot connect to ${path}: ${e.message}`, {
          errno: e.code,
        }),
      );
    };
    socket.once("error", fail);
    socket.once("connect", () => {
      socket.off("error", fail);
      resolve(new SocketEndpoint(socket, `unix:${path}`));
    });
  });
}

/** Connects an RmClient to an RM socket (see listenRmSocket). */
export async function connectRmClient(path: string, opts: RmClientOptions = {}): Promise<RmClient> {
  return new RmClient(await connectSocketEndpoint(path), opts);
}
