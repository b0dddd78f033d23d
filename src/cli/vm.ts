import { existsSync, readFileSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import type { HostEvent, VmInfo, VmSpec } from "../host/types.js";
import type { RemoteHost } from "../sdk/remote-host.js";
import { parseRegisters, VCPUS_MAX } from "../vmm/builder.js";
import { parseArgs } from "./args.js";
import type { CliIo, CommandGroup } from "./main.js";
import { parseSize } from "./size.js";
import { DETACH_BYTE } from "./terminal.js";

/**
 * `tsvisor vm …`: the daemon's API from the command line, through RemoteHost. Tables and
 * aligned lines for people, `--json` (the API's own objects) for scripts. Every command finds
 * the daemon through --socket / TSVISOR_SOCKET, or --url with a token.
 */

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

/** The terminal `console` attaches: the process's, or a test's. */
export interface ConsoleTerminal {
  readonly input: NodeJS.ReadableStream & {
    readonly isTTY?: boolean;
    readonly isRaw?: boolean;
    setRawMode?(mode: boolean): unknown;
  };
  /** Raw bytes to the terminal (the guest's output is not text to re-encode). */
  write(bytes: Uint8Array): void;
}

/** What the vm commands may take from their caller besides CliIo (tests set these). */
export interface VmIo extends CliIo {
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly terminal?: ConsoleTerminal;
  /** Ends `events --follow` and `console` (default: SIGINT). */
  readonly signal?: AbortSignal;
}

const CONNECTION_OPTIONS = {
  socket: "value",
  url: "value",
  "token-file": "value",
} as const;

const CONNECTION_HELP = `Finding the daemon (every 'tsvisor vm' command):
  --socket PATH       its API socket, as given to 'tsvisor daemon --socket PATH'
                      (default: $TSVISOR_SOCKET)
  --url URL           or its TCP address, http://HOST:PORT ('tsvisor daemon --listen'),
                      with the bearer token from --token-file FILE (its first line) or
                      $TSVISOR_TOKEN

Exit status: 0 done, 1 the daemon refused or could not be reached (tsvisor: CODE: message),
2 a bad command line.`;

type Known = Record<string, "flag" | "value">;

/** parseArgs with the connection options added and `--name value` accepted for values. */
function parse(args: readonly string[], known: Known, cmd: string) {
  const all: Known = { ...CONNECTION_OPTIONS, ...known };
  const parsed = parseArgs(args, all, `vm ${cmd}`, { spacedValues: true });
  const text = (name: string): string | undefined => {
    const v = parsed.flags.get(name);
    return typeof v === "string" ? v : undefined;
  };
  return { ...parsed, text, has: (name: string) => parsed.flags.has(name) };
}

type Parsed = ReturnType<typeof parse>;

/** The RemoteHost options the command line and environment name. */
export function connectOptions(
  p: Pick<Parsed, "text">,
  env: Readonly<Record<string, string | undefined>>,
): { socket: string } | { url: string; token: string } {
  const socket = p.text("socket");
  const url = p.text("url");
  if (socket !== undefined && url !== undefined) {
    throw usage("give --socket or --url, not both");
  }
  if (url !== undefined) {
    const file = p.text("token-file");
    let token: string | undefined;
    if (file !== undefined) {
      try {
        token = readFileSync(file, "utf8").split("\n")[0]!.trim();
      } catch (e) {
        throw usage(`--token-file: cannot read '${file}': ${(e as Error).message}`);
      }
      if (!token) throw usage(`--token-file: '${file}' has no token on its first line`);
    } else token = env.TSVISOR_TOKEN || undefined;
    if (!token) {
      throw usage("--url needs a bearer token: --token-file FILE or TSVISOR_TOKEN");
    }
    return { url, token };
  }
  const path = socket ?? (env.TSVISOR_SOCKET || undefined);
  if (path === undefined) {
    throw usage(
      "where is the daemon? give --socket PATH or set TSVISOR_SOCKET (or --url with a token); start one with 'tsvisor daemon --socket PATH'",
    );
  }
  return { socket: path };
}

async function withHost<T>(p: Parsed, io: VmIo, fn: (host: RemoteHost) => Promise<T>): Promise<T> {
  // Loaded here: the client (and its WebSocket library) is only needed once a command runs.
  const { RemoteHost } = await import("../sdk/remote-host.js");
  const host = await RemoteHost.connect(connectOptions(p, io.env ?? process.env));
  try {
    return await fn(host);
  } finally {
    await host.close();
  }
}

function operands(p: Parsed, cmd: string, what: string, min: number, max: number): string[] {
  const n = p.operands.length;
  if (n < min) throw usage(`'vm ${cmd}' needs ${what} (try 'tsvisor vm ${cmd} --help')`);
  if (n > max) throw usage(`'vm ${cmd}' takes ${what}, got ${n}: ${p.operands.join(" ")}`);
  return p.operands;
}

const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

// ---------------------------------------------------------------- formatting

/** 2097152 → "2M", 65536 → "64K". */
export function formatSize(bytes: number): string {
  const MiB = 1024 * 1024;
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB}M`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024}K`;
  return `${bytes}`;
}

