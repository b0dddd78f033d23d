/**
 * The production design: src/vcpu/residency.ts itself, unchanged. The scheduler's preempt
 * notifiers are its put() and load(), as in Linux after b321c31c9b7b.
 */
import { residencyProtocol as R } from "../../vcpu/residency.js";
import type { DoorbellDesign } from "../doorbell.js";

export const fixedDesign: DoorbellDesign = {
  name: "fixed",
  summary: "the production module (src/vcpu/residency.ts): IN_WFI derives the doorbell",
  verdict: "clean",
  load: () => R.load(),
  wfi: () => R.wfi(),
  takePending: () => R.takePending(),
  waitWhilePaused: () => R.waitWhilePaused(),
  schedOut: () => R.put(),
  schedIn: () => R.load(),
  inject: (bits) => R.inject(bits),
  reload: () => R.reload(),
  pause: () => R.pause(),
  resume: () => R.resume(),
};
