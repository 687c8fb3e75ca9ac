"""Tests and intervals for the design every run has: the same items go to every model (paired by
item), each item is asked several times (iterations), and the iterations of one item are not
independent. The item is the unit of every test here: a model's figure on an item is first reduced
over its iterations (a mean, a variance, a count of disagreeing pairs), and the tests run over items
(Miller 2024, "Adding Error Bars to Evals": cluster by item; with every item asked equally often this
is the clustered standard error).

Everything is vectorized over leading axes, so that the tests can run the same code over thousands
of simulated studies at once (``tests/test_design_stats.py``). NaN marks a missing item (pairwise
complete: an item enters a pair's test when both models have it).

Written by hand, and why:
- the paired t-test over per-item differences (``paired``): scipy's ``ttest_rel``/``ttest_1samp``
  give the same p (the tests check it) but no standard error or degrees of freedom with NaNs and
  leading axes in one call;
- two one-sided tests (``tost``): statsmodels' ``ttost_paired`` is one pair at a time; the same
  figures are checked against it;
- the verdict rule and the items needed to decide it (statsmodels' ``TTestPower`` does the power).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats as ss

from benchmark.stats.common import item_mean


def _errstate():
    return np.errstate(invalid="ignore", divide="ignore", over="ignore")


def paired(d, axis: int = -1) -> dict[str, np.ndarray]:
    """One-sample t over per-item differences ``d`` (NaN = item missing): n, mean, sd, se, df, t, p
    (two-sided). With every difference equal: t = 0 (p = 1) when it is 0, else p = 0."""
    d = np.moveaxis(np.asarray(d, dtype=float), axis, -1)
    ok = ~np.isnan(d)
    n = ok.sum(-1)
    with _errstate():
        mean = np.where(n > 0, np.nansum(d, -1) / np.maximum(n, 1), np.nan)
        dev = np.where(ok, d - mean[..., None], 0.0)
        var = np.where(n > 1, (dev ** 2).sum(-1) / np.maximum(n - 1, 1), np.nan)
        sd = np.sqrt(var)
        se = sd / np.sqrt(n)
        t = np.where(se > 0, mean / se, np.where(mean == 0, 0.0, np.sign(mean) * np.inf))
        df = (n - 1).astype(float)
        p = np.where(n > 1, 2 * ss.t.sf(np.abs(t), np.maximum(df, 1)), np.nan)
    return {"n": n, "mean": mean, "sd": sd, "se": se, "df": df, "t": t, "p": p}


def t_interval(res: dict, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided ``level`` t interval of the mean of a ``paired`` result."""
    with _errstate():
        q = ss.t.ppf(0.5 + level / 2, np.maximum(res["df"], 1)) * res["se"]
        q = np.where(res["df"] >= 1, q, np.nan)
    return res["mean"] - q, res["mean"] + q


def mean_interval(x, axis: int = -1, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) of per-item values: the t interval over items (iterations clustered)."""
    r = paired(x, axis)
    lo, hi = t_interval(r, level)
    return r["mean"], lo, hi


def tost(res: dict, margin, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Two one-sided tests on a ``paired`` result whose differences are oriented so that POSITIVE
    MEANS WORSE (candidate error minus reference error; reference accuracy minus candidate accuracy).

    p_noninferior: H0 "worse by the margin or more" (mean >= margin), one-sided;
    p_lower: H0 "better by the margin or more" (mean <= -margin); p_equivalence = max of the two.
    ci90_*: the (1 - 2 alpha) interval, inside (-margin, margin) exactly when p_equivalence < alpha."""
    margin = np.asarray(margin, dtype=float)
    df = np.maximum(res["df"], 1)
    with _errstate():
        t_up = (res["mean"] - margin) / res["se"]
        t_lo = (res["mean"] + margin) / res["se"]
        p_ni = np.where(res["df"] >= 1, ss.t.cdf(t_up, df), np.nan)
        p_lo = np.where(res["df"] >= 1, ss.t.sf(t_lo, df), np.nan)
    lo, hi = t_interval(res, 1 - 2 * alpha)
    return {"p_noninferior": p_ni, "p_lower": p_lo, "p_equivalence": np.fmax(p_ni, p_lo),
            "ci90_low": lo, "ci90_high": hi}


