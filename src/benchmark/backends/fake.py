"""A scripted fake backend (``backend: fake``), after inspect_ai's mockllm: no model, in process,
deterministic, so that the runner, the store, the report and the CLI can be tested in seconds.

What it answers, per call, the first that applies:

1. a planted fault for the item (``options.faults``: item id -> ``not_json``, ``aborted``,
   ``too_long``, ``error``, ``unavailable`` or ``transient``), or the server going down
   (``options.down_after``: it answers that many calls, then every later one is unavailable);
2. ``script(call)``, a callable given in code (:func:`scripted`), when it returns a text;
3. ``options.by_item``: item id -> the reply text;
4. ``options.replies``: reply texts taken in turn, call by call (the warm-up call included);
5. the gold: the reply the task would count as right (label or value of the item), wrong for a
   share ``1 - accuracy`` of the calls, and not JSON for a share ``invalid_rate`` of them. Which
   calls is drawn from the call's seed and the model's name: the same every run, different per
   iteration and per model. Items without gold get a label or value drawn the same way.

The item of a call is found from its messages (the task's messages for every item are computed
once). Tokens are words and punctuation marks; the prompt shares its longest common prefix with
the previous one (the cache, as llama.cpp keeps it); a prompt of ``num_ctx`` tokens or more is
refused (``PromptTooLong``), and a reply is cut at ``max_tokens`` (finish_reason "length").
Timings come from ``seconds_per_prompt_token`` (evaluated tokens) and ``seconds_per_token``
(generated), times a per-call factor of ``jitter`` (log-normal, drawn from the call: the same every
run) and, once the machine has answered ``slow_after`` calls of all its fake models together (the
warm-ups included), ``slow_factor``: a machine that slows down halfway through a run. They are
reported in the Reply and, unless ``sleep: false``, also taken: on the wall clock, or on a
:class:`FakeMachine`'s virtual clock (``scripted(machine=...)``; the runner times calls with
``Runner(clock=machine.now)``), so a run's timings are exact and take no time. Log-probability mode
scores the label the reply would name at ``label_confidence`` and spreads the rest evenly.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, get_origin

from pydantic import Field

from benchmark.backends.base import (BackendOptions, BackendSpec, BackendUnavailable, Capabilities, LabelScores,
                                     PromptTooLong, Reply)
from core.errors import ShootoutError

FAULTS = ("not_json", "aborted", "too_long", "error", "unavailable", "transient")
NOT_JSON = "Sure! The answer is probably positive, I think."
_TOKEN = re.compile(r"\w+|[^\w\s]")
_FIRED: set[tuple] = set()  # (model, item) of the transient faults already raised in this process
_FIRED_LOCK = threading.Lock()


class FakeOptions(BackendOptions):
    replies: list[str] | None = Field(None, description="reply texts, taken in turn call by call")
    by_item: dict[str, str] | None = Field(None, description="item id -> its reply text")
    accuracy: float = Field(1.0, ge=0, le=1, description="gold replies: the share of calls answered right")
    invalid_rate: float = Field(0.0, ge=0, le=1, description="gold replies: the share of calls answered with text "
                                                             "that is not JSON")
    label_confidence: float = Field(0.9, gt=0, lt=1, description="confidence given with a reply, and the "
                                                                  "probability of the named label in logprob mode")
    faults: dict[str, Literal[FAULTS]] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="item id -> a planted failure: not_json, aborted (no final answer), "
                                          "too_long (PromptTooLong), error (the server refuses), unavailable (the "
                                          "server stops answering), transient (unavailable once per item and process)")
    down_after: int | dict[str, int] | None = Field(
        None, description="answer this many calls (the warm-up included), then stop answering, as a killed server; "
                          "one count for every endpoint, or endpoint -> count")
    seconds_per_prompt_token: float = Field(0.0, ge=0, description="reported (and taken) per evaluated prompt token")
    seconds_per_token: float = Field(0.0, ge=0, description="reported (and taken) per generated token")
    load_seconds: float = Field(0.0, ge=0, description="what loading takes")
    sleep: bool = Field(True, description="take the time the timings report (false: only report it)")
    jitter: float = Field(0.0, ge=0, description="log-scale sd of a per-call factor on the timings, drawn from the "
                                                  "call (model, seed, item, call count): the same every run")
    slow_after: int | None = Field(None, ge=0, description="the machine slows down after this many calls of all its "
                                                           "fake models together (warm-ups included)")
    slow_factor: float = Field(1.0, gt=0, description="what the timings are multiplied by once the machine slowed "
                                                      "down (slow_after)")
    model_bytes: int | None = Field(None, ge=0, description="the model size to report in the engine facts")
    memory_mb: float | None = Field(None, ge=0, description="the memory to report the model took")


@dataclass(frozen=True)
class FakeCall:
    """What a script sees of one call."""

    messages: list[dict[str, str]]
    item: Any | None       # the task's Item, when the messages are those of one (None: e.g. a foreign prompt)
    seed: int
    index: int             # calls made on this backend before this one
    endpoint: str
    schema: dict | None = None
    grammar: str | None = None
    machine_index: int = 0  # calls the machine answered before this one (all its fake models together)


class FakeMachine:
    """What the fake models of a run share: the count of calls the machine answered (for ``slow_after``)
    and, when ``virtual``, a clock that the timings advance instead of sleeping (``now``: its seconds)."""

    def __init__(self, virtual: bool = False):
        self.virtual = virtual
        self.calls = 0
        self._seconds = 0.0
        self._lock = threading.Lock()

    def tick(self) -> int:
        with self._lock:
            self.calls += 1
            return self.calls - 1

    def take(self, seconds: float) -> None:
        if self.virtual:
            with self._lock:
                self._seconds += seconds
        elif seconds > 0:
            time.sleep(seconds)

    def now(self) -> float:
        return self._seconds if self.virtual else time.perf_counter()


MACHINE = FakeMachine()  # the machine of fake models built without one (a config run through the CLI)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _render(messages: list[dict[str, str]]) -> str:
    return "".join(f"<{m['role']}>\n{m['content']}\n" for m in messages) + "<assistant>\n"


class FakeBackend:
    def __init__(self, entry, cfg, endpoint: str | None = None, script: Callable[[FakeCall], str | None] | None = None,
                 machine: FakeMachine | None = None):
        self.entry, self.cfg, self.script = entry, cfg, script
        self.machine = machine or MACHINE
        self.name = entry.name
        self.options: FakeOptions = entry.options
        self.endpoint = endpoint or "fake"
        self.n_ctx = cfg.setting(entry, "num_ctx")
        self.calls = 0
        self.task = None
        self._by_text: dict[str, Any] = {}
        self._previous: list[str] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ protocol
    def load(self) -> float:
        o = self.options
        if self._down_after() == 0:
            raise BackendUnavailable(f"model '{self.name}': the fake server at {self.endpoint} does not answer")
        self.task = self.cfg.task_object()  # the task answers what gold is (the config builds it)
        items = list(self.task.load_items(self.cfg, warn=lambda _: None)) + [self.task.warmup_item()]
        for item in items:
            for variant in self.task.variants:
                msgs = self.task.messages(item, self.entry.prompt_style, variant, self.entry.system_prompt)
                self._by_text.setdefault(msgs[-1]["content"], item)
        if o.sleep and o.load_seconds:
            self.machine.take(o.load_seconds)
        return o.load_seconds

    def engine_info(self) -> dict[str, Any]:
        return {"engine": "fake (scripted, no model)", "endpoint": self.endpoint, "n_ctx": self.n_ctx,
                "model_bytes": self.options.model_bytes, "script": "callable" if self.script else None,
                "options": self.options.model_dump(exclude_defaults=True)}

    def memory_facts(self) -> dict[str, float]:
        return {"rss_mb": self.options.memory_mb} if self.options.memory_mb is not None else {}

    def close(self) -> None:
        pass

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any] | None = None,
             temperature: float = 0.0, seed: int = 0, max_tokens: int = 256, grammar: str | None = None) -> Reply:
        t0 = time.perf_counter()
        call, prompt, cached = self._begin(messages, seed, schema, grammar)
        fault = self._fault(call)
        if fault == "aborted":
            return self._reply("", "aborted", prompt, cached, t0, call=call)
        text = NOT_JSON if fault == "not_json" else self._text(call)
        out = tokens(text)
        finish = "stop"
        if len(out) > max_tokens:
            ends = [m.end() for m in _TOKEN.finditer(text)]
            text, out, finish = text[:ends[max_tokens - 1]] if max_tokens else "", out[:max_tokens], "length"
        with self._lock:
            self._previous = prompt + out
        return self._reply(text, finish, prompt, cached, t0, len(out), call=call)

    def score_choices(self, messages: list[dict[str, str]], choices) -> LabelScores:
        t0 = time.perf_counter()
        call, prompt, cached = self._begin(messages, 0, None, None)  # scoring samples nothing: no seed
        self._fault(call)
        labels = list(choices.continuations)
        named = self._label_of(self._text(call))
        conf = self.options.label_confidence
        if named in labels and len(labels) > 1:
            probs = {k: conf if k == named else (1 - conf) / (len(labels) - 1) for k in labels}
        else:
            probs = {k: 1 / len(labels) for k in labels}
        best = max(labels, key=lambda k: (probs[k], -labels.index(k)))
        text = choices.prefix + choices.continuations[best]
        generated = sum(len(tokens(c)) for c in choices.continuations.values())
        reply = self._reply(text, "stop", prompt, cached, t0, generated, call=call)
        return LabelScores(logprobs={k: math.log(p) for k, p in probs.items()}, probs=probs, reply=reply)

    # ------------------------------------------------------------------ the script
    def _begin(self, messages, seed, schema, grammar) -> tuple[FakeCall, list[str], int]:
        if self.task is None:
            raise RuntimeError("load() the backend before chat()")
        with self._lock:
            index = self.calls
            self.calls += 1
            previous = self._previous
        down = self._down_after()
        if down is not None and index >= down:
            raise BackendUnavailable(f"model '{self.name}': the fake server at {self.endpoint} stopped answering "
                                     f"after {down} calls", "resume with `shootout run --run-id ...`")
        prompt = tokens(_render(messages))
        if len(prompt) >= self.n_ctx:
            raise PromptTooLong(self.name, len(prompt), self.n_ctx)
        cached = 0
        for a, b in zip(prompt, previous):
            if a != b:
                break
            cached += 1
        cached = min(cached, len(prompt) - 1)
        item = self._by_text.get(messages[-1]["content"]) if messages else None
        return FakeCall(messages, item, seed, index, self.endpoint, schema, grammar, self.machine.tick()), prompt, cached

    def _down_after(self) -> int | None:
        down = self.options.down_after
        return down.get(self.endpoint) if isinstance(down, dict) else down

    def _fault(self, call: FakeCall) -> str | None:
        fault = self.options.faults.get(call.item.id) if call.item is not None else None
        where = f"model '{self.name}', item {call.item.id if call.item else '?'}"
        if fault == "too_long":
            raise PromptTooLong(self.name, self.n_ctx + 1, self.n_ctx)
        if fault == "error":
            raise ShootoutError(f"{where}: the fake server at {self.endpoint} answered 500 (a planted error)")
        if fault == "transient":
            key = (self.name, call.item.id)
            with _FIRED_LOCK:
                fresh = key not in _FIRED
                _FIRED.add(key)
            if fresh:
                raise BackendUnavailable(f"{where}: the fake server at {self.endpoint} dropped the connection "
                                         "(a planted transient fault)")
        if fault == "unavailable":
            raise BackendUnavailable(f"{where}: the fake server at {self.endpoint} stopped answering")
        return fault

    def _text(self, call: FakeCall) -> str:
        o = self.options
        if self.script is not None:
            text = self.script(call)
            if text is not None:
                return text
        if o.by_item and call.item is not None and call.item.id in o.by_item:
            return o.by_item[call.item.id]
        if o.replies:
            return o.replies[call.index % len(o.replies)]
        rng = random.Random(f"{self.name}:{call.seed}:{call.item.id if call.item else ''}")
        if rng.random() < o.invalid_rate:
            return NOT_JSON
        return self._gold_reply(call.item, rng)

    def _gold_reply(self, item, rng: random.Random) -> str:
        """The reply that names the item's gold (or, for a share 1 - accuracy, something else)."""
        task, o = self.task, self.options
        right = rng.random() < o.accuracy
        fields: dict[str, Any] = {}
        value_set = False
        for name, f in task.reply_model.model_fields.items():
            ann = f.annotation
            if name == "confidence":
                fields[name] = o.label_confidence
            elif get_origin(ann) is Literal or name == "label":
                labels = list(getattr(ann, "__args__", ()) or getattr(task, "labels", ()))
                gold = item.label if item is not None and item.label in labels else None
                wrong = [x for x in labels if x != gold]
                fields[name] = gold if (right and gold is not None) or not wrong else rng.choice(wrong)
            elif ann in (int, float) and not value_set:
                low, high = _bounds(f)
                gold = item.value if item is not None else None
                v = gold if right and gold is not None else rng.uniform(low, high)
                fields[name] = round(v) if ann is int else v
                value_set = True
            elif ann is str:
                fields[name] = "a scripted reply"
        try:
            return task.reply_text(fields)
        except (KeyError, TypeError, ValueError):
            import json

            return json.dumps(fields)

    def _label_of(self, text: str) -> str | None:
        answer = self.task.parse(text)
        return answer.label if answer.valid else None

    def _factor(self, call: FakeCall | None) -> float:
        """The call's factor on its timings: its jitter, and the slowdown once the machine slowed down."""
        o = self.options
        if call is None:
            return 1.0
        factor = o.slow_factor if o.slow_after is not None and call.machine_index >= o.slow_after else 1.0
        if o.jitter:
            rng = random.Random(f"{self.name}:{call.seed}:{call.item.id if call.item else ''}:{call.index}:timing")
            factor *= rng.lognormvariate(0.0, o.jitter)
        return factor

    def _reply(self, text: str, finish: str, prompt: list[str], cached: int, t0: float, generated: int = 0,
               call: FakeCall | None = None) -> Reply:
        o = self.options
        factor = self._factor(call)
        prompt_s = (len(prompt) - cached) * o.seconds_per_prompt_token * factor
        gen_s = generated * o.seconds_per_token * factor
        if o.sleep and prompt_s + gen_s > 0:
            self.machine.take(prompt_s + gen_s)
        return Reply(text=text, finish_reason=finish, prompt_tokens=len(prompt), cached_tokens=cached,
                     completion_tokens=generated, prompt_seconds=prompt_s, gen_seconds=gen_s,
                     wall_seconds=time.perf_counter() - t0)


