import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { EventLog } from "../host/event-log.js";
import type { LocalHost } from "../host/local-host.js";
import type { HostEvent } from "../host/types.js";
import { testBackends } from "../hv/sim/select.js";
import type { Hypervisor } from "../hv/types.js";
import type { ApiHost } from "./server.js";
import {
  type Api,
  collectWs,
  DocChecker,
  openSse,
  openWs,
  request,
  startApi,
  until,
  type WsOpen,
} from "./testing/harness.js";

/**
 * The streams: events over SSE and WebSocket (every event once, in order, resumable with a
 * cursor across reconnects; an expired cursor refused before streaming; slow clients dropped
 * and able to resume), and the console WebSocket with real guests on every backend.
 */

const checker = new DocChecker();

/** create → start → (guest exits) → destroy, over the API; returns the VM's id. */
async function lifecycle(socketPath: string, image = "hello"): Promise<string> {
  const created = await request(socketPath, "POST", "/v1/vms", { body: { image } });
  assert.equal(created.status, 201, created.text);
  const id: string = created.json.id;
  assert.equal((await request(socketPath, "POST", `/v1/vms/${id}/start`)).status, 200);
  for (;;) {
    const info = await request(socketPath, "GET", `/v1/vms/${id}`);
    if (info.json.state === "exited") break;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal((await request(socketPath, "DELETE", `/v1/vms/${id}`)).status, 200);
  return id;
}

const seqs = (events: readonly HostEvent[]) => events.map((e) => e.seq);
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);
const lifecycleTypes = (events: readonly HostEvent[], vm: string) =>
  events.filter((e) => e.vm === vm && e.type !== "vm.status").map((e) => e.type);

/** Every event the host logs from now on, straight from the host (the reference). */
function reference(host: LocalHost): { events: HostEvent[]; stop(): void } {
  const events: HostEvent[] = [];
  const stop = host.subscribe({}, (e) => events.push(e));
  return { events, stop };
}

describe("event streams", () => {
  let api: Api;
  before(async () => {
    api = await startApi();
  });
  after(async () => {
    await api.close();
  });

  it("SSE carries every event with id = seq and event = type, each a documented HostEvent", async () => {
    const sse = await openSse(api.socketPath, "/v1/events");
    assert.equal(sse.status, 200);
    assert.match(String(sse.headers["content-type"]), /^text\/event-stream/);
    assert.equal(sse.headers["tsvisor-api"], "1");
    const id = await lifecycle(api.socketPath);
    await until(() => sse.events.some((e) => e.type === "vm.destroyed"), "vm.destroyed");
    sse.close();
    assert.deepEqual(lifecycleTypes(sse.events, id), [
      "vm.created",
      "vm.started",
      "vm.exited",
      "vm.destroyed",
    ]);
    const first = sse.events[0]!.seq;
    assert.deepEqual(seqs(sse.events), range(first, first + sse.events.length - 1));
    sse.events.forEach((e, i) => {
      checker.checkEvent(e);
      assert.deepEqual(sse.frames[i], { id: String(e.seq), event: e.type });
    });
    assert.equal(sse.comments[0], "tsvisor events");
  });

  it("SSE resumes with since, and with Last-Event-ID over since, losing and repeating nothing", async () => {
    const s = api.socketPath;
    const start = api.host.hostInfo().next_event - 1;
    const ref = reference(api.host);
    const first = await openSse(s, `/v1/events?since=${start}`);
    await lifecycle(s);
    await until(() => first.events.length >= 3, "some events");
    first.close();
    await first.ended;
    const lastSeen = first.events.at(-1)!.seq;
    await lifecycle(s); // while nobody listens
    // The header is what a reconnecting EventSource sends; it wins over the stale query.
    const second = await openSse(s, "/v1/events?since=0", { "last-event-id": String(lastSeen) });
    const id = await lifecycle(s);
    await until(
      () => second.events.some((e) => e.vm === id && e.type === "vm.destroyed"),
      "the last lifecycle",
    );
    second.close();
    ref.stop();
    const all = [...first.events, ...second.events];
    assert.deepEqual(seqs(all), seqs(ref.events.filter((e) => e.seq <= all.at(-1)!.seq)));
    assert.deepEqual(seqs(all), range(start + 1, all.at(-1)!.seq));
    assert.deepEqual(all, ref.events.slice(0, all.length));
  });

  it("the WebSocket stream resumes with since, losing and repeating nothing", async () => {
    const s = api.socketPath;
    const start = api.host.hostInfo().next_event - 1;
    const ref = reference(api.host);
    const a = await openWs(s, `/v1/events?since=${start}`);
    assert.ok(a.ws);
    const first = collectWs(a);
    await lifecycle(s);
    await until(() => first.events.length >= 2, "some events");
    a.ws.close();
    await first.closed;
    await lifecycle(s);
    const b = await openWs(s, `/v1/events?since=${first.events.at(-1)!.seq}`);
    assert.ok(b.ws);
    const second = collectWs(b);
    const id = await lifecycle(s);
    await until(
      () => second.events.some((e) => e.vm === id && e.type === "vm.destroyed"),
      "the last lifecycle",
    );
    b.ws.close();
    ref.stop();
    const all = [...first.events, ...second.events];
    assert.deepEqual(seqs(all), range(start + 1, all.at(-1)!.seq));
    assert.deepEqual(all, ref.events.slice(0, all.length));
    for (const e of all) checker.checkEvent(e);
  });

  it("a VM's stream, and vm= on the host's, carry that VM's events only", async () => {
    const s = api.socketPath;
    const other = (await request(s, "POST", "/v1/vms", { body: { image: "spin" } })).json.id;
    const mine = (await request(s, "POST", "/v1/vms", { body: { image: "hello", name: "mine" } }))
      .json.id;
    const since = api.host.hostInfo().next_event - 1;
    const perVm = await openSse(s, `/v1/vms/mine/events?since=${since}`);
    const filtered = await openWs(s, `/v1/events?vm=${mine}&since=${since}`);
    assert.ok(filtered.ws);
    assert.ok(filtered.ws);
    const viaWs = collectWs(filtered);
    await request(s, "POST", `/v1/vms/${other}/start`);
    await request(s, "POST", `/v1/vms/${mine}/start`);
    await request(s, "DELETE", `/v1/vms/${other}`);
    await until(() => api.host.inspect(mine).state === "exited", "mine to exit");
    await request(s, "DELETE", `/v1/vms/${mine}`);
    for (const got of [perVm.events, viaWs.events]) {
      await until(() => got.some((e) => e.type === "vm.destroyed"), "destroyed");
      assert.ok(got.every((e) => e.vm === mine));
      assert.deepEqual(lifecycleTypes(got, mine), ["vm.started", "vm.exited", "vm.destroyed"]);
    }
    assert.deepEqual(perVm.events, viaWs.events);
    perVm.close();
    filtered.ws.close();
  });
});

