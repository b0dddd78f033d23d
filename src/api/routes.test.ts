import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ERROR_CODES, type ErrorCode, isTsvisorError } from "../core/errors.js";
import { ADMISSION, VM_STATES } from "../host/admission.js";
import type { VmState } from "../host/types.js";
import { STATUS_OF_CODE, statusOf } from "./errors.js";
import { openApiDocument } from "./openapi.js";
import { ROUTE_COMMON_ERRORS, ROUTES, Router } from "./routes.js";
import { OPENAPI_FILE, openApiText } from "./write-openapi.js";

const API_MD = fileURLToPath(new URL("../../../docs/api.md", import.meta.url));

/** The body rows of the table between `<!-- name -->` and `<!-- /name -->` in docs/api.md. */
function tableRows(name: string): string[][] {
  const text = readFileSync(API_MD, "utf8");
  const start = text.indexOf(`<!-- ${name}`);
  const end = text.indexOf(`<!-- /${name} -->`);
  assert.ok(start >= 0 && end > start, `docs/api.md has the ${name} markers`);
  return text
    .slice(start, end)
    .split("\n")
    .filter((l) => l.startsWith("|"))
    .slice(2)
    .map((l) =>
      l
        .split("|")
        .slice(1, -1)
        .map((c) => c.trim()),
    );
}

/** The route table, its router, and the OpenAPI document generated from both. */

// biome-ignore lint/suspicious/noExplicitAny: walking the generated document
const doc = openApiDocument() as any;
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

describe("the router", () => {
  const router = new Router();

  it("matches each route's own path and method, with decoded path parameters", () => {
    for (const r of ROUTES) {
      const path = r.path.replace("{id}", "my%20vm");
      const m = router.match(r.method, path);
      assert.equal(m.route, r);
      if (r.path.includes("{id}")) assert.deepEqual(m.params, { id: "my vm" });
      else assert.deepEqual(m.params, {});
    }
  });

  it("answers API_NOT_FOUND for paths no route has, including near misses", () => {
    for (const p of ["/", "/v1", "/v1/vms/", "/v2/vms", "/v1/vms/a/b", "/v1//start", "//v1/host"]) {
      assert.throws(
        () => router.match("GET", p),
        (e) => isTsvisorError(e, "API_NOT_FOUND"),
        p,
      );
    }
  });

  it("answers API_METHOD listing the methods a known path takes", () => {
    assert.throws(
      () => router.match("PUT", "/v1/vms/vm-1"),
      (e) =>
        isTsvisorError(e, "API_METHOD") &&
        JSON.stringify(e.details?.allow) === JSON.stringify(["GET", "DELETE"]),
    );
    assert.throws(
      () => router.match("GET", "/v1/vms/x/start"),
      (e) => isTsvisorError(e, "API_METHOD") && JSON.stringify(e.details?.allow) === '["POST"]',
    );
  });

  it("has one route per (method, path) and unique operation ids", () => {
    const keys = ROUTES.map((r) => `${r.method} ${r.path}`);
    assert.equal(new Set(keys).size, keys.length);
    const ids = ROUTES.map((r) => r.operationId);
    assert.equal(new Set(ids).size, ids.length);
  });
});

describe("the OpenAPI document", () => {
  it("is OpenAPI 3.1 with the bearer scheme and every named schema", () => {
    assert.equal(doc.openapi, "3.1.0");
    assert.equal(doc.components.securitySchemes.bearerAuth.scheme, "bearer");
    for (const name of ["VmSpec", "VmInfo", "HostInfo", "HostEvent", "ErrorBody", "StopOptions"]) {
      assert.equal(typeof doc.components.schemas[name], "object", name);
      assert.equal(doc.components.schemas[name].$schema, undefined, "embedded, not standalone");
    }
  });

  it("lists every route of the table, and nothing else", () => {
    const fromDoc: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const m of Object.keys(item as object)) {
        assert.ok(METHODS.includes(m), `${path}: ${m} is not an HTTP method`);
        fromDoc.push(`${m.toUpperCase()} ${path}`);
      }
    }
    assert.deepEqual(fromDoc.sort(), ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    for (const r of ROUTES) {
      assert.equal(doc.paths[r.path][r.method.toLowerCase()].operationId, r.operationId);
    }
  });

  it("documents each route's success and every error status it can answer", () => {
    for (const r of ROUTES) {
      const responses = doc.paths[r.path][r.method.toLowerCase()].responses;
      assert.ok(responses[String(r.ok.status)]?.content?.[r.ok.contentType], r.operationId);
      if (r.stream) assert.ok(responses["101"], `${r.operationId} documents its upgrade`);
      for (const code of [...r.errors, ...ROUTE_COMMON_ERRORS]) {
        const res = responses[String(statusOf(code))];
        assert.ok(res, `${r.operationId}: ${code}`);
        assert.ok(
          res.content["application/json"].schema.properties.error.properties.code.enum.includes(
            code,
          ),
          `${r.operationId}: ${code} listed under ${statusOf(code)}`,
        );
      }
      assert.ok(responses["500"], `${r.operationId}: 500`);
    }
  });

  it("documents for each action the refusals of the admission table", () => {
    const byAction = { startVm: "start", stopVm: "stop", resetVm: "reset", destroyVm: "destroy" };
    for (const [op, action] of Object.entries(byAction)) {
      const r = ROUTES.find((x) => x.operationId === op)!;
      for (const verdict of Object.values(ADMISSION[action as keyof typeof ADMISSION])) {
        if (verdict !== "ok") assert.ok(r.errors.includes(verdict[0]), `${op}: ${verdict[0]}`);
      }
    }
  });

  it("maps the codes the brief names to their statuses and every other code to 500", () => {
    const expected: Partial<Record<ErrorCode, number>> = {
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
      LOADER_FORMAT: 400,
      LOADER_RANGE: 400,
      VMM_CONFIG: 400,
      SIM_PROGRAM: 400,
    };
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
      assert.equal(statusOf(code), expected[code] ?? 500, code);
    }
    assert.deepEqual(STATUS_OF_CODE, expected);
  });

  it("docs/api.md's error table gives each code the status the server answers with", () => {
    const rows = tableRows("error-table");
    const documented = new Map(rows.map((r) => [r[0]!, Number(r[1])]));
    assert.deepEqual(
      [...documented.keys()].sort(),
      Object.keys(STATUS_OF_CODE).sort(),
      "every code with a status of its own is in the table",
    );
    for (const [code, status] of documented) assert.equal(status, statusOf(code), code);
  });

  it("docs/api.md's admission table is src/host/admission.ts's", () => {
    const rows = tableRows("admission-table");
    const actions = ["start", "stop", "reset", "destroy"] as const;
    assert.deepEqual(
      rows.map((r) => r[0]),
      VM_STATES,
    );
    for (const r of rows) {
      actions.forEach((a, i) => {
        const verdict = ADMISSION[a][r[0] as VmState];
        assert.equal(r[i + 1], verdict === "ok" ? "ok" : verdict[0], `${r[0]} ${a}`);
      });
    }
  });

  it("is what docs/openapi.json holds (regenerate: node dist/src/api/write-openapi.js)", () => {
    assert.equal(readFileSync(OPENAPI_FILE, "utf8"), openApiText());
  });

  it("is the same object each time it is built (no clock, no randomness)", () => {
    assert.deepEqual(openApiDocument(), openApiDocument());
  });
});
