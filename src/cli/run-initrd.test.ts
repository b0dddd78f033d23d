import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { testBackends } from "../hv/sim/select.js";
import { main } from "./main.js";
import { captureIo } from "./testing/capture.js";

for (const b of testBackends()) {
  test(`run --initrd FILE hands the file to the guest (${b.label})`, { skip: b.skip }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsvisor-initrd-"));
    try {
      const file = join(dir, "initrd.img");
      writeFileSync(file, Buffer.from("initrd contents!!\x2a", "latin1"));
      for (const pvh of [[], ["--pvh"]]) {
        const io = captureIo();
        const argv = ["run", "--backend", b.kind, "initrd-echo", "--initrd", file, ...pvh];
        assert.equal(await main(argv, io), 0x2a, argv.join(" "));
        assert.equal(io.out.join(""), "initrd contents!");
      }
      const io = captureIo();
      assert.equal(await main(["run", "--backend", b.kind, "hello", "--initrd", dir], io), 2);
      assert.match(io.err.join(""), /CLI_USAGE: --initrd: .* is not a file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