describe("event cursors and slow clients", () => {
  it("answers a cursor older than the retained events with 410 before streaming (SSE and WS)", async () => {
    const api = await startApi({ host: { eventRetention: 3 } });
    try {
      await lifecycle(api.socketPath);
      const info = api.host.hostInfo();
      assert.ok(info.oldest_event > 1);
      const sse = await openSse(api.socketPath, "/v1/events?since=0");
      assert.equal(sse.status, 410);
      checker.check("GET", "/v1/events", { status: 410, json: sse.error });
      assert.equal((sse.error as { error: { code: string } }).error.code, "API_CURSOR_EXPIRED");
      const ws = await openWs(api.socketPath, "/v1/events?since=0");
      assert.equal(ws.failure?.status, 410);
      checker.check("GET", "/v1/events", { status: 410, json: ws.failure?.json });
      const byHeader = await openSse(api.socketPath, "/v1/events", { "last-event-id": "0" });
      assert.equal(byHeader.status, 410);
      // The oldest retained event is still reachable.
      const ok = await openSse(api.socketPath, `/v1/events?since=${info.oldest_event - 1}`);
      assert.equal(ok.status, 200);
      await until(() => ok.events.length === 3, "the retained events");
      assert.deepEqual(seqs(ok.events), range(info.oldest_event, info.next_event - 1));
      ok.close();
    } finally {
      await api.close();
    }
  });

  for (const transport of ["websocket", "sse"] as const) {
    it(`drops a ${transport} client that falls too far behind; it resumes from its cursor`, async () => {
      const log = new EventLog(5_000);
      for (let i = 0; i < 5_000; i++) {
        log.append({ vm: `vm-${i % 7}`, vmid: 0x80, type: "vm.status", rm_status: "RUNNING" });
      }
      const api = await startApi({
        wrap: (h) => withSubscribe(h, (opts, on) => log.subscribe(opts, on)),
        server: { slowConsumerBytes: 64 * 1024 },
      });
      try {
        const got: HostEvent[] = [];
        let drops = 0;
        while (got.length < 5_000) {
          const since = got.at(-1)?.seq ?? 0;
          if (transport === "websocket") {
            const r = await openWs(api.socketPath, `/v1/events?since=${since}`);
            assert.ok(r.ws);
            const c = collectWs(r);
            const code = await Promise.race([
              c.closed,
              until(() => got.length + c.events.length >= 5_000, "all").then(() => 0),
            ]);
            got.push(...c.events);
            if (code === 1013) drops++;
            r.ws.close();
          } else {
            const sse = await openSse(api.socketPath, `/v1/events?since=${since}`);
            const ended = await Promise.race([
              sse.ended.then(() => true),
              until(() => got.length + sse.events.length >= 5_000, "all").then(() => false),
            ]);
            got.push(...sse.events);
            if (ended) drops++;
            sse.close();
          }
        }
        assert.ok(drops >= 1, "the burst exceeded the limit at least once");
        assert.ok(api.logs.some((l) => /dropped: over 65536 bytes behind/.test(l)));
        assert.deepEqual(seqs(got), range(1, 5_000));
      } finally {
        await api.close();
      }
    });
  }

  it("close() ends event streams (WebSocket 1001) and removes the socket", async () => {
    const api = await startApi();
    const sse = await openSse(api.socketPath, "/v1/events");
    const ws = await openWs(api.socketPath, "/v1/events");
    assert.ok(ws.ws);
    const c = collectWs(ws);
    await api.listening.close();
    assert.equal(await c.closed, 1001);
    await sse.ended;
    assert.equal(existsSync(api.socketPath), false);
    await api.close();
  });
});

