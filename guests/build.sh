#!/bin/sh
# Builds the test guests with the machine's GNU as/ld.
#   sh guests/build.sh [OUTDIR] [NAME...]
# OUTDIR defaults to dist/guests (gitignored). Each source's first line says what it becomes:
# "# tsvisor-guest: elf" → NAME.elf, a static ELF64 laid out by guest.ld from 1 MiB (started in
# long mode);
# "# tsvisor-guest: flat" → NAME.bin, a flat binary linked at 0x1000 (started in real mode).
# Outputs appear atomically (rename), so concurrent builds of the same guest are harmless.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../dist/guests}
[ $# -gt 0 ] && shift
mkdir -p "$out"
out=$(cd "$out" && pwd)
for tool in as ld; do
  command -v "$tool" >/dev/null 2>&1 || { echo "guests: '$tool' not found; install binutils" >&2; exit 1; }
done
if [ $# -eq 0 ]; then
  set -- $(cd "$here" && ls *.S | sed 's/\.S$//')
fi
# Newer ld warns about the (intended) RWX segment of a guest that is one segment.
rwx=""
if ld --help 2>/dev/null | grep -q no-warn-rwx-segments; then rwx="--no-warn-rwx-segments"; fi
for name in "$@"; do
  src="$here/$name.S"
  [ -f "$src" ] || { echo "guests: no source $src" >&2; exit 1; }
  kind=$(sed -n '1s/^# tsvisor-guest: *//p' "$src")
  tmp=$(mktemp -d "$out/.build-$name.XXXXXX")
  as --64 -I "$here" -o "$tmp/$name.o" "$src"
  case "$kind" in
    elf)
      ld -m elf_x86_64 -N -T "$here/guest.ld" --build-id=none -z noexecstack $rwx \
        -o "$tmp/$name.elf" "$tmp/$name.o"
      mv -f "$tmp/$name.elf" "$out/$name.elf" ;;
    flat)
      ld -m elf_x86_64 -N -e _start -Ttext 0x1000 --oformat binary \
        -o "$tmp/$name.bin" "$tmp/$name.o"
      mv -f "$tmp/$name.bin" "$out/$name.bin" ;;
    *)
      rm -rf "$tmp"
      echo "guests: $src does not start with '# tsvisor-guest: elf|flat'" >&2; exit 1 ;;
  esac
  rm -rf "$tmp"
done
