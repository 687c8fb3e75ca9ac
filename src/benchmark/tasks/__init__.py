"""Tasks: the built-in ones by name, and classification tasks from a config block.

See ``benchmark.tasks.base`` for the protocol every task follows. A new built-in task is one
module that registers here; a classification task needs no code (``task:`` block in config.yaml).
"""

from __future__ import annotations

from benchmark.tasks.base import Task
from benchmark.tasks.sentiment import SENTIMENT

BUILTIN: dict[str, Task] = {SENTIMENT.name: SENTIMENT}


def task_for(cfg) -> Task:
    """The task a config names: a built-in by name, or a classification task from its block."""
    spec = cfg.task
    if isinstance(spec, str):
        return BUILTIN[spec]
    from benchmark.tasks.classify import ClassifyTask

    return ClassifyTask(spec, base_dir=cfg.base_dir)
