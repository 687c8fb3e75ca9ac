"""Backends: one protocol, several engines. ``make_backend`` picks one for a config entry."""

from __future__ import annotations

from benchmark.backends.base import Backend, Reply

__all__ = ["Backend", "Reply", "make_backend"]


def make_backend(entry, cfg) -> Backend:
    """The engine for a model entry of config.yaml (imports the engine only when needed)."""
    if entry.backend == "llamacpp":
        from benchmark.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(
            cfg.resolve(entry.path),
            n_ctx=cfg.setting(entry, "num_ctx"),
            n_threads=entry.options.n_threads,
            n_gpu_layers=entry.options.n_gpu_layers,
            chat_template=entry.options.chat_template,
            name=entry.name,
        )
    if entry.backend == "openai":
        from benchmark.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(entry.base_url, entry.model or entry.name, name=entry.name,
                                   api_key=entry.options.api_key)
    if entry.backend == "ollama":
        from benchmark.backends.ollama_backend import OllamaBackend

        return OllamaBackend(entry.tag, name=entry.name, num_ctx=cfg.setting(entry, "num_ctx"),
                             keep_alive=entry.options.keep_alive)
    from core.errors import ShootoutError

    raise ShootoutError(f"model '{entry.name}': backend '{entry.backend}' is not available in this build",
                        "use backend: llamacpp with a GGUF path")
