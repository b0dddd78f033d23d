/**
 * A promise with its resolve and reject at hand, settled at most once. Its promise carries a
 * no-op rejection handler: a VM's exit, say, need not be awaited, and an unobserved rejection
 * must not end the process (awaiting it still throws).
 */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
  readonly settled: boolean;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  let settled = false;
  return {
    promise,
    get settled() {
      return settled;
    },
    resolve: (v) => {
      if (settled) return;
      settled = true;
      resolve(v);
    },
    reject: (e) => {
      if (settled) return;
      settled = true;
      reject(e);
    },
  };
}
