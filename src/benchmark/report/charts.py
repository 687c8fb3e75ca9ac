"""Heatmaps and charts of a report, by task kind.

Value tasks: the per-item metrics as items x models (with a Mean row), and family x quant grids.
Label tasks: a confusion matrix per model, per-class F1 as classes x models, accuracy and macro-F1
as family x quant grids, per-item correctness as items x models, and the learning curve.
Both: the Decision chart (quality with its interval x seconds per sample x file size, Pareto-optimal
rungs marked, each rung's verdict) and the reliability diagrams (calibration).

Honest colours (the same rule as the workbook, ``benchmark.report.cell_colour``): a per-model cell
is coloured on the metric's FIXED scale (times and token rates: by the ratio to the family's
reference, 0.5x-2x) only when the model is its family's reference or differs significantly from
it; a cell whose paired 95% interval includes the reference's value is hatched grey and says so.
Per-item cells (one item, a few iterations) are drawn in a single hue that shows magnitude only:
no per-item cell is called better or worse. Figure size follows the table so 30+ models stay legible.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from core.naming import quant_bits, slug

ITEM_METRICS = ["s_per_sample", "valid_rate", "value_variance", "mean_value", "mean_confidence"]
VALUE_GRIDS = ["s_per_sample", "valid_rate", "value_variance", "mean_value", "mean_confidence", "gen_tok_s", "mae",
               "sign_accuracy"]
LABEL_GRIDS = ["accuracy", "macro_f1", "vote_accuracy", "invalid_rate", "s_per_sample"]
HATCH = "////"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _annot_fmt(m) -> str:
    if m.percent:
        return ".0%"
    return "." + str(min(len(m.fmt.split(".")[1]) if "." in m.fmt else 0, 4)) + "f"


def _short(label: str, n: int = 48) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _save(fig, path: Path) -> Path:
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # a one-row figure cannot always fit its title: drawn as it is, not warned
        warnings.filterwarnings("ignore", "Tight layout not applied", UserWarning)
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _title(ax, text: str, width_in: float) -> None:
    ax.set_title("\n".join(textwrap.wrap(text, max(30, int(width_in * 9)))), fontsize=11)


def _cmap(m):
    """The colour map of the workbook's fixed scale (red-yellow-green, reversed when lower is better;
    blue-white-red without a better direction)."""
    from matplotlib.colors import LinearSegmentedColormap

    from benchmark.report import _scale_colour

    cols = ["#" + _scale_colour(t, m.higher_is_better) for t in np.linspace(0, 1, 11)]
    return LinearSegmentedColormap.from_list("fixed", cols)


def _colourbar(fig, ax, m, label: str):
    import matplotlib as mpl

    from benchmark import metrics as M

    if m.ratio:
        lo, hi = M.RATIO_SCALE
        norm = mpl.colors.LogNorm(lo, hi)
        label = f"{_short(label, 28)}: ratio to reference"
    elif m.scale:
        norm = mpl.colors.LogNorm(*m.scale) if m.log_scale else mpl.colors.Normalize(*m.scale)
    else:
        return
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=_cmap(m))
    fig.colorbar(sm, ax=ax, label=_short(label, 60), fraction=0.05, pad=0.02)


def _draw_cells(ax, colours: list[list[str | None]], texts: list[list[str]], row_labels, col_labels,
                outline: list[list[bool]] | None = None):
    """Rectangles coloured "#rrggbb", hatched grey ("grey") or white (None), with their text."""
    from matplotlib.patches import Rectangle

    n_r, n_c = len(row_labels), len(col_labels)
    for i in range(n_r):
        for j in range(n_c):
            c = colours[i][j]
            if c == "grey":
                ax.add_patch(Rectangle((j, i), 1, 1, facecolor="#ededed", edgecolor="#9a9a9a", hatch=HATCH,
                                       linewidth=0.4))
            else:
                ax.add_patch(Rectangle((j, i), 1, 1, facecolor=("#" + c) if c and not c.startswith("#") else
                                       (c or "white"), edgecolor="white", linewidth=0.8))
            if outline and outline[i][j]:
                ax.add_patch(Rectangle((j + 0.03, i + 0.03), 0.94, 0.94, fill=False, edgecolor="black", linewidth=1.6))
            if texts[i][j]:
                ax.text(j + 0.5, i + 0.5, texts[i][j], ha="center", va="center", fontsize=8)
    ax.set_xlim(0, n_c)
    ax.set_ylim(n_r, 0)
    ax.set_xticks(np.arange(n_c) + 0.5)
    ax.set_xticklabels(col_labels)
    ax.set_yticks(np.arange(n_r) + 0.5)
    ax.set_yticklabels(row_labels)
    for s in ax.spines.values():
        s.set_visible(False)


LEGEND = ("hatched grey: not distinguishable from the family reference (paired 95% interval includes it); "
          "outlined: the reference")


def _cell(report, model: str, name: str, value: float, table: pd.DataFrame) -> str | None:
    from benchmark.report import cell_colour

    return cell_colour(report, model, name, value, table)


def item_heatmap(report, name: str, path: Path) -> Path | None:
    """One metric as items x models with a Mean row; None when the metric has no value. Per-item cells
    in one hue (magnitude only); the Mean row in the honest colours."""
    pa = report.per_item
    if name not in pa or pa[name].isna().all():
        return None
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
    n_rows, n_cols = table.shape[0] + 1, table.shape[1]
    annotate = n_cols <= 16 and n_rows <= 61
    fig_w = min(4 + 0.9 * n_cols + 0.09 * max(len(str(i)) for i in table.index), 60)
    fig_h = min(2.8 + 0.32 * n_rows + 0.08 * max(len(str(c)) for c in table.columns), 60)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    fmt = _annot_fmt(m)
    x = table.to_numpy(dtype=float)
    if m.higher_is_better is None and m.scale:
        lo, hi = m.scale  # a value without a better direction: the diverging fixed scale for every cell
        cmap = _cmap(m)
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
        row_c.append(_cell(report, model, name, v, report.details))
        status = report.status(model, name)
        row_t.append((format(v, fmt) if np.isfinite(v) else "") + ("\n≈ ref" if status == "not distinguishable" else ""))
        row_o.append(model not in report.refs)
    colours.append(row_c)
    texts.append(row_t)
    outline = [[False] * n_cols for _ in range(table.shape[0])] + [row_o]
    _draw_cells(ax, colours, texts, list(table.index) + ["Mean"], list(table.columns), outline)
    ax.axhline(n_rows - 1, color="black", linewidth=2)  # separates the Mean row
    noun = report.task.get("item_noun") or "item"
    how = ("fixed scale, no better direction" if m.higher_is_better is None else
           f"{noun} cells: blue shows magnitude only; Mean row: green is better on the metric's fixed scale")
    _title(ax, f"{m.label} — {noun}s x models, run {report.run_id} ({how}; {LEGEND})", fig_w)
    _colourbar(fig, ax, m, m.label)
    ax.set_xlabel("model")
    ax.set_ylabel(noun)
    ax.tick_params(axis="x", labelrotation=90 if n_cols > 6 else 30)
    plt.setp(ax.get_xticklabels(), ha="right" if n_cols <= 6 else "center")
    return _save(fig, path)


def grid_heatmap(report, table_df: pd.DataFrame, name: str, path: Path) -> Path | None:
    """family x quant grid of one per-model metric (None when missing), in the honest colours. Prompt
    variants get rows of their own (family@variant)."""
    if name not in table_df or table_df[name].isna().all():
        return None
    plt = _plt()
    m = report.metric(name)
    df = table_df.copy()
    if "variant" in df and df["variant"].notna().any():
        df["family"] = df["family"].astype(str) + df["variant"].map(lambda v: f"@{v}" if isinstance(v, str) else "")
    fams = list(dict.fromkeys(df["family"]))
    quants = sorted(dict.fromkeys(df["quant"]), key=quant_bits, reverse=True)
    fmt = _annot_fmt(m)
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
        colours[i][j] = _cell(report, model, name, float(v), table_df) if model in models else None
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
    _draw_cells(ax, colours, texts, fams, quants, outline)
    _colourbar(fig, ax, m, m.label)
    direction = "no better direction" if m.higher_is_better is None else "green is better"
    _title(ax, f"{m.label} — family x quant, run {report.run_id} ({direction}; {LEGEND})", width)
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
    """F1 per class (rows) and model (columns) on the fixed 0-1 scale; a cell not distinguishable from
    the reference's F1 on that class (paired bootstrap over items) is hatched grey."""
    pc = report.per_class
    if pc is None or pc.empty or "f1" not in pc:
        return None
    plt = _plt()
    m = report.metric("f1")
    labels = report.task.get("labels") or sorted(pc["class"].unique())
    table = pc.pivot_table(index="class", columns="model", values="f1", aggfunc="mean")
    table = table.reindex(index=[x for x in labels if x in table.index],
                          columns=[x for x in report.details["model"] if x in table.columns])
    pcv = report.per_class_versus
    status = dict(zip(zip(pcv["model"], pcv["class"]), pcv["direction"])) if len(pcv) else {}
    from benchmark.report import _scale_colour

    colours, texts, outline = [], [], []
    for lab in table.index:
        rc, rt, ro = [], [], []
        for model in table.columns:
            v = table.loc[lab, model]
            st = status.get((model, lab), "reference" if model not in report.refs else "untested")
            if not np.isfinite(v):
                rc.append(None)
            elif st == "not distinguishable":
                rc.append("grey")
            elif st == "untested":
                rc.append(None)
            else:
                rc.append(_scale_colour(float(v), True))
            rt.append((f"{v:.2f}" if np.isfinite(v) and table.shape[1] <= 16 else "") +
                      ("\n≈ ref" if st == "not distinguishable" else ""))
            ro.append(model not in report.refs)
        colours.append(rc)
        texts.append(rt)
        outline.append(ro)
    w = min(4.5 + 0.9 * table.shape[1], 50)
    fig, ax = plt.subplots(figsize=(w, min(2.8 + 0.45 * table.shape[0], 40)))
    _draw_cells(ax, colours, texts, list(table.index), list(table.columns), outline)
    _colourbar(fig, ax, m, "F1")
    ax.tick_params(axis="x", labelrotation=90 if table.shape[1] > 6 else 30)
    _title(ax, f"F1 per class — classes x models, run {report.run_id} (green is better; {LEGEND})", w)
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
    sns.heatmap(table, ax=ax, cmap="Blues", vmin=0, vmax=1, linewidths=0.2, linecolor="white",
                yticklabels=table.shape[0] <= 80, cbar_kws={"label": "share of iterations right"})
    noun = report.task.get("item_noun") or "item"
    _title(ax, f"Correct answers — {noun}s (hardest first) x models, run {report.run_id} (one hue: the share of an "
               f"{noun}'s iterations answered right; no cell is called better or worse)", w)
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


