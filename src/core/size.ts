/**
 * "2M", "512K", "1G", "4MiB", "0x200000", "2097152" → a byte count (K, M, G are binary), or
 * undefined when the text is not a size. Range checks are the caller's.
 */
export function parseByteSize(text: string): number | undefined {
  const m = /^(0x[0-9a-f]+|\d+)\s*([kmg])?(i?b)?$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = { k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? "").toLowerCase()] ?? 1;
  return Number(m[1]) * unit;
}
