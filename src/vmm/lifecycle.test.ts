import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { test } from "node:test";
import { type TestBackend, testBackends } from "../hv/sim/select.js";
import { ExitType } from "../protocol/enums.js";
import { settledCount } from "../testing/settle.js";
import { createRmStack } from "./rm-stack.js";
import { runVm } from "./run-vm.js";

const count = (dir: string) => readdirSync(dir).length;
const MiB = 1024 * 1024;
const CYCLES = 200;
/** A leak bound, not a timing threshold: 200 leaked 2 MiB guests alone would exceed it. */
const RSS_SLACK = 64 * MiB;

// Once on KVM (skipped loudly without /dev/kvm) and once on the simulated backend, always.
for (const b of testBackends()) {
  test(
    `${CYCLES} sequential lifecycles on ${b.label} leave fds, threads and RSS flat`,
    { skip: b.skip },
    () => lifecycles(b),
  );
}

async function lifecycles(b: TestBackend): Promise<void> {
  const image = b.guest("hello");
  const fds = count("/proc/self/fd");
  const threads = count("/proc/self/task");
  const hv = b.open();
  const stack = createRmStack({ backend: hv });
  const client = stack.connectHost();
  const once = async () => {
    let console = "";
    // alloc → lend → config → init → start → the guest exits → reclaim → reset → dealloc
    const r = await runVm(stack, client, {
      image,
      console: (b) => {
        console += Buffer.from(b).toString("latin1");
      },
    });
    assert.equal(console, "Hello\n");
    assert.deepEqual(r.exit, { exitType: ExitType.PLATFORM_OFF, exitCode: 0 });
  };
  try {
    // Warm up first so JIT code, pooled threads and allocator arenas are in the baseline.
    for (let i = 0; i < 5; i++) await once();
    await stack.port!.settled();
    const rss = process.memoryUsage().rss;
    for (let i = 0; i < CYCLES; i++) await once();
    await stack.port!.settled();
    const stats = stack.port!.stats;
    assert.deepEqual(
      {
        vms: stats.vms,
        vcpus: stats.runningVcpus,
        parcels: stats.mappedParcels,
        plans: stats.plans,
      },
      { vms: 0, vcpus: 0, parcels: 0, plans: 0 },
    );
    assert.equal(stack.memory.regionCount, 0, "every RAM region freed");
    assert.equal(stack.memory.pendingFrees, 0, "every memfd closed");
    const snap = stack.rm.snapshot();
    assert.equal(snap.parcels.length, 0, "no parcel left in the RM");
    assert.equal(snap.vms.length, 1, "only HLOS is left");
    assert.ok(stats.idleThreads <= 4, "the thread pool stays bounded");
    const grown = process.memoryUsage().rss - rss;
    assert.ok(grown < RSS_SLACK, `RSS grew by ${(grown / MiB).toFixed(1)} MiB`);
  } finally {
    await stack.close();
    hv.close();
  }
  assert.equal(count("/proc/self/fd"), fds, "every KVM, memfd and eventfd fd is closed");
  assert.equal(
    await settledCount("/proc/self/task", threads),
    threads,
    "every vCPU worker thread has ended",
  );
}
