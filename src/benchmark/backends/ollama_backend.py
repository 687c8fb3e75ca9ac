"""Ollama's native API (/api/chat), following what its server's code does (github.com/ollama/ollama;
the files named below, read at its 2026-08 head). Replies are parsed into the official client's typed
models (``ollama.ChatResponse``, ``ShowResponse``, ``ProcessResponse``); the requests go out under the
server backends' call policy (``benchmark.backends.http``: options.timeout_s per attempt, default
600 s, options.retries, default 2, after a 5xx, a timeout, a cut connection or a garbled body, never
after a 4xx; then a failed call, stored with its reason), not through the client, which has no
``truncate`` nor ``shift``.

Over 400 lines: one server's protocol (load, chat, stream, label scoring) and its prompt-cache estimate share its state.

- **Faulty answers.** At load, an answer of /api/version, /api/show, /api/ps or /api/chat that is not
  JSON or not of the shape the client's types describe is one clear error naming the request (the
  address is not an Ollama server's); during the run it is retried and then a failed call.
- **Streaming** (``options.stream``): server/routes.go streamResponse writes one ChatResponse per line
  (ChatHandler sends one per piece the runner returns, then one with ``done`` and the metrics, and an
  ``{"error": ...}`` line when it fails after the first byte); each call records the time to its first
  line with content (thinking does not count), the gaps between content lines and its end-to-end time.
- **No silently cut prompt.** By default the server drops the oldest messages (the few-shot examples)
  until the prompt fits ``num_ctx`` and logs it at debug level (server/prompt.go chatPrompt), and a
  context shift can drop the start of the prompt while generating. Every request here sends
  ``truncate: false`` and ``shift: false``: a prompt that does not fit is refused by the server
  ("request (N tokens) exceeds the available context size (M tokens)", llama-server's error passed
  on by llm/llama_server.go) and raised as :class:`PromptTooLong`, which the runner stores as a
  failed call. Servers before 0.12.6 know neither field and would truncate: :meth:`load` refuses them.
- **Prompt tokens.** ``prompt_eval_count`` counts cached plus evaluated tokens while
  ``prompt_eval_duration`` covers the evaluated ones only (llm/llama_server.go: cache_n + prompt_n,
  prompt_ms). The API does not say how many were cached, so the backend works it out the way
  llama-server's cache does: the prompt's text shared with the previous prompt and reply (both as
  the server renders them), counted by the server (see :meth:`OllamaBackend._cached_estimate`; two
  short requests per call that are not stored: a render, and a count that evaluates a token or two).
  ``cached_tokens`` is that count (at most the prompt less one token, which llama-server always
  evaluates), or 0 after a reload; the report's evaluated tokens are prompt_tokens - cached_tokens.
- **Loading.** :meth:`load` sends a chat with no messages and the options every call sends
  (``num_ctx``, ``shift``, ``keep_alive``): server/sched.go needsReload reloads a model on any other
  context or shift setting, so the first measured call does not. That reply carries no metrics
  (done_reason "load"), so the load time is the wall clock around it.
- ``done`` false or an empty ``done_reason`` (the generation ended without its final chunk) is an
  aborted call (finish_reason "aborted"), not a normal stop.
- Models that can think (``/api/show`` capabilities) think unless told not to (routes.go ChatHandler
  sets think=true); they get ``think: false``, and :meth:`engine_info` records it.
- Metrics that are zero are not sent at all (api/types.go Metrics, omitempty): a missing count is 0.
- Label scoring (:meth:`OllamaBackend.score_choices`) sends ``logprobs`` and ``top_logprobs``
  (api/types.go ChatRequest, 0.12.11; ChatHandler refuses top_logprobs outside 0..20) and reads the
  ``logprobs`` reply field (api/types.go Logprob, gathered over chunks by writeChatResponse).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from pydantic import Field, ValidationError

from benchmark.backends import logprobs as lp
from benchmark.backends.base import (BackendOptions, BackendSpec, BackendUnavailable, CallFailed, Capabilities,
                                     LabelScores, PromptTooLong, Reply)
from benchmark.backends.http import BACKOFF_S, BadAnswer, Exchange, HTTPReply, Transport, answer_cap, shown, stream_timings
from core.errors import ShootoutError
from core.hosts import normalize_host

TIMEOUT_S = 600.0
LOAD_TIMEOUT_S = 600.0   # the least a model load is given, whatever timeout_s says (weights may take minutes)
RETRIES = 2    # after the first attempt, for a dropped connection, a timeout or a 5xx answer
NOT_OLLAMA = "check the address (OLLAMA_HOST or the model's endpoints): it must be an Ollama server's root"
MIN_VERSION = (0, 12, 6)   # api/types.go ChatRequest gained Truncate and Shift (ollama #12519, #12582)
LOGPROBS_VERSION = (0, 12, 11)  # api/types.go ChatRequest gained Logprobs and TopLogprobs (ollama #12899)
TOP_LOGPROBS = 20          # the most server/routes.go ChatHandler takes ("top_logprobs must be between 0 and 20")
_TOO_LONG = re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)")
_TOO_LONG_NO_COUNTS = "the prompt is longer than the context length"


def parse_version(text: str) -> tuple[int, ...] | None:
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(x) for x in m.groups()) if m else None


def _same_model(a: str, b: str) -> bool:
    norm = (lambda s: s if ":" in s else s + ":latest")
    return norm(a) == norm(b)


class OllamaBackend:
    def __init__(self, tag: str, *, name: str | None = None, host: str | None = None, num_ctx: int = 2048,
                 keep_alive: str | None = None, timeout: float | None = None, retries: int | None = None,
                 backoff: float = BACKOFF_S, stream: bool = False, top_logprobs: int | None = None):
        self.tag = tag
        self.name = name or tag
        self.host = normalize_host(host)
        self.num_ctx = num_ctx
        self.keep_alive = keep_alive
        self.timeout = TIMEOUT_S if timeout is None else float(timeout)
        self.retries = RETRIES if retries is None else int(retries)
        self.backoff = backoff
        self.stream = bool(stream)
        self.top_logprobs = TOP_LOGPROBS if top_logprobs is None else int(top_logprobs)
        self.http = Transport(self.host, model=self.name, server="Ollama", timeout_s=self.timeout, retries=self.retries,
                              backoff_s=backoff, down_hint="check the server (`ollama serve`, OLLAMA_HOST), then resume "
                                                           "with `shootout run --run-id ...`")
        self.version: str | None = None
        self.show = None            # ollama.ShowResponse
        self.ps = None              # ollama.ProcessResponse.Model of this model, after load
        self.think: bool | None = None
        self.loaded_before = False
        self.load_seconds: float | None = None
        self._counts: dict[str, int | None] = {}
        self._previous: str | None = None   # the previous prompt and reply, as the server's cache holds them
        self._rendered: str | None = None
        self.reloads = 0

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: dict | None = None, *, model=None, at_load: bool = False,
                 timeout_s: float | None = None):
        """The answer to one request, read as ``model`` (one of the official client's types) or as a
        JSON object, under the call policy (``benchmark.backends.http``). At load an answer that is not
        JSON or of the wrong shape is one clear error; in a call it is retried, then a failed call."""
        what = f"{method} {path}"

        def parse(ex: Exchange):
            if not ex.ok:
                self._refused(ex, what)
            data = ex.json_object()
            if isinstance(data.get("error"), str):  # an error sent with a 2xx status
                raise BadAnswer("server_error", f"an error: {data['error'][:300]}")
            if model is None:
                return data
            try:
                return model.model_validate(data)
            except ValidationError as exc:
                raise BadAnswer("wrong_shape", f"JSON of the wrong shape for {what} ({_first_problem(exc)}): "
                                               f"{shown(ex.body)}") from None

        return self.http.call(method, path, body, parse=parse, retry_bad=not at_load, hint=NOT_OLLAMA,
                              timeout_s=timeout_s)

    def _refused(self, ex: Exchange, what: str) -> None:
        """What a 4xx answer means: a missing model, a prompt too long, or a failed call."""
        error = ex.detail()
        if ex.status == 404 and what.endswith("/api/version"):
            raise ShootoutError(f"model '{self.name}': the server at {self.host} answered HTTP 404 to {what}", NOT_OLLAMA)
        if ex.status == 404:
            raise ShootoutError(f"model '{self.name}': Ollama at {self.host} has no model '{self.tag}' ({error})",
                                f"run `ollama pull {self.tag}`, or create it with `shootout export ... --ollama-create`")
        if ex.status == 400:
            self._raise_if_too_long(error)
        raise self.http.refused(ex, what)

    def _raise_if_too_long(self, error: str) -> None:
        m = _TOO_LONG.search(error)
        if m:
            raise PromptTooLong(self.name, int(m.group(1)), int(m.group(2)),
                                "raise run.num_ctx (or this model's options.num_ctx), or cap the item length; "
                                "Ollama was asked not to truncate it")
        if _TOO_LONG_NO_COUNTS in error:
            raise PromptTooLong(self.name, self.num_ctx, self.num_ctx)

    def _chat_body(self, messages: list[dict], options: dict, stream: bool = False, **extra) -> dict:
        body: dict[str, Any] = {"model": self.tag, "messages": messages, "stream": stream, "options": options,
                                "truncate": False, "shift": False, **extra}
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        if self.think is not None:
            body["think"] = self.think
        return body

    # ------------------------------------------------------------------ protocol
    def server_version(self) -> str:
        """GET /api/version; a server too old to be told not to truncate is refused."""
        try:
            version = self._request("GET", "/api/version", at_load=True).get("version")
        except BackendUnavailable as exc:
            raise BackendUnavailable(f"model '{self.name}': no Ollama server answers at {self.host} "
                                     f"({exc.message.split(': ', 2)[-1]})",
                                     "start it with `ollama serve`, or set OLLAMA_HOST to where it runs") from None
        if not isinstance(version, str):
            raise ShootoutError(f"model '{self.name}': Ollama at {self.host} answered GET /api/version without a "
                                f"version ({version!r})", NOT_OLLAMA)
        v = parse_version(version)
        if v is not None and v != (0, 0, 0) and v < MIN_VERSION:  # 0.0.0: built from source
            raise ShootoutError(
                f"model '{self.name}': Ollama {version} at {self.host} cannot be asked not to truncate a long prompt "
                "(it would drop the few-shot examples without a word)",
                "upgrade Ollama to 0.12.6 or later (`truncate: false` came in 0.12.6)")
        return version

    def show_model(self):
        """POST /api/show: the model's template (the one that renders its prompts), parameters, details."""
        from ollama import ShowResponse

        return self._request("POST", "/api/show", {"model": self.tag}, model=ShowResponse, at_load=True)

    def process(self):
        """This model's entry in GET /api/ps (None when it is not loaded)."""
        from ollama import ProcessResponse

        return self._find_ps(self._request("GET", "/api/ps", model=ProcessResponse, at_load=True))

    def load(self) -> float:
        """Check the server, read the model's facts, load it at the run's context; the seconds it took."""
        self.version = self.server_version()
        self.show = self.show_model()
        self.think = False if "thinking" in (self.show.capabilities or []) else None
        before = self.process()
        self.loaded_before = before is not None and before.context_length == self.num_ctx
        t0 = time.perf_counter()
        # loading the weights may take longer than a call: at least LOAD_TIMEOUT_S (the server answered /api/version)
        from ollama import ChatResponse

        self._request("POST", "/api/chat", self._chat_body([], {"num_ctx": self.num_ctx}), model=ChatResponse,
                      at_load=True, timeout_s=max(self.timeout, LOAD_TIMEOUT_S))
        self.load_seconds = time.perf_counter() - t0
        self.ps = self.process()
        self._previous = None
        return self.load_seconds

    def _find_ps(self, ps):
        return next((m for m in ps.models if _same_model(m.model or m.name or "", self.tag)), None)

    def memory_facts(self) -> dict[str, float]:
        """Memory from /api/ps after the load (server/routes.go's PsHandler: ``size`` is the whole
        model's memory, ``size_vram`` the part on the GPU): VRAM and the rest, in system memory, in MiB."""
        ps = self.ps
        if ps is None or not ps.size:
            return {}
        vram = ps.size_vram or 0
        return {"vram_mb": vram / 2**20, "rss_mb": max(ps.size - vram, 0) / 2**20}

    def engine_info(self) -> dict[str, Any]:
        show, ps = self.show, self.ps
        details = show.details if show is not None else None
        info: dict[str, Any] = {
            "engine": "Ollama /api/chat", "host": self.host, "tag": self.tag, "server_version": self.version,
            "digest": ps.digest if ps is not None else None,
            "quantization_level": details.quantization_level if details else None,
            "parameter_size": details.parameter_size if details else None,
            "model_family": details.family if details else None,
            "capabilities": list(show.capabilities or []) if show else None,
            "think": self.think if self.think is not None else "not sent (the model cannot think)",
            "context_requested": self.num_ctx,
            "context_allocated": ps.context_length if ps is not None else None,
            "size_bytes": ps.size if ps is not None else None,
            "size_vram_bytes": ps.size_vram if ps is not None else None,
            "share_in_vram": round(ps.size_vram / ps.size, 4) if ps is not None and ps.size else None,
            "template": show.template if show else None,
            "parameters": show.parameters if show else None,
            "truncate": False, "shift": False,
            "keep_alive": self.keep_alive, "timeout_s": self.timeout, "retries": self.retries,
            "load_seconds": round(self.load_seconds, 4) if self.load_seconds is not None else None,
            "loaded_before": self.loaded_before,
            "cached_tokens": "the prompt text shared with the previous prompt and reply, counted by Ollama "
                             "(a render and a raw count per call, not stored)",
        }
        if ps is None and show is not None:
            info["context_allocated"] = "not listed by /api/ps after loading"
        return info

    def close(self) -> None:
        pass

    def _render(self, messages: list[dict]) -> str | None:
        """The prompt exactly as the server renders it for these messages (``_debug_render_only``:
        server/routes.go ChatHandler answers the rendered template without running the model)."""
        data = self._aside("POST", "/api/chat", self._chat_body(messages, {"num_ctx": self.num_ctx},
                                                                 _debug_render_only=True))
        info = data.get("_debug_info") if isinstance(data, dict) else None
        rendered = info.get("rendered_template") if isinstance(info, dict) else None
        return rendered if isinstance(rendered, str) else None

    def _aside(self, method: str, path: str, body: dict, model=None):
        """A request beside the call (a render, a count): None when it fails, unless the server is down
        or does not answer in time, which is the call's failure too (it is not asked then)."""
        try:
            return self._request(method, path, body, model=model)
        except BackendUnavailable:
            raise
        except CallFailed as exc:
            if exc.kind == "timeout":
                raise
            return None
        except ShootoutError:  # PromptTooLong included: the call itself will say so
            return None

    def _count(self, text: str, seed: int) -> int | None:
        """Tokens of a prompt text as the server counts them: a raw /api/generate (no template) that
        generates one token; its prompt_eval_count. Not stored."""
        from ollama import GenerateResponse

        body = {"model": self.tag, "prompt": text, "raw": True, "stream": False, "truncate": False, "shift": False,
                "options": {"num_ctx": self.num_ctx, "num_predict": 1, "temperature": 0.0, "seed": seed}}
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        if self.think is not None:
            body["think"] = self.think
        counted = self._aside("POST", "/api/generate", body, model=GenerateResponse)
        return None if counted is None else counted.prompt_eval_count or 0

    def _cached_estimate(self, messages: list[dict], seed: int) -> int:
        """Prompt tokens this call will find in the server's prompt cache.

        llama-server keeps the longest common token prefix of a prompt with what its slot holds: the
        previous prompt and its reply (llm/llama_server.go sends cache_prompt: true). Both prompts
        are known as the server renders them (:meth:`_render`); their shared start, cut back to a word
        boundary where both tokenizations agree, is counted by the server (:meth:`_count`). That count
        request finds the same text in the cache, so it evaluates a token or two, and leaves the slot
        holding the shared start, as the call expects. The first call after a load shares nothing."""
        rendered = self._render(messages)
        previous, self._rendered = self._previous, rendered
        if rendered is None or previous is None:
            return 0
        shared = _shared_start(rendered, previous)
        if not shared:
            return 0
        if shared not in self._counts:
            self._counts[shared] = self._count(shared, seed)
        return self._counts[shared] or 0

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             temperature: float = 0.0, seed: int = 0, max_tokens: int = 256, grammar: str | None = None) -> Reply:
        cached_estimate = self._cached_estimate(messages, seed)
        body = self._chat_body(messages, {"temperature": temperature, "seed": seed, "num_ctx": self.num_ctx,
                                          "num_predict": max_tokens}, stream=self.stream)
        if schema is not None:
            body["format"] = schema

        def answer(ex: Exchange):
            """(the final chunk, the reply text, the streamed timings, the exchange)."""
            if not ex.ok:
                self._refused(ex, "POST /api/chat")
            if self.stream:
                return (*self._streamed(ex), ex)
            resp = self._chunk(ex.json_object(), ex.body)
            return resp, (resp.message.content if resp.message else "") or "", {}, ex

        t0 = time.perf_counter()
        resp, text, streamed, ex = self.http.call("POST", "/api/chat", body, parse=answer, stream=self.stream,
                                                  max_bytes=answer_cap(max_tokens))
        wall = time.perf_counter() - t0
        self._previous = (self._rendered + text) if self._rendered is not None else None
        common = {"text": text, "wall_seconds": wall, "attempts": ex.attempts, **streamed}
        if not resp.done or resp.done_reason not in ("stop", "length"):
            return HTTPReply(finish_reason="aborted", prompt_tokens=resp.prompt_eval_count or 0,
                             completion_tokens=resp.eval_count or 0, prompt_seconds=None, gen_seconds=None, **common)
        ns = 1e9
        prompt_tokens = resp.prompt_eval_count or 0
        cached = min(cached_estimate, max(prompt_tokens - 1, 0))
        load_s = (resp.load_duration or 0) / ns
        if self.load_seconds and load_s > max(0.25, 0.5 * self.load_seconds):
            cached = 0  # the model was loaded again inside this call: nothing came from the cache
            self.reloads += 1
        return HTTPReply(finish_reason=resp.done_reason, prompt_tokens=prompt_tokens, cached_tokens=cached,
                         completion_tokens=resp.eval_count or 0, prompt_seconds=(resp.prompt_eval_duration or 0) / ns,
                         gen_seconds=(resp.eval_duration or 0) / ns, **common)

    def score_choices(self, messages: list[dict[str, str]], choices) -> LabelScores:
        """Every label's probability from one greedy reply with ``logprobs`` and ``top_logprobs``
        (api/types.go ChatRequest, since 0.12.11): held to the labels by ``format`` (their JSON
        schema) where the answer is JSON, bare labels unconstrained (they part at their first token).
        The runner (llm/llama_server.go) asks llama-server for ``n_probs`` = max(top_logprobs, 1): the
        alternatives are the raw distribution's top ones, so a label the constraint allows may lie
        below them; it is then unscored (benchmark.backends.logprobs). Never streamed."""
        seed = 0
        cached_estimate = self._cached_estimate(messages, seed)
        budget = lp.token_budget(choices)
        body = self._chat_body(messages, {"temperature": 0.0, "seed": seed, "num_ctx": self.num_ctx,
                                          "num_predict": budget}, logprobs=True, top_logprobs=self.top_logprobs)
        schema = lp.json_schema_of(choices)
        if schema is not None:
            body["format"] = schema

        def answer(ex: Exchange):
            if not ex.ok:
                self._refused(ex, "POST /api/chat")
            return self._chunk(ex.json_object(), ex.body), ex

        t0 = time.perf_counter()
        resp, ex = self.http.call("POST", "/api/chat", body, parse=answer,
                                  max_bytes=answer_cap(budget) + budget * self.top_logprobs * 300)
        wall = time.perf_counter() - t0
        text = (resp.message.content if resp.message else "") or ""
        self._previous = (self._rendered + text) if self._rendered is not None else None
        steps = lp.steps_ollama(resp.logprobs)
        if steps is None:
            v = parse_version(self.version or "")
            too_old = v is not None and v != (0, 0, 0) and v < LOGPROBS_VERSION
            raise ShootoutError(f"model '{self.name}': Ollama {self.version or '(version unknown)'} at {self.host} "
                                "answered a label scoring without log-probabilities",
                                "upgrade Ollama to 0.12.11 or later (logprobs came then)" if too_old else
                                "use task.decoding: generate for this model")
        scores = lp.from_text(steps, choices, listed=self.top_logprobs)
        done = resp.done and resp.done_reason in ("stop", "length")
        ns = 1e9
        prompt_tokens = resp.prompt_eval_count or 0
        best = scores.best
        reply = HTTPReply(text=choices.prefix + choices.continuations[best] if best is not None else text,
                          finish_reason=resp.done_reason if done else "aborted", prompt_tokens=prompt_tokens,
                          cached_tokens=min(cached_estimate, max(prompt_tokens - 1, 0)),
                          completion_tokens=resp.eval_count or 0,
                          prompt_seconds=(resp.prompt_eval_duration or 0) / ns if done else None,
                          gen_seconds=(resp.eval_duration or 0) / ns if done else None, wall_seconds=wall,
                          attempts=ex.attempts)
        return LabelScores(logprobs=scores.logprobs, probs=scores.probs, unscored=scores.unscored, reply=reply)

    @staticmethod
    def _chunk(data: Any, line: bytes):
        """One chat answer object (the whole answer, or one line of a stream) as ``ollama.ChatResponse``."""
        from ollama import ChatResponse

        if not isinstance(data, dict):
            raise BadAnswer("wrong_shape", f"JSON that is not an object: {shown(line)}")
        if isinstance(data.get("error"), str):  # server/routes.go streamResponse: an error once the stream began
            raise BadAnswer("server_error", f"an error in the middle of the answer: {data['error'][:300]}")
        try:
            return ChatResponse.model_validate(data)
        except ValidationError as exc:
            raise BadAnswer("wrong_shape", f"JSON of the wrong shape for POST /api/chat ({_first_problem(exc)}): "
                                           f"{shown(line)}") from None

    def _streamed(self, ex: Exchange):
        """(the last chunk, the text, the streamed timings) of an NDJSON chat stream (server/routes.go
        streamResponse: one ChatResponse per line; ChatHandler sends one per piece the runner returns,
        and a last one with ``done``, ``done_reason`` and the metrics). A chunk counts as content when
        its message carries text; thinking does not count."""
        pieces: list[str] = []
        times: list[float] = []
        last = None
        for t, raw in ex.lines:
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                raise BadAnswer("not_json", f"a stream line that is not JSON: {shown(raw)}") from None
            last = self._chunk(data, raw)
            piece = last.message.content if last.message else None
            if piece:
                pieces.append(piece)
                times.append(t)
            if last.done:
                break
        if last is None:
            raise BadAnswer("not_json", f"an empty stream: {shown(ex.body)}")
        return last, "".join(pieces), stream_timings(ex.t0, times, ex.t_end)


