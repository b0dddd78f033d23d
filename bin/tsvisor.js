#!/usr/bin/env node
import { cli } from "../dist/src/cli/entry.js";

cli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`tsvisor: ${err?.stack ?? err}\n`);
    process.exitCode = 70;
  },
);
