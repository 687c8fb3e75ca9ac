#!/usr/bin/env bash
# Build the llama.cpp that llama-cpp-python vendors (the engine's own version) as shared libraries,
# with llama-bench and llama-quantize beside them, for side-by-side figures (gpu_ceiling.py) and for
# running the engine on that build without a pip build:
#
#   benchmarks/build_llama_cpp.sh SDIST_DIR BUILD_DIR [cuda|cpu]
#   LLAMA_CPP_LIB_PATH=BUILD_DIR/bin PYTHONPATH=SDIST_DIR python benchmarks/gpu_ceiling.py \
#       --llama-bench BUILD_DIR/bin/llama-bench
#
# SDIST_DIR is llama-cpp-python 0.3.36's unpacked sdist (`pip download --no-binary :all: --no-deps
# llama-cpp-python==0.3.36`). CUDA_ARCH (default 90, Hopper) picks the GPU architecture. About 3.5
# minutes on 16 cores with CUDA.
#
# CCCL_INCLUDE (optional): the include folder of a newer CCCL, put before the toolkit's. With CCCL 3.2
# or later (the nvidia-cuda-cccl 13.2.86 wheel's nvidia/cu13/include/cccl: CCCL_VERSION 3002000)
# ggml's CUDA top-k uses cub::DeviceTopK instead of sorting every logit, which is what the engine's
# device sampling spends on the GPU (README, "Sampling on the GPU"); CUDA 13.0 ships an older CCCL.
# Prepared, not yet run on a device.
set -euo pipefail
SRC="$1/vendor/llama.cpp"
OUT="$2"
ACCEL="${3:-cuda}"
flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
       -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF)
# the engine's own CMake arguments for this kind (src/core/accel.py: one place for them, the wheel's too)
read -r -a accel_flags <<< "$(python3 "$(dirname "$0")/../src/core/accel.py" cmake-args "$ACCEL")"
flags+=("${accel_flags[@]}")
if [ "$ACCEL" = cuda ]; then
  flags+=("-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90}")
  if [ -n "${CCCL_INCLUDE:-}" ]; then
    flags+=("-DCMAKE_CUDA_FLAGS=-I${CCCL_INCLUDE}")
  fi
fi
cmake -S "$SRC" -B "$OUT" -G Ninja "${flags[@]}"
cmake --build "$OUT" -j"$(nproc)" --target llama llama-bench llama-quantize
ls -l "$OUT"/bin
