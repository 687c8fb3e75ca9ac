#!/usr/bin/env bash
# `make install` in fresh clones of this repository, side by side in one run, four ways of getting
# bytecode: pip compiling each installed file as it installs (pip's default), no bytecode at install
# (Python compiles what is imported, at first import), pip without its pass then compileall over
# site-packages on every core, and the Makefile's way (pip without its pass, then
# shootout.precompile importing what the commands and tests use, in two processes). After each
# install, the first import of the modules a benchmark run and a fine-tune use is timed too: that is
# where the second way pays. All use pip's cache and the kept engine wheel, as a fresh CI machine
# with a warm cache does. Bytecode writing is left on (PYTHONDONTWRITEBYTECODE unset).
# Usage: bash benchmarks/install_time.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
imports="import torch, transformers, peft, trl, pandas, scipy.stats, statsmodels.api, seaborn, openpyxl, llama_cpp"
now() { date +%s.%N; }
unset PYTHONDONTWRITEBYTECODE
compileall='.venv/bin/python -m compileall -q -j 0 $$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])") >/dev/null || true'
for variant in pip-compiles at-first-import compileall precompile; do
  git clone -q "$repo" "$work/$variant"
  case $variant in
    pip-compiles)    args=(PIP_INSTALL=".venv/bin/python -m pip install --quiet" COMPILE=true) ;;
    at-first-import) args=(COMPILE=true) ;;
    compileall)      args=(COMPILE="$compileall") ;;
    precompile)      args=() ;;
  esac
  start=$(now)
  make -C "$work/$variant" install "${args[@]}" >"$work/$variant.log" 2>&1
  mid=$(now)
  (cd "$work/$variant" && .venv/bin/python -c "$imports")
  end=$(now)
  printf '%-16s install %6.1f s   first import %5.1f s   both %6.1f s\n' "$variant" \
    "$(echo "$mid - $start" | bc)" "$(echo "$end - $mid" | bc)" "$(echo "$end - $start" | bc)"
done
