"""The call policy of the server backends (OpenAI-compatible, Ollama): one transport that sends a
request, times a streamed answer line by line, and decides what a fault means. What is asked (a
chat, a label scoring) stays in the backends: they build the body and read the answer through
``Transport.call(parse=...)``, so a new kind of request reuses the policy as it is.

The policy, the same for every server backend:

- Every attempt has a wall-clock deadline (``timeout_s``, enforced by ``core.netsafe``'s watchdog,
  so a server that trickles bytes is abandoned on time) and a cap on the answer's size.
- A fault a retry can help with is retried ``retries`` more times, after a backoff of 1, 2, 4, 8 s
  (or the server's ``Retry-After``, up to 30 s): a 5xx, 408, 425 or 429 answer, a timeout, a cut
  connection, no connection at all, and a 2xx body that is not JSON or not of the expected shape (a
  restarting server or a proxy in between may recover). Never a 4xx: the same request would be
  refused again; the backend reads it (a prompt too long, a schema form the server does not take, a
  missing model) or it is a failed call at once. An oversized body is not retried either.
- After the last attempt: when the last one found nothing listening, the endpoint is down
  (:class:`BackendUnavailable`: its call goes to another endpoint, or the run stops, resumable);
  anything else is :class:`CallFailed` with its kind, which the runner stores as a failed call before
  going on. So a server that never answers is given up on after (retries + 1) x timeout_s, plus the
  backoffs between attempts.
- At load (``retry_bad=False``) a body that is not JSON or of the wrong shape is a wrong address, said
  at once with the backend's hint.

Streamed answers (``stream=True``): each line of the body is stamped with the time it arrived
(``Exchange.lines``), and :func:`stream_timings` gives the time to the first content token, the gaps
between content chunks and the end-to-end time of the answering attempt (:class:`HTTPReply`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Callable, TypeVar

from pydantic import Field

from benchmark.backends.base import BackendUnavailable, CallFailed, Reply
from core import netsafe
from core.errors import ShootoutError

BACKOFF_S = 1.0          # before the first retry; doubled for each later one
BACKOFF_MAX_S = 8.0
RETRY_AFTER_MAX_S = 30.0  # the most a server's Retry-After is waited
RETRY_STATUS = frozenset({408, 425, 429})  # besides every 5xx
T = TypeVar("T")


def answer_cap(max_tokens: int) -> int:
    """The largest chat answer read, in bytes: 1 MB plus 2 kB per token asked for (a streamed token
    costs ~200 bytes of envelope), so that a runaway server cannot fill memory; a larger answer is a
    failed call of kind ``too_large``."""
    return 1_000_000 + 2_000 * max(1, int(max_tokens))


class BadAnswer(Exception):
    """Raised by a ``parse`` function: a 2xx answer that is not JSON (``not_json``) or not of the
    expected shape (``wrong_shape``); ``detail`` says what came instead."""

    def __init__(self, kind: str, detail: str, hint: str | None = None):
        super().__init__(detail)
        self.kind, self.detail, self.hint = kind, detail, hint


def shown(body: bytes, n: int = 200) -> str:
    """A body as one short line, for messages."""
    return " ".join(body.decode("utf-8", "replace").split())[:n] or "an empty body"


class HTTPReply(Reply):
    """A reply from a server: how many attempts it took, and for a streamed call its timings."""

    attempts: int = Field(1, description="requests sent for this call (1: answered at once)")
    ttft_seconds: float | None = Field(None, description="streamed: request sent to the first chunk with content "
                                                         "(a chunk that only names the role does not count)")
    itl_seconds: float | None = Field(None, description="streamed: mean gap between consecutive content chunks")
    itl_gaps: list[float] = Field(default_factory=list, description="streamed: every gap between content chunks (s)")
    e2e_seconds: float | None = Field(None, description="streamed: request sent to the answer's last byte")


def stream_timings(t0: float, content_times: list[float], t_end: float) -> dict[str, Any]:
    """The streamed timings of one answer: ``t0`` when its request was sent, ``content_times`` when
    each chunk with content arrived, ``t_end`` when the last byte did (perf_counter seconds)."""
    gaps = [b - a for a, b in zip(content_times, content_times[1:])]
    return {"ttft_seconds": content_times[0] - t0 if content_times else None,
            "itl_seconds": sum(gaps) / len(gaps) if gaps else None,
            "itl_gaps": gaps, "e2e_seconds": t_end - t0}


class _LineClock:
    """Collects a body's lines with the time each one was complete (``netsafe.fetch``'s on_chunk)."""

    def __init__(self):
        self.lines: list[tuple[float, bytes]] = []
        self._rest = b""

    def __call__(self, chunk: bytes) -> None:
        t = time.perf_counter()
        *complete, self._rest = (self._rest + chunk).split(b"\n")
        self.lines.extend((t, line) for line in complete)

    def finish(self, t: float) -> list[tuple[float, bytes]]:
        if self._rest.strip():
            self.lines.append((t, self._rest))
        self._rest = b""
        return self.lines


@dataclass
class Exchange:
    """One answered request (the attempt that got an answer)."""

    status: int
    reason: str
    headers: Message = field(repr=False)
    body: bytes = field(repr=False)
    t0: float                      # perf_counter when this attempt was sent
    t_end: float                   # when its last byte arrived
    attempts: int                  # requests sent, this one included
    lines: list[tuple[float, bytes]] = field(default_factory=list, repr=False)  # streamed: (arrival, line)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; BadAnswer ``not_json`` quoting what came instead."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BadAnswer("not_json", f"something that is not JSON: {shown(self.body)}") from None

    def json_object(self) -> dict:
        data = self.json()
        if not isinstance(data, dict):
            raise BadAnswer("wrong_shape", f"a JSON {type(data).__name__}, not an object: {shown(self.body)}")
        return data

    def detail(self) -> str:
        """The server's error text of an error answer, JSON or not."""
        text = self.body.decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            return " ".join(text.split())[:300]
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            return str(err.get("message") or text)[:300]
        if isinstance(err, str):
            return err[:300]
        return " ".join(text.split())[:300]

    def error_object(self) -> dict:
        """The error object of an OpenAI-style error answer ({"error": {...}}), or {}."""
        try:
            data = json.loads(self.body.decode("utf-8", "replace"))
        except ValueError:
            return {}
        err = data.get("error") if isinstance(data, dict) else None
        return err if isinstance(err, dict) else data if isinstance(data, dict) else {}

    def said(self) -> str:
        """The status line, e.g. "HTTP 503 Service Unavailable"."""
        return f"HTTP {self.status} {self.reason}".rstrip()

    def retry_after(self) -> float | None:
        value = self.headers.get("Retry-After") if self.headers is not None else None
        try:
            return max(0.0, float(value)) if value is not None else None
        except ValueError:
            return None