def p_worse(res: dict) -> np.ndarray:
    """One-sided p of "the candidate is worse" (H0: mean <= 0) on a ``paired`` result oriented so that
    POSITIVE MEANS WORSE; NaN with fewer than two items. A family of these is Holm-adjusted in the
    Decision (``benchmark.stats.decision``); a lone test rejects exactly when the (1 - 2 alpha) interval
    lies above 0."""
    with _errstate():
        return np.where(res["df"] >= 1, ss.t.sf(res["t"], np.maximum(res["df"], 1)), np.nan)


def verdict(res: dict, margin, alpha: float = 0.05, worse=None) -> np.ndarray:
    """The verdict of a candidate against its reference, differences oriented positive = worse:

    - equivalent: the (1 - 2 alpha) interval lies inside (-margin, +margin) (TOST);
    - non-inferior: its upper end is below +margin, its lower end at or below -margin (may be better);
    - worse: not non-inferior, and ``worse`` (the Decision's Holm-adjusted one-sided test across a
      family's candidates; default: this test alone, i.e. the (1 - 2 alpha) interval above 0);
    - inconclusive: none of these (the interval reaches past the margin and includes 0)."""
    t = tost(res, margin, alpha)
    equivalent = (t["ci90_high"] < margin) & (t["ci90_low"] > -np.asarray(margin))
    noninf = t["ci90_high"] < margin
    if worse is None:
        worse = p_worse(res) < alpha
    return np.select([equivalent, noninf, np.asarray(worse, dtype=bool)], ["equivalent", "non-inferior", "worse"],
                     "inconclusive")


def zero_spread_bound(res: dict, span, alpha: float = 0.05) -> dict:
    """``res`` with a floor under a spread of exactly 0. When every item's difference is the same (a model
    that answers one constant label, items every model gets right), the t interval has width 0 and would
    call the models equivalent on any number of items. Then all n items agreeing says only that a share
    of items that differ is below 1 - alpha^(1/n) (one-sided, the 'rule of three' generalised), so the
    (1 - 2 alpha) interval's half-width is taken as span x (1 - alpha^(1/n)), ``span`` the largest
    per-item difference (1 for a rate, the value range's width for a value); se, sd, t and p follow from
    it (``spread_floor`` marks the results where it applied)."""
    out = dict(res)
    n = np.asarray(res["n"], dtype=float)
    floor = (np.asarray(res["sd"], dtype=float) == 0) & (n >= 2)
    if not np.any(floor):
        out["spread_floor"] = floor
        return out
    with _errstate():
        h = np.asarray(span, dtype=float) * (1 - np.power(alpha, 1 / np.maximum(n, 1)))
        se = h / ss.t.ppf(1 - alpha, np.maximum(n - 1, 1))
        out["se"] = np.where(floor, se, res["se"])
        out["sd"] = np.where(floor, se * np.sqrt(n), res["sd"])
        out["t"] = np.where(floor, res["mean"] / out["se"], res["t"])
        out["p"] = np.where(floor, 2 * ss.t.sf(np.abs(out["t"]), np.maximum(res["df"], 1)), res["p"])
    out["spread_floor"] = floor
    return out


def items_to_decide(sd: float, margin: float, alpha: float = 0.05, cap: int = 10_000_000) -> float:
    """Items for the Decision to reach a verdict at ``margin`` WHATEVER the true difference: the smallest n
    with 2 t_{1-alpha, n-1} sd / sqrt(n) <= margin, where the (1 - 2 alpha) interval is at most one margin
    wide, so it cannot both include 0 and reach past the margin (it lies above 0, or below the margin).
    Only the sd of the per-item differences enters, never the observed difference: projecting a noisy
    estimate toward one side would promise a verdict the data need not give. inf when sd is unknown."""
    if not (np.isfinite(sd) and np.isfinite(margin)) or margin <= 0:
        return float("inf")
    if sd <= 0:
        return 2.0
    n = max(int(np.ceil((2 * ss.norm.ppf(1 - alpha) * sd / margin) ** 2)), 2)
    if n > cap:
        return float(n)
    while 2 * ss.t.ppf(1 - alpha, n - 1) * sd / np.sqrt(n) > margin:
        n += 1
    return float(n)


