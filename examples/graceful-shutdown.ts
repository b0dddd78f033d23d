// Host-driven graceful shutdown: the guest gets VM_SHUTDOWN through its RM message queue and
// powers itself off; a guest that ignores it is forced after the timeout.
import { Host } from "tsvisor";

const backend = process.env.TSVISOR_BACKEND === "sim" ? "sim" : "kvm";
const host = Host.open({ backend });
const polite = await host.create({ image: "graceful", name: "polite" });
const stubborn = await host.create({ image: "spin", name: "stubborn" });
await Promise.all([polite.start(), stubborn.start()]);
for (const vm of [polite, stubborn]) {
  const info = await vm.stop({ timeout_ms: 500 });
  console.log(`${info.name}: ${info.exit?.exit_type} (${info.exit?.description})`);
}
await host.close();
