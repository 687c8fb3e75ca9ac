"""llama.cpp in process: the registration of the shared engine (``engine.llamacpp``) as a backend,
its options and capabilities. The engine itself is imported only when a model is built."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from benchmark.backends.base import BackendOptions, BackendSpec, Capabilities
from engine.sampling import SAMPLING_MODES
from formats.chat import ALIASES, FAMILIES


class LlamaCppOptions(BackendOptions):
    n_threads: int | None = Field(None, ge=1, description="CPU threads (default: all cores)")
    n_gpu_layers: int | None = Field(None, description="layers to offload (-1 = all)")
    chat_template: str | None = Field(
        None, description=f"a built-in template name ({', '.join([*FAMILIES, *ALIASES])}) or a Jinja template; "
                          "used when the GGUF has none, or to override it")
    sampling: Literal[SAMPLING_MODES] = Field(  # type: ignore[valid-type]
        "auto", description="where tokens are drawn: auto (on the GPU for unconstrained calls when every layer "
                            "is there, else on the host), fast (the host, numpy), device (llama.cpp's top-k on "
                            "the GPU for every call), reference (llama.cpp's sampler over the whole vocabulary); "
                            "all draw the same tokens for the same seed")


def _make(entry, cfg, endpoint: str | None = None):
    from engine.llamacpp import LlamaCppBackend

    o = entry.options
    return LlamaCppBackend(cfg.model_path(entry), n_ctx=cfg.setting(entry, "num_ctx"), n_threads=o.n_threads,
                           n_gpu_layers=o.n_gpu_layers, chat_template=o.chat_template, name=entry.name,
                           sampling=o.sampling)


SPEC = BackendSpec(
    name="llamacpp", where="path", options=LlamaCppOptions, factory=_make,
    description="llama.cpp in process (llama-cpp-python); path: a GGUF or 'embedded'",
    capabilities=Capabilities(label_scores=True, grammar=True, json_schema=True, memory_facts=True, in_process=True))
