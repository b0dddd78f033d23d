import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import fc from "fast-check";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import type { LocalHost } from "../host/local-host.js";
import type { HostEvent, VmSpec } from "../host/types.js";
import { settledCount } from "../testing/settle.js";
import { openApiDocument } from "./openapi.js";
import { type ApiHost, createApiServer } from "./server.js";
import {
  type Api,
  DocChecker,
  openSse,
  openWs,
  parseRaw,
  type Reply,
  rawExchange,
  request,
  startApi,
  type Target,
  until,
} from "./testing/harness.js";

/**
 * The HTTP API end to end over a real Unix socket, against the real LocalHost on the simulated
 * backend: each route's answers (validated against the OpenAPI document), the coded 4xx for
 * every kind of bad request with the daemon still serving after it, 500s it survives, socket
 * files and modes, TCP with its token, and creates abandoned by their clients.
 */

const checker = new DocChecker();

/** A request whose answer must be what the document says (and carry the version header). */
async function call(
  to: Target | string,
  method: string,
  path: string,
  opts: Parameters<typeof request>[3] = {},
): Promise<Reply> {
  const r = await request(to, method, path, opts);
  assert.equal(r.headers["tsvisor-api"], "1", `${method} ${path}: version header`);
  if (r.headers["content-type"] === "application/json") {
    let routed = true;
    try {
      checker.check(method, path, r);
    } catch (e) {
      if (!(e instanceof TsvisorError)) throw e;
      routed = false;
    }
    // No route: the body is still the error body.
    if (!routed) checker.checkComponent("ErrorBody", r.json);
  }
  return r;
}

async function expectError(r: Reply | Promise<Reply>, status: number, code: string) {
  const reply = await r;
  assert.equal(reply.status, status, reply.text);
  assert.equal(reply.json?.error?.code, code, reply.text);
  assert.equal(typeof reply.json.error.message, "string");
  return reply;
}

async function stillServing(to: Target | string) {
  const r = await call(to, "GET", "/v1/host");
  assert.equal(r.status, 200);
}

