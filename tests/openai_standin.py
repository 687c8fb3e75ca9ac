"""A loopback stand-in for an OpenAI-compatible chat server (OpenAI's Chat Completions API as llama.cpp's
server and vLLM speak it), with faults a test plants: for the call policy and the streamed timings.

- ``POST /v1/chat/completions`` answers a chat completion ({"choices": [{"message": ...}], "usage"}),
  or with ``stream: true`` server-sent events as OpenAI sends them: a first chunk whose delta names only
  the role (``content: ""``), one chunk per token, a chunk with ``finish_reason``, with
  ``stream_options.include_usage`` a last chunk with ``usage`` and no choices, then ``data: [DONE]``.
  ``role_delay_s`` and ``token_delay_s`` are slept before the first content chunk and between tokens.
- ``GET /v1/models`` lists the model.
- Faults: ``fault(call) -> name or None``, where ``call`` is the index of the distinct request body (a
  retry of a call sends the same body, so it meets the same fault) and the body. Names: ``500`` (an
  error answer), ``garbage`` (an HTML page with status 200), ``timeout`` (no answer for ``hang_s``),
  ``cut`` (the connection closed halfway through the body), ``wrong_shape`` (JSON without choices),
  ``400`` (a refusal), ``huge`` (a valid answer of 3 MB). :func:`one_in_three` fails every third distinct call with 500, garbage, timeout
  and cut in turn.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Callable

from tests.conftest import send

VALID = json.dumps({"reasoning": "Orders rose.", "sentiment": 0.6, "confidence": 0.8})
FAULTS = ("500", "garbage", "timeout", "cut")
_PIECE = re.compile(r"\w+|\s+|[^\w\s]")


def one_in_three(call: int, body: dict) -> str | None:
    """Every third distinct call fails: 500, garbage, timeout, cut, in turn."""
    return FAULTS[(call // 3) % len(FAULTS)] if call % 3 == 2 else None


@dataclass
class StandIn:
    model: str = "standin"
    reply: Callable[[dict], str] = lambda body: VALID
    fault: Callable[[int, dict], str | None] | None = None
    hang_s: float = 3.0
    role_delay_s: float = 0.0
    token_delay_s: float = 0.0
    bodies: list[dict] = field(default_factory=list)          # every chat request, retries included
    calls: dict[str, int] = field(default_factory=dict)       # distinct body -> its index
    faults_met: list[tuple[int, str]] = field(default_factory=list)  # (call, fault) per request that met one
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def index(self, body: dict) -> int:
        key = json.dumps(body, sort_keys=True)
        with self.lock:
            self.bodies.append(body)
            return self.calls.setdefault(key, len(self.calls))


def make_handler(state: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def handle(self):
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up on a hanging answer
                pass

        def do_GET(self):  # noqa: N802
            if self.path.rstrip("/").endswith("/models"):
                return send(self, 200, "application/json", json.dumps({"object": "list", "data": [
                    {"id": state.model, "object": "model", "owned_by": "standin"}]}))
            return send(self, 404, "application/json", json.dumps({"error": {"message": "not found"}}))

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            call = state.index(body)
            fault = state.fault(call, body) if state.fault else None
            if fault:
                with state.lock:
                    state.faults_met.append((call, fault))
                return self._fault(fault)
            text = state.reply(body)
            pieces = _PIECE.findall(text)
            max_tokens = int(body.get("max_tokens") or 10**6)
            finish = "length" if len(pieces) > max_tokens else "stop"
            pieces = pieces[:max_tokens]
            usage = {"prompt_tokens": sum(len(m.get("content", "").split()) for m in body.get("messages", [])),
                     "completion_tokens": len(pieces)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            head = {"id": f"chatcmpl-{call}", "created": int(time.time()), "model": state.model}
            if not body.get("stream"):
                return send(self, 200, "application/json", json.dumps({
                    **head, "object": "chat.completion", "usage": usage,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                                 "finish_reason": finish}]}))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            chunk = {**head, "object": "chat.completion.chunk"}

            def event(obj) -> None:
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                self.wfile.flush()

            event({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "finish_reason": None}]})
            time.sleep(state.role_delay_s)
            for k, piece in enumerate(pieces):
                if k:
                    time.sleep(state.token_delay_s)
                event({**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            if (body.get("stream_options") or {}).get("include_usage"):
                event({**chunk, "choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")

        def _fault(self, fault: str) -> None:
            if fault == "500":
                return send(self, 500, "application/json",
                            json.dumps({"error": {"message": "the stand-in failed (planted)", "type": "server_error"}}))
            if fault == "400":
                return send(self, 400, "application/json",
                            json.dumps({"error": {"message": "'temperature' is invalid (planted)",
                                                  "type": "invalid_request_error"}}))
            if fault == "garbage":
                return send(self, 200, "text/html", "<html><body><h1>502 Bad Gateway</h1> nginx</body></html>")
            if fault == "wrong_shape":
                return send(self, 200, "application/json", json.dumps({"id": "x", "object": "chat.completion"}))
            if fault == "huge":  # a valid envelope around 3 MB of text
                return send(self, 200, "application/json", json.dumps({"choices": [{"message": {
                    "role": "assistant", "content": "x" * 3_000_000}, "finish_reason": "stop"}]}))
            if fault == "timeout":
                time.sleep(state.hang_s)
                return send(self, 200, "application/json", json.dumps({"late": True}))
            if fault == "cut":
                whole = json.dumps({"choices": [{"message": {"role": "assistant", "content": VALID}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(whole)))
                self.end_headers()
                self.wfile.write(whole[: len(whole) // 2])
                self.wfile.flush()
                self.close_connection = True
                return None
            raise ValueError(f"unknown fault {fault}")

    return Handler
