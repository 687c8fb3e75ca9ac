"""The per-model table printed after a run: a few columns of the report's per-model metrics,
labelled and formatted from the metric table."""

from __future__ import annotations

from benchmark.store import Store

COLUMNS = {
    "value": ["valid_rate", "mean_value", "value_variance", "mean_confidence", "s_per_sample", "gen_tok_s"],
    "label": ["accuracy", "macro_f1", "vote_accuracy", "invalid_rate", "s_per_sample", "gen_tok_s"],
}


def model_summary(store: Store, run_id: str) -> tuple[dict, list[dict]]:
    """(the run's task, one row per model): see ``benchmark.report.details`` for the definitions."""
    from benchmark.report import details

    task, df = details(store, run_id)
    if df is None or df.empty:
        return task, []
    df = df.astype(object).where(df.notna(), None)
    keep = ["model", "quant", "calls"] + [c for c in COLUMNS[task.get("kind", "value")] if c in df]
    return task, df[keep].to_dict("records")


def render_table(task: dict, rows: list[dict], title: str):
    from rich.markup import escape
    from rich.table import Table

    from benchmark import metrics as M

    value_name, noun = task.get("value_name") or "value", task.get("item_noun") or "item"
    caption = None
    if task.get("kind", "value") != "label":
        caption = (f"{noun} var: sample variance (ddof=1) across the iterations of one {noun}, averaged over {noun}s "
                   "(the older tool's population variance is 2/3 of it at 3 iterations)")
    else:
        caption = "accuracy counts every call: an invalid reply is wrong"
    table = Table(title=escape(title), caption=escape(caption))
    cols = list(rows[0]) if rows else ["model", "quant", "calls"]
    for key in cols:
        m = M.metric(key, value_name, noun)
        label = key if key in ("model", "quant", "calls") else (m.short or m.label)
        table.add_column(escape(label), justify="left" if key in ("model", "quant") else "right",
                         no_wrap=key == "model")
    for r in rows:
        cells = []
        for key in cols:
            v = r[key]
            if key in ("model", "quant", "calls"):
                cells.append(escape(str(v)) if v is not None else "-")
            else:
                cells.append(M.metric(key, value_name, noun).text(v))
        table.add_row(*cells)
    return table