describe("the API on the simulated backend", () => {
  let api: Api;
  before(async () => {
    api = await startApi();
  });
  after(async () => {
    await api.close();
  });

  it("serves every plain route's happy path with bodies the document describes", async () => {
    const s = api.socketPath;
    const host = await call(s, "GET", "/v1/host");
    assert.equal(host.status, 200);
    assert.equal(host.json.backend, "sim");
    assert.equal(host.json.usage.vms, 0);

    const doc = await call(s, "GET", "/v1/openapi.json");
    assert.equal(doc.status, 200);
    assert.deepEqual(doc.json, openApiDocument());

    const created = await call(s, "POST", "/v1/vms", { body: { image: "hello", name: "h1" } });
    assert.equal(created.status, 201);
    assert.equal(created.json.state, "created");
    assert.equal(created.json.rm_status, "READY");
    assert.equal(created.headers.location, `/v1/vms/${created.json.id}`);
    const id: string = created.json.id;

    const list = await call(s, "GET", "/v1/vms");
    assert.deepEqual(
      list.json.vms.map((v: { id: string }) => v.id),
      [id],
    );
    const byName = await call(s, "GET", "/v1/vms/h1");
    assert.equal(byName.json.id, id);

    const started = await call(s, "POST", `/v1/vms/${id}/start`);
    assert.equal(started.status, 200);
    assert.equal(started.json.runs, 1);
    let info = await call(s, "GET", `/v1/vms/${id}`);
    while (info.json.state !== "exited") {
      await sleep(5);
      info = await call(s, "GET", `/v1/vms/${id}`);
    }
    assert.equal(info.json.exit.exit_type, "PLATFORM_OFF");
    assert.equal(info.json.exit.initiator, "guest");

    const out = await request(s, "GET", `/v1/vms/${id}/console`);
    assert.equal(out.status, 200);
    assert.equal(out.headers["content-type"], "application/octet-stream");
    assert.match(out.text, /Hello/);
    assert.equal((await request(s, "GET", `/v1/vms/${id}/console?history=0`)).text, "");

    const reset = await call(s, "POST", `/v1/vms/${id}/reset`, { body: {} });
    assert.equal(reset.status, 200);
    assert.equal(reset.json.state, "created");

    const gone = await call(s, "DELETE", `/v1/vms/${id}`);
    assert.equal(gone.status, 200);
    assert.equal(gone.json.state, "destroyed");
    await expectError(call(s, "GET", `/v1/vms/${id}`), 404, "API_NOT_FOUND");
    assert.deepEqual((await call(s, "GET", "/v1/vms")).json.vms, []);
  });

  it("stops running guests by force and gracefully, answering after the exit", async () => {
    const s = api.socketPath;
    const a = (await call(s, "POST", "/v1/vms", { body: { image: "spin" } })).json.id;
    const b = (await call(s, "POST", "/v1/vms", { body: { image: "spin", memory: "4M" } })).json.id;
    assert.equal((await call(s, "POST", `/v1/vms/${a}/start`, { body: {} })).json.state, "running");
    await call(s, "POST", `/v1/vms/${b}/start`);
    const forced = await call(s, "POST", `/v1/vms/${a}/stop`, { body: { force: true } });
    assert.equal(forced.status, 200);
    assert.equal(forced.json.state, "exited");
    assert.equal(forced.json.exit.exit_type, "VM_STOP_FORCED");
    assert.equal(forced.json.exit.initiator, "host");
    // spin ignores VM_SHUTDOWN: the graceful stop is forced after its timeout.
    const graceful = await call(s, "POST", `/v1/vms/${b}/stop`, { body: { timeout_ms: 20 } });
    assert.equal(graceful.json.state, "exited");
    assert.equal(graceful.json.memory, 4 * 1024 * 1024);
    for (const id of [a, b]) assert.equal((await call(s, "DELETE", `/v1/vms/${id}`)).status, 200);
  });

  it("answers each malformed request with its coded 4xx body and keeps serving", async () => {
    const s = api.socketPath;
    const cases: {
      what: string;
      method: string;
      path: string;
      body?: unknown;
      headers?: Record<string, string>;
      status: number;
      code: string;
      message?: RegExp;
    }[] = [
      {
        what: "malformed JSON",
        method: "POST",
        path: "/v1/vms",
        body: '{"image": "hello",',
        status: 400,
        code: "API_BAD_JSON",
      },
      {
        what: "a wrong type",
        method: "POST",
        path: "/v1/vms",
        body: { image: "hello", vcpus: "two" },
        status: 400,
        code: "API_VALIDATION",
        message: /^vcpus: must be an integer from 1 to 2$/,
      },
      {
        what: "an unknown field",
        method: "POST",
        path: "/v1/vms",
        body: { image: "hello", cpus: 1 },
        status: 400,
        code: "API_VALIDATION",
        message: /^cpus: is not a known field$/,
      },
      {
        what: "no body where one is needed",
        method: "POST",
        path: "/v1/vms",
        status: 400,
        code: "API_VALIDATION",
        message: /^\(body\): this route needs a JSON body$/,
      },
      {
        what: "a body that is not JSON-typed",
        method: "POST",
        path: "/v1/vms",
        body: '{"image":"hello"}',
        headers: { "content-type": "text/plain" },
        status: 415,
        code: "API_MEDIA_TYPE",
      },
      {
        what: "a JSON body in another charset",
        method: "POST",
        path: "/v1/vms",
        body: '{"image":"hello"}',
        headers: { "content-type": "application/json; charset=latin1" },
        status: 415,
        code: "API_MEDIA_TYPE",
      },
      {
        what: "an image that is neither a file nor a guest",
        method: "POST",
        path: "/v1/vms",
        body: { image: "no-such-guest" },
        status: 400,
        code: "API_IMAGE",
      },
      {
        what: "an unknown route",
        method: "GET",
        path: "/v1/nothing",
        status: 404,
        code: "API_NOT_FOUND",
      },
      {
        what: "an unknown VM",
        method: "POST",
        path: "/v1/vms/nobody/start",
        status: 404,
        code: "API_NOT_FOUND",
      },
      {
        what: "a wrong method",
        method: "PATCH",
        path: "/v1/vms",
        status: 405,
        code: "API_METHOD",
      },
      {
        what: "stop options out of range",
        method: "POST",
        path: "/v1/vms/nobody/stop",
        body: { timeout_ms: -1 },
        status: 400,
        code: "API_VALIDATION",
        message: /^timeout_ms: /,
      },
      {
        what: "a body for start that is not {}",
        method: "POST",
        path: "/v1/vms/nobody/start",
        body: { now: true },
        status: 400,
        code: "API_VALIDATION",
      },
      {
        what: "an unknown query parameter",
        method: "GET",
        path: "/v1/vms/nobody/console?histroy=0",
        status: 400,
        code: "API_VALIDATION",
        message: /^histroy: /,
      },
      {
        what: "a cursor that is not a number",
        method: "GET",
        path: "/v1/events?since=last",
        status: 400,
        code: "API_VALIDATION",
        message: /^since: /,
      },
      {
        what: "a cursor from the future",
        method: "GET",
        path: "/v1/events?since=999999",
        status: 400,
        code: "API_VALIDATION",
      },
      {
        what: "events of an unknown VM",
        method: "GET",
        path: "/v1/vms/nobody/events",
        status: 404,
        code: "API_NOT_FOUND",
      },
    ];
    for (const c of cases) {
      const r = await expectError(
        call(s, c.method, c.path, {
          ...(c.body !== undefined ? { body: c.body } : {}),
          ...(c.headers ? { headers: c.headers } : {}),
        }),
        c.status,
        c.code,
      );
      if (c.message) assert.match(r.json.error.message, c.message, c.what);
      if (c.code === "API_METHOD") assert.equal(r.headers.allow, "GET, POST");
      if (c.code === "API_VALIDATION" && c.body !== undefined) {
        assert.ok(Array.isArray(r.json.error.details.issues), `${c.what}: issues listed`);
      }
      await stillServing(s);
    }
    assert.deepEqual(api.host.listVms(), [], "no bad request left a VM");
  });

  it("refuses bad state transitions with 409 and leaves the VM usable", async () => {
    const s = api.socketPath;
    const id = (await call(s, "POST", "/v1/vms", { body: { image: "spin", name: "st" } })).json.id;
    await expectError(call(s, "POST", `/v1/vms/${id}/stop`), 409, "API_STATE");
    await expectError(
      call(s, "POST", "/v1/vms", { body: { image: "spin", name: "st" } }),
      409,
      "API_NAME_TAKEN",
    );
    assert.equal((await call(s, "POST", `/v1/vms/${id}/start`)).status, 200);
    const twice = await expectError(call(s, "POST", `/v1/vms/${id}/start`), 409, "API_STATE");
    assert.match(twice.json.error.message, /already running/);
    await call(s, "POST", `/v1/vms/${id}/stop`, { body: { force: true } });
    await expectError(call(s, "POST", `/v1/vms/${id}/stop`), 409, "API_STATE");
    await expectError(call(s, "POST", `/v1/vms/${id}/start`), 409, "API_STATE");
    assert.equal((await call(s, "POST", `/v1/vms/${id}/reset`)).json.state, "created");
    assert.equal((await call(s, "POST", `/v1/vms/${id}/start`)).json.state, "running");
    assert.equal((await call(s, "DELETE", `/v1/vms/st`)).status, 200);
    await expectError(call(s, "DELETE", `/v1/vms/${id}`), 404, "API_NOT_FOUND");
    await stillServing(s);
  });

  it("answers a body over the limit with 413 without reading the rest, then closes", async () => {
    const s = api.socketPath;
    const declared = parseRaw(
      await rawExchange(
        s,
        "POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
          `Content-Length: ${2 * 1024 * 1024}\r\n\r\n{"image":`,
      ),
    );
    assert.equal(declared.status, 413);
    assert.match(declared.headers, /\r\nconnection: close/i);
    assert.match(declared.headers, /\r\ntsvisor-api: 1/i);
    assert.equal((declared.json as { error: { code: string } }).error.code, "API_BODY_TOO_LARGE");
    checker.check("POST", "/v1/vms", declared);

    // Chunked: no length up front, so the limit is found while reading.
    const piece = Buffer.alloc(64 * 1024, 0x20);
    const chunk = Buffer.concat([
      Buffer.from(`${piece.length.toString(16)}\r\n`),
      piece,
      Buffer.from("\r\n"),
    ]);
    const streamed = parseRaw(
      await rawExchange(
        s,
        "POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        Array.from({ length: 17 }, () => chunk),
      ),
    );
    assert.equal(streamed.status, 413);
    assert.equal((streamed.json as { error: { code: string } }).error.code, "API_BODY_TOO_LARGE");

    // At the limit exactly, the body is read and judged on its content.
    const b64 = "A".repeat(1024 * 1024 - '{"image_base64":""}'.length);
    const atLimit = await call(s, "POST", "/v1/vms", { body: { image_base64: b64 } });
    assert.equal(Buffer.byteLength(JSON.stringify({ image_base64: b64 })), 1024 * 1024);
    assert.notEqual(atLimit.status, 413);
    assert.equal(atLimit.status, 400, atLimit.text);
    await stillServing(s);
  });

  it("never answers 5xx to any JSON body, and leaves a VM behind only when it answered 201", async () => {
    const s = api.socketPath;
    const field = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom("hello", "spin", "exit-code", "2M", "64K", "user", "pvh", 1, 2, 0),
    );
    const specLike = fc.record(
      {
        image: fc.oneof(fc.constantFrom("hello", "spin", "exit-code"), field),
        image_base64: field,
        kernel: field,
        initrd: field,
        cmdline: field,
        memory: field,
        vcpus: field,
        irqchip: field,
        entry: field,
        registers: fc.oneof(field, fc.dictionary(fc.constantFrom("rax", "rdi", "rip"), field)),
        devices: field,
        name: field,
      },
      { requiredKeys: [] },
    );
    // A valid spec with a field or two changed, so that creates succeed as well as fail.
    const nearlyValid = fc
      .record({
        image: fc.constantFrom("hello", "spin", "exit-code"),
        extra: fc.dictionary(
          fc.constantFrom("memory", "vcpus", "irqchip", "name", "registers", "cmdline", "entry"),
          field,
          { maxKeys: 2 },
        ),
      })
      .map(({ image, extra }) => ({ image, ...extra }));
    let created = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), specLike, nearlyValid), async (body) => {
        const r = await call(s, "POST", "/v1/vms", { body: JSON.stringify(body) });
        assert.ok(r.status < 500, `${r.status}: ${r.text}`);
        if (r.status === 201) created++;
        else refused++;
        if (r.status === 201) {
          assert.equal(api.host.listVms().length, 1);
          assert.equal((await call(s, "DELETE", `/v1/vms/${r.json.id}`)).status, 200);
        } else {
          assert.ok(r.status >= 400, r.text);
        }
        assert.deepEqual(api.host.listVms(), []);
      }),
      { numRuns: 150 },
    );
    assert.ok(created > 0 && refused > 0, `${created} created, ${refused} refused`);
  });
});

