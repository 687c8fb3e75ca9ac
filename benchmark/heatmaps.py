"""Seaborn heatmaps and plots of a report, by task kind.

Value tasks: the seed's five metrics as items x models (with a Mean row), and family x quant grids.
Label tasks: a confusion matrix per model, per-class F1 as classes x models, accuracy and macro-F1
as family x quant grids, per-item correctness as items x models, and the learning curve.

Colour always reads the same way: green is better, red is worse; a metric with no better
direction (a mean sentiment) gets a diverging blue-red scale centred on 0. Metrics with a fixed
scale in the metric table (rates, F1, kappa) are drawn on it, not on the data's own min-max.
Figure size follows the table so 30+ models stay legible.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from core.naming import quant_bits, slug

ITEM_METRICS = ["s_per_sample", "valid_rate", "value_variance", "mean_value", "mean_confidence"]
VALUE_GRIDS = ["s_per_sample", "valid_rate", "value_variance", "mean_value", "mean_confidence", "gen_tok_s", "mae"]
LABEL_GRIDS = ["accuracy", "macro_f1", "vote_accuracy", "invalid_rate", "s_per_sample"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cmap(higher: bool | None):
    return "RdBu_r" if higher is None else ("RdYlGn" if higher else "RdYlGn_r")


def _annot_fmt(m) -> str:
    if m.percent:
        return ".0%"
    return "." + str(min(len(m.fmt.split(".")[1]) if "." in m.fmt else 0, 4)) + "f"


def _scale_kw(m) -> dict:
    kw: dict = {}
    if m.scale:
        kw.update(vmin=m.scale[0], vmax=m.scale[1])
    if m.higher_is_better is None:
        kw["center"] = 0.0
    return kw


def _short(label: str, n: int = 48) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _title(ax, text: str, width_in: float) -> None:
    ax.set_title("\n".join(textwrap.wrap(text, max(30, int(width_in * 9)))), fontsize=11)


def item_heatmap(report, name: str, path: Path) -> Path | None:
    """One metric as items x models with a Mean row; None when the metric has no value."""
    pa = report.per_item
    if name not in pa or pa[name].isna().all():
        return None
    import seaborn as sns

    plt = _plt()
    m = report.metric(name)
    pa = pa.copy()
    if "title" in pa:
        prefix = pa["ticker"].fillna("") + " · " if "ticker" in pa else ""
        pa["label"] = (prefix + pa["title"].fillna(pa["item_id"])).map(_short)
    else:
        pa["label"] = pa["item_id"]
    table = pa.pivot_table(index="label", columns="model", values=name, aggfunc="mean", sort=False, dropna=False)
    table = table.sort_index()
    order = list(report.details["model"])
    table = table.reindex(columns=[x for x in order if x in table.columns])
    table.loc["Mean"] = table.mean(axis=0)
    n_rows, n_cols = table.shape
    annotate = n_cols <= 16 and n_rows <= 60
    fig_w = min(4 + 0.9 * n_cols + 0.09 * max(len(str(i)) for i in table.index), 60)
    fig_h = min(2.5 + 0.32 * n_rows + 0.08 * max(len(str(c)) for c in table.columns), 60)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    sns.heatmap(table, ax=ax, cmap=_cmap(m.higher_is_better), annot=annotate, fmt=_annot_fmt(m), linewidths=0.4,
                linecolor="white", cbar_kws={"label": m.label}, **_scale_kw(m))
    ax.axhline(n_rows - 1, color="black", linewidth=2)  # separates the Mean row
    direction = ("no better direction: blue negative, red positive" if m.higher_is_better is None
                 else "green is better")
    noun = report.task.get("item_noun") or "item"
    _title(ax, f"{m.label} — {noun}s x models, run {report.run_id} ({direction}; last row: mean over {noun}s)", fig_w)
    ax.set_xlabel("model")
    ax.set_ylabel(noun)
    ax.tick_params(axis="x", labelrotation=90 if n_cols > 6 else 30)
    plt.setp(ax.get_xticklabels(), ha="right" if n_cols <= 6 else "center")
    return _save(fig, path)


def grid_heatmap(report, table_df: pd.DataFrame, name: str, path: Path) -> Path | None:
    """family x quant grid of one per-model metric (None when missing). Prompt variants get rows of
    their own (family@variant)."""
    if name not in table_df or table_df[name].isna().all():
        return None
    import seaborn as sns

    plt = _plt()
    m = report.metric(name)
    df = table_df.copy()
    if "variant" in df and df["variant"].notna().any():
        df["family"] = df["family"].astype(str) + df["variant"].map(lambda v: f"@{v}" if isinstance(v, str) else "")
    table = df.pivot_table(index="family", columns="quant", values=name, aggfunc="mean")
    table = table.reindex(columns=sorted(table.columns, key=quant_bits, reverse=True))
    width = min(max(6.0, 3 + 1.3 * table.shape[1]), 40)
    fig, ax = plt.subplots(figsize=(width, min(2.4 + 0.6 * table.shape[0], 40)))
    sns.heatmap(table, ax=ax, cmap=_cmap(m.higher_is_better), annot=True, fmt=_annot_fmt(m), linewidths=0.4,
                linecolor="white", cbar_kws={"label": m.label}, **_scale_kw(m))
    direction = "no better direction" if m.higher_is_better is None else "green is better"
    _title(ax, f"{m.label} — family x quant, run {report.run_id} ({direction})", width)
    return _save(fig, path)


def confusion_heatmap(report, model: str, table: pd.DataFrame, path: Path) -> Path:
    """Gold x answer for one model, each row as shares of that gold label's calls."""
    import seaborn as sns

    plt = _plt()
    shares = table.div(table.sum(axis=1).where(lambda s: s > 0), axis=0)
    n = max(table.shape)
    size = min(3 + 0.7 * n, 30)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    annot = table.astype(int).astype(str) + "\n" + (shares * 100).round(0).fillna(0).astype(int).astype(str) + "%"
    sns.heatmap(shares, ax=ax, cmap="Blues", vmin=0, vmax=1, annot=annot if n <= 12 else False, fmt="",
                linewidths=0.4, linecolor="white", cbar_kws={"label": "share of the gold label's calls"})
    ax.set_xlabel("answer")
    ax.set_ylabel("gold label")
    _title(ax, f"Confusion matrix — {model}, run {report.run_id} (count and share of each gold row)", size)
    return _save(fig, path)


