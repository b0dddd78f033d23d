/**
 * bench/kvm/lifecycle — whole VM lifecycles per second inside one process, each row beside the
 * bare hv-level lifecycle measured in the same run:
 *
 * * bare (the baseline): create a KVM VM → load guests/hello → run it on a pooled vCPU thread
 *   until it powers off → close the VM and its memory, awaiting the close (`runGuest`);
 * * bare, close in the background: the same, but the next lifecycle starts while the VM's
 *   close (8–20 ms on kvm_pvm with an in-kernel irqchip) is still running on libuv's pool;
 * * through the RM: what `tsvisor run` does in-process (src/vmm/run-vm.ts) — alloc → lend the
 *   RAM parcel → configure → start → guest exits (VM_EXITED) → reclaim → reset → dealloc, with
 *   the KVM port tearing VMs down in the background (bench/kvm/rm-lifecycle.ts);
 * * context: the same minimal lifecycle in plain C (bench/c/kvm-pio-loop.c `lifecycle`).
 *
 * Rows take turns in 5 rounds of N/5 lifecycles each (after 3 unmeasured ones per row); a row's
 * rate is its N lifecycles over their summed time.
 *
 * Prints a table and writes bench/results/kvm-lifecycle.json.
 * Usage: node dist/bench/kvm/lifecycle.js [--quick]
 */
import { execFileSync } from "node:child_process";
import { ByteRing, pumpRing } from "../../src/devices/byte-ring.js";
import { standardDevices } from "../../src/devices/specs.js";
import { KvmHypervisor, kvmAvailable } from "../../src/hv/kvm/kvm-hypervisor.js";
import { guestImage } from "../../src/loader/guest-builder.js";
import { loadImage } from "../../src/loader/image.js";
import type { StopReason } from "../../src/vcpu/exit-handler.js";
import { runGuest } from "../../src/vcpu/harness.js";
import { VcpuThread, VcpuThreadPool } from "../../src/vcpu/vcpu-thread.js";
import {
  baseline,
  cBaseline,
  checkClean,
  fmt,
  nowNs,
  pioGuest,
  quick,
  secondsSince,
  table,
  writeResults,
} from "./common.js";
import { rmLifecycle } from "./rm-lifecycle.js";

const N = quick ? 20 : 100;
const ROUNDS = 5;
const WARMUP = 3;

function checkHello(consoleText: string, reason: StopReason): void {
  if (consoleText !== "Hello\n" || reason.kind !== "power-off" || reason.code !== 0) {
    throw new Error(
      `hello ended with ${JSON.stringify(reason)}, console ${JSON.stringify(consoleText)}`,
    );
  }
}

/** The bare lifecycle of runGuest, except that the VM's close is left running. */
async function bareBackgroundClose(
  hv: KvmHypervisor,
  image: Uint8Array,
  pool: VcpuThreadPool,
  closing: Promise<void>[],
): Promise<void> {
  const vm = hv.createVm({ irqchip: true });
  const memory = hv.allocateMemory(2 << 20);
  vm.mapMemory({ gpa: 0, memory });
  const loaded = loadImage(image, { gpa: 0, bytes: memory.bytes });
  const ring = ByteRing.allocate();
  const thread = VcpuThread.start(vm.createVcpu(0), {
    devices: standardDevices(ring),
    boot: loaded.boot,
    pool,
  });
  const chunks: Uint8Array[] = [];
  const pumped = pumpRing(new ByteRing(ring), (b) => chunks.push(b), thread.result);
  const result = await thread.result;
  await pumped;
  // Guest memory is unmapped only once KVM has let go of the VM.
  closing.push(vm.close().then(() => memory.close()));
  checkHello(Buffer.concat(chunks).toString("latin1"), result.reason);
}

/** One row: a batch of `n` lifecycles, timed including whatever work they still owe. */
interface Contender {
  readonly key: "bare" | "bareBackground" | "rm" | "c";
  /** Runs n lifecycles; returns the seconds they took. */
  batch(n: number): Promise<number>;
}

