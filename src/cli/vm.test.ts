import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { PassThrough } from "node:stream";
import { after, afterEach, before, describe, it } from "node:test";
import type { VmInfo } from "../host/types.js";
import { simGuest } from "../hv/sim/guests/index.js";
import { type Stack, startProxy, startStack, until } from "../sdk/testing/stack.js";
import { main } from "./main.js";
import { captureIo } from "./testing/capture.js";
import {
  type ConsoleTerminal,
  eventLine,
  formatAge,
  formatSize,
  type VmIo,
  vmTable,
} from "./vm.js";

/**
 * `tsvisor vm …` against a real daemon stack in this process (LocalHost on the simulator and
 * the API server on a Unix socket): what each command prints for people and for scripts, its
 * exit status, and its help and usage errors.
 */

type Io = ReturnType<typeof captureIo> & VmIo;

function io(env: Record<string, string | undefined> = {}, extra: Partial<VmIo> = {}): Io {
  return Object.assign(captureIo(), { env, ...extra });
}

const COMMANDS = ["create", "start", "stop", "reset", "rm", "ls", "inspect", "console", "events"];

describe("tsvisor vm: help and usage", () => {
  it("vm --help lists every vm command", async () => {
    const o = io();
    assert.equal(await main(["vm", "--help"], o), 0);
    for (const c of COMMANDS) assert.match(o.text(), new RegExp(`^ {2}vm ${c} `, "m"), c);
  });

  it("every command's help has a usage line, the connection options and examples", async () => {
    for (const c of COMMANDS) {
      const o = io();
      assert.equal(await main(["vm", c, "--help"], o), 0, c);
      const text = o.text();
      assert.match(text, new RegExp(`^Usage: tsvisor vm ${c}`), c);
      assert.match(text, /--socket PATH/, c);
      assert.match(text, /TSVISOR_SOCKET/, c);
      assert.match(text, /\nExamples:\n {2}tsvisor vm /, c);
    }
  });

  it("without --socket or TSVISOR_SOCKET every command is a usage error naming both", async () => {
    for (const argv of [["ls"], ["inspect", "vm-1"], ["create", "--image", "hello"], ["events"]]) {
      const o = io();
      assert.equal(await main(["vm", ...argv], o), 2, argv.join(" "));
      assert.deepEqual(o.out, []);
      assert.match(o.err.join(""), /^tsvisor: CLI_USAGE: .*--socket PATH.*TSVISOR_SOCKET/);
    }
  });

  it("bad command lines exit 2 with one line on stderr", async () => {
    const env = { TSVISOR_SOCKET: "/nonexistent/api.sock" };
    for (const argv of [
      ["create"],
      ["create", "--image"],
      ["create", "--image", "hello", "extra"],
      ["create", "--image", "hello", "--mem", "3"],
      ["create", "--image", "hello", "--vcpus", "3"],
      ["create", "--image", "hello", "--irqchip", "pic"],
      ["create", "--image", "hello", "--reg", "rip=1"],
      ["create", "--image", "hello", "--bogus"],
      ["start"],
      ["start", "a", "b"],
      ["stop", "vm-1", "--timeout", "soon"],
      ["stop", "vm-1", "--timeout", "600001"],
      ["rm"],
      ["ls", "vm-1"],
      ["inspect"],
      ["console"],
      ["events", "a", "b"],
      ["events", "--since", "-1"],
      ["events", "--follow", "--no-follow"],
      ["ls", "--socket", "/a.sock", "--url", "http://127.0.0.1:1"],
      ["ls", "--url", "http://127.0.0.1:1"],
      ["ls", "--url", "http://127.0.0.1:1", "--token-file", "/nonexistent/token"],
    ]) {
      const o = io(argv.includes("--url") ? {} : env);
      assert.equal(await main(["vm", ...argv], o), 2, argv.join(" "));
      assert.deepEqual(o.out, [], argv.join(" "));
      assert.equal(o.err.length, 1, argv.join(" "));
      assert.match(o.err[0]!, /^tsvisor: CLI_USAGE: [^\n]+\n$/, argv.join(" "));
    }
  });

  it("a daemon that is not there is exit status 1, API_CONNECT, with the way to start one", async () => {
    const o = io();
    assert.equal(await main(["vm", "ls", "--socket", "/nonexistent/api.sock"], o), 1);
    assert.match(
      o.err.join(""),
      /^tsvisor: API_CONNECT: cannot reach the tsvisor daemon at \/nonexistent\/api\.sock: ENOENT .*tsvisor daemon --socket PATH/,
    );
  });
});

