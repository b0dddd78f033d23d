import { hvContract } from "../hv.contract.js";
import { simGuest } from "./guests/index.js";
import { SimHypervisor } from "./sim-hypervisor.js";

// The same suite KVM passes (hv/kvm/kvm.test.ts), with the simulated versions of its guests.
hvContract({
  name: "sim",
  unavailable: undefined,
  open: () => SimHypervisor.open(),
  guest: (name) => simGuest(name),
});
