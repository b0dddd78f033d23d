import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createApiServer } from "../api/server.js";
import { isTsvisorError, type TsvisorError } from "../core/errors.js";
import { LocalHost } from "../host/local-host.js";
import type { HostEvent } from "../host/types.js";
import { testBackends } from "../hv/sim/select.js";
import { settledCount } from "../testing/settle.js";
import { errorFromBody } from "./connection.js";
import { RemoteHost } from "./remote-host.js";
import { type Stack, startProxy, startStack, until } from "./testing/stack.js";

/**
 * RemoteHost against a real daemon stack (LocalHost on the simulator, or KVM where it says so,
 * served by the API server on a Unix socket): the same calls, results and error codes as the
 * in-process host, events that survive dropped connections, exits as promises, consoles.
 */

const run = promisify(execFile);

async function rejectsWith(
  p: Promise<unknown>,
  code: string,
  message?: RegExp,
): Promise<TsvisorError> {
  try {
    await p;
  } catch (e) {
    assert.ok(isTsvisorError(e), `expected a TsvisorError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}

/** Up to n events from an async iterable (the iteration is left after them). */
async function take(it: AsyncIterable<HostEvent>, n: number): Promise<HostEvent[]> {
  const out: HostEvent[] = [];
  if (n === 0) return out;
  for await (const e of it) {
    out.push(e);
    if (out.length >= n) break;
  }
  return out;
}

describe("RemoteHost.connect", () => {
  it("fails with API_CONNECT naming the socket and ENOENT when no daemon made it", async () => {
    const e = await rejectsWith(
      RemoteHost.connect({ socket: "/nonexistent/tsvisor.sock" }),
      "API_CONNECT",
      /cannot reach the tsvisor daemon at \/nonexistent\/tsvisor\.sock: ENOENT.*tsvisor daemon --socket PATH/,
    );
    assert.equal(e.details?.errno, "ENOENT");
  });

  it("fails with API_CONNECT and ECONNREFUSED when the socket file has no daemon behind it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsvisor-sdk-"));
    const stale = join(dir, "stale.sock");
    try {
      // A socket file left behind by a process that died without removing it.
      spawnSync(process.execPath, [
        "-e",
        `require("net").createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, "SIGKILL"))`,
      ]);
      const e = await rejectsWith(
        RemoteHost.connect({ socket: stale }),
        "API_CONNECT",
        /ECONNREFUSED/,
      );
      assert.equal(e.details?.errno, "ECONNREFUSED");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("takes the socket or the url, not both or neither", async () => {
    await rejectsWith(RemoteHost.connect({}), "API_CONNECT", /socket.*url/);
    await rejectsWith(
      RemoteHost.connect({ socket: "/x.sock", url: "http://127.0.0.1:1" }),
      "API_CONNECT",
    );
    await rejectsWith(RemoteHost.connect({ url: "ftp://x" }), "API_CONNECT", /http:\/\/HOST:PORT/);
  });

  it("refuses something that is not a tsvisor daemon with API_PROTOCOL", async () => {
    const stack = await startStack();
    const fake = join(stack.dir, "fake.sock");
    let reply = (res: http.ServerResponse) => {
      res.writeHead(200, { "content-type": "application/json", "tsvisor-api": "1" });
      res.end('{"hello":"world"}');
    };
    const server = http.createServer((_req, res) => reply(res));
    await new Promise<void>((r) => server.listen(fake, r));
    try {
      await rejectsWith(RemoteHost.connect({ socket: fake }), "API_PROTOCOL", /not a HostInfo/);
      reply = (res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end("{}");
      };
      await rejectsWith(RemoteHost.connect({ socket: fake }), "API_PROTOCOL", /tsvisor-api/);
      reply = (res) => {
        res.writeHead(500, { "content-type": "text/html", "tsvisor-api": "1" });
        res.end("<h1>oops</h1>");
      };
      await rejectsWith(RemoteHost.connect({ socket: fake }), "API_PROTOCOL", /HTTP 500/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      await stack.stop();
    }
  });
});

describe("error bodies", () => {
  it("become TsvisorErrors with the daemon's code, message and details", () => {
    const e = errorFromBody(
      409,
      JSON.stringify({ error: { code: "API_STATE", message: "no", details: { vm: "vm-1" } } }),
    );
    assert.equal(e.code, "API_STATE");
    assert.equal(e.message, "no");
    assert.deepEqual(e.details, { vm: "vm-1" });
  });

  it("with a code this client does not know become API_PROTOCOL keeping that code", () => {
    const e = errorFromBody(500, JSON.stringify({ error: { code: "INTERNAL", message: "bug" } }));
    assert.equal(e.code, "API_PROTOCOL");
    assert.equal(e.details?.code, "INTERNAL");
    assert.equal(e.details?.status, 500);
    assert.match(e.message, /INTERNAL: bug/);
  });

  it("that are not the API's shape become API_PROTOCOL", () => {
    for (const body of ["", "nope", "{}", '{"error":"x"}', '{"error":{"code":1,"message":"m"}}']) {
      assert.equal(errorFromBody(400, body).code, "API_PROTOCOL", body);
    }
  });
});

describe("RemoteHost against a daemon on the simulated backend", () => {
  let stack: Stack;
  let host: RemoteHost;
  before(async () => {
    stack = await startStack({ maxVms: 4, memoryBudget: 16 * 1024 * 1024, eventRetention: 200 });
    host = await RemoteHost.connect({ socket: stack.socket });
  });
  after(async () => {
    await host?.close();
    await stack?.stop();
  });

  it("reports the host: backend, limits and the event cursor", async () => {
    const info = await host.info();
    assert.equal(info.backend, "sim");
    assert.deepEqual(info.limits, { max_vms: 4, memory_budget: 16 * 1024 * 1024 });
    assert.deepEqual(info, stack.host.hostInfo());
  });

  it("creates, starts, runs to its exit and destroys a VM, as LocalHost reports it", async () => {
    const vm = await host.create({ image: "hello", name: "greeter", memory: "4M" });
    const created = await vm.info();
    assert.equal(created.state, "created");
    assert.equal(created.rm_status, "READY");
    assert.equal(created.name, "greeter");
    assert.equal(created.memory, 4 * 1024 * 1024);
    assert.deepEqual(created, stack.host.inspect(vm.id));
    assert.equal((await host.vm("greeter")).id, vm.id, "a name finds the VM");
    const started = await vm.start();
    assert.ok(["running", "exited"].includes(started.state), started.state);
    const exit = await vm.exited;
    assert.equal(exit.exit_type, "PLATFORM_OFF");
    assert.equal(exit.exit_code, 0);
    assert.equal(exit.initiator, "guest");
    const info = await vm.info();
    assert.equal(info.state, "exited");
    assert.deepEqual(info.exit, exit);
    assert.ok((await host.list()).some((v) => v.id === vm.id));
    await vm.destroy();
    assert.ok(!(await host.list()).some((v) => v.id === vm.id));
    await rejectsWith(vm.info(), "API_NOT_FOUND");
  });

  it("stops gracefully then by force, resets to a new VMID and runs again", async () => {
    const vm = await host.create({ image: "spin" });
    await vm.start();
    const stopped = await vm.stop({ timeout_ms: 0 });
    assert.equal(stopped.state, "exited");
    assert.equal(stopped.exit?.exit_type, "VM_STOP_FORCED");
    assert.equal(stopped.exit?.initiator, "host");
    assert.deepEqual(await vm.exited, stopped.exit);
    const reset = await vm.reset();
    assert.equal(reset.state, "created");
    assert.equal(typeof reset.vmid, "number", "a VMID again");
    assert.equal(reset.exit?.exit_type, "VM_STOP_FORCED", "the last exit is kept until a start");
    const next = vm.exited;
    await vm.start();
    const forced = await vm.stop({ force: true });
    assert.equal(forced.exit?.exit_type, "VM_STOP_FORCED");
    assert.deepEqual(await next, forced.exit, "a new exited promise after the reset");
    assert.equal((await vm.info()).runs, 2);
    await vm.destroy();
  });

  it("vm.exited read before the start, and on a handle made after the exit, both resolve", async () => {
    const vm = await host.create({ image: "exit-code", registers: { rdi: 9 } });
    const early = vm.exited;
    await vm.start();
    assert.equal((await early).exit_code, 9);
    const later = await host.vm(vm.id);
    assert.deepEqual(await later.exited, await early);
    await vm.destroy();
  });

  it("carries the daemon's error codes across the wire", async () => {
    await rejectsWith(host.vm("no-such-vm"), "API_NOT_FOUND", /no-such-vm/);
    await rejectsWith(host.create({ image: "no-such-guest" }), "API_IMAGE");
    await rejectsWith(
      host.create({ image: "hello", colour: "blue" } as never),
      "API_VALIDATION",
      /colour/,
    );
    await rejectsWith(host.create({ image: "hello", memory: "3" }), "API_VALIDATION", /memory/);
    const vm = await host.create({ image: "spin", name: "only-one" });
    await rejectsWith(host.create({ image: "hello", name: "only-one" }), "API_NAME_TAKEN");
    await rejectsWith(vm.stop(), "API_STATE", /not been started/);
    await vm.start();
    const e = await rejectsWith(vm.start(), "API_STATE", /already running/);
    assert.equal(e.details?.state, "running");
    await rejectsWith(host.create({ image: "hello", memory: "32M" }), "API_LIMIT_MEMORY");
    await vm.destroy();
    await rejectsWith(vm.start(), "API_NOT_FOUND");
  });

  it("is refused API_LIMIT_VMS past the daemon's VM count", async () => {
    const vms = await Promise.all(
      [1, 2, 3, 4].map(() => host.create({ image: "hello", memory: "2M" })),
    );
    await rejectsWith(host.create({ image: "hello", memory: "2M" }), "API_LIMIT_VMS");
    await Promise.all(vms.map((v) => v.destroy()));
  });

  it("rejects vm.exited with API_VM_GONE for a VM destroyed without running", async () => {
    const vm = await host.create({ image: "hello" });
    const exited = vm.exited;
    await vm.destroy();
    await rejectsWith(exited, "API_VM_GONE");
    // Read only after the destroy: the same answer.
    const late = await host.create({ image: "hello" });
    await late.destroy();
    await rejectsWith(late.exited, "API_VM_GONE");
  });

  it("rolls an abandoned create back: the VM never stays", async () => {
    const ac = new AbortController();
    const local = stack.host;
    const createVm = local.createVm;
    // The client goes away while the daemon is in the middle of the create.
    local.createVm = async (spec, signal) => {
      const p = createVm.call(local, spec, signal);
      ac.abort();
      // The daemon hears of it once the dropped connection reaches its side.
      await until(() => signal?.aborted === true, "the daemon to see the client leave");
      return p;
    };
    try {
      await rejectsWith(
        host.create({ image: "hello", name: "abandoned" }, { signal: ac.signal }),
        "RPC_ABORTED",
      );
    } finally {
      local.createVm = createVm;
    }
    await until(async () => (await host.info()).usage.vms === 0, "the rollback");
    assert.ok(!(await host.list()).some((v) => v.name === "abandoned"));
  });

  it("throws API_CURSOR_EXPIRED to the consumer of an expired cursor", async () => {
    // Retention 200: make sure event 1 is gone.
    while ((await host.info()).oldest_event <= 2) {
      const vm = await host.create({ image: "hello", memory: "2M" });
      await vm.start();
      await vm.exited;
      await vm.destroy();
    }
    const it = host.events({ since: 0 })[Symbol.asyncIterator]();
    await rejectsWith(it.next(), "API_CURSOR_EXPIRED");
  });

  it("streams events from a cursor and from now on", async () => {
    const since = (await host.info()).next_event - 1;
    const fromNow = host.events()[Symbol.asyncIterator]();
    const first = fromNow.next();
    const vm = await host.create({ image: "hello" });
    await vm.start();
    await vm.exited;
    const e = await first;
    assert.equal(e.done, false);
    assert.equal(e.value.type, "vm.created");
    assert.equal(e.value.seq, since + 1);
    await fromNow.return?.();
    const replay = await take(vm.events({ since }), 5);
    assert.deepEqual(
      replay.map((x) => (x.type === "vm.status" ? `status:${x.rm_status}` : x.type)),
      ["vm.created", "status:RUNNING", "vm.started", "status:EXITED", "vm.exited"],
    );
    await vm.destroy();
  });
});

describe("event streams through a connection that breaks", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({ maxVms: 8 });
  });
  after(async () => {
    await stack?.stop();
  });

  it("resume after the connection is cut: every event once, in order, none missed", async () => {
    const proxy = await startProxy(stack.socket, join(stack.dir, "proxy.sock"));
    const host = await RemoteHost.connect({ socket: proxy.socket });
    const direct = await RemoteHost.connect({ socket: stack.socket });
    try {
      const since = (await direct.info()).next_event - 1;
      const it = host.events({ since })[Symbol.asyncIterator]();
      const seen: HostEvent[] = [];
      const readUntil = async (seq: number) => {
        while (seen.length === 0 || seen[seen.length - 1]!.seq < seq) {
          const r = await it.next();
          assert.equal(r.done, false);
          seen.push(r.value as HostEvent);
        }
      };
      for (let round = 0; round < 3; round++) {
        const vm = await direct.create({ image: "hello", memory: "2M" });
        await vm.start();
        await vm.exited;
        await readUntil((await direct.info()).next_event - 1);
        proxy.dropAll();
        // Events that happen while the client is disconnected.
        await vm.destroy();
        const more = await direct.create({ image: "hello", memory: "2M" });
        await more.destroy();
      }
      const last = (await direct.info()).next_event - 1;
      await readUntil(last);
      assert.deepEqual(
        seen.map((e) => e.seq),
        Array.from({ length: last - since }, (_, i) => since + 1 + i),
      );
      await it.return?.();
      await until(() => proxy.live() <= 1, "the event socket to close");
    } finally {
      await host.close();
      await direct.close();
      await proxy.close();
    }
  });

  it("a feed whose daemon restarts ends with API_CURSOR_EXPIRED instead of resuming in the new log", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsvisor-restart-"));
    const socket = join(dir, "api.sock");
    const serve = async () => {
      const host = LocalHost.open({ backend: "sim" });
      const listening = await createApiServer(host).listen({ socketPath: socket });
      return {
        host,
        stop: async () => {
          await listening.close();
          await host.close();
        },
      };
    };
    let first = await serve();
    const client = await RemoteHost.connect({ socket });
    try {
      const it = client.events({ since: 0 })[Symbol.asyncIterator]();
      const a = await first.host.createVm({ image: "hello" });
      const got = await it.next();
      assert.equal((got.value as HostEvent).vm, a.id);
      await first.stop();
      // A new daemon on the same path, with events of its own numbered from 1 again.
      first = await serve();
      await first.host.createVm({ image: "hello" });
      await first.host.createVm({ image: "hello" });
      await assert.rejects(it.next(), (e) => isTsvisorError(e, "API_CURSOR_EXPIRED"));
    } finally {
      await client.close();
      await first.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("breaking out of for await closes the socket", async () => {
    const proxy = await startProxy(stack.socket, join(stack.dir, "proxy2.sock"));
    const host = await RemoteHost.connect({ socket: proxy.socket });
    try {
      const since = (await host.info()).next_event - 1;
      let open = 0;
      const p = (async () => {
        for await (const e of host.events({ since })) {
          open = proxy.live();
          return e;
        }
      })();
      const vm = await stack.host.create({ image: "hello" });
      assert.equal((await p)?.type, "vm.created");
      assert.equal(open, 2, "the request connection and the event socket");
      await until(() => proxy.live() === 1, "the event socket to close");
      await host.close();
      await until(() => proxy.live() === 0, "the request connection to close");
      await stack.host.destroyVm(vm.id);
    } finally {
      await host.close();
      await proxy.close();
    }
  });
});

describe("RemoteHost's resources", () => {
  it("many clients, VMs, exits, consoles and event streams leave no file descriptor behind", async () => {
    const stack = await startStack();
    try {
      const cycle = async () => {
        const host = await RemoteHost.connect({ socket: stack.socket });
        const vm = await host.create({ image: "hello" });
        const out = vm.console();
        out.resume();
        const events = take(vm.events({ since: 0 }), 1);
        await vm.start();
        await vm.exited;
        await events;
        await vm.destroy();
        await host.close();
      };
      await cycle();
      const fds = readdirSync("/proc/self/fd").length;
      for (let i = 0; i < 30; i++) await cycle();
      assert.equal(await settledCount("/proc/self/fd", fds), fds);
    } finally {
      await stack.stop();
    }
  });
});

describe("a script using RemoteHost", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });

  afterEach(async () => {
    for (const v of stack.host.listVms()) await stack.host.destroyVm(v.id);
  });

  const sdk = fileURLToPath(new URL("./index.js", import.meta.url));
  const script = (body: string) => {
    const file = join(stack.dir, `script-${Math.random().toString(36).slice(2)}.mjs`);
    writeFileSync(
      file,
      `import { RemoteHost } from ${JSON.stringify(sdk)};\nconst host = await RemoteHost.connect({ socket: ${JSON.stringify(stack.socket)} });\n${body}\n`,
    );
    return file;
  };

  it("exits by itself after close(), with events, a console and a pending exit open", async () => {
    const file = script(`
      const vm = await host.create({ image: "spin" });
      const pending = vm.exited;
      vm.console().on("data", () => {});
      const it = host.events()[Symbol.asyncIterator]();
      const first = it.next();
      await vm.start();
      await first;
      await host.close();
      const e = await pending.catch((e) => e.code);
      console.log("closed", e);
    `);
    const { stdout } = await run(process.execPath, [file]);
    assert.equal(stdout, "closed API_CONNECT\n");
  });

  it("exits by itself once vm.exited has settled, even without close()", async () => {
    const file = script(`
      const vm = await host.create({ image: "hello" });
      await vm.start();
      const exit = await vm.exited;
      console.log(exit.exit_type);
    `);
    const { stdout } = await run(process.execPath, [file]);
    assert.equal(stdout, "PLATFORM_OFF\n");
  });
});

describe("RemoteHost over TCP", () => {
  it("sends the bearer token; a wrong one is API_UNAUTHORIZED", async () => {
    const stack = await startStack({ tcp: true, token: "s3cret" });
    try {
      const url = `http://127.0.0.1:${stack.tcpPort}`;
      await rejectsWith(RemoteHost.connect({ url, token: "wrong" }), "API_UNAUTHORIZED");
      await rejectsWith(RemoteHost.connect({ url }), "API_UNAUTHORIZED");
      const host = await RemoteHost.connect({ url, token: "s3cret" });
      try {
        const vm = await host.create({ image: "hello" });
        const events = take(vm.events({ since: 0 }), 1);
        assert.equal((await events)[0]!.type, "vm.created");
        await vm.start();
        assert.equal((await vm.exited).exit_type, "PLATFORM_OFF");
        await vm.destroy();
      } finally {
        await host.close();
      }
    } finally {
      await stack.stop();
    }
  });
});

for (const backend of testBackends()) {
  describe(`the console on ${backend.label}`, { skip: backend.skip }, () => {
    it("echoes what is typed (uart-echo) and ends when the VM is destroyed", async () => {
      const hv = backend.open();
      const stack = await startStack({ backend: hv });
      const host = await RemoteHost.connect({ socket: stack.socket });
      try {
        const vm = await host.create({ image: "uart-echo" });
        const tty = vm.console();
        let out = "";
        tty.on("data", (d: Buffer) => {
          out += d.toString("latin1");
        });
        const ended = new Promise<void>((r) => tty.once("end", r));
        await vm.start();
        tty.write("tsv");
        await until(() => out.includes("tsv"), "the echo");
        tty.write("q");
        const exit = await vm.exited;
        assert.equal(exit.exit_code, 3, "uart-echo exits with the count of bytes it read");
        await vm.destroy();
        await ended;
        assert.match(out, /tsv/);
      } finally {
        await host.close();
        await stack.stop();
        hv.close();
      }
    });
  });
}