@lru_cache(maxsize=4096)
def _dz(nobs: int, alpha: float, power: float, alternative: str) -> float:
    """The standardized paired effect (mean / sd of differences) detected with ``power`` (statsmodels)."""
    from statsmodels.stats.power import TTestPower

    if nobs < 2:
        return float("nan")
    got = TTestPower().solve_power(effect_size=None, nobs=nobs, alpha=alpha, power=power, alternative=alternative)
    return float(np.ravel(got)[0])  # statsmodels answers a scalar or, for some n, an array of one


def mde(sd, n, alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided") -> np.ndarray:
    """Minimal detectable effect: the true mean difference a paired t-test over ``n`` items finds with
    ``power`` at level ``alpha``, given the sd of the per-item differences (at the run's iterations)."""
    sd, n = np.broadcast_arrays(np.asarray(sd, dtype=float), np.asarray(n))
    out = np.full(sd.shape, np.nan)
    for idx in np.ndindex(sd.shape):
        if n[idx] >= 2 and np.isfinite(sd[idx]):
            out[idx] = _dz(int(n[idx]), float(alpha), float(power), alternative) * sd[idx]
    return out


@lru_cache(maxsize=4096)
def _nobs(dz: float, alpha: float, power: float, alternative: str) -> float:
    from statsmodels.stats.power import TTestPower

    if not np.isfinite(dz) or dz <= 0:
        return float("inf")
    if dz > 10:
        return 2.0
    try:
        got = TTestPower().solve_power(effect_size=dz, nobs=None, alpha=alpha, power=power, alternative=alternative)
        return float(np.ravel(got)[0])
    except Exception:  # root finding failed (tiny effect): the normal approximation
        z = ss.norm.ppf(1 - alpha / (2 if alternative == "two-sided" else 1)) + ss.norm.ppf(power)
        return float((z / dz) ** 2)


def items_needed(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8,
                 alternative: str = "two-sided") -> float:
    """Items for a paired t-test to find a true mean difference ``effect`` (sd of per-item
    differences ``sd``) with ``power``; ``alternative`` "larger" for a one-sided test (non-inferiority).
    inf when the effect is 0 or the sd unknown."""
    if not (np.isfinite(effect) and np.isfinite(sd)) or effect <= 0:
        return float("inf")
    if sd <= 0:
        return 2.0
    return float(np.ceil(_nobs(round(float(effect / sd), 6), float(alpha), float(power), alternative)))


def all_pairs(x, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Every pair (j < k) of the columns of an items x models array ``x``: differences x[:, k] - x[:, j]
    over the items both have, paired t (two-sided), 95% interval, Holm across the pairs."""
    from benchmark.stats.common import holm

    x = np.asarray(x, dtype=float)
    k = x.shape[-1]
    j1, j2 = np.triu_indices(k, 1)
    r = paired(x[..., j2] - x[..., j1], axis=-2)
    lo, hi = t_interval(r, 1 - alpha)
    return {"a": j1, "b": j2, **r, "ci_low": lo, "ci_high": hi, "p_holm": holm(r["p"])}


# --------------------------------------------------------------------------- consistency and agreement


def log_variance_test(var_a, var_b, axis: int = -1) -> dict[str, np.ndarray]:
    """Consistency compared with a paired test that keeps its level: per item, the log of the
    within-item variance (ddof=1) of each model; a paired t over items of log(var_b + c) - log(var_a + c).

    ``c`` (one tenth of the two models' mean within-item variance) keeps items where a model gave the
    same value every time (variance 0) finite; it is computed from both models together, so the test
    stays symmetric. Why not the alternatives: an F-test on pooled within-item variances assumes every
    item has the same variance; with items that differ (they do) it gave 11-21% false positives at
    alpha 0.05 in simulations of the demo's shape, and Brown-Forsythe on within-item deviations gave
    under 1% false positives and no power. Returns the ``paired`` fields (mean = mean log ratio) plus
    geo_ratio (exp of the mean log ratio: the geometric mean over items of (var_b + c) / (var_a + c), the
    figure the test and its interval are about), geo_ratio_low / geo_ratio_high (its 95% interval), ratio
    (mean within-item variance of b over a's, the arithmetic ratio shown beside it) and c."""
    va = np.moveaxis(np.asarray(var_a, dtype=float), axis, -1)
    vb = np.moveaxis(np.asarray(var_b, dtype=float), axis, -1)
    both = ~np.isnan(va) & ~np.isnan(vb)
    with _errstate():
        ma = np.where(both, va, 0).sum(-1) / both.sum(-1)
        mb = np.where(both, vb, 0).sum(-1) / both.sum(-1)
        c = 0.1 * (ma + mb) / 2
        c = np.where(c > 0, c, np.nan)[..., None]
        d = np.where(both, np.log(vb + c) - np.log(va + c), np.nan)
    r = paired(d)
    lo, hi = t_interval(r)
    with _errstate():
        r.update(ratio=mb / ma, geo_ratio=np.exp(r["mean"]), geo_ratio_low=np.exp(lo), geo_ratio_high=np.exp(hi),
                 c=c[..., 0])
    # no variance at all in either model: nothing to compare
    r["p"] = np.where(np.isnan(c[..., 0]) & (both.sum(-1) > 1), 1.0, r["p"])
    return r


def agreement(codes_a, codes_b, n_codes: int) -> dict[str, np.ndarray]:
    """Agreement of a candidate with the reference against the reference's own repeatability.

    ``codes_a`` / ``codes_b``: (..., items, iterations) integer answer codes (a label, or a direction
    -1/0/+1 shifted to 0..2; the invalid answer has its own code), -1 where there is no call.

    The runner gives every model the same sampling seed for one (iteration, item), so the answers of
    two models in the SAME iteration share their random draw and agree more than independent calls
    would. The fair comparison uses pairs of DIFFERENT iterations only, on both sides:
    - cross_disagree: share of (a iteration r, b iteration r'), r != r', whose answers differ;
    - own_disagree: share of (a iteration r, a iteration r'), r != r', whose answers differ
      (the reference's own repeatability: a replica of the reference would disagree this often);
    - excess: per item cross - own, and a paired t over items (H0: the candidate disagrees with the
      reference no more than the reference with itself);
    - same_seed_disagree: share of same-iteration pairs whose answers differ (no baseline: a model
      with the same seed gives the same answer).
    Items enter when a has at least two iterations and b at least one other iteration."""
    a = np.asarray(codes_a)
    b = np.asarray(codes_b)
    pa, pb = a >= 0, b >= 0
    ca = np.stack([(a == k).sum(-1) for k in range(n_codes)], -1)  # (..., items, codes)
    cb = np.stack([(b == k).sum(-1) for k in range(n_codes)], -1)
    na, nb = ca.sum(-1), cb.sum(-1)
    same_pairs = (pa & pb).sum(-1)
    same_agree = ((a == b) & pa & pb).sum(-1)
    cross_pairs = na * nb - same_pairs
    cross_agree = (ca * cb).sum(-1) - same_agree
    own_pairs = na * (na - 1)
    own_agree = (ca * (ca - 1)).sum(-1)
    ok = (own_pairs > 0) & (cross_pairs > 0)
    with _errstate():
        cross = np.where(ok, 1 - cross_agree / np.maximum(cross_pairs, 1), np.nan)
        own = np.where(ok, 1 - own_agree / np.maximum(own_pairs, 1), np.nan)
        same = np.where(same_pairs > 0, 1 - same_agree / np.maximum(same_pairs, 1), np.nan)
    r = paired(cross - own)
    lo, hi = t_interval(r)
    r.update(cross_disagree=item_mean(cross), own_disagree=item_mean(own), same_seed_disagree=item_mean(same),
             ci_low=lo, ci_high=hi)
    return r


def direction(x, band: float) -> np.ndarray:
    """-1 / 0 / +1 with a neutral band: |x| < band is 0 (neutral); NaN stays NaN."""
    x = np.asarray(x, dtype=float)
    with _errstate():
        return np.where(np.isnan(x), np.nan, np.where(np.abs(x) < band, 0.0, np.sign(x)))
