"""Ollama through its official Python client (`ollama` >= 0.6): /api/chat, non-streaming.

The task's JSON schema goes as ``format``; options carry temperature, seed, num_ctx and
num_predict. Timings are Ollama's own nanosecond fields (load, prompt eval, eval). Ollama
reports only the prompt tokens it evaluated (``prompt_eval_count``), not those it served from its
cache, so ``cached_tokens`` stays 0 and ``prompt_tokens`` counts evaluated tokens.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmark.backends.base import Reply
from core.errors import ShootoutError

RETRIES = 3


def _host() -> str:
    return os.environ.get("OLLAMA_HOST", "http://127.0.0.1:11434")


class OllamaBackend:
    def __init__(self, tag: str, *, name: str | None = None, host: str | None = None, num_ctx: int = 2048,
                 keep_alive: str | None = None, timeout: float = 600.0):
        self.tag = tag
        self.name = name or tag
        self.host = host or _host()
        self.num_ctx = num_ctx
        self.keep_alive = keep_alive
        self.timeout = timeout
        self._client = None
        self.load_duration_s: float | None = None

    def _call(self, **kw):
        import httpx
        import ollama

        if self._client is None:
            self._client = ollama.Client(host=self.host, timeout=self.timeout)
        for attempt in range(RETRIES):
            try:
                return self._client.chat(model=self.tag, stream=False, keep_alive=self.keep_alive, **kw)
            except ollama.ResponseError as exc:
                if exc.status_code == 404:
                    raise ShootoutError(f"model '{self.name}': Ollama at {self.host} has no model '{self.tag}' "
                                        f"({exc.error})",
                                        f"run `ollama pull {self.tag}`, or create it with "
                                        "`shootout export ... --ollama-create`") from None
                if exc.status_code < 500 or attempt == RETRIES - 1:
                    raise ShootoutError(f"model '{self.name}': Ollama answered {exc.status_code}: {exc.error}") from None
            except ConnectionError:
                raise ShootoutError(f"model '{self.name}': no Ollama server answers at {self.host}",
                                    "start it with `ollama serve`, or set OLLAMA_HOST to where it runs") from None
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if attempt == RETRIES - 1:
                    raise ShootoutError(f"model '{self.name}': Ollama at {self.host} stopped answering ({exc})",
                                        "check the server, then resume with `shootout run --run-id ...`") from None
            time.sleep(2 ** attempt)
        raise AssertionError("unreachable")

    def load(self) -> float:
        """Ollama loads a model on a chat request with no messages; its load_duration is kept apart."""
        t0 = time.perf_counter()
        resp = self._call(messages=[])
        self.load_duration_s = (resp.load_duration or 0) / 1e9
        return time.perf_counter() - t0

    def engine_info(self) -> dict[str, Any]:
        return {"engine": "Ollama /api/chat", "host": self.host, "tag": self.tag, "num_ctx": self.num_ctx,
                "keep_alive": self.keep_alive, "load_duration_s": self.load_duration_s}

    def close(self) -> None:
        self._client = None

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             temperature: float = 0.0, seed: int = 0, max_tokens: int = 256, grammar: str | None = None) -> Reply:
        t0 = time.perf_counter()
        resp = self._call(messages=messages, format=schema,
                          options={"temperature": temperature, "seed": seed, "num_ctx": self.num_ctx,
                                   "num_predict": max_tokens})
        wall = time.perf_counter() - t0
        ns = 1e9
        return Reply(text=resp.message.content or "",
                     finish_reason="length" if resp.done_reason == "length" else "stop",
                     prompt_tokens=resp.prompt_eval_count or 0, cached_tokens=0,
                     completion_tokens=resp.eval_count or 0,
                     prompt_seconds=resp.prompt_eval_duration / ns if resp.prompt_eval_duration is not None else None,
                     gen_seconds=resp.eval_duration / ns if resp.eval_duration is not None else None,
                     wall_seconds=wall)
