"""Score tasks from config.yaml, no code: a number per item in a declared range (a 1-5 star rating, a
0-100 score, a sentiment in [-1, 1]) against a gold value read from a data column.

The reply is ``{"<value_name>": <number>}`` (``answer: json``) or the bare number (``answer: text``).
With ``integer: true`` (an ordinal rating) the number is a whole number: on llama.cpp a grammar
admits exactly the whole numbers of the range, and the report adds exact and within-one accuracy
and the quadratic-weighted kappa; Ollama and OpenAI-compatible servers get the JSON schema (an
integer with its bounds). ``direction: true`` says the sign means something (negative / neutral /
positive around 0, with the report's neutral band): direction accuracy is reported. A reply outside
the range, or not a number, is stored as invalid with its reason; nothing is rounded or guessed.

Items, splits, few-shot examples and prompt variants work as for classification
(``benchmark.tasks.classify``): the gold value column is read like a label column, so the splits and
the item cap are stratified by gold value and few-shot draws ``k`` examples per gold value of an
integer scale (``k`` in all, with its seed, for a continuous one).
"""

from __future__ import annotations

import json
import math
import random
import re
from typing import Any, Callable, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator

from benchmark.tasks.base import (Answer, Constraint, Item, TaskProblem, ValueScorer, schema_of, strict_config,
                                  validate_json)
from benchmark.tasks.block import (NAME, DataSource, FewShotSpec, VariantSpec, _Spec, evaluated, few_shot_pool,
                                   read_data, split_or_refuse)

MAX_ALTERNATIVES = 201   # whole numbers a grammar lists one by one; a wider integer range uses the schema
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


class ScoreDataSpec(DataSource):
    """Where the scored items come from, and how they are split."""

    value: str = Field("value", description="the column holding each item's gold value (a number in the range)")


class ScoreTaskSpec(_Spec):
    name: str = Field(pattern=NAME)
    kind: Literal["score"]
    range: tuple[float, float] = Field(description="[low, high]: the values a reply may give, ends included")
    integer: bool = Field(False, description="whole numbers on an ordinal scale (a 1-5 rating): exact and "
                                             "within-one accuracy, weighted kappa")
    direction: bool = Field(False, description="the sign means something (negative / neutral / positive around 0, "
                                               "with report.neutral_band): direction accuracy; needs a range "
                                               "around 0")
    value_name: str = Field("score", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                            description="what the number is called: the reply's JSON key and the reports' name")
    anchors: dict[str, str] | None = Field(None, description="value -> what it means (e.g. '1': terrible), "
                                                             "listed in the system prompt")
    instruction: str | None = Field(None, description="the system prompt (default: a generic one naming the range)")
    text_template: str = Field("{text}", description="the user turn; {text} is the item's text")
    data: ScoreDataSpec
    few_shot: FewShotSpec = Field(default_factory=FewShotSpec)
    variants: dict[str, VariantSpec] = Field(default_factory=dict)
    answer: Literal["json", "text"] = "json"
    item_noun: str = "text"

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, v: dict) -> dict:
        for name in v:
            if not re.match(NAME, name):
                raise ValueError(f"variant name '{name}' must be letters, digits and . _ -")
            if v[name].definitions is not None:
                raise ValueError(f"variant '{name}': definitions are for classification labels; use anchors")
        return v

    # field validators, not one model validator: each problem is reported at the field the file wrote
    @field_validator("range")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"a range needs low < high, got [{v[0]:g}, {v[1]:g}]")
        return v

    @field_validator("integer")
    @classmethod
    def _whole_ends(cls, v: bool, info: ValidationInfo) -> bool:
        rng = info.data.get("range")
        if v and rng and not (float(rng[0]).is_integer() and float(rng[1]).is_integer()):
            raise ValueError(f"integer: true needs whole-number ends, got range [{rng[0]:g}, {rng[1]:g}]")
        return v

    @field_validator("direction")
    @classmethod
    def _around_zero(cls, v: bool, info: ValidationInfo) -> bool:
        rng = info.data.get("range")
        if v and rng and not rng[0] < 0 < rng[1]:
            raise ValueError(f"direction (the sign of the value, with a neutral band around 0) needs a range around "
                             f"0, got [{rng[0]:g}, {rng[1]:g}]")
        return v

    @field_validator("anchors")
    @classmethod
    def _anchors_in_range(cls, v, info: ValidationInfo):
        rng = info.data.get("range")
        for key in (v or {}) if rng else ():
            x = _number(key)
            if x is None or not rng[0] <= x <= rng[1]:
                raise ValueError(f"anchor '{key}' is not a value in the range [{rng[0]:g}, {rng[1]:g}]")
        return v

    @field_validator("text_template")
    @classmethod
    def _has_text(cls, v: str) -> str:
        if "{text}" not in v:
            raise ValueError("must contain {text}, where the item's text goes")
        return v


