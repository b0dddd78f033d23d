/**
 * The client side of `tsvisor daemon`: RemoteHost speaks its HTTP/JSON API and implements the
 * same HostApi as the in-process LocalHost, so programs are written once for either.
 */
export { ERROR_CODES, type ErrorCode, isTsvisorError, TsvisorError } from "../core/errors.js";
export type * from "../host/types.js";
export { BACKOFF_MAX_MS, BACKOFF_MIN_MS, EventFeed } from "./events.js";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  RemoteHost,
  type RemoteHostOptions,
} from "./remote-host.js";
