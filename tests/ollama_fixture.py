"""A loopback fake of Ollama's HTTP server that behaves as the server's code does, for the backend,
create and doctor tests (no Ollama server can be installed on these machines).

It follows github.com/ollama/ollama at fb30760996871fa9460115c753afd2c60d4ab0f7 (2026-08-21). Each
behaviour names the source file it mirrors. What it simulates instead of running a model: the prompt
is rendered with the model's Go TEMPLATE (core/gotemplate.py, checked against Go's text/template in
tests/test_modelfile.py) and cut into tokens by a simple rule (special markers, words, single
characters); the prompt cache keeps the longest common token prefix as llama-server does; prompt
evaluation costs ``PROMPT_NS`` per evaluated token and generation ``EVAL_NS`` per token, so a test
knows the true rates. Replies come from ``FakeModel.reply`` (a function of the request); the
``logprobs`` a request asks for (api/types.go ChatRequest.Logprobs/TopLogprobs, 0.12.11) come from
``FakeModel.distribution``, the model's raw next-token log-probabilities at each generated token
(a generated token it leaves out gets 10 nats below its least likely entry).

A streamed chat (``stream`` not false) is NDJSON over chunked transfer encoding, one ChatResponse per
generated token and a last one with ``done``, ``done_reason`` and the metrics (server/routes.go
ChatHandler and streamResponse), ``token_delay_s`` apart when a test sets it.

Faults a test plants (not Ollama's behaviour: what a network, a proxy or a crashing runner does to it):
``chat_fault(call, body)`` for the chats that ask for an answer (``call``: the index of the distinct
request body, so a retry meets the same fault): ``500`` (an error answer, as routes.go writes one),
``garbage`` (a proxy's HTML page with status 200), ``wrong_shape`` (JSON that is no ChatResponse),
``timeout`` (no answer for ``hang_s``), ``cut`` (the connection closed halfway through the body), ``400``
(a refusal); ``garble[path]``: the raw body (status 200) answered instead on /api/version, /api/show,
/api/ps, or /api/chat for the load (a chat with no messages).

Use::

    from tests.ollama_fixture import FakeModel, ollama  # noqa: F401  (``ollama`` is a pytest fixture)

    def test_x(ollama):
        ollama.add(FakeModel("gemma3:270m"))
        ... OLLAMA_HOST=ollama.url ...
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable

import pytest

from formats import chat
from formats import gotemplate
from tests.conftest import send

VERSION = "0.33.0"
PROMPT_NS = 1_000_000        # 1 ms per evaluated prompt token: 1,000 tokens/s
EVAL_NS = 20_000_000         # 20 ms per generated token: 50 tokens/s
LOAD_SECONDS = 0.4           # a (re)load, really slept, so wall clocks see it
DEFAULT_NUM_CTX = 4096       # envconfig.ContextLength (OLLAMA_CONTEXT_LENGTH; 4k on a small GPU)
LOGPROB = -0.01              # a generated token's log-probability when the model names no distribution
LOGPROBS_SINCE = (0, 12, 11)  # api/types.go ChatRequest.Logprobs/TopLogprobs (ollama #12899, v0.12.11)

VALID = json.dumps({"reasoning": "Orders rose.", "sentiment": 0.6, "confidence": 0.8})

# fs/ggml/type.go, FileType.String (general.file_type -> name)
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
              12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
              32: "BF16"}
_TOKEN = re.compile(r"<[^<>\s]{1,40}>|\[/?[A-Z_]+\]|\w+|\s|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """A stand-in tokenizer: a BOS, then special markers, words, single spaces and punctuation."""
    return ["<bos>"] + _TOKEN.findall(text)


def human_number(n: int) -> str:
    """format/format.go, HumanNumber (the parameter_size Ollama shows)."""
    if n >= 1_000_000_000:
        x = n / 1e9
        return f"{x:.0f}B" if x == int(x) else f"{x:.1f}B"
    if n >= 1_000_000:
        x = n / 1e6
        return f"{x:.0f}M" if x == int(x) else f"{x:.2f}M"
    if n >= 1000:
        return f"{n / 1000:.0f}K"
    return str(n)


def go_value(v) -> str:
    """fmt's %#v for what a params layer holds (JSON numbers are float64, strings are quoted)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        r = repr(float(v))
        return r[:-2] if r.endswith(".0") else r
    return json.dumps(v, ensure_ascii=False)


