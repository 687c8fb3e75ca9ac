"""OpenAI-compatible chat servers over HTTP: llama.cpp's server, llama-cpp-python's server, vLLM,
LM Studio, Ollama's /v1.

The task's JSON schema goes as OpenAI's ``response_format: {type: json_schema}``; servers that
only know ``{type: json_object, schema}`` (llama-cpp-python's) reject that (400, 422, or a 500
naming response_format), and the
backend switches once to their form. Timings come from the server where it reports them
(llama.cpp's ``timings``); otherwise only the wall clock is stored and the engine fields stay empty.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from benchmark.backends.base import Reply
from core.errors import ShootoutError

RETRIES = 3


class OpenAICompatBackend:
    def __init__(self, base_url: str, model: str, *, name: str | None = None, api_key: str | None = None,
                 timeout: float = 300.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.api_key = api_key
        self.timeout = timeout
        self.schema_style = "json_schema"
        self.server_models: list[str] = []

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - user-configured URL
            return json.loads(resp.read().decode("utf-8"))

    def _post_with_retries(self, path: str, body: dict) -> dict:
        for attempt in range(RETRIES):
            try:
                return self._request("POST", path, body)
            except urllib.error.HTTPError:
                raise
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if attempt == RETRIES - 1:
                    raise ShootoutError(f"model '{self.name}': the server at {self.base_url} stopped answering ({exc})",
                                        "start it again, then resume with `shootout run --run-id ...`") from None
                time.sleep(2 ** attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ protocol
    def load(self) -> float:
        t0 = time.perf_counter()
        try:
            listing = self._request("GET", "/models")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise ShootoutError(f"model '{self.name}': no OpenAI-compatible server answers at {self.base_url} ({exc})",
                                "start the server (e.g. `python -m llama_cpp.server --model M.gguf`) or fix base_url")
        self.server_models = [m.get("id", "") for m in listing.get("data", [])]
        return time.perf_counter() - t0

    def engine_info(self) -> dict[str, Any]:
        return {"engine": "OpenAI-compatible HTTP", "base_url": self.base_url, "model": self.model,
                "server_models": self.server_models, "schema_style": self.schema_style}

    def close(self) -> None:
        pass

    def _response_format(self, schema: dict) -> dict:
        if self.schema_style == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
        return {"type": "json_object", "schema": schema}

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             temperature: float = 0.0, seed: int = 0, max_tokens: int = 256, grammar: str | None = None) -> Reply:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                "seed": seed, "max_tokens": max_tokens, "stream": False}
        t0 = time.perf_counter()
        while True:
            if schema:
                body["response_format"] = self._response_format(schema)
            try:
                out = self._post_with_retries("/chat/completions", body)
                break
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:300]
                if schema and self.schema_style == "json_schema" and (exc.code in (400, 422) or
                                                                      "response_format" in detail):
                    self.schema_style = "json_object"
                    continue
                if exc.code == 404:
                    raise ShootoutError(f"model '{self.name}': the server at {self.base_url} has no model "
                                        f"'{self.model}' ({detail})",
                                        f"models there: {', '.join(self.server_models) or 'none listed'}") from None
                raise ShootoutError(f"model '{self.name}': the server answered {exc.code}: {detail}") from None
        wall = time.perf_counter() - t0
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        timings = out.get("timings") or {}
        cached = details.get("cached_tokens", timings.get("cache_n", 0)) or 0
        return Reply(
            text=choice["message"].get("content") or "",
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=int(usage.get("prompt_tokens", 0)), cached_tokens=int(cached),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            prompt_seconds=timings["prompt_ms"] / 1000 if "prompt_ms" in timings else None,
            gen_seconds=timings["predicted_ms"] / 1000 if "predicted_ms" in timings else None,
            wall_seconds=wall)
