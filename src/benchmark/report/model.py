"""The report model: what a report of one run holds (its tables as sheets, the per-model figures, the
references and every model's test against its reference), independent of how it is written (workbook,
CSVs, charts, console). The builders per task kind (``benchmark.report.value``, ``.label``) fill it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from benchmark import metrics as M
from benchmark.report.references import References
from benchmark.report.settings import Settings
from benchmark.tasks.base import TaskInfo

ALIASES = {"cost_per_1k": "s_per_sample"}  # a column coloured and marked by another column's test


@dataclass
class Sheet:
    title: str                     # the workbook sheet
    csv: str                       # the CSV file stem
    table: pd.DataFrame
    note: str = ""
    best: bool = False             # mark the significantly best value per metric column
    colour: bool = False           # honest colours on metric columns (``benchmark.report.colours``)
    sig_cols: tuple[str, ...] = ()
    appendix: list[tuple[str, str, pd.DataFrame]] = field(default_factory=list)  # (title, csv, table) below it
    lines: list[str] = field(default_factory=list)   # text lines above the table (the Decision's verdicts)
    image: str | None = None       # "decision": the Pareto chart is drawn into the sheet
    formats: dict = field(default_factory=dict)      # column -> number format, over the metric table's


@dataclass
class Report:
    run_id: str
    task: TaskInfo                 # the run's task: kind, names, labels, value range
    details: pd.DataFrame          # one row per model (arm)
    per_item: pd.DataFrame
    sheets: list[Sheet]
    references: References | None = None
    confusion: dict[str, pd.DataFrame] = field(default_factory=dict)
    per_class: pd.DataFrame = field(default_factory=pd.DataFrame)
    learning_curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    quant_quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    settings: Settings = field(default_factory=Settings)
    versus: pd.DataFrame = field(default_factory=pd.DataFrame)       # every model vs its reference, per metric
    best: dict = field(default_factory=dict)            # metric -> significantly best model
    intervals: pd.DataFrame = field(default_factory=pd.DataFrame)    # per (model, metric) value and 95% interval
    decision: pd.DataFrame = field(default_factory=pd.DataFrame)
    decision_long: pd.DataFrame = field(default_factory=pd.DataFrame)
    decision_lines: list = field(default_factory=list)
    speed_lines: list = field(default_factory=list)     # drift warnings and the llama-bench block (Speed sheet)
    families: pd.DataFrame = field(default_factory=pd.DataFrame)     # which family: references of two families
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_class_versus: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_class_baselines: pd.DataFrame = field(default_factory=pd.DataFrame)  # (baseline, class, f1): chart marks
    sizes: dict = field(default_factory=dict)           # model -> file size in MB, as the run stored it
    draw: Callable | None = None   # the kind's own charts: (report, folder) -> paths (``benchmark.report.kinds``)
    chart: Path | None = None      # the Decision chart once drawn (copied, not drawn again, for other folders)

    @property
    def kind(self) -> str:
        return self.task.kind

    @property
    def refs(self) -> dict[str, str]:
        """candidate -> its reference (``benchmark.report.references``)."""
        return self.references.of if self.references is not None else {}

    @property
    def declared(self) -> tuple[str, ...]:
        """The metrics the task's scorer declares, in order: the source of every column list."""
        return self.task.scorer().metrics

    def columns(self, view: str, table: pd.DataFrame | None = None) -> list[str]:
        """The declared metrics shown in ``view`` that ``table`` (default: the per-model details) holds."""
        table = self.details if table is None else table
        return [c for c in M.columns(self.declared, view) if c in table]

    @property
    def value_range(self) -> tuple[float, float]:
        return self.task.value_range

    def metric(self, name: str) -> M.Metric:
        return M.metric(name, self.task.value_name or "value", self.task.noun, self.value_range)

    def sheet(self, title: str) -> Sheet:
        return next(s for s in self.sheets if s.title == title)

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {}
        for s in self.sheets:
            out[s.csv] = s.table
            for _, csv, t in s.appendix:
                out[csv] = t
        return out

    def status(self, model: str, metric: str) -> str:
        """How a cell of ``model`` on ``metric`` may be coloured: "reference" (a family's reference, or
        its only rung), "better" / "worse" / "differs" (significantly, against the reference),
        "not distinguishable" (the interval of the difference includes 0: greyed), "untested"."""
        metric = ALIASES.get(metric, metric)
        if model not in self.refs:
            return "reference" if model in set(self.details["model"]) else "untested"
        v = self.versus
        if v.empty:
            return "untested"
        hit = v[(v["candidate"] == model) & (v["metric"] == metric)]
        return str(hit["direction"].iloc[0]) if len(hit) else "untested"

    def ratio_to_reference(self, model: str, column: str, table: pd.DataFrame) -> float:
        ref = self.refs.get(model, model)
        t = table.set_index("model")[column] if "model" in table else pd.Series(dtype=float)
        try:
            return float(t.loc[model] / t.loc[ref])
        except (KeyError, ZeroDivisionError, TypeError):
            return np.nan


@dataclass
class RunData:
    """What a builder reads: one run's frames (``benchmark.stats.common.load_frames``) and its facts."""

    run_id: str
    task: TaskInfo
    settings: Settings
    calls: pd.DataFrame
    items: pd.DataFrame
    loads: pd.DataFrame
    references: References | None = None
    sizes: dict = field(default_factory=dict)         # model -> file size in MB (the run's stored model_bytes)
    checkpoints: dict = field(default_factory=dict)   # model -> training step or epoch (learning curves)