VERDICT_COLOURS = {"equivalent": "#2e7d32", "non-inferior": "#66bb6a", "worse": "#c62828", "inconclusive": "#9e9e9e",
                   "differs": "#ef6c00",
                   "reference": "#1f4e79", "only rung": "#1f4e79", "no reference": "#1f4e79"}


def decision_chart(report, path: Path) -> Path | None:
    """Per family: quality (with its 95% interval) against seconds per sample, and against file size when
    known; Pareto-optimal rungs as filled stars joined by the frontier; each rung labelled with its quant
    and verdict; the reference's margin as a shaded band."""
    d = report.decision
    if d is None or d.empty:
        return None
    plt = _plt()
    primary = d.attrs.get("metric") or (report.decision_long["metric"].iloc[0] if len(report.decision_long)
                                        else ("mae" if report.kind != "label" else "accuracy"))
    m = report.metric(primary)
    margin = report.settings.margins.get(primary) if report.settings else None
    fams = list(dict.fromkeys(d["family"]))
    has_size = d["size_mb"].notna().any()
    ncol = 2 if has_size else 1
    fig, axes = plt.subplots(len(fams), ncol, figsize=(6.2 * ncol, 4.4 * len(fams)), squeeze=False)
    for fi, fam in enumerate(fams):
        g = d[d["family"] == fam]
        panels = [("s_per_sample", "seconds per sample (lower is better)")]
        if has_size:
            panels.append(("size_mb", "file size, MB (lower is better)"))
        for pj, (xcol, xlabel) in enumerate(panels):
            ax = axes[fi][pj]
            ref = g[g["role"] == "reference"]
            if margin and len(ref) and np.isfinite(ref["quality"].iloc[0]):
                q0 = float(ref["quality"].iloc[0])
                edge = q0 + margin if m.higher_is_better is False else q0 - margin
                ax.axhspan(min(q0, edge), max(q0, edge), color="#1f4e79", alpha=0.08,
                           label=f"within the margin ({margin:g}) of the reference")
                ax.axhline(q0, color="#1f4e79", lw=0.8, ls=":")
            for r in g.itertuples(index=False):
                x = getattr(r, xcol)
                if x is None or not np.isfinite(x):
                    continue
                col = VERDICT_COLOURS.get(r.verdict, "#555555")
                yerr = None
                if np.isfinite(r.quality_ci95_low):
                    yerr = [[r.quality - r.quality_ci95_low], [r.quality_ci95_high - r.quality]]
                ax.errorbar([x], [r.quality], yerr=yerr, fmt="none", ecolor=col, elinewidth=1.2, capsize=3)
                ax.scatter([x], [r.quality], s=170 if r.pareto else 70, marker="*" if r.pareto else "o",
                           facecolors=col if r.pareto else "white", edgecolors=col, linewidths=1.5, zorder=3)
                ax.annotate(f"{r.quant}\n{r.verdict}", (x, r.quality), textcoords="offset points", xytext=(7, 5),
                            fontsize=8, color=col)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{m.short or m.label} (95% CI; better is up)")
            if m.percent:
                ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
            ax.grid(alpha=0.3)
            if m.higher_is_better is False:
                ax.invert_yaxis()  # better is up
            ax.set_title(f"{fam}: quality vs {'speed' if xcol == 's_per_sample' else 'size'}", fontsize=10)
            if fi == 0 and pj == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Decision — run {report.run_id}: {m.label}. Stars: Pareto-optimal (no other rung as good, as fast "
                 "and as small, and better on one); colour and label: the verdict against the family's reference",
                 fontsize=9, wrap=True)
    return _save(fig, path)


