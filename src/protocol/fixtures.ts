import type { JsonObject, MessageJson } from "./codec.js";

/**
 * Hand-written wire fixtures: one row per message of the catalogue (a request row and a reply
 * row for every request id, a row for every notification id) plus a few extra shapes
 * (multi-fragment reply, error replies, optional tails, a u64 beyond 2^53).
 *
 * The hex is the ground truth. It was written from rm-protocol.md field by field, never
 * produced by the encoder under test. Each string is one queue message (header first), spaces
 * separate fields for reading; a fragmented message has one string per fragment.
 *
 * Test data only: production code never imports this file.
 */

export interface Fixture {
  readonly name: string;
  /** The queue messages, in order; concatenated they are the full wire bytes. */
  readonly hex: readonly string[];
  /** messageToJson() of the reassembled message. */
  readonly json: MessageJson;
}

const req = (msg_name: string, msg_id: number, seq: number, payload: JsonObject): MessageJson => ({
  type: "REQUEST",
  seq,
  msg_id,
  msg_name,
  payload,
});
const ok = (msg_name: string, msg_id: number, seq: number, payload: JsonObject): MessageJson => ({
  type: "REPLY",
  seq,
  msg_id,
  msg_name,
  error: "OK",
  error_code: 0,
  payload,
});
const fail = (
  msg_name: string,
  msg_id: number,
  seq: number,
  error: string,
  error_code: number,
  payload_hex = "",
): MessageJson => ({ type: "REPLY", seq, msg_id, msg_name, error, error_code, payload_hex });
const note = (msg_name: string, msg_id: number, seq: number, payload: JsonObject): MessageJson => ({
  type: "NOTIFICATION",
  seq,
  msg_id,
  msg_name,
  payload,
});

// Header bytes: 21 = api; then type | continuations << 2: 01 request, 02 reply, 03 notification,
// 06 reply with one continuation, 04 its continuation; then u16 seq; then u32 msg id.

