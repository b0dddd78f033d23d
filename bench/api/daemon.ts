/**
 * What the API benchmarks share: a real `tsvisor daemon` as a child process on a Unix socket,
 * a minimal HTTP/JSON client for it (node:http, keep-alive), its event stream over WebSocket,
 * /proc readings of a process's memory, and QEMU microvm as a whole-process baseline.
 * Deliberately independent of the SDK (src/sdk) so the numbers are the API's own.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { kvmAvailable } from "../../src/hv/kvm/kvm-hypervisor.js";
import { ROOT } from "../kvm/common.js";

export const TSVISOR = join(ROOT, "bin", "tsvisor.js");
export const QEMU = "qemu-system-x86_64";

/**
 * KVM when its device can be opened; otherwise the simulator, with the reason (said loudly).
 * The device is TSVISOR_KVM_DEVICE when set, as for the tests (/nonexistent shows the fallback).
 */
export function chooseBackend(): { backend: "kvm" | "sim"; why?: string; kvmArgs: string[] } {
  const device = process.env.TSVISOR_KVM_DEVICE || "/dev/kvm";
  const kvm = kvmAvailable(device);
  if (!kvm.ok) return { backend: "sim", why: kvm.why, kvmArgs: [] };
  return { backend: "kvm", kvmArgs: device === "/dev/kvm" ? [] : ["--kvm-device", device] };
}

export interface HostEvent {
  readonly seq: number;
  readonly type: string;
  readonly vm: string;
  readonly exit?: { readonly exit_type: string; readonly exit_code: number };
}

export interface VmInfo {
  readonly id: string;
  readonly state: string;
  readonly memory: number;
  readonly console_bytes: number;
  readonly exit: { readonly exit_type: string; readonly exit_code: number } | null;
}

export class Daemon {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  private events: WebSocket | undefined;
  private readonly waiters = new Map<string, Map<string, (e: HostEvent) => void>>();
  private readonly seen = new Map<string, HostEvent[]>();

  private constructor(
    readonly child: ChildProcess,
    readonly socket: string,
    private readonly dir: string,
    readonly backend: "kvm" | "sim",
    private readonly stderr: () => string,
  ) {}

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** `tsvisor daemon --socket DIR/api.sock --quiet --backend B`, ready when GET /v1/host answers. */
  static async start(backend: "kvm" | "sim", extra: readonly string[] = []): Promise<Daemon> {
    const dir = mkdtempSync(join(tmpdir(), "tsvisor-bench-"));
    const socket = join(dir, "api.sock");
    const child = spawn(
      process.execPath,
      [TSVISOR, "daemon", "--socket", socket, "--backend", backend, "--quiet", ...extra],
      { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] },
    );
    let err = "";
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString("utf8");
    });
    const d = new Daemon(child, socket, dir, backend, () => err);
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`the daemon exited at start: ${err}`);
      if (existsSync(socket)) {
        try {
          await d.request("GET", "/v1/host");
          break;
        } catch {}
      }
      if (i > 300) throw new Error(`the daemon did not come up in 30 s: ${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return d;
  }

  /** One JSON request; resolves with the parsed body, rejects on a status ≥ 400. */
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = http.request(
        {
          agent: this.agent,
          socketPath: this.socket,
          method,
          path,
          headers: {
            accept: "application/json",
            ...(text !== undefined
              ? { "content-type": "application/json", "content-length": Buffer.byteLength(text) }
              : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const s = Buffer.concat(chunks).toString("utf8");
            if ((res.statusCode ?? 0) >= 400) {
              reject(new Error(`${method} ${path}: HTTP ${res.statusCode} ${s}`));
              return;
            }
            try {
              resolve(JSON.parse(s) as T);
            } catch {
              reject(new Error(`${method} ${path}: not JSON: ${s.slice(0, 200)}`));
            }
          });
        },
      );
      req.on("error", reject);
      req.end(text);
    });
  }

  /** Opens the host's event stream (WebSocket, from now on); resolves once it is open. */
  async follow(): Promise<void> {
    const ws = new WebSocket(`ws+unix://${this.socket}:/v1/events`, { perMessageDeflate: false });
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const e = JSON.parse(data.toString()) as HostEvent;
      const w = this.waiters.get(e.vm)?.get(e.type);
      if (w) {
        this.waiters.get(e.vm)?.delete(e.type);
        w(e);
      } else {
        const list = this.seen.get(e.vm) ?? [];
        list.push(e);
        this.seen.set(e.vm, list);
      }
    });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    this.events = ws;
  }

  /** The next event of `type` for VM `id` (one that already arrived counts). */
  event(id: string, type: string): Promise<HostEvent> {
    const early = this.seen.get(id);
    const i = early?.findIndex((e) => e.type === type) ?? -1;
    if (early && i >= 0) return Promise.resolve(early.splice(i, 1)[0] as HostEvent);
    return new Promise((resolve) => {
      const m = this.waiters.get(id) ?? new Map<string, (e: HostEvent) => void>();
      m.set(type, resolve);
      this.waiters.set(id, m);
    });
  }

  /** Drops what the stream kept about a VM that is gone. */
  forget(id: string): void {
    this.seen.delete(id);
    this.waiters.delete(id);
  }

  /** SIGTERM (the daemon's graceful shutdown) and the wait for its exit; removes the temp dir. */
  async stop(): Promise<void> {
    this.events?.terminate();
    this.agent.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((r) => this.child.once("exit", () => r()));
      this.child.kill("SIGTERM");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
    if (this.child.exitCode !== 0) {
      throw new Error(`the daemon exited with ${this.child.exitCode}: ${this.stderr()}`);
    }
  }
}

/** Fields of /proc/PID/status: the memory ones in bytes (VmRSS, VmHWM, RssAnon…), Threads. */
export function procStatus(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, "utf8").split("\n")) {
    const m = /^(Vm\w+|Rss\w+):\s+(\d+) kB/.exec(line);
    if (m) out[m[1] as string] = Number(m[2]) * 1024;
    const t = /^Threads:\s+(\d+)/.exec(line);
    if (t) out.Threads = Number(t[1]);
  }
  return out;
}

/**
 * Bytes resident in the process's mappings of memfds whose name starts with `prefix` (the
 * VMM's guest RAM is memfd-backed: what the guest and the loader touched), from
 * /proc/PID/smaps.
 */
export function memfdResident(pid: number, prefix: string): { bytes: number; mappings: number } {
  let bytes = 0;
  let mappings = 0;
  let inside = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      inside = line.includes(`/memfd:${prefix}`);
      if (inside) mappings++;
    } else if (inside) {
      const m = /^Rss:\s+(\d+) kB/.exec(line);
      if (m) bytes += Number(m[1]) * 1024;
    }
  }
  return { bytes, mappings };
}

export function qemuVersion(): string | undefined {
  const r = spawnSync(QEMU, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split("\n")[0];
}

export { qemuArgs } from "../kvm/common.js";

/** Runs `count` async jobs with at most `width` at once; resolves with their results in order. */
export async function pool<T>(
  count: number,
  width: number,
  job: (i: number) => Promise<T>,
): Promise<T[]> {
  const out: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      out[i] = await job(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
  return out;
}
