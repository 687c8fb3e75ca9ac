"""Heatmaps of a report: the family x quant grids of every kind (the columns the task's scorer declares
for the grid view), and each kind's own: value tasks the per-item metrics as items x models (with a
Mean row); label tasks a confusion matrix per model, per-class F1 as classes x models and per-item
correctness as items x models. ``write_heatmaps`` writes them with the plots (``benchmark.report.plots``).

Honest colours (``benchmark.report.colours``, the workbook's rule): a per-model cell is coloured on
the metric's FIXED scale (times and token rates: by the ratio to the reference, 0.5x-2x) only when
the model is a reference or differs significantly from its reference; a cell whose paired 95%
interval includes the reference's value is hatched grey and says so. Per-item cells (one item, a few
iterations) are drawn in a single hue that shows magnitude only: no per-item cell is called better
or worse. Figure size follows the table so 30+ models stay legible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report import draw as D
from benchmark.report import plots
from benchmark.report.colours import LEGEND, cell_colour, scale_colour
from benchmark.report.model import Report
from core.naming import quant_bits, slug


def item_heatmap(report, name: str, path: Path) -> Path | None:
    """One metric as items x models with a Mean row; None when the metric has no value. Per-item cells
    in one hue (magnitude only); the Mean row in the honest colours."""
    pa = report.per_item
    if name not in pa or pa[name].isna().all():
        return None
    plt = D.plt()
    m = report.metric(name)
    pa = pa.copy()
    if "title" in pa:
        prefix = pa["ticker"].fillna("") + " · " if "ticker" in pa else ""
        pa["label"] = (prefix + pa["title"].fillna(pa["item_id"])).map(D.short)
    else:
        pa["label"] = pa["item_id"]
    table = pa.pivot_table(index="label", columns="model", values=name, aggfunc="mean", sort=False, dropna=False)
    table = table.sort_index()
    order = list(report.details["model"])
    table = table.reindex(columns=[x for x in order if x in table.columns])
    n_rows, n_cols = table.shape[0] + 1, table.shape[1]
    annotate = n_cols <= 16 and n_rows <= 61
    fig_w = min(4 + 0.9 * n_cols + 0.09 * max(len(str(i)) for i in table.index), 60)
    fig_h = min(2.8 + 0.32 * n_rows + 0.08 * max(len(str(c)) for c in table.columns), 60)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    fmt = D.annot_fmt(m)
    x = table.to_numpy(dtype=float)
    if m.higher_is_better is None and m.scale:
        lo, hi = m.scale  # a value without a better direction: the diverging fixed scale for every cell
        cmap = D.cmap(m)
    else:
        lo, hi = (m.scale if m.scale else (np.nanmin(x), np.nanmax(x)) if np.isfinite(x).any() else (0, 1))
        cmap = plt.get_cmap("Blues")
    span = (hi - lo) or 1.0
    colours, texts = [], []
    for i in range(table.shape[0]):
        colours.append([("#%02x%02x%02x" % tuple(int(255 * c) for c in cmap(0.08 + 0.7 * min(max((v - lo) / span, 0), 1))[:3]))
                        if np.isfinite(v) else None for v in x[i]])
        texts.append([format(v, fmt) if annotate and np.isfinite(v) else "" for v in x[i]])
    means = report.details.set_index("model")[name] if name in report.details else table.mean(axis=0)
    row_c, row_t, row_o = [], [], []
    for model in table.columns:
        v = float(means.get(model, np.nan))
        row_c.append(cell_colour(report, model, name, v, report.details))
        status = report.status(model, name)
        row_t.append((format(v, fmt) if np.isfinite(v) else "") + ("\n≈ ref" if status == "not distinguishable" else ""))
        row_o.append(model not in report.refs)
    colours.append(row_c)
    texts.append(row_t)
    outline = [[False] * n_cols for _ in range(table.shape[0])] + [row_o]
    D.cells(ax, colours, texts, list(table.index) + ["Mean"], list(table.columns), outline)
    ax.axhline(n_rows - 1, color="black", linewidth=2)  # separates the Mean row
    noun = report.task.noun
    how = ("fixed scale, no better direction" if m.higher_is_better is None else
           f"{noun} cells: blue shows magnitude only; Mean row: green is better on the metric's fixed scale")
    D.title(ax, f"{m.label} — {noun}s x models, run {report.run_id} ({how}; {LEGEND})", fig_w)
    D.colourbar(fig, ax, m, m.label)
    ax.set_xlabel("model")
    ax.set_ylabel(noun)
    ax.tick_params(axis="x", labelrotation=90 if n_cols > 6 else 30)
    plt.setp(ax.get_xticklabels(), ha="right" if n_cols <= 6 else "center")
    return D.save(fig, path)


def grid_heatmap(report, table_df: pd.DataFrame, name: str, path: Path) -> Path | None:
    """family x quant grid of one per-model metric (None when missing), in the honest colours. Prompt
    variants get rows of their own (family@variant)."""
    if name not in table_df or table_df[name].isna().all():
        return None
    plt = D.plt()
    m = report.metric(name)
    df = table_df.copy()
    if "variant" in df and df["variant"].notna().any():
        df["family"] = df["family"].astype(str) + df["variant"].map(lambda v: f"@{v}" if isinstance(v, str) else "")
    fams = list(dict.fromkeys(df["family"]))
    quants = sorted(dict.fromkeys(df["quant"]), key=quant_bits, reverse=True)
    fmt = D.annot_fmt(m)
    colours = [[None] * len(quants) for _ in fams]
    texts = [[""] * len(quants) for _ in fams]
    outline = [[False] * len(quants) for _ in fams]
    models = set(report.details["model"])
    for r in df.itertuples(index=False):
        i, j = fams.index(r.family), quants.index(r.quant)
        v = getattr(r, name)
        if v is None or not np.isfinite(v):
            continue
        model = r.model
        status = report.status(model, name) if model in models else "untested"
        colours[i][j] = cell_colour(report, model, name, float(v), table_df) if model in models else None
        text = format(v, fmt)
        if m.ratio and model in report.refs:
            ratio = report.ratio_to_reference(model, name, table_df)
            if np.isfinite(ratio):
                text += f"\n{ratio:.2f}x ref"
        if status == "not distinguishable":
            text += "\n≈ ref"
        elif status in ("better", "worse"):
            text += f"\n{status}"
        texts[i][j] = text
        outline[i][j] = model in models and model not in report.refs
    width = min(max(6.5, 3.5 + 1.4 * len(quants)), 40)
    fig, ax = plt.subplots(figsize=(width, min(2.6 + 0.7 * len(fams), 40)))
    D.cells(ax, colours, texts, fams, quants, outline)
    D.colourbar(fig, ax, m, m.label)
    direction = "no better direction" if m.higher_is_better is None else "green is better"
    D.title(ax, f"{m.label} — family x quant, run {report.run_id} ({direction}; {LEGEND})", width)
    return D.save(fig, path)


def confusion_heatmap(report, model: str, table: pd.DataFrame, path: Path) -> Path:
    """Gold x answer for one model, each row as shares of that gold label's calls."""
    import seaborn as sns

    plt = D.plt()
    shares = table.div(table.sum(axis=1).where(lambda s: s > 0), axis=0)
    n = max(table.shape)
    size = min(3 + 0.7 * n, 30)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    annot = table.astype(int).astype(str) + "\n" + (shares * 100).round(0).fillna(0).astype(int).astype(str) + "%"
    sns.heatmap(shares, ax=ax, cmap="Blues", vmin=0, vmax=1, annot=annot if n <= 12 else False, fmt="",
                linewidths=0.4, linecolor="white", cbar_kws={"label": "share of the gold label's calls"})
    ax.set_xlabel("answer")
    ax.set_ylabel("gold label")
    D.title(ax, f"Confusion matrix — {model}, run {report.run_id} (count and share of each gold row)", size)
    return D.save(fig, path)


