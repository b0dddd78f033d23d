/**
 * bench/rm-rpc — RM RPC speed, each figure beside a baseline measured in the same run:
 *   round trips over the in-process message queue and over a Unix socket, compared with a bare
 *   echo of one queue message over the same transport; and reassembly of maximum-size
 *   (14,616-byte, 63-fragment) messages, compared with concatenating the same fragments.
 * Prints a table and writes bench/results/rm-rpc.json. Usage: node dist/bench/rm-rpc.js [--quick]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectSocketEndpoint, SocketEndpoint } from "../src/os/socket-endpoint.js";
import { listenRmSocket } from "../src/os/socket-server.js";
import { concatBytes } from "../src/protocol/bytes.js";
import { RequestId } from "../src/protocol/catalogue.js";
import { MsgType, RM_MAX_PAYLOAD } from "../src/protocol/header.js";
import { fragment, Reassembler } from "../src/protocol/message.js";
import { RecordingHypervisor } from "../src/rm/recording-hypervisor.js";
import { ResourceManager } from "../src/rm/resource-manager.js";
import { RmClient } from "../src/rpc/client.js";
import { createMsgqLink } from "../src/rpc/msgq.js";
import { RmServer } from "../src/rpc/server.js";
import type { MessageEndpoint } from "../src/rpc/transport.js";
import { HostMemory } from "../src/vmm/host-memory.js";

const quick = process.argv.includes("--quick");
const N_MSGQ = quick ? 2_000 : 20_000;
const N_SOCK = quick ? 1_000 : 10_000;
const N_REASM = quick ? 2_000 : 20_000;
const WARMUP = 0.1;

interface Stat {
  readonly perSecond: number;
  readonly p50us: number;
  readonly p99us: number;
  readonly n: number;
}

function stats(samples: bigint[], totalNs: bigint): Stat {
  const us = samples.map((s) => Number(s) / 1000).sort((a, b) => a - b);
  const at = (q: number) => us[Math.min(us.length - 1, Math.floor(q * us.length))] ?? 0;
  return {
    perSecond: (samples.length * 1e9) / Number(totalNs),
    p50us: at(0.5),
    p99us: at(0.99),
    n: samples.length,
  };
}

async function timeLoop(n: number, once: () => Promise<unknown>): Promise<Stat> {
  for (let i = 0; i < Math.floor(n * WARMUP); i++) await once();
  const samples: bigint[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const a = process.hrtime.bigint();
    await once();
    samples.push(process.hrtime.bigint() - a);
  }
  return stats(samples, process.hrtime.bigint() - t0);
}

/** A raw requester over an endpoint: sends one queue message, resolves on the next received. */
function rawRequester(ep: MessageEndpoint): (msg: Uint8Array) => Promise<void> {
  let waiting: (() => void) | undefined;
  ep.start({
    message() {
      const w = waiting;
      waiting = undefined;
      w?.();
    },
    writable() {},
    close() {},
  });
  return (msg) =>
    new Promise<void>((resolve) => {
      waiting = resolve;
      ep.send(msg, true);
    });
}

/** The baseline server: echoes every queue message back unchanged. */
function echo(ep: MessageEndpoint): void {
  ep.start({
    message(m) {
      ep.send(m, true);
    },
    writable() {},
    close() {},
  });
}

const GET_VMID_REQUEST = fragment({
  type: MsgType.REQUEST,
  seq: 1,
  msgId: RequestId.VM_GET_VMID,
  payload: new Uint8Array(0),
})[0] as Uint8Array;

function newRm(): RmServer {
  return new RmServer(
    new ResourceManager({ hypervisor: new RecordingHypervisor(), memory: new HostMemory() }),
  );
}

async function benchMsgq(): Promise<{ rm: Stat; echo: Stat }> {
  const e = createMsgqLink();
  echo(e.server);
  const send = rawRequester(e.client);
  const echoStat = await timeLoop(N_MSGQ, () => send(GET_VMID_REQUEST));
  e.client.close();

  const server = newRm();
  const link = createMsgqLink();
  server.attach(3, link.server);
  const client = new RmClient(link.client);
  const rmStat = await timeLoop(N_MSGQ, () => client.getVmid());
  client.close();
  server.close();
  return { rm: rmStat, echo: echoStat };
}

