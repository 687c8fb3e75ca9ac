"""Plots of a report: the Decision chart (quality with its interval against seconds per sample and the
stored file size, Pareto-optimal rungs marked, each rung's verdict against its reference), reliability
diagrams (calibration) and the learning curve of a fine-tune's checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from benchmark.report import draw as D
from benchmark.report.model import Report


def learning_curve_plot(report: Report, path: Path) -> Path | None:
    lc = report.learning_curve
    if lc is None or lc.empty:
        return None
    plt = D.plt()
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
    return D.save(fig, path)


VERDICT_COLOURS = {"equivalent": "#2e7d32", "non-inferior": "#66bb6a", "worse": "#c62828", "inconclusive": "#9e9e9e",
                   "differs": "#ef6c00",
                   "reference": "#1f4e79", "only rung": "#1f4e79", "no reference": "#1f4e79"}


def decision_chart(report: Report, path: Path) -> Path | None:
    """Per family: quality (with its 95% interval) against seconds per sample, and against file size when
    known; Pareto-optimal rungs as filled stars joined by the frontier; each rung labelled with its quant
    and verdict; the reference's margin as a shaded band."""
    d = report.decision
    if d is None or d.empty:
        return None
    plt = D.plt()
    primary = d.attrs["metric"]
    m = report.metric(primary)
    long = report.decision_long
    tested = long.loc[long["metric"] == primary, "margin"] if len(long) else []
    margin = float(tested.iloc[0]) if len(tested) else (report.settings.margins or {}).get(primary)
    fams = list(dict.fromkeys(d["family"]))
    has_size = d["size_mb"].notna().any()
    ncol = 2 if has_size else 1
    fig, axes = plt.subplots(len(fams), ncol, figsize=(6.2 * ncol, 4.4 * len(fams)), squeeze=False)
    for fi, fam in enumerate(fams):
        g = d[d["family"] == fam]
        # a rung is named by its quant, unless two of the family share one (prompt variants, fine-tunes)
        names = g["quant"] if g["quant"].is_unique else g["model"]
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
            for name, r in zip(names, g.itertuples(index=False)):
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
                ax.annotate(f"{name}\n{r.verdict}", (x, r.quality), textcoords="offset points", xytext=(7, 5),
                            fontsize=8, color=col)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{m.short or m.label} (95% CI; better is up)")
            if m.percent:
                ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
                # a share lies in [0, 1]: an interval reaching past it (few items) runs to the frame's edge
                lo, hi = sorted(ax.get_ylim())
                ax.set_ylim(max(lo, -0.02), min(hi, 1.02))
            ax.grid(alpha=0.3)
            if m.higher_is_better is False:
                ax.invert_yaxis()  # better is up
            ax.set_title(f"{fam}: quality vs {'speed' if xcol == 's_per_sample' else 'size'}", fontsize=10)
            if fi == 0 and pj == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Decision — run {report.run_id}: {m.label}. Stars: Pareto-optimal (no other rung as good, as fast "
                 "and as small, and better on one); colour and label: the verdict against its reference "
                 f"({report.references.rule if report.references else 'none'})",
                 fontsize=9, wrap=True)
    return D.save(fig, path)


def reliability_plot(report: Report, path: Path) -> Path | None:
    """Reliability diagram per model: share right against mean confidence per bin (marker area ~ calls),
    the diagonal is perfect calibration; ECE in the title."""
    rel, cal = report.reliability, report.calibration
    if rel is None or rel.empty:
        return None
    plt = D.plt()
    models = list(cal["model"])
    ncol = min(4, len(models))
    nrow = int(np.ceil(len(models) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.4 * nrow), squeeze=False)
    for k, model in enumerate(models):
        ax = axes[k // ncol][k % ncol]
        t = rel[rel["model"] == model]
        c = cal[cal["model"] == model].iloc[0]
        ax.plot([0, 1], [0, 1], color="#888888", lw=0.8, ls="--")
        ax.bar(t["low"], t["accuracy_answered"], width=t["high"] - t["low"], align="edge", color="#9ecae1", edgecolor="#3182bd",
               alpha=0.6)
        ax.scatter(t["mean_confidence"], t["accuracy_answered"], s=10 + 200 * t["calls"] / max(t["calls"].max(), 1),
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
    return D.save(fig, path)


def decision_png(report: Report, path: Path) -> Path | None:
    """The Decision chart at ``path``: drawn once per report, then copied (workbook, CSV folder, heatmaps)."""
    if report.chart is not None and report.chart.is_file():
        if report.chart.resolve() != path.resolve():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(report.chart, path)
        return path
    report.chart = decision_chart(report, path)
    return report.chart
