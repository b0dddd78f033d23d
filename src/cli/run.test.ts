import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { kvmAvailable } from "../hv/kvm/kvm-hypervisor.js";
import { guestPath } from "../loader/guest-builder.js";
import { main } from "./main.js";
import { parseSize } from "./run.js";
import { captureIo } from "./testing/capture.js";

const kvm = kvmAvailable();
const skip = kvm.ok ? false : `KVM not available: ${kvm.why}`;

const capture = captureIo;

test("run: bad command lines exit 2 with one line on stderr", async () => {
  for (const argv of [
    ["run"],
    ["run", "hello", "spin"],
    ["run", "hello", "--mem", "3"],
    ["run", "hello", "--mem=1T"],
    ["run", "hello", "--vcpus", "3"],
    ["run", "hello", "--vcpus=one"],
    ["run", "hello", "--irqchip", "pic"],
    ["run", "hello", "--reg", "rip=1"],
    ["run", "hello", "--bogus"],
    ["run", "no-such-guest"],
    ["run", "/nonexistent/image.elf"],
  ]) {
    const io = capture();
    assert.equal(await main(argv, io), 2, argv.join(" "));
    assert.deepEqual(io.out, []);
    assert.equal(io.err.length, 1, argv.join(" "));
    assert.match(io.err[0]!, /^tsvisor: CLI_USAGE: [^\n]+\n$/);
  }
});

test("run: without a KVM device it fails with HV_UNAVAILABLE and exit status 1", async () => {
  const io = capture();
  assert.equal(await main(["run", "hello", "--kvm-device", "/nonexistent/kvm"], io), 1);
  assert.deepEqual(io.out, []);
  assert.match(
    io.err.join(""),
    /^tsvisor: HV_UNAVAILABLE: cannot open \/nonexistent\/kvm[^\n]*\n$/,
  );
});

test("run --help shows usage and examples", async () => {
  const io = capture();
  assert.equal(await main(["run", "--help"], io), 0);
  assert.match(io.out.join(""), /^Usage: tsvisor run IMAGE/);
  assert.match(io.out.join(""), /Examples:\n {2}tsvisor run hello/);
});

test("parseSize() reads bytes and K/M/G suffixes", () => {
  assert.equal(parseSize("2M"), 2 * 1024 * 1024);
  assert.equal(parseSize("512k"), 512 * 1024);
  assert.equal(parseSize("4MiB"), 4 * 1024 * 1024);
  assert.equal(parseSize("0x100000"), 0x100000);
  assert.equal(parseSize("65536"), 65536);
});

describe("tsvisor run on KVM", { skip }, () => {
  test("run hello prints Hello, reports PLATFORM_OFF on stderr and exits 0", async () => {
    const io = capture();
    assert.equal(await main(["run", "hello"], io), 0);
    assert.equal(io.out.join(""), "Hello\n");
    assert.deepEqual(io.err, ["tsvisor: VM 128 exited: PLATFORM_OFF code 0\n"]);
  });

  test("run takes an image file too", async () => {
    const io = capture();
    assert.equal(await main(["run", guestPath("hello16"), "--mem=128K"], io), 0);
    assert.equal(io.out.join(""), "Hello\n");
  });

  test("run exits with the guest's debug-exit code", async () => {
    for (const code of [3, 77]) {
      const io = capture();
      assert.equal(await main(["run", "exit-code", "--reg", `rdi=${code}`], io), code);
      assert.match(io.err.join(""), new RegExp(`PLATFORM_OFF code ${code}\\n$`));
    }
  });

  test("run --irqchip user (and its alias none) runs without KVM's irqchip", async () => {
    for (const mode of ["user", "none"]) {
      const io = capture();
      assert.equal(await main(["run", "two-vcpu", "--vcpus", "2", "--irqchip", mode], io), 0);
      assert.deepEqual([...io.out.join("")].sort(), ["A", "B"]);
    }
  });

  test("run exits 133 for a triple fault and says so", async () => {
    const io = capture();
    assert.equal(await main(["run", "triple-fault"], io), 133);
    assert.match(io.err.join(""), /SOFTWARE_ERROR code 16 \(TRIPLE_FAULT\)/);
  });

  test("run --json prints lifecycle events, console and the result as JSON lines", async () => {
    const io = capture();
    assert.equal(await main(["run", "hello", "--json"], io), 0);
    const lines = io.out
      .join("")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const statuses = lines.filter((l) => l.event === "VM_STATUS").map((l) => l.vm_status);
    assert.deepEqual(statuses, ["INIT", "READY", "RUNNING", "EXITED", "RESETTING", "RESET"]);
    assert.deepEqual(
      lines.find((l) => l.event === "VM_EXITED"),
      { event: "VM_EXITED", vmid: 128, exit_type: "PLATFORM_OFF", exit_code: 0, exit_flags: 0 },
    );
    const console = lines.filter((l) => l.event === "console").map((l) => l.data);
    assert.equal(console.join(""), "Hello\n");
    const result = lines.at(-1)!;
    assert.equal(result.event, "result");
    assert.equal(result.status, 0);
    assert.deepEqual(result.stop, { kind: "power-off", code: 0 });
  });

  test("run --trace shows every RM message of the host's link on stderr", async () => {
    const io = capture();
    assert.equal(await main(["run", "hello", "--trace"], io), 0);
    const err = io.err.join("");
    assert.match(err, /^host → RM {2}seq=0 {5}request VM_ALLOC_VMID/);
    for (const name of [
      "MEM_LEND",
      "VM_INIT",
      "VM_SET_BOOT_CONTEXT",
      "VM_START",
      "VM_EXITED",
      "VM_DEALLOC_VMID",
    ]) {
      assert.ok(err.includes(name), name);
    }
  });
});
