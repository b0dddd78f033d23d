import { TsvisorError } from "../core/errors.js";
import { parseByteSize } from "../core/size.js";
import { isMemSize, MEM_SIZE_RULE } from "../vmm/builder.js";

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

/** `--mem`: "2M", "512K", "1G", "0x200000", "2097152" → bytes of guest RAM. */
export function parseSize(text: string): number {
  const n = parseByteSize(text);
  if (n === undefined) throw usage(`--mem: '${text}' is not a size (e.g. 2M, 512K, 2097152)`);
  if (!isMemSize(n)) throw usage(`--mem: ${text} must be ${MEM_SIZE_RULE}`);
  return n;
}