def _number(text: str) -> float | None:
    t = str(text).strip()
    return float(t) if NUMBER.match(t) else None


def _show(v: float, integer: bool) -> str:
    return str(int(v)) if integer or float(v).is_integer() else f"{v:g}"


class ScoreTask:
    """A score task built from a config block (see ``ScoreTaskSpec``)."""

    def __init__(self, spec: ScoreTaskSpec, base_dir=None):
        from pathlib import Path

        self.spec = spec
        self.name = spec.name
        self.item_noun = spec.item_noun
        self.base_dir = Path(base_dir or ".")
        self.low, self.high = (float(x) for x in spec.range)
        self.key = spec.value_name
        self.variants: tuple[str | None, ...] = tuple(spec.variants) or (None,)
        self.scorer = ValueScorer(spec.value_name, self.low, self.high, spec.direction, spec.integer, confidence=False)
        kind = int if spec.integer else float
        bound = (int if spec.integer else float)
        self.reply_model = create_model("ScoreReply", __config__=strict_config(),
                                        **{self.key: (kind, Field(ge=bound(self.low), le=bound(self.high)))})
        self._pool: list[Item] = []

    # ------------------------------------------------------------------ data
    def _labelled(self) -> list[Item]:
        """Every row, the gold value still as text in ``label`` (for stratified splits and samples)."""
        d = self.spec.data
        items = read_data(d, self.base_dir, d.value)
        out = []
        for it in items:
            v = _number(it.label)
            if v is None or not math.isfinite(v):
                raise TaskProblem(("task", "data", "value"), f"item {it.id} has the gold value '{it.label}' in column "
                                  f"'{d.value}', not a number", "fix the data, or point task.data.value at the column "
                                                                "of gold values")
            if not self.low <= v <= self.high:
                raise TaskProblem(("task", "range"), f"item {it.id} has the gold value {v:g}, outside the range "
                                  f"[{self.low:g}, {self.high:g}]", "fix the data or task.range")
            if self.spec.integer and not v.is_integer():
                raise TaskProblem(("task", "integer"), f"item {it.id} has the gold value {v:g}, not a whole number "
                                  "(integer: true)", "fix the data, or set integer: false")
            out.append(it.model_copy(update={"label": _show(v, self.spec.integer)}))
        return split_or_refuse(out, d)

    @staticmethod
    def _scored(items: list[Item]) -> list[Item]:
        return [it.model_copy(update={"value": float(it.label), "label": None}) for it in items]

    def all_items(self) -> list[Item]:
        """Every item of the data block with its gold value, split (train, validation, test...)."""
        return self._scored(self._labelled())

    def load_items(self, cfg=None, warn: Callable[[str], None] | None = None) -> list[Item]:
        labelled = self._labelled()
        self._pool = self._scored(labelled)
        return self._scored(evaluated(labelled, self.spec.data, self.name))

    def few_shot_items(self, k: int) -> list[Item]:
        from benchmark import data

        if k <= 0:
            return []
        if not self._pool:
            self._pool = self.all_items()
        pool = sorted(few_shot_pool(self._pool, self.spec.few_shot.split), key=lambda i: i.id)
        if not self.spec.integer:  # a continuous scale: k examples in all
            rng = random.Random(self.spec.few_shot.seed)
            return rng.sample(pool, min(k, len(pool)))
        labelled = [i.model_copy(update={"label": _show(i.value, True)}) for i in pool]
        values = sorted({i.label for i in labelled}, key=float)
        with TaskProblem.at(("task", "few_shot", "k")):
            return self._scored(data.few_shot(labelled, k, seed=self.spec.few_shot.seed, labels=values))

    # ------------------------------------------------------------------ prompt
    def _variant(self, variant: str | None) -> VariantSpec:
        return self.spec.variants.get(variant, VariantSpec()) if variant else VariantSpec()

    def system_prompt(self, variant: str | None = None) -> str:
        v = self._variant(variant)
        lo, hi = _show(self.low, self.spec.integer), _show(self.high, self.spec.integer)
        whole = "a whole number" if self.spec.integer else "a number"
        text = v.instruction or self.spec.instruction or (
            f"Give the {self.item_noun} a {self.key} from {lo} to {hi}.")
        if v.append:
            text = f"{text.rstrip()} {v.append.strip()}"
        if self.spec.anchors:
            text += "\n\nScale:\n" + "\n".join(f"- {k}: {d}" for k, d in
                                               sorted(self.spec.anchors.items(), key=lambda kv: float(kv[0])))
        if self.spec.answer == "json":
            text += f'\n\nAnswer with one JSON object and nothing else: {{"{self.key}": <{whole} from {lo} to {hi}>}}'
        else:
            text += f"\n\nAnswer with the {self.key} alone: {whole} from {lo} to {hi}."
        return text

    def user_message(self, text: str) -> str:
        return self.spec.text_template.replace("{text}", text)

    def messages(self, item: Item, prompt_style: str, variant: str | None = None,
                 system_prompt: str | None = None) -> list[dict[str, str]]:
        if prompt_style not in ("few_shot", "zero_shot"):
            raise ValueError(f"unknown prompt style {prompt_style!r}")
        msgs = [{"role": "system", "content": system_prompt or self.system_prompt(variant)}]
        if prompt_style == "few_shot":
            v = self._variant(variant)
            k = self.spec.few_shot.k if v.few_shot_k is None else v.few_shot_k
            for ex in self.few_shot_items(k):
                if ex.id == item.id:
                    continue
                msgs.append({"role": "user", "content": self.user_message(ex.text)})
                msgs.append({"role": "assistant", "content": self.reply_text({self.key: ex.value})})
        msgs.append({"role": "user", "content": self.user_message(item.text)})
        return msgs

    # ------------------------------------------------------------------ answers
    def reply_text(self, fields: dict[str, Any]) -> str:
        v = float(fields[self.key])
        shown: float | int = int(v) if self.spec.integer else v
        if self.spec.answer == "json":
            return json.dumps({self.key: shown})
        return _show(v, self.spec.integer)

    def _alternatives(self) -> str | None:
        if not self.spec.integer or self.high - self.low + 1 > MAX_ALTERNATIVES:
            return None
        return " | ".join(f'"{n}"' for n in range(int(self.low), int(self.high) + 1))

    def constraint(self) -> Constraint:
        alts = self._alternatives()
        if self.spec.answer == "json":
            grammar = None if alts is None else \
                f'root ::= {json.dumps("{" + json.dumps(self.key) + ": ")} ({alts}) "}}"\n'
            return Constraint(schema=schema_of(self.reply_model), grammar=grammar)
        number = alts or '"-"? [0-9]+ ("." [0-9]+)?'
        return Constraint(schema=None, grammar=f"root ::= ({number})\n")

    def parse(self, text: str) -> Answer:
        if self.spec.answer == "json":
            reply, error = validate_json(self.reply_model, text)
            if reply is None:
                return Answer(valid=False, error=error)
            v = float(getattr(reply, self.key))
            return Answer(valid=True, fields={self.key: getattr(reply, self.key)}, value=v)
        cleaned = text.strip().rstrip(".").strip()
        if not cleaned:
            return Answer(valid=False, error="empty reply")
        v = _number(cleaned)
        shown = cleaned if len(cleaned) <= 60 else cleaned[:57] + "..."
        if v is None:
            return Answer(valid=False, error=f"'{shown}' is not a number")
        if self.spec.integer and not (v.is_integer() and "." not in cleaned):
            return Answer(valid=False, error=f"'{shown}' is not a whole number")
        if not self.low <= v <= self.high:
            return Answer(valid=False, error=f"{shown} is outside the range [{self.low:g}, {self.high:g}]")
        return Answer(valid=True, fields={self.key: int(v) if self.spec.integer else v}, value=v)

    def warmup_item(self) -> Item:
        return Item(id="warmup", text="A short text to load the model.")

    def choices(self) -> None:
        return None
