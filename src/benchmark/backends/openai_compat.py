"""OpenAI-compatible chat servers over HTTP: llama.cpp's server, llama-cpp-python's server, vLLM,
LM Studio, Ollama's /v1.

The task's JSON schema goes as OpenAI's ``response_format: {type: json_schema}``; servers that
only know ``{type: json_object, schema}`` (llama-cpp-python's) reject that (400, 422, or a 500
naming response_format), and the backend switches once to their form. Timings come from the server
where it reports them (llama.cpp's ``timings``); otherwise only the wall clock is stored and the
engine fields stay empty. Label scoring (:meth:`OpenAICompatBackend.score_choices`) asks one greedy
reply with ``logprobs`` and ``top_logprobs`` and reads the labels' probabilities from it
(``benchmark.backends.logprobs``).

Requests follow the server backends' call policy (``benchmark.backends.http``: a wall-clock deadline
of options.timeout_s, default 300 s, per attempt; options.retries, default 2, more attempts after a
5xx, a timeout, a cut connection or a garbled body; never after a 4xx): a call that still has no
usable answer is a failed call (``CallFailed``, stored with its reason), a server that stopped
answering is ``BackendUnavailable``. A prompt the server says does not fit its context raises
``PromptTooLong`` (stored as a failed call too); a missing model or a refused key stops the run.

``options.stream``: the reply is streamed (``stream: true`` with ``stream_options.include_usage``)
and each call records the time to its first content token, the gaps between content chunks and its
end-to-end time. A server that sends no usage in a stream (llama-cpp-python's) is counted one token
per content chunk, as it streams them, and its prompt tokens stay 0. A stream that ends with
``[DONE]`` but no ``finish_reason`` was broken off by the server: finish_reason "aborted" (llama-cpp-
python's server does that to a call in flight when another one arrives, unless started with
``--interrupt_requests False``); one that ends with neither was cut: a failed call.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from pydantic import Field

from benchmark.backends import logprobs as lp
from benchmark.backends.base import (BackendOptions, BackendSpec, BackendUnavailable, CallFailed, Capabilities,
                                     LabelScores, PromptTooLong, Reply)
from benchmark.backends.http import BACKOFF_S, BadAnswer, Exchange, HTTPReply, Transport, answer_cap, shown, stream_timings
from core.errors import ShootoutError

TIMEOUT_S = 300.0
RETRIES = 2
TOP_LOGPROBS = 20  # alternatives asked for per token when scoring labels (OpenAI's and vLLM's default maximum)
BASE_URL_HINT = "check base_url: it must be the OpenAI-compatible root (usually ending in /v1)"

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


class _OtherSchemaForm(Exception):
    """The server refused OpenAI's json_schema form: ask again in the json_object form."""


