import { existsSync, readFileSync, statSync } from "node:fs";
import { isTsvisorError, TsvisorError } from "../core/errors.js";
import { ByteRing } from "../devices/byte-ring.js";
import { KvmHypervisor } from "../hv/kvm/kvm-hypervisor.js";
import { resolveSimImage, SIM_NOTICE } from "../hv/sim/select.js";
import { SimHypervisor } from "../hv/sim/sim-hypervisor.js";
import type { Hypervisor } from "../hv/types.js";
import { guestImage, isGuestName } from "../loader/guest-builder.js";
import { ExitType, nameOf, VmStatus } from "../protocol/enums.js";
import type { RmMessage } from "../protocol/message.js";
import type { VmExitedNotification, VmStatusNotification } from "../rpc/client.js";
import type { Direction } from "../rpc/tap.js";
import { MEM_DEFAULT, MEM_MAX, MEM_MIN, parseRegisters, VCPUS_MAX } from "../vmm/builder.js";
import { stopReasonJson } from "../vmm/exits.js";
import { createRmStack } from "../vmm/rm-stack.js";
import { exitOf, runVm } from "../vmm/run-vm.js";
import { parseArgs } from "./args.js";
import type { CliIo, Command } from "./main.js";
import { traceLine } from "./rm.js";
import { attachTerminal } from "./terminal.js";

const usage = (message: string) => new TsvisorError("CLI_USAGE", message);

const RUN_HELP = `Usage: tsvisor run IMAGE [--mem SIZE] [--vcpus N] [--cmdline TEXT] [--initrd FILE]
                   [--reg NAME=VALUE,…] [--pvh] [--irqchip kernel|user] [--json] [--trace]
                   [--backend kvm|sim]

Runs a guest image on KVM through the whole Resource Manager lifecycle, as the host (VMID 3)
drives it over the RM protocol: VM_ALLOC_VMID, MEM_LEND of the guest RAM (which holds the
vm-config DTB), VM_CONFIG_IMAGE, VM_INIT, VM_SET_BOOT_CONTEXT, VM_START; then it waits for
VM_EXITED, reclaims the memory, resets and deallocates the VM. The serial console (COM1)
goes to standard output, the exit reason to standard error as one line. When standard input
is a terminal, keystrokes go raw to COM1 (a guest sees them by polling LSR) and Ctrl-]
force-stops the VM.

IMAGE is a file (an x86-64 ELF, started in 64-bit long mode at its entry with the first 4 GiB
identity-mapped; anything else is a flat binary started in 16-bit real mode at 0x1000) or
the name of a test guest in guests/ (built on first use), e.g. hello, exit-code, spin.

Options:
  --mem SIZE          guest RAM: bytes, or with K/M/G (KiB/MiB/GiB); ${MEM_MIN / 1024}K to ${MEM_MAX / 1024 / 1024}M, default ${MEM_DEFAULT / 1024 / 1024}M
  --vcpus N           1 to ${VCPUS_MAX}; vCPU i > 0 starts at the same entry with RSI = i
  --cmdline TEXT      placed NUL-terminated in the page below the DTB (RAM end − 8 KiB);
                      RDI points at it
  --initrd FILE       an initial RAM disk, page-aligned as high as it fits below the command
                      line's page; the guest gets its address in RDX and size in RCX, or
                      module 0 of the PVH start_info (RBX) with --pvh. docs/vmm.md
  --reg NAME=VALUE,…  extra vCPU 0 registers (rax…r15), sent with VM_SET_BOOT_CONTEXT
  --pvh               start an ELF at its PVH note's 32-bit entry instead
  --irqchip MODE      kernel (default: in-kernel PIC/IOAPIC/LAPIC and PIT) or user (no
                      irqchip in KVM: HLT exits to tsvisor, which delivers interrupts itself;
                      GSI n is vector 0x20+n on vCPU 0, no EOI; docs/user-irqchip.md).
                      'none' is accepted as another name for user
  --json              JSON lines on stdout instead of the raw console: the VM's VM_STATUS and
                      VM_EXITED notifications, console output, and the final result
  --trace             every RM message on the host's link, decoded, on stderr
  --kvm-device PATH   the KVM device to open (default /dev/kvm)
  --backend NAME      kvm (default) or sim: the simulated hypervisor, which needs no
                      /dev/kvm and runs simulated guests (scripted programs, not x86 code)
                      through the same RM lifecycle; IMAGE is then a simulated guest's name
                      (hello, exit-code, spin, msgq-client, two-vcpu, chaos, …), a .json
                      script, or a sim image file. It says so on stderr. docs/sim.md

Exit status: the guest's exit code for PLATFORM_OFF (the byte written to debug-exit port
0xf4) and VM_EXIT (the code the guest sent the RM); 128 + exit type for the others:
130 PLATFORM_RESET (i8042 reset), 133 SOFTWARE_ERROR (triple fault, emulation failure…),
135 VM_STOP_FORCED (interrupted); 1 when tsvisor itself fails (no /dev/kvm: HV_UNAVAILABLE),
2 for a bad command line. docs/exits.md has the whole table.

Examples:
  tsvisor run hello
  tsvisor run exit-code --reg rdi=42; echo $?
  tsvisor run dist/guests/hello.elf --mem 4M --json
  tsvisor run hello --trace 2>&1 >/dev/null | head -3
  tsvisor run uart-echo          # type, then q; the exit code counts what you typed
  tsvisor run --backend sim hello
`;

