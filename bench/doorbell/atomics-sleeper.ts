/**
 * The sleeping side of bench/doorbell's Node baseline: the futex ping-pong of futex.c with
 * Atomics.wait/notify between two Node threads. Word 0 is the doorbell, word 1 the
 * acknowledgement, BigInt64 at byte 16 the time the sleeper woke.
 */
import { workerData } from "node:worker_threads";

const { buffer, rounds } = workerData as { buffer: SharedArrayBuffer; rounds: number };
const words = new Int32Array(buffer, 0, 2);
const woke = new BigInt64Array(buffer, 16, 1);
for (let n = 1; n <= rounds; n++) {
  while (Atomics.load(words, 0) !== n) Atomics.wait(words, 0, n - 1);
  Atomics.store(woke, 0, process.hrtime.bigint());
  Atomics.store(words, 1, n);
  Atomics.notify(words, 1);
}
