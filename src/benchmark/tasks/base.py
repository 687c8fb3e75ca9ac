"""The task model, after inspect_ai: a Task is a dataset of items, a prompt, one reply model and a
scorer that declares the metrics it reports.

- ``Item``: one thing to ask about (id, text, optional fields, the gold label or value, its split).
- ``Answer``: what the task made of one reply: valid or not, the validated reply, its label or
  value and confidence, or the reason it is invalid. Nothing is guessed from an invalid reply.
- ``Constraint``: how the reply is constrained: a JSON schema generated from the task's pydantic
  reply model (Ollama ``format``, OpenAI ``response_format``) and, for llama.cpp, a GBNF grammar.
- ``Choices``: for label tasks, the text before the label and each label's continuation, so an
  engine can score every label from one prompt evaluation (log-probability mode).
- ``Scorer``: ``kind`` ("label" or "value"), what the answers are (labels; a value range, whether
  its sign or whole numbers mean something) and the metrics (names in ``benchmark.metrics.METRICS``,
  in order) the report shows for the task: the only list of the report's columns.

The runner, store, statistics and report work with these types only: a new task is one module
(or, for classification, one block of config.yaml) and changes none of them.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmark.data.items import Item  # noqa: F401 - Item lives with the data; re-exported here
from core.errors import ShootoutError


class TaskProblem(ShootoutError):
    """A problem with a task block's data or examples, at the config field that causes it (``loc``, e.g.
    ("task", "data", "evaluate")): `validate` and `run` report it with the line the file wrote it on
    (``benchmark.config``)."""

    def __init__(self, loc: tuple, message: str, hint: str | None = None):
        self.loc = tuple(loc)
        self.text = message + (f"; {hint}" if hint else "")
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.loc).lstrip(".")
        super().__init__(f"{where}: {message}", hint)

    @staticmethod
    def words(exc: ShootoutError) -> str:
        return exc.message + (f"; {exc.hint}" if exc.hint else "")

    @classmethod
    @contextmanager
    def at(cls, loc: tuple):
        """Any ShootoutError raised inside becomes a TaskProblem at ``loc`` (one already placed keeps its own)."""
        try:
            yield
        except TaskProblem:
            raise
        except ShootoutError as exc:
            raise cls(loc, exc.message, exc.hint) from None


@dataclass(frozen=True)
class Answer:
    valid: bool
    fields: dict[str, Any] | None = None  # the validated reply
    label: str | None = None
    value: float | None = None
    confidence: float | None = None
    error: str | None = None
    label_probs: dict[str, float | None] | None = None  # log-probability mode: each label's (None: unscored)

    def fields_json(self) -> str | None:
        return json.dumps(self.fields, ensure_ascii=False) if self.fields is not None else None


@dataclass(frozen=True)
class Constraint:
    schema: dict[str, Any] | None  # None: HTTP servers get no constraint (a bare-text answer)
    grammar: str | None = None     # GBNF for llama.cpp; None: generated from the schema


@dataclass(frozen=True)
class Choices:
    """Label scoring: the reply starts with ``prefix``, then one of the continuations."""

    prefix: str
    continuations: dict[str, str]  # label -> the text that follows the prefix for that label
    terminal: bool = False         # the label is the whole reply (bare labels): a word character after it makes
                                   # another word ("spammer" is not "spam"); servers' alternatives are read so


@dataclass(frozen=True)
class LabelScorer:
    """Exactly one label per reply, against a gold label; an invalid reply counts as wrong."""

    labels: tuple[str, ...]
    positive: str | None = None          # the positive class of a binary task
    betas: tuple[float, ...] = ()        # F-beta scores to report (besides F1)
    kind: Literal["label"] = "label"

    def facts(self) -> dict[str, Any]:
        """What a run stores of this scorer (``TaskInfo``), to rebuild it with ``from_facts``."""
        return {"labels": list(self.labels), "positive": self.positive, "betas": list(self.betas)}

    @classmethod
    def from_facts(cls, info: "TaskInfo") -> "LabelScorer":
        return cls(tuple(info.labels), info.positive, tuple(info.betas))

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics the report shows for this task, in order (names in ``benchmark.metrics``)."""
        binary = ("precision", "recall", "f1") if self.positive_usable else ()
        return ("accuracy", "accuracy_answered", "balanced_accuracy", "macro_f1", "kappa", *binary,
                *(f"f_beta_{b:g}" for b in self.usable_betas), "vote_accuracy", "vote_ties", "self_consistency",
                "invalid_rate", "s_per_sample", "gen_tok_s", "label_prob", "label_prob_margin", "cost_per_1k")

    @property
    def positive_usable(self) -> bool:
        """A positive class the figures can use: set, on a two-label task, one of the labels (a config checks
        this before a run; a run stored without the check still reports, without these figures)."""
        return self.positive is not None and len(self.labels) == 2 and str(self.positive) in self.labels

    @property
    def usable_betas(self) -> tuple[float, ...]:
        """The F-beta weights the figures can use: positive numbers (see ``positive_usable``)."""
        return tuple(b for b in self.betas if isinstance(b, (int, float)) and b > 0 and b == b and b != float("inf"))

    def unusable(self) -> list[str]:
        """What a stored run asked for that cannot be computed, and why (for the report's notes)."""
        out = []
        if self.positive is not None and not self.positive_usable:
            why = (f"the task has {len(self.labels)} labels (a positive class needs exactly two)"
                   if len(self.labels) != 2 else f"it is not one of the labels {list(self.labels)}")
            out.append(f"precision, recall and F1 of the positive class '{self.positive}': not computed, {why}")
        bad = [b for b in self.betas if b not in self.usable_betas]
        if bad:
            out.append(f"F-beta at beta {', '.join(f'{b:g}' for b in bad)}: not computed, beta must be a positive "
                       "number")
        return out


