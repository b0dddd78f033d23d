import { type CommandEntry, processIo, runCli } from "./dispatch.js";

/**
 * The installed binary's entry: it loads only the module of the command asked for, so that
 * `tsvisor vm ls` does not pay for the KVM backend, the checker and the RM at start-up. Help,
 * an unknown command or no command load the whole table (main.ts).
 */

export const LAZY_COMMANDS: Readonly<Record<string, () => Promise<CommandEntry>>> = {
  msg: async () => (await import("./msg.js")).msgGroup,
  rm: async () => (await import("./rm.js")).rmGroup,
  run: async () => (await import("./run.js")).runCommand,
  check: async () => (await import("./check.js")).checkGroup,
  daemon: async () => (await import("./daemon.js")).daemonCommand,
  vm: async () => (await import("./vm.js")).vmGroup,
};

export async function cli(argv: readonly string[]): Promise<number> {
  const load = argv[0] === undefined ? undefined : LAZY_COMMANDS[argv[0]];
  if (load) return runCli(argv, processIo(), [await load()]);
  const { main } = await import("./main.js");
  return main(argv);
}
