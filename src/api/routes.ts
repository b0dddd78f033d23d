import { z } from "zod";
import { type ErrorCode, TsvisorError } from "../core/errors.js";
import { ADMISSION, type VmAction } from "../host/admission.js";
import {
  EmptySchema,
  HostEventSchema,
  HostInfoSchema,
  StopOptionsSchema,
  VmInfoSchema,
  VmListSchema,
  VmSpecSchema,
} from "./schemas.js";

/**
 * The API's routes as data: the server dispatches on this table and the OpenAPI document is
 * generated from it, so a route cannot exist in one and not the other.
 */

export type HttpMethod = "GET" | "POST" | "DELETE";

export type OperationId =
  | "getHost"
  | "getOpenApi"
  | "listVms"
  | "createVm"
  | "getVm"
  | "destroyVm"
  | "startVm"
  | "stopVm"
  | "resetVm"
  | "vmConsole"
  | "streamEvents"
  | "streamVmEvents";

export interface QueryParam {
  readonly name: string;
  readonly description: string;
  readonly schema: z.ZodType;
}

export interface RouteDef {
  readonly method: HttpMethod;
  /** `/v1/vms/{id}`: `{name}` matches one non-empty path segment. */
  readonly path: string;
  readonly operationId: OperationId;
  readonly summary: string;
  readonly description: string;
  readonly tag: "host" | "vms" | "events";
  /** Query parameters; any other is API_VALIDATION. */
  readonly query: readonly QueryParam[];
  /** The JSON body's schema; `optional` bodies may be absent (then `{}`). */
  readonly body?: { readonly schema: z.ZodType; readonly optional: boolean };
  /** The success response: JSON (schema), or another media type (schema null). */
  readonly ok: {
    readonly status: number;
    readonly description: string;
    readonly schema: z.ZodType | null;
    readonly contentType: string;
  };
  /** A streaming route: upgrades to a WebSocket, or streams without one. */
  readonly stream?: "events" | "console";
  /** The error codes this route answers besides those every route may (ROUTE_COMMON_ERRORS). */
  readonly errors: readonly ErrorCode[];
}

/** Any route: no/wrong token on TCP, wrong method, the daemon closing. (And 500 for bugs.) */
export const ROUTE_COMMON_ERRORS: readonly ErrorCode[] = [
  "API_UNAUTHORIZED",
  "API_METHOD",
  "API_SHUTTING_DOWN",
];

const BODY_ERRORS: readonly ErrorCode[] = [
  "API_BAD_JSON",
  "API_VALIDATION",
  "API_MEDIA_TYPE",
  "API_BODY_TOO_LARGE",
];

/** The refusals of the admission table for an action, so the document follows the table. */
function refusals(action: VmAction): ErrorCode[] {
  const codes = new Set<ErrorCode>();
  for (const verdict of Object.values(ADMISSION[action])) {
    if (verdict !== "ok") codes.add(verdict[0]);
  }
  return [...codes];
}

const SINCE: QueryParam = {
  name: "since",
  description:
    "Replay retained events with seq > since first (the last seq you saw). Without it, only new events. A Last-Event-ID header takes precedence.",
  schema: z.string().regex(/^\d+$/),
};

const json = (status: number, description: string, schema: z.ZodType) => ({
  status,
  description,
  schema,
  contentType: "application/json",
});

const eventStream = {
  status: 200,
  description:
    "Server-sent events: `id: <seq>`, `event: <type>`, `data: <HostEvent JSON>`, a blank line; a `: keep-alive` comment every 15 s. With a WebSocket upgrade: 101, then one HostEvent JSON text message per event.",
  schema: null,
  contentType: "text/event-stream",
};

