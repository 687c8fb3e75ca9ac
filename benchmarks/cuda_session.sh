#!/usr/bin/env bash
# A CUDA box with no network: build the engine for CUDA the two ways the project knows (the pip wheel
# that `make ... ACCEL=cuda` builds, and the shared-library build of build_llama_cpp.sh), find why a
# model load crashes after pandas, and run the demo and a classification example on the GPU.
#
#   benchmarks/cuda_session.sh setup  WHEELS_DIR SDIST_TGZ   # deps into $SITE, both builds started
#   benchmarks/cuda_session.sh stash  FILE...                # keep files (model wheels sent in parts)
#   benchmarks/cuda_session.sh probe  OUT                    # wait for the builds, facts, engine_load_probe.py
#   benchmarks/cuda_session.sh runs   OUT                    # demo + sst2 on the wheel, all layers offloaded
#
# WORK (default /tmp/cuda-session) holds everything; SITE its Python packages.
set -uo pipefail
step=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=${WORK:-/tmp/cuda-session}
site=$work/site
py=${PYTHON:-python3}
mkdir -p "$work" "$site" "$work/stash"
say() { echo "== $(date +%T) $*"; }

builds_done() { [ -f "$work/wheel.rc" ] && [ -f "$work/recipe.rc" ]; }

case $step in
  setup)
    wheels=$1; sdist=$2
    say "python deps"
    $py -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl "$wheels"/*.tar.gz 2>&1 | tail -3
    tar xzf "$sdist" -C "$work"
    src=$(ls -d "$work"/llama_cpp_python-*)
    say "builds started in the background: $src"
    # 1. the wheel, as `make engine ACCEL=cuda` builds it (CMAKE_ARGS from src/core/accel.py)
    args="$($py "$repo/src/core/accel.py" cmake-args cuda) -DCMAKE_CUDA_ARCHITECTURES=90"
    echo "$args" > "$work/wheel.args"
    setsid bash -c "CMAKE_ARGS='$args' CMAKE_BUILD_PARALLEL_LEVEL=16 $py -m pip wheel --no-deps --no-build-isolation \
        -C build-dir=$work/wheel-build -w $work/wheelhouse $src > $work/wheel.log 2>&1; echo \$? > $work/wheel.rc" \
        < /dev/null > /dev/null 2>&1 &
    # 2. the shared-library recipe (llama-bench and llama-quantize beside the libraries)
    setsid bash -c "$here/build_llama_cpp.sh $src $work/recipe cuda > $work/recipe.log 2>&1; echo \$? > $work/recipe.rc" \
        < /dev/null > /dev/null 2>&1 &
    nvidia-smi -L; g++ --version | head -1; nvcc --version | tail -2; $py -c "import pandas, pyarrow, numpy; print('pandas', pandas.__version__, 'pyarrow', pyarrow.__version__, 'numpy', numpy.__version__)"
    ;;
  stash)
    cp "$@" "$work/stash/" && ls -la "$work/stash"
    ;;
  probe)
    out=$1
    for _ in $(seq 1 100); do builds_done && break; sleep 5; done
    say "wheel build rc=$(cat $work/wheel.rc 2>/dev/null) recipe rc=$(cat $work/recipe.rc 2>/dev/null)"
    tail -5 "$work/wheel.log"; tail -3 "$work/recipe.log"
    cp "$work/wheel.log" "$out/wheel_build.log" 2>/dev/null; cp "$work/recipe.log" "$out/recipe_build.log" 2>/dev/null
    $py -m pip install -q --no-index --no-deps --no-compile --target "$work/lcp" "$work"/wheelhouse/llama_cpp_python-*.whl
    $py -m pip install -q --no-index --no-deps --no-compile --target "$site" "$work"/stash/gemma3*.whl
    src=$(ls -d "$work"/llama_cpp_python-*)
    export PYTHONPATH=$repo/src:$site
    model=$($py -c "from core.embedded import embedded_gguf; print(embedded_gguf())")
    {
      say "facts"
      echo "python: $($py -c 'import sys; print(sys.version)')"; echo "LD_PRELOAD=${LD_PRELOAD:-}"; cat /etc/ld.so.preload 2>/dev/null
      $py -c "import pandas, pyarrow; print('pandas', pandas.__version__, pandas.__file__); print('pyarrow', pyarrow.__version__)"
      wl=$work/lcp/llama_cpp/lib
      for f in "$wl"/libllama.so "$wl"/libggml-cuda.so "$work"/recipe/bin/libllama.so "$work"/recipe/bin/libggml-cuda.so; do
        echo "--- $f ($(stat -c %s "$f" 2>/dev/null) bytes)"; readelf -d "$f" 2>/dev/null | grep -E 'NEEDED|RPATH|RUNPATH'
        echo "  defined C++ runtime symbols exported: $(nm -D --defined-only "$f" 2>/dev/null | grep -cE ' _ZN?St| _ZNSo| _ZNKSt| _ZSt')"
        nm -DC --defined-only "$f" 2>/dev/null | grep -E 'std::(basic_ostream|__ostream_insert|locale|ios_base|basic_string)' | head -8
        echo "  unique symbols: $(readelf -W --dyn-syms "$f" 2>/dev/null | grep -c UNIQUE)"
      done
      arrow=$($py -c "import pyarrow, os; d=os.path.dirname(pyarrow.__file__); print(d)")
      for f in "$arrow"/libarrow.so.*[0-9]; do
        echo "--- $f"; readelf -d "$f" | grep -E 'NEEDED' | head; echo "  unique symbols: $(readelf -W --dyn-syms "$f" | grep -c UNIQUE)"
        echo "  C++ runtime symbols exported: $(nm -D --defined-only "$f" | grep -cE ' _ZN?St| _ZNSo| _ZNKSt| _ZSt')"
      done
      find / -xdev -name 'libstdc++.so*' 2>/dev/null | head; ldconfig -p | grep -E 'libstdc\+\+|libgcc_s'
      strings "$(ldconfig -p | grep 'libstdc++.so.6 ' | head -1 | awk '{print $NF}')" | grep -E '^GLIBCXX_3\.4\.[0-9]+$' | sort -V | tail -2
    } > "$out/facts.txt" 2>&1
    say "probe: the pip-built wheel"
    PYTHONPATH=$repo/src:$work/lcp:$site $py "$here/engine_load_probe.py" "$model" --json "$out/probe_wheel.json"
    say "probe: the shared-library recipe (LLAMA_CPP_LIB_PATH)"
    LLAMA_CPP_LIB_PATH=$work/recipe/bin PYTHONPATH=$repo/src:$src:$site $py "$here/engine_load_probe.py" "$model" \
      --json "$out/probe_recipe.json"
    ;;
  runs)
    out=$1
    export PYTHONPATH=$repo/src:$work/lcp:$site
    cd "$work" || exit 1
    say "sentiment demo"
    $py -m shootout.cli demo --out "$work/demo" --no-progress 2>&1 | tee "$out/demo.log" | tail -25
    say "sst2 example"
    $py -m shootout.cli demo --task sst2 --out "$work/sst2" --no-progress 2>&1 | tee "$out/sst2.log" | tail -25
    ls "$work"/demo/reports "$work"/sst2/reports 2>/dev/null
    cp "$work"/demo/reports/*.xlsx "$out/" 2>/dev/null; cp "$work"/sst2/reports/*.xlsx "$out/" 2>/dev/null
    ;;
esac
