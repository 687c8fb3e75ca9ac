"""The Decision: for every rung of a family, a verdict against its reference that a reader can act on.

Each decision metric has a margin (config: report.margins, defaults in ``benchmark.metrics``) and a
role (``benchmark.metrics.ROLES``). Per candidate and metric, over per-item differences (an item's
iterations reduced first):

- quality (error, direction, accuracy; oriented so that positive means "the candidate is worse"):
  EQUIVALENT when the 90% interval lies inside +-margin (two one-sided tests, ``paired.tost``),
  NON-INFERIOR when its upper end is below the margin, WORSE when the one-sided test of "worse",
  Holm-adjusted across the family (every candidate of one reference x every quality metric), rejects at
  alpha; with no adjustment, 7.6-11% of three-rung reports called some rung worse when no rung differed;
  with it 3.7-4.6%;
- bias (the mean answer, candidate - reference): EQUIVALENT within +-margin, SHIFTED when the two-sided
  test, Holm-adjusted across the family's candidates, rejects;
- consistency (within-item variance, on log(var + c), ``paired.log_variance_test``; the margin is a
  ratio): NON-INFERIOR when the 90% interval's upper end is below log(margin), WORSE ("less
  consistent") when the one-sided test, Holm-adjusted across the candidates, rejects;
- TOO FEW ITEMS when fewer than ``min_items`` items were compared (no equivalence or non-inferiority
  claim; a significant "worse" or "shifted" stands), or when the smallest difference the run detects
  with 80% power is at least three margins and nothing was decided; INCONCLUSIVE otherwise.

A spread of exactly 0 (every item's difference the same) gets the floor of ``paired.zero_spread_bound``:
a zero-width interval would otherwise call a model equivalent on any number of items.

"Items that would decide" (``paired.items_to_decide``) is the item count at which the 90% interval is
at most one margin wide, so it must reach a verdict whatever the true difference (only the sd of the
per-item differences enters, never the observed difference). Where equivalence is out of reach (the 90%
interval's half-width is at least the margin) the items that would show it with 80% power if the true
difference is 0 are given (``items_for_equivalence``).

A candidate's overall verdict, in this order: WORSE (any quality metric), SHIFTED (its bias), LESS
CONSISTENT, then EQUIVALENT / NON-INFERIOR only when every quality metric is equivalent / non-inferior
AND its bias is within its margin AND its consistency within its ratio ("safe to ship"); NOT BOUNDED
when quality is non-inferior but the bias or consistency is not yet bounded (never "safe to ship"
with an unbounded bias: a rung that answers +0.2 higher everywhere is named SHIFTED or NOT BOUNDED);
then TOO FEW ITEMS, INCONCLUSIVE.

Speed against the reference (``speed_vs_ref``): the geometric-mean ratio of the reference's seconds per
call to the candidate's (above 1 = faster) over cells paired by (item, iteration block), with its 95%
interval clustered by item and block (``benchmark.stats.speed``): "faster" / "slower" when the interval
excludes 1, else "not distinguishable".

Pareto-optimal rungs (per family): no other rung is at least as good on quality (the first quality
metric's point estimate), seconds per sample and file size (when known), and better on one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark import metrics as M
from benchmark.stats import paired as P
from benchmark.stats import speed as SP
from benchmark.stats.common import holm
from benchmark.stats.compare import Measure

# the long table's columns: also those of an empty table (no candidate with two items paired)
LONG_COLUMNS = ["reference", "candidate", "metric", "role", "margin", "items", "iterations", "value_ref",
                "value_cand", "diff", "ci90_low", "ci90_high", "ci95_low", "ci95_high", "worse_by", "worse_by_ci90_low",
                "p_worse", "p_worse_holm", "p_noninferior", "p_equivalence", "p_difference", "verdict", "mde80",
                "items_to_decide", "more_items", "h90", "equivalence_reachable", "items_for_equivalence", "sd_diff",
                "spread_floor", "worse_by_ci90_high", "test_margin"]
QUALITY_OK = ("equivalent", "non-inferior")


def role_of(metric: str, higher_is_better: bool | None) -> str:
    """A metric's role in the Decision: its table role, a "quality" figure without a better direction
    being a bias."""
    role = M.metric(metric).role
    return "bias" if role == "quality" and higher_is_better is None else role


# --------------------------------------------------------------------------- the rules, vectorized
# The report calls these for one run; the tests' simulations call the same functions over thousands of
# simulated runs at once (leading axes).


def figures(r: dict, margin: float, role: str, alpha: float = 0.05, power: float = 0.8) -> dict[str, np.ndarray]:
    """Every figure a verdict needs from a ``paired`` result on the test's scale (oriented positive =
    worse for quality and consistency; candidate - reference for a bias) and the margin on that scale."""
    t = P.tost(r, margin, alpha)
    lo95, hi95 = P.t_interval(r, 1 - alpha)
    return {"n": np.asarray(r["n"]), "mean": r["mean"], "sd": r["sd"], "lo90": t["ci90_low"], "hi90": t["ci90_high"],
            "lo95": lo95, "hi95": hi95, "p_worse": r["p"] if role == "bias" else P.p_worse(r),
            "p_difference": r["p"], "p_noninferior": t["p_noninferior"], "p_equivalence": t["p_equivalence"],
            "mde80": P.mde(r["sd"], r["n"], alpha, power), "h90": (t["ci90_high"] - t["ci90_low"]) / 2,
            "margin": np.broadcast_to(np.asarray(margin, dtype=float), np.shape(r["mean"])),
            "spread_floor": np.asarray(r.get("spread_floor", False))}


def judge(figs: list[dict], roles: list[str], alpha: float = 0.05, min_items: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(Holm-adjusted p of "worse" / "shifted", verdicts), each (..., rows), for the rows of ONE family (a
    reference's candidates x metrics): Holm runs across the rows of each role (see the module doc)."""
    shape = np.shape(figs[0]["mean"])
    stack = {k: np.stack([np.broadcast_to(f[k], shape) for f in figs], -1)
             for k in ("n", "lo90", "hi90", "p_worse", "mde80", "margin")}
    roles_ = np.asarray(roles)
    adj = np.full(stack["p_worse"].shape, np.nan)
    for role in dict.fromkeys(roles):
        cols = np.flatnonzero(roles_ == role)
        adj[..., cols] = holm(stack["p_worse"][..., cols])
    m, lo, hi = stack["margin"], stack["lo90"], stack["hi90"]
    sig = np.nan_to_num(adj, nan=1.0) < alpha
    bias = np.broadcast_to(roles_ == "bias", sig.shape)
    named = np.where(bias, "shifted", "worse")
    few = stack["n"] < min_items
    verdict = np.select(
        [few & sig, few, (-m < lo) & (hi < m), ~bias & (hi < m), sig, stack["mde80"] >= 3 * m],
        [named, "too few items", "equivalent", "non-inferior", named, "too few items"], "inconclusive")
    return adj, verdict


