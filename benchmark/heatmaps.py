"""Seaborn heatmaps: the seed's five metrics as articles x models (with a Mean row), and
family x quant grids of the per-model metrics.

Colour always reads the same way: green is better, red is worse. Mean sentiment has no better
direction, so it gets a diverging blue-red scale centred on 0 (neutral). Figure size follows the
table so 30+ models stay legible.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark import stats

FIVE = [  # (metric, title, higher is better, or None when there is no better direction)
    ("s_per_sample", "Seconds per sample", False),
    ("valid_rate", "Valid JSON rate", True),
    ("sentiment_variance", "Sentiment variance across iterations (consistency)", False),
    ("mean_sentiment", "Mean sentiment", None),
    ("mean_confidence", "Mean confidence", True),
]
GRID_METRICS = [("s_per_sample", "Seconds per sample"), ("valid_rate", "Valid JSON rate"),
                ("sentiment_variance", "Mean within-article sentiment variance"), ("mean_sentiment", "Mean sentiment"),
                ("mean_confidence", "Mean confidence"), ("gen_tok_s", "Generated tokens/s"),
                ("mae", "MAE vs expected sentiment")]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cmap(higher: bool | None):
    return "RdBu_r" if higher is None else ("RdYlGn" if higher else "RdYlGn_r")


def _fmt(metric: str) -> str:
    if "kld" in metric:
        return ".4f"
    if metric.endswith("pct"):
        return ".1f"
    return ".0%" if metric.endswith("rate") else ".2f"


def _short(label: str, n: int = 48) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def article_heatmap(pa: pd.DataFrame, metric: str, title: str, higher: bool | None, run_id: str,
                    path: Path, model_order: list[str] | None = None) -> Path | None:
    """One heatmap; None when the metric has no value (variance needs two iterations)."""
    if metric not in pa or pa[metric].isna().all():
        return None
    import seaborn as sns

    plt = _plt()
    pa = pa.copy()
    pa["label"] = (pa["ticker"].fillna("") + " · " + pa["title"].fillna(pa["article_id"])).map(_short) \
        if "title" in pa else pa["article_id"]
    table = pa.pivot_table(index="label", columns="model", values=metric, aggfunc="mean", sort=False, dropna=False)
    table = table.sort_index()  # by ticker, then headline
    if model_order:
        table = table.reindex(columns=[m for m in model_order if m in table.columns])
    table.loc["Mean"] = table.mean(axis=0)
    n_rows, n_cols = table.shape
    annotate = n_cols <= 16 and n_rows <= 60
    fig_w = min(4 + 0.9 * n_cols + 0.09 * max(len(str(i)) for i in table.index), 60)
    fig_h = min(2.5 + 0.32 * n_rows + 0.08 * max(len(str(c)) for c in table.columns), 60)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    kw = {"center": 0.0, "vmin": -1, "vmax": 1} if higher is None else {}
    if metric.endswith("rate"):
        kw.update(vmin=0, vmax=1)
    sns.heatmap(table, ax=ax, cmap=_cmap(higher), annot=annotate, fmt=_fmt(metric), linewidths=0.4,
                linecolor="white", cbar_kws={"label": title}, **kw)
    ax.axhline(n_rows - 1, color="black", linewidth=2)  # separates the Mean row
    direction = "no better direction: blue negative, red positive" if higher is None else "green is better"
    ax.set_title(f"{title} — articles x models, run {run_id}\n({direction}; last row: mean over articles)", fontsize=11)
    ax.set_xlabel("model")
    ax.set_ylabel("article")
    ax.tick_params(axis="x", labelrotation=90 if n_cols > 6 else 30)
    plt.setp(ax.get_xticklabels(), ha="right" if n_cols <= 6 else "center")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grid_heatmap(details: pd.DataFrame, metric: str, title: str, run_id: str, path: Path) -> Path | None:
    """family x quant grid of one per-model metric (None when the metric is missing)."""
    if metric not in details or details[metric].isna().all():
        return None
    import seaborn as sns

    plt = _plt()
    table = details.pivot_table(index="family", columns="quant", values=metric, aggfunc="mean")
    table = table.reindex(columns=sorted(table.columns, key=stats.quant_bits, reverse=True))
    higher = stats.HIGHER_IS_BETTER.get(metric)
    width = min(max(6.0, 3 + 1.3 * table.shape[1]), 40)
    fig, ax = plt.subplots(figsize=(width, min(2.4 + 0.6 * table.shape[0], 40)))
    kw = {"center": 0.0} if higher is None else {}
    sns.heatmap(table, ax=ax, cmap=_cmap(higher), annot=True, fmt=_fmt(metric), linewidths=0.4, linecolor="white",
                cbar_kws={"label": title}, **kw)
    direction = "no better direction" if higher is None else "green is better"
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(f"{title} — family x quant, run {run_id} ({direction})",
                                         int(width * 9))), fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_heatmaps(report, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    order = list(report.details["model"])
    paths = [p for m, t, h in FIVE
             if (p := article_heatmap(report.per_article, m, t, h, report.run_id, out_dir / f"{m}_heatmap.png", order))]
    for m, t in GRID_METRICS:
        p = grid_heatmap(report.details, m, t, report.run_id, out_dir / f"grid_{m}.png")
        if p:
            paths.append(p)
    qq = getattr(report, "quant_quality", None)
    if qq is not None and len(qq) and "mean_kld" in qq:
        for m, t in (("mean_kld", "Mean KLD from F16 (nats)"), ("same_top_pct", "Same top token as F16 (%)")):
            p = grid_heatmap(qq, m, t, report.run_id, out_dir / f"quant_quality_{m}.png")
            if p:
                paths.append(p)
    return paths
