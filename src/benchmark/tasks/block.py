"""What the tasks written as config blocks share (classification, ``benchmark.tasks.classify``; scores,
``benchmark.tasks.score``): where the items come from and how they are split, the evaluated splits, the
few-shot pool, prompt variants, and ``preflight``: every check a run makes of the block before its first
call, each a ``TaskProblem`` at the field that causes it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from benchmark.tasks.base import Item, TaskProblem
from core.errors import ShootoutError
from core.settings import SettingsModel

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Spec(SettingsModel):
    pass


class DataSource(_Spec):
    """Where a task's items come from, and how they are split (the columns of the gold answer are the
    task's own: ``DataSpec.label`` here, ``ScoreDataSpec.value`` for a score task)."""

    path: str | None = Field(None, description="one file or folder, split by `splits` (relative to config.yaml)")
    files: dict[str, str] | None = Field(None, description="split name -> file, when the data comes pre-split")
    format: Literal["csv", "tsv", "jsonl", "json", "parquet", "alpaca", "sharegpt", "folder"] | None = None
    text: str = Field("text", description="the text column")
    id: str | None = Field(None, description="the id column (default: a hash of the text and row)")
    split: str | None = Field(None, description="a column naming each row's split")
    fields: list[str] = Field(default_factory=list, description="extra columns kept with each item")
    encoding: str = "utf-8"
    header_lines: int = Field(0, ge=0, description="folder layout: leading lines of each file kept as fields "
                                                    "(livedoor: url, date, title)")
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
                                     description="stratified split fractions (when not pre-split)")
    seed: int = Field(0, ge=0, description="the split's seed (recorded with the run)")
    evaluate: list[str] = Field(default_factory=lambda: ["test"],
                                description="the split(s) the benchmark asks about")
    max_items: int | None = Field(None, ge=1, description="cap per evaluated split (stratified sample)")

    @field_validator("evaluate", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("evaluate")
    @classmethod
    def _some_splits_once_each(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("names no split; name the split(s) to ask about, e.g. [test]")
        twice = sorted({x for x in v if v.count(x) > 1})
        if twice:
            raise ValueError(f"names {', '.join(repr(x) for x in twice)} twice; name each split once")
        return v

    @field_validator("label", "value", check_fields=False)  # the gold column of a subclass (classify, score)
    @classmethod
    def _gold_is_not_the_text(cls, v: str, info: ValidationInfo) -> str:
        if v == info.data.get("text"):
            raise ValueError(f"is '{v}', the text column too: the model would be shown the answer; name the column "
                             f"that holds the gold {info.field_name}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "DataSource":
        if bool(self.path) == bool(self.files):
            raise ValueError("give either data.path (one file, split by data.splits) or data.files "
                             "(split name -> file)")
        return self


def read_data(d: DataSource, base_dir, label: str, label_map: dict[str, str] | None = None) -> list[Item]:
    """Every row of a data block as items, the gold answer (column ``label``) read as their label; the
    items of pre-split files carry their split. A file that cannot be read is a ``TaskProblem`` at the
    field that names it (task.data.files.train, task.data.path)."""
    from pathlib import Path

    from benchmark import data

    def resolve(p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else Path(base_dir or ".") / path

    opts: dict[str, Any] = dict(format=d.format, text=d.text, label=label, id=d.id, split=d.split,
                                fields=tuple(d.fields), encoding=d.encoding, label_map=label_map)
    if d.header_lines:
        opts["header_lines"] = d.header_lines
    sources = [(("task", "data", "files", split), path, split) for split, path in (d.files or {}).items()] \
        or [(("task", "data", "path"), d.path, None)]
    items: list[Item] = []
    for loc, path, split in sources:
        with TaskProblem.at(loc):
            read = data.read_items(resolve(path), **opts)
        items += [i.model_copy(update={"split": split}) for i in read] if split else read
    return items


def split_or_refuse(items: list[Item], d: DataSource) -> list[Item]:
    """The items of one file split by ``d.splits`` (stratified, seeded); pre-split files as they are."""
    from benchmark import data

    if d.files:
        return items
    with TaskProblem.at(("task", "data", "splits")):
        return data.split_items(items, d.splits, seed=d.seed)


def evaluated(items: list[Item], d: DataSource, task: str) -> list[Item]:
    """The items of the evaluated split(s), each capped at ``max_items`` (stratified by label)."""
    from benchmark import data

    out: list[Item] = []
    for split in d.evaluate:
        chosen = [i for i in items if i.split == split]
        if not chosen:
            raise TaskProblem(("task", "data", "evaluate"), f"no items in the split '{split}' (the data's splits: "
                              f"{_splits(items)})", "set task.data.evaluate to one of those splits")
        if d.max_items and len(chosen) > d.max_items:
            chosen = data.stratified_sample(chosen, d.max_items, seed=d.seed)
        out += chosen
    return out


def _splits(items: list[Item]) -> str:
    return ", ".join(sorted({i.split or "(none)" for i in items}))


def few_shot_pool(items: list[Item], split: str) -> list[Item]:
    """The items few-shot examples are drawn from; a split the data does not have is a ``TaskProblem`` at
    task.few_shot.split (not "too few items")."""
    pool = [i for i in items if i.split == split]
    if not pool:
        raise TaskProblem(("task", "few_shot", "split"), f"no items in the split '{split}' to draw few-shot examples "
                          f"from (the data's splits: {_splits(items)})",
                          "set task.few_shot.split to one of those splits, or few_shot.k: 0 for no examples")
    return pool


def preflight(task, cfg) -> list[tuple[tuple, str]]:
    """Every check a run makes of a config block's task before its first call, as (field path, message):
    the data files and their columns, the merge map and labels, the split fractions, the evaluated
    splits, and the few-shot examples of every prompt variant a few-shot model asks with (their split,
    and k against each class's items). ``benchmark.config`` runs it for `validate` and `run` alike, so
    a run that would fail is refused before any call."""
    problems: list[tuple[tuple, str]] = []
    try:
        items = task.all_items()
    except TaskProblem as exc:
        return [(exc.loc, exc.text)]
    try:
        evaluated(items, task.spec.data, task.name)
    except TaskProblem as exc:
        problems.append((exc.loc, exc.text))
    if not any(m.prompt_style == "few_shot" for m in cfg.models):
        return problems
    task._pool = items
    spec = task.spec
    ks = [spec.few_shot.k] + [vs.few_shot_k for vs in spec.variants.values() if vs.few_shot_k is not None]
    if spec.few_shot.split in spec.data.evaluate and any(ks):
        problems.append((("task", "few_shot", "split"),
                         f"'{spec.few_shot.split}' is also an evaluated split: an item could be shown with its own "
                         f"answer as an example; draw the examples from another split (e.g. train)"))
    wanted = [(("task", "few_shot", "k"), spec.few_shot.k)]
    wanted += [(("task", "variants", v, "few_shot_k"), vs.few_shot_k) for v, vs in spec.variants.items()
               if vs.few_shot_k is not None]
    for loc, k in wanted:
        try:
            task.few_shot_items(k)
        except TaskProblem as exc:  # k against the classes: at the k this variant asks for
            found = (loc if exc.loc == ("task", "few_shot", "k") else exc.loc, exc.text)
            if found not in problems:
                problems.append(found)
        except ShootoutError as exc:
            problems.append((loc, TaskProblem.words(exc)))
    return problems


class FewShotSpec(_Spec):
    k: int = Field(1, ge=0, description="examples per class (0: none)")
    seed: int = Field(0, ge=0)
    split: str = Field("train", description="the split the examples are drawn from")


class VariantSpec(_Spec):
    """A prompt variant: overrides of the task's prompt, compared like a model in the report."""

    instruction: str | None = None
    append: str | None = Field(None, description="text added after the instruction, e.g. 'Answer with one word.'")
    definitions: bool | None = Field(None, description="include the label definitions in the system prompt")
    few_shot_k: int | None = Field(None, ge=0)