def overall_of(verdicts: np.ndarray, roles: list[str], owner: list[int], n_candidates: int) -> np.ndarray:
    """Each candidate's overall verdict (..., candidates) from its rows' verdicts (..., rows); ``owner``: the
    candidate of each row (see the module doc for the order)."""
    verdicts = np.asarray(verdicts, dtype=object)
    roles_, owner_ = np.asarray(roles), np.asarray(owner)
    out = np.full(verdicts.shape[:-1] + (n_candidates,), "no verdict", dtype=object)
    for c in range(n_candidates):
        mine = owner_ == c
        if not mine.any():
            continue
        v = {role: verdicts[..., mine & (roles_ == role)] for role in M.ROLES}
        q, b, k = v["quality"], v["bias"], v["consistency"]
        has_q, has_b = q.shape[-1] > 0, b.shape[-1] > 0
        q_ok = np.isin(q, QUALITY_OK).all(-1) & (has_q or has_b)
        guards = (b == "equivalent").all(-1) & np.isin(k, QUALITY_OK).all(-1)
        q_eq = (q == "equivalent").all(-1)
        few = (verdicts[..., mine] == "too few items").any(-1)
        out[..., c] = np.select(
            [(q == "worse").any(-1), (b == "shifted").any(-1), (k == "worse").any(-1), q_ok & guards & q_eq,
             q_ok & guards, q_ok & has_q, few],
            ["worse", "shifted", "less consistent", "equivalent", "non-inferior", "not bounded", "too few items"],
            "inconclusive")
    return out


