import { checkGroup } from "./check.js";
import { daemonCommand } from "./daemon.js";
import {
  type CliIo,
  type CommandEntry,
  topHelp as helpFor,
  processIo,
  runCli,
} from "./dispatch.js";
import { msgGroup } from "./msg.js";
import { rmGroup } from "./rm.js";
import { runCommand } from "./run.js";
import { vmGroup } from "./vm.js";

/**
 * The tsvisor command line: every command, eagerly (tests and the full help). The installed
 * binary goes through entry.ts, which loads only the module of the command asked for.
 */

export {
  type CliIo,
  type Command,
  type CommandEntry,
  type CommandGroup,
  DATA_EXIT,
  USAGE_EXIT,
} from "./dispatch.js";

/** Every command tsvisor has. */
export const COMMANDS: readonly CommandEntry[] = [
  msgGroup,
  rmGroup,
  runCommand,
  checkGroup,
  daemonCommand,
  vmGroup,
];

export function topHelp(commands: readonly CommandEntry[] = COMMANDS): string {
  return helpFor(commands);
}

/**
 * Runs the command line and returns the exit code. Bugs (errors without a code) propagate.
 * `commands` is replaceable for tests.
 */
export function main(
  argv: readonly string[],
  io: CliIo = processIo(),
  commands: readonly CommandEntry[] = COMMANDS,
): Promise<number> {
  return runCli(argv, io, commands);
}
