import type { ServerResponse } from "node:http";
import { type ErrorCode, isTsvisorError } from "../core/errors.js";

/**
 * How errors cross the wire: each code has one HTTP status, and every error response is the
 * same JSON body, so a client branches on `error.code` (stable) and shows `error.message`.
 * A code not in the table (an RPC timeout, a hypervisor failure) is the daemon's problem, not
 * the request's: 500, with its code kept so the report says what failed.
 */

export const API_VERSION_HEADER = "tsvisor-api";
export const API_VERSION = "1";

export const STATUS_OF_CODE: Readonly<Partial<Record<ErrorCode, number>>> = {
  API_NOT_FOUND: 404,
  API_METHOD: 405,
  API_BAD_JSON: 400,
  API_VALIDATION: 400,
  API_MEDIA_TYPE: 415,
  API_BODY_TOO_LARGE: 413,
  API_STATE: 409,
  API_BUSY: 409,
  API_NAME_TAKEN: 409,
  API_LIMIT_VMS: 409,
  API_LIMIT_MEMORY: 409,
  API_UNAUTHORIZED: 401,
  API_CURSOR_EXPIRED: 410,
  API_VM_GONE: 410,
  API_SHUTTING_DOWN: 503,
  API_IMAGE: 400,
  // The guest image or configuration is wrong: the request's fault.
  LOADER_FORMAT: 400,
  LOADER_RANGE: 400,
  VMM_CONFIG: 400,
  SIM_PROGRAM: 400,
};

/** The code of a failure that is a bug, not a documented TsvisorError. */
export const INTERNAL = "INTERNAL";

export const REASON: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  410: "Gone",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export function statusOf(code: string): number {
  return STATUS_OF_CODE[code as ErrorCode] ?? 500;
}

export interface ErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    readonly details?: Readonly<Record<string, unknown>>;
  };
}

/** Any thrown value as a status and body; non-TsvisorErrors are INTERNAL with a generic text. */
export function errorResponse(e: unknown): { status: number; body: ErrorBody } {
  if (isTsvisorError(e)) {
    const body: ErrorBody = {
      error: {
        code: e.code,
        message: e.message,
        ...(e.details !== undefined ? { details: e.details } : {}),
      },
    };
    return { status: statusOf(e.code), body };
  }
  // The exception's own text can name internals; it goes to the daemon's log instead.
  return {
    status: 500,
    body: {
      error: { code: INTERNAL, message: "the daemon failed to handle the request (see its log)" },
    },
  };
}

/** Extra headers for a status: how to authenticate (401). */
function statusHeaders(status: number, extra: Record<string, string>): Record<string, string> {
  return status === 401 ? { "www-authenticate": 'Bearer realm="tsvisor"', ...extra } : extra;
}

export function writeJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    [API_VERSION_HEADER]: API_VERSION,
    ...headers,
  });
  res.end(text);
}

/** The error body for `e` on an HTTP response. */
export function writeError(
  res: ServerResponse,
  e: unknown,
  headers: Record<string, string> = {},
): number {
  const { status, body } = errorResponse(e);
  writeJson(res, status, body, statusHeaders(status, headers));
  return status;
}

/**
 * A complete HTTP/1.1 error response as bytes, for sockets that never became a ServerResponse
 * (a refused WebSocket upgrade, a malformed request).
 */
export function rawErrorResponse(e: unknown, headers: Record<string, string> = {}): string {
  const { status, body } = errorResponse(e);
  const text = JSON.stringify(body);
  const all: Record<string, string> = {
    "content-type": "application/json",
    "content-length": String(Buffer.byteLength(text)),
    [API_VERSION_HEADER]: API_VERSION,
    connection: "close",
    ...statusHeaders(status, headers),
  };
  const lines = Object.entries(all).map(([k, v]) => `${k}: ${v}`);
  return `HTTP/1.1 ${status} ${REASON[status] ?? "Error"}\r\n${lines.join("\r\n")}\r\n\r\n${text}`;
}