/** Seconds as the largest whole unit: 42s, 5m, 3h, 2d. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

const hexVmid = (v: number | null) => (v === null ? "-" : `0x${v.toString(16)}`);

/** The EXIT/AGE column: why it stopped, or how long it has been up / since it was made. */
function exitOrAge(v: VmInfo, now: number): string {
  if (v.exit && v.state !== "running" && v.state !== "starting") {
    return `${v.exit.exit_type} ${v.exit.exit_code}`;
  }
  if ((v.state === "running" || v.state === "stopping") && v.started_at) {
    return `up ${formatAge(now - Date.parse(v.started_at))}`;
  }
  return `created ${formatAge(now - Date.parse(v.created_at))} ago`;
}

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) {
    for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  }
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  "))
    .map((line) => `${line.trimEnd()}\n`)
    .join("");
}

export function vmTable(vms: readonly VmInfo[], now = Date.now()): string {
  const rows = [["ID", "NAME", "STATE", "VMID", "MEM", "VCPUS", "EXIT/AGE"]];
  for (const v of vms) {
    rows.push([
      v.id,
      v.name,
      v.state,
      hexVmid(v.vmid),
      formatSize(v.memory),
      String(v.vcpus),
      exitOrAge(v, now),
    ]);
  }
  return table(rows);
}

/** `inspect` for people: one aligned `key  value` line per field. */
export function inspectLines(v: VmInfo): string {
  const rows: [string, string][] = [
    ["id", v.id],
    ["name", v.name],
    ["state", v.state],
    ["vmid", hexVmid(v.vmid)],
    ["rm_status", v.rm_status ?? "-"],
    ["os_status", String(v.os_status)],
    ["app_status", String(v.app_status)],
    ["memory", `${formatSize(v.memory)} (${v.memory} bytes)`],
    ["vcpus", String(v.vcpus)],
    ["irqchip", v.irqchip],
    ["image", v.image],
    ["created_at", v.created_at],
    ["started_at", v.started_at ?? "-"],
    ["runs", String(v.runs)],
    ["console", `${v.console_bytes} bytes written`],
  ];
  if (v.exit) {
    const e = v.exit;
    rows.push(
      ["exit_type", e.exit_type],
      ["exit_code", String(e.exit_code)],
      ["exit", `${e.description} (by the ${e.initiator}, status ${e.status}, at ${e.time})`],
    );
  } else rows.push(["exit", "-"]);
  if (v.resources.length === 0) rows.push(["resources", "-"]);
  for (const r of v.resources) {
    rows.push([
      "resource",
      `${r.type} label ${r.label} cap ${r.cap_id} virq ${r.virq} base ${r.base} size ${r.size}`,
    ]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, val]) => `${k.padEnd(width)}  ${val}\n`).join("");
}

