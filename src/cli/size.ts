import { TsvisorError } from "../core/errors.js";
import { MEM_MAX, MEM_MIN } from "../vmm/builder.js";

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

/** "2M", "512K", "1G", "0x200000", "2097152" → bytes. */
export function parseSize(text: string): number {
  const m = /^(0x[0-9a-f]+|\d+)\s*([kmg])?(i?b)?$/i.exec(text.trim());
  if (!m) throw usage(`--mem: '${text}' is not a size (e.g. 2M, 512K, 2097152)`);
  const unit = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? "").toLowerCase()] ?? 1;
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n) || n < MEM_MIN || n > MEM_MAX || n % 4096 !== 0) {
    throw usage(
      `--mem: ${text} must be a multiple of 4 KiB from ${MEM_MIN / 1024}K to ${MEM_MAX / 1024 / 1024}M`,
    );
  }
  return n;
}
