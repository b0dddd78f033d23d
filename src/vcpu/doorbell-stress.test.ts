/**
 * No lost wake-ups on real KVM: guests/doorbell-stress.S on two vCPUs halts in a loop while
 * two host threads ring 100,000 numbered doorbells, one at a time per vCPU (each waits for
 * the guest's acknowledgement of the previous, so coalescing cannot hide a loss), and a third
 * thread reconfigures routes, reloads and pauses/resumes the vCPUs at random moments — in
 * user-irqchip mode through the residency protocol, and the same guest in kernel-irqchip mode
 * through irqfd and the in-kernel IOAPIC/LAPIC. The 10 s acknowledgement bound is a stall
 * detector, not a speed requirement: a lost wake-up never acknowledges at all.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { KvmHypervisor, kvmAvailable } from "../hv/kvm/kvm-hypervisor.js";
import { guestImage } from "../loader/guest-builder.js";
import { settledCount } from "../testing/settle.js";
import { Residency } from "./residency.js";
import {
  type RingerReport,
  runDoorbellStress,
  type StressResult,
} from "./testing/doorbell-stress.js";
import { VcpuThreadPool } from "./vcpu-thread.js";

const kvm = kvmAvailable();
const skip = kvm.ok ? false : `KVM not available: ${kvm.why}`;
const count = (dir: string) => readdirSync(dir).length;
const RINGS = 100_000;
const STALL_MS = 10_000;

/** One line per ringer problem, with the residency words a stall was seen with. */
function problems(r: StressResult): string[] {
  const out: string[] = [];
  for (const g of r.ringers) {
    if (g.stall) {
      out.push(
        `vCPU ${g.vcpu}: ring ${g.stall.ring} not acknowledged within ${STALL_MS} ms (last ack ${g.stall.acked}; vCPU ${g.stall.state}; residency ${g.stall.residency ?? "n/a"})`,
      );
    }
    if (g.wrong) out.push(`vCPU ${g.vcpu}: ring ${g.wrong.ring} acknowledged as ${g.wrong.got}`);
    if (g.aborted) out.push(`vCPU ${g.vcpu}: aborted after ${g.acked} rings`);
  }
  for (const u of r.unexpected) {
    out.push(`vCPU ${u.vcpu} took unexpected vector ${u.vector} (frame ${u.frame.join(" ")})`);
  }
  return out;
}

function assertAllAcknowledged(r: StressResult): void {
  assert.deepEqual(problems(r), []);
  assert.equal(
    r.ringers.reduce((n: number, g: RingerReport) => n + g.acked, 0),
    RINGS,
    "every ring acknowledged",
  );
  for (const v of r.vcpus) assert.deepEqual(v.reason, { kind: "stopped" }, `vCPU ${v.index}`);
}

describe("doorbell stress on KVM", { skip }, () => {
  let hv: KvmHypervisor;
  let pool: VcpuThreadPool;
  let fds = 0;
  let threads = 0;

  before(() => {
    guestImage("doorbell-stress");
    fds = count("/proc/self/fd");
    threads = count("/proc/self/task");
    hv = KvmHypervisor.open();
    pool = new VcpuThreadPool(2);
  });

  after(async () => {
    await pool.close();
    hv.close();
    assert.equal(count("/proc/self/fd"), fds, "every fd is closed again");
    assert.equal(await settledCount("/proc/self/task", threads), threads, "every thread has ended");
  });

  test("user irqchip: 100,000 rings with reconfigurations and pause/resume, none lost", async () => {
    const r = await runDoorbellStress({
      hv,
      mode: "user",
      rings: RINGS,
      chaos: true,
      stallMs: STALL_MS,
      pool,
    });
    assertAllAcknowledged(r);
    // The interleavings the test is about did happen.
    const chaos = r.chaos;
    assert.ok(chaos, "the chaos thread ran");
    assert.ok(chaos.reconfigurations > 0 && chaos.remoteReloads > 0 && chaos.pauses > 0);
    const applied = r.vcpus.reduce((n, v) => n + (v.stats?.irq?.reloads ?? 0), 0);
    const parked = r.vcpus.reduce((n, v) => n + (v.stats?.irq?.pauses ?? 0), 0);
    assert.ok(applied > 0, "vCPU threads applied route reloads");
    assert.ok(parked > 0, "vCPU threads parked for pauses");
    const how = (k: string) => r.ringers.reduce((n, g) => n + (g.deliveries?.[k] ?? 0), 0);
    assert.ok(how("rang") > 0, "some rings woke a vCPU asleep in WFI");
    assert.ok(how("kicked") > 0, "some rings kicked a resident vCPU");
    for (const v of r.vcpus) {
      assert.equal(v.stats?.irq?.injected, RINGS / 2, `vCPU ${v.index} injected one per ring`);
    }
    // Quiescent: both vCPUs asleep in WFI with nothing pending, doorbell armed.
    assert.equal(r.settled, true, "both vCPUs went back to sleep");
    for (const [i, s] of (r.final ?? []).entries()) {
      assert.equal(s.pending, 0, `vCPU ${i} asleep with an interrupt pending: ${s.text}`);
      const flags = s.state & (Residency.RESIDENT | Residency.IN_WFI | Residency.DB_ARMED);
      assert.equal(flags, Residency.IN_WFI | Residency.DB_ARMED, `vCPU ${i}: ${s.text}`);
    }
  });

  test("kernel irqchip: the same guest takes 100,000 irqfd rings through the IOAPIC", async () => {
    const r = await runDoorbellStress({
      hv,
      mode: "kernel",
      rings: RINGS,
      stallMs: STALL_MS,
      pool,
    });
    assertAllAcknowledged(r);
    for (const v of r.vcpus) {
      assert.equal(
        v.stats?.io,
        RINGS / 2 + 1,
        `vCPU ${v.index}: ready + one acknowledgement per ring`,
      );
      assert.equal(v.stats?.halts, 0, "HLT stays in the kernel");
    }
  });
});
