import type { Hypervisor } from "../hv/types.js";
import { Vmid } from "../protocol/enums.js";
import type { RmMessage } from "../protocol/message.js";
import type { HypervisorPort } from "../rm/hypervisor.js";
import { RecordingHypervisor } from "../rm/recording-hypervisor.js";
import { ResourceManager } from "../rm/resource-manager.js";
import { RmClient, type RmClientOptions } from "../rpc/client.js";
import { type LogPort, nullLog } from "../rpc/log.js";
import { createMsgqLink } from "../rpc/msgq.js";
import { RmServer } from "../rpc/server.js";
import { type Direction, tapEndpoint } from "../rpc/tap.js";
import { HostMemory } from "./host-memory.js";
import { KvmHypervisorPort, type KvmPortOptions } from "./kvm-port.js";

/** An RM with its server, the host's memory and a hypervisor, wired in one process. */
export interface RmStack {
  readonly rm: ResourceManager;
  readonly server: RmServer;
  readonly memory: HostMemory;
  readonly hypervisor: HypervisorPort;
  /** The real-VM port, when the stack was made with a backend. */
  readonly port: KvmHypervisorPort | undefined;
  /** Opens a host (VMID 3) link over an in-process message-queue pair. */
  connectHost(
    opts?: RmClientOptions & { trace?: (dir: Direction, m: RmMessage) => void },
  ): RmClient;
  /**
   * Closes the clients and the server; with a backend, also stops and tears down every VM
   * still alive and ends the idle vCPU threads (the promise settles when all of that is done).
   * The backend itself stays open: its owner closes it.
   */
  close(): Promise<void>;
}

export interface RmStackOptions {
  /** The port the RM drives; default: a RecordingHypervisor (nothing runs). */
  readonly hypervisor?: HypervisorPort;
  /**
   * Run VMs for real on this backend: host memory becomes its guest memory and the RM drives
   * a KvmHypervisorPort over it (`hypervisor` is then ignored).
   */
  readonly backend?: Hypervisor;
  readonly portOptions?: KvmPortOptions;
  readonly log?: LogPort;
}

export function createRmStack(opts: RmStackOptions = {}): RmStack {
  const backend = opts.backend;
  const memory = new HostMemory(backend ? { hypervisor: backend } : {});
  let port: KvmHypervisorPort | undefined;
  let hypervisor: HypervisorPort;
  if (backend) {
    port = new KvmHypervisorPort(backend, memory, opts.portOptions);
    hypervisor = port;
  } else {
    hypervisor = opts.hypervisor ?? new RecordingHypervisor();
  }
  const rm = new ResourceManager({ hypervisor, memory });
  const server = new RmServer(rm, opts.log ?? nullLog);
  port?.connect(server);
  const clients = new Set<RmClient>();
  return {
    rm,
    server,
    memory,
    hypervisor,
    port,
    connectHost(o = {}) {
      const link = createMsgqLink({ label: "host" });
      server.attach(Vmid.HLOS, link.server);
      const trace = o.trace;
      const endpoint = trace ? tapEndpoint(link.client, trace) : link.client;
      const client = new RmClient(endpoint, o);
      clients.add(client);
      return client;
    },
    async close() {
      for (const c of clients) c.close();
      await port?.close();
      server.close();
      memory.collect();
    },
  };
}