describe("tsvisor vm: formatting", () => {
  it("sizes and ages in their largest whole unit", () => {
    assert.equal(formatSize(2 * 1024 * 1024), "2M");
    assert.equal(formatSize(64 * 1024), "64K");
    assert.equal(formatSize(1536 * 1024), "1536K");
    assert.equal(formatSize(100), "100");
    assert.equal(formatAge(42_999), "42s");
    assert.equal(formatAge(5 * 60_000), "5m");
    assert.equal(formatAge(3 * 3_600_000), "3h");
    assert.equal(formatAge(2 * 86_400_000), "2d");
  });

  it("the ls table aligns its columns and says why a VM stopped or how long it is up", () => {
    const base: VmInfo = {
      id: "vm-1",
      name: "vm-1",
      state: "running",
      vmid: 0x80,
      rm_status: "RUNNING",
      os_status: 0,
      app_status: 0,
      memory: 2 * 1024 * 1024,
      vcpus: 1,
      irqchip: "kernel",
      image: "hello",
      created_at: "2025-01-01T00:00:00.000Z",
      started_at: "2025-01-01T00:00:05.000Z",
      exit: null,
      resources: [],
      runs: 1,
      console_bytes: 0,
    };
    const exited: VmInfo = {
      ...base,
      id: "vm-12",
      name: "a-longer-name",
      state: "exited",
      vmid: 0x81,
      memory: 64 * 1024,
      exit: {
        exit_type: "PLATFORM_OFF",
        exit_code: 3,
        exit_flags: 0,
        status: 3,
        description: "PLATFORM_OFF code 3",
        initiator: "guest",
        time: "2025-01-01T00:00:06.000Z",
      },
    };
    const made: VmInfo = { ...base, id: "vm-13", state: "created", vmid: null, started_at: null };
    const text = vmTable([base, exited, made], Date.parse("2025-01-01T00:01:05.000Z"));
    assert.equal(
      text,
      [
        "ID     NAME           STATE    VMID  MEM  VCPUS  EXIT/AGE",
        "vm-1   vm-1           running  0x80  2M   1      up 1m",
        "vm-12  a-longer-name  exited   0x81  64K  1      PLATFORM_OFF 3",
        "vm-13  vm-1           created  -     2M   1      created 1m ago",
        "",
      ].join("\n"),
    );
  });

  it("an event line is seq, time, vm, type and the details", () => {
    assert.equal(
      eventLine({
        seq: 7,
        time: "2025-01-01T00:00:00.000Z",
        type: "vm.status",
        vm: "vm-1",
        vmid: 0x80,
        rm_status: "RUNNING",
        os_status: 0,
        app_status: 0,
      }),
      "7 2025-01-01T00:00:00.000Z vm-1 vm.status RUNNING os=0 app=0\n",
    );
    assert.equal(
      eventLine({
        seq: 9,
        time: "2025-01-01T00:00:01.000Z",
        type: "vm.destroyed",
        vm: "vm-1",
        vmid: null,
        reason: "destroy",
      }),
      '9 2025-01-01T00:00:01.000Z vm-1 vm.destroyed reason="destroy"\n',
    );
  });
});

