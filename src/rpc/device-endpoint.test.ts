import assert from "node:assert/strict";
import { test } from "node:test";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import {
  createRmMsgqShared,
  RM_MSGQ_DEPTH,
  RM_MSGQ_IRQ_RX,
  RmMsgqDevice,
  RmMsgqReg,
  RmMsgqStatus,
} from "../devices/rm-msgq.js";
import { HostRecorder, MsgqGuest } from "../devices/testing/msgq-guest.js";
import { RequestId } from "../protocol/catalogue.js";
import { ExitType, Vmid } from "../protocol/enums.js";
import { decodeHeader, MsgType } from "../protocol/header.js";
import { fragment, type RmMessage } from "../protocol/message.js";
import { RmError } from "../protocol/rm-error.js";
import { Harness } from "../rm/testing/harness.js";
import { RmClient } from "./client.js";
import { RmMsgqDeviceEndpoint } from "./device-endpoint.js";
import { createMsgqLink } from "./msgq.js";
import { RmServer } from "./server.js";
import { tapEndpoint } from "./tap.js";

function setup() {
  const shared = createRmMsgqShared();
  const guest = new MsgqGuest(new RmMsgqDevice(shared));
  const host = new HostRecorder();
  const endpoint = new RmMsgqDeviceEndpoint(shared, host.raiseIrq, "guest-msgq");
  return { shared, guest, host, endpoint };
}

const msg = (n: number, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i + seed) & 0xff);

test("messages the guest sends arrive whole and in order, also those sent before start()", async () => {
  const { guest, host, endpoint } = setup();
  assert.equal(guest.send(msg(8, 1)), 0);
  assert.equal(guest.send(msg(240, 2)), 0);
  endpoint.start(host);
  await host.when(() => host.messages.length === 2);
  assert.equal(guest.send(msg(1, 3)), 0);
  await host.when(() => host.messages.length === 3);
  assert.deepEqual(host.messages, [msg(8, 1), msg(240, 2), msg(1, 3)]);
  assert.equal(guest.r32(RmMsgqReg.TX_COUNT), 0, "delivered messages leave the TX queue");
  endpoint.close();
});

test("send() fills the guest's RX queue: not-full until the eighth, RPC_QUEUE_FULL after", () => {
  const { endpoint } = setup();
  for (let i = 1; i <= RM_MSGQ_DEPTH; i++) {
    assert.equal(endpoint.writable, true);
    assert.equal(endpoint.send(msg(12, i)), i < RM_MSGQ_DEPTH);
  }
  assert.equal(endpoint.writable, false);
  assert.throws(
    () => endpoint.send(msg(12)),
    (e: unknown) => isTsvisorError(e, "RPC_QUEUE_FULL"),
  );
  endpoint.close();
});

test("writable() is signalled once when the guest pops from a full RX queue", async () => {
  const { guest, host, endpoint } = setup();
  endpoint.start(host);
  for (let i = 0; i < RM_MSGQ_DEPTH; i++) endpoint.send(msg(12, i));
  assert.deepEqual(guest.receive(), msg(12, 0));
  await host.when(() => host.writables === 1);
  assert.equal(endpoint.writable, true);
  assert.equal(endpoint.send(msg(12, 8)), false, "full again");
  assert.deepEqual(guest.receive(), msg(12, 1));
  guest.receive();
  await host.when(() => host.writables === 2);
  // Pops that do not follow a full queue signal nothing more.
  guest.receive();
  guest.w32(RmMsgqReg.IRQ_ENABLE, 1);
  await host.when(() => host.irq.length > 0);
  assert.equal(host.writables, 2);
  endpoint.close();
});

test("the interrupt is a level: raised while RX holds messages and IRQ_ENABLE is set", async () => {
  const { guest, host, endpoint } = setup();
  endpoint.start(host);
  endpoint.send(msg(8, 1));
  assert.deepEqual(host.irq, [], "disabled by default");
  guest.w32(RmMsgqReg.IRQ_ENABLE, RM_MSGQ_IRQ_RX);
  await host.when(() => host.irqLevel);
  assert.ok(guest.status & RmMsgqStatus.IRQ);
  endpoint.send(msg(8, 2));
  assert.deepEqual(host.irq, [true], "a second message does not raise it again");
  guest.receive();
  guest.receive();
  await host.when(() => !host.irqLevel);
  endpoint.send(msg(8, 3));
  assert.deepEqual(host.irq, [true, false, true], "send() raises it at once");
  guest.w32(RmMsgqReg.IRQ_ENABLE, 0);
  await host.when(() => !host.irqLevel);
  assert.equal(guest.status & RmMsgqStatus.IRQ, 0);
  guest.w32(RmMsgqReg.IRQ_ENABLE, RM_MSGQ_IRQ_RX);
  await host.when(() => host.irqLevel);
  endpoint.close();
  assert.deepEqual(host.irq, [true, false, true, false, true, false], "close lowers it");
});

test("pause() holds the guest's messages back, so its TX queue fills; resume() delivers them", async () => {
  const { guest, host, endpoint } = setup();
  endpoint.start(host);
  endpoint.pause();
  for (let i = 0; i < RM_MSGQ_DEPTH; i++) assert.equal(guest.send(msg(9, i)), 0);
  assert.equal(guest.status & RmMsgqStatus.TX_NOT_FULL, 0);
  endpoint.resume();
  await host.when(() => host.messages.length === RM_MSGQ_DEPTH);
  assert.ok(guest.status & RmMsgqStatus.TX_NOT_FULL);
  endpoint.close();
});