def per_class_table(report) -> pd.DataFrame:
    """Classes x columns of F1: every model, then the trivial baselines ("baseline: majority (spam)",
    "baseline: stratified random"), the bar a model has to clear on each class."""
    pc = report.per_class
    labels = report.task.labels or sorted(pc["class"].unique())
    table = pc.pivot_table(index="class", columns="model", values="f1", aggfunc="mean")
    table = table.reindex(index=[x for x in labels if x in table.index],
                          columns=[x for x in report.details["model"] if x in table.columns])
    pb = report.per_class_baselines
    if pb is not None and len(pb):
        base = pb.pivot_table(index="class", columns="baseline", values="f1", aggfunc="mean", sort=False)
        base.columns = [f"baseline: {c}" for c in base.columns]
        table = table.join(base.reindex(table.index))
    return table


def per_class_heatmap(report, path: Path) -> Path | None:
    """F1 per class (rows) and model (columns) on the fixed 0-1 scale; a cell not distinguishable from
    the reference's F1 on that class (paired jackknife over items) is hatched grey. The baselines' F1
    per class stand in the last columns (not coloured: no test), and a model cell at or below the best
    baseline's F1 on its class is marked "<= baseline"."""
    pc = report.per_class
    if pc is None or pc.empty or "f1" not in pc:
        return None
    plt = D.plt()
    m = report.metric("f1")
    table = per_class_table(report)
    base_cols = [c for c in table.columns if str(c).startswith("baseline: ")]
    best_base = table[base_cols].max(axis=1) if base_cols else pd.Series(np.nan, index=table.index)
    pcv = report.per_class_versus
    status = dict(zip(zip(pcv["model"], pcv["class"]), pcv["direction"])) if len(pcv) else {}
    colours, texts, outline = [], [], []
    show = table.shape[1] <= 16
    for lab in table.index:
        rc, rt, ro = [], [], []
        for col in table.columns:
            v = table.loc[lab, col]
            if col in base_cols:
                rc.append("#F2F2F2" if np.isfinite(v) else None)
                rt.append(f"{v:.2f}" if np.isfinite(v) and show else "")
                ro.append(False)
                continue
            st = status.get((col, lab), "reference" if col not in report.refs else "untested")
            if not np.isfinite(v):
                rc.append(None)
            elif st == "not distinguishable":
                rc.append("grey")
            elif st == "untested":
                rc.append(None)
            else:
                rc.append(scale_colour(float(v), True))
            below = np.isfinite(v) and np.isfinite(best_base.loc[lab]) and v <= best_base.loc[lab]
            rt.append((f"{v:.2f}" if np.isfinite(v) and show else "") +
                      ("\n≈ ref" if st == "not distinguishable" else "") + ("\n<= baseline" if below else ""))
            ro.append(col not in report.refs)
        colours.append(rc)
        texts.append(rt)
        outline.append(ro)
    w = min(4.5 + 0.9 * table.shape[1], 50)
    fig, ax = plt.subplots(figsize=(w, min(2.8 + 0.45 * table.shape[0], 40)))
    D.cells(ax, colours, texts, list(table.index), [D.short(str(c), 28) for c in table.columns], outline)
    if base_cols:
        ax.axvline(table.shape[1] - len(base_cols), color="black", linewidth=2)  # models | baselines
    D.colourbar(fig, ax, m, "F1")
    ax.tick_params(axis="x", labelrotation=90 if table.shape[1] > 6 else 30)
    D.title(ax, f"F1 per class — classes x models, run {report.run_id} (green is better; {LEGEND}; last columns: "
               "the trivial baselines' F1, grey; '<= baseline': no higher than the best of them on that class)", w)
    return D.save(fig, path)


