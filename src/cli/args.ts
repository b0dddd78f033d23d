import { TsvisorError } from "../core/errors.js";

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

export interface Parsed {
  readonly flags: Map<string, string | true>;
  readonly operands: string[];
}

/** Splits `--name` / `--name=value` options from operands; `-` is an operand. */
export function parseArgs(
  args: readonly string[],
  known: Record<string, "flag" | "value">,
  cmd: string,
): Parsed {
  const flags = new Map<string, string | true>();
  const operands: string[] = [];
  for (const a of args) {
    if (!a.startsWith("--")) {
      operands.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    const kind = known[name];
    if (kind === undefined)
      throw usage(`unknown option '${a}' for '${cmd}' (try 'tsvisor ${cmd} --help')`);
    if (kind === "flag" && eq >= 0) throw usage(`option --${name} takes no value`);
    if (kind === "value" && eq < 0) throw usage(`option --${name} needs a value: --${name}=…`);
    flags.set(name, kind === "flag" ? true : a.slice(eq + 1));
  }
  return { flags, operands };
}
