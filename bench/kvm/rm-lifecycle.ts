/**
 * The RM-driven row of bench/kvm/lifecycle: whole lifecycles of guests/hello through the RM with
 * the KVM port, as `tsvisor run` drives them (src/vmm/run-vm.ts): build → alloc → lend the RAM
 * parcel → configure → init → start → the guest powers off (VM_EXITED) → reclaim → reset →
 * dealloc → free the RAM. One RM stack and one host client serve every lifecycle. The port tears
 * VMs down in the background; `settle` waits for that, and a timed batch includes it.
 */
import type { KvmHypervisor } from "../../src/hv/kvm/kvm-hypervisor.js";
import { ExitType } from "../../src/protocol/enums.js";
import { createRmStack } from "../../src/vmm/rm-stack.js";
import { runVm } from "../../src/vmm/run-vm.js";

export interface RmLifecycle {
  /** One lifecycle; throws unless hello printed "Hello" and exited PLATFORM_OFF code 0. */
  once(): Promise<void>;
  /** Waits until every VM the port is tearing down is gone. */
  settle(): Promise<void>;
  /** Closes the stack (not `hv`). */
  close(): Promise<void>;
}

export function rmLifecycle(hv: KvmHypervisor, image: Uint8Array): RmLifecycle {
  const stack = createRmStack({ backend: hv });
  const client = stack.connectHost();
  return {
    async once() {
      let console = "";
      const r = await runVm(stack, client, {
        image,
        console: (b) => {
          console += Buffer.from(b).toString("latin1");
        },
      });
      if (
        console !== "Hello\n" ||
        r.exit.exitType !== ExitType.PLATFORM_OFF ||
        r.exit.exitCode !== 0
      ) {
        throw new Error(
          `hello through the RM: ${r.description}, console ${JSON.stringify(console)}`,
        );
      }
    },
    async settle() {
      await stack.port?.settled();
    },
    close: () => stack.close(),
  };
}