describe("tsvisor vm against a daemon", () => {
  let stack: Stack;
  let env: Record<string, string>;
  const vm = async (...argv: string[]) => {
    const o = io(env);
    const code = await main(["vm", ...argv], o);
    return { code, out: o.text(), err: o.err.join("") };
  };
  before(async () => {
    stack = await startStack({ maxVms: 8 });
    env = { TSVISOR_SOCKET: stack.socket };
  });
  afterEach(async () => {
    for (const v of stack.host.listVms()) await stack.host.destroyVm(v.id);
  });
  after(async () => {
    await stack?.stop();
  });

  it("create prints only the new VM's id", async () => {
    const r = await vm("create", "--image", "hello");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^vm-\d+\n$/);
    assert.equal(r.err, "");
    assert.equal(stack.host.inspect(r.out.trim()).state, "created");
  });

  it("create takes the VM's settings, --start starts it, and --socket works like the variable", async () => {
    const o = io({});
    const code = await main(
      [
        "vm",
        "create",
        "--socket",
        stack.socket,
        "--image=exit-code",
        "--name",
        "seven",
        "--mem",
        "4M",
        "--irqchip",
        "user",
        "--reg",
        "rdi=7",
        "--start",
      ],
      o,
    );
    assert.equal(code, 0, o.err.join(""));
    assert.match(o.text(), /^vm-\d+\n$/);
    const id = o.text().trim();
    const info = stack.host.inspect("seven");
    assert.equal(info.id, id);
    assert.equal(info.memory, 4 * 1024 * 1024);
    assert.equal(info.irqchip, "user");
    await until(() => stack.host.inspect(id).state === "exited", "the guest's exit");
    assert.equal(stack.host.inspect(id).exit?.exit_code, 7);
  });

  it("create sends a FILE as an absolute path (the daemon's directory is not ours)", async () => {
    const file = join(stack.dir, "greeter.sim");
    writeFileSync(file, simGuest("hello"));
    const proxy = await startProxy(stack.socket, join(stack.dir, "proxy.sock"));
    try {
      const o = io({ TSVISOR_SOCKET: proxy.socket });
      assert.equal(await main(["vm", "create", "--image", relative(process.cwd(), file)], o), 0);
      assert.ok(proxy.sent().includes(JSON.stringify({ image: file })), proxy.sent());
      assert.equal(stack.host.inspect(o.text().trim()).image, "greeter");
    } finally {
      await proxy.close();
    }
  });

  it("create --json prints the VM as the API describes it", async () => {
    const r = await vm("create", "--image", "spin", "--json", "--start");
    assert.equal(r.code, 0, r.err);
    const info = JSON.parse(r.out) as VmInfo;
    assert.equal(info.state, "running");
    assert.equal(info.image, "spin");
  });

  it("start, stop and reset say what became of the VM; --json gives the VmInfo", async () => {
    const id = (await vm("create", "--image", "spin", "--name", "spinner")).out.trim();
    let r = await vm("start", "spinner");
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `${id}: running\n`);
    r = await vm("stop", id, "--timeout", "0");
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`^${id}: exited: VM_STOP_FORCED`));
    r = await vm("reset", id, "--json");
    assert.equal(r.code, 0, r.err);
    const info = JSON.parse(r.out) as VmInfo;
    assert.equal(info.state, "created");
    assert.equal(typeof info.vmid, "number");
    r = await vm("start", id);
    r = await vm("stop", id, "--force", "--json");
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(r.out) as VmInfo).exit?.exit_type, "VM_STOP_FORCED");
    r = await vm("reset", id);
    assert.match(r.out, new RegExp(`^${id}: created \\(VMID 0x[0-9a-f]+\\)\\n$`));
  });

  it("the daemon's refusals are exit status 1 with its code and message", async () => {
    const id = (await vm("create", "--image", "spin", "--start")).out.trim();
    let r = await vm("start", id);
    assert.equal(r.code, 1);
    assert.equal(r.out, "");
    assert.match(r.err, /^tsvisor: API_STATE: start vm-\d+: the VM is already running\n$/);
    r = await vm("inspect", "nobody");
    assert.equal(r.code, 1);
    assert.match(r.err, /^tsvisor: API_NOT_FOUND: .*'nobody'/);
    r = await vm("create", "--image", "no-such-guest");
    assert.equal(r.code, 1);
    assert.match(r.err, /^tsvisor: API_IMAGE: /);
    r = await vm("create", "--image", "hello", "--name", "bad name");
    assert.equal(r.code, 1);
    assert.match(r.err, /^tsvisor: API_VALIDATION: name/);
  });

  it("rm destroys VMs; a running one only with --force", async () => {
    const a = (await vm("create", "--image", "hello")).out.trim();
    const b = (await vm("create", "--image", "spin", "--start")).out.trim();
    let r = await vm("rm", a, b, "nobody");
    assert.equal(r.code, 1);
    assert.equal(r.out, `${a}\n`);
    assert.match(r.err, new RegExp(`^tsvisor: API_STATE: ${b} is running; .*--force`, "m"));
    assert.match(r.err, /^tsvisor: API_NOT_FOUND: /m);
    assert.deepEqual(
      stack.host.listVms().map((v) => v.id),
      [b],
    );
    r = await vm("rm", "--force", b);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `${b}\n`);
    assert.deepEqual(stack.host.listVms(), []);
  });

  it("ls prints a table of the VMs, --json the API's list", async () => {
    let r = await vm("ls");
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "ID  NAME  STATE  VMID  MEM  VCPUS  EXIT/AGE\n");
    const a = (await vm("create", "--image", "hello", "--name", "greeter", "--start")).out.trim();
    const b = (await vm("create", "--image", "spin", "--mem", "4M", "--vcpus", "2")).out.trim();
    await until(() => stack.host.inspect(a).state === "exited", "the guest's exit");
    r = await vm("ls");
    const lines = r.out.trimEnd().split("\n");
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /^ID +NAME +STATE +VMID +MEM +VCPUS +EXIT\/AGE$/);
    const col = lines[0]!.indexOf("STATE");
    assert.equal(lines[1]!.slice(col, col + 6), "exited");
    assert.match(
      lines[1]!,
      new RegExp(`^${a} +greeter +exited +0x[0-9a-f]+ +2M +1 +PLATFORM_OFF 0$`),
    );
    assert.match(
      lines[2]!,
      new RegExp(`^${b} +${b} +created +0x[0-9a-f]+ +4M +2 +created \\d+s ago$`),
    );
    r = await vm("ls", "--json");
    const body = JSON.parse(r.out) as { vms: VmInfo[] };
    assert.deepEqual(body.vms, stack.host.listVms());
  });

  it("inspect --json has the RM status and, once exited, the exit type and code", async () => {
    const id = (await vm("create", "--image", "exit-code", "--reg", "rdi=42")).out.trim();
    let r = await vm("inspect", id, "--json");
    let info = JSON.parse(r.out) as VmInfo;
    assert.equal(info.rm_status, "READY");
    assert.equal(info.exit, null);
    await vm("start", id);
    await until(() => stack.host.inspect(id).state === "exited", "the guest's exit");
    r = await vm("inspect", id, "--json");
    info = JSON.parse(r.out) as VmInfo;
    assert.equal(info.rm_status, "EXITED");
    assert.equal(info.exit?.exit_type, "PLATFORM_OFF");
    assert.equal(info.exit?.exit_code, 42);
    r = await vm("inspect", id);
    assert.equal(r.code, 0, r.err);
    const rows = r.out.trimEnd().split("\n");
    const valueAt = rows[0]!.indexOf(id);
    for (const row of rows) assert.match(row.slice(0, valueAt), /^\S+ +$/, `aligned: ${row}`);
    assert.match(r.out, /^rm_status +EXITED$/m);
    assert.match(r.out, /^exit_type +PLATFORM_OFF$/m);
    assert.match(r.out, /^exit_code +42$/m);
    assert.match(r.out, /^resource +\S+ label \d+ cap 0x/m);
  });

  it("events --no-follow prints the retained events and exits; --json one object a line", async () => {
    const since = stack.host.hostInfo().next_event - 1;
    const id = (await vm("create", "--image", "hello", "--start")).out.trim();
    await until(() => stack.host.inspect(id).state === "exited", "the guest's exit");
    const other = (await vm("create", "--image", "hello")).out.trim();
    let r = await vm("events", id, "--since", String(since), "--no-follow");
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split("\n");
    assert.deepEqual(
      lines.map((l) => l.split(" ").slice(2, 4).join(" ")),
      [
        `${id} vm.created`,
        `${id} vm.status`,
        `${id} vm.started`,
        `${id} vm.status`,
        `${id} vm.exited`,
      ],
    );
    assert.match(lines[4]!, /^\d+ \S+Z vm-\d+ vm\.exited PLATFORM_OFF code=0 by=guest/);
    r = await vm("events", "--since", String(since), "--no-follow", "--json");
    const events = r.out
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      events.map((e) => e.seq),
      Array.from({ length: events.length }, (_, i) => since + 1 + i),
    );
    assert.equal(events.at(-1).vm, other);
    r = await vm("events", "nobody", "--no-follow");
    assert.equal(r.code, 1);
    assert.match(r.err, /^tsvisor: API_NOT_FOUND: /);
  });

  it("events follows new events until interrupted", async () => {
    const ac = new AbortController();
    const o = io(env, { signal: ac.signal });
    const local = stack.host;
    const subscribe = local.subscribe;
    let subscribed = false;
    local.subscribe = (opts, onEvent) => {
      subscribed = true;
      return subscribe.call(local, opts, onEvent);
    };
    let following: Promise<number>;
    try {
      following = main(["vm", "events"], o);
      await until(() => subscribed, "the event stream to open");
    } finally {
      local.subscribe = subscribe;
    }
    const since = stack.host.hostInfo().next_event;
    const id = (await vm("create", "--image", "hello")).out.trim();
    await until(() => o.text().includes(`${id} vm.created`), "the event line");
    ac.abort();
    assert.equal(await following, 0);
    assert.match(o.text(), new RegExp(`^${since} \\S+ ${id} vm\\.created`, "m"));
  });
});

