import { z } from "zod";
import { TsvisorError } from "../core/errors.js";
import { VM_STATES } from "../host/admission.js";
import { NAME_PATTERN, parseMemory } from "../host/spec.js";
import type {
  ExitInfo,
  HostEvent,
  HostInfo,
  HypResourceInfo,
  StopOptions,
  VmInfo,
  VmSpec,
  VmState,
} from "../host/types.js";
import { X86_GPR_NAMES } from "../protocol/enums.js";
import { CMDLINE_MAX, MEM_MAX, MEM_MIN, VCPUS_MAX } from "../vmm/builder.js";

/**
 * The API's JSON shapes as zod schemas: request bodies are checked with them, and the OpenAPI
 * document is generated from them, so the document cannot drift from what the server accepts.
 * Request objects are strict (an unknown field is an error, not silently ignored: a typo such as
 * `"vcpu": 2` must not create a one-vCPU VM). Every check carries the one message a user sees,
 * so an error reads "vcpus: must be an integer from 1 to 2" rather than zod's generic wording.
 * Response shapes are strict too, so the tests notice a field the document does not describe.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

/** The longest path or guest name accepted (PATH_MAX). */
const PATH_MAX = 4096;
/** 64-bit register values as text: hex with 0x or decimal. */
const REGISTER_TEXT = /^(0x[0-9a-fA-F]{1,16}|\d{1,20})$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** The size texts parseMemory understands. */
const SIZE_TEXT = /^\s*(0x[0-9a-fA-F]+|\d+)\s*([kKmMgG])?([iI]?[bB])?\s*$/;

const intIn = (min: number, max: number, message = `must be an integer from ${min} to ${max}`) =>
  z.int({ error: message }).min(min, { error: message }).max(max, { error: message });

const text = (message: string, max = PATH_MAX) =>
  z.string({ error: message }).min(1, { error: message }).max(max, { error: message });

const MEMORY_MESSAGE = `must be a multiple of 4 KiB from ${MEM_MIN / KiB}K to ${MEM_MAX / MiB}M, as bytes or a size text like 2M`;

const memory = z
  .union(
    [
      z
        .int({ error: MEMORY_MESSAGE })
        .min(MEM_MIN, { error: MEMORY_MESSAGE })
        .max(MEM_MAX, { error: MEMORY_MESSAGE })
        .multipleOf(4096, { error: MEMORY_MESSAGE }),
      z.string({ error: MEMORY_MESSAGE }).regex(SIZE_TEXT, { error: MEMORY_MESSAGE }),
    ],
    { error: MEMORY_MESSAGE },
  )
  .superRefine((v, ctx) => {
    // A size text's range and alignment are only known once it is parsed.
    // Checks run even when the union failed; only a well-formed text is parsed.
    if (typeof v !== "string" || !SIZE_TEXT.test(v)) return;
    try {
      parseMemory(v);
    } catch {
      ctx.addIssue({ code: "custom", message: MEMORY_MESSAGE });
    }
  })
  .describe(
    'Guest RAM: bytes, or a size text ("2M", "512K", "1G", "0x200000"); a multiple of 4 KiB from 64K to 2048M. Default 2M.',
  );

const registerValue = z
  .union(
    [
      z.int({ error: "must be a non-negative integer or a 0x… string" }).min(0, {
        error: "must be a non-negative integer or a 0x… string",
      }),
      z
        .string({ error: "must be a non-negative integer or a 0x… string" })
        .regex(REGISTER_TEXT, { error: "must be a non-negative integer or a 0x… string" }),
    ],
    { error: "must be a non-negative integer or a 0x… string" },
  )
  .superRefine((v, ctx) => {
    if (typeof v === "string" && REGISTER_TEXT.test(v) && BigInt(v) >= 1n << 64n) {
      ctx.addIssue({ code: "custom", message: "exceeds 64 bits" });
    }
  });

const SOURCES = ["image", "image_base64", "kernel"] as const;

