"""The per-model table printed after a run: a few columns of the report's per-model metrics."""

from __future__ import annotations

from benchmark.store import Store

COLUMNS = [
    ("model", "model"), ("quant", "quant"), ("calls", "calls"), ("valid_rate", "valid JSON"),
    ("mean_sentiment", "mean sentiment"), ("sentiment_variance", "mean per-article var"),
    ("mean_confidence", "mean confidence"), ("s_per_sample", "s / sample"), ("gen_tok_s", "gen tok/s"),
]


def model_summary(store: Store, run_id: str) -> list[dict]:
    """One row per model (see ``benchmark.stats.per_model`` for the definitions)."""
    from benchmark import stats

    calls, arts, loads = stats.load_frames(store, run_id)
    if calls.empty:
        return []
    df = stats.per_model(calls, arts, loads)
    df = df.astype(object).where(df.notna(), None)
    return df[[k for k, _ in COLUMNS]].to_dict("records")


def render_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for key, label in COLUMNS:
        table.add_column(label, justify="left" if key in ("model", "quant") else "right", no_wrap=key == "model")
    for r in rows:
        cells = []
        for key, _ in COLUMNS:
            v = r[key]
            if v is None:
                cells.append("-")
            elif key == "valid_rate":
                cells.append(f"{v:.0%}")
            elif isinstance(v, float):
                cells.append(f"{v:.1f}" if key == "gen_tok_s" else f"{v:.3f}")
            else:
                cells.append(str(v))
        table.add_row(*cells)
    return table
