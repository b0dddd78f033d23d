import assert from "node:assert/strict";
import { test } from "node:test";
import { TsvisorError } from "../core/errors.js";
import { COMMANDS, type Command, main, topHelp } from "./main.js";
import { captureIo } from "./testing/capture.js";

const capture = captureIo;

test("--help, -h and help print the command list on stdout and exit 0", async () => {
  for (const argv of [["--help"], ["-h"], ["help"]]) {
    const io = capture();
    assert.equal(await main(argv, io), 0);
    assert.equal(io.out.join(""), topHelp());
    assert.match(io.out.join(""), /msg decode HEX… \| -/);
    assert.deepEqual(io.err, []);
  }
});

test("no command is a usage error: one line on stderr, exit 2", async () => {
  const io = capture();
  assert.equal(await main([], io), 2);
  assert.deepEqual(io.out, []);
  assert.equal(io.err.length, 1);
  assert.match(io.err[0]!, /^tsvisor: CLI_USAGE: no command given .*\n$/);
});

test("an unknown command or subcommand is a usage error naming it", async () => {
  for (const [argv, name] of [
    [["fly"], "fly"],
    [["msg", "fly"], "msg fly"],
  ] as const) {
    const io = capture();
    assert.equal(await main(argv, io), 2);
    assert.match(io.err.join(""), new RegExp(`CLI_USAGE: unknown command '${name}'`));
  }
});

test("a group without a subcommand is a usage error; with --help it lists its commands", async () => {
  const bare = capture();
  assert.equal(await main(["msg"], bare), 2);
  const help = capture();
  assert.equal(await main(["msg", "--help"], help), 0);
  assert.match(help.out.join(""), /msg encode JSON… \| -/);
});

test("'help msg decode' and 'msg decode --help' print the same help with usage and examples", async () => {
  const a = capture();
  const b = capture();
  assert.equal(await main(["help", "msg", "decode"], a), 0);
  assert.equal(await main(["msg", "decode", "--help"], b), 0);
  assert.equal(a.out.join(""), b.out.join(""));
  assert.match(a.out.join(""), /^Usage: tsvisor msg decode/);
  assert.match(a.out.join(""), /Examples:/);
});

test("every command has help that starts with its usage line and shows an example", () => {
  for (const e of COMMANDS) {
    const cmds: Command[] = "commands" in e ? [...e.commands] : [e];
    for (const c of cmds) {
      assert.match(c.help, /^Usage: tsvisor /, c.name);
      assert.match(c.help, /Examples:\n {2}tsvisor /, c.name);
    }
  }
});

test("a bug (an error without a code) is not turned into an exit code", async () => {
  const broken: Command = {
    name: "boom",
    args: "",
    summary: "",
    help: "",
    run: async () => {
      throw new RangeError("bug");
    },
  };
  await assert.rejects(main(["boom"], capture(), [broken]), RangeError);
});

test("a coded data error exits 1 with its code and a one-line message", async () => {
  const failing: Command = {
    name: "bad",
    args: "",
    summary: "",
    help: "",
    run: async () => {
      throw new TsvisorError("PROTO_JSON", "line one\nline two");
    },
  };
  const io = capture();
  assert.equal(await main(["bad"], io, [failing]), 1);
  assert.deepEqual(io.err, ["tsvisor: PROTO_JSON: line one line two\n"]);
});
