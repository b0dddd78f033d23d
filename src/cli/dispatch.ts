import { isTsvisorError, TsvisorError } from "../core/errors.js";

/**
 * The tsvisor command line: a table of commands, each with its own help. Front ends only
 * parse arguments and call into the library; they hold no protocol logic of their own.
 */

/** Where a command reads and writes; tests pass captured buffers instead of the process. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** All of standard input as text (read only by commands given `-`). */
  readStdin(): Promise<string>;
}

export interface Command {
  readonly name: string;
  /** Argument synopsis shown in lists, e.g. "HEX… | -". */
  readonly args: string;
  readonly summary: string;
  /** Full help: usage, what it does, options, examples. */
  readonly help: string;
  /** Returns the exit code; throws TsvisorError for bad input (CLI_USAGE → exit 2, else 1). */
  run(args: readonly string[], io: CliIo): Promise<number>;
}

export interface CommandGroup {
  readonly name: string;
  readonly summary: string;
  readonly commands: readonly Command[];
}

export type CommandEntry = Command | CommandGroup;

export const USAGE_EXIT = 2;
export const DATA_EXIT = 1;

const isGroup = (e: CommandEntry): e is CommandGroup => "commands" in e;
const isHelp = (a: string | undefined) => a === "--help" || a === "-h" || a === "help";

function commandList(entries: readonly CommandEntry[], prefix: string): string[] {
  const rows: [string, string][] = [];
  for (const e of entries) {
    if (isGroup(e))
      for (const c of e.commands) rows.push([`${prefix}${e.name} ${c.name} ${c.args}`, c.summary]);
    else rows.push([`${prefix}${e.name} ${e.args}`, e.summary]);
  }
  const width = Math.max(...rows.map(([l]) => l.length));
  return rows.map(([l, s]) => `  ${l.padEnd(width)}  ${s}`);
}

export function topHelp(commands: readonly CommandEntry[]): string {
  return [
    "tsvisor — a microVM monitor and Gunyah-style hypervisor resource manager",
    "",
    "Usage: tsvisor <command> [arguments]",
    "",
    "Commands:",
    ...commandList(commands, ""),
    "",
    "Run 'tsvisor <command> --help' for a command's options and examples.",
    "Exit status: 0 success, 1 invalid data, 2 invalid command line.",
    "",
  ].join("\n");
}

function groupHelp(g: CommandGroup): string {
  return [
    `tsvisor ${g.name} — ${g.summary}`,
    "",
    "Commands:",
    ...commandList(g.commands, `${g.name} `),
    "",
    `Run 'tsvisor ${g.name} <command> --help' for options and examples.`,
    "",
  ].join("\n");
}

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

/** Finds the command argv names and runs it, or prints the help asked for. */
async function dispatch(
  argv: readonly string[],
  io: CliIo,
  commands: readonly CommandEntry[],
): Promise<number> {
  let rest = [...argv];
  if (rest[0] === "help") rest = [...rest.slice(1), "--help"];
  const first = rest[0];
  if (first === undefined) throw usage("no command given (try 'tsvisor --help')");
  if (isHelp(first)) {
    io.stdout(topHelp(commands));
    return 0;
  }
  const entry = commands.find((e) => e.name === first);
  if (!entry) throw usage(`unknown command '${first}' (try 'tsvisor --help')`);
  if (!isGroup(entry)) {
    if (rest.slice(1).some(isHelp)) {
      io.stdout(entry.help);
      return 0;
    }
    return entry.run(rest.slice(1), io);
  }
  const sub = rest[1];
  if (sub === undefined)
    throw usage(`'${entry.name}' needs a command (try 'tsvisor ${entry.name} --help')`);
  if (isHelp(sub)) {
    io.stdout(groupHelp(entry));
    return 0;
  }
  const cmd = entry.commands.find((c) => c.name === sub);
  if (!cmd)
    throw usage(`unknown command '${entry.name} ${sub}' (try 'tsvisor ${entry.name} --help')`);
  if (rest.slice(2).some(isHelp)) {
    io.stdout(cmd.help);
    return 0;
  }
  return cmd.run(rest.slice(2), io);
}

/** Runs the command line over `commands` and returns the exit code. Bugs propagate. */
export async function runCli(
  argv: readonly string[],
  io: CliIo,
  commands: readonly CommandEntry[],
): Promise<number> {
  try {
    return await dispatch(argv, io, commands);
  } catch (e) {
    if (!isTsvisorError(e)) throw e;
    io.stderr(`tsvisor: ${e.code}: ${e.message.replace(/\s*\n\s*/g, " ")}\n`);
    return e.code === "CLI_USAGE" ? USAGE_EXIT : DATA_EXIT;
  }
}

export function processIo(): CliIo {
  // A reader that goes away (`tsvisor … | head`) is not an error of ours: stop writing quietly
  // instead of dying on EPIPE; the command still finishes and cleans up.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code !== "EPIPE") throw e;
    });
  }
  return {
    stdout: (text) => {
      process.stdout.write(text);
    },
    stderr: (text) => {
      process.stderr.write(text);
    },
    readStdin: async () => {
      process.stdin.setEncoding("utf8");
      let text = "";
      for await (const chunk of process.stdin) text += chunk;
      return text;
    },
  };
}