for (const backend of testBackends()) {
  describe(`the console WebSocket on ${backend.label}`, { skip: backend.skip }, () => {
    let hv: Hypervisor;
    let api: Api;
    before(async () => {
      hv = backend.open();
      api = await startApi({ backend: hv });
    });
    after(async () => {
      await api?.close();
      hv?.close();
    });

    it("types into COM1 and reads the echo (uart-echo), then closes 1000 at destroy", async () => {
      const s = api.socketPath;
      const id = (await request(s, "POST", "/v1/vms", { body: { image: "uart-echo" } })).json.id;
      const con = await openWs(s, `/v1/vms/${id}/console`);
      assert.ok(con.ws);
      const out = output(con);
      assert.equal((await request(s, "POST", `/v1/vms/${id}/start`)).status, 200);
      con.ws.send(Buffer.from("hello, guest"));
      await until(() => out.text().includes("hello, guest"), "the echo");
      con.ws.send(Buffer.from("q"));
      await until(() => api.host.inspect(id).state === "exited", "the guest to exit");
      const info = await request(s, "GET", `/v1/vms/${id}`);
      assert.equal(info.json.exit.exit_code, "hello, guest".length);
      assert.equal(info.json.console_bytes, "hello, guest".length);
      await request(s, "DELETE", `/v1/vms/${id}`);
      assert.equal(await out.closed, 1000);
    });

    it("replays the retained output first unless history=0", async () => {
      const s = api.socketPath;
      const id = (await request(s, "POST", "/v1/vms", { body: { image: "hello" } })).json.id;
      await request(s, "POST", `/v1/vms/${id}/start`);
      await until(() => api.host.inspect(id).state === "exited", "hello to exit");
      const withHistory = await openWs(s, `/v1/vms/${id}/console`);
      const without = await openWs(s, `/v1/vms/${id}/console?history=0`);
      assert.ok(withHistory.ws && without.ws);
      const a = output(withHistory);
      const b = output(without);
      await until(() => /Hello/.test(a.text()), "the history");
      await request(s, "DELETE", `/v1/vms/${id}`);
      assert.equal(await a.closed, 1000);
      assert.equal(await b.closed, 1000);
      assert.equal(b.text(), "");
    });

    it("answers an unknown VM's console with 404 before upgrading", async () => {
      const r = await openWs(api.socketPath, "/v1/vms/vm-999/console");
      assert.equal(r.failure?.status, 404);
      checker.check("GET", "/v1/vms/vm-999/console", {
        status: 404,
        json: r.failure?.json,
      });
    });
  });
}

function output(open: WsOpen): { text(): string; closed: Promise<number> } {
  return {
    text: () => {
      assert.ok(
        open.messages.every((m) => m.binary),
        "console output is binary",
      );
      return Buffer.concat(open.messages.map((m) => m.data)).toString("latin1");
    },
    closed: open.closed,
  };
}

/** The host, with subscribe() served by another event source. */
function withSubscribe(host: LocalHost, subscribe: ApiHost["subscribe"]): ApiHost {
  return new Proxy(host, {
    get(target, p) {
      if (p === "subscribe") return subscribe;
      const v = Reflect.get(target, p);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
