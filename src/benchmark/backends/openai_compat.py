"""OpenAI-compatible chat servers over HTTP: llama.cpp's server, llama-cpp-python's server, vLLM,
LM Studio, Ollama's /v1.

The task's JSON schema goes as OpenAI's ``response_format: {type: json_schema}``; servers that
only know ``{type: json_object, schema}`` (llama-cpp-python's) reject that (400, 422, or a 500
naming response_format), and the
backend switches once to their form. Timings come from the server where it reports them
(llama.cpp's ``timings``); otherwise only the wall clock is stored and the engine fields stay empty.
Label scoring (:meth:`OpenAICompatBackend.score_choices`) asks one greedy reply with ``logprobs``
and ``top_logprobs`` and reads the labels' probabilities from it (``benchmark.backends.logprobs``).

Requests go through ``core.netsafe`` (the server is the user's own, so any address is allowed):
each has a wall-clock deadline (options.timeout_s, default 300 s) and is retried after a
connection failure or a timeout (options.retries, default 2), so a hanging server is given up on
after (retries + 1) x timeout_s. A prompt the server says does not fit its context raises
``PromptTooLong`` (the runner stores a failed call and goes on); an answer that is not JSON, or
has no ``choices``, is one clear error.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from pydantic import Field

from benchmark.backends import logprobs as lp
from benchmark.backends.base import (BackendOptions, BackendSpec, BackendUnavailable, Capabilities, LabelScores,
                                     PromptTooLong, Reply)
from core import netsafe
from core.errors import ShootoutError

TIMEOUT_S = 300.0
RETRIES = 2
TOP_LOGPROBS = 20  # alternatives asked for per token when scoring labels (OpenAI's and vLLM's default maximum)
MAX_ANSWER_BYTES = 64_000_000

# how servers say the prompt does not fit: error codes / types, and phrases of their messages
_TOO_LONG_CODES = {"context_length_exceeded", "exceed_context_size_error", "context_window_exceeded"}
_TOO_LONG_TEXT = re.compile(r"maximum context length|exceeds? (?:the )?(?:available )?context|context window of|"
                            r"context (?:size|length|window) (?:exceeded|is too small)|prompt is too long|"
                            r"too many tokens|input is too long", re.I)
_N_CTX = (re.compile(r"maximum context length is (\d+)", re.I), re.compile(r"context window of (\d+)", re.I),
          re.compile(r"context (?:size|length) (?:of |is )?(\d+)", re.I))
_N_PROMPT = (re.compile(r"\((\d+) in the messages", re.I), re.compile(r"(\d+) in your prompt", re.I),
             re.compile(r"request has (\d+) input tokens", re.I), re.compile(r"Requested tokens \((\d+)\)", re.I),
             re.compile(r"prompt (?:has|is|contains) (\d+) tokens", re.I))


def _count(value) -> int:
    """A token count from a server's JSON: a non-negative int, 0 when absent or malformed."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


def _first_int(patterns, text: str) -> int:
    for p in patterns:
        m = p.search(text)
        if m:
            return int(m.group(1))
    return 0


