import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TsvisorError } from "../../core/errors.js";
import * as generated from "./constants.js";

/** The native addon (native/tsvisor.c). Calls that can fail return -errno instead of throwing. */
export interface NativeSys {
  open(path: string, flags: number): number;
  close(fd: number): number;
  ioctl(fd: number, request: number, arg?: number | bigint | ArrayBufferView | ArrayBuffer): number;
  /** BigInt address, or -errno as a number. */
  mmap(length: number, prot: number, flags: number, fd: number, offset: number): bigint | number;
  munmap(addr: bigint, length: number): number;
  /** An ArrayBuffer over already-mapped memory, with no finalizer. */
  view(addr: bigint, length: number): ArrayBuffer;
  detach(buffer: ArrayBuffer): number;
  memfdCreate(name: string, flags: number): number;
  ftruncate(fd: number, size: number): number;
  eventfd(initval: number, flags: number): number;
  eventfdRead(fd: number): bigint | number;
  eventfdWrite(fd: number, value: bigint | number): number;
  gettid(): number;
  tgkill(tgid: number, tid: number, sig: number): number;
  installNoopHandler(sig: number): number;
  sigrtmin(): number;
  readonly constants: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

let cached: NativeSys | undefined;

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "binding.gyp"))) return dir;
    const up = dirname(dir);
    if (up === dir)
      throw new TsvisorError("HV_NATIVE", "cannot find the package root (binding.gyp)");
    dir = up;
  }
}

/** Path of the built addon. */
export function nativeAddonPath(): string {
  return join(packageRoot(), "build", "Release", "tsvisor.node");
}

/**
 * Loads the addon once per thread (the addon is context-aware, so workers load it too) and
 * checks that the constants compiled into it match constants.ts.
 */
export function loadNative(): NativeSys {
  if (cached) return cached;
  const path = nativeAddonPath();
  if (!existsSync(path)) {
    throw new TsvisorError("HV_NATIVE", `the native addon is not built (${path}); run npm ci`);
  }
  const sys = createRequire(import.meta.url)(path) as NativeSys;
  const drift = constantsDrift(sys.constants);
  if (drift.length > 0) {
    throw new TsvisorError(
      "HV_NATIVE",
      `constants.ts disagrees with <linux/kvm.h> on ${drift.slice(0, 5).join(", ")}; rerun scripts/gen-kvm-constants.mjs`,
      { drift },
    );
  }
  cached = sys;
  return sys;
}

/** Names whose value in constants.ts differs from (or is missing in) the compiled table. */
export function constantsDrift(compiled: NativeSys["constants"]): string[] {
  const out: string[] = [];
  const ts = generated as unknown as Record<string, Record<string, number>>;
  const groups = new Set([...Object.keys(ts), ...Object.keys(compiled)]);
  for (const g of groups) {
    const a = ts[g] ?? {};
    const b = compiled[g] ?? {};
    for (const name of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (a[name] !== b[name]) out.push(`${g}.${name}`);
    }
  }
  return out.sort();
}

const ERRNO_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(generated.SYS)
    .filter(([name]) => name.startsWith("E"))
    .map(([name, value]) => [value, name]),
);

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** Returns a non-negative result; turns -errno into HV_SYSCALL naming `what`. */
export function sysCheck(result: number, what: string): number {
  if (result < 0) {
    throw new TsvisorError("HV_SYSCALL", `${what} failed: ${errnoName(-result)}`, {
      errno: -result,
    });
  }
  return result;
}

/** Like sysCheck for calls that return a BigInt on success. */
export function sysCheckBig(result: bigint | number, what: string): bigint {
  if (typeof result === "number") {
    sysCheck(result < 0 ? result : -generated.SYS.EINVAL, what);
  }
  return result as bigint;
}

/** The signal kvm kicks use: SIGRTMIN+6 (Node and glibc own 2, 10, 11, 15, 32 and 33). */
export function kickSignal(sys: NativeSys): number {
  return sys.sigrtmin() + 6;
}
