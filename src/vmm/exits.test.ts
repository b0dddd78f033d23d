import assert from "node:assert/strict";
import { test } from "node:test";
import { ExitType } from "../protocol/enums.js";
import type { StopReason } from "../vcpu/exit-handler.js";
import {
  describeExit,
  exitForStop,
  FaultCode,
  processStatus,
  stopDetail,
  stopReasonJson,
} from "./exits.js";

// The table of docs/exits.md, typed again here row by row: stop reason → exit type, exit
// code, process status.
const ROWS: [string, StopReason, number, number, number][] = [
  ["debug-exit 0", { kind: "power-off", code: 0 }, ExitType.PLATFORM_OFF, 0, 0],
  ["debug-exit 42", { kind: "power-off", code: 42 }, ExitType.PLATFORM_OFF, 42, 42],
  ["debug-exit 255", { kind: "power-off", code: 255 }, ExitType.PLATFORM_OFF, 255, 255],
  ["i8042 reset", { kind: "reset" }, ExitType.PLATFORM_RESET, 0, 130],
  ["triple fault", { kind: "shutdown" }, ExitType.SOFTWARE_ERROR, 0x10, 133],
  [
    "emulation failure",
    { kind: "internal-error", suberror: 1, insn: Uint8Array.of(0xcc), data: [] },
    ExitType.SOFTWARE_ERROR,
    0x11,
    133,
  ],
  [
    "other internal error",
    { kind: "internal-error", suberror: 3, data: [1n] },
    ExitType.SOFTWARE_ERROR,
    0x12,
    133,
  ],
  [
    "failed entry",
    { kind: "fail-entry", reason: 0x80000021n, cpu: 1 },
    ExitType.SOFTWARE_ERROR,
    0x13,
    133,
  ],
  ["unknown exit", { kind: "unknown", reason: 24 }, ExitType.SOFTWARE_ERROR, 0x14, 133],
  [
    "host error",
    { kind: "error", code: "HV_SYSCALL", message: "KVM_RUN failed" },
    ExitType.SOFTWARE_ERROR,
    0x15,
    133,
  ],
];

for (const [what, reason, exitType, exitCode, status] of ROWS) {
  test(`exit table: ${what} → exit type ${exitType}, code ${exitCode}, status ${status}`, () => {
    const exit = exitForStop(reason);
    assert.deepEqual(exit, { exitType, exitCode });
    assert.equal(processStatus(exit!), status);
  });
}

test("exit table: a host stop is not reported (the RM already sent VM_STOP_FORCED or VM_EXIT)", () => {
  assert.equal(exitForStop({ kind: "stopped" }), undefined);
});

test("exit table: exits the RM makes itself map to statuses too", () => {
  assert.equal(processStatus({ exitType: ExitType.VM_EXIT, exitCode: 3 }), 3, "VM_EXIT: the code");
  assert.equal(processStatus({ exitType: ExitType.VM_STOP_FORCED, exitCode: 0 }), 135);
  assert.equal(processStatus({ exitType: ExitType.WATCHDOG_BITE, exitCode: 1 }), 132);
  assert.equal(processStatus({ exitType: ExitType.PSCI_SYSTEM_RESET2, exitCode: 0 }), 131);
  assert.equal(processStatus({ exitType: ExitType.ASYNC_HW_ERROR, exitCode: 0 }), 134);
});

test("exit codes of vCPU faults are distinct and outside the RM's own 0–4", () => {
  const codes = Object.values(FaultCode);
  assert.equal(new Set(codes).size, codes.length);
  for (const c of codes) assert.ok(c > 4 && c <= 0xff);
});

test("describeExit() names the type and code, and shows an emulation failure's bytes", () => {
  assert.equal(
    describeExit({ exitType: ExitType.PLATFORM_OFF, exitCode: 7 }),
    "PLATFORM_OFF code 7",
  );
  const insn: StopReason = {
    kind: "internal-error",
    suberror: 1,
    insn: Uint8Array.of(0xcc, 0xeb, 0xfe),
    data: [],
  };
  assert.equal(
    describeExit(exitForStop(insn)!, insn),
    "SOFTWARE_ERROR code 17 (EMULATION_FAILURE): suberror 1, instruction bytes cc eb fe",
  );
  assert.equal(
    describeExit(exitForStop({ kind: "shutdown" })!, { kind: "shutdown" }),
    "SOFTWARE_ERROR code 16 (TRIPLE_FAULT): triple fault",
  );
});

test("stopDetail() keeps only the first line of a host error", () => {
  assert.equal(
    stopDetail({ kind: "error", code: "BUG", message: "TypeError: x\n    at f (a.js:1)" }),
    "BUG: TypeError: x",
  );
  assert.equal(stopDetail({ kind: "power-off", code: 0 }), undefined);
});

test("stopReasonJson() turns bigints and bytes into JSON-safe strings", () => {
  const j = stopReasonJson({
    kind: "internal-error",
    suberror: 1,
    insn: Uint8Array.of(0x0f, 0x0b),
    data: [0x10n],
  });
  assert.deepEqual(j, { kind: "internal-error", suberror: 1, insn: "0f0b", data: ["0x10"] });
  assert.doesNotThrow(() =>
    JSON.stringify(stopReasonJson({ kind: "fail-entry", reason: 5n, cpu: 0 })),
  );
});