def _error_detail(body: bytes) -> tuple[str, dict]:
    """(the server's error text, its error object) from an error answer, JSON or not."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300], {}
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or text)[:300], err
    if isinstance(err, str):
        return err[:300], data if isinstance(data, dict) else {}
    return " ".join(text.split())[:300], data if isinstance(data, dict) else {}


class OpenAICompatBackend:
    def __init__(self, base_url: str, model: str, *, name: str | None = None, api_key: str | None = None,
                 timeout: float | None = None, retries: int | None = None, top_logprobs: int | None = None):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.api_key = api_key
        self.timeout = TIMEOUT_S if timeout is None else float(timeout)
        self.retries = RETRIES if retries is None else int(retries)
        self.schema_style = "json_schema"
        self.server_models: list[str] = []
        self.top_logprobs = TOP_LOGPROBS if top_logprobs is None else int(top_logprobs)
        self.policy = netsafe.Policy(allow_private=True, deadline_s=self.timeout, max_bytes=MAX_ANSWER_BYTES,
                                     deadline_option="options.timeout_s", bytes_option="a smaller num_predict")

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: dict | None = None) -> netsafe.Response:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        return netsafe.fetch(self.base_url + path, self.policy, method=method, body=data, headers=headers)

    def _json(self, resp: netsafe.Response, what: str) -> dict:
        """The JSON object of a 2xx answer, or one clear error quoting what came instead."""
        try:
            data = json.loads(resp.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            shown = " ".join(resp.body.decode("utf-8", "replace").split())[:200] or "an empty body"
            raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered {what} with something "
                                f"that is not JSON: {shown}",
                                "check base_url: it must be the OpenAI-compatible root (usually ending in /v1)") from None
        if not isinstance(data, dict):
            raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered {what} with a JSON "
                                f"{type(data).__name__}, not an object",
                                "check base_url: it must be the OpenAI-compatible root (usually ending in /v1)")
        return data

    def _post_with_retries(self, path: str, body: dict) -> netsafe.Response:
        for attempt in range(self.retries + 1):
            try:
                return self._request("POST", path, body)
            except netsafe.Refused as exc:
                raise ShootoutError(f"model '{self.name}': {exc.message}", "base_url must be an http(s) URL") from None
            except netsafe.FetchError as exc:
                if attempt == self.retries:
                    tries = f" ({attempt + 1} attempts)" if attempt else ""
                    slow = (f"if the server is only slow, raise options.timeout_s (now {self.timeout:g}) or "
                            "options.retries of this model; otherwise " if isinstance(exc, netsafe.DeadlineExceeded)
                            else "")
                    raise BackendUnavailable(f"model '{self.name}': the server at {self.base_url} stopped answering"
                                             f"{tries}: {exc.reason}",
                                             f"{slow}start it again, then resume with `shootout run --run-id ...`"
                                             ) from None
                time.sleep(min(2 ** attempt, 8))
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ protocol
    def load(self) -> float:
        t0 = time.perf_counter()
        try:
            resp = self._request("GET", "/models")
        except netsafe.Refused as exc:
            raise ShootoutError(f"model '{self.name}': {exc.message}", "base_url must be an http(s) URL") from None
        except netsafe.FetchError as exc:
            raise ShootoutError(f"model '{self.name}': no OpenAI-compatible server answers at {self.base_url} "
                                f"({exc.reason})",
                                "start the server (e.g. `python -m llama_cpp.server --model M.gguf`) or fix base_url"
                                ) from None
        if resp.status == 404:  # a server without a model listing: the chat calls will tell
            self.server_models = []
        elif not resp.ok:
            detail, _ = _error_detail(resp.body)
            raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered HTTP {resp.status} "
                                f"{resp.reason} to GET /models: {detail}".rstrip(": "),
                                "the server is up but failing: see its log" if resp.status >= 500 else
                                "check base_url and options.api_key")
        else:
            listing = self._json(resp, "GET /models")
            data = listing.get("data")
            self.server_models = [str(m.get("id", "")) for m in data if isinstance(m, dict)] \
                if isinstance(data, list) else []
        return time.perf_counter() - t0

    def engine_info(self) -> dict[str, Any]:
        return {"engine": "OpenAI-compatible HTTP", "base_url": self.base_url, "model": self.model,
                "server_models": self.server_models, "schema_style": self.schema_style,
                "timeout_s": self.timeout, "retries": self.retries}

    def close(self) -> None:
        pass

    def _response_format(self, schema: dict) -> dict:
        if self.schema_style == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}
        return {"type": "json_object", "schema": schema}

    def _too_long(self, status: int, detail: str, err: dict) -> PromptTooLong | None:
        """PromptTooLong when an error answer says the prompt does not fit the server's context."""
        code = {str(err.get(k)) for k in ("code", "type") if err.get(k)}
        if not (code & _TOO_LONG_CODES or (status in (400, 413, 422, 500) and _TOO_LONG_TEXT.search(detail))):
            return None
        n_prompt = _count(err.get("n_prompt_tokens")) or _first_int(_N_PROMPT, detail)
        n_ctx = _count(err.get("n_ctx")) or _first_int(_N_CTX, detail)
        exc = PromptTooLong(self.name, n_prompt, n_ctx, "raise the server's context size (e.g. --n_ctx), or cap the "
                                                        "item length")
        exc.message = f"model '{self.name}': the server says the prompt does not fit its context: {detail}"
        return exc

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             temperature: float = 0.0, seed: int = 0, max_tokens: int = 256, grammar: str | None = None) -> Reply:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                "seed": seed, "max_tokens": max_tokens, "stream": False}
        t0 = time.perf_counter()
        while True:
            if schema:
                body["response_format"] = self._response_format(schema)
            resp = self._post_with_retries("/chat/completions", body)
            if resp.ok:
                break
            detail, err = _error_detail(resp.body)
            too_long = self._too_long(resp.status, detail, err)
            if too_long is not None:
                raise too_long
            if schema and self.schema_style == "json_schema" and (resp.status in (400, 422) or
                                                                  "response_format" in detail):
                self.schema_style = "json_object"
                continue
            if resp.status == 404:
                raise ShootoutError(f"model '{self.name}': the server at {self.base_url} has no model "
                                    f"'{self.model}' ({detail})",
                                    f"models there: {', '.join(self.server_models) or 'none listed'}")
            raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered HTTP {resp.status}: "
                                f"{detail}")
        return self.reply_from(resp, time.perf_counter() - t0)

    # ------------------------------------------------------------------ label scoring
    def scoring_body(self, messages: list[dict[str, str]], choices) -> tuple[dict[str, Any], dict | None]:
        """(the request, the schema it sends) of a label scoring: one greedy reply held to the labels by
        their JSON schema where the answer is JSON (bare labels go unconstrained: they part at their
        first token, which the alternatives show), with every token's log-probability and the top
        ``top_logprobs`` alternatives at each position."""
        body = {"model": self.model, "messages": messages, "temperature": 0.0, "seed": 0,
                "max_tokens": lp.token_budget(choices), "stream": False, "logprobs": True,
                "top_logprobs": self.top_logprobs}
        return body, lp.json_schema_of(choices)

    def score_choices(self, messages: list[dict[str, str]], choices) -> LabelScores:
        """Every label's probability from one greedy reply's log-probabilities
        (:func:`benchmark.backends.logprobs.from_text`); labels the server's alternatives do not show
        are named in ``unscored``."""
        body, schema = self.scoring_body(messages, choices)
        t0 = time.perf_counter()
        while True:
            if schema:
                body["response_format"] = self._response_format(schema)
            resp = self._post_with_retries("/chat/completions", body)
            if resp.ok:
                break
            detail, err = _error_detail(resp.body)
            too_long = self._too_long(resp.status, detail, err)
            if too_long is not None:
                raise too_long
            if schema and self.schema_style == "json_schema" and (resp.status in (400, 422) or
                                                                  "response_format" in detail):
                self.schema_style = "json_object"
                continue
            raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered HTTP {resp.status} to a "
                                f"label scoring (logprobs, top_logprobs {self.top_logprobs}): {detail}",
                                "if it refuses top_logprobs, lower options.top_logprobs; if it has no "
                                "log-probabilities at all, use task.decoding: generate for this model")
        reply = self.reply_from(resp, time.perf_counter() - t0)
        out = self._json(resp, "POST /chat/completions")
        choice = out["choices"][0]
        steps = lp.steps_openai(choice.get("logprobs"))
        if steps is None or any(s.token is None for s in steps):
            raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered a label scoring without "
                                "the log-probabilities of its tokens (choices[0].logprobs.content), so it cannot score "
                                "labels", "use task.decoding: generate for this model, or a server that returns "
                                          "logprobs (llama.cpp's server, llama-cpp-python's, vLLM)")
        return scores_reply(lp.from_text(steps, choices, listed=self.top_logprobs), choices, reply)

    def reply_from(self, resp: netsafe.Response, wall: float) -> Reply:
        """The Reply of a 2xx chat answer; one clear error for anything that is not a chat completion."""
        out = self._json(resp, "POST /chat/completions")
        choices = out.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            detail, _ = _error_detail(resp.body)
            raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered without a reply "
                                f"(no choices[0].message): {detail}",
                                "check base_url and model: the server must speak OpenAI's chat completions")
        usage = out.get("usage") if isinstance(out.get("usage"), dict) else {}
        details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
        timings = out.get("timings") if isinstance(out.get("timings"), dict) else {}

        def seconds(key: str) -> float | None:
            try:
                ms = float(timings[key])
            except (KeyError, TypeError, ValueError, OverflowError):
                return None
            return ms / 1000 if ms == ms and abs(ms) != float("inf") else None

        content = message.get("content")
        return Reply(
            text=content if isinstance(content, str) else "",
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=_count(usage.get("prompt_tokens", 0)),
            cached_tokens=_count(details.get("cached_tokens", timings.get("cache_n", 0)) or 0),
            completion_tokens=_count(usage.get("completion_tokens", 0)),
            prompt_seconds=seconds("prompt_ms"), gen_seconds=seconds("predicted_ms"), wall_seconds=wall)


