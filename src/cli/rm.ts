import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TsvisorError } from "../core/errors.js";
import { connectSocketEndpoint } from "../os/socket-endpoint.js";
import { listenRmSocket } from "../os/socket-server.js";
import { messageToJson } from "../protocol/codec.js";
import { ExitType, nameOf, ResourceType, Vmid } from "../protocol/enums.js";
import { MsgType } from "../protocol/header.js";
import type { RmMessage } from "../protocol/message.js";
import type { VmConfig } from "../protocol/vm-config.js";
import { RecordingHypervisor } from "../rm/recording-hypervisor.js";
import { ResourceManager } from "../rm/resource-manager.js";
import { RmClient } from "../rpc/client.js";
import { jsonLineLog } from "../rpc/log.js";
import { RmServer } from "../rpc/server.js";
import { type Direction, tapEndpoint } from "../rpc/tap.js";
import { bootRegisters, startVm, teardownVm } from "../vmm/host-flow.js";
import { HostMemory } from "../vmm/host-memory.js";
import { createRmStack } from "../vmm/rm-stack.js";
import { parseArgs } from "./args.js";
import type { CliIo, Command, CommandGroup } from "./main.js";

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

/** The VM the demo builds: small, with one of each vdevice kind so every resource shows. */
export function demoConfig(): VmConfig {
  return {
    nodeName: "gunyah-vm-config",
    imageName: "demo",
    memory: { base: 0n, size: 0x20_0000n },
    vcpus: { count: 2, affinity: "proxy" },
    vdevices: [
      { kind: "doorbell", name: "bell-rx", label: 0, peer: "default", interrupt: 5 },
      { kind: "doorbell-source", name: "bell-tx", label: 1, peer: "default" },
      {
        kind: "message-queue-pair",
        name: "msgq",
        label: 2,
        peer: "default",
        messageSize: 240,
        queueDepth: 8,
        interrupts: [6, 7],
      },
    ],
  };
}

const hex = (v: unknown) =>
  typeof v === "number" && v > 0xffff ? `0x${v.toString(16)}` : JSON.stringify(v);

/** One readable line per logical message: direction, seq, type, name, error, fields. */
export function traceLine(dir: Direction, m: RmMessage): string {
  const j = messageToJson(m) as unknown as Record<string, unknown>;
  const arrow = dir === "out" ? "host → RM " : "RM → host ";
  const kind =
    m.type === MsgType.REQUEST ? "request" : m.type === MsgType.REPLY ? "reply  " : "notify ";
  const err = m.type === MsgType.REPLY ? ` ${String(j.error)}` : "";
  const payload = (j.payload ?? {}) as Record<string, unknown>;
  const fields = Object.entries(payload)
    .filter(([k]) => !Array.isArray(payload[k]) || (payload[k] as unknown[]).length <= 4)
    .map(([k, v]) => `${k}=${hex(v)}`);
  const lists = Object.entries(payload)
    .filter(([, v]) => Array.isArray(v) && v.length > 4)
    .map(([k, v]) => `${k}=[${(v as unknown[]).length} entries]`);
  const extra = j.payload_hex ? [`payload_hex=${String(j.payload_hex)}`] : [];
  return `${arrow} seq=${String(m.seq).padEnd(5)} ${kind} ${String(j.msg_name).padEnd(22)}${err}  ${[...fields, ...lists, ...extra].join(" ")}`.trimEnd();
}

const DEMO_HELP = `Usage: tsvisor rm demo [--json] [--socket]

Runs one VM's whole lifecycle through the RM protocol, as the host (VMID 3) drives it in the
Linux v16 order, and prints every message that crosses the link, decoded:

  start:    VM_ALLOC_VMID → MEM_LEND (the RAM parcel holding the vm-config DTB) →
            VM_CONFIG_IMAGE → VM_SET_DEMAND_PAGING → VM_SET_ADDRESS_LAYOUT → VM_INIT →
            VM_SET_BOOT_CONTEXT → VM_GET_HYP_RESOURCES → VM_START
  teardown: VM_STOP (forced) and VM_EXITED → MEM_RECLAIM → VM_RESET and VM_STATUS(RESET) →
            VM_DEALLOC_VMID

The RM is the real one; the hypervisor it drives is the recording backend (no guest runs).

Options:
  --json     one JSON object per message (direction, header fields, decoded payload)
  --socket   carry the messages over a Unix stream socket instead of the in-process queue

Examples:
  tsvisor rm demo
  tsvisor rm demo --json | head -4
`;

