import { readFileSync } from "node:fs";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { parseByteSize } from "../core/size.js";
import { DEFAULT_MAX_VMS, DEFAULT_MEMORY_BUDGET } from "../host/defaults.js";
import { parseArgs } from "./args.js";
import type { CliIo, Command } from "./main.js";

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

const DAEMON_HELP = `Usage: tsvisor daemon --socket PATH [--backend kvm|sim] [--max-vms N] [--memory-budget SIZE]
                      [--stop-timeout MS] [--event-retention N] [--listen HOST:PORT --token-file FILE]
                      [--rm-socket PATH | --no-rm-socket] [--max-body SIZE] [--quiet]

Runs one Resource Manager and VMM that host many VMs, until SIGTERM or SIGINT. Programs and
the 'tsvisor vm' commands drive it through its HTTP/JSON API (docs/api.md, OpenAPI document
at GET /v1/openapi.json); wire-level RM clients talk the RM protocol on a second socket.

  API socket   PATH, created mode 0600 (only this user may connect); no token needed.
  RM socket    PATH.rm (or --rm-socket), mode 0600: the Gunyah RM protocol over a stream
               socket (u16 length + one 240-byte queue message per frame, docs/rpc.md). Every
               connection is one RM session of VMID 3 (HLOS, the host): it may allocate and run
               VMs of its own and act on the daemon's, and gets the host's notifications for
               the VMs it owns. 'tsvisor rm demo --socket PATH.rm' is such a client.
  TCP          only with --listen and --token-file: every request must carry
               'Authorization: Bearer <token>' (the file's first line).

On SIGTERM/SIGINT the daemon refuses new work, stops running VMs gracefully (the guest gets
VM_SHUTDOWN), forces those still running after --stop-timeout, destroys every VM, removes its
sockets and exits 0. A second signal skips the graceful wait.

Options:
  --socket PATH         the API socket (required; a stale socket file is replaced, a live
                        daemon's is not)
  --backend NAME        kvm (default; needs /dev/kvm) or sim (simulated guests, docs/sim.md)
  --kvm-device PATH     the KVM device (default /dev/kvm)
  --max-vms N           VMs that may exist at once, 1 to 63 (default ${DEFAULT_MAX_VMS})
  --memory-budget SIZE  guest RAM of all VMs together (default ${DEFAULT_MEMORY_BUDGET / 1024 / 1024}M); a create that
                        would exceed it fails with API_LIMIT_MEMORY
  --stop-timeout MS     graceful-stop wait at shutdown before forcing (default 5000)
  --event-retention N   events kept for clients that resume with a cursor (default 10000)
  --listen HOST:PORT    also serve the API on TCP (requires --token-file)
  --token-file FILE     the bearer token for TCP clients
  --rm-socket PATH      where the RM socket goes; --no-rm-socket: none
  --max-body SIZE       largest request body (default 1M)
  --quiet               no per-event log lines on stderr (start-up, shutdown and problems
                        are still reported)

Examples:
  tsvisor daemon --socket /tmp/tsvisor.sock &
  export TSVISOR_SOCKET=/tmp/tsvisor.sock
  tsvisor vm create --image hello --start
  tsvisor vm events
  curl --unix-socket /tmp/tsvisor.sock http://localhost/v1/vms
`;

function parseBytes(text: string, option: string): number {
  const n = parseByteSize(text) ?? Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0)
    throw usage(`${option}: '${text}' is not a size (e.g. 512M, 2G)`);
  return n;
}

function parseInteger(text: string, option: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw usage(`${option} must be an integer from ${min} to ${max}, not '${text}'`);
  }
  return n;
}

