"""Matplotlib helpers every chart of a report uses: a headless backend, saving, wrapped titles, the
colour map and colour bar of a metric's fixed scale, and cells drawn in the honest colours."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from benchmark import metrics as M
from benchmark.report.colours import scale_colour

HATCH = "////"


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def annot_fmt(m: M.Metric) -> str:
    if m.percent:
        return ".0%"
    return "." + str(min(len(m.fmt.split(".")[1]) if "." in m.fmt else 0, 4)) + "f"


def short(label: str, n: int = 48) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def save(fig, path: Path) -> Path:
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # a one-row figure cannot always fit its title: drawn as it is, not warned
        warnings.filterwarnings("ignore", "Tight layout not applied", UserWarning)
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt().close(fig)
    return path


def title(ax, text: str, width_in: float) -> None:
    ax.set_title("\n".join(textwrap.wrap(text, max(30, int(width_in * 9)))), fontsize=11)


def cmap(m: M.Metric):
    """The colour map of the workbook's fixed scale (red-yellow-green, reversed when lower is better;
    blue-white-red without a better direction)."""
    from matplotlib.colors import LinearSegmentedColormap

    cols = ["#" + scale_colour(t, m.higher_is_better) for t in np.linspace(0, 1, 11)]
    return LinearSegmentedColormap.from_list("fixed", cols)


def colourbar(fig, ax, m: M.Metric, label: str):
    import matplotlib as mpl

    if m.ratio:
        lo, hi = M.RATIO_SCALE
        norm = mpl.colors.LogNorm(lo, hi)
        label = f"{short(label, 28)}: ratio to reference"
    elif m.scale:
        norm = mpl.colors.LogNorm(*m.scale) if m.log_scale else mpl.colors.Normalize(*m.scale)
    else:
        return
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap(m))
    fig.colorbar(sm, ax=ax, label=short(label, 60), fraction=0.05, pad=0.02)


def cells(ax, colours: list[list[str | None]], texts: list[list[str]], row_labels, col_labels,
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
