import { invariant, isTsvisorError } from "../core/errors.js";
import { NotificationId, RequestId } from "../protocol/catalogue.js";
import {
  AuthMech,
  ExitType,
  HostType,
  StopFlags,
  TransType,
  VM_EXIT_VALID_CODES,
  VmStatus,
} from "../protocol/enums.js";
import { MsgType } from "../protocol/header.js";
import type { RmMessage } from "../protocol/message.js";
import {
  AllocVmidReply,
  AuthImageReq,
  ConfigImageReq,
  ConsoleTarget,
  ConsoleWriteReq,
  CrashMsg,
  Empty,
  GetHypResourcesReply,
  GetIdReply,
  GetStateReply,
  HostTypeReply,
  MemAcceptReq,
  MemAppendReq,
  MemLendReq,
  MemNotifyReq,
  MemReclaimReq,
  OwnerReply,
  PeersReply,
  Raw,
  SetAddressLayoutReq,
  SetBootContextReq,
  SetDemandPagingReq,
  SetFirmwareMemReq,
  SetStatusReq,
  SetTimeBaseReq,
  U32Vmid,
  VmExitReq,
  VmidReq,
  VmidReqStrict,
  VmShutdownPayload,
  VmStopReq,
} from "../protocol/payloads.js";
import { RmError } from "../protocol/rm-error.js";
import { decodeLayout, type Layout } from "../protocol/struct.js";
import { Consoles } from "./console.js";
import type { HypervisorPort } from "./hypervisor.js";
import { ADMISSION, admit, targetVmid } from "./lifecycle.js";
import { Memparcels, parcelSize } from "./memparcels.js";
import { type CallResult, fail, Notifier, OK, okWith } from "./notifier.js";
import { RESET_STAGES, runResetStage } from "./reset.js";
import {
  MAX_DTB_SIZE,
  parseVmConfig,
  peerOf,
  ResourceAllocator,
  readParcelBytes,
  toWire,
} from "./resources.js";
import type { Outbound, PhysicalMemoryPort, ResourceManagerCore } from "./types.js";
import { setAddressLayout, setBootContext, setDemandPaging } from "./vm-setup.js";
import { bootContext, type VmRecord, VmTable } from "./vm-table.js";
import { VmidAllocator } from "./vmids.js";

export interface ResourceManagerOptions {
  readonly hypervisor: HypervisorPort;
  readonly memory: PhysicalMemoryPort;
  /** VMIDs below 64 HLOS may allocate by number (default: vmids.ts DEFAULT_SECONDARY_VMIDS). */
  readonly secondaryVmids?: readonly number[];
}

interface Call {
  readonly caller: number;
  readonly out: Outbound[];
}

interface Handler {
  readonly request: Layout<object>;
  /** The payload field that names the target VM, for calls whose target is in the payload. */
  readonly vmidField: string | undefined;
  run(call: Call, vm: VmRecord | undefined, req: object): CallResult;
}

/** An image name longer than this is left out of VM_GET_ID (the reply must fit one RM message). */
const MAX_ID_BYTES = 1024;

const EMPTY = new Uint8Array(0);

function inside(offset: bigint, size: bigint, total: bigint): boolean {
  return offset <= total && size <= total - offset;
}