/** One event for people: `seq time vm type details`. */
export function eventLine(e: HostEvent): string {
  const details: string[] = [];
  if (e.type === "vm.status") {
    details.push(`${e.rm_status ?? "?"} os=${e.os_status ?? 0} app=${e.app_status ?? 0}`);
  }
  if (e.exit) {
    details.push(`${e.exit.exit_type} code=${e.exit.exit_code} by=${e.exit.initiator}`);
    if (e.exit.description) details.push(`(${e.exit.description})`);
  }
  if (e.reason !== undefined) details.push(`reason=${JSON.stringify(e.reason)}`);
  if (e.vmid !== null && e.type !== "vm.status") details.push(`vmid=${hexVmid(e.vmid)}`);
  return `${[String(e.seq), e.time, e.vm, e.type, ...details].join(" ")}\n`;
}

// ---------------------------------------------------------------- commands

const CREATE_HELP = `Usage: tsvisor vm create --image FILE|GUEST [--name N] [--mem SIZE] [--vcpus N]
                         [--cmdline TEXT] [--initrd FILE] [--irqchip kernel|user] [--pvh]
                         [--reg NAME=VALUE,…] [--start] [--json]

Creates a VM in the daemon and prints its id (one line, nothing else, so that
'ID=$(tsvisor vm create …)' works). The daemon runs the RM's create sequence up to READY:
the VM exists, with its RAM loaded, but does not run until 'tsvisor vm start ID' (or --start).
The daemon checks its limits first: API_LIMIT_VMS, API_LIMIT_MEMORY.

--image is a file (made absolute here, then read by the daemon, so it must be readable
there) or the name of a test guest (hello, exit-code, spin, uart-echo, …; on a daemon with
--backend sim, a simulated guest's name).

Options:
  --image FILE|GUEST  the guest image (required)
  --name N            a unique name to use instead of the id (letters, digits, _ . -)
  --mem SIZE          guest RAM: bytes or K/M/G, a multiple of 4 KiB (default 2M)
  --vcpus N           1 to ${VCPUS_MAX} (default 1)
  --cmdline TEXT      the kernel command line (the page below the DTB; RDI points at it)
  --initrd FILE       an initial ramdisk (made absolute, read by the daemon)
  --irqchip MODE      kernel (default) or user (tsvisor's own interrupt delivery)
  --pvh               start an ELF at its PVH entry
  --reg NAME=VALUE,…  extra vCPU 0 registers (rax…r15), e.g. --reg rdi=42
  --start             start it too (the id is printed first)
  --json              print the VM (the API's VmInfo) as JSON instead of the id

${CONNECTION_HELP}

Examples:
  tsvisor vm create --image exit-code --reg rdi=7 --name seven --start
  ID=$(tsvisor vm create --image hello)
  tsvisor vm create --image ./build/kernel.elf --mem 64M --vcpus 2 --cmdline "console=ttyS0"
`;