def correctness_heatmap(report, path: Path) -> Path | None:
    pi = report.per_item
    if pi is None or pi.empty or "accuracy" not in pi:
        return None
    import seaborn as sns

    plt = D.plt()
    table = pi.pivot_table(index="item_id", columns="model", values="accuracy", aggfunc="mean")
    table = table.reindex(columns=[x for x in report.details["model"] if x in table.columns])
    table = table.loc[table.mean(axis=1).sort_values().index]  # hardest items first
    w = min(4 + 0.8 * table.shape[1], 50)
    fig, ax = plt.subplots(figsize=(w, min(2.5 + 0.18 * table.shape[0], 60)))
    sns.heatmap(table, ax=ax, cmap="Blues", vmin=0, vmax=1, linewidths=0.2, linecolor="white",
                yticklabels=table.shape[0] <= 80, cbar_kws={"label": "share of iterations right"})
    noun = report.task.noun
    D.title(ax, f"Correct answers — {noun}s (hardest first) x models, run {report.run_id} (one hue: the share of an "
               f"{noun}'s iterations answered right; no cell is called better or worse)", w)
    return D.save(fig, path)


def value_charts(report: Report, out_dir: Path) -> list[Path]:
    """A value task's own charts: each per-item metric it declares as items x models, files named for the
    task (mean_sentiment_heatmap.png)."""
    value_name = slug(report.task.value_name or "value")
    paths = []
    for name in report.columns("items", report.per_item):
        p = item_heatmap(report, name, out_dir / f"{name.replace('value', value_name)}_heatmap.png")
        if p:
            paths.append(p)
    return paths


def label_charts(report: Report, out_dir: Path) -> list[Path]:
    """A label task's own charts: confusion matrices, per-class F1, per-item correctness, learning curve."""
    paths = [confusion_heatmap(report, model, table, out_dir / f"confusion_{slug(model)}.png")
             for model, table in report.confusion.items()]
    for p in (per_class_heatmap(report, out_dir / "per_class_f1.png"),
              correctness_heatmap(report, out_dir / "correct_by_item.png"),
              plots.learning_curve_plot(report, out_dir / "learning_curve.png")):
        if p:
            paths.append(p)
    return paths


def write_heatmaps(report: Report, out_dir: Path) -> list[Path]:
    """Every chart of a report into ``out_dir``: the kind's own, the family x quant grid of each metric the
    task declares for the grid, the Decision chart, reliability diagrams, quant-quality grids."""
    out_dir = Path(out_dir)
    paths: list[Path] = list(report.draw(report, out_dir)) if report.draw else []
    for name in report.columns("grid"):
        p = grid_heatmap(report, report.details, name, out_dir / f"grid_{name}.png")
        if p:
            paths.append(p)
    for p in (plots.decision_png(report, out_dir / "decision_pareto.png"),
              plots.reliability_plot(report, out_dir / "reliability.png")):
        if p:
            paths.append(p)
    qq = report.quant_quality
    if qq is not None and len(qq) and "mean_kld" in qq:
        for name in ("mean_kld", "same_top_pct"):
            p = grid_heatmap(report, qq, name, out_dir / f"quant_quality_{name}.png")
            if p:
                paths.append(p)
    return paths
