import type { CliIo } from "../main.js";

/** A CliIo that records what a command writes and serves `stdin` to commands that read it. */
export interface CapturedIo extends CliIo {
  readonly out: string[];
  readonly err: string[];
  /** Everything written to stdout so far. */
  text(): string;
}

export function captureIo(stdin = ""): CapturedIo {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    text: () => out.join(""),
    stdout: (t) => void out.push(t),
    stderr: (t) => void err.push(t),
    readStdin: async () => stdin,
  };
}
