import { guestImage } from "../../loader/guest-builder.js";
import { hvContract } from "../hv.contract.js";
import { KvmHypervisor, kvmAvailable } from "./kvm-hypervisor.js";

const available = kvmAvailable();

hvContract({
  name: "KVM",
  unavailable: available.ok ? undefined : available.why,
  open: () => KvmHypervisor.open(),
  guest: guestImage,
});