async function runDaemon(args: readonly string[], io: CliIo): Promise<number> {
  const { flags, operands } = parseArgs(
    args,
    {
      socket: "value",
      backend: "value",
      "kvm-device": "value",
      "max-vms": "value",
      "memory-budget": "value",
      "stop-timeout": "value",
      "event-retention": "value",
      listen: "value",
      "token-file": "value",
      "rm-socket": "value",
      "no-rm-socket": "flag",
      "max-body": "value",
      quiet: "flag",
    },
    "daemon",
    { spacedValues: true },
  );
  if (operands.length > 0) throw usage(`'daemon' takes no operands, got: ${operands.join(" ")}`);
  const text = (name: string) => {
    const v = flags.get(name);
    return typeof v === "string" ? v : undefined;
  };
  const socketPath = text("socket") ?? process.env.TSVISOR_SOCKET;
  if (!socketPath) throw usage("'daemon' needs --socket PATH (or TSVISOR_SOCKET)");
  const backend = text("backend") ?? "kvm";
  if (backend !== "kvm" && backend !== "sim")
    throw usage(`--backend must be kvm or sim, not '${backend}'`);
  let tcp: { host: string; port: number } | undefined;
  const listen = text("listen");
  if (listen !== undefined) {
    const m = /^(.*):(\d{1,5})$/.exec(listen);
    const port = Number(m?.[2]);
    if (!m || !m[1] || port > 65535) throw usage(`--listen must be HOST:PORT, not '${listen}'`);
    tcp = { host: m[1].replace(/^\[(.*)\]$/, "$1"), port };
  }
  let token: string | undefined;
  const tokenFile = text("token-file");
  if (tokenFile !== undefined) {
    try {
      token = readFileSync(tokenFile, "utf8").split("\n")[0]!.trim();
    } catch (e) {
      throw usage(`--token-file: cannot read '${tokenFile}': ${(e as Error).message}`);
    }
    if (token.length < 16) throw usage("--token-file: the token must be at least 16 characters");
  }
  if (tcp && !token)
    throw usage("--listen needs --token-file: TCP clients must send a bearer token");
  if (!tcp && token) throw usage("--token-file is only used with --listen HOST:PORT");
  const maxVms = text("max-vms");
  const budget = text("memory-budget");
  const stopTimeout = text("stop-timeout");
  const retention = text("event-retention");
  const maxBody = text("max-body");
  const quiet = flags.has("quiet");
  // --quiet drops the per-event lines; start-up, shutdown and problems are still reported.
  const log = (line: string) => {
    if (!quiet || !line.startsWith("event ")) io.stderr(`tsvisor daemon: ${line}\n`);
  };
  // Loaded here, not at the top: other commands' start-up should not pay for the VMM.
  const { rmSocketPathFor, startDaemon } = await import("../daemon/daemon.js");
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  try {
    daemon = await startDaemon({
      socketPath,
      rmSocketPath: flags.has("no-rm-socket")
        ? null
        : (text("rm-socket") ?? rmSocketPathFor(socketPath)),
      backend,
      ...(text("kvm-device") ? { kvmDevice: text("kvm-device")! } : {}),
      ...(maxVms ? { maxVms: parseInteger(maxVms, "--max-vms", 1, 63) } : {}),
      ...(budget ? { memoryBudget: parseBytes(budget, "--memory-budget") } : {}),
      ...(stopTimeout
        ? { stopTimeoutMs: parseInteger(stopTimeout, "--stop-timeout", 0, 600_000) }
        : {}),
      ...(retention
        ? { eventRetention: parseInteger(retention, "--event-retention", 1, 10_000_000) }
        : {}),
      ...(maxBody ? { maxBodyBytes: parseBytes(maxBody, "--max-body") } : {}),
      ...(tcp ? { tcp } : {}),
      ...(token ? { token } : {}),
      log,
    });
  } catch (e) {
    if (isTsvisorError(e, "HV_UNAVAILABLE")) {
      throw new TsvisorError(
        "HV_UNAVAILABLE",
        `${e.message} (--backend sim hosts simulated guests without it; docs/sim.md)`,
      );
    }
    throw e;
  }
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (name: string) => {
      signals++;
      if (signals === 1) {
        log(`${name}: shutting down`);
        daemon.stop().then(resolve, (e) => {
          io.stderr(`tsvisor daemon: shutdown failed: ${(e as Error).message}\n`);
          resolve();
        });
      } else {
        log(`${name} again: forcing every VM to stop now`);
        daemon.host.hurry();
      }
    };
    process.on("SIGTERM", () => onSignal("SIGTERM"));
    process.on("SIGINT", () => onSignal("SIGINT"));
  });
  return 0;
}

export const daemonCommand: Command = {
  name: "daemon",
  args: "--socket PATH [--backend kvm|sim] …",
  summary: "host many VMs: the HTTP/JSON API and the RM protocol on Unix sockets",
  help: DAEMON_HELP,
  run: runDaemon,
};
