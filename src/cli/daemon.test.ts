import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { main } from "./main.js";
import { captureIo } from "./testing/capture.js";

/** `tsvisor daemon`'s command line: what it refuses before anything is opened. */

describe("tsvisor daemon's command line", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvisor-daemon-cli-"));
  const socket = join(dir, "api.sock");
  const token = join(dir, "token");
  writeFileSync(token, "0123456789abcdef0123\n");
  after(() => rmSync(dir, { recursive: true, force: true }));

  const usageCases: [string, string[], RegExp][] = [
    ["no socket", [], /needs --socket PATH/],
    [
      "an unknown backend",
      ["--socket", socket, "--backend", "xen"],
      /--backend must be kvm or sim/,
    ],
    [
      "too many VMs",
      ["--socket", socket, "--max-vms", "64"],
      /--max-vms must be an integer from 1 to 63/,
    ],
    [
      "a bad budget",
      ["--socket", socket, "--memory-budget", "lots"],
      /--memory-budget: 'lots' is not a size/,
    ],
    [
      "TCP without a token",
      ["--socket", socket, "--listen", "127.0.0.1:7000"],
      /--listen needs --token-file/,
    ],
    ["a token without TCP", ["--socket", socket, "--token-file", token], /only used with --listen/],
    [
      "a bad address",
      ["--socket", socket, "--listen", "7000", "--token-file", token],
      /--listen must be HOST:PORT/,
    ],
    ["an operand", ["--socket", socket, "extra"], /takes no operands/],
  ];
  for (const [what, args, message] of usageCases) {
    it(`refuses ${what} as a usage error (exit 2) and opens nothing`, async () => {
      const io = captureIo();
      const saved = process.env.TSVISOR_SOCKET;
      delete process.env.TSVISOR_SOCKET;
      try {
        assert.equal(await main(["daemon", ...args], io), 2);
      } finally {
        if (saved !== undefined) process.env.TSVISOR_SOCKET = saved;
      }
      assert.match(io.err.join(""), message);
      assert.equal(existsSync(socket), false);
    });
  }

  it("without the KVM device it fails with HV_UNAVAILABLE, points at --backend sim and leaves no socket", async () => {
    const io = captureIo();
    assert.equal(
      await main(["daemon", "--socket", socket, "--kvm-device", join(dir, "no-kvm")], io),
      1,
    );
    assert.match(io.err.join(""), /HV_UNAVAILABLE: .*--backend sim/);
    assert.equal(existsSync(socket), false);
    assert.equal(existsSync(`${socket}.rm`), false);
  });
});
