"""The per-model table printed after a run (plain SQL and Python: no pandas at this step)."""

from __future__ import annotations

import statistics
from collections import defaultdict

from benchmark.store import Store

COLUMNS = [
    ("model", "model"), ("quant", "quant"), ("calls", "calls"), ("valid_rate", "valid JSON"),
    ("mean_sentiment", "mean sentiment"), ("mean_article_variance", "mean per-article var"),
    ("mean_confidence", "mean confidence"), ("s_per_sample", "s / sample"), ("gen_tok_s", "gen tok/s"),
]


def model_summary(store: Store, run_id: str) -> list[dict]:
    """One row per model: validity over all calls, sentiment figures over valid calls, timing over all calls.

    ``mean_article_variance`` is the consistency measure: the variance of the sentiment across the
    iterations of one article (ddof=1, articles with at least two valid replies), averaged over articles.
    """
    rows = store.calls(run_id)
    by_model: dict[str, list] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    out = []
    for model, calls in by_model.items():
        valid = [c for c in calls if c["valid"]]
        per_article: dict[str, list[float]] = defaultdict(list)
        for c in valid:
            per_article[c["article_id"]].append(c["sentiment"])
        variances = [statistics.variance(v) for v in per_article.values() if len(v) >= 2]
        gen_s = sum(c["gen_seconds"] or 0 for c in calls)
        out.append({
            "model": model, "quant": calls[0]["quant"], "calls": len(calls),
            "valid_rate": len(valid) / len(calls),
            "mean_sentiment": statistics.fmean(c["sentiment"] for c in valid) if valid else None,
            "mean_article_variance": statistics.fmean(variances) if variances else None,
            "mean_confidence": statistics.fmean(c["confidence"] for c in valid) if valid else None,
            "s_per_sample": statistics.fmean(c["wall_seconds"] for c in calls),
            "gen_tok_s": sum(c["completion_tokens"] or 0 for c in calls) / gen_s if gen_s else None,
        })
    return out


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
