import type { RmMessage } from "../protocol/message.js";
import { Reassembler } from "../protocol/message.js";
import type { EndpointHandlers, MessageEndpoint } from "./transport.js";

export type Direction = "out" | "in";

/**
 * Wraps an endpoint so every logical message that crosses it is reported (after reassembly),
 * for traces such as `tsvisor rm demo`. The messages themselves pass through untouched.
 */
export function tapEndpoint(
  inner: MessageEndpoint,
  onMessage: (dir: Direction, m: RmMessage) => void,
): MessageEndpoint {
  const outbound = new Reassembler("rm");
  const inbound = new Reassembler("linux");
  const report = (dir: Direction, r: Reassembler, msg: Uint8Array) => {
    for (const ev of r.push(msg)) if (ev.kind === "message") onMessage(dir, ev.message);
  };
  return {
    get label() {
      return inner.label;
    },
    get writable() {
      return inner.writable;
    },
    get closed() {
      return inner.closed;
    },
    send(msg, push) {
      const notFull = inner.send(msg, push);
      report("out", outbound, msg);
      return notFull;
    },
    start(handlers: EndpointHandlers) {
      inner.start({
        ...handlers,
        message(msg) {
          report("in", inbound, msg);
          handlers.message(msg);
        },
      });
    },
    pause: () => inner.pause(),
    resume: () => inner.resume(),
    close: (reason) => inner.close(reason),
  };
}
