#!/bin/sh
# Builds tsvisor, the test guests and the C baseline, then runs every benchmark; each prints a
# markdown table and writes bench/results/<name>.json.
#   sh bench/run-all.sh [--quick]
# QEMU (for the whole-process comparison) is installed from Debian if missing and we are root
# (or have sudo); if that fails, that row says "QEMU unavailable" and the rest still runs.
# Without /dev/kvm the KVM benchmarks say they were skipped.
set -eu
cd "$(dirname "$0")/.."

echo "== build"
npx tsc -p .
sh guests/build.sh
node dist/bench/kvm/build.js

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
  echo "== installing QEMU (qemu-system-x86) from Debian"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null 2>&1 &&
    $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq qemu-system-x86 >/dev/null; then
    echo "installed: $(qemu-system-x86_64 --version | head -n 1)"
  else
    echo "could not install QEMU: the whole-process table will say 'QEMU unavailable'"
  fi
fi

failed=""
for bench in rm-rpc kvm/pio-exits kvm/lifecycle kvm/whole-process doorbell/latency checker/run \
  api/lifecycle api/memory; do
  echo
  echo "== bench/$bench $*"
  node "dist/bench/$bench.js" "$@" || failed="$failed $bench"
done

echo
if [ -n "$failed" ]; then
  echo "FAILED:$failed" >&2
  exit 1
fi
echo "all benchmarks ran; results in bench/results/"
