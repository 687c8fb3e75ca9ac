"""Tasks: the built-in ones by name, and tasks written as a config block (no code).

See ``benchmark.tasks.base`` for the protocol every task follows. A new built-in task is one
module that registers in ``BUILTIN``; a config-block task is a spec model and a task class
registered in ``BLOCKS`` under the block's ``kind`` (classify: labels; score: a number in a range).
"""

from __future__ import annotations

from benchmark.tasks.base import Task
from benchmark.tasks.sentiment import SENTIMENT

BUILTIN: dict[str, Task] = {SENTIMENT.name: SENTIMENT}


def _classify(spec, base_dir) -> Task:
    from benchmark.tasks.classify import ClassifyTask

    return ClassifyTask(spec, base_dir=base_dir)


def _score(spec, base_dir) -> Task:
    from benchmark.tasks.score import ScoreTask

    return ScoreTask(spec, base_dir=base_dir)


# a config block's ``kind`` -> (the report's task kind, the task it builds)
BLOCKS = {"classify": ("label", _classify), "score": ("value", _score)}


def kind_of(spec) -> str:
    """The report's task kind ("label", "value") of a config's ``task``: a built-in name or a block."""
    if isinstance(spec, str):
        return BUILTIN[spec].scorer.kind
    return BLOCKS[spec.kind][0]


def task_for(cfg) -> Task:
    """The task a config names: a built-in by name, or a task from its block."""
    spec = cfg.task
    if isinstance(spec, str):
        return BUILTIN[spec]
    return BLOCKS[spec.kind][1](spec, cfg.base_dir)
