"""The colour policy every view follows (workbook cells, heatmap cells, the Decision's verdicts).

A metric's cell is coloured on the metric's FIXED scale (``benchmark.metrics``; times and rates by
their ratio to the reference on a fixed 0.5x-2x log scale) only for a model's reference and for
models that differ significantly from it (paired 95% interval of the difference excludes 0); a cell
whose interval includes the reference's value is hatched grey ("grey"). A figure measured once,
exactly (an export check), is coloured on its scale without a test. Green is better; a metric
without a better direction is blue-white-red around its scale's middle.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmark import metrics as M
from benchmark.report.model import Report

GREEN, YELLOW, RED, GREY = "63BE7B", "FFEB84", "F8696B", "BFBFBF"
VERDICT_FILLS = {"equivalent": "C6EFCE", "non-inferior": "E2EFDA", "worse": "FFC7CE", "inconclusive": "EDEDED",
                 "differs": "FCE4D6"}
LEGEND = ("hatched grey: not distinguishable from the reference (paired 95% interval includes it); "
          "outlined: the reference")


def _hex(rgb) -> str:
    return "".join(f"{int(round(255 * c)):02X}" for c in rgb[:3])


def scale_colour(t: float, higher_is_better: bool | None) -> str:
    """Colour of a position t in [0, 1] on the fixed scale: red-yellow-green (or its reverse), or blue-white-red
    for a metric without a better direction."""
    t = float(min(max(t, 0.0), 1.0))
    if higher_is_better is None:
        stops = [(0.26, 0.45, 0.71), (0.97, 0.97, 0.97), (0.80, 0.25, 0.25)]
    else:
        stops = [tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)) for h in (RED, YELLOW, GREEN)]
        if higher_is_better is False:
            stops = stops[::-1]
    if t <= 0.5:
        a, b, u = stops[0], stops[1], t / 0.5
    else:
        a, b, u = stops[1], stops[2], (t - 0.5) / 0.5
    return _hex([a[i] + (b[i] - a[i]) * u for i in range(3)])


def ratio_position(ratio: float) -> float:
    """Where a ratio to the reference lies on the fixed 0.5x .. 2x log scale, 0 .. 1 (clipped by the caller)."""
    lo, hi = M.RATIO_SCALE
    return (math.log(ratio) - math.log(lo)) / (math.log(hi) - math.log(lo))


def cell_colour(report: Report, model: str, col: str, value: float, table: pd.DataFrame) -> str | None:
    """The fill of one metric cell: a hex colour, "grey" (hatched: not distinguishable from the reference), or
    None (not coloured: no test for this metric, no fixed scale, or not a model)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    m = report.metric(col)
    if m.exact and m.scale is not None:  # measured once, exactly (export checks): its place on the scale
        return scale_colour(m.position(float(value)), m.higher_is_better)
    status = report.status(model, col)
    if status == "untested":
        return None
    if status == "not distinguishable":
        return "grey"
    if m.ratio:
        r = report.ratio_to_reference(model, col, table) if model in report.refs else 1.0
        if not np.isfinite(r) or r <= 0:
            return None
        return scale_colour(ratio_position(r), m.higher_is_better)
    if m.scale is None:
        return None
    return scale_colour(m.position(float(value)), m.higher_is_better)