async function runCreate(args: readonly string[], io: VmIo): Promise<number> {
  const p = parse(
    args,
    {
      image: "value",
      name: "value",
      mem: "value",
      vcpus: "value",
      cmdline: "value",
      initrd: "value",
      irqchip: "value",
      pvh: "flag",
      reg: "value",
      start: "flag",
      json: "flag",
    },
    "create",
  );
  operands(p, "create", "no operands (the image is --image)", 0, 0);
  const image = p.text("image");
  if (image === undefined) {
    throw usage("'vm create' needs --image FILE|GUEST (try 'tsvisor vm create --help')");
  }
  const spec: Record<string, unknown> = {};
  // A relative path means this shell's directory, not the daemon's.
  spec.image = existsSync(image) ? resolvePath(image) : image;
  const name = p.text("name");
  if (name !== undefined) spec.name = name;
  const mem = p.text("mem");
  if (mem !== undefined) spec.memory = parseSize(mem);
  const vcpus = p.text("vcpus");
  if (vcpus !== undefined) {
    const n = Number(vcpus);
    if (!/^\d+$/.test(vcpus) || n < 1 || n > VCPUS_MAX) {
      throw usage(`--vcpus must be 1 to ${VCPUS_MAX}, not '${vcpus}'`);
    }
    spec.vcpus = n;
  }
  const cmdline = p.text("cmdline");
  if (cmdline !== undefined) spec.cmdline = cmdline;
  const initrd = p.text("initrd");
  if (initrd !== undefined) spec.initrd = resolvePath(initrd);
  const irqchip = p.text("irqchip");
  if (irqchip !== undefined) {
    if (irqchip !== "kernel" && irqchip !== "user") {
      throw usage(`--irqchip must be kernel or user, not '${irqchip}'`);
    }
    spec.irqchip = irqchip;
  }
  if (p.has("pvh")) spec.entry = "pvh";
  const reg = p.text("reg");
  if (reg !== undefined) {
    let regs: ReturnType<typeof parseRegisters>;
    try {
      regs = parseRegisters(reg);
    } catch (e) {
      if (isTsvisorError(e)) throw usage(`--reg: ${e.message}`);
      throw e;
    }
    spec.registers = Object.fromEntries(
      Object.entries(regs).map(([k, v]) => [k, `0x${v.toString(16)}`]),
    );
  }
  return withHost(p, io, async (host) => {
    let info = await host.createVm(spec as VmSpec);
    if (!p.has("json")) io.stdout(`${info.id}\n`);
    if (p.has("start")) info = await host.startVm(info.id);
    if (p.has("json")) io.stdout(json(info));
    return 0;
  });
}

const START_HELP = `Usage: tsvisor vm start ID [--json]

Starts a created VM (VM_START) and prints 'ID: STATE' once the RM has answered (usually
running; a guest that exits at once may already be exited). A VM that has exited must be
reset before it can start again (API_STATE otherwise).

Options:
  --json   print the VM (the API's VmInfo) as JSON

${CONNECTION_HELP}

Examples:
  tsvisor vm start vm-1
  tsvisor vm start web --json | jq .vmid
`;

async function runStart(args: readonly string[], io: VmIo): Promise<number> {
  const p = parse(args, { json: "flag" }, "start");
  const [id] = operands(p, "start", "one VM id or name", 1, 1);
  return withHost(p, io, async (host) => {
    const info = await host.startVm(id!);
    io.stdout(p.has("json") ? json(info) : `${info.id}: ${info.state}\n`);
    return 0;
  });
}

const STOP_HELP = `Usage: tsvisor vm stop ID [--force] [--timeout MS] [--json]

Stops a running VM and waits for its exit, then prints 'ID: exited: DESCRIPTION'.
By default the stop is graceful: the guest gets VM_SHUTDOWN through its RM message queue
and may power itself off; if it has not exited after --timeout ms (default 5000) the stop
is forced. --force stops it at once (exit type VM_STOP_FORCED).

Options:
  --force        stop at once instead of asking the guest first
  --timeout MS   graceful wait before forcing, 0 to 600000 (default 5000)
  --json         print the VM (the API's VmInfo, exit filled in) as JSON

${CONNECTION_HELP}

Examples:
  tsvisor vm stop vm-1
  tsvisor vm stop vm-1 --timeout 500
  tsvisor vm stop vm-1 --force --json | jq .exit.exit_type
`;

