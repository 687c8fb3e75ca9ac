"""What the builders of every task kind share: each model against its reference on every measure, the
comparisons of the resolved pairs, the significant best, the intervals, and the resource columns."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from benchmark.report.references import References
from benchmark.report.settings import Settings
from benchmark.stats import common
from benchmark.stats import compare as C

COLOUR_LEGEND = ("Colours: the metric's fixed scale, shown only for a model's reference and for models significantly "
                 "different from it (paired 95% interval excludes 0{how}); hatched grey = not distinguishable from "
                 "the reference; bold and boxed = significantly best of all models.{extra}")


@dataclass
class Versus:
    versus: pd.DataFrame        # every candidate against its reference, per measure
    comparisons: pd.DataFrame   # the Comparisons sheet's pairs, per measure
    best: dict                  # metric -> the significantly best model
    intervals: pd.DataFrame     # per (model, metric) the figure and its 95% interval


def resource_columns(details: pd.DataFrame) -> list[str]:
    """The resource columns measured for some model (resident memory, KV cache, VRAM, energy per call), for
    Summary and Decision."""
    return [c for c in common.RESOURCE_COLUMNS if c in details and details[c].notna().any()]


def compare_all(models: list[str], measures: dict[str, C.Measure], refs: References, cfg: Settings) -> Versus:
    """Every measure: each candidate against its reference, the resolved pairs, the best, the intervals."""
    ms = list(measures.values())
    versus = C.compare(ms, models, [(r, c) for c, r in refs.of.items()], cfg.alpha, cfg.power)
    comparisons = C.compare(ms, models, list(refs.pairs), cfg.alpha, cfg.power) if refs.configured else versus
    best = {}
    for name, m in measures.items():
        if m.kind in ("mean", "logvar", "jackknife", "speed"):
            k = C.significant_best(m, cfg.alpha)
            if k is not None:
                best[name] = models[k]
    return Versus(versus, comparisons, best, C.model_intervals(ms, models))


def pairs_note(refs: References, noun: str) -> str:
    """How the Comparisons sheet chose its pairs, and its sign."""
    which = "the configured compare pairs" if refs.configured else "each model against its reference"
    return f"Each pair [reference, candidate] ({which}), paired by {noun}. {refs.statement()}"
