import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { KVM_IOCTL, KVM_REGS_OFF, KVM_RUN_OFF, KVM_SIZEOF, KVM_SREGS_OFF } from "./constants.js";
import { constantsDrift, loadNative, nativeAddonPath } from "./native.js";

test("constants.ts agrees with every value the compiler evaluated from <linux/kvm.h>", () => {
  assert.deepEqual(constantsDrift(loadNative().constants), []);
});

test("constants.ts is exactly what scripts/gen-kvm-constants.mjs generates", () => {
  const root = join(nativeAddonPath(), "..", "..", "..");
  const out = execFileSync(
    process.execPath,
    [join(root, "scripts", "gen-kvm-constants.mjs"), "--check"],
    {
      encoding: "utf8",
    },
  );
  assert.match(out, /matches/);
});

test("constantsDrift() names values that differ and names missing on either side", () => {
  const compiled = structuredClone(loadNative().constants) as Record<
    string,
    Record<string, number>
  >;
  compiled.KVM_IOCTL!.RUN = 1;
  delete compiled.KVM_EXIT!.HLT;
  compiled.EXTRA = { X: 1 };
  assert.deepEqual(constantsDrift(compiled), ["EXTRA.X", "KVM_EXIT.HLT", "KVM_IOCTL.RUN"]);
});

test("the ABI facts the design notes rely on hold on this machine", () => {
  // Independent of the generator: the numbers kvm-from-node.md records for x86-64.
  assert.equal(KVM_IOCTL.RUN, 0xae80);
  assert.equal(KVM_IOCTL.SET_USER_MEMORY_REGION, 0x4020ae46);
  assert.equal(KVM_IOCTL.GET_SREGS, 0x8138ae83);
  assert.equal(KVM_RUN_OFF.immediate_exit, 1);
  assert.equal(KVM_RUN_OFF.exit_reason, 8);
  assert.equal(KVM_RUN_OFF.io_data_offset, 40);
  assert.equal(KVM_RUN_OFF.mmio_is_write, 52);
  assert.equal(KVM_REGS_OFF.rip, 128);
  assert.equal(KVM_SREGS_OFF.efer, 264);
  assert.equal(KVM_SIZEOF.kvm_regs, 144);
  assert.equal(KVM_SIZEOF.kvm_sregs, 312);
  assert.equal(KVM_SIZEOF.kvm_run, 2352);
});