import { parseSize } from "./size.js";

export { parseSize };

/** A file, or the name of a test guest in guests/ (built on first use). */
function loadImage(operand: string): { image: Uint8Array; name: string } {
  if (existsSync(operand) && statSync(operand).isFile()) {
    const base = operand.split("/").pop() ?? "image";
    return { image: new Uint8Array(readFileSync(operand)), name: base.replace(/\.[^.]*$/, "") };
  }
  if (isGuestName(operand)) return { image: guestImage(operand), name: operand };
  throw usage(`'${operand}' is neither a file nor a guest in guests/ (try 'tsvisor run hello')`);
}

async function runRun(args: readonly string[], io: CliIo): Promise<number> {
  const { flags, operands } = parseArgs(
    args,
    {
      mem: "value",
      vcpus: "value",
      cmdline: "value",
      initrd: "value",
      reg: "value",
      pvh: "flag",
      irqchip: "value",
      json: "flag",
      trace: "flag",
      "kvm-device": "value",
      backend: "value",
    },
    "run",
    { spacedValues: true },
  );
  if (operands.length !== 1) {
    throw usage(
      operands.length === 0
        ? "'run' needs an IMAGE (a file or a guest name, e.g. hello)"
        : `'run' takes one IMAGE, got ${operands.length}: ${operands.join(" ")}`,
    );
  }
  const text = (name: string) => {
    const v = flags.get(name);
    return typeof v === "string" ? v : undefined;
  };
  const memText = text("mem");
  const memSize = memText === undefined ? MEM_DEFAULT : parseSize(memText);
  const vcpusText = text("vcpus");
  const vcpus = vcpusText === undefined ? 1 : Number(vcpusText);
  if (!/^\d+$/.test(vcpusText ?? "1") || vcpus < 1 || vcpus > VCPUS_MAX) {
    throw usage(`--vcpus must be 1 to ${VCPUS_MAX}, not '${vcpusText}'`);
  }
  const irqchipText = text("irqchip") ?? "kernel";
  if (irqchipText !== "kernel" && irqchipText !== "user" && irqchipText !== "none") {
    throw usage(`--irqchip must be kernel or user, not '${irqchipText}'`);
  }
  let regs: ReturnType<typeof parseRegisters> = {};
  const regText = text("reg");
  if (regText !== undefined) {
    try {
      regs = parseRegisters(regText);
    } catch (e) {
      if (isTsvisorError(e)) throw usage(`--reg: ${e.message}`);
      throw e;
    }
  }
  const cmdline = text("cmdline");
  const initrdPath = text("initrd");
  let initrd: Uint8Array | undefined;
  if (initrdPath !== undefined) {
    if (!existsSync(initrdPath) || !statSync(initrdPath).isFile()) {
      throw usage(`--initrd: '${initrdPath}' is not a file`);
    }
    initrd = new Uint8Array(readFileSync(initrdPath));
  }
  const json = flags.has("json");
  const backend = text("backend") ?? "kvm";
  if (backend !== "kvm" && backend !== "sim") {
    throw usage(`--backend must be kvm or sim, not '${backend}'`);
  }
  const { image, name } =
    backend === "sim" ? resolveSimImage(operands[0]!) : loadImage(operands[0]!);

  const device = text("kvm-device");
  let hv: Hypervisor;
  if (backend === "sim") {
    io.stderr(SIM_NOTICE);
    hv = SimHypervisor.open();
  } else hv = KvmHypervisor.open(device ? { path: device } : {});
  const emit = (o: Record<string, unknown>) => io.stdout(`${JSON.stringify(o)}\n`);
  const decoder = new TextDecoder();
  const stack = createRmStack({ backend: hv });
  const trace = flags.has("trace")
    ? (dir: Direction, m: RmMessage) => io.stderr(`${traceLine(dir, m)}\n`)
    : undefined;
  const client = stack.connectHost({ timeoutMs: 0, ...(trace ? { trace } : {}) });
  const interrupted = new AbortController();
  const onSigint = () => interrupted.abort();
  process.once("SIGINT", onSigint);
  // An interactive terminal types into the guest's COM1 (Ctrl-] force-stops the VM).
  const consoleInput = !json && process.stdin.isTTY ? ByteRing.allocate() : undefined;
  const detach = consoleInput
    ? attachTerminal(process.stdin, consoleInput, () => interrupted.abort())
    : () => {};
  try {
    const result = await runVm(stack, client, {
      image,
      name,
      memSize,
      vcpus,
      regs,
      ...(cmdline !== undefined ? { cmdline } : {}),
      ...(initrd ? { initrd } : {}),
      ...(flags.has("pvh") ? { elfEntry: "pvh" as const } : {}),
      irqchip: irqchipText === "kernel" ? "kernel" : "user",
      signal: interrupted.signal,
      ...(consoleInput ? { consoleInput } : {}),
      console: json
        ? (b) => emit({ event: "console", data: Buffer.from(b).toString("latin1") })
        : (b) => io.stdout(decoder.decode(b, { stream: true })),
      onEvent: json ? (n) => emit(eventJson(n)) : undefined,
      onLog: (m) => io.stderr(`tsvisor: ${m}\n`),
    });
    const tail = decoder.decode();
    if (!json && tail) io.stdout(tail);
    if (json) {
      emit({
        event: "result",
        vmid: result.vmid,
        exit_type: nameOf(ExitType, result.exit.exitType),
        exit_code: result.exit.exitCode,
        exit_flags: result.exitFlags,
        status: result.status,
        description: result.description,
        ...(result.stop
          ? { vcpu: result.stop.vcpu, stop: stopReasonJson(result.stop.reason) }
          : {}),
      });
    }
    io.stderr(`tsvisor: VM ${result.vmid} exited: ${result.description}\n`);
    return result.status;
  } finally {
    detach();
    process.off("SIGINT", onSigint);
    await stack.close();
    hv.close();
  }
}

function eventJson(n: VmStatusNotification | VmExitedNotification): Record<string, unknown> {
  if (n.kind === "vmStatus") {
    return {
      event: "VM_STATUS",
      vmid: n.vmid,
      vm_status: nameOf(VmStatus, n.vmStatus),
      os_status: n.osStatus,
      app_status: n.appStatus,
    };
  }
  const { exit, flags } = exitOf(n);
  return {
    event: "VM_EXITED",
    vmid: n.vmid,
    exit_type: nameOf(ExitType, exit.exitType),
    exit_code: exit.exitCode,
    exit_flags: flags,
  };
}

export const runCommand: Command = {
  name: "run",
  args: "IMAGE [--mem SIZE] [--vcpus N] [--json] …",
  summary: "run a guest on KVM through the whole RM lifecycle; exits with its exit code",
  help: RUN_HELP,
  run: runRun,
};
