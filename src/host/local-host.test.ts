import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { testBackends } from "../hv/sim/select.js";
import type { Hypervisor } from "../hv/types.js";
import { LocalHost } from "./local-host.js";
import type { HostEvent } from "./types.js";

/**
 * LocalHost end to end on every backend (KVM when present, the simulator always): real guests,
 * the real RM driven over its protocol by the host's HLOS client.
 */

const MiB = 1024 * 1024;

function collect(host: LocalHost): { events: HostEvent[]; stop: () => void } {
  const events: HostEvent[] = [];
  const stop = host.subscribe({}, (e) => events.push(e));
  return { events, stop };
}

const kinds = (events: HostEvent[], vm: string) =>
  events
    .filter((e) => e.vm === vm)
    .map((e) => (e.type === "vm.status" ? `status:${e.rm_status}` : e.type));

for (const backend of testBackends()) {
  describe(`LocalHost on ${backend.label}`, { skip: backend.skip }, () => {
    let hv: Hypervisor;
    let host: LocalHost;
    const logs: string[] = [];
    before(() => {
      hv = backend.open();
    });
    after(async () => {
      await host?.close();
      hv.close();
    });
    const fresh = async (opts: { maxVms?: number; memoryBudget?: number } = {}) => {
      await host?.close();
      host = LocalHost.open({ backend: hv, onLog: (m) => logs.push(m), ...opts });
      return host;
    };

    it("runs a guest from create to exit with the RM's notifications as events, in order", async () => {
      const h = await fresh();
      const { events, stop } = collect(h);
      const vm = await h.create({ image: "hello" });
      const created = await vm.info();
      assert.equal(created.state, "created");
      assert.equal(created.rm_status, "READY");
      assert.ok(created.vmid !== null && created.vmid >= 0x80);
      assert.ok(created.resources.length > 0, "VM_GET_HYP_RESOURCES answered at create");
      await vm.start();
      const exit = await vm.exited;
      assert.equal(exit.exit_type, "PLATFORM_OFF");
      assert.equal(exit.exit_code, 0);
      assert.equal(exit.initiator, "guest");
      const info = await vm.info();
      assert.equal(info.state, "exited");
      assert.equal(info.rm_status, "EXITED");
      assert.deepEqual(info.exit, exit);
      assert.equal(info.runs, 1);
      stop();
      assert.deepEqual(kinds(events, vm.id), [
        "vm.created",
        "status:RUNNING",
        "vm.started",
        "status:EXITED",
        "vm.exited",
      ]);
      const out = await new Promise<string>((resolve) => {
        const c = vm.console();
        c.once("data", (d: Buffer) => {
          c.destroy();
          resolve(d.toString());
        });
      });
      assert.match(out, /Hello/);
      await vm.destroy();
      assert.deepEqual(await h.list(), []);
    });

    it("a guest's own VM_SET_STATUS shows as its OS/app status and as a vm.status event", async () => {
      const h = await fresh();
      const { events, stop } = collect(h);
      const vm = await h.create({ image: "os-status", registers: { rdi: 4, rsi: "0x1234" } });
      await vm.start();
      const exit = await vm.exited;
      stop();
      assert.equal(exit.exit_type, "PLATFORM_OFF");
      assert.equal(exit.exit_code, 0, "the RM accepted the status");
      const info = await vm.info();
      assert.deepEqual([info.os_status, info.app_status], [4, 0x1234]);
      const reported = events.find(
        (e) => e.vm === vm.id && e.type === "vm.status" && e.os_status === 4,
      );
      assert.equal(reported?.rm_status, "RUNNING");
      assert.equal(reported?.app_status, 0x1234);
      await vm.destroy();
    });

    it("resets an exited VM to created and runs it again", async () => {
      const h = await fresh();
      const vm = await h.create({ image: "exit-code", registers: { rdi: 7 } });
      await vm.start();
      assert.equal((await vm.exited).exit_code, 7);
      const first = vm.exited;
      const reset = await vm.reset();
      assert.equal(reset.state, "created");
      assert.equal(reset.rm_status, "READY");
      assert.notEqual(vm.exited, first, "a new run has a new exit promise");
      await vm.start();
      assert.equal((await vm.exited).exit_code, 7);
      assert.equal((await vm.info()).runs, 2);
      await vm.destroy();
    });

    it("a graceful stop of a guest that ignores VM_SHUTDOWN is forced after the timeout", async () => {
      const h = await fresh();
      const { events, stop } = collect(h);
      const vm = await h.create({ image: "spin", name: "spinner" });
      await vm.start();
      const info = await vm.stop({ timeout_ms: 50 });
      stop();
      assert.equal(info.state, "exited");
      assert.equal(info.exit?.exit_type, "VM_STOP_FORCED");
      assert.equal(info.exit?.initiator, "host");
      assert.ok(kinds(events, vm.id).includes("vm.stopping"));
      await vm.destroy();
    });

    it("refuses actions the VM's state does not admit, and keeps serving", async () => {
      const h = await fresh();
      const vm = await h.create({ image: "spin" });
      await assert.rejects(vm.stop(), (e) => isTsvisorError(e, "API_STATE"));
      await vm.start();
      await assert.rejects(vm.start(), (e) => isTsvisorError(e, "API_STATE"));
      await vm.stop({ force: true });
      await assert.rejects(vm.start(), (e) => isTsvisorError(e, "API_STATE"));
      await assert.rejects(vm.stop(), (e) => isTsvisorError(e, "API_STATE"));
      await assert.rejects(h.vm("nope"), (e) => isTsvisorError(e, "API_NOT_FOUND"));
      await vm.destroy();
      await assert.rejects(vm.start(), (e) => isTsvisorError(e, "API_NOT_FOUND"));
    });

    it("checks the VM count and memory limits at create and frees them at destroy", async () => {
      const h = await fresh({ maxVms: 2, memoryBudget: 5 * MiB });
      const a = await h.create({ image: "hello", memory: "2M" });
      await assert.rejects(h.create({ image: "hello", memory: "4M" }), (e) =>
        isTsvisorError(e, "API_LIMIT_MEMORY"),
      );
      const b = await h.create({ image: "hello", memory: "2M", name: "b" });
      await assert.rejects(h.create({ image: "hello", memory: "64K" }), (e) =>
        isTsvisorError(e, "API_LIMIT_VMS"),
      );
      await assert.rejects(h.create({ image: "hello", name: "b" }), (e) =>
        isTsvisorError(e, "API_NAME_TAKEN"),
      );
      await b.destroy();
      await assert.rejects(h.create({ image: "hello", name: a.id }), (e) =>
        isTsvisorError(e, "API_NAME_TAKEN"),
      );
      assert.deepEqual((await h.info()).usage, { vms: 1, memory: 2 * MiB });
      await a.destroy();
      assert.deepEqual((await h.info()).usage, { vms: 0, memory: 0 });
    });

    it("rejects bad specs with coded errors before anything is allocated", async () => {
      const h = await fresh();
      const bad: [unknown, string][] = [
        [{ image: "hello", vcpus: 3 }, "API_VALIDATION"],
        [{ image: "hello", memory: "3K" }, "API_VALIDATION"],
        [{ image: "hello", colour: "red" }, "API_VALIDATION"],
        [{}, "API_VALIDATION"],
        [{ image: "hello", kernel: "hello" }, "API_VALIDATION"],
        [{ image: "no-such-guest-or-file" }, "API_IMAGE"],
        [{ image: "hello", registers: { rip: 1 } }, "API_VALIDATION"],
      ];
      for (const [spec, code] of bad) {
        await assert.rejects(h.createVm(spec as never), (e) => isTsvisorError(e, code as never));
      }
      assert.deepEqual((await h.info()).usage, { vms: 0, memory: 0 });
    });

    it("a create abandoned by its caller leaves no VM, no VMID and no memory behind", async () => {
      const h = await fresh();
      const { events, stop } = collect(h);
      const ac = new AbortController();
      const p = h.createVm({ image: "hello" }, ac.signal);
      assert.equal(h.listVms()[0]?.state, "creating");
      ac.abort();
      await assert.rejects(p, (e) => isTsvisorError(e, "RPC_ABORTED"));
      stop();
      assert.deepEqual(h.listVms(), []);
      assert.deepEqual(events, [], "a VM that never was has no events");
      assert.equal(h.stack.memory.regionCount, 0, "the guest RAM was freed");
      // The RM itself has no VM left: a wire-level probe of the first dynamic VMID.
      const probe = h.stack.connectHost();
      await assert.rejects(probe.getState(0x80), (e) => isTsvisorError(e, "RPC_RM_ERROR"));
      probe.close();
    });

    it("a VM destroyed without running rejects its exited promise with API_VM_GONE", async () => {
      const h = await fresh();
      const vm = await h.create({ image: "hello" });
      const exited = vm.exited;
      await vm.destroy();
      await assert.rejects(exited, (e) => isTsvisorError(e, "API_VM_GONE"));
    });

    it("shutdown stops running VMs, destroys every VM and refuses new work", async () => {
      const h = await fresh();
      const { events, stop } = collect(h);
      const a = await h.create({ image: "spin" });
      const b = await h.create({ image: "hello" });
      await a.start();
      await h.shutdown({ timeoutMs: 20 });
      stop();
      assert.deepEqual(h.listVms(), []);
      const destroyed = events.filter((e) => e.type === "vm.destroyed");
      assert.deepEqual(destroyed.map((e) => [e.vm, e.reason]).sort(), [
        [a.id, "host shutdown"],
        [b.id, "host shutdown"],
      ]);
      assert.equal(
        events.find((e) => e.type === "vm.exited" && e.vm === a.id)?.exit?.initiator,
        "host",
      );
      await assert.rejects(h.createVm({ image: "hello" }), (e) =>
        isTsvisorError(e, "API_SHUTTING_DOWN"),
      );
    });

    it("console input reaches the guest's COM1", async () => {
      const h = await fresh();
      const vm = await h.create({ image: "uart-echo" });
      const c = vm.console({ history: false });
      let echoed = "";
      c.on("data", (d: Buffer) => {
        echoed += d.toString("latin1");
      });
      await vm.start();
      c.write("abcq");
      const exit = await vm.exited;
      assert.equal(exit.exit_code, 3, "three bytes before the q");
      assert.match(echoed, /abc/);
      c.destroy();
      await vm.destroy();
    });

    it("events() is an async iterable that resumes from a cursor and stops when the loop ends", async () => {
      const h = await fresh();
      const start = (await h.info()).next_event - 1;
      const vm = await h.create({ image: "hello" });
      await vm.start();
      await vm.exited;
      const seen: string[] = [];
      for await (const e of h.events({ since: start })) {
        seen.push(e.type);
        if (e.type === "vm.exited") break;
      }
      assert.deepEqual(seen, ["vm.created", "vm.status", "vm.started", "vm.status", "vm.exited"]);
      await vm.destroy();
    });
  });
}