export const ROUTES: readonly RouteDef[] = [
  {
    method: "GET",
    path: "/v1/host",
    operationId: "getHost",
    summary: "The daemon's version, backend, limits and usage",
    description: "Also the event cursors: next_event (from now on) and oldest_event (retained).",
    tag: "host",
    query: [],
    ok: json(200, "The host", HostInfoSchema),
    errors: [],
  },
  {
    method: "GET",
    path: "/v1/openapi.json",
    operationId: "getOpenApi",
    summary: "This document",
    description: "The OpenAPI 3.1 description of the API, generated from the daemon's routes.",
    tag: "host",
    query: [],
    ok: json(200, "The OpenAPI document", z.record(z.string(), z.unknown())),
    errors: [],
  },
  {
    method: "GET",
    path: "/v1/vms",
    operationId: "listVms",
    summary: "Every VM the API created that still exists",
    description: "In creation order.",
    tag: "vms",
    query: [],
    ok: json(200, "The VMs", VmListSchema),
    errors: [],
  },
  {
    method: "POST",
    path: "/v1/vms",
    operationId: "createVm",
    summary: "Create a VM (to state created: RM READY)",
    description:
      "Runs the RM's create sequence up to READY. Limits are checked first. A client that disconnects before the answer abandons the create: the VM is rolled back and never listed.",
    tag: "vms",
    query: [],
    body: { schema: VmSpecSchema, optional: false },
    ok: json(201, "Created; Location: /v1/vms/{id}", VmInfoSchema),
    errors: [
      ...BODY_ERRORS,
      "API_IMAGE",
      "LOADER_FORMAT",
      "LOADER_RANGE",
      "VMM_CONFIG",
      "SIM_PROGRAM",
      "API_NAME_TAKEN",
      "API_LIMIT_VMS",
      "API_LIMIT_MEMORY",
    ],
  },
  {
    method: "GET",
    path: "/v1/vms/{id}",
    operationId: "getVm",
    summary: "One VM's state, RM status, exit and resources",
    description: "{id} is the VM's id or name.",
    tag: "vms",
    query: [],
    ok: json(200, "The VM", VmInfoSchema),
    errors: ["API_NOT_FOUND"],
  },
  {
    method: "DELETE",
    path: "/v1/vms/{id}",
    operationId: "destroyVm",
    summary: "Destroy a VM (forced stop if running)",
    description:
      "Stops the VM by force if it runs, tears it down in the RM and frees its RAM. Answers once it is gone, with state destroyed.",
    tag: "vms",
    query: [],
    ok: json(200, "The VM as it was, with state destroyed", VmInfoSchema),
    errors: ["API_NOT_FOUND", ...refusals("destroy")],
  },
  {
    method: "POST",
    path: "/v1/vms/{id}/start",
    operationId: "startVm",
    summary: "Start a created VM",
    description: "VM_START. Answers once the RM has answered (usually state running).",
    tag: "vms",
    query: [],
    body: { schema: EmptySchema, optional: true },
    ok: json(200, "The VM", VmInfoSchema),
    errors: [...BODY_ERRORS, "API_NOT_FOUND", ...refusals("start")],
  },
  {
    method: "POST",
    path: "/v1/vms/{id}/stop",
    operationId: "stopVm",
    summary: "Stop a running VM, gracefully (default) or by force",
    description:
      "Graceful: VM_STOP without FORCE sends VM_SHUTDOWN to the guest; after timeout_ms without an exit the stop is forced. Answers after the exit (state exited, exit filled in).",
    tag: "vms",
    query: [],
    body: { schema: StopOptionsSchema, optional: true },
    ok: json(200, "The VM after its exit", VmInfoSchema),
    errors: [...BODY_ERRORS, "API_NOT_FOUND", ...refusals("stop")],
  },
  {
    method: "POST",
    path: "/v1/vms/{id}/reset",
    operationId: "resetVm",
    summary: "Reset a VM back to created (forced stop if running)",
    description: "Tears the VM down in the RM and creates it again: a new VMID, RAM reloaded.",
    tag: "vms",
    query: [],
    body: { schema: EmptySchema, optional: true },
    ok: json(200, "The VM, state created", VmInfoSchema),
    errors: [...BODY_ERRORS, "API_NOT_FOUND", ...refusals("reset")],
  },
  {
    method: "GET",
    path: "/v1/vms/{id}/console",
    operationId: "vmConsole",
    summary: "The VM's console (COM1): a WebSocket, or the retained output",
    description:
      "With a WebSocket upgrade: 101, then binary frames both ways (server → client: COM1 output, the retained history first unless history=0; client → server: input typed into COM1). The server closes with 1000 when the VM is destroyed. Without an upgrade: the retained output.",
    tag: "vms",
    query: [
      {
        name: "history",
        description: "1 (default): replay the retained output first; 0: live output only.",
        schema: z.enum(["0", "1"]),
      },
    ],
    ok: {
      status: 200,
      description: "The retained console output (the last 64 KiB)",
      schema: null,
      contentType: "application/octet-stream",
    },
    stream: "console",
    errors: ["API_NOT_FOUND", "API_VALIDATION"],
  },
  {
    method: "GET",
    path: "/v1/events",
    operationId: "streamEvents",
    summary: "The host's event stream (SSE or WebSocket), resumable",
    description:
      "Every VM's lifecycle events in seq order. Resume with since (or Last-Event-ID) = the last seq seen: nothing is missed or repeated while the events are retained.",
    tag: "events",
    query: [
      SINCE,
      { name: "vm", description: "Only this VM's events (id or name).", schema: z.string() },
    ],
    ok: eventStream,
    stream: "events",
    errors: ["API_VALIDATION", "API_CURSOR_EXPIRED", "API_NOT_FOUND"],
  },
  {
    method: "GET",
    path: "/v1/vms/{id}/events",
    operationId: "streamVmEvents",
    summary: "One VM's event stream (SSE or WebSocket), resumable",
    description: "As /v1/events with vm={id}.",
    tag: "events",
    query: [SINCE],
    ok: eventStream,
    stream: "events",
    errors: ["API_VALIDATION", "API_CURSOR_EXPIRED", "API_NOT_FOUND"],
  },
];

