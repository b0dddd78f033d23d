// The same API without a daemon: an RM and VMM inside this process (KVM, or the simulator with
// TSVISOR_BACKEND=sim). Several VMs at once; each one's exit is a promise.
import { Host } from "tsvisor";

const backend = process.env.TSVISOR_BACKEND === "sim" ? "sim" : "kvm";
const host = Host.open({ backend, maxVms: 8, memoryBudget: 64 * 1024 * 1024 });
const codes = [3, 1, 4, 1, 5];
const vms = await Promise.all(
  codes.map((code) => host.create({ image: "exit-code", memory: "2M", registers: { rdi: code } })),
);
await Promise.all(vms.map((vm) => vm.start()));
const exits = await Promise.all(vms.map((vm) => vm.exited));
for (const [i, exit] of exits.entries()) {
  console.log(`${vms[i]!.id}: ${exit.exit_type} code ${exit.exit_code}`);
}
console.log(`usage: ${JSON.stringify((await host.info()).usage)}`);
await host.close();
