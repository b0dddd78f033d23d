import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isTsvisorError } from "../core/errors.js";
import { connectSocketEndpoint } from "../os/socket-endpoint.js";
import { listenRmSocket } from "../os/socket-server.js";
import { ExitType, ResourceType, Vmid, VmStatus } from "../protocol/enums.js";
import { encodeVmConfig } from "../protocol/vm-config.js";
import { RecordingHypervisor } from "../rm/recording-hypervisor.js";
import { ResourceManager } from "../rm/resource-manager.js";
import { basicConfig, DTB_BASE, DTB_PARCEL_SIZE, FakeMemory } from "../rm/testing/harness.js";
import { type Notification, RmClient } from "./client.js";
import { MemoryLog } from "./log.js";
import { createMsgqLink } from "./msgq.js";
import { RmServer } from "./server.js";

function realRm() {
  const hv = new RecordingHypervisor();
  const memory = new FakeMemory();
  const core = new ResourceManager({ hypervisor: hv, memory });
  const log = new MemoryLog();
  const server = new RmServer(core, log);
  return { hv, memory, core, log, server };
}

/** The v16 host flow, start to teardown, through the typed client. */
async function lifecycle(client: RmClient, memory: FakeMemory): Promise<string[]> {
  const trace: string[] = [];
  client.on("notification", (n) => trace.push(describe(n)));
  assert.equal(await client.getVmid(), Vmid.HLOS);
  const vmid = await client.allocVmid();
  assert.equal(vmid, Vmid.DYNAMIC_FIRST);

  const region = new Uint8Array(Number(DTB_PARCEL_SIZE));
  region.set(encodeVmConfig(basicConfig()));
  memory.write(Vmid.HLOS, DTB_BASE, region);
  const handle = await client.memLend({
    acl: [{ vmid, rights: 7 }],
    sgl: [{ base: DTB_BASE, size: DTB_PARCEL_SIZE }],
  });
  await client.configImage({
    vmid,
    memHandle: handle,
    imageOffset: 0,
    imageSize: 0,
    dtbOffset: 0,
    dtbSize: DTB_PARCEL_SIZE,
  });
  await client.setAddressLayout({ vmid, rangeId: 0, base: DTB_BASE, size: DTB_PARCEL_SIZE });
  await client.init(vmid);
  await client.setBootContext({ vmid, regSet: 1, regIndex: 0, value: 0x10_0000n });
  const resources = await client.getHypResources(vmid);
  assert.deepEqual(
    resources.filter((r) => r.resourceType === ResourceType.VCPU).map((r) => r.resourceLabel),
    [0, 1],
  );
  await client.start(vmid);
  assert.equal((await client.getState(vmid)).vmStatus, VmStatus.RUNNING);

  const exited = client.waitFor((n) => n.kind === "vmExited" && n.vmid === vmid);
  await client.stop(vmid);
  const e = await exited;
  assert.ok(e.kind === "vmExited" && e.exitType === ExitType.VM_STOP_FORCED);

  const reset = client.waitFor(
    (n) => n.kind === "vmStatus" && n.vmid === vmid && n.vmStatus === VmStatus.RESET,
  );
  await client.reset(vmid);
  await reset;
  await client.deallocVmid(vmid);
  await assert.rejects(
    client.start(vmid),
    (err) => isTsvisorError(err, "RPC_RM_ERROR") && err.details?.rmErrorName === "VMID_INVALID",
  );
  return trace;
}

function describe(n: Notification): string {
  switch (n.kind) {
    case "vmStatus":
      return `VM_STATUS ${n.vmStatus}`;
    case "vmExited":
      return `VM_EXITED ${n.exitType}`;
    default:
      return n.name;
  }
}

test("a VM's whole lifecycle runs against the real RM over the in-process message queue", async () => {
  const { memory, server, hv } = realRm();
  const link = createMsgqLink();
  server.attach(Vmid.HLOS, link.server);
  const client = new RmClient(link.client);
  const trace = await lifecycle(client, memory);
  assert.ok(trace.includes("VM_EXITED 7"));
  assert.equal(trace.at(-1), `VM_STATUS ${VmStatus.RESET}`);
  assert.deepEqual([...hv.vms.keys()], [], "nothing is left in the hypervisor");
  assert.deepEqual(hv.violations, []);
  client.close();
  server.close();
});

test("a VM's whole lifecycle runs against the real RM over a Unix socket", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsv-rpc-"));
  const { memory, server, hv } = realRm();
  const listener = await listenRmSocket(server, join(dir, "rm.sock"));
  const client = new RmClient(await connectSocketEndpoint(join(dir, "rm.sock")));
  try {
    const trace = await lifecycle(client, memory);
    assert.ok(trace.includes("VM_EXITED 7"));
    assert.deepEqual(hv.violations, []);
  } finally {
    client.close();
    await listener.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("two socket clients share HLOS on the real RM: both get its notifications, each its own replies", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsv-rpc-"));
  const { server, memory } = realRm();
  const path = join(dir, "rm.sock");
  const listener = await listenRmSocket(server, path);
  const a = new RmClient(await connectSocketEndpoint(path));
  const b = new RmClient(await connectSocketEndpoint(path));
  try {
    const first = await a.allocVmid();
    // To the RM both connections are VMID 3: b may act on what a allocated.
    assert.equal((await b.getState(first)).vmStatus, VmStatus.LOAD);
    await b.deallocVmid(first);
    await assert.rejects(a.deallocVmid(first), (e) => isTsvisorError(e, "RPC_RM_ERROR"));

    const vmid = await a.allocVmid();
    const region = new Uint8Array(Number(DTB_PARCEL_SIZE));
    region.set(encodeVmConfig(basicConfig()));
    memory.write(Vmid.HLOS, DTB_BASE, region);
    const handle = await a.memLend({
      acl: [{ vmid, rights: 7 }],
      sgl: [{ base: DTB_BASE, size: DTB_PARCEL_SIZE }],
    });
    const isInit = (n: Notification) =>
      n.kind === "vmStatus" && n.vmid === vmid && n.vmStatus === VmStatus.INIT;
    const seenByA = a.waitFor(isInit);
    const seenByB = b.waitFor(isInit);
    await a.configImage({
      vmid,
      memHandle: handle,
      imageOffset: 0,
      imageSize: 0,
      dtbOffset: 0,
      dtbSize: DTB_PARCEL_SIZE,
    });
    await Promise.all([seenByA, seenByB]);
    assert.equal(a.droppedReplies + b.droppedReplies, 0);
  } finally {
    a.close();
    b.close();
    await listener.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a malformed payload gets the RM's MSG_INVALID through the server, not a dropped session", async () => {
  const { server } = realRm();
  const link = createMsgqLink();
  server.attach(Vmid.HLOS, link.server);
  const client = new RmClient(link.client);
  await assert.rejects(
    client.call(0x56000001, new Uint8Array(3)), // VM_ALLOC_VMID needs exactly 4 bytes
    (e) => isTsvisorError(e, "RPC_RM_ERROR") && e.details?.rmErrorName === "MSG_INVALID",
  );
  assert.equal(await client.getVmid(), Vmid.HLOS);
  client.close();
  server.close();
});