async function runStop(args: readonly string[], io: VmIo): Promise<number> {
  const p = parse(args, { force: "flag", timeout: "value", json: "flag" }, "stop");
  const [id] = operands(p, "stop", "one VM id or name", 1, 1);
  const t = p.text("timeout");
  let timeout: number | undefined;
  if (t !== undefined) {
    timeout = Number(t);
    if (!/^\d+$/.test(t) || timeout > 600_000) {
      throw usage(`--timeout must be a number of ms from 0 to 600000, not '${t}'`);
    }
  }
  return withHost(p, io, async (host) => {
    const info = await host.stopVm(id!, {
      ...(p.has("force") ? { force: true } : {}),
      ...(timeout !== undefined ? { timeout_ms: timeout } : {}),
    });
    io.stdout(
      p.has("json")
        ? json(info)
        : `${info.id}: ${info.state}${info.exit ? `: ${info.exit.description}` : ""}\n`,
    );
    return 0;
  });
}

const RESET_HELP = `Usage: tsvisor vm reset ID [--json]

Resets a VM back to created: stops it by force if it runs, tears it down in the RM and
creates it again from its image (a new VMID, RAM reloaded, console kept). Then it can be
started again. Prints 'ID: created (VMID …)'.

Options:
  --json   print the VM (the API's VmInfo) as JSON

${CONNECTION_HELP}

Examples:
  tsvisor vm reset vm-1 && tsvisor vm start vm-1
`;

async function runReset(args: readonly string[], io: VmIo): Promise<number> {
  const p = parse(args, { json: "flag" }, "reset");
  const [id] = operands(p, "reset", "one VM id or name", 1, 1);
  return withHost(p, io, async (host) => {
    const info = await host.resetVm(id!);
    io.stdout(
      p.has("json") ? json(info) : `${info.id}: ${info.state} (VMID ${hexVmid(info.vmid)})\n`,
    );
    return 0;
  });
}

const RM_HELP = `Usage: tsvisor vm rm ID… [--force]

Destroys VMs: each one's VMID is freed in the RM and its RAM returned; it is no longer
listed and its console ends. Prints each id as it goes. A VM that is running (or starting,
or stopping) is only destroyed with --force, which stops it by force first; without it the
command refuses that VM with API_STATE and goes on with the others. Exit status 1 if any
VM could not be destroyed.

Options:
  --force   destroy running VMs too (forced stop first)

${CONNECTION_HELP}

Examples:
  tsvisor vm rm vm-1 vm-2
  tsvisor vm rm --force $(tsvisor vm ls --json | jq -r '.vms[].id')
`;

const RUNNING: ReadonlySet<string> = new Set(["starting", "running", "stopping"]);

async function runRm(args: readonly string[], io: VmIo): Promise<number> {
  const p = parse(args, { force: "flag" }, "rm");
  const ids = operands(p, "rm", "one or more VM ids or names", 1, Number.POSITIVE_INFINITY);
  return withHost(p, io, async (host) => {
    let failed = 0;
    for (const id of ids) {
      try {
        if (!p.has("force")) {
          const info = await host.inspect(id);
          if (RUNNING.has(info.state)) {
            throw new TsvisorError(
              "API_STATE",
              `${info.id} is ${info.state}; stop it first or use 'tsvisor vm rm --force ${id}'`,
              { vm: info.id, state: info.state },
            );
          }
        }
        const gone = await host.destroyVm(id);
        io.stdout(`${gone.id}\n`);
      } catch (e) {
        if (!isTsvisorError(e) || e.code === "API_CONNECT") throw e;
        io.stderr(`tsvisor: ${e.code}: ${e.message}\n`);
        failed++;
      }
    }
    return failed > 0 ? 1 : 0;
  });
}

const LS_HELP = `Usage: tsvisor vm ls [--json]

Lists the daemon's VMs in creation order, one row each:

  ID        the VM's id (vm-N), which every command takes (so does its NAME)
  NAME      its name (the id unless --name was given)
  STATE     created, starting, running, stopping, exited, resetting, destroying
  VMID      the RM's VMID while it has one (0x80 …), else -
  MEM VCPUS guest RAM and vCPU count
  EXIT/AGE  for a VM that has exited, its exit type and code; otherwise how long it has
            been up, or since it was created

Options:
  --json   the API's answer as is: {"vms": [VmInfo, …]}

${CONNECTION_HELP}

Examples:
  tsvisor vm ls
  tsvisor vm ls --json | jq -r '.vms[] | select(.state == "exited") | .id'
`;

