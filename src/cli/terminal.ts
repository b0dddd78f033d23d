import { ByteRing } from "../devices/byte-ring.js";

/** Ctrl-] detaches: the VM is force-stopped, as telnet and QEMU's monitor users expect. */
export const DETACH_BYTE = 0x1d;

/**
 * Forwards an interactive terminal's keystrokes to a guest's COM1 input ring, raw (so the
 * guest sees every byte, including Ctrl-C), until the returned function is called. Ctrl-]
 * calls `onDetach` instead of reaching the guest. Bytes that do not fit in the ring are
 * dropped, as a real UART without flow control would.
 */
export function attachTerminal(
  stdin: NodeJS.ReadStream,
  ring: SharedArrayBuffer,
  onDetach: () => void,
): () => void {
  const input = new ByteRing(ring);
  const wasRaw = stdin.isRaw;
  stdin.setRawMode(true);
  const onData = (chunk: Buffer) => {
    const at = chunk.indexOf(DETACH_BYTE);
    if (at >= 0) {
      input.tryWrite(chunk.subarray(0, at));
      onDetach();
      return;
    }
    input.tryWrite(chunk);
  };
  stdin.on("data", onData);
  stdin.resume();
  return () => {
    stdin.off("data", onData);
    stdin.setRawMode(wasRaw);
    stdin.pause();
  };
}