export const VmSpecSchema = z
  .strictObject({
    name: z
      .string({ error: "must be a string" })
      .regex(NAME_PATTERN, {
        error: "must be 1 to 63 of A-Z a-z 0-9 _ . - starting with a letter or digit",
      })
      .optional()
      .describe("A name for humans, unique among live VMs (default: the id)."),
    image: text("must be a non-empty path or guest name")
      .optional()
      .describe(
        "The guest image: a file on the daemon's machine (absolute, or relative to the daemon's working directory) or a test guest's name (hello, spin, …).",
      ),
    image_base64: z
      .string({ error: "must be base64 text" })
      .min(1, { error: "is empty" })
      .regex(BASE64, { error: "is not base64" })
      .refine((s) => s.length % 4 === 0, { error: "is not base64 (length not a multiple of 4)" })
      .optional()
      .describe("The guest image's bytes, base64 (for clients on another machine)."),
    kernel: text("must be a non-empty path")
      .optional()
      .describe("Another name for image when it is an x86-64 ELF kernel."),
    initrd: text("must be a non-empty path").optional().describe("An initial ramdisk file."),
    cmdline: z
      .string({ error: "must be a string" })
      .max(CMDLINE_MAX - 1, { error: `must be under ${CMDLINE_MAX} bytes without NUL` })
      .refine((s) => Buffer.byteLength(s) < CMDLINE_MAX && !s.includes("\0"), {
        error: `must be under ${CMDLINE_MAX} bytes without NUL`,
      })
      .optional()
      .describe(`The kernel command line (under ${CMDLINE_MAX} bytes of UTF-8, no NUL).`),
    memory: memory.optional(),
    vcpus: intIn(1, VCPUS_MAX).optional().describe("vCPUs; default 1."),
    irqchip: z
      .enum(["kernel", "user"], { error: "must be kernel or user" })
      .optional()
      .describe("Interrupt controllers in KVM (kernel, default) or tsvisor's user irqchip."),
    entry: z
      .enum(["elf", "pvh"], { error: "must be elf or pvh" })
      .optional()
      .describe("Start an ELF at e_entry in long mode (elf, default) or at its PVH entry."),
    registers: z
      .partialRecord(
        z.enum(X86_GPR_NAMES, { error: `is not one of ${X86_GPR_NAMES.join(", ")}` }),
        registerValue,
        { error: "must be an object of register names" },
      )
      .optional()
      .describe('Extra vCPU 0 registers (rax … r15): numbers or "0x…" strings.'),
    devices: z
      .strictObject(
        {
          doorbells: z
            .array(
              z.strictObject(
                { label: intIn(0, 0xffff), gsi: intIn(0, 23) },
                { error: "must be {label, gsi}" },
              ),
              { error: "must be an array" },
            )
            .optional()
            .describe("Doorbells the host rings (BELL_TX → guest GSI)."),
          doorbell_sources: z
            .array(z.strictObject({ label: intIn(0, 0xff) }, { error: "must be {label}" }), {
              error: "must be an array",
            })
            .optional()
            .describe("Doorbells the guest rings (BELL_RX, port 0x600 + label)."),
        },
        { error: "must be an object" },
      )
      .optional(),
  })
  .superRefine(
    (v, ctx) => {
      if (typeof v !== "object" || v === null) return;
      const given = SOURCES.filter((k) => (v as Record<string, unknown>)[k] !== undefined);
      if (given.length !== 1) {
        ctx.addIssue({
          code: "custom",
          path: [given.length === 0 ? "image" : given[1]!],
          message: "give exactly one of image, image_base64 and kernel",
        });
      }
    },
    // Reported with the other issues, not only once the rest is valid.
    { when: () => true },
  )
  .meta({
    description: "How a VM is created. Exactly one of image, image_base64 and kernel.",
    oneOf: SOURCES.map((k) => ({ required: [k] })),
  });

export const StopOptionsSchema = z
  .strictObject({
    force: z
      .boolean({ error: "must be true or false" })
      .optional()
      .describe("VM_STOP with FORCE at once (default false: graceful first)."),
    timeout_ms: intIn(0, 600_000)
      .optional()
      .describe("Graceful: force after this many ms without an exit (default 5000)."),
  })
  .describe("How to stop; an absent body is {}.");

/** start and reset take no options; `{}` is accepted so clients may always send a body. */
export const EmptySchema = z.strictObject({}).describe("No options; an absent body is the same.");

// ---------------------------------------------------------------- responses

const time = (what: string) => z.string().meta({ format: "date-time", description: what });

export const ExitInfoSchema = z
  .strictObject({
    exit_type: z.string().describe("PLATFORM_OFF, PLATFORM_RESET, VM_EXIT, VM_STOP_FORCED, …"),
    exit_code: z.int(),
    exit_flags: z.int(),
    status: z.int().describe("`tsvisor run`'s process status for this exit."),
    description: z.string(),
    initiator: z.enum(["guest", "host"]),
    time: time("When the host saw VM_EXITED."),
  })
  .describe("Why a VM stopped: VM_EXITED decoded.");

export const HypResourceSchema = z.strictObject({
  type: z.string(),
  label: z.int(),
  cap_id: z.string(),
  virq: z.int(),
  base: z.string(),
  size: z.string(),
});

export const VmStateSchema = z.enum(VM_STATES as [VmState, ...VmState[]]);

