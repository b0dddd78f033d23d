/**
 * bench/kvm/hello-once — the stand-in for `tsvisor run IMAGE` in the whole-process benchmark
 * while that command does not exist: opens KVM, runs IMAGE once through the hv-level harness
 * (one VM, one vCPU thread, COM1 and debug-exit, no RM), copies the console to stdout and exits
 * with the debug-exit code (1 for any other end). It does less than `tsvisor run` will (no RM,
 * no memory parcels), so it is a lower bound for that command's wall time.
 * Usage: node dist/bench/kvm/hello-once.js IMAGE
 */
import { readFileSync } from "node:fs";
import { KvmHypervisor } from "../../src/hv/kvm/kvm-hypervisor.js";
import { runGuest } from "../../src/vcpu/harness.js";

const path = process.argv[2];
if (path === undefined) {
  process.stderr.write("usage: node dist/bench/kvm/hello-once.js IMAGE\n");
  process.exit(2);
}
const hv = KvmHypervisor.open();
try {
  const run = await runGuest(hv, new Uint8Array(readFileSync(path)));
  process.stdout.write(run.console);
  const reason = run.result.reason;
  process.exitCode = reason.kind === "power-off" ? reason.code : 1;
  if (reason.kind !== "power-off")
    process.stderr.write(`guest stopped: ${JSON.stringify(reason)}\n`);
} finally {
  hv.close();
}
