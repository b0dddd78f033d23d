import assert from "node:assert/strict";
import { test } from "node:test";
import { LAZY_COMMANDS } from "./entry.js";
import { COMMANDS } from "./main.js";

test("the lazy entry table names every command and loads the same object main.ts has", async () => {
  assert.deepEqual(Object.keys(LAZY_COMMANDS).sort(), COMMANDS.map((c) => c.name).sort());
  for (const c of COMMANDS) assert.equal(await LAZY_COMMANDS[c.name]!(), c, c.name);
});