def per_class_heatmap(report, path: Path) -> Path | None:
    pc = report.per_class
    if pc is None or pc.empty or "f1" not in pc:
        return None
    import seaborn as sns

    plt = _plt()
    labels = report.task.get("labels") or sorted(pc["class"].unique())
    table = pc.pivot_table(index="class", columns="model", values="f1", aggfunc="mean")
    table = table.reindex(index=[x for x in labels if x in table.index],
                          columns=[x for x in report.details["model"] if x in table.columns])
    w = min(4 + 0.9 * table.shape[1], 50)
    fig, ax = plt.subplots(figsize=(w, min(2.5 + 0.45 * table.shape[0], 40)))
    sns.heatmap(table, ax=ax, cmap="RdYlGn", vmin=0, vmax=1, annot=table.shape[1] <= 16, fmt=".2f", linewidths=0.4,
                linecolor="white", cbar_kws={"label": "F1"})
    ax.tick_params(axis="x", labelrotation=90 if table.shape[1] > 6 else 30)
    _title(ax, f"F1 per class — classes x models, run {report.run_id} (green is better)", w)
    return _save(fig, path)


def correctness_heatmap(report, path: Path) -> Path | None:
    pi = report.per_item
    if pi is None or pi.empty or "accuracy" not in pi:
        return None
    import seaborn as sns

    plt = _plt()
    table = pi.pivot_table(index="item_id", columns="model", values="accuracy", aggfunc="mean")
    table = table.reindex(columns=[x for x in report.details["model"] if x in table.columns])
    table = table.loc[table.mean(axis=1).sort_values().index]  # hardest items first
    w = min(4 + 0.8 * table.shape[1], 50)
    fig, ax = plt.subplots(figsize=(w, min(2.5 + 0.18 * table.shape[0], 60)))
    sns.heatmap(table, ax=ax, cmap="RdYlGn", vmin=0, vmax=1, linewidths=0.2, linecolor="white",
                yticklabels=table.shape[0] <= 80, cbar_kws={"label": "share of iterations right"})
    noun = report.task.get("item_noun") or "item"
    _title(ax, f"Correct answers — {noun}s (hardest first) x models, run {report.run_id}", w)
    return _save(fig, path)


def learning_curve_plot(report, path: Path) -> Path | None:
    lc = report.learning_curve
    if lc is None or lc.empty:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, name in zip(axes, ("accuracy", "macro_f1")):
        for split, d in lc.groupby("split", sort=False):
            d = d.sort_values("checkpoint")
            ax.plot(d["checkpoint"], d[name], marker="o", label=split)
        ax.set_xlabel("checkpoint (training step or epoch)")
        ax.set_ylabel(report.metric(name).label)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(title="split")
    fig.suptitle(f"Learning curve — run {report.run_id}: train vs held-out split per checkpoint")
    return _save(fig, path)


def write_heatmaps(report, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    paths: list[Path] = []
    if report.kind == "label":
        for model, table in report.confusion.items():
            paths.append(confusion_heatmap(report, model, table, out_dir / f"confusion_{slug(model)}.png"))
        for p in (per_class_heatmap(report, out_dir / "per_class_f1.png"),
                  correctness_heatmap(report, out_dir / "correct_by_item.png"),
                  learning_curve_plot(report, out_dir / "learning_curve.png")):
            if p:
                paths.append(p)
        grids = LABEL_GRIDS
    else:
        value_name = slug(report.task.get("value_name") or "value")
        for name in ITEM_METRICS:  # files named for the task: mean_sentiment_heatmap.png
            p = item_heatmap(report, name, out_dir / f"{name.replace('value', value_name)}_heatmap.png")
            if p:
                paths.append(p)
        grids = VALUE_GRIDS
    for name in grids:
        p = grid_heatmap(report, report.details, name, out_dir / f"grid_{name}.png")
        if p:
            paths.append(p)
    qq = report.quant_quality
    if qq is not None and len(qq) and "mean_kld" in qq:
        for name in ("mean_kld", "same_top_pct"):
            p = grid_heatmap(report, qq, name, out_dir / f"quant_quality_{name}.png")
            if p:
                paths.append(p)
    return paths