export const VmInfoSchema = z
  .strictObject({
    id: z.string(),
    name: z.string(),
    state: VmStateSchema,
    vmid: z.int().nullable().describe("The RM's VMID while the VM has one."),
    rm_status: z.string().nullable().describe("The RM's vm_status name as last reported."),
    os_status: z.int(),
    app_status: z.int(),
    memory: z.int().describe("Guest RAM in bytes."),
    vcpus: z.int(),
    irqchip: z.enum(["kernel", "user"]),
    image: z.string(),
    created_at: time("When the create was asked."),
    started_at: z.string().nullable().meta({ description: "First start.", format: "date-time" }),
    exit: ExitInfoSchema.nullable().describe("The last exit, kept until the VM starts again."),
    resources: z.array(HypResourceSchema),
    runs: z.int(),
    console_bytes: z.int(),
  })
  .describe("The host's view of one VM.");

export const VmListSchema = z.strictObject({ vms: z.array(VmInfoSchema) });

export const HostInfoSchema = z
  .strictObject({
    version: z.string(),
    instance: z
      .string()
      .describe(
        "This daemon's identity for its lifetime; event seqs restart at 1 in a new instance.",
      ),
    backend: z.enum(["kvm", "sim"]),
    limits: z.strictObject({ max_vms: z.int(), memory_budget: z.int() }),
    usage: z.strictObject({ vms: z.int(), memory: z.int() }),
    next_event: z.int().describe('The next event\'s seq: a cursor meaning "from now on".'),
    oldest_event: z.int().describe("The oldest retained event's seq."),
    shutting_down: z.boolean(),
  })
  .describe("The daemon's limits and what is in use.");

export const HOST_EVENT_TYPES = [
  "vm.created",
  "vm.started",
  "vm.stopping",
  "vm.status",
  "vm.exited",
  "vm.reset",
  "vm.destroyed",
] as const;

export const HostEventSchema = z
  .strictObject({
    seq: z.int().min(1).describe("The cursor: global, strictly increasing, never reused."),
    time: time("When the host logged the event."),
    type: z.enum(HOST_EVENT_TYPES),
    vm: z.string(),
    vmid: z.int().nullable(),
    rm_status: z.string().optional(),
    os_status: z.int().optional(),
    app_status: z.int().optional(),
    exit: ExitInfoSchema.optional(),
    reason: z.string().optional(),
  })
  .describe("One event of the host's log.");

export const ErrorBodySchema = z
  .strictObject({
    error: z.strictObject({
      code: z.string().describe("A stable code (docs/api.md lists them)."),
      message: z.string().describe("One sentence for humans."),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .describe("Every error response.");

// Compile-time proof that the schemas and the shared contract describe the same objects.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** The contract's arrays are readonly; zod's outputs are not, which is no difference on the wire. */
type Writable<T> = { -readonly [K in keyof T]: T[K] extends readonly (infer U)[] ? U[] : T[K] };
const agree = <T extends true>(_: T) => {};
agree<Same<z.output<typeof ExitInfoSchema>, ExitInfo>>(true);
agree<Same<z.output<typeof HypResourceSchema>, HypResourceInfo>>(true);
agree<Same<z.output<typeof VmInfoSchema>, Writable<VmInfo>>>(true);
agree<Same<z.output<typeof HostInfoSchema>, HostInfo>>(true);
agree<Same<z.output<typeof HostEventSchema>, HostEvent>>(true);
agree<Same<z.output<typeof StopOptionsSchema>, StopOptions>>(true);
const _specFits: VmSpec = {} as z.output<typeof VmSpecSchema>;
void _specFits;

// ---------------------------------------------------------------- validation

export interface Issue {
  readonly path: string;
  readonly message: string;
}

/** ["devices", "doorbells", 0, "gsi"] → "devices.doorbells[0].gsi"; the root is "(body)". */
export function issuePath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? String(p) : `.${String(p)}`;
  }
  return out === "" ? "(body)" : out;
}

function issuesOf(error: z.ZodError): Issue[] {
  const out: Issue[] = [];
  for (const i of error.issues) {
    if (i.code === "unrecognized_keys") {
      for (const k of i.keys) {
        out.push({ path: issuePath([...i.path, k]), message: "is not a known field" });
      }
    } else if (i.code === "invalid_type" && i.path.length === 0) {
      out.push({ path: "(body)", message: "must be a JSON object" });
    } else {
      out.push({ path: issuePath(i.path), message: i.message });
    }
  }
  return out;
}

/**
 * The body parsed by `schema`, or API_VALIDATION naming the first bad field in its message and
 * every issue in `details.issues`.
 */
export function validate<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = issuesOf(r.error);
  const first = issues[0] ?? { path: "(body)", message: "is not valid" };
  throw new TsvisorError("API_VALIDATION", `${first.path}: ${first.message}`, { issues });
}