@dataclass
class FakeModel:
    name: str
    template: str = chat.FAMILIES["gemma3"].go                # the Go TEMPLATE layer
    parameters: dict = field(default_factory=lambda: {"stop": ["<end_of_turn>", "<start_of_turn>"]})
    system: str = ""
    family: str = "gemma3"                                    # general.architecture
    parameter_size: str = "268.10M"
    quantization_level: str = "Q4_K_M"
    train_ctx: int = 32768                                    # <arch>.context_length
    capabilities: list = field(default_factory=lambda: ["completion"])
    size: int = 536_000_000                                   # bytes when loaded
    vram_share: float = 1.0                                   # part of it on the GPU
    chat_template: str | None = None                          # the GGUF's Jinja template
    digest: str = ""
    reply: Callable[[dict], str] = lambda body: VALID         # the content of an answer
    # the model's raw next-token log-probabilities (its top ones) given the request and the text
    # generated so far; None: each generated token has log-probability LOGPROB and nothing else is listed
    distribution: Callable[[dict, str], dict[str, float]] | None = None
    thinking: str = "The user wants a JSON rating; the news is good."

    def __post_init__(self):
        if ":" not in self.name:
            self.name += ":latest"  # types/model/name.go: the default tag
        if not self.digest:
            self.digest = hashlib.sha256(self.name.encode()).hexdigest()

    def go_template_used(self, go_template_env: str | None) -> bool:
        """server/images.go GetModel and server/routes.go shouldUseGoTemplate: a GGUF template with
        tools or thinking wins over the TEMPLATE unless OLLAMA_GO_TEMPLATE is set."""
        if go_template_env is not None:
            return go_template_env.lower() in ("1", "true", "t")
        return chat.ollama_prefers_gguf_template(self.chat_template) is None


@dataclass
class Runner:
    model: str
    num_ctx: int
    shift: bool
    expires: datetime
    slot: list[str] = field(default_factory=list)


class FakeOllama:
    """The server's state and scripted faults; ``url`` once started."""

    def __init__(self):
        self.models: dict[str, FakeModel] = {}
        self.blobs: dict[str, Path] = {}
        self.runners: dict[str, Runner] = {}
        self.requests: list[tuple[str, str, Any]] = []   # (method, path, JSON body or None)
        self.loads: list[tuple[str, int, bool]] = []      # (model, num_ctx, shift) per (re)load
        self.uploads: list[str] = []
        self.version = VERSION
        self.go_template_env: str | None = None           # OLLAMA_GO_TEMPLATE on the server
        self.fail_next: list[tuple[int, str]] = []        # (status, error) answers to the next chats
        self.abort_next = 0                               # chats that end without a final chunk
        self.chat_fault: Callable[[int, dict], str | None] | None = None   # planted faults (module docstring)
        self.garble: dict[str, bytes] = {}                # path -> a body answered instead (status 200)
        self.hang_s = 3.0                                 # how long a "timeout" fault keeps the client waiting
        self.token_delay_s = 0.0                          # between streamed tokens
        self.chat_calls: dict[str, int] = {}              # distinct answering-chat body -> its index
        self.faults_met: list[tuple[int, str]] = []       # (call, fault) per request that met one
        self.lock = threading.Lock()
        self.errors: list[str] = []                       # exceptions raised while answering (a test's bug)
        self._dir = tempfile.TemporaryDirectory(prefix="fake-ollama-")
        self.url = ""

    def add(self, model: FakeModel) -> FakeModel:
        self.models[model.name] = model
        return model

    def find(self, name: str) -> FakeModel | None:
        return self.models.get(name if ":" in name else name + ":latest")

    def chats(self) -> list[dict]:
        return [b for m, p, b in self.requests if p == "/api/chat"]

    def close(self):
        self._dir.cleanup()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _version(text: str) -> tuple[int, ...]:
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def _refuse_logprob_fields(body: dict, version: str) -> str | None:
    """What server/routes.go ChatHandler refuses of the logprob fields, before it looks the model up:
    a value of the wrong JSON type (ShouldBindJSON into api.ChatRequest: bool / int) and top_logprobs
    outside 0..20. A server older than 0.12.11 has neither field: Go's decoder ignores them."""
    if _version(version) < LOGPROBS_SINCE and _version(version) != (0, 0, 0):
        return None
    lp, top = body.get("logprobs"), body.get("top_logprobs")
    if lp is not None and not isinstance(lp, bool):
        return (f"json: cannot unmarshal {_json_kind(lp)} into Go struct field ChatRequest.logprobs of type bool")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int)):
        return f"json: cannot unmarshal {_json_kind(top)} into Go struct field ChatRequest.top_logprobs of type int"
    if top is not None and not 0 <= top <= 20:
        return "top_logprobs must be between 0 and 20"
    return None


