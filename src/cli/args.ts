import { TsvisorError } from "../core/errors.js";

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

export interface Parsed {
  readonly flags: Map<string, string | true>;
  readonly operands: string[];
}

export interface ParseOptions {
  /** A value option may also be given as `--name value` (the next argument is the value). */
  readonly spacedValues?: boolean;
}

/** Splits `--name` / `--name=value` options from operands; `-` is an operand. */
export function parseArgs(
  args: readonly string[],
  known: Record<string, "flag" | "value">,
  cmd: string,
  opts: ParseOptions = {},
): Parsed {
  const flags = new Map<string, string | true>();
  const operands: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
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
    if (kind === "flag") {
      flags.set(name, true);
      continue;
    }
    if (eq >= 0) flags.set(name, a.slice(eq + 1));
    else if (opts.spacedValues && i + 1 < args.length) flags.set(name, args[++i]!);
    else throw usage(`option --${name} needs a value: --${name}=…`);
  }
  return { flags, operands };
}