def overall(rows: list[dict]) -> str:
    """A candidate's verdict from its rows (see the module doc)."""
    if not rows:
        return "no verdict"
    v = np.array([r["verdict"] for r in rows], dtype=object)
    return str(overall_of(v, [r["role"] for r in rows], [0] * len(rows), 1)[0])


# --------------------------------------------------------------------------- one run


def row_test(x_ref: np.ndarray, x_cand: np.ndarray, kind: str, role: str, higher_is_better: bool | None,
             margin: float, span: float, alpha: float = 0.05) -> tuple[dict, float]:
    """(the paired result on the test's scale, the margin on that scale) of one (candidate, metric) row
    from per-item figures (..., items): per-item means ("mean": oriented positive = worse for quality,
    candidate - reference for a bias, with the zero-spread floor) or within-item variances ("logvar":
    the log-variance test, margin log(ratio))."""
    if kind == "logvar":
        return P.log_variance_test(x_ref, x_cand), float(np.log(margin))
    d = np.asarray(x_cand, dtype=float) - np.asarray(x_ref, dtype=float)
    if role == "quality" and higher_is_better:
        d = -d
    return P.zero_spread_bound(P.paired(d), span, alpha), float(margin)


def candidate_rows(measures: dict[str, Measure], models: list[str], refs: dict[str, str], margins: dict[str, float],
                   iterations: dict[str, int], alpha: float = 0.05, power: float = 0.8, min_items: int = 20,
                   value_range: tuple[float, float] = (-1.0, 1.0)) -> pd.DataFrame:
    """Long table: one row per (candidate, decision metric) with the figures and the verdict (see the
    module doc). ``diff`` and its intervals are on the metric's own scale (candidate - reference; for a
    consistency row the ratio of within-item variances); ``worse_by`` is on the test's scale, positive =
    worse."""
    index = {m: k for k, m in enumerate(models)}
    rows, figs = [], []
    for cand, ref in refs.items():
        if cand not in index or ref not in index:
            continue
        a, b = index[ref], index[cand]
        for metric, margin in margins.items():
            ms = measures.get(metric)
            if ms is None or ms.kind not in ("mean", "logvar"):
                continue
            role = role_of(metric, ms.higher_is_better)
            r, m = row_test(ms.x[a], ms.x[b], ms.kind, role, ms.higher_is_better, margin, M.span(metric, value_range),
                            alpha)
            n = int(r["n"])
            if n < 2:
                continue
            f = figures(r, m, role, alpha, power)
            lo90, hi90, lo95, hi95, sd = (float(f[k]) for k in ("lo90", "hi90", "lo95", "hi95", "sd"))
            if ms.kind == "logvar":  # back to ratios
                diff, c90, c95 = float(np.exp(r["mean"])), (np.exp(lo90), np.exp(hi90)), (np.exp(lo95), np.exp(hi95))
                vref, vcand = ms.value(a), ms.value(b)
            else:
                sign = -1.0 if (role == "quality" and ms.higher_is_better) else 1.0
                diff = sign * float(r["mean"])
                c90, c95 = sorted((sign * lo90, sign * hi90)), sorted((sign * lo95, sign * hi95))
                both = ~np.isnan(ms.x[a]) & ~np.isnan(ms.x[b])
                vref, vcand = float(np.mean(ms.x[a][both])), float(np.mean(ms.x[b][both]))
            n_dec = P.items_to_decide(sd, m, alpha)
            figs.append(f)
            rows.append({
                "reference": ref, "candidate": cand, "metric": metric, "role": role, "margin": float(margin),
                "items": n, "iterations": int(iterations.get(cand, 0)), "value_ref": vref, "value_cand": vcand,
                "diff": diff, "ci90_low": float(c90[0]), "ci90_high": float(c90[1]), "ci95_low": float(c95[0]),
                "ci95_high": float(c95[1]), "worse_by": float(r["mean"]), "worse_by_ci90_low": lo90,
                "worse_by_ci90_high": hi90, "test_margin": m, "p_worse": float(f["p_worse"]),
                "p_noninferior": float(f["p_noninferior"]), "p_equivalence": float(f["p_equivalence"]),
                "p_difference": float(f["p_difference"]), "mde80": float(f["mde80"]),
                "items_to_decide": n_dec, "more_items": max(n_dec - n, 0) if np.isfinite(n_dec) else np.nan,
                "h90": float(f["h90"]), "equivalence_reachable": bool(f["h90"] < m),
                "items_for_equivalence": P.items_needed(m, sd, alpha, 1 - (1 - power) / 2, "larger"),
                "sd_diff": sd, "spread_floor": bool(np.any(f["spread_floor"])),
            })
    long = pd.DataFrame(rows, columns=LONG_COLUMNS)
    if long.empty:
        return long
    long["verdict"] = long["verdict"].astype(object)
    for _, g in long.groupby("reference", sort=False):  # one family: a reference's candidates x metrics
        adj, verdict = judge([figs[i] for i in g.index], list(g["role"]), alpha, min_items)
        long.loc[g.index, "p_worse_holm"] = adj
        long.loc[g.index, "verdict"] = verdict
    return long


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