def _json_kind(v) -> str:
    return {bool: "bool", str: "string", list: "array", dict: "object"}.get(type(v), "number")


def _logprobs(m: FakeModel, body: dict, gen: list[str], version: str) -> list[dict] | None:
    """The ``logprobs`` reply field (api/types.go Logprob) for the generated tokens, when asked.

    llm/llama_server.go Completion asks llama-server for n_probs = max(top_logprobs, 1) and
    convertLogprobs keeps, per content chunk, the token's text and log-probability and, only when
    top_logprobs > 0, the top alternatives llama-server listed: the raw distribution's most likely
    tokens, most likely first, whether or not the constraint allowed them (Ollama does not send
    post_sampling_probs; the runners of 0.12.11, runner/common/logprob.go CalculateLogprobs, did the
    same: a softmax of the raw logits, the top K sorted). server/logprob.go toAPILogprobs adds
    ``bytes`` (the UTF-8 bytes of the text; left out when it is empty). Not asked (or a server before
    0.12.11): no field at all (omitempty)."""
    if not body.get("logprobs") or (_version(version) < LOGPROBS_SINCE and _version(version) != (0, 0, 0)):
        return None
    top = int(body.get("top_logprobs") or 0)

    def entry(token: str, logprob: float) -> dict:
        e = {"token": token, "logprob": logprob}
        if token:
            e["bytes"] = list(token.encode("utf-8"))
        return e

    out, before = [], ""
    for token in gen:
        dist = m.distribution(body, before) if m.distribution else {token: LOGPROB}
        e = entry(token, dist.get(token, min(dist.values(), default=0.0) - 10.0))
        if top > 0:
            ranked = sorted(dist.items(), key=lambda kv: -kv[1])[:top]
            e["top_logprobs"] = [entry(t, v) for t, v in ranked]
        out.append(e)
        before += token
    return out


