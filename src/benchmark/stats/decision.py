"""The Decision: for every rung of a family, a verdict against its reference that a reader can act on.

Per candidate and decision metric (margins from config, e.g. MAE +0.05, accuracy 2 points), the
per-item differences are oriented so that positive means "the candidate is worse", and:

- two one-sided tests (TOST) at the margin with the 90% interval (``paired.tost``);
- the verdict (``paired.verdict``): equivalent (the 90% interval inside +-margin), non-inferior (its
  upper end below the margin), worse (the 95% interval above 0), inconclusive (none of these);
- for an inconclusive verdict, the items that would decide it with 80% power if the true difference
  were the observed one (``paired.items_to_decide``), at the run's iterations per item;
- the minimal detectable difference at 80% power for the run's items x iterations.

A candidate's overall verdict is "worse" when any decision metric is worse, "equivalent" when all are
equivalent, "non-inferior" when all are equivalent or non-inferior, else "inconclusive".

Pareto-optimal rungs (per family): no other rung is at least as good on quality (the first decision
metric's point estimate), seconds per sample and file size (when known), and better on one. Point
estimates: the intervals beside them say how far to trust the ordering on quality.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark import metrics as M
from benchmark.stats import paired as P
from benchmark.stats.compare import Measure


def _oriented(ms: Measure, a: int, b: int) -> np.ndarray:
    """Per-item differences, positive = the candidate (b) is worse than the reference (a); for a figure
    without a better direction (a mean value without labels), candidate - reference."""
    d = ms.x[b] - ms.x[a]
    return -d if ms.higher_is_better is True else d


def _fmt(value: float, metric: str, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    m = M.metric(metric)
    if m.percent:
        s = f"{value * 100:+.1f} points" if signed else f"{value:.1%}"
    else:
        s = f"{value:+.3f}" if signed else f"{value:.3f}"
    return s


def _margin_text(metric: str, margin: float) -> str:
    m = M.metric(metric)
    amount = f"{margin * 100:g} points" if m.percent else f"{margin:g}"
    if m.higher_is_better is None:
        return f"+-{amount}"
    worse = "lower" if m.higher_is_better else "higher"
    return f"{amount} {worse}"


def candidate_rows(measures: dict[str, Measure], models: list[str], refs: dict[str, str], margins: dict[str, float],
                   iterations: dict[str, int], alpha: float = 0.05, power: float = 0.8) -> pd.DataFrame:
    """Long table: one row per (candidate, decision metric) with the TOST figures and the verdict.

    Columns: reference, candidate, metric, margin, items, iterations, value_ref, value_cand, diff
    (candidate - reference, in the metric's own direction), ci90_low / ci90_high and ci95_low /
    ci95_high of that difference, worse_by (the difference oriented positive = worse), p_noninferior,
    p_equivalence, p_difference, verdict, items_to_decide, decide_as, more_items, mde80."""
    index = {m: k for k, m in enumerate(models)}
    rows = []
    for cand, ref in refs.items():
        if cand not in index or ref not in index:
            continue
        a, b = index[ref], index[cand]
        for metric, margin in margins.items():
            ms = measures.get(metric)
            if ms is None or ms.kind != "mean":
                continue
            d = _oriented(ms, a, b)
            r = P.paired(d)
            if r["n"] < 2:
                continue
            t = P.tost(r, margin, alpha)
            lo95, hi95 = P.t_interval(r, 1 - alpha)
            v = str(P.verdict(r, margin, alpha))
            if ms.higher_is_better is None:  # no better direction: equivalent, differs, or inconclusive
                v = ("equivalent" if v == "equivalent" else
                     "differs" if (lo95 > 0 or hi95 < 0) else "inconclusive")
            sign = -1.0 if ms.higher_is_better is True else 1.0  # back to candidate - reference
            n_dec, as_ = (np.nan, "")
            if v == "inconclusive" and ms.higher_is_better is None:
                n_dec = P.items_needed(margin - abs(float(r["mean"])), float(r["sd"]), alpha, 1 - (1 - power) / 2,
                                       "larger")
                as_ = "equivalent"
            elif v == "inconclusive":
                n_dec, as_ = P.items_to_decide(float(r["mean"]), float(r["sd"]), margin, alpha, power)
            both = ~np.isnan(ms.x[a]) & ~np.isnan(ms.x[b])
            lo90, hi90 = sorted((sign * float(t["ci90_low"]), sign * float(t["ci90_high"])))
            l95, h95 = sorted((sign * float(lo95), sign * float(hi95)))
            rows.append({
                "reference": ref, "candidate": cand, "metric": metric, "margin": float(margin),
                "margin_text": _margin_text(metric, margin), "items": int(r["n"]),
                "iterations": int(iterations.get(cand, 0)),
                "value_ref": float(np.mean(ms.x[a][both])), "value_cand": float(np.mean(ms.x[b][both])),
                "diff": sign * float(r["mean"]), "ci90_low": lo90, "ci90_high": hi90, "ci95_low": l95, "ci95_high": h95,
                "worse_by": float(r["mean"]), "worse_by_ci90_low": float(t["ci90_low"]),
                "worse_by_ci95_high": float(hi95), "p_noninferior": float(t["p_noninferior"]),
                "p_equivalence": float(t["p_equivalence"]), "p_difference": float(r["p"]), "verdict": v,
                "items_to_decide": n_dec, "decide_as": as_,
                "more_items": (max(n_dec - int(r["n"]), 0) if np.isfinite(n_dec) else np.nan),
                "mde80": float(P.mde(r["sd"], r["n"], alpha, power)), "sd_diff": float(r["sd"]),
            })
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


# the long table's columns: also those of an empty table (no candidate with two items paired)
LONG_COLUMNS = ["reference", "candidate", "metric", "margin", "margin_text", "items", "iterations", "value_ref",
                "value_cand", "diff", "ci90_low", "ci90_high", "ci95_low", "ci95_high", "worse_by",
                "worse_by_ci90_low", "worse_by_ci95_high", "p_noninferior", "p_equivalence", "p_difference",
                "verdict", "items_to_decide", "decide_as", "more_items", "mde80", "sd_diff"]


def overall(verdicts: list[str]) -> str:
    if not verdicts:
        return "no verdict"
    if "worse" in verdicts:
        return "worse"
    if "differs" in verdicts:
        return "differs"
    if all(v == "equivalent" for v in verdicts):
        return "equivalent"
    if all(v in ("equivalent", "non-inferior") for v in verdicts):
        return "non-inferior"
    return "inconclusive"


def pareto(quality: np.ndarray, higher_is_better: bool | None, seconds: np.ndarray,
           size: np.ndarray | None) -> np.ndarray:
    """Pareto-optimal flags on point estimates: quality (in its direction; left out when it has none),
    seconds (lower), size (lower, ignored when unknown for any rung)."""
    objs = [] if higher_is_better is None else [np.asarray(quality, dtype=float) * (1 if higher_is_better else -1)]
    objs.append(-np.asarray(seconds, dtype=float))
    if size is not None and np.isfinite(np.asarray(size, dtype=float)).all():
        objs.append(-np.asarray(size, dtype=float))
    x = np.stack(objs, 1)  # higher is better on every column
    ok = np.isfinite(x).all(1)
    out = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(ok):
        others = x[ok & (np.arange(len(x)) != i)]
        dominated = ((others >= x[i]).all(1) & (others > x[i]).any(1)).any()
        out[i] = not dominated
    return out


def _words(row: dict, details: pd.DataFrame) -> str:
    """One sentence per verdict that a reader can act on."""
    ref, metric = row["reference"], row["metric"]
    label = M.metric(metric).label
    ci = f"{_fmt(row['diff'], metric, True)}, 90% CI [{_fmt(row['ci90_low'], metric, True)}, " \
         f"{_fmt(row['ci90_high'], metric, True)}]"
    margin = f"margin {row['margin_text']}"
    v = row["verdict"]
    if v == "equivalent":
        return f"{label}: as good as {ref} within the margin ({ci}; {margin})."
    if v == "non-inferior":
        better = " and significantly better" if row["worse_by_ci95_high"] < 0 else ""
        return f"{label}: not worse than {ref} by more than the margin{better} ({ci}; {margin})."
    if v == "differs":
        return f"{label}: differs from {ref} ({ci}; {margin}; no better direction without labels)."
    if v == "worse":
        beyond = " by more than the margin" if row["worse_by_ci90_low"] > row["margin"] else ""
        return f"{label}: worse than {ref}{beyond} ({ci}; {margin})."
    n = row["items_to_decide"]
    if np.isfinite(n) and n < 1e6:
        more = (f"about {int(n):,} items in all ({int(row['more_items']):,} more, "
                f"{row['iterations']} iteration{'s' if row['iterations'] != 1 else ''} each) would show it {row['decide_as']} with 80% power if the true "
                f"difference is the observed one")
    else:
        more = "the observed difference sits on the margin: no practical number of items would decide it"
    return (f"{label}: cannot tell yet ({ci}; {margin}): the 90% interval reaches past the margin and also includes 0; "
            f"{more}. Smallest difference this run detects 80% of the time: "
            f"{_fmt(row['mde80'], metric)}.")


def decide(measures: dict[str, Measure], models: pd.DataFrame, refs: dict[str, str], margins: dict[str, float],
           alpha: float = 0.05, power: float = 0.8, sizes: dict[str, float] | None = None,
           intervals: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(one row per model: the Decision table; the long per-metric table; the verdict lines).

    ``models``: one row per model in report order with family, quant, iterations, s_per_sample;
    ``sizes``: model -> file size in MB when known; ``intervals``: ``compare.model_intervals`` rows."""
    names = list(models["model"])
    iterations = dict(zip(models["model"], models["iterations"]))
    long = candidate_rows(measures, names, refs, margins, iterations, alpha, power)
    primary = next(iter(margins))
    ms = measures[primary]
    hib = ms.higher_is_better
    iv = (intervals.set_index(["model", "metric"]) if intervals is not None and len(intervals)
          else pd.DataFrame(columns=["value", "ci95_low", "ci95_high"]))
    sizes = sizes or {}
    rows = []
    for k, r in enumerate(models.itertuples(index=False)):
        m = r.model
        ref = refs.get(m)
        role = "reference" if m in refs.values() else ("candidate" if ref else "only rung")
        mine = long[long["candidate"] == m] if len(long) else long
        verdict = overall(list(mine["verdict"])) if ref else ("reference" if role == "reference" else "no reference")
        q = iv.loc[(m, primary)] if (m, primary) in iv.index else None
        s = iv.loc[(m, "s_per_sample")] if (m, "s_per_sample") in iv.index else None
        ref_s = iv.loc[(ref, "s_per_sample")] if ref and (ref, "s_per_sample") in iv.index else None
        row = {"family": r.family, "model": m, "quant": r.quant, "role": role, "reference": ref or "",
               "verdict": verdict, "metric": primary,
               "quality": q["value"] if q is not None else ms.value(k),
               "quality_ci95_low": q["ci95_low"] if q is not None else np.nan,
               "quality_ci95_high": q["ci95_high"] if q is not None else np.nan,
               "s_per_sample": s["value"] if s is not None else r.s_per_sample,
               "s_per_sample_ci95_low": s["ci95_low"] if s is not None else np.nan,
               "s_per_sample_ci95_high": s["ci95_high"] if s is not None else np.nan,
               "speedup_vs_ref": (ref_s["value"] / s["value"]) if (s is not None and ref_s is not None) else np.nan,
               "size_mb": sizes.get(m, np.nan)}
        row["size_vs_ref"] = (row["size_mb"] / sizes[ref]) if ref and ref in sizes and m in sizes else np.nan
        p0 = mine[mine["metric"] == primary] if len(mine) else mine
        if len(p0):
            p0 = p0.iloc[0]
            row.update(diff=p0["diff"], ci90_low=p0["ci90_low"], ci90_high=p0["ci90_high"], margin=p0["margin"],
                       p_noninferior=p0["p_noninferior"], p_equivalence=p0["p_equivalence"], mde80=p0["mde80"],
                       items=p0["items"], iterations=p0["iterations"],
                       items_to_decide=long.loc[long["candidate"] == m, "items_to_decide"].max())
        rows.append(row)
    table = pd.DataFrame(rows)
    table["pareto"] = False
    for fam, g in table.groupby("family", sort=False):
        size = g["size_mb"].to_numpy(dtype=float)
        table.loc[g.index, "pareto"] = pareto(g["quality"].to_numpy(dtype=float), hib,
                                              g["s_per_sample"].to_numpy(dtype=float), size)
    lines, words = [], []
    for row in table.itertuples(index=False):
        if row.role != "candidate":
            words.append(_reference_words(row, primary, hib))
            continue
        mine = long[long["candidate"] == row.model]
        parts = [_words(x, models) for x in mine.to_dict("records")]
        head = _headline(row)
        text = f"{head} " + " ".join(parts)
        words.append(text)
        lines.append(f"{row.model} vs {row.reference}: {row.verdict.upper()}. " + text)
    table["what_it_means"] = words
    table.attrs["metric"] = primary
    return table, long, lines


def _reference_words(row, primary: str, hib: bool) -> str:
    what = "the reference of its family" if row.role == "reference" else "no other rung of its family to compare with"
    q = f"{M.metric(primary).label} {_fmt(row.quality, primary)} [95% CI {_fmt(row.quality_ci95_low, primary)}, " \
        f"{_fmt(row.quality_ci95_high, primary)}]"
    pareto = " Pareto-optimal." if row.pareto else ""
    return f"{row.model}: {what}; {q}.{pareto}"


def _headline(row) -> str:
    speed = f"{row.speedup_vs_ref:.2f}x the speed" if np.isfinite(row.speedup_vs_ref) else ""
    size = f"{row.size_vs_ref:.0%} of the size" if np.isfinite(row.size_vs_ref) else ""
    cost = ", ".join(x for x in (speed, size) if x)
    cost = f" ({cost} of {row.reference})" if cost else ""
    act = {"equivalent": "Ship it if the gain matters: as good as the reference within the margins",
           "non-inferior": "Safe to ship: not worse than the reference by more than the margins",
           "worse": f"Do not ship in place of {row.reference}: worse",
           "differs": f"Answers differ from {row.reference}'s (no labels to say which is better)",
           "inconclusive": "No decision yet: run more items",
           "no verdict": "No decision: fewer than two items were answered by both this model and the reference, "
                         "so there is no interval yet; run more items"}.get(row.verdict, row.verdict)
    pareto = (" Pareto-optimal." if row.pareto else
              " Not Pareto-optimal (another rung is at least as good on quality, speed and size, and better on one).")
    return f"{act}{cost}.{pareto}"
