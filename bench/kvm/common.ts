/**
 * Shared pieces of the KVM benchmarks: where things are, building the C baseline and the bench
 * guest, statistics, tables, results files and the leak check every benchmark ends with.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root: the nearest directory above this file holding package.json. */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new Error("bench: cannot find the repository root");
    dir = up;
  }
  return dir;
})();

export const quick = process.argv.includes("--quick");

/** Builds `out` from `inputs` with `build` unless it is newer than all of them. */
function buildIfStale(out: string, inputs: readonly string[], build: () => void): string {
  const newest = Math.max(...inputs.map((f) => statSync(f).mtimeMs));
  if (!existsSync(out) || statSync(out).mtimeMs < newest) {
    mkdirSync(dirname(out), { recursive: true });
    build();
  }
  return out;
}

/** bench/c/kvm-pio-loop.c compiled with the machine's cc into dist/bench/c/. */
export function cBaseline(): string {
  const src = join(ROOT, "bench", "c", "kvm-pio-loop.c");
  const out = join(ROOT, "dist", "bench", "c", "kvm-pio-loop");
  return buildIfStale(out, [src], () =>
    execFileSync("cc", ["-O2", "-Wall", "-Wextra", "-pthread", "-o", out, src], {
      stdio: "inherit",
    }),
  );
}

/** bench/kvm/pio-loop.S as a flat real-mode binary linked at 0x1000, in dist/bench/guests/. */
export function pioGuest(): string {
  const src = join(ROOT, "bench", "kvm", "pio-loop.S");
  const out = join(ROOT, "dist", "bench", "guests", "pio-loop.bin");
  return buildIfStale(out, [src], () => {
    const obj = `${out}.o`;
    execFileSync("as", ["--64", "-o", obj, src], { stdio: "inherit" });
    execFileSync(
      "ld",
      ["-m", "elf_x86_64", "-N", "-e", "_start", "-Ttext", "0x1000", "--oformat", "binary"].concat([
        "-o",
        out,
        obj,
      ]),
      { stdio: "inherit" },
    );
  });
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return Number.NaN;
  return n % 2 === 1
    ? (s[(n - 1) / 2] as number)
    : ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2;
}

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

export function spread(xs: readonly number[]): Spread {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

export function nowNs(): bigint {
  return process.hrtime.bigint();
}

export function secondsSince(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** A markdown table: a header row, then rows of cells. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const align = header.map((h) => (h.startsWith("<") ? "---" : "---:"));
  const clean = header.map((h) => h.replace(/^</, ""));
  return [clean, align, ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
}

export function fmt(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return "–";
  return x.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** Writes bench/results/<name>.json and says so. */
export function writeResults(name: string, json: object): void {
  const dir = join(ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `${name}.json`),
    `${JSON.stringify({ bench: name, node: process.version, quick, ...json }, null, 2)}\n`,
  );
  process.stdout.write(`wrote bench/results/${name}.json\n`);
}

/** This process's open fds and threads, to check that a benchmark left nothing behind. */
export function resources(): { fds: number; threads: number } {
  return {
    fds: readdirSync("/proc/self/fd").length,
    threads: readdirSync("/proc/self/task").length,
  };
}

/**
 * The fd and thread counts to come back to, taken before a benchmark opens anything. libuv
 * starts its thread pool on first use (VM fds are closed there) and keeps it, so it is started
 * first, by a read that goes through it; and Node opens an extra fd the first time it sets up
 * process.stdout or stderr on a pipe, so both are set up first too.
 */
export async function baseline(): Promise<{ fds: number; threads: number }> {
  void process.stdout;
  void process.stderr;
  await readFile(fileURLToPath(import.meta.url));
  return resources();
}

/**
 * Waits (bounded) until fds and threads are back to `before`: ended worker threads and VM fds
 * closed on libuv's pool go away shortly after the promises that report them settle.
 */
export async function checkClean(before: { fds: number; threads: number }): Promise<{
  clean: boolean;
  fds: number;
  threads: number;
}> {
  let now = resources();
  for (let i = 0; i < 100 && (now.fds > before.fds || now.threads > before.threads); i++) {
    await new Promise((r) => setTimeout(r, 20));
    now = resources();
  }
  const clean = now.fds <= before.fds && now.threads <= before.threads;
  process.stdout.write(
    clean
      ? "clean: open fds and threads are back to where they started\n"
      : `NOT CLEAN: fds ${before.fds} → ${now.fds}, threads ${before.threads} → ${now.threads}\n`,
  );
  return { clean, ...now };
}

/**
 * QEMU microvm with COM1 on stdio and debug-exit at 0xf4, booting `image` with -kernel: the
 * one command line every QEMU baseline uses. `mem` null leaves QEMU's default RAM size.
 */
export function qemuArgs(image: string, mem: string | null = "2M"): string[] {
  return [
    "-M",
    "microvm,acpi=off,pit=off,pic=off,rtc=off,x-option-roms=off",
    "-accel",
    "kvm",
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    "-serial",
    "stdio",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=4",
    ...(mem === null ? [] : ["-m", mem]),
    "-kernel",
    image,
  ];
}
