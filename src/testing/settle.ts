import { readdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Entries in a /proc directory (fds, threads) once the count has settled on `expected`, or the
 * count after ~2 s if it never does. A worker thread or a pooled close can finish a few
 * milliseconds after the promise that awaited it; a leak never returns to the baseline, so
 * waiting for it to settle keeps leak checks exact without making them racy.
 */
export async function settledCount(dir: string, expected: number): Promise<number> {
  let n = readdirSync(dir).length;
  for (let i = 0; i < 100 && n !== expected; i++) {
    await sleep(20);
    n = readdirSync(dir).length;
  }
  return n;
}
