"""The in-process llama.cpp engine, shared by benchmark/, export/ and finetune/.

Public API: ``LlamaCppBackend`` (a GGUF loaded in process: chat, label scoring, llama-bench's figures
in process, tokens, logits),
the types every backend answers with (``Reply``, ``LabelScores``, ``PromptTooLong``, in
``engine.types``) and ``llama_cpp_ready()`` (llama.cpp's library, initialised once, for code that
calls it directly). Names starting with ``_`` in its modules are the engine's own."""

from __future__ import annotations

from engine.runtime import llama_cpp_ready

__all__ = ["LlamaCppBackend", "llama_cpp_ready"]


def __getattr__(name: str):
    if name == "LlamaCppBackend":  # imported on first use: numpy, jinja2 and llama_cpp only when needed
        from engine.llamacpp import LlamaCppBackend

        return LlamaCppBackend
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
