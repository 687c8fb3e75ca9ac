"""The task kinds, declared: for each kind, the builder of its statistics and sheets, its end-of-run
table, the per-call scores its planner can size a study for, its own charts and its console caption.
Nothing else in the report switches on a kind: ``KINDS[task.kind]`` is the one dispatch.

What a kind reports is not listed here: the task's scorer declares its metrics
(``benchmark.tasks.base``), and the metric table (``benchmark.metrics``) says for each where it
shows, how it is formatted and coloured and whether the Decision tests it.

A new kind needs: a scorer in ``benchmark.tasks.base`` (its ``kind`` and declared ``metrics``), its
metrics in ``benchmark.metrics`` (with ``kinds``), a builder module beside ``value.py`` and
``label.py`` (``build``, ``details``, ``plan_scores``; ``FALLBACK``: the Decision's metric when none
declared has data), its charts in ``charts.py``, and
one row below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from benchmark.report import charts, label, value
from benchmark.report.model import Report, RunData
from benchmark.tasks.base import TaskInfo
from core.errors import ShootoutError


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable[[RunData], Report]                     # statistics and sheets (the Decision first)
    details: Callable[[RunData], pd.DataFrame]             # one row per model: the end-of-run table
    plan_scores: Callable[[RunData, list], dict]           # per-call scores the planner sizes a study for
    charts: Callable[[Report, Path], list[Path]]           # the kind's own charts (grids and plots are shared)
    caption: Callable[[TaskInfo], str]                     # what the console table's figures mean


def _value_caption(t: TaskInfo) -> str:
    noun = t.noun
    return (f"{noun} var: sample variance (ddof=1) across the iterations of one {noun}, averaged over {noun}s "
            f"(the older tool's population variance is 2/3 of it at 3 iterations); {t.value_name or 'value'} on "
            f"[{t.low:g}, {t.high:g}]")


KINDS: dict[str, Kind] = {
    "value": Kind("value", value.build, value.details, value.plan_scores, charts.value_charts, _value_caption),
    "label": Kind("label", label.build, label.details, label.plan_scores, charts.label_charts,
                  lambda t: "accuracy counts every call: an invalid reply is wrong"),
}


def kind_of(task: TaskInfo) -> Kind:
    if task.kind not in KINDS:
        raise ShootoutError(f"task '{task.name}' is of kind '{task.kind}', which this version cannot report",
                            f"kinds known here: {', '.join(KINDS)}; report it with the version that ran it")
    return KINDS[task.kind]
