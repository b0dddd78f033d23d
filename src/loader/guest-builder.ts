import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { TsvisorError } from "../core/errors.js";

/**
 * The test guests in guests/, assembled on first use into dist/guests/ (gitignored) by
 * guests/build.sh. For tests and benchmarks; binaries are never committed.
 */

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "guests", "build.sh"))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new TsvisorError("LOADER_FORMAT", "cannot find the guests/ directory");
    dir = up;
  }
}

/** Path of the built guest `name`, building it if it is missing or older than its inputs. */
export function guestPath(name: string): string {
  const root = repoRoot();
  const src = join(root, "guests", `${name}.S`);
  if (!existsSync(src)) throw new TsvisorError("LOADER_FORMAT", `no guest source ${src}`);
  const kind = /^# tsvisor-guest: *(elf|flat)/.exec(readFileSync(src, "utf8"))?.[1];
  if (kind === undefined)
    throw new TsvisorError("LOADER_FORMAT", `${src} has no '# tsvisor-guest:' line`);
  const outDir = join(root, "dist", "guests");
  const out = join(outDir, `${name}.${kind === "elf" ? "elf" : "bin"}`);
  // Shared includes (guests/*.inc) count for every guest: few, and rarely changed.
  const includes = readdirSync(join(root, "guests"))
    .filter((f) => f.endsWith(".inc"))
    .map((f) => join(root, "guests", f));
  const inputs = [
    src,
    join(root, "guests", "build.sh"),
    join(root, "guests", "guest.ld"),
    ...includes,
  ];
  const newest = Math.max(...inputs.map((f) => (existsSync(f) ? statSync(f).mtimeMs : 0)));
  if (!existsSync(out) || statSync(out).mtimeMs < newest) {
    execFileSync("sh", [join(root, "guests", "build.sh"), outDir, name], {
      stdio: ["ignore", "ignore", "pipe"],
    });
  }
  return out;
}

/** Whether `name` names a test guest: guests/NAME.S exists (it need not be built yet). */
export function isGuestName(name: string): boolean {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name)) return false;
  try {
    return existsSync(join(repoRoot(), "guests", `${name}.S`));
  } catch {
    return false;
  }
}

/** The bytes of guest `name` (see guestPath). */
export function guestImage(name: string): Uint8Array {
  return new Uint8Array(readFileSync(guestPath(name)));
}
