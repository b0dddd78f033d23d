import { TsvisorError } from "../core/errors.js";
import type { MemoryRegionSpec } from "./types.js";

const PAGE = 4096;

/**
 * The checks every backend applies to a mapping request, so they refuse the same requests with
 * the same errors: page-aligned gpa/offset/size, a non-empty range inside the block, and no
 * overlap with a current mapping. Returns the resolved range.
 */
export function checkRegion(
  spec: MemoryRegionSpec,
  blockSize: number,
  current: readonly { readonly gpa: number; readonly size: number }[],
): { gpa: number; offset: number; size: number } {
  const offset = spec.offset ?? 0;
  const size = spec.size ?? blockSize - offset;
  const gpa = spec.gpa;
  for (const [what, v] of [
    ["gpa", gpa],
    ["offset", offset],
    ["size", size],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0 || v % PAGE !== 0) {
      throw new TsvisorError("HV_MEMORY", `region ${what} ${v} is not a multiple of 4 KiB`);
    }
  }
  if (size === 0 || offset + size > blockSize) {
    throw new TsvisorError(
      "HV_MEMORY",
      `region of ${size} bytes at offset ${offset} exceeds the block`,
    );
  }
  const clash = current.find((r) => gpa < r.gpa + r.size && r.gpa < gpa + size);
  if (clash) {
    throw new TsvisorError(
      "HV_MEMORY",
      `region 0x${gpa.toString(16)}+0x${size.toString(16)} overlaps the one at 0x${clash.gpa.toString(16)}`,
    );
  }
  return { gpa, offset, size };
}
