import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { fromHex, toHex } from "../protocol/bytes.js";
import { messageFromJson, messageToJson } from "../protocol/codec.js";
import { CLIENT_MAX_REQUEST, MsgType, RM_MAX_PAYLOAD } from "../protocol/header.js";
import { fragment, Reassembler, type ReceiverRules } from "../protocol/message.js";
import { parseArgs } from "./args.js";
import type { CliIo, Command, CommandGroup } from "./main.js";

/** `tsvisor msg decode|encode`: RM queue messages as hex ↔ JSON. */

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

/** Hex words from stdin: whitespace separates queue messages; `#` starts a comment. */
export function hexWords(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.replace(/#.*/, ""))
    .join(" ")
    .split(/\s+/)
    .filter((w) => w !== "");
}

async function expandStdin(
  operands: readonly string[],
  io: CliIo,
  split: (t: string) => string[],
): Promise<string[]> {
  const out: string[] = [];
  let readOnce = false;
  for (const op of operands) {
    if (op !== "-") {
      out.push(op);
      continue;
    }
    if (readOnce) throw usage("'-' (standard input) may be given once");
    readOnce = true;
    out.push(...split(await io.readStdin()));
  }
  return out;
}

const DECODE_HELP = `Usage: tsvisor msg decode [--compact] [--rules=rm|linux] HEX… | -

Decodes RM queue messages given as hex. Each HEX argument is one queue message (the 8-byte
header and up to 232 payload bytes, 240 bytes at most); the arguments are one sequence, so a
fragmented message is given as its fragments in order and comes out as one message. '-'
reads the messages from standard input instead: whitespace-separated hex words, one queue
message per word; text from '#' to the end of a line is ignored.

Prints one JSON object per logical message, with the reference's snake_case names:
  type, seq, msg_id, msg_name   the header (type REQUEST, REPLY or NOTIFICATION)
  error, error_code             replies: the RM error by name and number
  payload                       the payload field by field; u64 values beyond 2^53 as
                                decimal strings; bytes as hex; fields named *_name (and
                                exit_code, exit_flags, data_text…) are derived for reading
  payload_hex, payload_error    a payload not shown field by field (error replies, bytes
                                that do not fit the layout), and why

Options:
  --compact          one JSON object per line instead of pretty-printed
  --rules=rm|linux   receiver rules for reassembly: rm (default) drops a continuation
                     whose seq differs; linux ignores seq and aborts on another msg id

Exit status: 0 all decoded, 1 a message is malformed, 2 invalid command line.

Examples:
  tsvisor msg decode 210101000100005600000000
      VM_ALLOC_VMID request (seq 1) asking for a dynamic VMID
  tsvisor msg decode 21020100010000560000000080000000
      its reply: error OK, vmid 128
  tsvisor msg decode - < trace.hex
      every message in a file of hex lines
`;

const decodeCommand: Command = {
  name: "decode",
  args: "HEX… | -",
  summary: "decode RM queue messages (hex) into JSON",
  help: DECODE_HELP,
  async run(args, io) {
    const { flags, operands } = parseArgs(args, { compact: "flag", rules: "value" }, "msg decode");
    const rules = flags.get("rules") ?? "rm";
    if (rules !== "rm" && rules !== "linux")
      throw usage(`--rules must be rm or linux, not '${String(rules)}'`);
    if (operands.length === 0)
      throw usage(
        "msg decode needs at least one hex message or '-' (try 'tsvisor msg decode --help')",
      );
    const words = await expandStdin(operands, io, hexWords);
    if (words.length === 0) throw usage("standard input held no hex messages");

    const reassembler = new Reassembler(rules as ReceiverRules);
    const indent = flags.has("compact") ? undefined : 2;
    for (const [i, word] of words.entries()) {
      const where = `queue message ${i + 1} of ${words.length}`;
      let bytes: Uint8Array;
      try {
        bytes = fromHex(word);
      } catch (e) {
        throw isTsvisorError(e) ? new TsvisorError(e.code, `${where}: ${e.message}`) : e;
      }
      for (const ev of reassembler.push(bytes)) {
        switch (ev.kind) {
          case "message":
            io.stdout(`${JSON.stringify(messageToJson(ev.message), null, indent)}\n`);
            break;
          case "partial":
            break;
          case "dropped":
          case "aborted":
            throw new TsvisorError(ev.error.code, `${where}: ${ev.error.message}`);
        }
      }
    }
    if (reassembler.busy) {
      throw new TsvisorError("PROTO_CONTINUATION", "the input ends inside a fragmented message");
    }
    return 0;
  },
};

/** Splits text holding JSON values one after another (as `msg decode` prints them). */
export function jsonValues(text: string): unknown[] {
  const out: unknown[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && /\s/.test(text[i]!)) i++;
    if (i >= n) break;
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < n; i++) {
      const c = text[i]!;
      if (inString) {
        if (c === "\\") i++;
        else if (c === '"') inString = false;
        if (depth === 0 && !inString) {
          i++;
          break;
        }
        continue;
      }
      if (c === '"') inString = true;
      else if (c === "{" || c === "[") depth++;
      else if (c === "}" || c === "]") {
        depth--;
        if (depth <= 0) {
          i++;
          break;
        }
      } else if (depth === 0 && /\s/.test(c)) break;
    }
    const piece = text.slice(start, i);
    try {
      out.push(JSON.parse(piece));
    } catch (e) {
      throw new TsvisorError(
        "PROTO_JSON",
        `JSON value ${out.length + 1} is not valid JSON: ${(e as Error).message}`,
      );
    }
  }
  return out;
}

