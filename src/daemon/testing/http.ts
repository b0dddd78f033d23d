import WebSocket from "ws";
import { request as apiRequest, type Reply } from "../../api/testing/harness.js";

/**
 * A bare HTTP/JSON client over the daemon's Unix socket for the integration tests: it speaks
 * the wire (status codes, headers, bodies) with nothing of the SDK in between.
 */

export { type Reply, until } from "../../api/testing/harness.js";

/** One request on the daemon's socket, no agent (the API tests' helper, with positional args). */
export function request(
  socketPath: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return apiRequest({ socketPath }, method, path, {
    ...(body !== undefined ? { body } : {}),
    headers,
  });
}

/** Opens the events WebSocket; resolves once open, with every message parsed into `events`. */
export function openEvents(
  socketPath: string,
  query = "",
  // biome-ignore lint/suspicious/noExplicitAny: events are checked field by field
): Promise<{ ws: WebSocket; events: any[]; closed: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${socketPath}:/v1/events${query}`);
    // biome-ignore lint/suspicious/noExplicitAny: as above
    const events: any[] = [];
    const closed = new Promise<number>((r) => ws.once("close", (code) => r(code)));
    ws.on("message", (data) => events.push(JSON.parse(String(data))));
    ws.once("open", () => resolve({ ws, events, closed }));
    ws.once("error", reject);
  });
}