describe("the API server's failures and limits", () => {
  it("answers 500 INTERNAL when a handler throws a non-TsvisorError, logs it, keeps serving", async () => {
    const api = await startApi({
      wrap: (h) =>
        proxy(h, {
          hostInfo: () => {
            throw new TypeError("boom");
          },
          listVms: () => {
            throw new TsvisorError("RPC_TIMEOUT", "the RM did not answer");
          },
        }),
    });
    try {
      const r = await expectError(call(api.socketPath, "GET", "/v1/host"), 500, "INTERNAL");
      assert.doesNotMatch(r.text, /boom/, "internals stay in the log");
      assert.ok(api.logs.some((l) => l.includes("boom")));
      await expectError(call(api.socketPath, "GET", "/v1/vms"), 500, "RPC_TIMEOUT");
      const ok = await call(api.socketPath, "POST", "/v1/vms", { body: { image: "hello" } });
      assert.equal(ok.status, 201);
    } finally {
      await api.close();
    }
  });

  it("answers the host's limits as 409 with their details", async () => {
    const api = await startApi({ host: { maxVms: 1, memoryBudget: 4 * 1024 * 1024 } });
    try {
      const s = api.socketPath;
      const big = await expectError(
        call(s, "POST", "/v1/vms", { body: { image: "hello", memory: "8M" } }),
        409,
        "API_LIMIT_MEMORY",
      );
      assert.equal(big.json.error.details.memory_budget, 4 * 1024 * 1024);
      assert.equal((await call(s, "POST", "/v1/vms", { body: { image: "hello" } })).status, 201);
      const more = await expectError(
        call(s, "POST", "/v1/vms", { body: { image: "hello" } }),
        409,
        "API_LIMIT_VMS",
      );
      assert.equal(more.json.error.details.max_vms, 1);
    } finally {
      await api.close();
    }
  });

  it("rolls back a create whose client disconnects while it runs", async () => {
    let entered!: () => void;
    const inCreate = new Promise<void>((r) => {
      entered = r;
    });
    let outcome: unknown;
    const api = await startApi({
      wrap: (h) =>
        proxy(h, {
          createVm: async (spec: VmSpec, signal?: AbortSignal) => {
            entered();
            await until(() => signal?.aborted === true, "the client to leave");
            try {
              return await h.createVm(spec, signal);
            } catch (e) {
              outcome = e;
              throw e;
            }
          },
        }),
    });
    try {
      const events = collect(api.host);
      const ac = new AbortController();
      const req = request(api.socketPath, "POST", "/v1/vms", {
        body: { image: "hello" },
        signal: ac.signal,
      }).catch((e: Error) => e);
      await inCreate;
      ac.abort();
      assert.ok((await req) instanceof Error);
      await until(() => outcome !== undefined, "the create to give up");
      assert.ok(isTsvisorError(outcome, "RPC_ABORTED"), String(outcome));
      await stillServing(api.socketPath);
      assert.deepEqual(api.host.listVms(), []);
      assert.deepEqual(events, [], "the VM never appeared");
    } finally {
      await api.close();
    }
  });

  it("destroys a VM whose create finished after its client had gone", async () => {
    let entered!: () => void;
    const inCreate = new Promise<void>((r) => {
      entered = r;
    });
    const api = await startApi({
      wrap: (h) =>
        proxy(h, {
          createVm: async (spec: VmSpec, signal?: AbortSignal) => {
            const info = await h.createVm(spec);
            entered();
            await until(() => signal?.aborted === true, "the client to leave");
            return info;
          },
        }),
    });
    try {
      const events = collect(api.host);
      const ac = new AbortController();
      const req = request(api.socketPath, "POST", "/v1/vms", {
        body: { image: "hello" },
        signal: ac.signal,
      }).catch((e: Error) => e);
      await inCreate;
      ac.abort();
      await req;
      await until(() => events.some((e) => e.type === "vm.destroyed"), "the rollback");
      const lifecycle = events.filter((e) => e.type !== "vm.status");
      assert.deepEqual(
        lifecycle.map((e) => e.type),
        ["vm.created", "vm.destroyed"],
      );
      assert.equal(lifecycle[1]!.reason, "create abandoned by its client");
      assert.deepEqual(api.host.listVms(), []);
    } finally {
      await api.close();
    }
  });

  it("waits for requests in flight when it closes, and refuses new ones meanwhile", async () => {
    const api = await startApi();
    try {
      const s = api.socketPath;
      const id = (await call(s, "POST", "/v1/vms", { body: { image: "spin" } })).json.id;
      await call(s, "POST", `/v1/vms/${id}/start`);
      const stopping = call(s, "POST", `/v1/vms/${id}/stop`, { body: { timeout_ms: 200 } });
      await until(() => api.host.inspect(id).state === "stopping", "the stop to begin");
      const closing = api.listening.close();
      const stopped = await stopping;
      assert.equal(stopped.status, 200);
      assert.equal(stopped.json.state, "exited");
      await closing;
      assert.equal(existsSync(s), false);
    } finally {
      await api.close();
    }
  });
});

