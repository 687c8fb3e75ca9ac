"""Classification from config.yaml, no code: labels (with optional definitions), the instruction,
a label-merge map, a labelled data file split with a recorded seed, few-shot examples drawn k per
class from the training split as real chat turns, and prompt variants compared like models.

The reply is exactly one label: ``{"label": "<one of the labels>"}`` (``answer: json``) or the
bare label (``answer: text``, as fine-tunes trained on Alpaca records answer). On llama.cpp the
answer is forced by a grammar that admits exactly the labels; Ollama and OpenAI-compatible
servers get a JSON schema with the labels as an enum. In log-probability mode (llama.cpp) every
label is scored from one prompt evaluation and the argmax is the answer; nothing is sampled.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator

from benchmark.tasks.base import Answer, Choices, Constraint, Item, LabelScorer, TaskProblem, schema_of, strict_config
from benchmark.tasks.block import (NAME, DataSource, FewShotSpec, VariantSpec, _Spec, evaluated, few_shot_pool,
                                   read_data, split_or_refuse)


class DataSpec(DataSource):
    """Where the labelled items come from, and how they are split."""

    label: str = Field("label", description="the label column")
    label_map: dict[str, str] | None = Field(None, description="raw label -> label name (e.g. '0': negative)")


class ClassifyTaskSpec(_Spec):
    name: str = Field(pattern=NAME)
    kind: Literal["classify"] = "classify"
    labels: list[str] | dict[str, str] = Field(
        description="the labels, or label -> one-sentence definition (after the merge map, if any)")
    positive: str | None = Field(None, description="binary tasks: the positive class")
    instruction: str | None = Field(None, description="the system prompt (default: a generic one naming the labels)")
    text_template: str = Field("{text}", description="the user turn; {text} is the item's text")
    definitions: bool = Field(False, description="include label definitions in the system prompt")
    merge: dict[str, str] | None = Field(None, description="raw label -> merged label (e.g. 7 stances into 3)")
    data: DataSpec
    few_shot: FewShotSpec = Field(default_factory=FewShotSpec)
    variants: dict[str, VariantSpec] = Field(default_factory=dict)
    answer: Literal["json", "text"] = "json"
    decoding: Literal["generate", "logprob"] = Field("generate", description="logprob: score every label from one "
                                                                              "prompt evaluation (backends with label "
                                                                              "scoring)")
    betas: list[float] = Field(default_factory=list, description="F-beta scores to report besides F1")
    item_noun: str = "text"

    # field validators, not one model validator: each problem is reported at the field the file wrote
    # (task.positive (line 9)), never at the block's root under pydantic's validator tag
    @field_validator("labels")
    @classmethod
    def _two_distinct_labels(cls, v):
        names = [str(x) for x in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{', '.join(repr(n) for n in twice)} {'is' if len(twice) == 1 else 'are'} listed twice; "
                             "give each label once")
        if len(names) < 2:
            raise ValueError(f"a classification needs at least two labels, got {names}")
        blank = [n for n in names if not n.strip()]
        if blank:
            raise ValueError("holds an empty label; give every label a name")
        folded = {}
        for n in names:
            folded.setdefault(n.strip().casefold(), []).append(n)
        alike = [" and ".join(repr(x) for x in group) for group in folded.values() if len(group) > 1]
        if alike:
            raise ValueError(f"{'; '.join(alike)} differ only in case or spaces, which a reply cannot tell apart; "
                             "merge them (task.merge) or rename one")
        return v

    @field_validator("positive")
    @classmethod
    def _positive_of_a_binary_task(cls, v, info: ValidationInfo):
        labels = info.data.get("labels")
        if v is None or labels is None:  # no positive class, or the labels' own error says what is wrong
            return v
        names = list(labels)
        if str(v) not in names:
            raise ValueError(f"'{v}' is not one of the labels {names}")
        if len(names) != 2:
            raise ValueError(f"a positive class (for precision, recall and F1 of one class) needs a task of two "
                             f"labels; this one has {len(names)} ({', '.join(names)}). Remove positive: macro-F1 "
                             "covers every class")
        return v

    @field_validator("text_template")
    @classmethod
    def _has_text(cls, v: str) -> str:
        if "{text}" not in v:
            raise ValueError("must contain {text}, where the item's text goes")
        return v

    @field_validator("merge")
    @classmethod
    def _merge_to_labels(cls, v, info: ValidationInfo):
        labels = info.data.get("labels")
        if v and labels is not None:
            unknown = sorted({x for x in v.values() if x not in list(labels)})
            if unknown:
                raise ValueError(f"maps to {unknown}, which are not labels {list(labels)}")
        return v

    @field_validator("betas")
    @classmethod
    def _positive_betas(cls, v: list[float]) -> list[float]:
        bad = [b for b in v if not (b > 0 and b != float("inf"))]
        if bad:
            raise ValueError(f"beta {', '.join(f'{b:g}' for b in bad)} is not a positive number; F-beta weighs recall "
                             "beta times as much as precision (e.g. 0.5 or 2)")
        return v

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, v: dict) -> dict:
        for name in v:
            if not re.match(NAME, name):
                raise ValueError(f"variant name '{name}' must be letters, digits and . _ -")
        return v

    @property
    def label_names(self) -> list[str]:
        return list(self.labels)

    @property
    def label_definitions(self) -> dict[str, str]:
        return dict(self.labels) if isinstance(self.labels, dict) else {}


class ClassifyTask:
    """A classification task built from a config block (see ``ClassifyTaskSpec``)."""

    def __init__(self, spec: ClassifyTaskSpec, base_dir=None):
        from pathlib import Path

        self.spec = spec
        self.name = spec.name
        self.item_noun = spec.item_noun
        self.base_dir = Path(base_dir or ".")
        self.labels = spec.label_names
        self.variants: tuple[str | None, ...] = tuple(spec.variants) or (None,)
        self.scorer = LabelScorer(labels=tuple(self.labels), positive=spec.positive, betas=tuple(spec.betas))
        label_type = Literal.__getitem__(tuple(self.labels))
        self.reply_model = create_model("LabelReply", __config__=strict_config(), label=(label_type, ...))
        self._few_shot: list[Item] | None = None
        self._pool: list[Item] = []

    # ------------------------------------------------------------------ data
    def all_items(self) -> list[Item]:
        """Every labelled item of the data block, merged and split (train, validation, test...)."""
        from benchmark import data

        d = self.spec.data
        items = read_data(d, self.base_dir, d.label, d.label_map)
        if self.spec.merge:
            with TaskProblem.at(("task", "merge")):
                items = data.merge_labels(items, self.spec.merge, keep_unmapped=True)
        unknown = sorted({i.label for i in items} - set(self.labels))
        if unknown:
            raise TaskProblem(("task", "labels"), f"the data has labels {unknown} that are not in task.labels "
                              f"{self.labels}", "add them to task.labels, map them with task.merge, or fix "
                                                "task.data.label_map")
        return split_or_refuse(items, d)

    def load_items(self, cfg=None, warn: Callable[[str], None] | None = None) -> list[Item]:
        items = self.all_items()
        self._pool = items
        return evaluated(items, self.spec.data, self.name)

    def few_shot_items(self, k: int) -> list[Item]:
        from benchmark import data

        if k <= 0:
            return []
        if not self._pool:
            self._pool = self.all_items()
        pool = few_shot_pool(self._pool, self.spec.few_shot.split)
        with TaskProblem.at(("task", "few_shot", "k")):
            return data.few_shot(pool, k, seed=self.spec.few_shot.seed, labels=self.labels)

    # ------------------------------------------------------------------ prompt
    def _variant(self, variant: str | None) -> VariantSpec:
        return self.spec.variants.get(variant, VariantSpec()) if variant else VariantSpec()

    def system_prompt(self, variant: str | None = None) -> str:
        v = self._variant(variant)
        labels = ", ".join(self.labels)
        text = v.instruction or self.spec.instruction or (
            f"Classify the {self.item_noun} into exactly one of these labels: {labels}.")
        if v.append:
            text = f"{text.rstrip()} {v.append.strip()}"
        show_defs = self.spec.definitions if v.definitions is None else v.definitions
        defs = self.spec.label_definitions
        if show_defs and defs:
            text += "\n\nLabels:\n" + "\n".join(f"- {k}: {defs[k]}" for k in self.labels if k in defs)
        if self.spec.answer == "json":
            text += f'\n\nAnswer with one JSON object and nothing else: {{"label": "<{" | ".join(self.labels)}>"}}'
        else:
            text += f"\n\nAnswer with the label alone: {' or '.join(self.labels)}."
        return text

    def user_message(self, text: str) -> str:
        return self.spec.text_template.replace("{text}", text)

    def messages(self, item: Item, prompt_style: str, variant: str | None = None,
                 system_prompt: str | None = None) -> list[dict[str, str]]:
        if prompt_style == "zero_shot":
            return [{"role": "system", "content": system_prompt or self.system_prompt(variant)},
                    {"role": "user", "content": self.user_message(item.text)}]
        if prompt_style != "few_shot":
            raise ValueError(f"unknown prompt style {prompt_style!r}")
        v = self._variant(variant)
        k = self.spec.few_shot.k if v.few_shot_k is None else v.few_shot_k
        msgs = [{"role": "system", "content": system_prompt or self.system_prompt(variant)}]
        for ex in self.few_shot_items(k):
            if ex.id == item.id:
                continue
            msgs.append({"role": "user", "content": self.user_message(ex.text)})
            msgs.append({"role": "assistant", "content": self.reply_text({"label": ex.label})})
        msgs.append({"role": "user", "content": self.user_message(item.text)})
        return msgs

    # ------------------------------------------------------------------ answers
    def reply_text(self, fields: dict[str, Any]) -> str:
        if self.spec.answer == "json":
            return json.dumps({"label": fields["label"]}, ensure_ascii=False)
        return str(fields["label"])

    def constraint(self) -> Constraint:
        alts = " | ".join(json.dumps(label, ensure_ascii=False) for label in self.labels)
        if self.spec.answer == "json":
            prefix = json.dumps('{"label": "')
            return Constraint(schema=schema_of(self.reply_model), grammar=f'root ::= {prefix} ({alts}) "\\"}}"\n')
        return Constraint(schema=None, grammar=f"root ::= ({alts})\n")

    def choices(self) -> Choices:
        if self.spec.answer == "json":
            return Choices(prefix='{"label": "', continuations={k: f'{k}"}}' for k in self.labels})
        return Choices(prefix="", continuations={k: k for k in self.labels}, terminal=True)

    def parse(self, text: str) -> Answer:
        if self.spec.answer == "json":
            from benchmark.tasks.base import validate_json

            reply, error = validate_json(self.reply_model, text)
            if reply is None:
                return Answer(valid=False, error=error)
            return Answer(valid=True, fields={"label": reply.label}, label=reply.label)
        cleaned = text.strip().strip(".!\"'`*").strip()
        by_lower = {k.lower(): k for k in self.labels}
        label = by_lower.get(cleaned.lower())
        if label is None:
            shown = cleaned if len(cleaned) <= 60 else cleaned[:57] + "..."
            return Answer(valid=False, error=f"'{shown}' is not one of the labels {self.labels}"
                          if cleaned else "empty reply")
        return Answer(valid=True, fields={"label": label}, label=label)

    def answer_from_probs(self, probs: dict[str, float], unscored: dict[str, str] | None = None) -> Answer:
        """Log-probability mode: the most probable label is the answer, its probability the confidence.
        Labels a server could not score (``unscored``: label -> why) are stored as None; with none
        scored the call is invalid, naming why."""
        scored = [k for k in self.labels if k in probs]
        if not scored:
            why = "; ".join(f"{k}: {r}" for k, r in (unscored or {}).items())
            return Answer(valid=False, error=f"no label could be scored ({why or 'no probabilities'})")
        label = max(scored, key=lambda k: (probs[k], -self.labels.index(k)))
        return Answer(valid=True, fields={"label": label}, label=label, confidence=float(probs[label]),
                      label_probs={k: float(probs[k]) if k in probs else None for k in self.labels})

    def warmup_item(self) -> Item:
        return Item(id="warmup", text="A short text to load the model.")