def scores_reply(scores: lp.Scores, choices, reply: Reply) -> LabelScores:
    """The LabelScores of a scored answer: the reply's text becomes the most probable label's (as in
    process), its token counts and timings stay the server's."""
    best = scores.best
    text = choices.prefix + choices.continuations[best] if best is not None else reply.text
    return LabelScores(logprobs=scores.logprobs, probs=scores.probs, unscored=scores.unscored,
                       reply=reply.model_copy(update={"text": text}))


# ---------------------------------------------------------------------------- registration


class OpenAIOptions(BackendOptions):
    api_key: str | None = Field(None, description="bearer token, if the server wants one")
    timeout_s: float | None = Field(None, gt=0, description=f"wall-clock seconds allowed for one request (default "
                                                            f"{TIMEOUT_S:g})")
    retries: int | None = Field(None, ge=0, le=10, description=f"retries after a connection failure or a timeout "
                                                               f"(default {RETRIES})")
    top_logprobs: int | None = Field(None, ge=1, le=1000, description=f"alternatives asked for per token when scoring "
                                                                      f"labels (default {TOP_LOGPROBS}; labels below "
                                                                      "them are unscored)")


def _make(entry, cfg, endpoint: str | None = None) -> OpenAICompatBackend:
    o = entry.options
    return OpenAICompatBackend(endpoint or entry.base_url, entry.model or entry.name, name=entry.name,
                               api_key=o.api_key, timeout=o.timeout_s, retries=o.retries, top_logprobs=o.top_logprobs)


SPEC = BackendSpec(
    name="openai", where="base_url", where_is_endpoint=True, options=OpenAIOptions, factory=_make,
    address=lambda b: b.base_url,
    description="any OpenAI-compatible server (llama.cpp, vLLM, LM Studio); base_url",
    capabilities=Capabilities(label_scores=True, json_schema=True, endpoints=True))
