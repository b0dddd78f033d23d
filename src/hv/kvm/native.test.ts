import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { Worker } from "node:worker_threads";
import { KVM_IOCTL, SYS } from "./constants.js";
import { kickSignal, loadNative, type NativeSys, nativeAddonPath } from "./native.js";

let sys: NativeSys;
let fdsBefore = 0;
const fds = () => readdirSync("/proc/self/fd").length;

before(() => {
  sys = loadNative();
  fdsBefore = fds();
});
after(() => assert.equal(fds(), fdsBefore, "the binding tests close every fd they open"));

test("calls that fail return -errno instead of throwing", () => {
  assert.equal(sys.ioctl(-1, KVM_IOCTL.GET_API_VERSION, 0), -SYS.EBADF);
  assert.equal(sys.close(-1), -SYS.EBADF);
  assert.equal(sys.open("/nonexistent/tsvisor", SYS.O_RDWR), -SYS.ENOENT);
  assert.equal(sys.mmap(4096, SYS.PROT_READ, SYS.MAP_SHARED, -1, 0), -SYS.EBADF);
});

const FIONREAD = 0x541b;

test("ioctl() passes buffers (with their byte offset) by address and numbers by value", () => {
  // FIONREAD on a regular file stores size - position as an int through the argument pointer.
  const fd = sys.memfdCreate("native-ioctl", SYS.MFD_CLOEXEC);
  try {
    assert.equal(sys.ftruncate(fd, 8192), 0);
    const bytes = new Uint8Array(12);
    assert.equal(sys.ioctl(fd, FIONREAD, bytes.subarray(4)), 0);
    assert.deepEqual([...bytes], [0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0]);
    const view = new DataView(new ArrayBuffer(8), 4);
    assert.equal(sys.ioctl(fd, FIONREAD, view), 0);
    assert.equal(view.getInt32(0, true), 8192);
    const buffer = new ArrayBuffer(4);
    assert.equal(sys.ioctl(fd, FIONREAD, buffer), 0);
    assert.equal(new Int32Array(buffer)[0], 8192);
    assert.equal(
      sys.ioctl(fd, FIONREAD, 0),
      -SYS.EFAULT,
      "a number is a value, here a null pointer",
    );
    assert.equal(sys.ioctl(fd, FIONREAD, 0n), -SYS.EFAULT);
    assert.throws(() => sys.ioctl(fd, FIONREAD, "x" as unknown as number), TypeError);
  } finally {
    sys.close(fd);
  }
});

test("two views of one mapping alias, and a detached view has no bytes", () => {
  const fd = sys.memfdCreate("native-test", SYS.MFD_CLOEXEC);
  assert.ok(fd >= 0);
  assert.equal(sys.ftruncate(fd, 8192), 0);
  const addr = sys.mmap(8192, SYS.PROT_READ | SYS.PROT_WRITE, SYS.MAP_SHARED, fd, 0);
  assert.equal(typeof addr, "bigint");
  const a = sys.view(addr as bigint, 8192);
  const b = sys.view(addr as bigint, 8192);
  new Uint32Array(a)[5] = 0xdeadbeef;
  assert.equal(new DataView(b).getUint32(20, true), 0xdeadbeef);
  sys.detach(a);
  assert.equal(a.byteLength, 0);
  assert.equal(new DataView(b).getUint32(20, true), 0xdeadbeef, "other views are unaffected");
  sys.detach(b);
  assert.equal(sys.munmap(addr as bigint, 8192), 0);
  assert.equal(sys.close(fd), 0);
});

test("view() refuses a zero length, which would give a detached buffer", () => {
  assert.throws(() => sys.view(0x1000n, 0), RangeError);
});

test("an eventfd adds writes until read; a non-blocking empty one reads -EAGAIN", () => {
  const fd = sys.eventfd(0, SYS.EFD_CLOEXEC | SYS.EFD_NONBLOCK);
  try {
    assert.equal(sys.eventfdRead(fd), -SYS.EAGAIN);
    assert.equal(sys.eventfdWrite(fd, 2), 0);
    assert.equal(sys.eventfdWrite(fd, 3n), 0);
    assert.equal(sys.eventfdRead(fd), 5n);
  } finally {
    sys.close(fd);
  }
});

test("installNoopHandler() refuses signals Node or glibc own", () => {
  for (const sig of [2, 10, 11, 15, 32, 33, 0])
    assert.equal(sys.installNoopHandler(sig), -SYS.EINVAL);
});

test("the kick signal is harmless to a thread once its no-op handler is installed", async () => {
  const sig = kickSignal(sys);
  assert.equal(sys.installNoopHandler(sig), 0);
  // Waits on the main thread and in a worker survive a burst of kicks.
  const worker = new Worker(
    `const { parentPort } = require("node:worker_threads");
     const sys = require(${JSON.stringify(nativeAddonPath())});
     parentPort.postMessage(sys.gettid());
     Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
     parentPort.postMessage("alive");`,
    { eval: true },
  );
  const messages: unknown[] = [];
  await new Promise<void>((resolve, reject) => {
    worker.on("message", (m) => {
      messages.push(m);
      if (typeof m === "number") {
        for (let i = 0; i < 20; i++) assert.equal(sys.tgkill(process.pid, m, sig), 0);
        assert.equal(sys.tgkill(process.pid, sys.gettid(), sig), 0);
      }
    });
    worker.on("error", reject);
    worker.on("exit", () => resolve());
  });
  assert.equal(messages.length, 2);
  assert.notEqual(messages[0], sys.gettid(), "the worker has its own tid");
  assert.equal(messages[1], "alive");
});
