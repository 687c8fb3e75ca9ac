#!/usr/bin/env bash
# A CUDA box with no network: build the engine for CUDA with the project's flags (src/core/accel.py,
# through build_llama_cpp.sh), show that a model loads whatever was imported first, run the demo and a
# classification example on the GPU to finished reports, and measure the engine against llama-bench.
#
#   benchmarks/cuda_session.sh setup  WHEELS_DIR SDIST_TGZ [CCCL_WHEEL]  # deps into $WORK/site, the build
#                                                            # started (with a newer CCCL's headers: see
#                                                            # build_llama_cpp.sh, CCCL_INCLUDE)
#   benchmarks/cuda_session.sh stash  FILE...                # keep files (models sent in parts)
#   benchmarks/cuda_session.sh check  OUT                    # wait for the build; engine facts; the probe
#   benchmarks/cuda_session.sh runs   OUT                    # demo + sst2, all layers offloaded
#   benchmarks/cuda_session.sh gpu    OUT                    # gpu_ceiling.py against llama-bench
#
# Models travel as split parts named gemma.partNN and smol.partNN (the embedded GGUFs), joined by
# `check` into the cache the project reads ($SHOOTOUT_CACHE/models) and checked by their sha256.
# WORK (default /tmp/cuda-session) holds everything.
set -uo pipefail
step=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${WORK:-/tmp/cuda-session}
py=${PYTHON:-python3}
mkdir -p "$work/site" "$work/stash"
export SHOOTOUT_CACHE=$work/cache
lib=$work/build/bin
src() { ls -d "$work"/llama_cpp_python-* 2>/dev/null | head -1; }
# the project, its deps, and llama-cpp-python's Python side over the CUDA build's libraries
with_engine() { LLAMA_CPP_LIB_PATH=$lib PYTHONPATH=$repo/src:$(src):$work/site "$@"; }
say() { echo "== $(date +%T) $*"; }

case $step in
  setup)
    wheels=$1; sdist=$2; cccl=${3:-}
    if [ -n "$cccl" ]; then
      $py -m zipfile -e "$cccl" "$work/cccl" && export CCCL_INCLUDE=$work/cccl/nvidia/cu13/include/cccl
      say "CCCL headers: $(grep -h 'define CCCL_VERSION' "$CCCL_INCLUDE"/cuda/std/__cccl/version.h)"
    fi
    $py -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$wheels"/*.whl "$wheels"/*.tar.gz 2>&1 | tail -3
    tar xzf "$sdist" -C "$work"
    say "build started: $(python3 "$repo/src/core/accel.py" cmake-args cuda)"
    setsid bash -c "$here/build_llama_cpp.sh $(src) $work/build cuda > $work/build.log 2>&1; echo \$? > $work/build.rc" \
        < /dev/null > /dev/null 2>&1 &
    nvidia-smi -L; nvcc --version | tail -1
    ;;
  stash)
    cp "$@" "$work/stash/" && ls -la "$work/stash"
    ;;
  check)
    out=$1
    for _ in $(seq 1 110); do [ -f "$work/build.rc" ] && break; sleep 5; done
    say "build rc=$(cat "$work/build.rc" 2>/dev/null)"; tail -3 "$work/build.log"; cp "$work/build.log" "$out/"
    mkdir -p "$SHOOTOUT_CACHE/models"
    cat "$work"/stash/gemma.part* > "$SHOOTOUT_CACHE/models/gemma-3-270m.Q4_K_M.gguf"
    cat "$work"/stash/smol.part* > "$SHOOTOUT_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    with_engine $py - <<'PY' 2>&1 | tee "$out/engine_check.txt"
from core import cxx_runtime
from core.embedded import MODELS, cache_dir, is_intact
for m in MODELS.values():
    print(m.name, "intact" if is_intact(cache_dir() / "models" / m.file, m) else "MISSING OR DAMAGED")
lib = cxx_runtime.engine_library_dir()
for p in sorted(lib.glob("lib*.so*")):
    if not p.is_symlink():
        f = cxx_runtime.inspect(p)
        print(f"{p.name}: needs libstdc++.so.6: {f.needs_shared_runtime}; exported std:: symbols: {f.exported}; "
              f"runtime internals exported: {list(f.markers) or 'none'}")
print("problem:", cxx_runtime.problem(lib))
PY
    model=$SHOOTOUT_CACHE/models/gemma-3-270m.Q4_K_M.gguf
    say "probe: every import order, CUDA build with the project's flags"
    with_engine $py "$here/engine_load_probe.py" "$model" --json "$out/probe_fixed.json" | grep -v "binding file"
    ;;
  runs)
    out=$1
    cd "$work" || exit 1
    for job in "demo --out demo" "demo --task sst2 --out sst2"; do
      say "shootout $job"
      with_engine $py -m shootout.cli $job --no-progress > "$out/${job##* }.log" 2>&1; echo "exit $?" >> "$out/${job##* }.log"
      tail -4 "$out/${job##* }.log"
    done
    for d in demo sst2; do cp "$work/$d"/reports/*.xlsx "$work/$d"/reports/*.html "$out/" 2>/dev/null; done
    ls "$out"
    ;;
  gpu)
    out=$1; shift
    cd "$work" || exit 1
    say "engine against llama-bench from the same build"
    with_engine $py "$here/gpu_ceiling.py" --model "$SHOOTOUT_CACHE/models/gemma-3-270m.Q4_K_M.gguf" \
      --llama-bench "$lib/llama-bench" --json "$out/gpu_gemma3_270m.json" "$@" 2>&1 | tail -40
    ;;
esac
