import { existsSync, readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { parseByteSize } from "../core/size.js";
import { resolveSimImage } from "../hv/sim/select.js";
import { guestImage, isGuestName } from "../loader/guest-builder.js";
import { X86_GPR_NAMES } from "../protocol/enums.js";
import {
  type BuildSpec,
  CMDLINE_MAX,
  isMemSize,
  MEM_DEFAULT,
  MEM_SIZE_RULE,
  VCPUS_MAX,
} from "../vmm/builder.js";
import type { VmSpec } from "./types.js";

/**
 * A VmSpec checked and turned into what the VMM builds from. The HTTP API validates bodies
 * against its schema first; this is the library's own check, so an in-process caller gets the
 * same coded errors (API_VALIDATION, API_IMAGE) for the same mistakes.
 */

export interface NormalizedSpec {
  readonly name: string | undefined;
  readonly imageName: string;
  readonly memSize: number;
  readonly vcpus: number;
  readonly irqchip: "kernel" | "user";
  readonly build: BuildSpec;
}

const KEYS = new Set([
  "name",
  "image",
  "image_base64",
  "kernel",
  "initrd",
  "cmdline",
  "memory",
  "vcpus",
  "irqchip",
  "entry",
  "registers",
  "devices",
]);
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

const invalid = (field: string, message: string) =>
  new TsvisorError("API_VALIDATION", `${field}: ${message}`, {
    issues: [{ path: field, message }],
  });

/** "2M", "512K", "1G", "0x200000", 2097152 → bytes, range- and alignment-checked. */
export function parseMemory(value: unknown, field = "memory"): number {
  let n: number | undefined;
  if (typeof value === "number") n = value;
  else if (typeof value === "string") {
    n = parseByteSize(value);
    if (n === undefined) throw invalid(field, `'${value}' is not a size (e.g. 2M, 512K, 2097152)`);
  } else throw invalid(field, "must be a number of bytes or a size text like 2M");
  if (!isMemSize(n)) throw invalid(field, `${String(value)} must be ${MEM_SIZE_RULE}`);
  return n;
}

function readImageFile(path: string, field: string): Uint8Array {
  try {
    if (!statSync(path).isFile()) throw new Error("not a regular file");
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new TsvisorError("API_IMAGE", `${field}: cannot read '${path}': ${(e as Error).message}`);
  }
}

/** A file or a test guest's name, for the backend the host runs on. */
function loadNamed(
  operand: string,
  backend: "kvm" | "sim",
  field: string,
): { image: Uint8Array; name: string } {
  if (backend === "sim") {
    try {
      return resolveSimImage(operand);
    } catch (e) {
      if (isTsvisorError(e)) throw new TsvisorError("API_IMAGE", `${field}: ${e.message}`);
      throw e;
    }
  }
  if (existsSync(operand)) {
    return {
      image: readImageFile(operand, field),
      name: basename(operand).replace(/\.[^.]*$/, ""),
    };
  }
  if (isGuestName(operand)) return { image: guestImage(operand), name: operand };
  throw new TsvisorError(
    "API_IMAGE",
    `${field}: '${operand}' is neither a readable file nor a test guest's name (e.g. hello)`,
  );
}

export function normalizeSpec(spec: VmSpec, backend: "kvm" | "sim"): NormalizedSpec {
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) {
    throw invalid("(body)", "must be a JSON object");
  }
  for (const k of Object.keys(spec)) if (!KEYS.has(k)) throw invalid(k, "is not a VmSpec field");
  const s = spec as Record<string, unknown>;
  const str = (k: string): string | undefined => {
    const v = s[k];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v.length === 0) throw invalid(k, "must be a non-empty string");
    return v;
  };
  const name = str("name");
  if (name !== undefined && !NAME_PATTERN.test(name)) {
    throw invalid("name", "must be 1 to 63 of A-Z a-z 0-9 _ . - starting with a letter or digit");
  }
  const sources = ["image", "image_base64", "kernel"].filter((k) => s[k] !== undefined);
  if (sources.length !== 1) {
    throw invalid(
      sources.length === 0 ? "image" : sources[1]!,
      "give exactly one of image, image_base64 and kernel",
    );
  }
  let image: Uint8Array;
  let imageName: string;
  const b64 = str("image_base64");
  if (b64 !== undefined) {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) {
      throw invalid("image_base64", "is not base64");
    }
    image = new Uint8Array(Buffer.from(b64, "base64"));
    if (image.length === 0) throw invalid("image_base64", "is empty");
    imageName = "image";
  } else {
    const field = sources[0]!;
    ({ image, name: imageName } = loadNamed(str(field)!, backend, field));
  }
  const initrdPath = str("initrd");
  const initrd = initrdPath === undefined ? undefined : readImageFile(initrdPath, "initrd");
  const cmdline = s.cmdline;
  if (cmdline !== undefined) {
    if (typeof cmdline !== "string") throw invalid("cmdline", "must be a string");
    if (Buffer.byteLength(cmdline) >= CMDLINE_MAX || cmdline.includes("\0")) {
      throw invalid("cmdline", `must be under ${CMDLINE_MAX} bytes without NUL`);
    }
  }
  const memSize = s.memory === undefined ? MEM_DEFAULT : parseMemory(s.memory);
  const vcpus = s.vcpus === undefined ? 1 : s.vcpus;
  if (typeof vcpus !== "number" || !Number.isInteger(vcpus) || vcpus < 1 || vcpus > VCPUS_MAX) {
    throw invalid("vcpus", `must be an integer from 1 to ${VCPUS_MAX}`);
  }
  const irqchip = s.irqchip ?? "kernel";
  if (irqchip !== "kernel" && irqchip !== "user")
    throw invalid("irqchip", "must be kernel or user");
  const entry = s.entry ?? "elf";
  if (entry !== "elf" && entry !== "pvh") throw invalid("entry", "must be elf or pvh");
  const regs: Partial<Record<(typeof X86_GPR_NAMES)[number], bigint>> = {};
  if (s.registers !== undefined) {
    const r = s.registers;
    if (typeof r !== "object" || r === null || Array.isArray(r)) {
      throw invalid("registers", "must be an object of register names");
    }
    for (const [k, v] of Object.entries(r)) {
      if (!(X86_GPR_NAMES as readonly string[]).includes(k)) {
        throw invalid(`registers.${k}`, `is not one of ${X86_GPR_NAMES.join(", ")}`);
      }
      let value: bigint;
      if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) value = BigInt(v);
      else if (typeof v === "string" && /^(0x[0-9a-f]{1,16}|\d{1,20})$/i.test(v)) value = BigInt(v);
      else throw invalid(`registers.${k}`, "must be a non-negative integer or a 0x… string");
      if (value >= 1n << 64n) throw invalid(`registers.${k}`, "exceeds 64 bits");
      regs[k as (typeof X86_GPR_NAMES)[number]] = value;
    }
  }
  const devices = s.devices;
  let doorbells: { label: number; gsi: number }[] | undefined;
  let doorbellSources: { label: number }[] | undefined;
  if (devices !== undefined) {
    if (typeof devices !== "object" || devices === null || Array.isArray(devices)) {
      throw invalid("devices", "must be an object");
    }
    const d = devices as Record<string, unknown>;
    for (const k of Object.keys(d)) {
      if (k !== "doorbells" && k !== "doorbell_sources") {
        throw invalid(`devices.${k}`, "is not a device kind (doorbells, doorbell_sources)");
      }
    }
    const u32 = (v: unknown, f: string, max: number) => {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
        throw invalid(f, `must be an integer from 0 to ${max}`);
      }
      return v;
    };
    const list = (k: string) => {
      const v = d[k];
      if (v === undefined) return undefined;
      if (!Array.isArray(v)) throw invalid(`devices.${k}`, "must be an array");
      return v as unknown[];
    };
    doorbells = list("doorbells")?.map((e, i) => {
      const o = e as Record<string, unknown>;
      if (
        typeof e !== "object" ||
        e === null ||
        Object.keys(o).some((k) => k !== "label" && k !== "gsi")
      ) {
        throw invalid(`devices.doorbells[${i}]`, "must be {label, gsi}");
      }
      return {
        label: u32(o.label, `devices.doorbells[${i}].label`, 0xffff),
        gsi: u32(o.gsi, `devices.doorbells[${i}].gsi`, 23),
      };
    });
    doorbellSources = list("doorbell_sources")?.map((e, i) => {
      const o = e as Record<string, unknown>;
      if (typeof e !== "object" || e === null || Object.keys(o).some((k) => k !== "label")) {
        throw invalid(`devices.doorbell_sources[${i}]`, "must be {label}");
      }
      return { label: u32(o.label, `devices.doorbell_sources[${i}].label`, 0xff) };
    });
  }
  const build: BuildSpec = {
    image,
    name: name ?? imageName,
    memSize,
    vcpus,
    regs,
    ...(typeof cmdline === "string" ? { cmdline } : {}),
    ...(entry === "pvh" ? { elfEntry: "pvh" as const } : {}),
    ...(initrd ? { initrd } : {}),
    ...(doorbells ? { doorbells } : {}),
    ...(doorbellSources ? { doorbellSources } : {}),
  };
  return { name, imageName, memSize, vcpus, irqchip, build };
}
