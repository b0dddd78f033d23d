/**
 * Schedule tokens: a program id and the thread chosen at every step, run-length encoded with
 * one letter per thread (a–z, then A–Z), e.g. `doorbell.pre-fix.preempt:a6b3c4d2a5`.
 * A token replays the same execution because executions are deterministic functions of the
 * choices (execution.ts).
 */
import { TsvisorError } from "../core/errors.js";

const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
export const MAX_THREADS = LETTERS.length;

export function encodeSchedule(programId: string, schedule: readonly number[]): string {
  let out = "";
  for (let i = 0; i < schedule.length; ) {
    const t = schedule[i]!;
    let n = 1;
    while (schedule[i + n] === t) n++;
    const letter = LETTERS[t];
    if (letter === undefined) throw new TsvisorError("CHECK_TOKEN", `thread index ${t} too large`);
    out += n === 1 ? letter : `${letter}${n}`;
    i += n;
  }
  return `${programId}:${out}`;
}

export interface DecodedToken {
  readonly programId: string;
  readonly schedule: number[];
}

export function decodeSchedule(token: string): DecodedToken {
  const bad = (why: string) => new TsvisorError("CHECK_TOKEN", `bad schedule token: ${why}`);
  const colon = token.lastIndexOf(":");
  if (colon <= 0) throw bad("expected PROGRAM:CHOICES");
  const programId = token.slice(0, colon);
  const body = token.slice(colon + 1);
  const schedule: number[] = [];
  const re = /([a-zA-Z])(\d*)/y;
  let at = 0;
  while (at < body.length) {
    re.lastIndex = at;
    const m = re.exec(body);
    if (!m) throw bad(`unexpected '${body[at]}' at ${at}`);
    const t = LETTERS.indexOf(m[1]!);
    const n = m[2] === "" ? 1 : Number(m[2]);
    if (!Number.isSafeInteger(n) || n < 1 || n > 1_000_000) throw bad(`bad count '${m[2]}'`);
    for (let i = 0; i < n; i++) schedule.push(t);
    at = re.lastIndex;
  }
  if (schedule.length === 0) throw bad("no choices");
  return { programId, schedule };
}