class Transport:
    """Requests to one server under the call policy. ``model`` and ``server`` ("the server",
    "Ollama") go into the messages; ``down_hint`` says what to do when nothing answers."""

    def __init__(self, base_url: str, *, model: str, server: str, timeout_s: float, retries: int,
                 backoff_s: float = BACKOFF_S, headers: dict[str, str] | None = None,
                 down_hint: str = "start it again, then resume with `shootout run --run-id ...`"):
        self.base_url = base_url.rstrip("/")
        self.model, self.server = model, server
        self.timeout_s, self.retries, self.backoff_s = float(timeout_s), int(retries), float(backoff_s)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        self.down_hint = down_hint

    @property
    def where(self) -> str:
        return f"{self.server} at {self.base_url}"

    def _send(self, method: str, path: str, data: bytes | None, stream: bool, max_bytes: int, attempt: int,
              timeout_s: float) -> Exchange:
        policy = netsafe.Policy(allow_private=True, deadline_s=timeout_s, max_bytes=max_bytes,
                                deadline_option="options.timeout_s", bytes_option="a smaller num_predict")
        clock = _LineClock() if stream else None
        t0 = time.perf_counter()
        resp = netsafe.fetch(self.base_url + path, policy, method=method, body=data, headers=self.headers,
                             on_chunk=clock)
        t_end = time.perf_counter()
        return Exchange(resp.status, resp.reason, resp.headers, resp.body, t0, t_end, attempt,
                        clock.finish(t_end) if clock else [])

    def call(self, method: str, path: str, body: Any = None, *, parse: Callable[[Exchange], T],
             stream: bool = False, max_bytes: int = 1_000_000, retry_bad: bool = True,
             hint: str | None = None, reads: Callable[[Exchange], bool] | None = None,
             timeout_s: float | None = None) -> T:
        """``parse(exchange)`` of the answer to one request, under the policy above. ``parse`` sees
        every answer that is not retried for its status (2xx and 4xx, and those ``reads`` picks: a 5xx
        that says what is wrong, such as a prompt too long); it raises BadAnswer for a 2xx body it
        cannot read, and whatever the backend makes of a 4xx (``refused`` builds the usual failed
        call). ``hint``: what to check when a body is unreadable at load (``retry_bad=False``).
        ``timeout_s``: this request's deadline when it is not the transport's (a model load)."""
        what = f"{method} {path}"
        deadline = self.timeout_s if timeout_s is None else float(timeout_s)
        data = json.dumps(body).encode() if body is not None else None
        attempts = self.retries + 1
        kind = said = ""
        for attempt in range(1, attempts + 1):
            delay = min(self.backoff_s * 2 ** (attempt - 1), BACKOFF_MAX_S)
            try:
                ex = self._send(method, path, data, stream, max_bytes, attempt, deadline)
            except netsafe.Refused as exc:
                raise ShootoutError(f"model '{self.model}': {exc.message}", "the address must be an http(s) URL") \
                    from None
            except netsafe.TooLarge as exc:
                raise CallFailed(f"model '{self.model}': {self.where} answered {what} with more than the "
                                 f"{max_bytes:,} bytes allowed ({exc.reason}); not retried", "too_large", attempt,
                                 "a smaller num_predict, or check the server") from None
            except netsafe.Unreachable as exc:
                kind, said = "unreachable", f"stopped answering {what}: {exc.reason}"
            except netsafe.DeadlineExceeded:
                kind, said = "timeout", f"gave no complete answer to {what} within {deadline:g} s"
            except netsafe.FetchError as exc:
                kind, said = "cut", f"broke off {what}: {exc.reason}"
            else:
                if (ex.status >= 500 or ex.status in RETRY_STATUS) and not (reads and reads(ex)):
                    kind = f"http_{ex.status}"
                    said = f"answered {ex.said()} to {what}{_colon(ex.detail())}"
                    after = ex.retry_after()
                    if after is not None:
                        delay = min(max(delay, after), RETRY_AFTER_MAX_S)
                else:
                    try:
                        return parse(ex)
                    except BadAnswer as exc:
                        if not retry_bad:
                            raise ShootoutError(f"model '{self.model}': {self.where} answered {what} with "
                                                f"{exc.detail}", exc.hint or hint) from None
                        kind, said = exc.kind, f"answered {what} with {exc.detail}"
            if attempt < attempts:
                time.sleep(delay)
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        message = f"model '{self.model}': {self.where} {said}{tries}"
        if kind == "unreachable":
            raise BackendUnavailable(message, self.down_hint)
        slow = (f"if the server is only slow, raise options.timeout_s (now {self.timeout_s:g}) or options.retries"
                if kind == "timeout" else None)
        raise CallFailed(message, kind, attempts, slow)

    def refused(self, ex: Exchange, what: str) -> CallFailed:
        """The failed call of a 4xx answer the backend has no other reading for (not retried)."""
        return CallFailed(f"model '{self.model}': {self.where} answered {ex.said()} to {what}{_colon(ex.detail())} "
                          "(not retried)", f"http_{ex.status}", ex.attempts)


def _colon(detail: str) -> str:
    return f": {detail}" if detail else ""
