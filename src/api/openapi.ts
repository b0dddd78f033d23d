import { z } from "zod";
import { ERROR_CODES, type ErrorCode } from "../core/errors.js";
import { VERSION } from "../host/defaults.js";
import { INTERNAL, STATUS_OF_CODE, statusOf } from "./errors.js";
import { ROUTE_COMMON_ERRORS, ROUTES, type RouteDef, STREAM_MESSAGE } from "./routes.js";
import {
  EmptySchema,
  ErrorBodySchema,
  ExitInfoSchema,
  HostEventSchema,
  HostInfoSchema,
  HypResourceSchema,
  StopOptionsSchema,
  VmInfoSchema,
  VmListSchema,
  VmSpecSchema,
  VmStateSchema,
} from "./schemas.js";

/**
 * The OpenAPI 3.1 document, built from the route table and the zod schemas (never written by
 * hand): GET /v1/openapi.json serves it and docs/openapi.json is a copy that a test keeps equal.
 */

type Json = Record<string, unknown>;

/** The named schemas, in the order the document lists them. */
const NAMED: readonly (readonly [string, z.ZodType])[] = [
  ["VmSpec", VmSpecSchema],
  ["StopOptions", StopOptionsSchema],
  ["Empty", EmptySchema],
  ["VmInfo", VmInfoSchema],
  ["VmList", VmListSchema],
  ["VmState", VmStateSchema],
  ["ExitInfo", ExitInfoSchema],
  ["HypResource", HypResourceSchema],
  ["HostInfo", HostInfoSchema],
  ["HostEvent", HostEventSchema],
  ["ErrorBody", ErrorBodySchema],
];

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

function componentSchemas(): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of NAMED) registry.add(schema, { id });
  const out = z.toJSONSchema(registry, {
    target: "draft-2020-12",
    io: "input",
    uri: (id) => `#/components/schemas/${id}`,
  }).schemas as Record<string, Json>;
  const schemas: Record<string, Json> = {};
  for (const [id] of NAMED) {
    // Each is embedded in the document, not a standalone resource.
    const { $schema: _s, $id: _i, ...rest } = out[id]!;
    schemas[id] = rest;
  }
  return schemas;
}

function schemaFor(schema: z.ZodType): Json {
  const named = NAMED.find(([, s]) => s === schema);
  if (named) return ref(named[0]);
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, {
    target: "draft-2020-12",
    io: "input",
  }) as Json;
  return rest;
}

function errorResponses(route: RouteDef): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of [...route.errors, ...ROUTE_COMMON_ERRORS]) {
    const status = statusOf(code);
    const list = byStatus.get(status) ?? [];
    if (!list.includes(code)) list.push(code);
    byStatus.set(status, list);
  }
  const out: Record<string, Json> = {};
  for (const status of [...byStatus.keys()].sort((a, b) => a - b)) {
    const codes = byStatus.get(status)!;
    out[String(status)] = {
      description: codes.map((c) => `${c}: ${ERROR_CODES[c]}`).join("; "),
      content: {
        "application/json": {
          schema: {
            ...ref("ErrorBody"),
            properties: { error: { properties: { code: { enum: codes } } } },
          },
        },
      },
    };
  }
  out["500"] = {
    description: `${INTERNAL}: a bug, or another code from the daemon's own failures (an RM timeout, a hypervisor error)`,
    content: { "application/json": { schema: ref("ErrorBody") } },
  };
  return out;
}

