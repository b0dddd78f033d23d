/**
 * Choosing the simulated backend from front ends and tests: how `tsvisor run --backend sim`
 * resolves its IMAGE, the notice it prints, and the backends the VMM's end-to-end tests run
 * on (KVM when /dev/kvm can be opened, the simulator always).
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { isTsvisorError, TsvisorError } from "../../core/errors.js";
import { guestImage } from "../../loader/guest-builder.js";
import { KvmHypervisor, kvmAvailable } from "../kvm/kvm-hypervisor.js";
import type { Hypervisor } from "../types.js";
import { simGuest, simGuestNames, simImageFromJson } from "./guests/index.js";
import { SimHypervisor } from "./sim-hypervisor.js";

/** What `tsvisor run --backend sim` says once on stderr. */
export const SIM_NOTICE =
  "tsvisor: backend sim: the guest is SIMULATED (a scripted program, not x86 code; see docs/sim.md)\n";

/**
 * IMAGE for the sim backend: a `.json` file (a script, or a header naming a guest), any other
 * file as is (a sim image; x86 code ends as an emulation failure), or a simulated guest's name.
 */
export function resolveSimImage(operand: string): { image: Uint8Array; name: string } {
  try {
    if (existsSync(operand) && statSync(operand).isFile()) {
      const base = (operand.split("/").pop() ?? "image").replace(/\.[^.]*$/, "");
      const bytes = readFileSync(operand);
      const image = operand.endsWith(".json")
        ? simImageFromJson(bytes.toString("utf8"))
        : new Uint8Array(bytes);
      return { image, name: base };
    }
    return { image: simGuest(operand), name: operand };
  } catch (e) {
    if (isTsvisorError(e, "SIM_PROGRAM")) {
      throw new TsvisorError(
        "CLI_USAGE",
        existsSync(operand)
          ? `${operand}: ${e.message}`
          : `'${operand}' is neither a file nor a simulated guest (${simGuestNames().join(", ")})`,
      );
    }
    throw e;
  }
}

/** A backend the VMM's end-to-end tests run on. */
export interface TestBackend {
  readonly kind: "kvm" | "sim";
  /** For test names: "KVM", "the simulated backend". */
  readonly label: string;
  /** A loud skip reason when the backend cannot run here; false when it can. */
  readonly skip: string | false;
  open(): Hypervisor;
  /** A test guest's image for this backend (guests/NAME.S on KVM, the sim program on sim). */
  guest(name: string): Uint8Array;
}

export const SIM_TEST_BACKEND: TestBackend = {
  kind: "sim",
  label: "the simulated backend",
  skip: false,
  open: () => SimHypervisor.open(),
  guest: (name) => simGuest(name),
};

/**
 * KVM (skipped loudly where its device cannot be opened, saying the simulator runs the same
 * cases instead) and the simulator (always): end-to-end suites run once per entry. The KVM
 * device is `TSVISOR_KVM_DEVICE` when set (e.g. /nonexistent, to see a machine without KVM).
 */
export function testBackends(): TestBackend[] {
  const path = process.env.TSVISOR_KVM_DEVICE || "/dev/kvm";
  const kvm = kvmAvailable(path);
  return [
    {
      kind: "kvm",
      label: "KVM",
      skip: kvm.ok
        ? false
        : `KVM not available: ${kvm.why} (the same cases run on the simulated backend)`,
      open: () => KvmHypervisor.open({ path }),
      guest: guestImage,
    },
    SIM_TEST_BACKEND,
  ];
}