class OpenAICompatBackend:
    def __init__(self, base_url: str, model: str, *, name: str | None = None, api_key: str | None = None,
                 timeout: float | None = None, retries: int | None = None, stream: bool = False,
                 backoff: float = BACKOFF_S, top_logprobs: int | None = None):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.api_key = api_key
        self.timeout = TIMEOUT_S if timeout is None else float(timeout)
        self.retries = RETRIES if retries is None else int(retries)
        self.stream = bool(stream)
        self.schema_style = "json_schema"
        self.server_models: list[str] = []
        self.top_logprobs = TOP_LOGPROBS if top_logprobs is None else int(top_logprobs)
        self.http = Transport(self.base_url, model=self.name, server="the server", timeout_s=self.timeout,
                              retries=self.retries, backoff_s=backoff,
                              headers={"Authorization": f"Bearer {api_key}"} if api_key else None)

    # ------------------------------------------------------------------ protocol
    def listing(self, ex: Exchange) -> list[str]:
        """The model ids of the answer to GET /models."""
        if ex.status == 404:  # a server without a model listing: the chat calls will tell
            return []
        if not ex.ok:
            raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered HTTP {ex.status} "
                                f"{ex.reason} to GET /models: {ex.detail()}".rstrip(": "),
                                "check base_url and options.api_key")
        if not ex.body.strip():
            raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered GET /models with an "
                                "empty body", "mlx_lm.server answers so when it has no Hugging Face cache folder: "
                                              "use backend: mlx for it; otherwise check base_url")
        data = ex.json_object().get("data")
        return [str(m.get("id", "")) for m in data if isinstance(m, dict)] if isinstance(data, list) else []

    def load(self) -> float:
        t0 = time.perf_counter()
        try:
            self.server_models = self.http.call("GET", "/models", parse=self.listing, retry_bad=False,
                                                hint=BASE_URL_HINT)
        except BackendUnavailable as exc:
            raise ShootoutError(f"model '{self.name}': no OpenAI-compatible server answers at {self.base_url} "
                                f"({exc.message.rsplit(': ', 1)[-1]})",
                                "start the server (e.g. `python -m llama_cpp.server --model M.gguf`) or fix base_url"
                                ) from None
        except CallFailed as exc:
            raise ShootoutError(f"{exc.message} (checking the server before the run)",
                                exc.hint or "the server is up but failing: see its log") from None
        return time.perf_counter() - t0

    def engine_info(self) -> dict[str, Any]:
        return {"engine": "OpenAI-compatible HTTP", "base_url": self.base_url, "model": self.model,
                "server_models": self.server_models, "schema_style": self.schema_style,
                "timeout_s": self.timeout, "retries": self.retries, "stream": self.stream}

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

    def _says_why(self, ex: Exchange, schema) -> bool:
        """A failed answer that names its cause (a prompt too long, the schema form refused): not retried."""
        return self._too_long(ex.status, ex.detail(), ex.error_object()) is not None or \
            self._refuses_form(ex, schema)

    def _raise_known(self, ex: Exchange, schema) -> None:
        """Raise for a failed answer that names its cause (``_says_why``); return for any other."""
        too_long = self._too_long(ex.status, ex.detail(), ex.error_object())
        if too_long is not None:
            raise too_long
        if self._refuses_form(ex, schema):
            raise _OtherSchemaForm

    def _refuses_form(self, ex: Exchange, schema) -> bool:
        return bool(schema) and self.schema_style == "json_schema" and (
            ex.status in (400, 422) or "response_format" in ex.detail())

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             temperature: float = 0.0, seed: int = 0, max_tokens: int = 256, grammar: str | None = None) -> Reply:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature,
                                "seed": seed, "max_tokens": max_tokens, "stream": self.stream}
        if self.stream:  # the token counts come in a last chunk where the server honours it
            body["stream_options"] = {"include_usage": True}

        def says_why(ex: Exchange) -> bool:  # a 5xx naming a prompt too long or the schema form: not retried
            return self._says_why(ex, schema)

        def answer(ex: Exchange) -> HTTPReply:
            if not ex.ok:
                self._raise_known(ex, schema)
                if ex.status == 404:
                    raise ShootoutError(f"model '{self.name}': the server at {self.base_url} has no model "
                                        f"'{self.model}' ({ex.detail()})",
                                        f"models there: {', '.join(self.server_models) or 'none listed'}")
                if ex.status in (401, 403):
                    raise ShootoutError(f"model '{self.name}': the server at {self.base_url} refused the key "
                                        f"(HTTP {ex.status}: {ex.detail()})", "set options.api_key")
                raise self.http.refused(ex, "POST /chat/completions")
            return self.streamed_reply(ex) if self.stream else self.reply_from(ex)

        t0 = time.perf_counter()
        while True:
            if schema:
                body["response_format"] = self._response_format(schema)
            try:
                reply = self.http.call("POST", "/chat/completions", body, parse=answer, stream=self.stream,
                                       max_bytes=answer_cap(max_tokens), reads=says_why)
            except _OtherSchemaForm:
                self.schema_style = "json_object"
                continue
            return reply.model_copy(update={"wall_seconds": time.perf_counter() - t0})

    # ------------------------------------------------------------------ label scoring
    def scoring_body(self, messages: list[dict[str, str]], choices) -> tuple[dict[str, Any], dict | None]:
        """(the request, the schema it sends) of a label scoring: one greedy reply held to the labels by
        their JSON schema where the answer is JSON (bare labels go unconstrained: they part at their
        first token, which the alternatives show), with every token's log-probability and the top
        ``top_logprobs`` alternatives at each position. Never streamed."""
        body = {"model": self.model, "messages": messages, "temperature": 0.0, "seed": 0,
                "max_tokens": lp.token_budget(choices), "stream": False, "logprobs": True,
                "top_logprobs": self.top_logprobs}
        return body, lp.json_schema_of(choices)

    def score_choices(self, messages: list[dict[str, str]], choices) -> LabelScores:
        """Every label's probability from one greedy reply's log-probabilities
        (:func:`benchmark.backends.logprobs.from_text`); labels the server's alternatives do not show
        are named in ``unscored``. A server that answers without log-probabilities, or refuses the
        fields, stops the run with one message (every call would fail the same way)."""
        body, schema = self.scoring_body(messages, choices)

        def says_why(ex: Exchange) -> bool:
            return self._says_why(ex, schema)

        def answer(ex: Exchange) -> LabelScores:
            if not ex.ok:
                self._raise_known(ex, schema)
                if ex.status in (400, 422) and "logprob" in ex.detail().lower():
                    raise ShootoutError(f"model '{self.name}': the server at {self.base_url} refuses a label scoring "
                                        f"(logprobs, top_logprobs {self.top_logprobs}): {ex.detail()}",
                                        "lower options.top_logprobs to what it takes, or use task.decoding: generate")
                if ex.status == 404:
                    raise ShootoutError(f"model '{self.name}': the server at {self.base_url} has no model "
                                        f"'{self.model}' ({ex.detail()})",
                                        f"models there: {', '.join(self.server_models) or 'none listed'}")
                raise self.http.refused(ex, "POST /chat/completions")
            reply = self.reply_from(ex)
            steps = lp.steps_openai(ex.json_object()["choices"][0].get("logprobs"))
            if steps is None or any(s.token is None for s in steps):
                raise ShootoutError(f"model '{self.name}': the server at {self.base_url} answered a label scoring "
                                    "without the log-probabilities of its tokens (choices[0].logprobs.content), so "
                                    "it cannot score labels",
                                    "use task.decoding: generate for this model, or a server that returns logprobs "
                                    "(llama.cpp's server, llama-cpp-python's, vLLM)")
            return scores_reply(lp.from_text(steps, choices, listed=self.top_logprobs), choices, reply)

        budget = body["max_tokens"]
        t0 = time.perf_counter()
        while True:
            if schema:
                body["response_format"] = self._response_format(schema)
            try:
                scored = self.http.call("POST", "/chat/completions", body, parse=answer, reads=says_why,
                                        max_bytes=answer_cap(budget) + budget * self.top_logprobs * 300)
            except _OtherSchemaForm:
                self.schema_style = "json_object"
                continue
            wall = time.perf_counter() - t0
            return scored.model_copy(update={"reply": scored.reply.model_copy(update={"wall_seconds": wall})})

    def reply_from(self, ex: Exchange) -> HTTPReply:
        """The Reply of a 2xx chat answer; BadAnswer for anything that is not a chat completion."""
        out = ex.json_object()
        choices = out.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise BadAnswer("wrong_shape", f"a reply without choices[0].message: {shown(ex.body)}",
                            "check base_url and model: the server must speak OpenAI's chat completions")
        content = message.get("content")
        return self._reply(ex, content if isinstance(content, str) else "", choice.get("finish_reason"),
                           out.get("usage"), out.get("timings"))

    def streamed_reply(self, ex: Exchange) -> HTTPReply:
        """The Reply of a streamed chat answer (server-sent events, ``data: {chunk}`` lines ending with
        ``data: [DONE]``), with its timings: a chunk counts as content when its delta carries text (the
        first chunk of many servers names the role only). A server that answered with one JSON object
        instead is read as such, without timings."""
        pieces: list[str] = []
        times: list[float] = []
        finish = usage = timings = None
        chunks = 0
        done = False
        for t, raw in ex.lines:
            line = raw.strip()
            if not line.startswith(b"data:"):  # blank separators, ": keep-alive" comments, event:/id: fields
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                continue
            try:
                obj = json.loads(payload)
            except ValueError:
                raise BadAnswer("not_json", f"a stream line that is not JSON: {shown(payload)}") from None
            if not isinstance(obj, dict):
                raise BadAnswer("wrong_shape", f"a stream line that is not a JSON object: {shown(payload)}")
            if obj.get("error"):
                err = obj["error"]
                raise BadAnswer("server_error", "an error in the middle of its stream: "
                                f"{err.get('message', err) if isinstance(err, dict) else err}")
            chunks += 1
            usage = obj["usage"] if isinstance(obj.get("usage"), dict) else usage
            timings = obj["timings"] if isinstance(obj.get("timings"), dict) else timings
            choices = obj.get("choices")
            if not choices:  # the usage chunk has none
                continue
            choice = choices[0] if isinstance(choices, list) else None
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                raise BadAnswer("wrong_shape", f"a stream chunk without choices[0].delta: {shown(payload)}")
            piece = delta.get("content")
            if isinstance(piece, str) and piece:
                pieces.append(piece)
                times.append(t)
            finish = choice.get("finish_reason") or finish
        if not chunks:
            try:
                ex.json_object()
            except BadAnswer:
                raise BadAnswer("not_json", f"something that is not an event stream: {shown(ex.body)}") from None
            return self.reply_from(ex)  # the server does not stream: one JSON answer
        if finish is None and not done:
            raise BadAnswer("cut", f"a stream that ended before its last chunk ({chunks} chunks, no finish_reason)")
        if finish is None:  # [DONE] without a finish_reason: the server broke the generation off (llama-cpp-python's
            finish = "aborted"  # server does when another request comes, unless --interrupt_requests False)
        if not isinstance(usage, dict) or not usage.get("completion_tokens"):
            usage = {**(usage or {}), "completion_tokens": len(pieces)}  # one token per content chunk, as it streams
        return self._reply(ex, "".join(pieces), finish, usage, timings, stream_timings(ex.t0, times, ex.t_end))

    def _reply(self, ex: Exchange, text: str, finish, usage, timings, streamed: dict | None = None) -> HTTPReply:
        usage = usage if isinstance(usage, dict) else {}
        details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
        timings = timings if isinstance(timings, dict) else {}

        def seconds(key: str) -> float | None:
            try:
                ms = float(timings[key])
            except (KeyError, TypeError, ValueError, OverflowError):
                return None
            return ms / 1000 if ms == ms and abs(ms) != float("inf") else None

        return HTTPReply(
            text=text, finish_reason=finish if finish in ("length", "aborted") else "stop",
            prompt_tokens=_count(usage.get("prompt_tokens", 0)),
            cached_tokens=_count(details.get("cached_tokens", timings.get("cache_n", 0)) or 0),
            completion_tokens=_count(usage.get("completion_tokens", 0)),
            prompt_seconds=seconds("prompt_ms"), gen_seconds=seconds("predicted_ms"),
            wall_seconds=ex.t_end - ex.t0, attempts=ex.attempts, **(streamed or {}))


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
    retries: int | None = Field(None, ge=0, le=10, description=f"retries of a call after a 5xx answer, a timeout, a "
                                                               f"cut connection or a garbled body (default {RETRIES}); "
                                                               "never after a 4xx")
    stream: bool = Field(False, description="stream the replies, recording the time to the first content token and "
                                            "the inter-token latency of every call")
    top_logprobs: int | None = Field(None, ge=1, le=1000, description=f"alternatives asked for per token when scoring "
                                                                      f"labels (default {TOP_LOGPROBS}; labels below "
                                                                      "them are unscored)")


def _make(entry, cfg, endpoint: str | None = None) -> OpenAICompatBackend:
    o = entry.options
    return OpenAICompatBackend(endpoint or entry.base_url, entry.model or entry.name, name=entry.name,
                               api_key=o.api_key, timeout=o.timeout_s, retries=o.retries, stream=o.stream,
                               top_logprobs=o.top_logprobs)


SPEC = BackendSpec(
    name="openai", where="base_url", where_is_endpoint=True, options=OpenAIOptions, factory=_make,
    address=lambda b: b.base_url,
    description="any OpenAI-compatible server (llama.cpp, vLLM, LM Studio); base_url",
    capabilities=Capabilities(label_scores=True, json_schema=True, endpoints=True))