async function runLs(args: readonly string[], io: VmIo): Promise<number> {
  const p = parse(args, { json: "flag" }, "ls");
  operands(p, "ls", "no operands", 0, 0);
  return withHost(p, io, async (host) => {
    const vms = await host.listVms();
    io.stdout(p.has("json") ? json({ vms }) : vmTable(vms));
    return 0;
  });
}

const INSPECT_HELP = `Usage: tsvisor vm inspect ID [--json]

Shows one VM: its state, the RM's view (VMID, rm_status: LOAD, READY, RUNNING, EXITED, …,
and the guest's os/app status), its configuration, when it was created and started, the
console bytes it wrote, its hypervisor resources (VM_GET_HYP_RESOURCES), and, once it has
exited, why: exit_type (PLATFORM_OFF, VM_EXIT, SOFTWARE_ERROR, VM_STOP_FORCED, …) and
exit_code (docs/exits.md).

Options:
  --json   the API's VmInfo as JSON (rm_status, exit.exit_type, exit.exit_code, …)

${CONNECTION_HELP}

Examples:
  tsvisor vm inspect vm-1
  tsvisor vm inspect vm-1 --json | jq '.exit.exit_code'
`;

async function runInspect(args: readonly string[], io: VmIo): Promise<number> {
  const p = parse(args, { json: "flag" }, "inspect");
  const [id] = operands(p, "inspect", "one VM id or name", 1, 1);
  return withHost(p, io, async (host) => {
    const info = await host.inspect(id!);
    io.stdout(p.has("json") ? json(info) : inspectLines(info));
    return 0;
  });
}

const CONSOLE_HELP = `Usage: tsvisor vm console ID [--no-history]

Attaches this terminal to the VM's serial console (COM1): first the output the daemon
retains (the last 64 KiB; --no-history skips it), then live output, while what you type
goes to the guest. When standard input is a terminal it is put in raw mode, so every key
(Ctrl-C too) reaches the guest; Ctrl-] detaches (prints 'detached', exit status 0) and
leaves the VM running. Without a terminal, standard input is sent to the guest and its
output written to standard output until the VM is destroyed or standard input ends.

The console stays attached across the guest's exit and a reset; it ends when the VM is
destroyed.

Options:
  --no-history   only output from now on

${CONNECTION_HELP}

Examples:
  tsvisor vm console vm-1                 # type; Ctrl-] to detach
  printf 'abcq' | tsvisor vm console echo-vm
`;

/** Attaches `term` to the VM's console; resolves with the exit status. */
export async function consoleSession(
  host: RemoteHost,
  idOrName: string,
  term: ConsoleTerminal,
  io: VmIo,
  opts: { history?: boolean } = {},
): Promise<number> {
  const info = await host.inspect(idOrName);
  const stream = host.openConsole(info.id, { history: opts.history ?? true });
  const input = term.input;
  const tty = input.isTTY === true && typeof input.setRawMode === "function";
  const wasRaw = input.isRaw === true;
  return new Promise<number>((resolve, reject) => {
    let finished = false;
    const finish = (err: unknown, note?: string) => {
      if (finished) return;
      finished = true;
      input.off("data", onInput);
      input.off("end", onInputEnd);
      io.signal?.removeEventListener("abort", onAbort);
      if (tty) input.setRawMode!(wasRaw);
      input.pause();
      stream.destroy();
      if (note) io.stderr(note);
      if (err === undefined) resolve(0);
      else reject(err);
    };
    const onInput = (chunk: Buffer | string) => {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      const at = tty ? bytes.indexOf(DETACH_BYTE) : -1;
      if (at >= 0) {
        // What was typed before Ctrl-] still reaches the guest; nothing after it does.
        input.off("data", onInput);
        stream.end(bytes.subarray(0, at), () => finish(undefined, "\r\ndetached\r\n"));
        return;
      }
      stream.write(bytes);
    };
    const onInputEnd = () => {
      // Everything typed is sent before the command ends.
      stream.end(() => finish(undefined));
    };
    const onAbort = () => finish(undefined, tty ? "\r\ndetached\r\n" : undefined);
    stream.on("data", (b: Buffer) => term.write(b));
    stream.on("end", () =>
      finish(undefined, tty ? `\r\ntsvisor: ${info.id} was destroyed\r\n` : undefined),
    );
    stream.on("error", (e) => finish(e));
    if (io.signal?.aborted) return onAbort();
    io.signal?.addEventListener("abort", onAbort, { once: true });
    if (tty) {
      input.setRawMode!(true);
      io.stderr(`tsvisor: attached to ${info.id}'s console; Ctrl-] detaches\r\n`);
    }
    input.on("data", onInput);
    input.on("end", onInputEnd);
    input.resume();
  });
}

