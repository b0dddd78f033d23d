import { Vmid } from "../protocol/enums.js";
import type { HypervisorPort } from "../rm/hypervisor.js";
import { RecordingHypervisor } from "../rm/recording-hypervisor.js";
import { ResourceManager } from "../rm/resource-manager.js";
import { RmClient, type RmClientOptions } from "../rpc/client.js";
import { type LogPort, nullLog } from "../rpc/log.js";
import { createMsgqLink } from "../rpc/msgq.js";
import { RmServer } from "../rpc/server.js";
import { type Direction, tapEndpoint } from "../rpc/tap.js";
import type { RmMessage } from "../protocol/message.js";
import { HostMemory } from "./host-memory.js";

/** An RM with its server, the host's memory and a hypervisor, wired in one process. */
export interface RmStack {
  readonly rm: ResourceManager;
  readonly server: RmServer;
  readonly memory: HostMemory;
  readonly hypervisor: HypervisorPort;
  /** Opens a host (VMID 3) link over an in-process message-queue pair. */
  connectHost(opts?: RmClientOptions & { trace?: (dir: Direction, m: RmMessage) => void }): RmClient;
  close(): void;
}

export function createRmStack(
  opts: { hypervisor?: HypervisorPort; log?: LogPort } = {},
): RmStack {
  const memory = new HostMemory();
  const hypervisor = opts.hypervisor ?? new RecordingHypervisor();
  const rm = new ResourceManager({ hypervisor, memory });
  const server = new RmServer(rm, opts.log ?? nullLog);
  const clients = new Set<RmClient>();
  return {
    rm,
    server,
    memory,
    hypervisor,
    connectHost(o = {}) {
      const link = createMsgqLink({ label: "host" });
      server.attach(Vmid.HLOS, link.server);
      const trace = o.trace;
      const endpoint = trace ? tapEndpoint(link.client, trace) : link.client;
      const client = new RmClient(endpoint, o);
      clients.add(client);
      return client;
    },
    close() {
      for (const c of clients) c.close();
      server.close();
    },
  };
}
