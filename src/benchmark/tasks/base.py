"""The task model, after inspect_ai: a Task is a dataset of items, a prompt, one reply model and a
scorer that declares the metrics it reports.

- ``Item``: one thing to ask about (id, text, optional fields, the gold label or value, its split).
- ``Answer``: what the task made of one reply: valid or not, the validated reply, its label or
  value and confidence, or the reason it is invalid. Nothing is guessed from an invalid reply.
- ``Constraint``: how the reply is constrained: a JSON schema generated from the task's pydantic
  reply model (Ollama ``format``, OpenAI ``response_format``) and, for llama.cpp, a GBNF grammar.
- ``Choices``: for label tasks, the text before the label and each label's continuation, so an
  engine can score every label from one prompt evaluation (log-probability mode).
- ``Scorer``: ``kind`` ("label" or "value"), how one answer scores against its item, and the
  metrics (names in ``benchmark.metrics.METRICS``) the report shows for the task.

The runner, store, statistics and report work with these types only: a new task is one module
(or, for classification, one block of config.yaml) and changes none of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmark.data.items import Item  # noqa: F401 - Item lives with the data; re-exported here


@dataclass(frozen=True)
class Answer:
    valid: bool
    fields: dict[str, Any] | None = None  # the validated reply
    label: str | None = None
    value: float | None = None
    confidence: float | None = None
    error: str | None = None
    label_probs: dict[str, float] | None = None  # log-probability mode: every label's probability

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
    terminal: bool = False         # the end-of-turn token follows each continuation (bare labels)


@dataclass(frozen=True)
class LabelScorer:
    """Exactly one label per reply, against a gold label; an invalid reply counts as wrong."""

    labels: tuple[str, ...]
    positive: str | None = None          # the positive class of a binary task
    betas: tuple[float, ...] = ()        # F-beta scores to report (besides F1)
    kind: Literal["label"] = "label"
    metrics: tuple[str, ...] = ("accuracy", "accuracy_answered", "balanced_accuracy", "macro_f1", "kappa",
                                "vote_accuracy", "self_consistency", "invalid_rate", "s_per_sample",
                                "cost_per_1k")

    def score(self, answer: Answer, item: Item) -> float | None:
        if item.label is None:
            return None
        return float(answer.valid and answer.label == item.label)


@dataclass(frozen=True)
class ValueScorer:
    """A number per reply (e.g. a sentiment in [-1, 1]), against a gold value when the item has one."""

    name: str = "value"                  # what the value is called in reports ("sentiment")
    low: float = -1.0
    high: float = 1.0
    kind: Literal["value"] = "value"
    metrics: tuple[str, ...] = ("s_per_sample", "valid_rate", "value_variance", "mean_value", "mean_confidence",
                                "gen_tok_s", "mae", "sign_accuracy")

    def score(self, answer: Answer, item: Item) -> float | None:
        """Absolute error against the gold value (None when the item has none or the reply is invalid)."""
        if item.value is None or not answer.valid or answer.value is None:
            return None
        return abs(answer.value - item.value)


Scorer = LabelScorer | ValueScorer


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
    """What a run stores about its task (the ``task_json`` of a run row)."""

    name: str
    kind: str
    item_noun: str
    labels: list[str] = field(default_factory=list)
    positive: str | None = None
    betas: list[float] = field(default_factory=list)
    value_name: str | None = None
    variants: list[str | None] = field(default_factory=list)

    @classmethod
    def of(cls, task: Task) -> "TaskInfo":
        s = task.scorer
        if s.kind == "label":
            return cls(task.name, "label", task.item_noun, list(s.labels), s.positive, list(s.betas),
                       variants=list(task.variants))
        return cls(task.name, "value", task.item_noun, value_name=s.name, variants=list(task.variants))
