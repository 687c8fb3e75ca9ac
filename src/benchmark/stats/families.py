"""Which family: two families compared at each one's reference (its widest rung), on the Decision's
quality metrics, paired by item (an item's iterations reduced first).

Unlike a rung against its reference (one-sided: may the candidate replace it?), a family comparison
has no default side: per metric the two-sided paired t over items, Holm-adjusted across the pair's
metrics, says which family is better (adjusted p below alpha, by the sign of the difference), EQUIVALENT
when the 90% interval lies inside +-margin (two one-sided tests), else NOT DISTINGUISHABLE, with the
items that would decide it at the margin (``paired.items_to_decide``: the item count at which the 90%
interval is one margin wide, from the sd of the per-item differences only). The pair's verdict: the
family every significant metric favours, MIXED when they disagree, EQUIVALENT when every metric is, NOT
DISTINGUISHABLE otherwise. A spread of exactly 0 gets the Decision's floor (``paired.zero_spread_bound``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark import metrics as M
from benchmark.stats import paired as P
from benchmark.stats.common import holm
from benchmark.stats.compare import Measure

COLUMNS = ["family_a", "reference_a", "family_b", "reference_b", "metric", "items", "value_a", "value_b",
           "diff", "ci95_low", "ci95_high", "ci90_low", "ci90_high", "margin", "p", "p_holm", "mde80",
           "items_to_decide", "verdict"]


def family_pairs(models: pd.DataFrame, refs: dict[str, str], pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs [a, b] of family references to compare: the configured pairs whose arms lie in two
    families (each arm taken at its family's reference), else every family's reference against the
    first family's. ``models``: one row per model in report order with its family."""
    family = dict(zip(models["model"], models["family"]))
    ref_of = {m: refs.get(m, m) for m in family}
    out: list[tuple[str, str]] = []
    for a, b in pairs:
        if a in family and b in family and family[a] != family[b]:
            pair = (ref_of[a], ref_of[b])
            if pair not in out:
                out.append(pair)
    if out:
        return out
    heads = list(dict.fromkeys(ref_of[m] for m in family))  # each family's reference, in report order
    return [(heads[0], h) for h in heads[1:] if family[h] != family[heads[0]]]


def compare_families(measures: dict[str, Measure], models: pd.DataFrame, pairs: list[tuple[str, str]],
                     margins: dict[str, float], alpha: float = 0.05, power: float = 0.8,
                     value_range: tuple[float, float] = (-1.0, 1.0)) -> pd.DataFrame:
    """One row per (pair, quality metric with a direction); ``diff`` is b - a on the metric's scale."""
    index = {m: k for k, m in enumerate(models["model"])}
    family = dict(zip(models["model"], models["family"]))
    rows = []
    for a, b in pairs:
        mine = []
        for metric, margin in margins.items():
            ms = measures.get(metric)
            if ms is None or ms.kind != "mean" or ms.higher_is_better is None or M.metric(metric).role != "quality":
                continue
            xa, xb = np.asarray(ms.x[index[a]], dtype=float), np.asarray(ms.x[index[b]], dtype=float)
            r = P.zero_spread_bound(P.paired(xb - xa), M.span(metric, value_range), alpha)
            if int(r["n"]) < 2:
                continue
            lo95, hi95 = P.t_interval(r, 1 - alpha)
            t = P.tost(r, margin, alpha)
            mine.append({"family_a": family[a], "reference_a": a, "family_b": family[b], "reference_b": b,
                         "metric": metric, "items": int(r["n"]), "value_a": float(np.nanmean(xa)),
                         "value_b": float(np.nanmean(xb)), "diff": float(r["mean"]), "ci95_low": float(lo95),
                         "ci95_high": float(hi95), "ci90_low": float(t["ci90_low"]), "ci90_high": float(t["ci90_high"]),
                         "margin": float(margin), "p": float(r["p"]),
                         "mde80": float(P.mde(r["sd"], r["n"], alpha, power)),
                         "items_to_decide": P.items_to_decide(float(r["sd"]), float(margin), alpha),
                         "_hib": bool(ms.higher_is_better)})
        adj = holm(np.array([m["p"] for m in mine])) if mine else []
        for m, p_adj in zip(mine, adj):
            better_b = (m["diff"] > 0) == m.pop("_hib")
            m["p_holm"] = float(p_adj)
            if p_adj < alpha:
                m["verdict"] = f"{m['family_b'] if better_b else m['family_a']} better"
            elif -m["margin"] < m["ci90_low"] and m["ci90_high"] < m["margin"]:
                m["verdict"] = "equivalent"
            else:
                m["verdict"] = "not distinguishable"
            rows.append(m)
    return pd.DataFrame(rows, columns=COLUMNS)


def pair_verdict(rows: pd.DataFrame) -> str:
    """The verdict of one pair from its metric rows (see the module doc)."""
    better = {v for v in rows["verdict"] if v.endswith(" better")}
    if len(better) == 1:
        return better.pop()
    if better:
        return "mixed"
    if len(rows) and (rows["verdict"] == "equivalent").all():
        return "equivalent"
    return "not distinguishable"