function successResponses(route: RouteDef): Record<string, Json> {
  const ok = route.ok;
  const content: Json = {};
  if (ok.schema) content[ok.contentType] = { schema: schemaFor(ok.schema) };
  else if (ok.contentType === "text/event-stream") {
    content[ok.contentType] = {
      schema: { type: "string" },
      "x-sse-data": ref("HostEvent"),
    };
  } else content[ok.contentType] = { schema: { type: "string", contentMediaType: ok.contentType } };
  const out: Record<string, Json> = {
    [String(ok.status)]: {
      description: ok.description,
      content,
      ...(route.operationId === "createVm"
        ? {
            headers: {
              Location: { description: "/v1/vms/{id} of the new VM", schema: { type: "string" } },
            },
          }
        : {}),
    },
  };
  if (route.stream === "events") {
    out["101"] = {
      description:
        "Switching Protocols (WebSocket): one text message per event, a HostEvent as JSON, in seq order.",
      "x-websocket": { "server-messages": ref(nameOf(STREAM_MESSAGE)) },
    };
  } else if (route.stream === "console") {
    out["101"] = {
      description:
        "Switching Protocols (WebSocket): binary frames both ways — COM1 output to the client, input from it. Closed with 1000 when the VM is destroyed.",
      "x-websocket": {
        "server-messages": { type: "string", contentMediaType: "application/octet-stream" },
        "client-messages": { type: "string", contentMediaType: "application/octet-stream" },
      },
    };
  }
  return out;
}

function nameOf(schema: z.ZodType): string {
  const named = NAMED.find(([, s]) => s === schema);
  if (!named) throw new Error("stream message schema is not named");
  return named[0];
}

function parameters(route: RouteDef): Json[] {
  const out: Json[] = [];
  for (const m of route.path.matchAll(/\{(\w+)\}/g)) {
    out.push({
      name: m[1],
      in: "path",
      required: true,
      description: "The VM's id or name.",
      schema: { type: "string" },
    });
  }
  for (const q of route.query) {
    out.push({
      name: q.name,
      in: "query",
      required: false,
      description: q.description,
      schema: schemaFor(q.schema),
    });
  }
  if (route.stream === "events") {
    out.push({
      name: "Last-Event-ID",
      in: "header",
      required: false,
      description: "SSE resume: the last seq seen; takes precedence over since.",
      schema: { type: "string", pattern: "^\\d+$" },
    });
  }
  return out;
}

function operation(route: RouteDef): Json {
  const params = parameters(route);
  return {
    operationId: route.operationId,
    summary: route.summary,
    description: route.description,
    tags: [route.tag],
    ...(params.length > 0 ? { parameters: params } : {}),
    ...(route.body
      ? {
          requestBody: {
            required: !route.body.optional,
            content: { "application/json": { schema: schemaFor(route.body.schema) } },
          },
        }
      : {}),
    responses: { ...successResponses(route), ...errorResponses(route) },
  };
}

const DESCRIPTION = `The tsvisor daemon's API: VMs (create, start, stop, reset, destroy), their consoles and the host's event stream.

Transports: a Unix socket (mode 0600, no authentication: the file mode is the access control) and, only when the daemon has a token, TCP where every request carries \`Authorization: Bearer <token>\`. Every response carries the header \`tsvisor-api: 1\`; every error is \`{"error":{"code","message","details"?}}\` with a stable code. Request bodies are JSON (Content-Type application/json), strict (unknown fields are errors), at most 1 MiB by default. See docs/api.md.`;

export function openApiDocument(): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const route of ROUTES) {
    const item = paths[route.path] ?? {};
    item[route.method.toLowerCase()] = operation(route);
    paths[route.path] = item;
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "tsvisor daemon API",
      version: VERSION,
      description: DESCRIPTION,
      license: { name: "MIT", identifier: "MIT" },
    },
    tags: [
      { name: "host", description: "The daemon itself" },
      { name: "vms", description: "VMs and their actions" },
      { name: "events", description: "Lifecycle events with a resumable cursor" },
    ],
    security: [{}, { bearerAuth: [] }],
    paths,
    components: {
      schemas: componentSchemas(),
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          description: "Required on TCP listeners; the Unix socket takes no token.",
        },
      },
    },
    // Codes with a status other than 500; any other code is 500.
    "x-error-status": STATUS_OF_CODE,
  };
}
