import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { main } from "../../cli/main.js";
import { captureIo } from "../../cli/testing/capture.js";
import { SIM_NOTICE } from "./select.js";

const capture = captureIo;

test("run --backend sim hello: the whole RM lifecycle without KVM, and it says SIMULATED once", async () => {
  const io = capture();
  // The KVM device is forced off: with kvm the same command fails, with sim it never opens it.
  const status = await main(
    ["run", "--backend", "sim", "hello", "--kvm-device", "/nonexistent/kvm"],
    io,
  );
  assert.equal(status, 0);
  assert.equal(io.out.join(""), "Hello\n");
  assert.deepEqual(io.err, [SIM_NOTICE, "tsvisor: VM 128 exited: PLATFORM_OFF code 0\n"]);
  assert.match(SIM_NOTICE, /SIMULATED/);

  const kvm = capture();
  assert.equal(await main(["run", "hello", "--kvm-device", "/nonexistent/kvm"], kvm), 1);
  assert.match(kvm.err.join(""), /HV_UNAVAILABLE/);
});

test("run --backend sim: exit codes, other exit types and --json as on KVM", async () => {
  const cases: [string[], number, RegExp][] = [
    [["exit-code", "--reg", "rdi=42"], 42, /PLATFORM_OFF code 42/],
    [["triple-fault"], 133, /SOFTWARE_ERROR code 16 \(TRIPLE_FAULT\)/],
    [["emulation-failure"], 133, /EMULATION_FAILURE\): suberror 1, instruction bytes cc eb fe/],
    [["i8042-reset"], 130, /PLATFORM_RESET/],
    [["msgq-client", "--reg", "rdi=3"], 3, /VM_EXIT code 3/],
    [["two-vcpu", "--vcpus", "2"], 0, /PLATFORM_OFF code 0/],
  ];
  for (const [args, want, line] of cases) {
    const io = capture();
    assert.equal(await main(["run", "--backend=sim", ...args], io), want, args.join(" "));
    assert.match(io.err.at(-1) ?? "", line);
  }
  const io = capture();
  assert.equal(await main(["run", "--backend", "sim", "hello", "--json"], io), 0);
  const events = io.out.map((l) => JSON.parse(l) as { event: string; data?: string });
  assert.equal(events.at(-1)?.event, "result");
  assert.equal(
    events
      .filter((e) => e.event === "console")
      .map((e) => e.data)
      .join(""),
    "Hello\n",
  );
});

test("run --backend sim takes a JSON script file; bad backends, guests and scripts are usage errors", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvisor-sim-"));
  try {
    const script = join(dir, "mine.json");
    writeFileSync(
      script,
      JSON.stringify([
        { op: "print", text: "hi" },
        { op: "exit", code: "rdi" },
      ]),
    );
    const io = capture();
    assert.equal(await main(["run", "--backend", "sim", script, "--reg", "rdi=9"], io), 9);
    assert.equal(io.out.join(""), "hi");
    const broken = join(dir, "broken.json");
    writeFileSync(broken, '[{"op":"jump"}]');
    for (const argv of [
      ["run", "--backend", "qemu", "hello"],
      ["run", "--backend", "sim", "no-such-guest"],
      ["run", "--backend", "sim", broken],
    ]) {
      const bad = capture();
      assert.equal(await main(argv, bad), 2, argv.join(" "));
      assert.deepEqual(bad.out, []);
      assert.match(bad.err.join(""), /^tsvisor: CLI_USAGE: [^\n]+\n$/);
    }
  } finally {
    rmSync(dir, { recursive: true });
  }
});