async function runDemo(args: readonly string[], io: CliIo): Promise<number> {
  const { flags, operands } = parseArgs(args, { json: "flag", socket: "flag" }, "rm demo");
  if (operands.length > 0) throw usage(`'rm demo' takes no operands, got '${operands[0]}'`);
  const json = flags.has("json");
  const trace = (dir: Direction, m: RmMessage) => {
    if (json) io.stdout(`${JSON.stringify({ dir, ...(messageToJson(m) as object) })}\n`);
    else io.stdout(`${traceLine(dir, m)}\n`);
  };
  const say = (s: string) => {
    if (!json) io.stdout(`\n# ${s}\n`);
  };

  const hv = new RecordingHypervisor();
  let client: RmClient;
  let memory: HostMemory;
  let cleanup: () => Promise<void>;
  if (flags.has("socket")) {
    memory = new HostMemory();
    const server = new RmServer(new ResourceManager({ hypervisor: hv, memory }));
    const dir = mkdtempSync(join(tmpdir(), "tsvisor-demo-"));
    const path = join(dir, "rm.sock");
    const listener = await listenRmSocket(server, path);
    client = new RmClient(tapEndpoint(await connectSocketEndpoint(path), trace));
    cleanup = async () => {
      client.close();
      await listener.close();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    };
  } else {
    const stack = createRmStack({ hypervisor: hv });
    memory = stack.memory;
    client = stack.connectHost({ trace });
    cleanup = async () => stack.close();
  }
  try {
    const config = demoConfig();
    const ram = memory.allocate(Number(config.memory.size));
    say(`start: a VM with ${config.vcpus.count} vCPUs and 2 MiB of RAM lent as one parcel`);
    const vm = await startVm(client, memory, {
      config,
      ram,
      dtbOffset: 0x1f_f000n,
      dtbSize: 0x1000n,
      boot: bootRegisters(0x10_0000n, 0x1f_0000n),
    });
    if (!json) {
      io.stdout(`\n# VMID ${vm.vmid} is RUNNING; resources the host holds:\n`);
      for (const r of vm.resources) {
        io.stdout(
          `#   ${nameOf(ResourceType, r.resourceType).padEnd(11)} label=${r.resourceLabel} partner=0x${r.partnerVmid.toString(16)} cap_id=0x${r.capId.toString(16)} virq=${r.virq}\n`,
        );
      }
      io.stdout(`#   hypervisor calls so far: ${hv.calls.map((c) => c.method).join(", ")}\n`);
    }
    say("teardown: forced stop, reclaim, reset, dealloc");
    const exited = await teardownVm(client, vm);
    memory.free(ram);
    if (!json) {
      io.stdout(
        `\n# done: VMID ${vm.vmid} exited (${nameOf(ExitType, exited.exitType)}) and was deallocated; ` +
          `the hypervisor holds ${hv.vms.size} VMs\n`,
      );
    }
    return 0;
  } finally {
    await cleanup();
  }
}

const SERVE_HELP = `Usage: tsvisor rm serve --socket PATH [--vmid N] [--replace]

Runs a Resource Manager for out-of-process clients on a Unix stream socket. Each frame on the
socket is a u16 little-endian length (1…240) followed by one RM queue message, exactly the
bytes a message queue would carry; fragmentation, sequence numbers and replies are as in the
RM protocol. Every connection is served as VMID N (default 3, the host). Structured log lines
(one JSON object each) go to standard error. Stops on SIGINT/SIGTERM.

The RM drives the recording hypervisor backend and reads parcels from its own host memory, so
an out-of-process client can exercise every call; VM_INIT answers MEM_INVALID because the
client's parcel bytes are not in the server's memory (run 'tsvisor rm demo' for a full cycle).

Options:
  --socket PATH   where to listen (required)
  --vmid N        the VMID every connection speaks as (default 3)
  --replace       remove a stale socket file left by a dead server (never a live one)

Examples:
  tsvisor rm serve --socket /tmp/rm.sock &
  tsvisor msg encode '{"type":"REQUEST","seq":1,"msg_name":"VM_GET_VMID"}'
`;

async function runServe(args: readonly string[], io: CliIo): Promise<number> {
  const { flags, operands } = parseArgs(
    args,
    { socket: "value", vmid: "value", replace: "flag" },
    "rm serve",
  );
  if (operands.length > 0) throw usage(`'rm serve' takes no operands, got '${operands[0]}'`);
  const path = flags.get("socket");
  if (typeof path !== "string" || path === "") throw usage("rm serve needs --socket=PATH");
  const vmidText = flags.get("vmid");
  const vmid = vmidText === undefined ? Vmid.HLOS : Number(vmidText);
  if (!Number.isInteger(vmid) || vmid < 0 || vmid > 0xffff) {
    throw usage(`--vmid must be an integer 0…65535, not '${String(vmidText)}'`);
  }
  const log = jsonLineLog((line) => io.stderr(line));
  const memory = new HostMemory();
  const server = new RmServer(
    new ResourceManager({ hypervisor: new RecordingHypervisor(), memory }),
    log,
  );
  const listener = await listenRmSocket(server, path, {
    vmid,
    log,
    replaceStale: flags.has("replace"),
  });
  log.write({ level: "info", event: "server.listening", message: `listening on ${path}`, vmid });
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  await listener.close();
  server.close();
  log.write({ level: "info", event: "server.stopped", message: "stopped" });
  return 0;
}

export const rmGroup: CommandGroup = {
  name: "rm",
  summary: "the Resource Manager: serve it, or watch a VM's lifecycle through it",
  commands: [
    {
      name: "demo",
      args: "[--json] [--socket]",
      summary: "run one VM's whole lifecycle and print every RM message decoded",
      help: DEMO_HELP,
      run: runDemo,
    } satisfies Command,
    {
      name: "serve",
      args: "--socket PATH",
      summary: "serve the RM protocol on a Unix stream socket",
      help: SERVE_HELP,
      run: runServe,
    } satisfies Command,
  ],
};
