#!/usr/bin/env bash
# The GPU figures of the README's Performance table, on a box with llama.cpp built for its GPU:
#
#   benchmarks/gpu_session.sh OUT_DIR [LLAMA_BIN_DIR] [STEPS]
#
# LLAMA_BIN_DIR holds llama-bench and llama-quantize from the same llama.cpp as the engine (see
# build_llama_cpp.sh); STEPS (default: all of them, in this order) picks some:
#   gemma      gpu_ceiling.py on the embedded Gemma 3 270M Q4_K_M (the real model: issue 27's part 5 in
#              one run: free T=0.7 / tg128 at depth, constrained / free at T=0.7, label scoring /
#              label generation; and the in-process speed_bench block beside llama-bench)
#   270m       a Gemma-3-270M-shaped model with random weights, Q4_K_M (build_random_llama.py),
#              then gpu_ceiling.py on it (this engine against llama-bench, both samplings)
#   endpoints  endpoints_throughput.py with 1, 2 and 4 llama_cpp.server processes of the 270M model,
#              spread over the visible GPUs (several per GPU when there are fewer GPUs)
#   8b-build   a Llama-3-8B-shaped model with random weights, Q4_K_M and Q8_0
#   8b         gpu_ceiling.py on both 8B files (the default sampling only)
# Every step writes its figures under OUT_DIR and goes on if the one before failed.
set -uo pipefail
out=$1
bin=${2:-}
steps=${3:-"gemma 270m endpoints 8b-build 8b"}
work=${WORK:-/tmp/shootout-gpu}
py=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out" "$work"
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
quant=(); bench=()
if [ -n "$bin" ]; then quant=(--quantize-with "$bin/llama-quantize"); bench=(--llama-bench "$bin/llama-bench"); fi
m270="$work/270m/llama3-270m-random.Q4_K_M.gguf"

step() { echo "== $(date +%T) $*"; }
for s in $steps; do
  case $s in
    gemma)
      step "engine against llama-bench on the embedded Gemma 3 270M (part 5's ratios)"
      $py "$here/gpu_ceiling.py" "${bench[@]}" --json "$out/ceiling_gemma3_270m.json"
      ;;
    270m)
      step "build the 270M-shaped model"
      [ -f "$m270" ] || $py "$here/build_random_llama.py" "$work/270m" --size 270m --quants Q4_K_M "${quant[@]}"
      step "engine against llama-bench at 270M"
      $py "$here/gpu_ceiling.py" --model "$m270" "${bench[@]}" --n 8 --json "$out/ceiling_270m_Q4_K_M.json"
      ;;
    endpoints)
      step "throughput with 1, 2 and 4 endpoints ($gpus GPUs)"
      $py "$here/endpoints_throughput.py" --model "$m270" --endpoints 1,2,4 --gpus "$gpus" \
        --server "$py -m llama_cpp.server --model {model} --host 127.0.0.1 --port {port} --n_gpu_layers -1 --n_ctx 2048 --model_alias m"
      ;;
    8b-build)
      step "build the 8B-shaped model"
      $py "$here/build_random_llama.py" "$work/8b" --size 8b --quants Q4_K_M,Q8_0 "${quant[@]}"
      ;;
    8b)
      for q in Q4_K_M Q8_0; do
        step "engine against llama-bench at 8B $q"
        $py "$here/gpu_ceiling.py" --model "$work/8b/llama3-8b-random.$q.gguf" "${bench[@]}" --sampling fast --n 6 \
          --json "$out/ceiling_8b_$q.json"
      done
      ;;
    *) echo "unknown step $s" >&2 ;;
  esac
done
step done