const ENCODE_HELP = `Usage: tsvisor msg encode [--client] JSON… | -

Encodes messages written as JSON (the format 'msg decode' prints) into RM queue messages,
printed as hex, one queue message per line; a message longer than 232 payload bytes comes
out as its fragments. A JSON argument may hold one message object, an array of them, or
several objects one after another; '-' reads them from standard input, so
  tsvisor msg decode - < trace.hex | tsvisor msg encode -
prints the original queue messages again.

Message fields:
  type                 REQUEST, REPLY or NOTIFICATION
  msg_name | msg_id    e.g. "VM_START" or 1442840580 or "0x56000004"
  seq                  0…65535 (default 0)
  error | error_code   replies only: an RM error name (e.g. "VM_STATE") or number (default OK)
  payload              the payload fields by name (see 'msg decode'), or
  payload_hex          the raw payload bytes
Numbers may be JSON numbers or strings ("0x80", "18446744073709551615"); bytes are hex
strings; derived fields such as *_name are ignored.

Options:
  --client   apply the Linux client's request limit (14,384 bytes) instead of the RM's
             (14,616 bytes)

Exit status: 0 all encoded, 1 a message is malformed, 2 invalid command line.

Examples:
  tsvisor msg encode '{"type":"REQUEST","msg_name":"VM_START","seq":4,"payload":{"vmid":128}}'
      prints 210104000400005680000000
  tsvisor msg encode '{"type":"REPLY","msg_name":"VM_START","seq":4,"error":"VM_STATE"}'
      prints 210204000400005614000000
`;

const encodeCommand: Command = {
  name: "encode",
  args: "JSON… | -",
  summary: "encode JSON messages into RM queue messages (hex)",
  help: ENCODE_HELP,
  async run(args, io) {
    const { flags, operands } = parseArgs(args, { client: "flag" }, "msg encode");
    if (operands.length === 0)
      throw usage("msg encode needs a JSON message or '-' (try 'tsvisor msg encode --help')");
    const texts = await expandStdin(operands, io, (t) => [t]);
    const values = texts.flatMap((t) => jsonValues(t)).flatMap((v) => (Array.isArray(v) ? v : [v]));
    if (values.length === 0) throw usage("no JSON message given");
    const lines: string[] = [];
    for (const [i, v] of values.entries()) {
      try {
        const m = messageFromJson(v);
        const limit =
          flags.has("client") && m.type === MsgType.REQUEST ? CLIENT_MAX_REQUEST : RM_MAX_PAYLOAD;
        for (const q of fragment(m, limit)) lines.push(toHex(q));
      } catch (e) {
        if (isTsvisorError(e) && values.length > 1)
          throw new TsvisorError(e.code, `message ${i + 1}: ${e.message}`);
        throw e;
      }
    }
    // Nothing is printed unless every message encodes: a partial sequence would mislead.
    io.stdout(`${lines.join("\n")}\n`);
    return 0;
  },
};

export const msgGroup: CommandGroup = {
  name: "msg",
  summary: "decode and encode RM messages (hex ↔ JSON)",
  commands: [decodeCommand, encodeCommand],
};
