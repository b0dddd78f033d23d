import assert from "node:assert/strict";
import { test } from "node:test";
import { VcpuControl, VcpuState } from "./control.js";

test("a wake never hides a stop: both requests are kept", () => {
  const c = new VcpuControl(VcpuControl.allocate());
  c.requestWake();
  c.requestStop();
  assert.equal(c.stopRequested, true);
  assert.equal(c.takeWake(), true);
  assert.equal(c.takeWake(), false);
  assert.equal(c.stopRequested, true);
});

test("waitForRequest() returns at once when a request is pending", () => {
  const c = new VcpuControl(VcpuControl.allocate());
  c.requestWake();
  c.waitForRequest();
  assert.equal(c.takeWake(), true);
});

test("two views of the same buffer see each other's state", () => {
  const buffer = VcpuControl.allocate();
  const a = new VcpuControl(buffer);
  const b = new VcpuControl(buffer);
  assert.equal(b.state, VcpuState.CREATED);
  a.setState(VcpuState.HALTED);
  assert.equal(b.state, VcpuState.HALTED);
  b.requestStop();
  assert.equal(a.stopRequested, true);
});

test("waitWhile() returns at once with the state when it already differs", () => {
  const c = new VcpuControl(VcpuControl.allocate());
  c.setState(VcpuState.EXITED);
  assert.equal(c.waitWhile(VcpuState.RUNNING, 60_000), VcpuState.EXITED);
});
