"""llama.cpp's process-wide side: the library loaded and initialised once, with its log routed here
(kept quiet; the recent lines remembered for error messages, and the lines of a load that say where
the weights went and what memory they took), and warnings said once per process.

``llama_cpp_ready()`` is the engine's public entry for code that calls llama.cpp directly (the
quantizer of export/): it returns the ``llama_cpp`` module, initialised."""

from __future__ import annotations

import ctypes
import sys
from typing import Any

LOG_TAIL: list[str] = []  # llama.cpp's recent log lines, quoted in load errors
LOAD_FACTS: list[str] = []  # the lines of the last load that say where the weights went and what it took
_FACT_WORDS = ("offloaded", "using device", "model buffer size", "KV buffer size", "compute buffer size",
               "llama_kv_cache: size")


def llama_cpp_ready() -> Any:
    """The ``llama_cpp`` module with llama.cpp's backend initialised and its log routed here (once)."""
    if not getattr(llama_cpp_ready, "done", False):
        refuse_exported_runtime()
    import llama_cpp as L

    if not getattr(llama_cpp_ready, "done", False):
        @L.llama_log_callback
        def _log(level, text, user_data):  # keep llama.cpp quiet; remember the tail for errors
            line = text.decode("utf-8", "replace")
            LOG_TAIL.append(line)
            del LOG_TAIL[:-40]
            if any(w in line for w in _FACT_WORDS):
                LOAD_FACTS.append(line.strip())

        llama_cpp_ready.callback = _log  # a reference keeps the callback alive
        L.llama_log_set(_log, ctypes.c_void_p(0))
        L.llama_backend_init()
        llama_cpp_ready.done = True
    return L


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can put layers on a GPU (CUDA, Metal, Vulkan...)."""
    return bool(llama_cpp_ready().llama_supports_gpu_offload())


def refuse_exported_runtime() -> None:
    """An engine built with an exported copy of the C++ runtime crashes at model load (segmentation fault
    or 'free(): invalid pointer') in a process that also uses pandas, pyarrow or numpy: refuse it with the
    rebuild command instead (``core.cxx_runtime``; `shootout doctor` says the same)."""
    from core import cxx_runtime
    from core.errors import ShootoutError

    found = cxx_runtime.problem()
    if found:
        raise ShootoutError(*found)


def model_meta(L, model, key: str) -> str | None:
    """A GGUF metadata value of a loaded model, as a string (None when absent)."""
    buf = ctypes.create_string_buffer(256)
    n = L.llama_model_meta_val_str(model, key.encode(), buf, 256)
    return buf.value.decode("utf-8", "replace") if n >= 0 else None


def warn_once(message: str) -> None:
    """A warning on stderr, once per process."""
    if message not in warn_once.seen:
        warn_once.seen.add(message)
        sys.stderr.write(f"warning: {message}\n")


warn_once.seen = set()