describe("the API server's resources", () => {
  it("holds no descriptor after requests, streams and upgrades have come and gone", async () => {
    const api = await startApi();
    try {
      const s = api.socketPath;
      const round = async () => {
        await call(s, "GET", "/v1/host");
        await expectError(call(s, "POST", "/v1/vms", { body: "{" }), 400, "API_BAD_JSON");
        const id = (await call(s, "POST", "/v1/vms", { body: { image: "hello" } })).json.id;
        const sse = await openSse(s, "/v1/events");
        const ws = await openWs(s, `/v1/vms/${id}/console`);
        assert.ok(ws.ws);
        await call(s, "DELETE", `/v1/vms/${id}`);
        assert.equal(await ws.closed, 1000);
        sse.close();
        await sse.ended;
      };
      await round();
      const fds = readdirSync("/proc/self/fd").length;
      for (let i = 0; i < 20; i++) await round();
      assert.equal(await settledCount("/proc/self/fd", fds), fds);
    } finally {
      await api.close();
    }
  });
});

describe("the API's sockets", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "tsvisor-api-sock-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("creates the socket 0600 and removes it on close", async () => {
    const api = await startApi();
    const mode = statSync(api.socketPath).mode;
    assert.ok(statSync(api.socketPath).isSocket());
    assert.equal(mode & 0o777, 0o600);
    await api.close();
    assert.equal(existsSync(api.socketPath), false);
  });

  it("refuses a path where a server answers, keeps a file that is not a socket, replaces a stale socket", async () => {
    const api = await startApi();
    try {
      const second = createApiServer(api.host);
      await assert.rejects(
        second.listen({ socketPath: api.socketPath }),
        (e) => isTsvisorError(e, "API_STATE") && /another process is serving/.test(e.message),
      );
      await stillServing(api.socketPath);

      const file = join(dir, "not-a-socket");
      writeFileSync(file, "keep me");
      await assert.rejects(second.listen({ socketPath: file }), (e) =>
        isTsvisorError(e, "API_STATE"),
      );
      assert.equal(readFileSync(file, "utf8"), "keep me");

      // A socket file whose server died without removing it.
      const stale = join(dir, "stale.sock");
      const died = spawnSync(process.execPath, [
        "-e",
        "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))",
        stale,
      ]);
      assert.equal(died.signal, "SIGKILL");
      assert.ok(statSync(stale).isSocket());
      const l = await second.listen({ socketPath: stale });
      assert.equal((await call(stale, "GET", "/v1/host")).status, 200);
      await l.close();
      assert.equal(existsSync(stale), false);
    } finally {
      await api.close();
    }
  });

  it("serves TCP only with a token, and answers 401 without it or with a wrong one", async () => {
    const api = await startApi({
      listen: { tcp: { host: "127.0.0.1", port: 0 }, token: "s3cret-token" },
    });
    try {
      const port = api.listening.tcpPort!;
      assert.ok(port > 0);
      const tcp = { port };
      const none = await expectError(call(tcp, "GET", "/v1/host"), 401, "API_UNAUTHORIZED");
      assert.match(String(none.headers["www-authenticate"]), /^Bearer/);
      await expectError(
        call(tcp, "GET", "/v1/host", { headers: { authorization: "Bearer s3cret-tokem" } }),
        401,
        "API_UNAUTHORIZED",
      );
      await expectError(
        call(tcp, "GET", "/v1/nothing", { headers: { authorization: "Basic czNjcmV0" } }),
        401,
        "API_UNAUTHORIZED",
      );
      const auth = { authorization: "Bearer s3cret-token" };
      assert.equal((await call(tcp, "GET", "/v1/host", { headers: auth })).status, 200);
      const vm = await call(tcp, "POST", "/v1/vms", { body: { image: "hello" }, headers: auth });
      assert.equal(vm.status, 201);
      // The Unix socket of the same server takes no token.
      assert.equal((await call(api.socketPath, "GET", "/v1/vms")).json.vms.length, 1);

      const ws = await openWsTcp(port, "/v1/events", {});
      assert.equal(ws.status, 401);
      const ok = await openWsTcp(port, "/v1/events", auth);
      assert.equal(ok.status, 101);

      await assert.rejects(
        createApiServer(api.host).listen({ tcp: { host: "127.0.0.1", port: 0 } }),
        (e) => isTsvisorError(e, "CLI_USAGE"),
      );
    } finally {
      await api.close();
    }
  });

  it("refuses WebSocket upgrades on routes that are not streams, before upgrading", async () => {
    const api = await startApi();
    try {
      const r = await openWs(api.socketPath, "/v1/host");
      assert.equal(r.failure?.status, 400);
      checker.checkComponent("ErrorBody", r.failure?.json);
      const keyless = parseRaw(
        await rawExchange(
          api.socketPath,
          "GET /v1/events HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        ),
      );
      assert.equal(keyless.status, 400);
      assert.match(keyless.headers, /\r\ntsvisor-api: 1/i);
      checker.check("GET", "/v1/events", keyless);
      const missing = await openWs(api.socketPath, "/v1/vms/nobody/console");
      assert.equal(missing.failure?.status, 404);
      assert.equal(missing.failure?.headers["tsvisor-api"], "1");
      assert.equal(
        (missing.failure?.json as { error: { code: string } } | undefined)?.error.code,
        "API_NOT_FOUND",
      );
      await stillServing(api.socketPath);
    } finally {
      await api.close();
    }
  });
});

// ---------------------------------------------------------------- helpers

/** The host with some methods replaced (the rest bound to it). */
function proxy(host: LocalHost, over: Partial<Record<keyof ApiHost, unknown>>): ApiHost {
  return new Proxy(host, {
    get(target, p) {
      if (p in over) return over[p as keyof ApiHost];
      const v = Reflect.get(target, p);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

function collect(host: LocalHost): HostEvent[] {
  const events: HostEvent[] = [];
  host.subscribe({}, (e) => events.push(e));
  return events;
}

async function openWsTcp(
  port: number,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number }> {
  const { default: WebSocket } = await import("ws");
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers });
    ws.once("open", () => {
      ws.close();
      resolve({ status: 101 });
    });
    ws.once("unexpected-response", (_req, res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
      ws.terminate();
    });
    ws.once("error", reject);
  });
}
