import assert from "node:assert/strict";
import { test } from "node:test";
import { Uart16550 } from "./uart16550.js";

const THR = 0;
const IER = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

function uart(): { u: Uart16550; out: number[] } {
  const out: number[] = [];
  return { u: new Uart16550((b) => out.push(b)), out };
}

test("bytes written to THR go to the output in order", () => {
  const { u, out } = uart();
  for (const c of "Hi\n") u.pioWrite(THR, 1, c.charCodeAt(0));
  assert.deepEqual(String.fromCharCode(...out), "Hi\n");
});

test("the transmitter always reports ready (THRE and TEMT)", () => {
  const { u } = uart();
  assert.equal(u.pioRead(LSR, 1) & 0x60, 0x60);
  u.pioWrite(THR, 1, 0x41);
  assert.equal(u.pioRead(LSR, 1) & 0x60, 0x60);
});

test("with DLAB set, offsets 0 and 1 are the divisor latch and nothing is transmitted", () => {
  const { u, out } = uart();
  u.pioWrite(LCR, 1, 0x83);
  u.pioWrite(0, 1, 0x01);
  u.pioWrite(1, 1, 0x02);
  assert.deepEqual([u.pioRead(0, 1), u.pioRead(1, 1)], [0x01, 0x02]);
  u.pioWrite(LCR, 1, 0x03);
  assert.equal(u.pioRead(IER, 1), 0, "IER was not touched by the divisor write");
  assert.deepEqual(out, []);
});

test("IER, LCR, MCR and the scratch register read back what was written", () => {
  const { u } = uart();
  u.pioWrite(IER, 1, 0xff);
  u.pioWrite(LCR, 1, 0x1b);
  u.pioWrite(MCR, 1, 0xff);
  u.pioWrite(SCR, 1, 0x5a);
  assert.deepEqual(
    [IER, LCR, MCR, SCR].map((r) => u.pioRead(r, 1)),
    [0x0f, 0x1b, 0x1f, 0x5a],
  );
});

test("received bytes are read from RBR in order while LSR shows data ready", () => {
  const { u } = uart();
  assert.equal(u.pioRead(LSR, 1) & 1, 0);
  u.receive([0x61, 0x62]);
  assert.equal(u.pioRead(LSR, 1) & 1, 1);
  assert.equal(u.pioRead(0, 1), 0x61);
  assert.equal(u.pioRead(0, 1), 0x62);
  assert.equal(u.pioRead(LSR, 1) & 1, 0);
});

test("IIR reports no interrupt pending, with the FIFO bits once FIFOs are enabled", () => {
  const { u } = uart();
  assert.equal(u.pioRead(IIR_FCR, 1), 0x01);
  u.pioWrite(IIR_FCR, 1, 0x07);
  assert.equal(u.pioRead(IIR_FCR, 1), 0xc1);
});

test("in loopback mode transmitted bytes come back as received data, not output", () => {
  const { u, out } = uart();
  u.pioWrite(MCR, 1, 0x10);
  u.pioWrite(THR, 1, 0x7a);
  assert.deepEqual(out, []);
  assert.equal(u.pioRead(0, 1), 0x7a);
  assert.equal(u.pioRead(MSR, 1), 0x00);
  u.pioWrite(MCR, 1, 0x00);
  assert.equal(u.pioRead(MSR, 1), 0xb0, "outside loopback a terminal appears attached");
});

test("a UART with an input source shows its bytes in LSR.DR and RBR, in order, only when asked", () => {
  const pending = [0x68, 0x69];
  let polls = 0;
  const uart = new Uart16550(
    () => {},
    () => {
      polls++;
      return pending.splice(0);
    },
  );
  assert.equal(uart.pioRead(5, 1) & 1, 1, "DR set once input arrived");
  assert.equal(uart.pioRead(0, 1), 0x68);
  assert.equal(uart.pioRead(0, 1), 0x69);
  assert.equal(uart.pioRead(5, 1) & 1, 0, "DR clear when drained");
  const before = polls;
  uart.pioRead(7, 1);
  assert.equal(polls, before, "other registers do not consume input");
});