test("close(): the close handler runs once with the reason; later sends fail with RPC_CLOSED", async () => {
  const { host, endpoint } = setup();
  endpoint.start(host);
  const reason = new TsvisorError("RPC_ABORTED", "test");
  endpoint.close(reason);
  endpoint.close();
  assert.equal(endpoint.closed, true);
  assert.equal(endpoint.writable, false);
  await host.when(() => host.closes.length === 1);
  assert.equal(host.closes[0], reason);
  assert.throws(
    () => endpoint.send(msg(8)),
    (e: unknown) => isTsvisorError(e, "RPC_CLOSED"),
  );
  assert.throws(
    () => endpoint.send(msg(241)),
    (e: unknown) => isTsvisorError(e, "RPC_CLOSED"),
  );
});

test("a message above 240 bytes is refused with PROTO_TOO_LONG; a closed buffer cannot be reused", () => {
  const { shared, host, endpoint } = setup();
  assert.throws(
    () => endpoint.send(msg(241)),
    (e: unknown) => isTsvisorError(e, "PROTO_TOO_LONG"),
  );
  endpoint.close();
  assert.throws(
    () => new RmMsgqDeviceEndpoint(shared, host.raiseIrq, "again"),
    (e: unknown) => isTsvisorError(e, "RPC_CLOSED"),
  );
});

test("a handler that throws closes the link with RPC_ABORTED instead of escaping", async () => {
  const { guest, host, endpoint } = setup();
  endpoint.start({
    ...host,
    message: () => {
      throw new Error("boom");
    },
    writable: () => {},
    close: (r) => host.close(r),
  });
  guest.send(msg(8));
  await host.when(() => host.closes.length === 1);
  assert.ok(isTsvisorError(host.closes[0], "RPC_ABORTED"));
  assert.ok(guest.status & RmMsgqStatus.LINK_DOWN);
});

// ---- Against the real Resource Manager ----

function request(seq: number, msgId: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const [m] = fragment({ type: MsgType.REQUEST, seq, msgId, payload });
  return m!;
}

/**
 * Serves `endpoint` as `vmid`, recording what the RM sends through it; `replyTo(seq)` pops the
 * guest's RX queue through the registers, skipping notifications, until that reply.
 */
function serveGuest(
  server: RmServer,
  vmid: number,
  guest: MsgqGuest,
  host: HostRecorder,
  endpoint: RmMsgqDeviceEndpoint,
) {
  const sent: RmMessage[] = [];
  server.attach(
    vmid,
    tapEndpoint(endpoint, (dir, m) => {
      if (dir === "out") {
        sent.push(m);
        host.poke();
      }
    }),
  );
  return async (seq: number): Promise<Uint8Array> => {
    await host.when(() => sent.some((m) => m.type === MsgType.REPLY && m.seq === seq));
    for (;;) {
      const m = guest.receive();
      assert.ok(m, "the reply is in the guest's queue once the RM has sent it");
      const h = decodeHeader(m);
      if (h.type === MsgType.REPLY && h.seq === seq) return m;
    }
  };
}

function rmWithRunningVm() {
  const h = new Harness();
  const { vmid } = h.running();
  const server = new RmServer(h.rm);
  return { h, vmid, server };
}

test("the real RM answers VM_GET_VMID sent through the device registers", async () => {
  const { vmid, server } = rmWithRunningVm();
  const { guest, host, endpoint } = setup();
  const replyTo = serveGuest(server, vmid, guest, host, endpoint);
  guest.w32(RmMsgqReg.IRQ_ENABLE, RM_MSGQ_IRQ_RX);
  assert.equal(guest.send(request(0x31, RequestId.VM_GET_VMID)), 0);
  await host.when(() => host.irqLevel);
  const reply = await replyTo(0x31);
  const v = new DataView(reply.buffer, reply.byteOffset, reply.length);
  assert.equal(reply.length, 16, "header, error code, vmid");
  assert.equal(decodeHeader(reply).msgId, RequestId.VM_GET_VMID);
  assert.equal(v.getUint32(8, true), RmError.OK);
  assert.equal(v.getUint32(12, true), vmid);
  // Popping the reply lowers the interrupt.
  await host.when(() => !host.irqLevel);
  server.close();
  assert.equal(endpoint.closed, true, "closing the server closes the link");
});

test("a guest's VM_EXIT through the device exits its VM: the host sees VM_EXITED with the code", async () => {
  const { vmid, server } = rmWithRunningVm();
  const hostLink = createMsgqLink({ label: "host" });
  server.attach(Vmid.HLOS, hostLink.server);
  const client = new RmClient(hostLink.client);
  const exited = client.waitFor((n) => n.kind === "vmExited" && n.vmid === vmid);
  const { guest, host, endpoint } = setup();
  const replyTo = serveGuest(server, vmid, guest, host, endpoint);

  // exit_flags 0, exit_code 7: not a code a guest may send, so the RM refuses it.
  assert.equal(guest.send(request(1, RequestId.VM_EXIT, new Uint8Array([0, 0, 7, 0]))), 0);
  let reply = await replyTo(1);
  assert.equal(new DataView(reply.buffer).getUint32(8, true), RmError.ARGUMENT_INVALID);

  assert.equal(guest.send(request(2, RequestId.VM_EXIT, new Uint8Array([0, 0, 3, 0]))), 0);
  reply = await replyTo(2);
  assert.equal(new DataView(reply.buffer).getUint32(8, true), RmError.OK);
  const e = await exited;
  assert.ok(e.kind === "vmExited");
  assert.equal(e.exitType, ExitType.VM_EXIT);
  assert.deepEqual([...e.exitReason], [0, 0, 3, 0], "exit_flags 0, exit_code 3 (BUS_ERROR)");
  client.close();
  server.close();
});