def _bounds(field) -> tuple[float, float]:
    """The range a reply model's number field allows (its ge/gt and le/lt; [-1, 1] when it says none)."""
    low, high = -1.0, 1.0
    for m in field.metadata:
        for attr in ("ge", "gt"):
            if getattr(m, attr, None) is not None:
                low = float(getattr(m, attr))
        for attr in ("le", "lt"):
            if getattr(m, attr, None) is not None:
                high = float(getattr(m, attr))
    return low, high


def scripted(script: Callable[[FakeCall], str | None] | None = None, fallback=None, machine: FakeMachine | None = None):
    """A runner ``backend_factory`` whose fake backends answer through ``script`` on ``machine`` (other
    backends are built as usual, or by ``fallback``)."""
    def factory(entry, cfg, endpoint: str | None = None):
        from benchmark.backends.table import make_backend, spec_of

        if spec_of(entry) is SPEC:
            return FakeBackend(entry, cfg, endpoint, script, machine)
        return (fallback or make_backend)(entry, cfg, endpoint)
    return factory


def reset_faults() -> None:
    """Forget the transient faults already raised in this process and the default machine's calls (tests)."""
    with _FIRED_LOCK:
        _FIRED.clear()
    MACHINE.calls = 0


SPEC = BackendSpec(
    name="fake", options=FakeOptions, factory=FakeBackend,
    address=lambda b: b.endpoint, scripted=True,
    description="a scripted fake, no model (tests and dry runs): gold, scripted or planted replies, set timings",
    capabilities=Capabilities(label_scores=True, grammar=True, json_schema=True, endpoints=True, memory_facts=True))