export const FIXTURES: readonly Fixture[] = [
  // ---- VM lifecycle (§3.2)
  {
    name: "VM_ALLOC_VMID request for a dynamic VMID",
    hex: ["21 01 0100 01000056  0000 0000"],
    json: req("VM_ALLOC_VMID", 0x56000001, 1, { vmid: 0 }),
  },
  {
    name: "VM_ALLOC_VMID reply carrying the allocated VMID",
    hex: ["21 02 0100 01000056  00000000  80000000"],
    json: ok("VM_ALLOC_VMID", 0x56000001, 1, { vmid: 0x80 }),
  },
  {
    name: "VM_ALLOC_VMID standard reply (a specific VMID was requested)",
    hex: ["21 02 0200 01000056  00000000"],
    json: ok("VM_ALLOC_VMID", 0x56000001, 2, {}),
  },
  {
    name: "VM_DEALLOC_VMID request",
    hex: ["21 01 0201 02000056  8000 0000"],
    json: req("VM_DEALLOC_VMID", 0x56000002, 0x0102, { vmid: 0x80 }),
  },
  {
    name: "VM_DEALLOC_VMID reply",
    hex: ["21 02 0201 02000056  00000000"],
    json: ok("VM_DEALLOC_VMID", 0x56000002, 0x0102, {}),
  },
  {
    name: "VM_SET_NAME request (raw payload)",
    hex: ["21 01 0300 03000056  80000000 6e616d65"],
    json: req("VM_SET_NAME", 0x56000003, 3, { data: "800000006e616d65" }),
  },
  {
    name: "VM_SET_NAME reply UNIMPLEMENTED",
    hex: ["21 02 0300 03000056  ffffffff"],
    json: fail("VM_SET_NAME", 0x56000003, 3, "UNIMPLEMENTED", 0xffffffff),
  },
  {
    name: "VM_START request",
    hex: ["21 01 0400 04000056  8100 0000"],
    json: req("VM_START", 0x56000004, 4, { vmid: 0x81 }),
  },
  {
    name: "VM_START reply",
    hex: ["21 02 0400 04000056  00000000"],
    json: ok("VM_START", 0x56000004, 4, {}),
  },
  {
    name: "VM_START reply VM_STATE (an error reply)",
    hex: ["21 02 0401 04000056  14000000"],
    json: fail("VM_START", 0x56000004, 0x0104, "VM_STATE", 0x14),
  },
  {
    name: "VM_STOP request as Linux v16 sends it (force, reason 3)",
    hex: ["21 01 0500 05000056  8000 01 00 03000000"],
    json: req("VM_STOP", 0x56000005, 5, {
      vmid: 0x80,
      flags: 1,
      stop_reason: 3,
      stop_reason_name: "FORCE_STOP",
    }),
  },
  {
    name: "VM_STOP reply",
    hex: ["21 02 0500 05000056  00000000"],
    json: ok("VM_STOP", 0x56000005, 5, {}),
  },
  {
    name: "VM_RESET request",
    hex: ["21 01 0600 06000056  8000 0000"],
    json: req("VM_RESET", 0x56000006, 6, { vmid: 0x80 }),
  },
  {
    name: "VM_RESET reply",
    hex: ["21 02 0600 06000056  00000000"],
    json: ok("VM_RESET", 0x56000006, 6, {}),
  },
  {
    name: "VM_SUSPEND request (raw payload)",
    hex: ["21 01 0700 07000056  80000000"],
    json: req("VM_SUSPEND", 0x56000007, 7, { data: "80000000" }),
  },
  {
    name: "VM_SUSPEND reply UNIMPLEMENTED",
    hex: ["21 02 0700 07000056  ffffffff"],
    json: fail("VM_SUSPEND", 0x56000007, 7, "UNIMPLEMENTED", 0xffffffff),
  },
  {
    name: "VM_RESUME request (raw payload)",
    hex: ["21 01 0800 08000056  80000000"],
    json: req("VM_RESUME", 0x56000008, 8, { data: "80000000" }),
  },
  {
    name: "VM_RESUME reply UNIMPLEMENTED",
    hex: ["21 02 0800 08000056  ffffffff"],
    json: fail("VM_RESUME", 0x56000008, 8, "UNIMPLEMENTED", 0xffffffff),
  },
  {
    name: "VM_CONFIG_IMAGE request as Linux v16 sends it (auth 0, image 0/0)",
    hex: [
      "21 01 0900 09000056  8000 0000 01000000 0000000000000000 0000000000000000 0010000000000000 0020000000000000",
    ],
    json: req("VM_CONFIG_IMAGE", 0x56000009, 9, {
      vmid: 0x80,
      auth_mech: 0,
      mem_handle: 1,
      image_offset: 0,
      image_size: 0,
      dtb_offset: 0x1000,
      dtb_size: 0x2000,
      auth_mech_name: "NONE",
    }),
  },
  {
    name: "VM_CONFIG_IMAGE reply",
    hex: ["21 02 0900 09000056  00000000"],
    json: ok("VM_CONFIG_IMAGE", 0x56000009, 9, {}),
  },
  {
    name: "VM_AUTH_IMAGE request with one PAS_ID parameter",
    hex: ["21 01 0a00 0a000056  8000 0100 00000000 34120000"],
    json: req("VM_AUTH_IMAGE", 0x5600000a, 10, {
      vmid: 0x80,
      params: [{ param_type: 0, param: 0x1234 }],
    }),
  },
  {
    name: "VM_AUTH_IMAGE reply",
    hex: ["21 02 0a00 0a000056  00000000"],
    json: ok("VM_AUTH_IMAGE", 0x5600000a, 10, {}),
  },
  {
    name: "VM_INIT request",
    hex: ["21 01 0b00 0b000056  8000 0000"],
    json: req("VM_INIT", 0x5600000b, 11, { vmid: 0x80 }),
  },
  {
    name: "VM_INIT reply",
    hex: ["21 02 0b00 0b000056  00000000"],
    json: ok("VM_INIT", 0x5600000b, 11, {}),
  },
  {
    name: "VM_SET_BOOT_CONTEXT request setting the PC (rip)",
    hex: ["21 01 0c00 0c000056  8000 01 00 00000000 0000100000000000"],
    json: req("VM_SET_BOOT_CONTEXT", 0x5600000c, 12, {
      vmid: 0x80,
      reg_set: 1,
      reg_index: 0,
      value: 0x100000,
      reg_set_name: "PC",
      reg_name: "rip",
    }),
  },
  {
    name: "VM_SET_BOOT_CONTEXT request with a value beyond 2^53 (rsi)",
    hex: ["21 01 0d00 0c000056  8000 00 04 00000000 00000080ffffffff"],
    json: req("VM_SET_BOOT_CONTEXT", 0x5600000c, 13, {
      vmid: 0x80,
      reg_set: 0,
      reg_index: 4,
      value: "18446744071562067968",
      reg_set_name: "X",
      reg_name: "rsi",
    }),
  },
  {
    name: "VM_SET_BOOT_CONTEXT reply",
    hex: ["21 02 0c00 0c000056  00000000"],
    json: ok("VM_SET_BOOT_CONTEXT", 0x5600000c, 12, {}),
  },
  // ---- other VM calls (§3.3)
  {
    name: "VM_GET_ID request for the caller itself",
    hex: ["21 01 1000 10000056  0000 0000"],
    json: req("VM_GET_ID", 0x56000010, 16, { vmid: 0 }),
  },
  {
    name: "VM_GET_ID reply with a NAME padded to 4 bytes",
    hex: ["21 02 1000 10000056  00000000  01000000 02 00 0500 6775657374 000000"],
    json: ok("VM_GET_ID", 0x56000010, 16, { ids: [{ id_type: 2, id: "6775657374" }] }),
  },
  {
    name: "VM_LOOKUP_URI request (raw payload)",
    hex: ["21 01 1100 11000056  0300 0000 766d31 00"],
    json: req("VM_LOOKUP_URI", 0x56000011, 17, { data: "03000000766d3100" }),
  },
  {
    name: "VM_LOOKUP_URI reply (raw payload)",
    hex: ["21 02 1100 11000056  00000000  81000000"],
    json: ok("VM_LOOKUP_URI", 0x56000011, 17, { data: "81000000" }),
  },
  {
    name: "VM_LOOKUP_GUID request (raw payload)",
    hex: ["21 01 1200 12000056  00112233445566778899aabbccddeeff"],
    json: req("VM_LOOKUP_GUID", 0x56000012, 18, { data: "00112233445566778899aabbccddeeff" }),
  },
  {
    name: "VM_LOOKUP_GUID reply (raw payload)",
    hex: ["21 02 1200 12000056  00000000  81000000"],
    json: ok("VM_LOOKUP_GUID", 0x56000012, 18, { data: "81000000" }),
  },
  {
    name: "VM_LOOKUP_NAME request (raw payload)",
    hex: ["21 01 1300 13000056  0300 0000 766d31 00"],
    json: req("VM_LOOKUP_NAME", 0x56000013, 19, { data: "03000000766d3100" }),
  },
  {
    name: "VM_LOOKUP_NAME reply LOOKUP_FAILED",
    hex: ["21 02 1300 13000056  0e000000"],
    json: fail("VM_LOOKUP_NAME", 0x56000013, 19, "LOOKUP_FAILED", 0x0e),
  },
  {
    name: "VM_GET_OWNER request (empty)",
    hex: ["21 01 1500 15000056"],
    json: req("VM_GET_OWNER", 0x56000015, 21, {}),
  },
  {
    name: "VM_GET_OWNER reply",
    hex: ["21 02 1500 15000056  00000000  03000000"],
    json: ok("VM_GET_OWNER", 0x56000015, 21, { owner_vmid: 3 }),
  },
  {
    name: "VM_GET_STATE request",
    hex: ["21 01 1700 17000056  8000 0000"],
    json: req("VM_GET_STATE", 0x56000017, 23, { vmid: 0x80 }),
  },
  {
    name: "VM_GET_STATE reply RUNNING / RUN",
    hex: ["21 02 1700 17000056  00000000  03 04 0000"],
    json: ok("VM_GET_STATE", 0x56000017, 23, {
      vm_status: 3,
      os_status: 4,
      app_status: 0,
      vm_status_name: "RUNNING",
      os_status_name: "RUN",
    }),
  },
  {
    name: "VM_GET_CRASH_MSG request",
    hex: ["21 01 1900 19000056  8000 0000"],
    json: req("VM_GET_CRASH_MSG", 0x56000019, 25, { vmid: 0x80 }),
  },
  {
    name: "VM_GET_CRASH_MSG reply with 5 bytes padded to 8",
    hex: ["21 02 1900 19000056  00000000  0500 0000 70616e6963 000000"],
    json: ok("VM_GET_CRASH_MSG", 0x56000019, 25, { msg: "70616e6963", msg_text: "panic" }),
  },
  {
    name: "VM_GET_HYP_RESOURCES request",
    hex: ["21 01 2000 20000056  8000 0000"],
    json: req("VM_GET_HYP_RESOURCES", 0x56000020, 32, { vmid: 0x80 }),
  },
  {
    name: "VM_GET_HYP_RESOURCES reply with one 44-byte VCPU entry",
    hex: [
      "21 02 2000 20000056  00000000  01000000 " +
        "04 00 8000 00000000 00000000 0010000000000000 00000000 20000000 0000000000000000 0000000000000000",
    ],
    json: ok("VM_GET_HYP_RESOURCES", 0x56000020, 32, {
      entries: [
        {
          resource_type: 4,
          partner_vmid: 0x80,
          resource_handle: 0,
          resource_label: 0,
          cap_id: 0x1000,
          virq_handle: 0,
          virq: 32,
          base: 0,
          size: 0,
          resource_type_name: "VCPU",
        },
      ],
    }),
  },
  {
    // 4 (error) + 4 (count) + 6 × 44 = 272 bytes: 232 in the first message, 40 in the second.
    // The split falls 4 bytes into the sixth entry.
    name: "VM_GET_HYP_RESOURCES reply with six entries in two fragments",
    hex: [
      "21 06 2100 20000056  00000000  06000000 " +
        "04 00 8000 00000000 00000000 0001000000000000 00000000 20000000 0000000000000000 0000000000000000 " +
        "04 00 8000 00000000 01000000 0101000000000000 00000000 21000000 0000000000000000 0000000000000000 " +
        "00 00 8000 01000000 00000000 0002000000000000 00000000 00000000 0000000000000000 0000000000000000 " +
        "0a 00 8000 00000000 00000000 0003000000000000 00000000 00000000 0000000000000000 0000000000000000 " +
        "09 00 8000 00000000 00000000 0004000000000000 00000000 00000000 0000000000000000 0000000000000000 " +
        "09 00 8000",
      "21 04 2100 20000056  00000000 01000000 0104000000000000 00000000 00000000 0000000000000000 0000000000000000",
    ],
    json: ok("VM_GET_HYP_RESOURCES", 0x56000020, 33, {
      entries: [
        [4, 0, 0, 0x100, 32, "VCPU"],
        [4, 0, 1, 0x101, 33, "VCPU"],
        [0, 1, 0, 0x200, 0, "BELL_TX"],
        [10, 0, 0, 0x300, 0, "ADDR_SPACE"],
        [9, 0, 0, 0x400, 0, "MEM_EXTENT"],
        [9, 0, 1, 0x401, 0, "MEM_EXTENT"],
      ].map(([type, handle, label, cap, virq, typeName]) => ({
        resource_type: type as number,
        partner_vmid: 0x80,
        resource_handle: handle as number,
        resource_label: label as number,
        cap_id: cap as number,
        virq_handle: 0,
        virq: virq as number,
        base: 0,
        size: 0,
        resource_type_name: typeName as string,
      })),
    }),
  },
  {
    name: "VM_GET_HYP_CAPIDS request (raw payload)",
    hex: ["21 01 2200 21000056  8000 0000"],
    json: req("VM_GET_HYP_CAPIDS", 0x56000021, 34, { data: "80000000" }),
  },
  {
    name: "VM_GET_HYP_CAPIDS reply UNIMPLEMENTED",
    hex: ["21 02 2200 21000056  ffffffff"],
    json: fail("VM_GET_HYP_CAPIDS", 0x56000021, 34, "UNIMPLEMENTED", 0xffffffff),
  },
  {
    name: "VM_GET_HYP_IRQS request (raw payload)",
    hex: ["21 01 2300 22000056  8000 0000"],
    json: req("VM_GET_HYP_IRQS", 0x56000022, 35, { data: "80000000" }),
  },
  {
    name: "VM_GET_HYP_IRQS reply UNIMPLEMENTED",
    hex: ["21 02 2300 22000056  ffffffff"],
    json: fail("VM_GET_HYP_IRQS", 0x56000022, 35, "UNIMPLEMENTED", 0xffffffff),
  },
  {
    name: "VM_GET_VMID request (empty)",
    hex: ["21 01 2400 24000056"],
    json: req("VM_GET_VMID", 0x56000024, 36, {}),
  },
  {
    name: "VM_GET_VMID reply: the caller is HLOS",
    hex: ["21 02 2400 24000056  00000000  03000000"],
    json: ok("VM_GET_VMID", 0x56000024, 36, { vmid: 3 }),
  },
  {
    name: "VM_GET_PEERS request (empty)",
    hex: ["21 01 2500 25000056"],
    json: req("VM_GET_PEERS", 0x56000025, 37, {}),
  },
  {
    name: "VM_GET_PEERS reply with two peers",
    hex: ["21 02 2500 25000056  00000000  02000000 03000000 81000000"],
    json: ok("VM_GET_PEERS", 0x56000025, 37, { peers: [{ vmid: 3 }, { vmid: 0x81 }] }),
  },
  {
    name: "VM_SET_TIME_BASE request",
    hex: ["21 01 3000 30000056  0000 0000 00ca9a3b00000000 7856341200000000"],
    json: req("VM_SET_TIME_BASE", 0x56000030, 48, {
      vmid: 0,
      time_base: 1_000_000_000,
      sys_timer_ref: 0x12345678,
    }),
  },
  {
    name: "VM_SET_TIME_BASE reply (raw, empty)",
    hex: ["21 02 3000 30000056  00000000"],
    json: ok("VM_SET_TIME_BASE", 0x56000030, 48, { data: "" }),
  },
  {
    name: "VM_SET_CONTEXT request (raw payload)",
    hex: ["21 01 3100 31000056  8000 0000"],
    json: req("VM_SET_CONTEXT", 0x56000031, 49, { data: "80000000" }),
  },
  {
    name: "VM_SET_CONTEXT reply UNIMPLEMENTED",
    hex: ["21 02 3100 31000056  ffffffff"],
    json: fail("VM_SET_CONTEXT", 0x56000031, 49, "UNIMPLEMENTED", 0xffffffff),
  },
  {
    name: "VM_SET_FIRMWARE_MEM request",
    hex: ["21 01 3200 32000056  8000 0000 02000000 0000000000000000 0000100000000000"],
    json: req("VM_SET_FIRMWARE_MEM", 0x56000032, 50, {
      vmid: 0x80,
      fw_mp_handle: 2,
      fw_offset: 0,
      fw_size: 0x100000,
    }),
  },
  {
    name: "VM_SET_FIRMWARE_MEM reply DENIED with the hypervisor error appended",
    hex: ["21 02 3200 32000056  03000000  1e000000"],
    json: fail("VM_SET_FIRMWARE_MEM", 0x56000032, 50, "DENIED", 3, "1e000000"),
  },
  {
    name: "VM_SET_DEMAND_PAGING request with two ranges",
    hex: [
      "21 01 3300 33000056  8000 0000 02000000 " +
        "0000000000000000 0000100000000000 0000004000000000 0000000200000000",
    ],
    json: req("VM_SET_DEMAND_PAGING", 0x56000033, 51, {
      vmid: 0x80,
      ranges: [
        { guest_phys_base: 0, size: 0x100000 },
        { guest_phys_base: 0x40000000, size: 0x2000000 },
      ],
    }),
  },
  {
    name: "VM_SET_DEMAND_PAGING reply",
    hex: ["21 02 3300 33000056  00000000"],
    json: ok("VM_SET_DEMAND_PAGING", 0x56000033, 51, {}),
  },
  {
    name: "VM_SET_ADDRESS_LAYOUT request for the IMAGE range",
    hex: ["21 01 3400 34000056  8000 0000 00000000 0000000100000000 0000010000000000"],
    json: req("VM_SET_ADDRESS_LAYOUT", 0x56000034, 52, {
      vmid: 0x80,
      range_id: 0,
      base: 0x1000000,
      size: 0x10000,
      range_id_name: "IMAGE",
    }),
  },
  {
    name: "VM_SET_ADDRESS_LAYOUT reply",
    hex: ["21 02 3400 34000056  00000000"],
    json: ok("VM_SET_ADDRESS_LAYOUT", 0x56000034, 52, {}),
  },
  {
    name: "VM_IRQ_ACCEPT request",
    hex: ["21 01 5000 50000056  01000000 28000000"],
    json: req("VM_IRQ_ACCEPT", 0x56000050, 0x50, { virq_handle: 1, virq: 40 }),
  },
  {
    name: "VM_IRQ_ACCEPT reply",
    hex: ["21 02 5000 50000056  00000000  28000000"],
    json: ok("VM_IRQ_ACCEPT", 0x56000050, 0x50, { virq: 40 }),
  },
  {
    name: "VM_IRQ_LEND request",
    hex: ["21 01 5100 51000056  8000 0000 29000000 07000000"],
    json: req("VM_IRQ_LEND", 0x56000051, 0x51, { borrower: 0x80, virq: 41, label: 7 }),
  },
  {
    name: "VM_IRQ_LEND reply",
    hex: ["21 02 5100 51000056  00000000  02000000"],
    json: ok("VM_IRQ_LEND", 0x56000051, 0x51, { virq_handle: 2 }),
  },
  {
    name: "VM_IRQ_RELEASE request",
    hex: ["21 01 5200 52000056  02000000"],
    json: req("VM_IRQ_RELEASE", 0x56000052, 0x52, { virq_handle: 2 }),
  },
  {
    name: "VM_IRQ_RELEASE reply",
    hex: ["21 02 5200 52000056  00000000"],
    json: ok("VM_IRQ_RELEASE", 0x56000052, 0x52, {}),
  },
  {
    name: "VM_IRQ_RECLAIM request",
    hex: ["21 01 5300 53000056  02000000"],
    json: req("VM_IRQ_RECLAIM", 0x56000053, 0x53, { virq_handle: 2 }),
  },
  {
    name: "VM_IRQ_RECLAIM reply",
    hex: ["21 02 5300 53000056  00000000"],
    json: ok("VM_IRQ_RECLAIM", 0x56000053, 0x53, {}),
  },
  {
    name: "VM_IRQ_NOTIFY request, LENT form with its VMID list",
    hex: ["21 01 5400 54000056  02000000 01000000 0100 0000 8000 0000"],
    json: req("VM_IRQ_NOTIFY", 0x56000054, 0x54, {
      virq_handle: 2,
      flags: 1,
      vmids: [{ vmid: 0x80 }],
    }),
  },
  {
    name: "VM_IRQ_NOTIFY request, RELEASED form without a list",
    hex: ["21 01 5500 54000056  02000000 02000000"],
    json: req("VM_IRQ_NOTIFY", 0x56000054, 0x55, { virq_handle: 2, flags: 2 }),
  },
  {
    name: "VM_IRQ_NOTIFY reply",
    hex: ["21 02 5400 54000056  00000000"],
    json: ok("VM_IRQ_NOTIFY", 0x56000054, 0x54, {}),
  },
  {
    name: "VM_IRQ_UNMAP request (raw payload)",
    hex: ["21 01 5600 55000056  02000000"],
    json: req("VM_IRQ_UNMAP", 0x56000055, 0x56, { data: "02000000" }),
  },
  {
    name: "VM_IRQ_UNMAP reply (raw, empty)",
    hex: ["21 02 5600 55000056  00000000"],
    json: ok("VM_IRQ_UNMAP", 0x56000055, 0x56, { data: "" }),
  },
  {
    name: "VM_SET_STATUS request (os RUN, app status 1)",
    hex: ["21 01 8000 80000056  00 04 0100"],
    json: req("VM_SET_STATUS", 0x56000080, 0x80, {
      os_status: 4,
      app_status: 1,
      os_status_name: "RUN",
    }),
  },
  {
    name: "VM_SET_STATUS reply",
    hex: ["21 02 8000 80000056  00000000"],
    json: ok("VM_SET_STATUS", 0x56000080, 0x80, {}),
  },
  {
    name: "VM_CONSOLE_OPEN request",
    hex: ["21 01 8100 81000056  8000 0000"],
    json: req("VM_CONSOLE_OPEN", 0x56000081, 0x81, { target: 0x80 }),
  },
  {
    name: "VM_CONSOLE_OPEN reply",
    hex: ["21 02 8100 81000056  00000000"],
    json: ok("VM_CONSOLE_OPEN", 0x56000081, 0x81, {}),
  },
  {
    name: "VM_CONSOLE_CLOSE request",
    hex: ["21 01 8200 82000056  8000 0000"],
    json: req("VM_CONSOLE_CLOSE", 0x56000082, 0x82, { target: 0x80 }),
  },
  {
    name: "VM_CONSOLE_CLOSE reply",
    hex: ["21 02 8200 82000056  00000000"],
    json: ok("VM_CONSOLE_CLOSE", 0x56000082, 0x82, {}),
  },
  {
    name: "VM_CONSOLE_WRITE request with three characters",
    hex: ["21 01 8300 83000056  8000 0300 68690a"],
    json: req("VM_CONSOLE_WRITE", 0x56000083, 0x83, {
      target: 0x80,
      data: "68690a",
      data_text: "hi\n",
    }),
  },
  {
    name: "VM_CONSOLE_WRITE reply",
    hex: ["21 02 8300 83000056  00000000"],
    json: ok("VM_CONSOLE_WRITE", 0x56000083, 0x83, {}),
  },
  {
    name: "VM_CONSOLE_FLUSH request",
    hex: ["21 01 8400 84000056  8000 0000"],
    json: req("VM_CONSOLE_FLUSH", 0x56000084, 0x84, { target: 0x80 }),
  },
  {
    name: "VM_CONSOLE_FLUSH reply",
    hex: ["21 02 8400 84000056  00000000"],
    json: ok("VM_CONSOLE_FLUSH", 0x56000084, 0x84, {}),
  },
  {
    name: "VM_EXIT request from a guest (normal exit)",
    hex: ["21 01 8500 85000056  0000 00 00"],
    json: req("VM_EXIT", 0x56000085, 0x85, {
      exit_flags: 0,
      exit_code: 0,
      exit_code_name: "NORMAL",
    }),
  },
  {
    name: "VM_EXIT reply",
    hex: ["21 02 8500 85000056  00000000"],
    json: ok("VM_EXIT", 0x56000085, 0x85, {}),
  },
  {
    name: "VM_SET_CRASH_MSG request with 4 bytes (no padding)",
    hex: ["21 01 8600 86000056  0400 0000 626f6f6d"],
    json: req("VM_SET_CRASH_MSG", 0x56000086, 0x86, { msg: "626f6f6d", msg_text: "boom" }),
  },
  {
    name: "VM_SET_CRASH_MSG reply",
    hex: ["21 02 8600 86000056  00000000"],
    json: ok("VM_SET_CRASH_MSG", 0x56000086, 0x86, {}),
  },
  {
    name: "VM_HOST_GET_TYPE request (empty)",
    hex: ["21 01 a000 a0000056"],
    json: req("VM_HOST_GET_TYPE", 0x560000a0, 0xa0, {}),
  },
  {
    name: "VM_HOST_GET_TYPE reply: tsvisor's x86-64 host type",
    hex: ["21 02 a000 a0000056  00000000  86010001"],
    json: ok("VM_HOST_GET_TYPE", 0x560000a0, 0xa0, {
      host_type: 0x01000186,
      host_type_name: "X86_64",
    }),
  },
  {
    name: "IPA_RESERVE request (raw payload)",
    hex: ["21 01 b000 b0000056  8000 0000 0000100000000000"],
    json: req("IPA_RESERVE", 0x560000b0, 0xb0, { data: "800000000000100000000000" }),
  },
  {
    name: "IPA_RESERVE reply (raw payload)",
    hex: ["21 02 b000 b0000056  00000000  0000000001000000"],
    json: ok("IPA_RESERVE", 0x560000b0, 0xb0, { data: "0000000001000000" }),
  },
  {
    name: "IPA_UNRESERVE request (raw payload)",
    hex: ["21 01 b100 b1000056  8000 0000"],
    json: req("IPA_UNRESERVE", 0x560000b1, 0xb1, { data: "80000000" }),
  },
  {
    name: "IPA_UNRESERVE reply (raw, empty)",
    hex: ["21 02 b100 b1000056  00000000"],
    json: ok("IPA_UNRESERVE", 0x560000b1, 0xb1, { data: "" }),
  },
  // ---- memory parcels (§3.4)
  {
    name: "MEM_DONATE request: one RWX ACL entry, one SGL entry, no attributes",
    hex: [
      "21 01 1000 10000051  00 00 00 00 00000000  0100 0000 8000 07 00  " +
        "0100 0000 0000200000000000 0010000000000000  0000 0000",
    ],
    json: req("MEM_DONATE", 0x51000010, 0x10, {
      mem_type: 0,
      flags: 0,
      label: 0,
      acl: [{ vmid: 0x80, rights: 7, rights_name: "RWX" }],
      sgl: [{ base: 0x200000, size: 0x1000 }],
      attrs: [],
      mem_type_name: "NORMAL",
    }),
  },
  {
    name: "MEM_DONATE reply",
    hex: ["21 02 1000 10000051  00000000  05000000"],
    json: ok("MEM_DONATE", 0x51000010, 0x10, { mem_handle: 5 }),
  },
  {
    name: "MEM_ACCEPT request with an empty SGL (RM picks the IPAs)",
    hex: [
      "21 01 1100 11000051  00000000 00 01 90 00 00000000  0100 0000 8000 06 00  " +
        "0000 8000  0100 0000 0000 8000",
    ],
    json: req("MEM_ACCEPT", 0x51000011, 0x11, {
      mem_handle: 0,
      mem_type: 0,
      trans_type: 1,
      flags: 0x90,
      label: 0,
      acl: [{ vmid: 0x80, rights: 6, rights_name: "RW" }],
      map_vmid: 0x80,
      sgl: [],
      attrs: [{ attr: 0, vmid: 0x80, attr_name: "NORMAL" }],
      mem_type_name: "NORMAL",
      trans_type_name: "LEND",
    }),
  },
  {
    name: "MEM_ACCEPT reply listing the mapped IPA range",
    hex: ["21 02 1100 11000051  00000000  0100 00 00 0000008000000000 0010000000000000"],
    json: ok("MEM_ACCEPT", 0x51000011, 0x11, {
      flags: 0,
      sgl: [{ base: 0x80000000, size: 0x1000 }],
    }),
  },
  {
    name: "MEM_LEND request for a v16 DTB parcel (one ACL entry)",
    hex: [
      "21 01 1200 12000051  00 00 00 00 00000000  0100 0000 8000 07 00  " +
        "0100 0000 0000004000000000 0000010000000000  0000 0000",
    ],
    json: req("MEM_LEND", 0x51000012, 0x12, {
      mem_type: 0,
      flags: 0,
      label: 0,
      acl: [{ vmid: 0x80, rights: 7, rights_name: "RWX" }],
      sgl: [{ base: 0x40000000, size: 0x10000 }],
      attrs: [],
      mem_type_name: "NORMAL",
    }),
  },
  {
    name: "MEM_LEND reply with handle 0",
    hex: ["21 02 1200 12000051  00000000  00000000"],
    json: ok("MEM_LEND", 0x51000012, 0x12, { mem_handle: 0 }),
  },
  {
    name: "MEM_SHARE request with the host in the ACL, sanitize flag, label 3",
    hex: [
      "21 01 1300 13000051  00 00 01 00 03000000  0200 0000 8000 06 00 0300 07 00  " +
        "0100 0000 0000005000000000 0000020000000000  0000 0000",
    ],
    json: req("MEM_SHARE", 0x51000013, 0x13, {
      mem_type: 0,
      flags: 1,
      label: 3,
      acl: [
        { vmid: 0x80, rights: 6, rights_name: "RW" },
        { vmid: 3, rights: 7, rights_name: "RWX" },
      ],
      sgl: [{ base: 0x50000000, size: 0x20000 }],
      attrs: [],
      mem_type_name: "NORMAL",
    }),
  },
  {
    name: "MEM_SHARE reply",
    hex: ["21 02 1300 13000051  00000000  01000000"],
    json: ok("MEM_SHARE", 0x51000013, 0x13, { mem_handle: 1 }),
  },
  {
    name: "MEM_RELEASE request",
    hex: ["21 01 1400 14000051  01000000 00 000000"],
    json: req("MEM_RELEASE", 0x51000014, 0x14, { mem_handle: 1, flags: 0 }),
  },
  {
    name: "MEM_RELEASE reply",
    hex: ["21 02 1400 14000051  00000000"],
    json: ok("MEM_RELEASE", 0x51000014, 0x14, {}),
  },
  {
    name: "MEM_RECLAIM request with the sanitize flag",
    hex: ["21 01 1500 15000051  00000000 01 000000"],
    json: req("MEM_RECLAIM", 0x51000015, 0x15, { mem_handle: 0, flags: 1 }),
  },
  {
    name: "MEM_RECLAIM reply MEM_INUSE",
    hex: ["21 02 1500 15000051  0b000000"],
    json: fail("MEM_RECLAIM", 0x51000015, 0x15, "MEM_INUSE", 0x0b),
  },
  {
    name: "MEM_NOTIFY request, SHARED form with one target",
    hex: ["21 01 1700 17000051  01000000 01 000000 42000000  0100 0000 8100 0000"],
    json: req("MEM_NOTIFY", 0x51000017, 0x17, {
      mem_handle: 1,
      flags: 1,
      mem_info_tag: 0x42,
      vmids: [{ vmid: 0x81 }],
    }),
  },
  {
    name: "MEM_NOTIFY reply",
    hex: ["21 02 1700 17000051  00000000"],
    json: ok("MEM_NOTIFY", 0x51000017, 0x17, {}),
  },
  {
    name: "MEM_APPEND request, last chunk (END)",
    hex: ["21 01 1800 18000051  00000000 01 000000  0100 0000 0000014000000000 0010000000000000"],
    json: req("MEM_APPEND", 0x51000018, 0x18, {
      mem_handle: 0,
      flags: 1,
      sgl: [{ base: 0x40010000, size: 0x1000 }],
    }),
  },
  {
    name: "MEM_APPEND reply",
    hex: ["21 02 1800 18000051  00000000"],
    json: ok("MEM_APPEND", 0x51000018, 0x18, {}),
  },
  {
    name: "MEM_QCOM_LOOKUP_SGL request (raw payload)",
    hex: ["21 01 1a00 1a000051  00 00 00 00 00000000"],
    json: req("MEM_QCOM_LOOKUP_SGL", 0x5100001a, 0x1a, { data: "0000000000000000" }),
  },
  {
    name: "MEM_QCOM_LOOKUP_SGL reply (raw payload)",
    hex: ["21 02 1a00 1a000051  00000000  07000000"],
    json: ok("MEM_QCOM_LOOKUP_SGL", 0x5100001a, 0x1a, { data: "07000000" }),
  },
  {
    name: "FW_MILESTONE request (raw, empty)",
    hex: ["21 01 2000 20000051"],
    json: req("FW_MILESTONE", 0x51000020, 0x20, { data: "" }),
  },
  {
    name: "FW_MILESTONE reply (raw, empty)",
    hex: ["21 02 2000 20000051  00000000"],
    json: ok("FW_MILESTONE", 0x51000020, 0x20, { data: "" }),
  },
  {
    name: "FW_SET_VM_FIRMWARE request (raw payload)",
    hex: ["21 01 2100 21000051  8000 0000 02000000"],
    json: req("FW_SET_VM_FIRMWARE", 0x51000021, 0x21, { data: "8000000002000000" }),
  },
  {
    name: "FW_SET_VM_FIRMWARE reply (raw, empty)",
    hex: ["21 02 2100 21000051  00000000"],
    json: ok("FW_SET_VM_FIRMWARE", 0x51000021, 0x21, { data: "" }),
  },
  // ---- notifications
  {
    name: "VM_EXITED after a forced stop (type 7, 4-byte reason)",
    hex: ["21 03 0100 01001056  8000 0700 04000000 00000000"],
    json: note("VM_EXITED", 0x56100001, 1, {
      vmid: 0x80,
      exit_type: 7,
      exit_reason: "00000000",
      exit_type_name: "VM_STOP_FORCED",
      exit_flags: 0,
      exit_code: 0,
      exit_code_name: "NORMAL",
    }),
  },
  {
    name: "VM_EXITED after a guest VM_EXIT with RESTART flag and SOFTWARE_ERROR code",
    hex: ["21 03 0200 01001056  8100 0000 04000000 01000100"],
    json: note("VM_EXITED", 0x56100001, 2, {
      vmid: 0x81,
      exit_type: 0,
      exit_reason: "01000100",
      exit_type_name: "VM_EXIT",
      exit_flags: 1,
      exit_code: 1,
      exit_code_name: "SOFTWARE_ERROR",
    }),
  },
  {
    name: "VM_SHUTDOWN to a gracefully stopped VM",
    hex: ["21 03 0300 02001056  00000000"],
    json: note("VM_SHUTDOWN", 0x56100002, 3, { stop_reason: 0, stop_reason_name: "SHUTDOWN" }),
  },
  {
    name: "VM_STATUS announcing RESET",
    hex: ["21 03 0400 08001056  8000 0000 0b 00 0000"],
    json: note("VM_STATUS", 0x56100008, 4, {
      vmid: 0x80,
      vm_status: 11,
      os_status: 0,
      app_status: 0,
      vm_status_name: "RESET",
      os_status_name: "NONE",
    }),
  },
  {
    name: "VM_IRQ_LENT",
    hex: ["21 03 0500 11001056  0300 0000 02000000 07000000"],
    json: note("VM_IRQ_LENT", 0x56100011, 5, { owner: 3, virq_handle: 2, label: 7 }),
  },
  {
    name: "VM_IRQ_RELEASED",
    hex: ["21 03 0600 12001056  02000000"],
    json: note("VM_IRQ_RELEASED", 0x56100012, 6, { virq_handle: 2 }),
  },
  {
    name: "VM_IRQ_ACCEPTED",
    hex: ["21 03 0700 13001056  02000000"],
    json: note("VM_IRQ_ACCEPTED", 0x56100013, 7, { virq_handle: 2 }),
  },
  {
    name: "VM_CONSOLE_CHARS from a guest",
    hex: ["21 03 0800 80001056  8000 0300 6f6b0a"],
    json: note("VM_CONSOLE_CHARS", 0x56100080, 8, {
      from_vmid: 0x80,
      data: "6f6b0a",
      data_text: "ok\n",
    }),
  },
  {
    name: "MEM_SHARED with sizes only (no addresses)",
    hex: [
      "21 03 0900 11001051  01000000 00 02 01 00 0300 0000 03000000 42000000  " +
        "0200 0000 8000 06 00 0300 07 00  0100 0000 0000020000000000  0000 0000",
    ],
    json: note("MEM_SHARED", 0x51100011, 9, {
      mem_handle: 1,
      mem_type: 0,
      trans_type: 2,
      flags: 1,
      owner_vmid: 3,
      label: 3,
      mem_info_tag: 0x42,
      acl: [
        { vmid: 0x80, rights: 6, rights_name: "RW" },
        { vmid: 3, rights: 7, rights_name: "RWX" },
      ],
      region_sizes: [{ size: 0x20000 }],
      attrs: [],
      mem_type_name: "NORMAL",
      trans_type_name: "SHARE",
    }),
  },
  {
    name: "MEM_RELEASED",
    hex: ["21 03 0a00 12001051  01000000 8100 0000 42000000"],
    json: note("MEM_RELEASED", 0x51100012, 10, { mem_handle: 1, vmid: 0x81, mem_info_tag: 0x42 }),
  },
  {
    name: "MEM_ACCEPTED",
    hex: ["21 03 0b00 13001051  01000000 8100 0000 42000000"],
    json: note("MEM_ACCEPTED", 0x51100013, 11, { mem_handle: 1, vmid: 0x81, mem_info_tag: 0x42 }),
  },
  {
    name: "MEM_RECALL",
    hex: ["21 03 0c00 14001051  01000000 42000000"],
    json: note("MEM_RECALL", 0x51100014, 12, { mem_handle: 1, mem_info_tag: 0x42 }),
  },
];