/** The message every event stream carries, for the document. */
export const STREAM_MESSAGE = HostEventSchema;

// ---------------------------------------------------------------- router

interface Compiled {
  readonly route: RouteDef;
  readonly segments: readonly (string | { readonly param: string })[];
}

export interface RouteMatch {
  readonly route: RouteDef;
  readonly params: Readonly<Record<string, string>>;
}

function compile(route: RouteDef): Compiled {
  const segments = route.path
    .split("/")
    .slice(1)
    .map((s) => (s.startsWith("{") && s.endsWith("}") ? { param: s.slice(1, -1) } : s));
  return { route, segments };
}

/**
 * Dispatches (method, path) over a route table: the route and its decoded path parameters,
 * API_NOT_FOUND when no route has the path, API_METHOD (details.allow: the methods it has)
 * when the path exists with other methods.
 */
export class Router {
  private readonly compiled: readonly Compiled[];

  constructor(routes: readonly RouteDef[] = ROUTES) {
    this.compiled = routes.map(compile);
  }

  match(method: string, pathname: string): RouteMatch {
    const parts = pathname.split("/");
    if (parts[0] !== "") throw noRoute(pathname);
    const segs = parts.slice(1);
    const allow: string[] = [];
    for (const c of this.compiled) {
      const params = matchSegments(c.segments, segs);
      if (!params) continue;
      if (c.route.method === method) return { route: c.route, params };
      allow.push(c.route.method);
    }
    if (allow.length > 0) {
      throw new TsvisorError("API_METHOD", `${pathname} takes ${allow.join(", ")}, not ${method}`, {
        allow,
      });
    }
    throw noRoute(pathname);
  }
}

function matchSegments(
  pattern: Compiled["segments"],
  segs: readonly string[],
): Record<string, string> | undefined {
  if (pattern.length !== segs.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const s = segs[i]!;
    if (typeof p === "string") {
      if (p !== s) return undefined;
      continue;
    }
    if (s === "") return undefined;
    let value: string;
    try {
      value = decodeURIComponent(s);
    } catch {
      return undefined;
    }
    params[p.param] = value;
  }
  return params;
}

const noRoute = (pathname: string) =>
  new TsvisorError("API_NOT_FOUND", `no route ${pathname} (see GET /v1/openapi.json)`, {
    path: pathname,
  });