const processTerminal = (): ConsoleTerminal => ({
  input: process.stdin,
  write: (b) => {
    process.stdout.write(b);
  },
});

async function runConsole(args: readonly string[], io: VmIo): Promise<number> {
  const p = parse(args, { "no-history": "flag" }, "console");
  const [id] = operands(p, "console", "one VM id or name", 1, 1);
  return withHost(p, io, (host) =>
    consoleSession(host, id!, io.terminal ?? processTerminal(), io, {
      history: !p.has("no-history"),
    }),
  );
}

const EVENTS_HELP = `Usage: tsvisor vm events [ID] [--since SEQ] [--no-follow] [--json]

Prints the daemon's events (of one VM with ID), one line each:

  SEQ TIME VM TYPE DETAILS
  7 2025-01-01T12:00:00.000Z vm-1 vm.exited PLATFORM_OFF code=0 by=guest (PLATFORM_OFF code 0)

TYPE is vm.created, vm.started, vm.status (the RM's VM_STATUS: RUNNING, EXITED, …),
vm.stopping, vm.exited (the RM's VM_EXITED: why it stopped), vm.reset or vm.destroyed.
SEQ is the cursor: global, increasing, never reused. By default the command follows the
stream, printing new events as they happen (with --since, the retained events after SEQ
first) until interrupted; if the connection to the daemon drops it reconnects and resumes
after the last event it printed, so none is missed or repeated. --no-follow prints the
retained events (after --since SEQ, if given) and exits.

Options:
  --since SEQ    start after event SEQ (the last one you saw); API_CURSOR_EXPIRED if the
                 daemon no longer keeps the events after it
  --no-follow    print what is retained and exit (--follow, the default, keeps going)
  --json         one HostEvent JSON object per line

${CONNECTION_HELP}

Examples:
  tsvisor vm events
  tsvisor vm events vm-1 --since 0 --no-follow
  tsvisor vm events --json | jq -c 'select(.type == "vm.exited") | .exit'
`;

async function runEvents(args: readonly string[], io: VmIo): Promise<number> {
  const p = parse(
    args,
    { since: "value", json: "flag", follow: "flag", "no-follow": "flag" },
    "events",
  );
  const [vm] = operands(p, "events", "at most one VM id or name", 0, 1);
  if (p.has("follow") && p.has("no-follow")) throw usage("give --follow or --no-follow, not both");
  const sinceText = p.text("since");
  let since: number | undefined;
  if (sinceText !== undefined) {
    since = Number(sinceText);
    if (!/^\d+$/.test(sinceText) || !Number.isSafeInteger(since)) {
      throw usage(`--since must be an event seq (an integer ≥ 0), not '${sinceText}'`);
    }
  }
  const print = (e: HostEvent) =>
    io.stdout(p.has("json") ? `${JSON.stringify(e)}\n` : eventLine(e));
  return withHost(p, io, async (host) => {
    if (p.has("no-follow")) return printRetained(host, vm, since, print);
    const ac = new AbortController();
    const onSigint = () => ac.abort();
    const signal = io.signal ?? ac.signal;
    if (!io.signal) process.once("SIGINT", onSigint);
    try {
      for await (const e of host.events({
        ...(since !== undefined ? { since } : {}),
        ...(vm !== undefined ? { vm } : {}),
        signal,
      })) {
        print(e);
      }
    } finally {
      process.off("SIGINT", onSigint);
    }
    return 0;
  });
}

