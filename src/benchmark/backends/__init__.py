"""Backends: one protocol (``base.Backend``), one table of engines. ``make_backend`` builds the
engine for a config entry, importing it only when needed; config validation, `shootout register`
and the docs read the same table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from benchmark.backends.base import Backend, LabelScores, Reply

__all__ = ["BACKENDS", "Backend", "LabelScores", "Reply", "make_backend"]


@dataclass(frozen=True)
class BackendSpec:
    where: str          # the ModelEntry field that says where the model is
    description: str
    factory: Callable   # (entry, cfg, endpoint=None) -> Backend
    endpoints: bool = True  # can spread over several servers (config: endpoints)


def _llamacpp(entry, cfg, endpoint=None):
    from engine.llamacpp import LlamaCppBackend

    return LlamaCppBackend(cfg.model_path(entry), n_ctx=cfg.setting(entry, "num_ctx"), n_threads=entry.options.n_threads,
                           n_gpu_layers=entry.options.n_gpu_layers, chat_template=entry.options.chat_template,
                           name=entry.name)


def _openai(entry, cfg, endpoint=None):
    from benchmark.backends.openai_compat import OpenAICompatBackend

    return OpenAICompatBackend(endpoint or entry.base_url, entry.model or entry.name, name=entry.name,
                               api_key=entry.options.api_key, timeout=entry.options.timeout_s,
                               retries=entry.options.retries)


def _ollama(entry, cfg, endpoint=None):
    from benchmark.backends.ollama_backend import OllamaBackend

    return OllamaBackend(entry.tag, name=entry.name, host=endpoint, num_ctx=cfg.setting(entry, "num_ctx"),
                         keep_alive=entry.options.keep_alive)


BACKENDS: dict[str, BackendSpec] = {
    "llamacpp": BackendSpec("path", "llama.cpp in process (llama-cpp-python); path: a GGUF or 'embedded'", _llamacpp,
                            endpoints=False),
    "ollama": BackendSpec("tag", "an Ollama server at OLLAMA_HOST, through the official client; tag: the model", _ollama),
    "openai": BackendSpec("base_url", "any OpenAI-compatible server (llama.cpp, vLLM, LM Studio); base_url", _openai),
}


def make_backend(entry, cfg, endpoint: str | None = None) -> Backend:
    """The engine for a model entry of config.yaml (at one of its endpoints, for servers)."""
    if endpoint is None:
        return BACKENDS[entry.backend].factory(entry, cfg)
    return BACKENDS[entry.backend].factory(entry, cfg, endpoint=endpoint)
