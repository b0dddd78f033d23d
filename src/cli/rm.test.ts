import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { connectRmClient } from "../os/socket-endpoint.js";
import { main } from "./main.js";
import { captureIo } from "./testing/capture.js";

const capture = captureIo;

const V16_ORDER = [
  "VM_ALLOC_VMID",
  "MEM_LEND",
  "VM_CONFIG_IMAGE",
  "VM_SET_DEMAND_PAGING",
  "VM_SET_ADDRESS_LAYOUT",
  "VM_INIT",
  "VM_SET_BOOT_CONTEXT",
  "VM_SET_BOOT_CONTEXT",
  "VM_GET_HYP_RESOURCES",
  "VM_START",
  "VM_STOP",
  "MEM_RECLAIM",
  "VM_RESET",
  "VM_DEALLOC_VMID",
];

for (const transport of [[], ["--socket"]]) {
  test(
    `rm demo ${transport.join(" ")} sends the v16 sequence and every reply is OK`.trim(),
    async () => {
      const io = capture();
      assert.equal(await main(["rm", "demo", "--json", ...transport], io), 0);
      const msgs = io.out
        .join("")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      const requests = msgs.filter((m) => m.type === "REQUEST");
      const replies = msgs.filter((m) => m.type === "REPLY");
      assert.deepEqual(
        requests.map((m) => m.msg_name),
        V16_ORDER,
      );
      assert.deepEqual(
        replies.map((m) => [m.msg_name, m.error]),
        V16_ORDER.map((n) => [n, "OK"]),
        "every request answered once, in order, with OK",
      );
      const notes = msgs.filter((m) => m.type === "NOTIFICATION");
      assert.deepEqual(
        notes.map((m) => m.payload.vm_status_name ?? m.msg_name),
        ["INIT", "READY", "RUNNING", "EXITED", "VM_EXITED", "RESETTING", "RESET"],
      );
      // VM_EXITED arrives before VM_STOP's reply.
      const exitedAt = msgs.findIndex((m) => m.msg_name === "VM_EXITED");
      const stopReplyAt = msgs.findIndex((m) => m.type === "REPLY" && m.msg_name === "VM_STOP");
      assert.ok(exitedAt >= 0 && exitedAt < stopReplyAt);
    },
  );
}

test("rm demo prints a readable trace ending with the VM deallocated", async () => {
  const io = capture();
  assert.equal(await main(["rm", "demo"], io), 0);
  const text = io.out.join("");
  assert.match(text, /host → RM {2}seq=0 +request VM_ALLOC_VMID/);
  assert.match(text, /RM → host {2}seq=\d+ +notify {2}VM_EXITED .*exit_type_name="VM_STOP_FORCED"/);
  assert.match(
    text,
    /# done: VMID 128 exited \(VM_STOP_FORCED\) and was deallocated; the hypervisor holds 0 VMs/,
  );
});

test("rm demo rejects operands and unknown options with exit 2", async () => {
  for (const argv of [
    ["rm", "demo", "extra"],
    ["rm", "demo", "--bogus"],
  ]) {
    const io = capture();
    assert.equal(await main(argv, io), 2);
    assert.match(io.err.join(""), /^tsvisor: CLI_USAGE: /);
  }
});

test("rm serve needs --socket and a valid --vmid", async () => {
  for (const argv of [
    ["rm", "serve"],
    ["rm", "serve", "--socket=/tmp/x", "--vmid=70000"],
  ]) {
    const io = capture();
    assert.equal(await main(argv, io), 2);
  }
});

test("rm serve answers a client over its socket and removes nothing live on SIGTERM", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsv-serve-"));
  const path = join(dir, "rm.sock");
  const bin = fileURLToPath(new URL("../../../bin/tsvisor.js", import.meta.url));
  const child = spawn(process.execPath, [bin, "rm", "serve", `--socket=${path}`], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (d) => {
    log += d;
  });
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  try {
    while (!log.includes("server.listening")) {
      await new Promise((r) => setTimeout(r, 20));
      if (child.exitCode !== null) assert.fail(`rm serve ended early: ${log}`);
    }
    const client = await connectRmClient(path);
    assert.equal(await client.getVmid(), 3);
    assert.equal(await client.allocVmid(), 0x80);
    client.close();
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.match(log, /server.stopped/);
    assert.equal(existsSync(path), false, "the socket file is gone after shutdown");
  } finally {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});