describe("tsvisor vm over TCP", () => {
  it("--url with --token-file or TSVISOR_TOKEN; a wrong token is API_UNAUTHORIZED", async () => {
    const stack = await startStack({ tcp: true, token: "t0ken" });
    try {
      const url = `http://127.0.0.1:${stack.tcpPort}`;
      const tokenFile = join(stack.dir, "token");
      writeFileSync(tokenFile, "t0ken\n");
      let o = io({});
      assert.equal(
        await main(
          ["vm", "create", "--url", url, "--token-file", tokenFile, "--image", "hello"],
          o,
        ),
        0,
      );
      assert.match(o.text(), /^vm-\d+\n$/);
      o = io({ TSVISOR_TOKEN: "t0ken" });
      assert.equal(await main(["vm", "ls", "--url", url], o), 0);
      assert.match(o.text(), /^vm-1 +vm-1 +created /m);
      o = io({ TSVISOR_TOKEN: "wrong" });
      assert.equal(await main(["vm", "ls", "--url", url], o), 1);
      assert.match(o.err.join(""), /^tsvisor: API_UNAUTHORIZED: /);
    } finally {
      await stack.stop();
    }
  });
});

describe("tsvisor vm console", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.stop();
  });

  function terminal(tty: boolean) {
    const input = new PassThrough() as PassThrough & {
      isTTY?: boolean;
      isRaw?: boolean;
      setRawMode?(mode: boolean): void;
    };
    const modes: boolean[] = [];
    if (tty) {
      input.isTTY = true;
      input.isRaw = false;
      input.setRawMode = (m: boolean) => {
        modes.push(m);
        input.isRaw = m;
      };
    }
    let out = "";
    const term: ConsoleTerminal = {
      input,
      write: (b) => {
        out += Buffer.from(b).toString("latin1");
      },
    };
    return { input, term, modes, out: () => out };
  }

  it("without a terminal pipes input to the guest and its output out until input ends", async () => {
    const vm = await stack.host.create({ image: "uart-echo" });
    await vm.start();
    const t = terminal(false);
    const o = io({ TSVISOR_SOCKET: stack.socket }, { terminal: t.term });
    const session = main(["vm", "console", vm.id], o);
    t.input.write("hey");
    await until(() => t.out().includes("hey"), "the echo");
    t.input.end("q");
    assert.equal(await session, 0);
    assert.equal((await vm.exited).exit_code, 3);
    assert.deepEqual(t.modes, []);
    await vm.destroy();
  });

  it("on a terminal runs raw, and Ctrl-] detaches with 'detached' and status 0", async () => {
    const vm = await stack.host.create({ image: "uart-echo" });
    await vm.start();
    const t = terminal(true);
    const o = io({ TSVISOR_SOCKET: stack.socket }, { terminal: t.term });
    const session = main(["vm", "console", vm.id], o);
    t.input.write("ab");
    await until(() => t.out().includes("ab"), "the echo");
    t.input.write("c\x1dq");
    assert.equal(await session, 0);
    assert.deepEqual(t.modes, [true, false], "raw mode on, then restored");
    assert.match(o.err.join(""), /detached/);
    const echoed = () => {
      let text = "";
      stack.host
        .attachConsole(
          vm.id,
          { history: true },
          (b) => (text += Buffer.from(b).toString()),
          () => {},
        )
        .detach();
      return text;
    };
    await until(() => echoed() === "abc", "the guest to echo the byte typed before Ctrl-]");
    assert.equal(stack.host.inspect(vm.id).state, "running", "the q after Ctrl-] never reached it");
    await vm.destroy();
  });

  it("ends with status 0 when the VM is destroyed, after replaying its history", async () => {
    const vm = await stack.host.create({ image: "hello" });
    await vm.start();
    await vm.exited;
    const t = terminal(false);
    const o = io({ TSVISOR_SOCKET: stack.socket }, { terminal: t.term });
    const session = main(["vm", "console", vm.id], o);
    await until(() => t.out().includes("Hello"), "the retained output");
    await vm.destroy();
    assert.equal(await session, 0);
  });

  it("of a VM that does not exist is API_NOT_FOUND", async () => {
    const t = terminal(false);
    const o = io({ TSVISOR_SOCKET: stack.socket }, { terminal: t.term });
    assert.equal(await main(["vm", "console", "nobody"], o), 1);
    assert.match(o.err.join(""), /^tsvisor: API_NOT_FOUND: /);
  });
});