def speed_vs_ref(ms: Measure | None, names: list[str], ref: str | None, cand: str, alpha: float = 0.05) -> dict:
    """The candidate's speed against its reference (see the module doc): speedup_vs_ref (reference seconds /
    candidate seconds, geometric mean over paired cells), its 95% interval, p and the words; NaN without a
    "speed" measure of seconds per call."""
    out = {"speedup_vs_ref": np.nan, "speedup_ci95_low": np.nan, "speedup_ci95_high": np.nan, "speedup_p": np.nan,
           "speed_vs_ref": ""}
    if ms is None or ms.kind != "speed" or ref is None or ref not in names or cand not in names:
        return out
    r = SP.ratio(ms.x[names.index(cand)], ms.x[names.index(ref)], alpha)  # reference over candidate seconds
    if not np.isfinite(r["estimate"]):
        return out
    low, high = float(r["ratio_low"]), float(r["ratio_high"])
    return {"speedup_vs_ref": float(r["estimate"]), "speedup_ci95_low": low, "speedup_ci95_high": high,
            "speedup_p": float(r["p"]), "speed_vs_ref": SP.says(low, high)}


def decide(measures: dict[str, Measure], models: pd.DataFrame, refs: dict[str, str], margins: dict[str, float],
           alpha: float = 0.05, power: float = 0.8, sizes: dict[str, float] | None = None,
           intervals: pd.DataFrame | None = None, min_items: int = 20,
           value_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per model: the Decision table; the long per-metric table). ``margins``: the primary
    (quality) metric first; ``models``: one row per model in report order with family, quant,
    iterations, s_per_sample; ``sizes``: model -> file size in MB when known; ``intervals``:
    ``compare.model_intervals`` rows. The words are the report's (``benchmark.report.verdicts``)."""
    names = list(models["model"])
    iterations = dict(zip(models["model"], models["iterations"]))
    long = candidate_rows(measures, names, refs, margins, iterations, alpha, power, min_items, value_range)
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
        verdict = overall(mine.to_dict("records")) if ref else ("reference" if role == "reference" else "no reference")
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
        speed = speed_vs_ref(measures.get("s_per_sample"), names, ref, m, alpha)
        if np.isfinite(speed["speedup_vs_ref"]) or not np.isfinite(row["speedup_vs_ref"]):
            row.update(speed)
        row["size_vs_ref"] = (row["size_mb"] / sizes[ref]) if ref and ref in sizes and m in sizes else np.nan
        p0 = mine[mine["metric"] == primary] if len(mine) else mine
        if len(p0):
            p0 = p0.iloc[0]
            row.update(diff=p0["diff"], ci90_low=p0["ci90_low"], ci90_high=p0["ci90_high"], margin=p0["margin"],
                       p_noninferior=p0["p_noninferior"], p_equivalence=p0["p_equivalence"],
                       p_worse_holm=p0["p_worse_holm"], mde80=p0["mde80"], items=p0["items"],
                       iterations=p0["iterations"], items_to_decide=mine["items_to_decide"].max())
        rows.append(row)
    table = pd.DataFrame(rows)
    table["pareto"] = False
    for fam, g in table.groupby("family", sort=False):
        size = g["size_mb"].to_numpy(dtype=float)
        table.loc[g.index, "pareto"] = pareto(g["quality"].to_numpy(dtype=float), hib,
                                              g["s_per_sample"].to_numpy(dtype=float), size)
    table.attrs["metric"] = primary
    return table, long
