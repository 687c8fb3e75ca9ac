#!/usr/bin/env bash
# `make install` in two fresh clones of this repository, side by side in one run: pip compiling every
# installed file to bytecode (pip's default) and not (--no-compile, the Makefile's choice; Python
# compiles what is imported, when it is first imported). Both use pip's cache and the kept engine
# wheel, as a fresh CI machine with a warm cache does.
# Usage: bash benchmarks/install_time.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
declare -A secs
for variant in compile no-compile; do
  git clone -q "$repo" "$work/$variant"
  flags="--quiet"
  [ "$variant" = no-compile ] && flags="--quiet --no-compile"
  start=$(date +%s.%N)
  make -C "$work/$variant" install PIP_INSTALL=".venv/bin/python -m pip install $flags" >"$work/$variant.log" 2>&1
  secs[$variant]=$(echo "$(date +%s.%N) - $start" | bc)
  printf '%-11s make install: %6.1f s\n' "$variant" "${secs[$variant]}"
done
printf 'no-compile / compile: %.2f\n' "$(echo "${secs[no-compile]} / ${secs[compile]}" | bc -l)"
