// Drives a running `tsvisor daemon` from a program: create a VM, watch it, read its console.
//   tsvisor daemon --socket /tmp/tsvisor.sock &   then   node dist/examples/daemon-client.js
import { Host } from "tsvisor";

const host = await Host.connect({ socket: process.env.TSVISOR_SOCKET ?? "/tmp/tsvisor.sock" });
const since = (await host.info()).next_event - 1; // the event cursor: resume from here
const vm = await host.create({ image: process.argv[2] ?? "hello", memory: "2M" });
console.log(`created ${vm.id}`);
const watching = (async () => {
  for await (const e of vm.events({ since })) {
    console.log(`event ${e.seq} ${e.type}${e.rm_status ? ` ${e.rm_status}` : ""}`);
    if (e.type === "vm.exited") return;
  }
})();
vm.console().on("data", (bytes: Buffer) => process.stdout.write(bytes));
await vm.start();
const exit = await vm.exited;
await watching;
console.log(`exited: ${exit.exit_type} code ${exit.exit_code} (${exit.initiator})`);
await vm.destroy();
await host.close();