function u32Bytes(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

/**
 * The Gunyah Resource Manager, as a pure state machine: reassembled RM messages in, the
 * messages to send out (notifications first, then the one reply), nothing else. Who may call
 * what is the admission table in lifecycle.ts; each handler below only does the call's work.
 */
export class ResourceManager implements ResourceManagerCore {
  private readonly hv: HypervisorPort;
  private readonly memory: PhysicalMemoryPort;
  private readonly linked = new Set<number>();
  private readonly vmids: VmidAllocator;
  private readonly vms = new VmTable();
  private readonly notifier: Notifier;
  private readonly parcels: Memparcels;
  private readonly resources = new ResourceAllocator();
  private readonly consoles: Consoles;
  private readonly resetJobs: { readonly vm: VmRecord; stage: number }[] = [];
  private readonly handlers: ReadonlyMap<number, Handler>;

  constructor(opts: ResourceManagerOptions) {
    this.hv = opts.hypervisor;
    this.memory = opts.memory;
    this.vmids = new VmidAllocator(opts.secondaryVmids);
    this.notifier = new Notifier(this.vms, this.linked);
    this.parcels = new Memparcels({ vms: this.vms, hypervisor: this.hv, notifier: this.notifier });
    this.consoles = new Consoles(this.notifier);
    this.handlers = this.buildHandlers();
  }

  connect(vmid: number): void {
    this.linked.add(vmid);
  }

  disconnect(vmid: number): void {
    this.linked.delete(vmid);
  }

  get hasDeferredWork(): boolean {
    return this.resetJobs.length > 0;
  }

  handle(from: number, msg: RmMessage): Outbound[] {
    if (msg.type !== MsgType.REQUEST) return [];
    const out: Outbound[] = [];
    const r = this.dispatch(from, msg, out);
    out.push({
      to: from,
      message: {
        type: MsgType.REPLY,
        seq: msg.seq,
        msgId: msg.msgId,
        error: r.error,
        payload: r.payload ?? EMPTY,
      },
    });
    return out;
  }

  runDeferred(): Outbound[] {
    const job = this.resetJobs[0];
    if (!job) return [];
    const out: Outbound[] = [];
    const stage = RESET_STAGES[job.stage];
    invariant(stage !== undefined, "reset job past its last stage");
    runResetStage(
      stage,
      {
        vms: this.vms,
        parcels: this.parcels,
        resources: this.resources,
        hypervisor: this.hv,
        notifier: this.notifier,
        consoles: this.consoles,
      },
      job.vm,
      out,
    );
    job.stage++;
    if (job.stage === RESET_STAGES.length) this.resetJobs.shift();
    return out;
  }

  /**
   * A hypervisor event: the VM stopped on its own (power-off, reset request, watchdog, vCPU
   * fault…). A VM that is not RUNNING or PAUSED has already stopped for another reason, so the
   * event is stale and ignored.
   */
  vmExited(vmid: number, exitType: number, exitFlags = 0, exitCode = 0): Outbound[] {
    const vm = this.vms.get(vmid);
    if (!vm || vm.permanent || (vm.status !== VmStatus.RUNNING && vm.status !== VmStatus.PAUSED))
      return [];
    const out: Outbound[] = [];
    this.hv.stopVm(vmid);
    this.toExited(out, vm, exitType, exitFlags, exitCode);
    return out;
  }

  /** A read-only picture of the RM's bookkeeping, for tests, traces and `tsvisor rm demo`. */
  snapshot(): RmSnapshot {
    return {
      linked: [...this.linked].sort((a, b) => a - b),
      allocatedVmids: this.vmids.allocated,
      vms: [...this.vms.all()].map((vm) => ({
        vmid: vm.vmid,
        owner: vm.owner,
        status: vm.status,
        osStatus: vm.osStatus,
        appStatus: vm.appStatus,
        peers: [...this.vms.peersOf(vm.vmid)].sort((a, b) => a - b),
        resources: vm.resources.length + vm.retired.length,
        hvCreated: vm.hvCreated,
        consoleReaders: this.consoles.readersOf(vm.vmid),
      })),
      parcels: [...this.parcels.all()].map((p) => ({
        handle: p.handle,
        owner: p.owner,
        transType: p.transType,
        finished: p.finished,
        entries: p.sgl.length,
        targets: [...p.targets.values()].map((t) => ({
          vmid: t.vmid,
          state: t.state,
          mapped: t.mapped,
        })),
      })),
      virqHolders: this.resources.virqs
        .holders()
        .map((h) => ({ holder: h, virqs: this.resources.virqs.inUse(h) })),
      resetQueue: this.resetJobs.map((j) => ({
        vmid: j.vm.vmid,
        nextStage: RESET_STAGES[j.stage] ?? "done",
      })),
    };
  }

  // ---- dispatch

  private dispatch(from: number, msg: RmMessage, out: Outbound[]): CallResult {
    const handler = this.handlers.get(msg.msgId);
    const rule = ADMISSION.get(msg.msgId);
    if (!handler || !rule) return fail(RmError.UNIMPLEMENTED);
    let req: Record<string, unknown>;
    try {
      req = decodeLayout(handler.request, msg.payload) as Record<string, unknown>;
    } catch (e) {
      if (isTsvisorError(e)) return fail(RmError.MSG_INVALID);
      throw e;
    }
    const field = handler.vmidField === undefined ? undefined : req[handler.vmidField];
    const tv = targetVmid(rule, from, typeof field === "number" ? field : undefined);
    const vm = tv === undefined ? undefined : this.vms.get(tv);
    const err = admit(rule, from, vm && this.vms.view(vm));
    if (err !== RmError.OK) return fail(err);
    return handler.run({ caller: from, out }, vm, req);
  }

  private buildHandlers(): ReadonlyMap<number, Handler> {
    const R = RequestId;
    /** A call about a VM: admission guarantees the VM exists by the time `run` is called. */
    const onVm = <T extends object>(
      request: Layout<T>,
      run: (c: Call, vm: VmRecord, req: T) => CallResult,
      vmidField: "vmid" | "target" | undefined = "vmid",
    ): Handler => ({
      request,
      vmidField,
      run: (c, vm, req) => {
        invariant(vm !== undefined, "admission let a call through without its VM");
        return run(c, vm, req as T);
      },
    });
    const noVm = <T extends object>(
      request: Layout<T>,
      run: (c: Call, req: T) => CallResult,
    ): Handler => ({
      request,
      vmidField: undefined,
      run: (c, _vm, req) => run(c, req as T),
    });
    const self = <T extends object>(
      request: Layout<T>,
      run: (c: Call, vm: VmRecord, req: T) => CallResult,
    ) => onVm(request, run, undefined);

    return new Map<number, Handler>([
      [R.VM_ALLOC_VMID, noVm(VmidReq, (c, req) => this.alloc(c, req.vmid))],
      [R.VM_DEALLOC_VMID, onVm(VmidReq, (_c, vm) => this.dealloc(vm))],
      [R.VM_CONFIG_IMAGE, onVm(ConfigImageReq, (c, vm, req) => this.configImage(c, vm, req))],
      [R.VM_AUTH_IMAGE, onVm(AuthImageReq, (c, vm) => this.enter(c, vm, VmStatus.INIT))],
      [R.VM_INIT, onVm(VmidReqStrict, (c, vm) => this.init(c, vm))],
      [
        R.VM_SET_BOOT_CONTEXT,
        onVm(SetBootContextReq, (_c, vm, req) => fail(setBootContext(vm, req))),
      ],
      [
        R.VM_SET_DEMAND_PAGING,
        onVm(SetDemandPagingReq, (_c, vm, req) => fail(setDemandPaging(vm, req))),
      ],
      [
        R.VM_SET_ADDRESS_LAYOUT,
        onVm(SetAddressLayoutReq, (_c, vm, req) => fail(setAddressLayout(vm, req, this.parcels))),
      ],
      [
        R.VM_GET_HYP_RESOURCES,
        onVm(VmidReq, (c, vm) =>
          okWith(GetHypResourcesReply, {
            entries: vm.resources.filter((e) => e.holder === c.caller).map(toWire),
          }),
        ),
      ],
      [R.VM_START, onVm(VmidReq, (c, vm) => this.start(c, vm))],
      [R.VM_STOP, onVm(VmStopReq, (c, vm, req) => this.stop(c, vm, req.flags, req.stop_reason))],
      [R.VM_RESET, onVm(VmidReq, (c, vm) => this.reset(c, vm))],
      [
        R.VM_GET_STATE,
        onVm(VmidReq, (_c, vm) =>
          okWith(GetStateReply, {
            vm_status: vm.status,
            os_status: vm.osStatus,
            app_status: vm.appStatus,
          }),
        ),
      ],
      [
        R.VM_SET_STATUS,
        self(SetStatusReq, (c, vm, req) => this.setStatus(c, vm, req.os_status, req.app_status)),
      ],
      [R.VM_EXIT, self(VmExitReq, (c, vm, req) => this.exit(c, vm, req.exit_flags, req.exit_code))],
      [R.VM_GET_VMID, noVm(Empty, (c) => okWith(U32Vmid, { vmid: c.caller }))],
      [R.VM_GET_OWNER, self(Empty, (_c, vm) => okWith(OwnerReply, { owner_vmid: vm.owner }))],
      [
        R.VM_GET_PEERS,
        self(Empty, (_c, vm) =>
          okWith(PeersReply, {
            peers: [...this.vms.peersOf(vm.vmid)].sort((a, b) => a - b).map((vmid) => ({ vmid })),
          }),
        ),
      ],
      [
        R.VM_HOST_GET_TYPE,
        noVm(Empty, () => okWith(HostTypeReply, { host_type: HostType.X86_64 })),
      ],
      [R.VM_GET_CRASH_MSG, onVm(VmidReq, (_c, vm) => okWith(CrashMsg, { msg: vm.crashMsg }))],
      [
        R.VM_SET_CRASH_MSG,
        self(CrashMsg, (_c, vm, req) => {
          vm.crashMsg = req.msg.slice();
          return OK;
        }),
      ],
      [R.VM_GET_ID, onVm(VmidReq, (_c, vm) => this.getId(vm))],
      [
        R.VM_SET_TIME_BASE,
        onVm(SetTimeBaseReq, (_c, vm, req) =>
          this.setTimeBase(vm, req.time_base, req.sys_timer_ref),
        ),
      ],
      [
        R.VM_SET_FIRMWARE_MEM,
        onVm(SetFirmwareMemReq, (_c, vm, req) => this.setFirmwareMem(vm, req)),
      ],
      [
        R.VM_CONSOLE_OPEN,
        onVm(
          ConsoleTarget,
          (c, vm) => {
            this.consoles.open(vm.vmid, c.caller);
            return OK;
          },
          "target",
        ),
      ],
      [
        R.VM_CONSOLE_CLOSE,
        onVm(
          ConsoleTarget,
          (c, vm) => {
            this.consoles.close(vm.vmid, c.caller);
            return OK;
          },
          "target",
        ),
      ],
      [
        R.VM_CONSOLE_WRITE,
        onVm(
          ConsoleWriteReq,
          (c, vm, req) => {
            this.consoles.write(c.out, c.caller, vm.vmid, req.data);
            return OK;
          },
          "target",
        ),
      ],
      [R.VM_CONSOLE_FLUSH, onVm(ConsoleTarget, () => OK, "target")],
      [
        R.MEM_LEND,
        self(MemLendReq, (c, _vm, req) => this.parcels.create(c.caller, TransType.LEND, req)),
      ],
      [
        R.MEM_SHARE,
        self(MemLendReq, (c, _vm, req) => this.parcels.create(c.caller, TransType.SHARE, req)),
      ],
      [
        R.MEM_DONATE,
        self(MemLendReq, (c, _vm, req) => this.parcels.create(c.caller, TransType.DONATE, req)),
      ],
      [R.MEM_APPEND, self(MemAppendReq, (c, _vm, req) => this.parcels.append(c.caller, req))],
      [
        R.MEM_ACCEPT,
        self(MemAcceptReq, (c, _vm, req) => this.parcels.accept(c.out, c.caller, req)),
      ],
      [
        R.MEM_RELEASE,
        self(MemReclaimReq, (c, _vm, req) => this.parcels.release(c.out, c.caller, req)),
      ],
      [R.MEM_RECLAIM, self(MemReclaimReq, (c, _vm, req) => this.parcels.reclaim(c.caller, req))],
      [
        R.MEM_NOTIFY,
        self(MemNotifyReq, (c, _vm, req) => this.parcels.notify(c.out, c.caller, req)),
      ],
    ]);
  }

  // ---- VM lifecycle

  private alloc(c: Call, requested: number): CallResult {
    const r = this.vmids.allocate(requested);
    if (!r.ok) return fail(r.error);
    this.vms.create(r.vmid, c.caller);
    return requested === 0 ? okWith(AllocVmidReply, { vmid: r.vmid }) : OK;
  }

  /**
   * Frees the VMID. Parcels still naming the VM are released for it (a VM that later gets the
   * same VMID cannot accept them), and capabilities it held in other VMs' resource lists go.
   */
  private dealloc(vm: VmRecord): CallResult {
    invariant(
      !vm.hvCreated && vm.resources.length === 0,
      "a LOAD or RESET VM holds no hypervisor objects",
    );
    this.parcels.releaseAllFor(vm.vmid);
    for (const other of this.vms.all()) {
      // Retired entries too: their interrupts would otherwise be freed later, into the pool of
      // whichever VM gets this VMID next.
      const held = [...other.resources, ...other.retired].filter((e) => e.holder === vm.vmid);
      if (held.length === 0) continue;
      this.resources.release(held);
      other.resources = other.resources.filter((e) => e.holder !== vm.vmid);
      other.retired = other.retired.filter((e) => e.holder !== vm.vmid);
    }
    this.consoles.forget(vm.vmid, true);
    this.vms.remove(vm);
    this.vmids.free(vm.vmid);
    return OK;
  }

  /** Moves the VM and tells its peers. */
  private enter(c: Call, vm: VmRecord, status: VmStatus): CallResult {
    this.vms.setStatus(vm, status);
    this.notifier.vmStatus(c.out, vm);
    return OK;
  }

  /** A failure after admission: the VM cannot be loaded (INIT_FAILED), and its peers hear so. */
  private initFailed(c: Call, vm: VmRecord, error: number): CallResult {
    this.enter(c, vm, VmStatus.INIT_FAILED);
    return fail(error);
  }

  private configImage(
    c: Call,
    vm: VmRecord,
    req: {
      auth_mech: number;
      mem_handle: number;
      image_offset: bigint;
      image_size: bigint;
      dtb_offset: bigint;
      dtb_size: bigint;
    },
  ): CallResult {
    const p = this.parcels.usableBy(req.mem_handle, vm.vmid);
    if (!p || p.owner !== c.caller) return this.initFailed(c, vm, RmError.MEM_INVALID);
    const size = parcelSize(p);
    if (
      !inside(req.image_offset, req.image_size, size) ||
      !inside(req.dtb_offset, req.dtb_size, size) ||
      req.dtb_size === 0n ||
      req.dtb_size > MAX_DTB_SIZE
    ) {
      return this.initFailed(c, vm, RmError.ARGUMENT_INVALID);
    }
    let next: VmStatus;
    switch (req.auth_mech) {
      case AuthMech.NONE:
      case AuthMech.ANDROID:
        next = VmStatus.INIT;
        break;
      case AuthMech.PLATFORM:
        next = VmStatus.AUTH;
        break;
      default:
        return this.initFailed(c, vm, RmError.ARGUMENT_INVALID);
    }
    vm.image = {
      handle: p.handle,
      authMech: req.auth_mech,
      imageOffset: req.image_offset,
      imageSize: req.image_size,
      dtbOffset: req.dtb_offset,
      dtbSize: req.dtb_size,
    };
    return this.enter(c, vm, next);
  }

  private init(c: Call, vm: VmRecord): CallResult {
    const img = vm.image;
    invariant(img !== undefined, "a VM in INIT has a config image");
    const p = this.parcels.usableBy(img.handle, vm.vmid);
    if (!p) return this.initFailed(c, vm, RmError.MEM_INVALID);
    const dtb = readParcelBytes(this.memory, p.owner, p.sgl, img.dtbOffset, Number(img.dtbSize));
    if (!dtb) return this.initFailed(c, vm, RmError.MEM_INVALID);
    const parsed = parseVmConfig(dtb);
    if (!parsed.ok) return this.initFailed(c, vm, parsed.error);
    const config = parsed.config;
    const links = new Set<number>();
    for (const d of config.vdevices) {
      const peer = peerOf(vm, d);
      const peerVm = this.vms.get(peer);
      if (peer === vm.vmid || !peerVm) return this.initFailed(c, vm, RmError.ARGUMENT_INVALID);
      if (peer !== vm.owner) links.add(peer);
    }
    const alloc = this.resources.allocate(vm, config);
    if (!alloc.ok) return this.initFailed(c, vm, alloc.error);
    const err = this.hv.createVm(vm.vmid, config, alloc.entries, {
      demandPaging: vm.demandPaging,
      image: vm.imageRange,
      firmware: vm.firmwareRange,
    });
    if (err !== RmError.OK) {
      this.resources.release(alloc.entries);
      return this.initFailed(c, vm, err);
    }
    vm.config = config;
    vm.resources = [...alloc.entries];
    vm.hvCreated = true;
    for (const l of links) vm.links.add(l);
    return this.enter(c, vm, VmStatus.READY);
  }

  private start(c: Call, vm: VmRecord): CallResult {
    invariant(vm.hvCreated, "a READY VM has hypervisor objects");
    // The config-image parcel appears where VM_SET_ADDRESS_LAYOUT(IMAGE) put it.
    const placed = new Map<number, bigint>();
    if (vm.image && vm.imageRange) placed.set(vm.image.handle, vm.imageRange.base);
    let err = this.parcels.acceptAndMapAllFor(vm.vmid, placed);
    if (err === RmError.OK) err = this.hv.startVcpus(vm.vmid, bootContext(vm));
    if (err !== RmError.OK) return this.initFailed(c, vm, err);
    return this.enter(c, vm, VmStatus.RUNNING);
  }

  private stop(c: Call, vm: VmRecord, flags: number, stopReason: number): CallResult {
    if ((flags & ~StopFlags.FORCE_STOP) !== 0) return fail(RmError.ARGUMENT_INVALID);
    if ((flags & StopFlags.FORCE_STOP) === 0) {
      // A graceful stop only asks the VM to shut itself down; it exits later with VM_EXIT.
      this.notifier.send(c.out, vm.vmid, NotificationId.VM_SHUTDOWN, VmShutdownPayload, {
        stop_reason: stopReason,
      });
      return OK;
    }
    const err = this.hv.stopVm(vm.vmid);
    if (err !== RmError.OK) return fail(err);
    this.toExited(c.out, vm, ExitType.VM_STOP_FORCED, 0, 0);
    return OK;
  }

  private toExited(
    out: Outbound[],
    vm: VmRecord,
    exitType: number,
    flags: number,
    code: number,
  ): void {
    this.vms.setStatus(vm, VmStatus.EXITED);
    // An EXITED VM never runs again (only VM_RESET follows), so it stops holding memory now:
    // its parcels are unmapped and released, and the owner may reclaim them before the reset
    // (tsvisor's teardown order: stop → reclaim → reset → dealloc; docs/rm.md).
    this.parcels.releaseAllFor(vm.vmid);
    this.notifier.vmStatus(out, vm);
    this.notifier.vmExited(out, vm, exitType, flags, code);
  }

  private reset(c: Call, vm: VmRecord): CallResult {
    this.enter(c, vm, VmStatus.RESETTING);
    this.resetJobs.push({ vm, stage: 0 });
    return OK;
  }

  private exit(c: Call, vm: VmRecord, flags: number, code: number): CallResult {
    if (!VM_EXIT_VALID_CODES.includes(code)) return fail(RmError.ARGUMENT_INVALID);
    const err = this.hv.stopVm(vm.vmid);
    if (err !== RmError.OK) return fail(err);
    this.toExited(c.out, vm, ExitType.VM_EXIT, flags, code);
    return OK;
  }

  private setStatus(c: Call, vm: VmRecord, osStatus: number, appStatus: number): CallResult {
    if (osStatus !== 0) vm.osStatus = osStatus;
    vm.appStatus = appStatus;
    this.notifier.vmStatus(c.out, vm);
    return OK;
  }

  /** The only identity tsvisor knows is the vm-config's image-name (id type 2, NAME). */
  private getId(vm: VmRecord): CallResult {
    const name = vm.config?.imageName;
    const bytes = name === undefined ? EMPTY : new TextEncoder().encode(name);
    const ids = bytes.length > 0 && bytes.length <= MAX_ID_BYTES ? [{ id_type: 2, id: bytes }] : [];
    return okWith(GetIdReply, { ids });
  }

  /** Recorded for the hypervisor; the reply carries the hypervisor's error word (0). */
  private setTimeBase(vm: VmRecord, timeBase: bigint, sysTimerRef: bigint): CallResult {
    vm.timeBase = { timeBase, sysTimerRef };
    return okWith(Raw, { data: u32Bytes(0) });
  }

  private setFirmwareMem(
    vm: VmRecord,
    req: { fw_mp_handle: number; fw_offset: bigint; fw_size: bigint },
  ): CallResult {
    const p = this.parcels.usableBy(req.fw_mp_handle, vm.vmid);
    if (!p) return fail(RmError.MEM_INVALID);
    if (req.fw_size === 0n || !inside(req.fw_offset, req.fw_size, parcelSize(p))) {
      return fail(RmError.ARGUMENT_INVALID);
    }
    vm.firmwareMem = { handle: p.handle, offset: req.fw_offset, size: req.fw_size };
    return okWith(Raw, { data: u32Bytes(0) });
  }
}

export interface RmSnapshot {
  readonly linked: readonly number[];
  readonly allocatedVmids: readonly number[];
  readonly vms: readonly {
    readonly vmid: number;
    readonly owner: number;
    readonly status: number;
    readonly osStatus: number;
    readonly appStatus: number;
    readonly peers: readonly number[];
    readonly resources: number;
    readonly hvCreated: boolean;
    readonly consoleReaders: readonly number[];
  }[];
  readonly parcels: readonly {
    readonly handle: number;
    readonly owner: number;
    readonly transType: number;
    readonly finished: boolean;
    readonly entries: number;
    readonly targets: readonly {
      readonly vmid: number;
      readonly state: string;
      readonly mapped: boolean;
    }[];
  }[];
  readonly virqHolders: readonly { readonly holder: number; readonly virqs: readonly number[] }[];
  readonly resetQueue: readonly { readonly vmid: number; readonly nextStage: string }[];
}
