"""What the console shows of a run: the per-model table printed after a run (the columns the task's
scorer declares for the console view that the run measured, labelled and formatted from the metric
table) and the report's verdict lines, led by the reference and sign convention they follow, with each
model's line against the trivial baselines (label tasks)."""

from __future__ import annotations

from benchmark import metrics as M
from benchmark.report.build import details
from benchmark.report.kinds import kind_of
from benchmark.report.model import Report
from benchmark.tasks.base import TaskInfo

ID_COLUMNS = ("model", "quant", "calls")
BY_MODE = ("gen_tok_s", "label_prob", "label_prob_margin")  # measured by generation, or by label scoring


def model_summary(store, run_id: str) -> tuple[TaskInfo, list[dict]]:
    """(the run's task, one row per model): see ``benchmark.report.build.details`` for the definitions."""
    task, df = details(store, run_id)
    if df is None or df.empty:
        return task, []
    # what a decoding mode measures shows only where a model measured it: log-probability mode generates
    # nothing (no "gen tok/s"), and shows the label probabilities and the time per call instead
    keep = list(ID_COLUMNS) + [c for c in M.columns(task.scorer().metrics, "console") if c in df
                               and (c not in BY_MODE or df[c].notna().any())]
    df = df.astype(object).where(df.notna(), None)
    return task, df[keep].to_dict("records")


def render_table(task: TaskInfo, rows: list[dict], title: str):
    from rich.markup import escape
    from rich.table import Table

    value_name, noun = task.value_name or "value", task.noun
    table = Table(title=escape(title), caption=escape(kind_of(task).caption(task)))
    cols = list(rows[0]) if rows else list(ID_COLUMNS)
    for key in cols:
        m = M.metric(key, value_name, noun)
        label = key if key in ID_COLUMNS else (m.short or m.label)
        table.add_column(escape(label), justify="left" if key in ("model", "quant") else "right",
                         no_wrap=key == "model")
    for r in rows:
        cells = []
        for key in cols:
            v = r[key]
            if key in ID_COLUMNS:
                cells.append(escape(str(v)) if v is not None else "-")
            else:
                cells.append(M.metric(key, value_name, noun).text(v))
        table.add_row(*cells)
    return table


def verdict_lines(report: Report) -> list[str]:
    """The Decision's verdicts for the console, after the reference and sign they follow; then the Speed
    sheet's lines (a drift warning, the order, the llama-bench block)."""
    out = [report.references.statement()] + list(report.decision_lines) if report.decision_lines else []
    return out + list(report.speed_lines)
