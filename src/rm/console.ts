import { NotificationId } from "../protocol/catalogue.js";
import { ConsoleCharsPayload } from "../protocol/payloads.js";
import type { Notifier } from "./notifier.js";
import type { Outbound } from "./types.js";

/**
 * VM consoles over RM messages. tsvisor's definition (the reference gives only the layouts):
 * a client opens the console of a VM it owns or is; a VM's VM_CONSOLE_WRITE to its own console
 * goes out as VM_CONSOLE_CHARS (from_vmid = the VM) to every linked client that opened it; an
 * owner's write to a guest's console goes to the guest as VM_CONSOLE_CHARS (from_vmid = the
 * owner): console input. Nothing is buffered, so FLUSH has nothing to do.
 */
export class Consoles {
  /** VMID → clients that have its console open. */
  private readonly readers = new Map<number, Set<number>>();

  constructor(private readonly notifier: Notifier) {}

  open(target: number, reader: number): void {
    let set = this.readers.get(target);
    if (!set) {
      set = new Set();
      this.readers.set(target, set);
    }
    set.add(reader);
  }

  close(target: number, reader: number): void {
    const set = this.readers.get(target);
    set?.delete(reader);
    if (set?.size === 0) this.readers.delete(target);
  }

  write(out: Outbound[], writer: number, target: number, data: Uint8Array): void {
    if (data.length === 0) return;
    if (writer === target) {
      const readers = [...(this.readers.get(target) ?? [])].sort((a, b) => a - b);
      for (const r of readers) {
        this.notifier.send(out, r, NotificationId.VM_CONSOLE_CHARS, ConsoleCharsPayload, {
          from_vmid: writer,
          data,
        });
      }
      return;
    }
    this.notifier.send(out, target, NotificationId.VM_CONSOLE_CHARS, ConsoleCharsPayload, {
      from_vmid: writer,
      data,
    });
  }

  /** Closes the VM's own console (reset) and, when it goes away, every console it had open. */
  forget(vmid: number, asReader: boolean): void {
    this.readers.delete(vmid);
    if (!asReader) return;
    for (const [target, set] of this.readers) {
      set.delete(vmid);
      if (set.size === 0) this.readers.delete(target);
    }
  }

  readersOf(vmid: number): readonly number[] {
    return [...(this.readers.get(vmid) ?? [])].sort((a, b) => a - b);
  }
}