/** Times `once` n times, then `settle` (work the batch still owes, e.g. background closes). */
function timed(once: () => Promise<void>, settle?: () => Promise<void>) {
  return async (n: number) => {
    const t0 = nowNs();
    for (let i = 0; i < n; i++) await once();
    await settle?.();
    return secondsSince(t0);
  };
}

const kvm = kvmAvailable();
if (!kvm.ok) {
  process.stdout.write(`lifecycle: skipped, KVM not available: ${kvm.why}\n`);
  writeResults("kvm-lifecycle", { skipped: `KVM not available: ${kvm.why}` });
} else {
  const hello = guestImage("hello");
  const cBinary = cBaseline();
  const cImage = pioGuest();
  const before = await baseline();
  const hv = KvmHypervisor.open();
  const pool = new VcpuThreadPool();
  const rm = rmLifecycle(hv, hello);
  const closing: Promise<void>[] = [];
  const settle = async () => {
    await Promise.all(closing.splice(0));
  };
  const contenders: Contender[] = [
    {
      key: "bare",
      batch: timed(async () => {
        const run = await runGuest(hv, hello, { pool });
        checkHello(run.console, run.result.reason);
      }),
    },
    {
      key: "bareBackground",
      batch: timed(() => bareBackgroundClose(hv, hello, pool, closing), settle),
    },
    { key: "rm", batch: timed(rm.once, rm.settle) },
    {
      key: "c",
      batch: async (n) => {
        const out = execFileSync(cBinary, ["lifecycle", cImage, String(n)], { encoding: "utf8" });
        return (JSON.parse(out.trim()) as { seconds: number }).seconds;
      },
    },
  ];
  const seconds = { bare: 0, bareBackground: 0, rm: 0, c: 0 };
  const perRound = {
    bare: [] as number[],
    bareBackground: [] as number[],
    rm: [] as number[],
    c: [] as number[],
  };
  try {
    for (const c of contenders) await c.batch(WARMUP);
    // Rounds alternate the rows, so a change in the machine's load hits every row alike.
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < contenders.length; k++) {
        const c = contenders[(r + k) % contenders.length] as Contender;
        const s = await c.batch(N / ROUNDS);
        seconds[c.key] += s;
        perRound[c.key].push(N / ROUNDS / s);
      }
    }
  } finally {
    await settle();
    await rm.close();
    await pool.close();
    hv.close();
  }
  const clean = await checkClean(before);
  const rate = {
    bare: N / seconds.bare,
    bareBackground: N / seconds.bareBackground,
    rm: N / seconds.rm,
    c: N / seconds.c,
  };

  const row = (what: string, r: number) => [
    what,
    fmt(r, 1),
    fmt(1000 / r, 2),
    fmt(r / rate.bare, 2),
    fmt(r / rate.bareBackground, 2),
  ];
  const rows: string[][] = [
    row("bare hv: create → hello → await close (baseline)", rate.bare),
    row("bare hv: create → hello → close in background", rate.bareBackground),
    row("through the RM: alloc → lend → start → VM_EXITED → reset → dealloc", rate.rm),
    row("context: plain C, create → 1 exit → await close (on a helper thread)", rate.c),
  ];
  process.stdout.write(
    `\nIn-process VM lifecycles, ${N} sequential lifecycles per row in ${ROUNDS} alternating rounds:\n\n`,
  );
  process.stdout.write(
    `${table(
      ["<lifecycle", "lifecycles/s", "ms each", "ratio to bare", "ratio to bare, background close"],
      rows,
    )}\n\n`,
  );
  writeResults("kvm-lifecycle", {
    n: N,
    rounds: ROUNDS,
    lifecyclesPerSecond: rate,
    perRound,
    ratios: {
      bareBackgroundVsBare: rate.bareBackground / rate.bare,
      rmVsBare: rate.rm / rate.bare,
      rmVsBareBackground: rate.rm / rate.bareBackground,
      cVsBare: rate.c / rate.bare,
    },
    clean,
  });
  if (!clean.clean) process.exitCode = 1;
}