@dataclass(frozen=True)
class ValueScorer:
    """A number per reply in [low, high] (a sentiment in [-1, 1], a rating on 1..5), against a gold value
    when the item has one. An unanswered call scores the worst error on that range.

    ``direction``: the sign of the value means something (sentiment: negative / neutral / positive, with
    the report's neutral band around 0): direction accuracy and agreement are reported; needs a range
    around 0. ``integer``: the values are whole numbers on an ordinal scale (a 1-5 rating): exact and
    within-one accuracy and the quadratic-weighted kappa are reported. ``confidence``: the reply states
    a confidence (calibration)."""

    name: str = "value"                  # what the value is called in reports ("sentiment", "rating")
    low: float = -1.0
    high: float = 1.0
    direction: bool = True
    integer: bool = False
    confidence: bool = True
    kind: Literal["value"] = "value"

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"a value range needs low < high, got [{self.low:g}, {self.high:g}]")
        if self.direction and not self.low < 0 < self.high:
            raise ValueError(f"direction (the sign of the value, with a neutral band around 0) needs a range around "
                             f"0, got [{self.low:g}, {self.high:g}]")

    def facts(self) -> dict[str, Any]:
        """What a run stores of this scorer (``TaskInfo``), to rebuild it with ``from_facts``."""
        return {"value_name": self.name, "low": float(self.low), "high": float(self.high),
                "direction": bool(self.direction), "integer": bool(self.integer), "confidence": bool(self.confidence)}

    @classmethod
    def from_facts(cls, info: "TaskInfo") -> "ValueScorer":
        """The scorer a run stored; what a run stored before ranges were (layout 1-3 runs: sentiment)
        takes the sentiment convention, this class's defaults."""
        known = {k: v for k, v in (("low", info.low), ("high", info.high), ("direction", info.direction),
                                   ("integer", info.integer), ("confidence", info.confidence)) if v is not None}
        return cls(info.value_name or info.name, **known)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics the report shows for this task, in order (names in ``benchmark.metrics``); those
        against the gold value need a run whose items have one."""
        return ("s_per_sample", "valid_rate", "value_variance", "mean_value",
                *(("mean_confidence",) if self.confidence else ()), "gen_tok_s", "mae", "mae_answered",
                *(("sign_accuracy", "sign_accuracy_answered") if self.direction else ()),
                *(("exact_accuracy", "within_one_accuracy", "weighted_kappa") if self.integer else ()),
                "cost_per_1k")


Scorer = LabelScorer | ValueScorer
SCORERS: dict[str, type] = {"label": LabelScorer, "value": ValueScorer}  # a scorer's kind -> its class


@runtime_checkable
class Task(Protocol):
    name: str
    scorer: Scorer
    item_noun: str                         # "article", "text", "headline": how reports name an item
    variants: tuple[str | None, ...]       # prompt variants compared like models; (None,) when one
    reply_model: type[BaseModel]

    def load_items(self, cfg, warn: Callable[[str], None]) -> list[Item]:
        """The items to ask about (from the config's data), fixed when a run starts."""

    def messages(self, item: Item, prompt_style: str, variant: str | None = None,
                 system_prompt: str | None = None) -> list[dict[str, str]]:
        """The chat for one item: real few-shot turns for ``few_shot``, the item alone for ``zero_shot``."""

    def constraint(self) -> Constraint:
        """The schema (and grammar) that constrains a reply."""

    def parse(self, text: str) -> Answer:
        """Validate one reply against the reply model."""

    def reply_text(self, fields: dict[str, Any]) -> str:
        """The reply a model should give, as text (few-shot turns, training targets)."""

    def warmup_item(self) -> Item:
        """A short item for the uncounted warm-up call."""

    def choices(self) -> Choices | None:
        """Label scoring continuations (None: the task has no log-probability mode)."""


# --------------------------------------------------------------------------- reply models


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a reply model, as engines take it: properties in the model's order, all
    required, no additional properties, no titles."""
    raw = model.model_json_schema()

    def clean(node):
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if k not in ("title",)}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    props = {k: clean(v) for k, v in raw.get("properties", {}).items()}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def explain(text: str, exc: Exception) -> str:
    """Why a reply is invalid, in one line."""
    stripped = text.strip()
    if not stripped:
        return "empty reply"
    if stripped.startswith("```"):
        return "reply is wrapped in a markdown code fence; the task asks for a bare JSON object"
    if isinstance(exc, ValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"]) or "(reply)"
            parts.append(f"{loc}: {e['msg']}")
        return "; ".join(parts)
    return f"not JSON: {exc}"


def validate_json(model: type[BaseModel], text: str) -> tuple[BaseModel | None, str | None]:
    """(the validated reply, None) or (None, why it is invalid)."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return model.model_validate(data), None
    except (ValueError, ValidationError) as exc:
        return None, explain(text, exc)


def strict_config() -> ConfigDict:
    """Extra keys, missing keys, wrong types and out-of-range values are invalid."""
    return ConfigDict(extra="forbid", strict=True)


@dataclass
class TaskInfo:
    """What a run stores about its task (the ``task_json`` of a run row), and what the report reads back:
    the kind, how to name items and values, the labels, the value range and what it means. A run stored
    before the range was (``low`` ... missing) follows the sentiment convention: [-1, 1], direction with
    a neutral band, values not whole numbers, a stated confidence (``stored``)."""

    name: str
    kind: str
    item_noun: str
    labels: list[str] = field(default_factory=list)
    positive: str | None = None
    betas: list[float] = field(default_factory=list)
    value_name: str | None = None
    variants: list[str | None] = field(default_factory=list)
    low: float | None = None
    high: float | None = None
    direction: bool | None = None
    integer: bool | None = None
    confidence: bool | None = None

    @classmethod
    def of(cls, task: Task) -> "TaskInfo":
        s = task.scorer
        return cls(task.name, s.kind, task.item_noun, variants=list(task.variants), **s.facts())

    @classmethod
    def stored(cls, data: dict | None, name: str = "task") -> "TaskInfo":
        """A run's stored task; what an older run did not store takes its scorer's defaults (for a value
        task, the sentiment convention)."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data.setdefault("name", name)
        data.setdefault("kind", "value")
        data.setdefault("item_noun", "item")
        info = cls(**data)
        if info.kind in SCORERS:  # filled in from the scorer the run used
            for k, v in info.scorer().facts().items():
                setattr(info, k, v)
        return info

    def scorer(self) -> Scorer:
        """The scorer this task was run with (its declared metrics are the report's columns)."""
        return SCORERS[self.kind].from_facts(self)

    @property
    def value_range(self) -> tuple[float, float]:
        return (self.low, self.high) if self.low is not None else (-1.0, 1.0)

    def describe(self) -> list[tuple[str, str]]:
        """The task's answers in words, for Run Info: its labels, or its value range and what it means."""
        out = []
        if self.labels:
            out.append(("labels", ", ".join(self.labels)))
        if self.low is not None:
            out.append((f"{self.value_name or 'value'} range", f"[{self.low:g}, {self.high:g}]"
                        + (", whole numbers" if self.integer else "") + (", signed (direction)" if self.direction
                                                                         else "")))
        return out

    @property
    def noun(self) -> str:
        return self.item_noun or "item"