def _shared_start(a: str, b: str) -> str:
    """The start two texts share, cut back to a word boundary of both."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    at_boundary = all(n == len(t) or not t[n].isalnum() for t in (a, b))
    if not at_boundary:
        while n > 0 and a[n - 1].isalnum():
            n -= 1
    return a[:n]


def _first_problem(exc) -> str:
    """The first problem a pydantic ValidationError names, in a few words."""
    e = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(x) for x in e.get("loc", ())) or "the top level"
    return f"{where}: {e.get('msg', 'invalid')}"


# ---------------------------------------------------------------------------- registration


class OllamaOptions(BackendOptions):
    keep_alive: str | None = Field(None, description="how long the server keeps the model loaded (e.g. 5m, -1)")
    timeout_s: float | None = Field(None, gt=0, description=f"wall-clock seconds allowed for one request (default "
                                                            f"{TIMEOUT_S:g})")
    retries: int | None = Field(None, ge=0, le=10, description=f"retries of a call after a 5xx answer, a timeout, a "
                                                               f"cut connection or a garbled body (default {RETRIES}); "
                                                               "never after a 4xx")
    stream: bool = Field(False, description="stream the replies, recording the time to the first content token and "
                                            "the inter-token latency of every call")
    top_logprobs: int | None = Field(None, ge=1, le=20, description=f"alternatives asked for per token when scoring "
                                                                    f"labels (default and most {TOP_LOGPROBS}; labels "
                                                                    "below them are unscored)")


def _make(entry, cfg, endpoint: str | None = None) -> OllamaBackend:
    o = entry.options
    return OllamaBackend(entry.tag, name=entry.name, host=endpoint, num_ctx=cfg.setting(entry, "num_ctx"),
                         keep_alive=o.keep_alive, timeout=o.timeout_s, retries=o.retries, stream=o.stream,
                         top_logprobs=o.top_logprobs)


SPEC = BackendSpec(
    name="ollama", where="tag", options=OllamaOptions, factory=_make, address=lambda b: b.host,
    description="an Ollama server at OLLAMA_HOST, through the official client; tag: the model",
    capabilities=Capabilities(label_scores=True, json_schema=True, endpoints=True, memory_facts=True))
