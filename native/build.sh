#!/bin/sh
# Builds the native addon (npm runs this as the package's install script).
# It needs a C compiler and <linux/kvm.h>; say which one is missing instead of letting the
# compiler fail halfway through a wall of node-gyp output.
set -eu
cd "$(dirname "$0")/.."
if ! command -v cc >/dev/null 2>&1; then
  echo "tsvisor: no C compiler (cc) found; install build-essential (Debian: apt-get install -y build-essential)" >&2
  exit 1
fi
if ! printf '#include <linux/kvm.h>\n' | cc -E -x c - >/dev/null 2>&1; then
  echo "tsvisor: <linux/kvm.h> is missing; install the kernel headers (Debian: apt-get install -y linux-libc-dev)" >&2
  exit 1
fi
# Use the running Node's own headers when npm has not named a nodedir, so node-gyp never
# tries to download them.
if [ -z "${npm_config_nodedir:-}" ]; then
  prefix=$(node -p 'require("node:path").resolve(process.execPath, "..", "..")')
  if [ -f "$prefix/include/node/node_api.h" ]; then
    export npm_config_nodedir="$prefix"
  fi
fi
if command -v node-gyp >/dev/null 2>&1; then
  exec node-gyp rebuild
fi
# Outside npm the bundled node-gyp is not on PATH; npm ships it beside its own CLI.
npm_gyp="$(dirname "$(node -p 'require.resolve("npm/package.json", { paths: [require("node:path").resolve(process.execPath, "..", "..", "lib", "node_modules")] })' 2>/dev/null || true)")/node_modules/node-gyp/bin/node-gyp.js"
if [ -f "$npm_gyp" ]; then
  exec node "$npm_gyp" rebuild
fi
echo "tsvisor: node-gyp not found; run this through npm (npm run install)" >&2
exit 1
