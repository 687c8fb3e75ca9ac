"""Which llama.cpp build `make install` asks pip for: CUDA, Metal or CPU.

Run by the Makefile with the system Python before any virtual environment exists, so it uses the
standard library only:

    python3 src/core/accel.py choose [auto|cuda|metal|cpu]   ->  cuda | metal | cpu
    python3 src/core/accel.py cmake-args KIND                ->  the CMAKE_ARGS for llama-cpp-python
    python3 src/core/accel.py wheel-tag KIND [EXTRA...]      ->  KIND-<digest of the CMake arguments>

On Linux every build also hides the symbols of the static libraries linked into llama.cpp's shared
libraries (``-Wl,--exclude-libs,ALL``). A toolchain that links the C++ runtime statically (seen on a
CUDA box: libllama.so and libggml-cuda.so carried libstdc++ and exported it, with no libstdc++.so.6 in
their NEEDED) otherwise puts a second, exported C++ runtime in the process: once pandas or pyarrow
has loaded the system's libstdc++.so.6, the dynamic loader binds some of llama.cpp's C++ calls to
one copy and some to another, and the model load dies in an iostream call (segmentation fault or
``free(): invalid pointer``). With the copies hidden, each library keeps its own, privately
(tests/test_cxx_runtime.py reproduces it on the CPU; ``core.cxx_runtime`` recognises an engine built
without the flag).

`auto` (the default) picks CUDA when an NVIDIA GPU answers `nvidia-smi` and the CUDA compiler
(`nvcc`) is there to build for it, Metal on Apple silicon, and the CPU otherwise. A GPU that is
visible but cannot be built for (no `nvcc`) gets a warning on stderr, not a failed install. An
explicit kind is taken as asked, so a wrong one fails loudly in the build rather than silently
running on the CPU.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys

KINDS = ("cuda", "metal", "cpu")

# linked into every shared library of the engine on Linux (GNU ld / lld): see the module docstring.
# _INIT keeps what LDFLAGS adds; the flag has no effect where the C++ runtime is linked dynamically
HIDE_STATIC_LIBS = "-DCMAKE_SHARED_LINKER_FLAGS_INIT=-Wl,--exclude-libs,ALL"
_LINUX = platform.system() == "Linux"

CMAKE_ARGS = {
    # llama.cpp builds for the GPUs it finds ("native"); add -DCMAKE_CUDA_ARCHITECTURES=90 (or 89,
    # 86...) through LLAMA_CMAKE_EXTRA when building on a machine without the target GPU
    "cuda": " ".join(["-DGGML_CUDA=on"] + [HIDE_STATIC_LIBS] * _LINUX),
    "metal": "-DGGML_METAL=on",
    # llama.cpp turns Metal on by default on macOS: a CPU build says no to it explicitly
    "cpu": "-DGGML_METAL=off" if platform.system() == "Darwin" else HIDE_STATIC_LIBS * _LINUX,
}


def wheel_tag(kind: str, extra: str = "") -> str:
    """The name of a kept engine wheel's folder: the kind and a digest of every CMake argument, so a
    build with other flags (or a fixed set of defaults) never reuses a wheel built without them."""
    args = " ".join(a for a in (CMAKE_ARGS[kind], extra.strip()) if a)
    return f"{kind}-{hashlib.sha256(args.encode()).hexdigest()[:8]}"


def nvidia_gpus() -> list[str]:
    """Names of the NVIDIA GPUs `nvidia-smi` lists (empty without the tool or a working driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    candidate = os.path.join(home, "bin", "nvcc")
    return candidate if os.access(candidate, os.X_OK) else None


def apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def choose(requested: str = "auto") -> tuple[str, str | None]:
    """(kind, warning or None) for ``requested`` (auto, cuda, metal, cpu)."""
    requested = (requested or "auto").strip().lower()
    if requested in KINDS:
        return requested, None
    if requested != "auto":
        raise ValueError(f"ACCEL={requested!r}: use one of auto, {', '.join(KINDS)}")
    gpus = nvidia_gpus()
    if gpus:
        if nvcc():
            return "cuda", None
        return "cpu", (f"an NVIDIA GPU is visible ({gpus[0]}) but the CUDA compiler (nvcc) is not on PATH or in "
                       f"CUDA_HOME, so the engine is built for the CPU only; install the CUDA toolkit and run "
                       f"`make install ACCEL=cuda`")
    if apple_silicon():
        return "metal", None
    return "cpu", None


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("choose", "cmake-args", "wheel-tag"):
        sys.stderr.write(__doc__)
        return 2
    arg = argv[1] if len(argv) > 1 else "auto"
    try:
        if argv[0] == "choose":
            kind, warning = choose(arg)
            if warning:
                sys.stderr.write(f"warning: {warning}\n")
            print(kind)
        elif argv[0] == "wheel-tag":
            kind, _ = choose(arg)
            print(wheel_tag(kind, " ".join(argv[2:])))
        else:
            kind, _ = choose(arg)
            print(CMAKE_ARGS[kind])
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        print("invalid")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