def reliability_plot(report, path: Path) -> Path | None:
    """Reliability diagram per model: share right against mean confidence per bin (marker area ~ calls),
    the diagonal is perfect calibration; ECE in the title."""
    rel, cal = report.reliability, report.calibration
    if rel is None or rel.empty:
        return None
    plt = _plt()
    models = list(cal["model"])
    ncol = min(4, len(models))
    nrow = int(np.ceil(len(models) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.4 * nrow), squeeze=False)
    for k, model in enumerate(models):
        ax = axes[k // ncol][k % ncol]
        t = rel[rel["model"] == model]
        c = cal[cal["model"] == model].iloc[0]
        ax.plot([0, 1], [0, 1], color="#888888", lw=0.8, ls="--")
        ax.bar(t["low"], t["accuracy"], width=t["high"] - t["low"], align="edge", color="#9ecae1", edgecolor="#3182bd",
               alpha=0.6)
        ax.scatter(t["mean_confidence"], t["accuracy"], s=10 + 200 * t["calls"] / max(t["calls"].max(), 1),
                   color="#08519c", zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{model}\nECE {c['ece']:.3f}, {int(c['calls'])} calls", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_ylabel("share right")
    for k in range(len(models), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    what = cal["confidence_from"].iloc[0] if "confidence_from" in cal else "confidence"
    fig.suptitle(f"Reliability — run {report.run_id}: {what} (marker area ~ calls; diagonal = calibrated)",
                 fontsize=10)
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
    from benchmark.report import decision_png

    for p in (decision_png(report, out_dir / "decision_pareto.png"), reliability_plot(report, out_dir / "reliability.png")):
        if p:
            paths.append(p)
    qq = report.quant_quality
    if qq is not None and len(qq) and "mean_kld" in qq:
        for name in ("mean_kld", "same_top_pct"):
            p = grid_heatmap(report, qq, name, out_dir / f"quant_quality_{name}.png")
            if p:
                paths.append(p)
    return paths