async function benchSocket(dir: string): Promise<{ rm: Stat; echo: Stat }> {
  const echoPath = join(dir, "echo.sock");
  const echoServer = net.createServer((s) => echo(new SocketEndpoint(s, "echo")));
  await new Promise<void>((r) => echoServer.listen(echoPath, r));
  const ep = await connectSocketEndpoint(echoPath);
  const send = rawRequester(ep);
  const echoStat = await timeLoop(N_SOCK, () => send(GET_VMID_REQUEST));
  ep.close();
  await new Promise<void>((r) => echoServer.close(() => r()));

  const server = newRm();
  const rmPath = join(dir, "rm.sock");
  const listener = await listenRmSocket(server, rmPath);
  const client = new RmClient(await connectSocketEndpoint(rmPath));
  const rmStat = await timeLoop(N_SOCK, () => client.getVmid());
  client.close();
  await listener.close();
  server.close();
  return { rm: rmStat, echo: echoStat };
}

function benchReassembly(): { reassemble: number; concat: number } {
  const payload = new Uint8Array(RM_MAX_PAYLOAD).map((_, i) => i & 0xff);
  const frags = fragment({ type: MsgType.NOTIFICATION, seq: 1, msgId: 0x56100080, payload });
  const r = new Reassembler("rm");
  const mbps = (n: number, ns: bigint) => (n * RM_MAX_PAYLOAD) / 1e6 / (Number(ns) / 1e9);
  const run = (once: () => void) => {
    for (let i = 0; i < N_REASM * WARMUP; i++) once();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N_REASM; i++) once();
    return mbps(N_REASM, process.hrtime.bigint() - t0);
  };
  let sink = 0;
  const reassemble = run(() => {
    for (const f of frags)
      for (const ev of r.push(f)) if (ev.kind === "message") sink += ev.message.payload.length;
  });
  const concat = run(() => {
    sink += concatBytes(frags.map((f) => f.subarray(8))).length;
  });
  if (sink === 0) throw new Error("nothing was reassembled");
  return { reassemble, concat };
}

const dir = mkdtempSync(join(tmpdir(), "tsvisor-bench-"));
try {
  const msgq = await benchMsgq();
  const sock = await benchSocket(dir);
  const reasm = benchReassembly();
  const rows = [
    ["in-process msgq", "RM call VM_GET_VMID", msgq.rm, "bare echo", msgq.echo],
    ["unix socket", "RM call VM_GET_VMID", sock.rm, "bare echo", sock.echo],
  ] as const;
  const out: string[] = [];
  out.push(
    "| transport | measured | calls/s | p50 µs | p99 µs | baseline | calls/s | p50 µs | p99 µs | throughput ratio |",
  );
  out.push("|---|---|---:|---:|---:|---|---:|---:|---:|---:|");
  for (const [t, what, s, base, b] of rows) {
    out.push(
      `| ${t} | ${what} | ${s.perSecond.toFixed(0)} | ${s.p50us.toFixed(1)} | ${s.p99us.toFixed(1)} | ${base} | ${b.perSecond.toFixed(0)} | ${b.p50us.toFixed(1)} | ${b.p99us.toFixed(1)} | ${(s.perSecond / b.perSecond).toFixed(2)} |`,
    );
  }
  out.push("");
  out.push(
    "| reassembly of 14,616-byte messages (63 fragments) | MB/s | baseline: concatenating the fragments | MB/s | ratio |",
  );
  out.push("|---|---:|---|---:|---:|");
  out.push(
    `| Reassembler ("rm" rules) | ${reasm.reassemble.toFixed(0)} | concatBytes | ${reasm.concat.toFixed(0)} | ${(reasm.reassemble / reasm.concat).toFixed(2)} |`,
  );
  process.stdout.write(`${out.join("\n")}\n`);
  const resultsDir = join(process.cwd(), "bench", "results");
  mkdirSync(resultsDir, { recursive: true });
  const json = {
    bench: "rm-rpc",
    node: process.version,
    quick,
    msgq,
    socket: sock,
    reassembly: reasm,
    ratios: {
      msgqCallVsEcho: msgq.rm.perSecond / msgq.echo.perSecond,
      socketCallVsEcho: sock.rm.perSecond / sock.echo.perSecond,
      reassemblyVsConcat: reasm.reassemble / reasm.concat,
    },
  };
  writeFileSync(join(resultsDir, "rm-rpc.json"), `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write("wrote bench/results/rm-rpc.json\n");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
