/**
 * The log port of the RPC layer. Servers and clients report what they drop, abort or refuse
 * as structured entries, so an operator can see why a client was disconnected and tests can
 * assert on it without parsing text.
 */

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LogEntry {
  readonly level: LogLevel;
  /** A stable dotted name, e.g. "session.dropped" or "notification.dropped". */
  readonly event: string;
  /** One human sentence. */
  readonly message: string;
  /** Session id (server side), when the entry concerns one session. */
  readonly session?: number;
  readonly vmid?: number;
  /** The TsvisorError code behind the entry, if any. */
  readonly code?: string;
  readonly [key: string]: unknown;
}

export interface LogPort {
  write(entry: LogEntry): void;
}

/** Discards everything. */
export const nullLog: LogPort = { write() {} };

/** Keeps every entry in memory (tests, the demo trace). */
export class MemoryLog implements LogPort {
  readonly entries: LogEntry[] = [];

  write(entry: LogEntry): void {
    this.entries.push(entry);
  }

  /** Entries with this event name, oldest first. */
  find(event: string): LogEntry[] {
    return this.entries.filter((e) => e.event === event);
  }
}

/** Writes one JSON line per entry at or above `min` to a sink (e.g. process.stderr.write). */
export function jsonLineLog(sink: (line: string) => void, min: LogLevel = "info"): LogPort {
  const rank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  return {
    write(entry) {
      if (rank[entry.level] >= rank[min]) sink(`${JSON.stringify(entry, jsonSafe)}\n`);
    },
  };
}

function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}