def make_handler(state: FakeOllama):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle(self):
            """A failure inside the fake (a test's reply function, say) is recorded: the client would
            only see a dropped connection and retry, and the test would pass slowly on retries."""
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up on a planted hang
                pass
            except Exception as exc:  # noqa: BLE001
                state.errors.append(f"{type(exc).__name__}: {exc}")
                raise

        # ------------------------------------------------------------ plumbing
        def _send(self, code: int, body: Any = None, ctype: str = "application/json; charset=utf-8"):
            send(self, code, ctype, b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode()))

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _json(self):
            raw = self._body()
            if not raw:
                return None
            return json.loads(raw)

        def _stream(self, lines: list[dict]):
            """server/routes.go streamResponse: NDJSON, one object per line, errors as a line
            {"error": ...} once something was written."""
            data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
            self._send(200, data, "application/x-ndjson")

        def _stream_chunked(self, lines: list[dict], delay: float = 0.0, cut_after: int | None = None):
            """The same as gin writes it (c.Stream flushes each line: chunked transfer encoding), ``delay``
            between lines; ``cut_after``: the connection closed after that many lines (a planted fault)."""
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for k, x in enumerate(lines):
                if cut_after is not None and k == cut_after:
                    self.close_connection = True
                    return
                if k and delay:
                    time.sleep(delay)
                data = json.dumps(x).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        # ------------------------------------------------------------ routes (server/routes.go, GenerateRoutes)
        def do_HEAD(self):  # noqa: N802
            state.requests.append(("HEAD", self.path, None))
            if self.path == "/api/version":
                return self._send(200, {"version": state.version})
            if self.path.startswith("/api/blobs/"):
                return self._head_blob()
            return self._send(404, {"error": "not found"})

        def do_GET(self):  # noqa: N802
            state.requests.append(("GET", self.path, None))
            if self.path in state.garble:
                return self._send(200, state.garble[self.path], "application/json; charset=utf-8")
            if self.path == "/api/version":
                return self._send(200, {"version": state.version})
            if self.path == "/api/tags":
                return self._send(200, {"models": [self._listing(m) for m in state.models.values()]})
            if self.path == "/api/ps":
                return self._ps()
            if self.path == "/":
                return self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
            return self._send(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            if self.path.startswith("/api/blobs/"):
                state.requests.append(("POST", self.path, None))
                return self._post_blob()
            try:
                body = self._json()
            except json.JSONDecodeError as exc:
                state.requests.append(("POST", self.path, None))
                return self._send(400, {"error": str(exc)})
            state.requests.append(("POST", self.path, body))
            if body is None:  # ShouldBindJSON on an empty body: io.EOF
                return self._send(400, {"error": "missing request body"})
            if self.path in state.garble and (self.path != "/api/chat" or not body.get("messages")):
                return self._send(200, state.garble[self.path], "application/json; charset=utf-8")
            if self.path == "/api/chat":
                if body.get("messages") and not body.get("_debug_render_only") and state.chat_fault:
                    key = json.dumps(body, sort_keys=True)
                    with state.lock:
                        call = state.chat_calls.setdefault(key, len(state.chat_calls))
                    fault = state.chat_fault(call, body)
                    if fault:
                        with state.lock:
                            state.faults_met.append((call, fault))
                        return self._fault(fault, body)
                with state.lock:
                    return self._chat(body)
            if self.path == "/api/generate":
                with state.lock:
                    return self._generate(body)
            if self.path == "/api/show":
                return self._show(body)
            if self.path == "/api/create":
                return self._create(body)
            return self._send(404, {"error": "not found"})

        # ------------------------------------------------------------ listings
        @staticmethod
        def _details(m: FakeModel) -> dict:
            # api/types.go ModelDetails (filled from the model's config: server/routes.go GetModelInfo)
            return {"parent_model": "", "format": "gguf", "family": m.family, "families": [m.family],
                    "parameter_size": m.parameter_size, "quantization_level": m.quantization_level}

        def _listing(self, m: FakeModel) -> dict:
            return {"name": m.name, "model": m.name, "modified_at": _now(), "size": m.size, "digest": m.digest,
                    "details": self._details(m)}

        def _ps(self):
            # server/routes.go PsHandler: one entry per loaded runner, size_vram beside size
            out = []
            for r in state.runners.values():
                m = state.models[r.model]
                out.append({"name": m.name, "model": m.name, "size": m.size, "digest": m.digest,
                            "details": self._details(m), "expires_at": r.expires.isoformat(),
                            "size_vram": int(m.size * m.vram_share), "context_length": r.num_ctx})
            return self._send(200, {"models": out})

        def _show(self, body: dict):
            # server/routes.go ShowHandler + GetModelInfo
            name = body.get("model") or body.get("name")
            if not name:
                return self._send(400, {"error": "model is required"})
            m = state.find(name)
            if m is None:
                return self._send(404, {"error": f"model '{name}' not found"})
            params = []
            for k, v in m.parameters.items():  # "%-*s %#v", one line per value of a list
                for x in (v if isinstance(v, list) else [v]):
                    params.append(f"{k:<30} {go_value(x)}")
            # selectedModelTemplate: the template that really renders the prompt
            template = m.template if m.go_template_used(state.go_template_env) or not m.chat_template \
                else m.chat_template
            resp = {"modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {m.name}\n",
                    "parameters": "\n".join(params), "template": template, "details": self._details(m),
                    "model_info": {"general.architecture": m.family, f"{m.family}.context_length": m.train_ctx,
                                   "general.parameter_count": 268098176},
                    "capabilities": m.capabilities, "modified_at": _now()}
            if m.system:
                resp["system"] = m.system
            return self._send(200, {k: v for k, v in resp.items() if v not in ("", None)})

        def _schedule(self, m: FakeModel, body: dict) -> tuple[Runner, int, bool]:
            # scheduleRunner -> sched.go getRunner/needsReload: a runner is reused only with the same
            # context (capped at the training context: effectiveContext) and the same context-shift setting
            options = body.get("options") or {}
            num_ctx = int(options.get("num_ctx") or m.parameters.get("num_ctx") or DEFAULT_NUM_CTX)
            num_ctx = min(num_ctx, m.train_ctx)
            shift = body.get("shift")
            shift = True if shift is None else bool(shift)  # sched.go resolveContextShift
            r = state.runners.get(m.name)
            if r is None or r.num_ctx != num_ctx or r.shift != shift:
                time.sleep(LOAD_SECONDS)
                r = state.runners[m.name] = Runner(m.name, num_ctx, shift, datetime.now(timezone.utc))
                state.loads.append((m.name, num_ctx, shift))
            r.expires = datetime.now(timezone.utc) + timedelta(minutes=5)
            return r, num_ctx, shift

        @staticmethod
        def _too_long(n: int, num_ctx: int) -> dict:
            # not truncated: llama-server refuses the prompt; Ollama passes its body on as the error
            # (llm/llama_server.go Completion -> statusErrorMessage; routes.go writeChatResponse)
            inner = {"error": {"code": 400, "message": f"request ({n} tokens) exceeds the available "
                                                       f"context size ({num_ctx} tokens), try increasing it",
                               "type": "exceed_context_size_error", "n_prompt_tokens": n, "n_ctx": num_ctx}}
            return {"error": json.dumps(inner)}

        @staticmethod
        def _evaluate(r: Runner, tokens: list[str]) -> tuple[int, int]:
            """(cache_n, prompt_n): llama-server's prompt cache keeps the longest common prefix with
            the slot and evaluates at least one token."""
            cache_n = 0
            for a, b in zip(tokens, r.slot):
                if a != b:
                    break
                cache_n += 1
            cache_n = min(cache_n, len(tokens) - 1)
            return cache_n, len(tokens) - cache_n

        def _generate(self, body: dict):
            # server/routes.go GenerateHandler, the raw path only (a prompt used as it is)
            name = body.get("model", "")
            m = state.find(name)
            if m is None:
                return self._send(404, {"error": f"model '{name}' not found"})
            if not body.get("raw"):
                return self._send(501, {"error": "this fake serves raw /api/generate only"})
            think = body.get("think")
            if think and "thinking" not in m.capabilities:
                return self._send(400, {"error": f'"{name}" does not support thinking'})
            start = time.perf_counter()
            r, num_ctx, shift = self._schedule(m, body)
            loaded = time.perf_counter()
            if not body.get("prompt"):
                return self._send(200, {"model": name, "created_at": _now(), "response": "", "done": True,
                                        "done_reason": "load"})
            tokens = tokenize(body["prompt"])
            truncate = body.get("truncate")
            if (truncate is False or not shift) and len(tokens) >= num_ctx:
                return self._send(400, self._too_long(len(tokens), num_ctx))
            cache_n, prompt_n = self._evaluate(r, tokens)
            gen = tokenize(m.reply(body))[1:]
            num_predict = int((body.get("options") or {}).get("num_predict", -1))
            gen = gen if num_predict < 0 else gen[:num_predict]
            r.slot = tokens + gen
            out = {"model": name, "created_at": _now(), "response": "".join(gen), "done": True,
                   "done_reason": "length" if num_predict >= 0 and len(gen) == num_predict else "stop",
                   "total_duration": int((time.perf_counter() - start) * 1e9), "load_duration": int((loaded - start) * 1e9),
                   "prompt_eval_count": cache_n + prompt_n, "prompt_eval_duration": prompt_n * PROMPT_NS,
                   "eval_count": len(gen), "eval_duration": len(gen) * EVAL_NS}
            return self._send(200, {k: v for k, v in out.items() if v != 0})

        # ------------------------------------------------------------ chat (server/routes.go ChatHandler)
        def _chat(self, body: dict):
            start = time.perf_counter()
            refused = _refuse_logprob_fields(body, state.version)
            if refused:
                return self._send(400, {"error": refused})
            name = body.get("model", "")
            m = state.find(name)
            if m is None:
                return self._send(404, {"error": f"model '{name}' not found"})
            messages = body.get("messages") or []
            keep_alive = body.get("keep_alive")
            if not messages and keep_alive in (0, "0", "0s"):
                state.runners.pop(m.name, None)
                return self._send(200, {"model": name, "created_at": _now(),
                                        "message": {"role": "assistant", "content": ""}, "done": True,
                                        "done_reason": "unload"})
            think = body.get("think")
            if "thinking" in m.capabilities:
                if think is None:  # a model that can think thinks unless told not to
                    think = True
            elif think:
                return self._send(400, {"error": f'"{name}" does not support thinking'})

            r, num_ctx, shift = self._schedule(m, body)
            loaded = time.perf_counter()

            if not messages:  # the model is loaded; nothing else happens and no metrics are sent
                return self._send(200, {"model": name, "created_at": _now(),
                                        "message": {"role": "assistant", "content": ""}, "done": True,
                                        "done_reason": "load"})
            msgs = list(messages)
            if msgs[0].get("role") != "system" and m.system:
                msgs = [{"role": "system", "content": m.system}] + msgs

            truncate = body.get("truncate")
            truncate = True if truncate is None else bool(truncate)

            def render(ms):
                return tokenize(gotemplate.render(m.template, gotemplate.ollama_values(ms, think=body.get("think"))))

            if body.get("_debug_render_only"):
                # the rendered prompt instead of calling the model (api/types.go DebugInfo)
                text = gotemplate.render(m.template, gotemplate.ollama_values(msgs, think=body.get("think")))
                return self._send(200, {"model": name, "created_at": _now(), "message": {"role": "", "content": ""},
                                        "done": False, "_debug_info": {"rendered_template": text}})
            if state.fail_next:  # e.g. the runner died (llm/llama_server.go: "model runner has unexpectedly stopped")
                code, error = state.fail_next.pop(0)
                return self._send(code, {"error": error})
            options = body.get("options") or {}
            tokens = render(msgs)
            if truncate:
                # server/prompt.go chatPrompt: drop the oldest messages (system ones kept) until the
                # prompt fits num_ctx, logged at debug level only
                for i in range(len(msgs)):
                    kept = [x for x in msgs[:i] if x["role"] == "system"] + msgs[i:]
                    tokens = render(kept)
                    if len(tokens) <= num_ctx or i == len(msgs) - 1:
                        break
                if len(tokens) > num_ctx - 1:
                    # llm/llama_server.go completionPromptForRequest: without context shift, an error
                    if not shift:
                        return self._send(400, {"error": "the prompt is longer than the context length currently "
                                                         "available to the model; shorten the prompt, adjust the "
                                                         "context length in settings, or use a model with a longer "
                                                         "context length"})
                    tokens = tokens[:1] + tokens[len(tokens) - (num_ctx - 1 - (num_ctx - 1) // 2):]
            elif len(tokens) >= num_ctx:
                return self._send(400, self._too_long(len(tokens), num_ctx))
            cache_n, prompt_n = self._evaluate(r, tokens)

            content = m.reply(body)
            thinking = m.thinking if think and "thinking" in m.capabilities else ""
            gen = tokenize(thinking + content)[1:]
            num_predict = int(options.get("num_predict", -1))
            limit = len(gen) if num_predict < 0 else num_predict
            if not shift:
                limit = min(limit, num_ctx - len(tokens))
            reason = "stop"
            if len(gen) > limit:
                gen, reason = gen[:limit], "length"
                content = "".join(gen)[len(thinking):]
            r.slot = tokens + gen

            if state.abort_next:
                # llm/llama_server.go: the token-repeat guard returns without a final response; the
                # non-streaming answer is the last chunk (routes.go writeChatResponse): done false,
                # no done_reason, no metrics
                state.abort_next -= 1
                return self._send(200, {"model": name, "created_at": _now(),
                                        "message": {"role": "assistant", "content": content[: len(content) // 2]},
                                        "done": False})

            message = {"role": "assistant", "content": content}
            if thinking:
                message["thinking"] = thinking
            logprobs = _logprobs(m, body, gen, state.version)
            # api/types.go Metrics: every field omitempty, so a zero is not sent at all;
            # prompt_eval_count = cache_n + prompt_n, prompt_eval_duration covers prompt_n only
            # (llm/llama_server.go promptEvalCount and Completion)
            final = {"model": name, "created_at": _now(), "message": message, "done": True, "done_reason": reason,
                     "total_duration": int((time.perf_counter() - start) * 1e9) + prompt_n * PROMPT_NS
                     + len(gen) * EVAL_NS,
                     "load_duration": int((loaded - start) * 1e9),
                     "prompt_eval_count": cache_n + prompt_n, "prompt_eval_duration": prompt_n * PROMPT_NS,
                     "eval_count": len(gen), "eval_duration": len(gen) * EVAL_NS}
            final = {k: v for k, v in final.items() if v != 0}
            if body.get("stream") is False:
                # routes.go writeChatResponse: the non-streamed answer gathers every chunk's logprobs
                return self._send(200, {**final, **({"logprobs": logprobs} if logprobs else {})})
            # one ChatResponse per piece the runner returns (a token), thinking first, then the last one
            # with done, done_reason and the metrics and an empty message (routes.go ChatHandler)
            lines, seen = [], 0
            for i, tok in enumerate(gen):
                part = {"role": "assistant", "content": ""}
                if seen < len(thinking):
                    part["thinking"] = tok
                else:
                    part["content"] = tok
                seen += len(tok)
                lines.append({"model": name, "created_at": _now(), "message": part, "done": False,
                              **({"logprobs": logprobs[i:i + 1]} if logprobs else {})})
            return self._stream_chunked(lines + [{**final, "message": {"role": "assistant", "content": ""}}],
                                        state.token_delay_s)

        # ------------------------------------------------------------ planted faults (module docstring)
        def _fault(self, fault: str, body: dict):
            if fault == "500":  # routes.go: c.JSON(status, gin.H{"error": ...})
                return self._send(500, {"error": "model runner has unexpectedly stopped (planted)"})
            if fault == "400":
                return self._send(400, {"error": "invalid options (planted)"})
            if fault == "garbage":
                return self._send(200, b"<html><body><h1>502 Bad Gateway</h1> nginx</body></html>",
                                  "text/html")
            if fault == "wrong_shape":
                return self._send(200, {"model": body.get("model"), "created_at": _now(), "done": True})
            if fault == "timeout":
                time.sleep(state.hang_s)
                return self._send(500, {"error": "too late"})
            if fault == "cut":
                if body.get("stream") is False:
                    whole = json.dumps({"model": body.get("model"), "created_at": _now(),
                                        "message": {"role": "assistant", "content": VALID}, "done": True,
                                        "done_reason": "stop"}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(whole)))
                    self.end_headers()
                    self.wfile.write(whole[: len(whole) // 2])
                    self.close_connection = True
                    return None
                lines = [{"model": body.get("model"), "created_at": _now(),
                          "message": {"role": "assistant", "content": t}, "done": False} for t in tokenize(VALID)[1:]]
                return self._stream_chunked(lines, cut_after=len(lines) // 2)
            raise ValueError(f"unknown fault {fault}")

        # ------------------------------------------------------------ blobs (routes.go Head/CreateBlobHandler)
        def _digest(self) -> str | None:
            d = self.path.rsplit("/", 1)[-1]
            # manifest/paths.go BlobsPath: only sha256:<64 hex> (or sha256-)
            return d.replace("sha256-", "sha256:") if re.fullmatch(r"sha256[:-][0-9a-fA-F]{64}", d) else None

        def _head_blob(self):
            d = self._digest()
            if d is None:
                return self._send(400, {"error": "invalid digest format"})
            if d in state.blobs:
                return self._send(200)
            return self._send(404, {"error": f'blob "{d}" not found'})

        def _post_blob(self):
            d = self._digest()
            n = int(self.headers.get("Content-Length") or 0)
            if d is None:
                self._drain(n)
                return self._send(400, {"error": "invalid digest format"})
            if d in state.blobs:  # already there: 200, the body is not read (drained here for the socket)
                self._drain(n)
                return self._send(200)
            h, path = hashlib.sha256(), Path(state._dir.name) / d.replace(":", "-")
            with open(path, "wb") as f:
                left = n
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    h.update(chunk)
                    f.write(chunk)
                    left -= len(chunk)
            got = f"sha256:{h.hexdigest()}"
            if got != d:  # manifest.NewLayer computes the digest while writing; a mismatch is 400
                path.unlink()
                return self._send(400, {"error": f'digest mismatch, expected "{d}", got "{got}"'})
            state.blobs[d] = path
            state.uploads.append(d)
            return self._send(201)

        def _drain(self, n: int):
            while n > 0:
                chunk = self.rfile.read(min(n, 1 << 20))
                if not chunk:
                    break
                n -= len(chunk)

        # ------------------------------------------------------------ create (server/create.go CreateHandler)
        def _create(self, body: dict):
            name = body.get("model") or body.get("name") or ""
            files = body.get("files")
            for path, digest in (files or {}).items():
                if path.startswith("/") or ".." in path.split("/"):
                    return self._send(400, {"error": "file path must be relative"})
                if not digest:
                    return self._send(400, {"error": "invalid digest format"})
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(:[A-Za-z0-9._-]+)?", name):
                return self._send(400, {"error": "invalid model name"})
            if not files and not body.get("from"):
                return self._send(400, {"error": "neither 'from' or 'files' was specified"})
            lines: list[dict] = []
            stream = body.get("stream") is not False

            def fail(error: str, status: int = 500):
                # streamResponse: once a status line went out, the error is a line in a 200 answer;
                # waitForStream (stream: false) answers the error's status
                if stream and lines:
                    return self._stream(lines + [{"error": error}])
                return self._send(status, {"error": error})

            info = None
            for path, digest in sorted(files.items()):
                lines.append({"status": "parsing GGUF"})  # ggufLayersWithMediaType
                if digest not in state.blobs:
                    blob = Path(state._dir.name) / "blobs" / digest.replace(":", "-")
                    return fail(f"open {blob}: no such file or directory")
                from formats import gguf_meta

                try:
                    info = gguf_meta.read(state.blobs[digest])
                except gguf_meta.GGUFError:
                    return fail("supplied file was not in GGUF format", 400)
                lines.append({"status": f"using existing layer {digest}"})
            template = body.get("template") or ""
            if template:
                try:  # setTemplate parses it: errBadTemplate, status 400
                    gotemplate.parse(template)
                except gotemplate.GoTemplateError as exc:
                    return fail(f"template error: {exc}", 400)
            for kind, value in (("template", template), ("system", body.get("system")),
                                ("params", body.get("parameters"))):
                if value:
                    d = "sha256:" + hashlib.sha256(json.dumps(value).encode()).hexdigest()
                    lines.append({"status": f"creating new layer {d}"})
            lines.append({"status": "writing manifest"})
            lines.append({"status": "success"})
            arch = info.architecture if info else "llama"
            ft = info.metadata.get("general.file_type") if info else None
            params = dict(body.get("parameters") or {})
            m = FakeModel(name, template=template or chat.FAMILIES["chatml"].go, parameters=params,
                          system=body.get("system") or "", family=arch,
                          parameter_size=human_number(info.n_parameters) if info else "",
                          quantization_level=FILE_TYPES.get(ft, "unknown") if ft is not None else "unknown",
                          train_ctx=int((info.metadata.get(f"{arch}.context_length") if info else 0) or 2048),
                          chat_template=info.chat_template if info else None)
            state.add(m)
            if not stream:
                return self._send(200, lines[-1])
            return self._stream(lines)

    return Handler


@pytest.fixture()
def ollama():
    """A started FakeOllama (its ``url`` is what OLLAMA_HOST should say)."""
    from tests.conftest import loopback_server

    state = FakeOllama()
    with loopback_server(make_handler(state)) as url:
        state.url = url
        yield state
    state.close()
    assert not state.errors, f"the fake Ollama failed while answering: {state.errors[:3]}"
