import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { spawnDaemon } from "../src/daemon/testing/spawn.js";
import { testBackends } from "../src/hv/sim/select.js";

/** Every example runs as its own process, as a user would run it, and says what it should. */

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const example = (name: string) => join(here, `${name}.js`);

for (const backend of testBackends()) {
  describe(`the examples on ${backend.label}`, { skip: backend.skip }, () => {
    const env = { ...process.env, TSVISOR_BACKEND: backend.kind };

    it("in-process.ts runs five VMs at once and prints each exit code", async () => {
      const { stdout } = await run(process.execPath, [example("in-process")], { env });
      for (const [i, code] of [3, 1, 4, 1, 5].entries()) {
        assert.match(stdout, new RegExp(`vm-${i + 1}: PLATFORM_OFF code ${code}\\n`));
      }
      assert.match(stdout, /usage: \{"vms":5,"memory":10485760\}/);
    });

    it("graceful-shutdown.ts: the polite guest powers off, the stubborn one is forced", async () => {
      const { stdout } = await run(process.execPath, [example("graceful-shutdown")], { env });
      assert.match(stdout, /^polite: PLATFORM_OFF/m);
      assert.match(stdout, /^stubborn: VM_STOP_FORCED/m);
    });

    it("daemon-client.ts drives a daemon: events, console and the exit", async () => {
      const d = await spawnDaemon(["--backend", backend.kind, "--quiet"]);
      try {
        const { stdout } = await run(process.execPath, [example("daemon-client")], {
          env: { ...env, TSVISOR_SOCKET: d.socket },
        });
        assert.match(stdout, /^created vm-1$/m);
        assert.match(stdout, /Hello/);
        assert.match(stdout, /^event \d+ vm\.started$/m);
        assert.match(stdout, /^exited: PLATFORM_OFF code 0 \(guest\)$/m);
      } finally {
        assert.equal(await d.stop(), 0);
      }
    });
  });
}