/**
 * The retained events, then exit. The host-wide stream is read up to the last event that
 * existed when the command began (a VM's own stream has no such landmark) and filtered here.
 */
async function printRetained(
  host: RemoteHost,
  vm: string | undefined,
  since: number | undefined,
  print: (e: HostEvent) => void,
): Promise<number> {
  const hostInfo = await host.hostInfo();
  const last = hostInfo.next_event - 1;
  let id = vm;
  let known = false;
  if (vm !== undefined) {
    try {
      id = (await host.inspect(vm)).id;
      known = true;
    } catch (e) {
      // A destroyed VM's events are still retained under its id.
      if (!isTsvisorError(e, "API_NOT_FOUND")) throw e;
    }
  }
  const from = since ?? Math.max(0, hostInfo.oldest_event - 1);
  let printed = 0;
  if (from < last) {
    const feed = await host.openFeed({ since: from });
    try {
      for (;;) {
        const r = await feed.next();
        if (r.done) break;
        if (id === undefined || r.value.vm === id) {
          print(r.value);
          printed++;
        }
        if (r.value.seq >= last) break;
      }
    } finally {
      feed.close();
    }
  }
  if (vm !== undefined && !known && printed === 0) {
    throw new TsvisorError(
      "API_NOT_FOUND",
      `no VM has the id or name '${vm}' and no retained event names it`,
      { vm },
    );
  }
  return 0;
}

export const vmGroup: CommandGroup = {
  name: "vm",
  summary: "drive the VMs of a running 'tsvisor daemon' (create, start, stop, console, events …)",
  commands: [
    {
      name: "create",
      args: "--image FILE|GUEST [--mem SIZE] [--vcpus N] [--start] …",
      summary: "create a VM in the daemon; prints its id",
      help: CREATE_HELP,
      run: runCreate,
    },
    {
      name: "start",
      args: "ID",
      summary: "start a created VM",
      help: START_HELP,
      run: runStart,
    },
    {
      name: "stop",
      args: "ID [--force] [--timeout MS]",
      summary: "stop a VM (graceful, forced after a timeout) and wait for its exit",
      help: STOP_HELP,
      run: runStop,
    },
    {
      name: "reset",
      args: "ID",
      summary: "reset a VM back to created (new VMID, RAM reloaded)",
      help: RESET_HELP,
      run: runReset,
    },
    {
      name: "rm",
      args: "ID… [--force]",
      summary: "destroy VMs (--force for running ones)",
      help: RM_HELP,
      run: runRm,
    },
    {
      name: "ls",
      args: "[--json]",
      summary: "list the daemon's VMs",
      help: LS_HELP,
      run: runLs,
    },
    {
      name: "inspect",
      args: "ID [--json]",
      summary: "one VM's state, RM status, exit and resources",
      help: INSPECT_HELP,
      run: runInspect,
    },
    {
      name: "console",
      args: "ID",
      summary: "attach the terminal to a VM's serial console (Ctrl-] detaches)",
      help: CONSOLE_HELP,
      run: runConsole,
    },
    {
      name: "events",
      args: "[ID] [--since SEQ] [--no-follow] [--json]",
      summary: "print (and follow) the daemon's events",
      help: EVENTS_HELP,
      run: runEvents,
    },
  ],
};
