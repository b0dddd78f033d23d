/**
 * bench/kvm/build — builds what the KVM benchmarks run besides tsvisor: the C baseline
 * (bench/c/kvm-pio-loop.c, with the machine's cc) and the bench guest (bench/kvm/pio-loop.S,
 * with GNU as/ld), into dist/bench/. Each benchmark also builds them on demand; bench/run-all.sh
 * calls this first so a toolchain problem shows up before any measuring.
 * Usage: node dist/bench/kvm/build.js
 */
import { cBaseline, pioGuest } from "./common.js";

process.stdout.write(`built ${cBaseline()}\nbuilt ${pioGuest()}\n`);
