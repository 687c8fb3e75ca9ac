"""Comparisons of every task kind, over per-item figures: configured pairs, each model against its
family's reference, the significant best, all pairs. One row per (pair, metric), long format, with
the test that fits the metric (``Measure.kind``):

- "mean": a per-item figure (a mean over the item's iterations: error, correctness, value, seconds)
  compared with a paired t-test over items (``paired.paired``); 95% t interval; MDE at 80% power;
- "logvar": within-item variances compared with the paired log-variance test (consistency);
- "agreement": answers of the candidate against the reference's own repeatability (``paired.agreement``);
- "speed": seconds per call or generated tokens per second, as the geometric-mean ratio candidate /
  reference over cells paired by (item, iteration block), its interval clustered by item and block
  (``speed.ratio``): a drift of the machine that falls on some blocks widens it;
- "jackknife": a figure that does not split into per-item parts (macro-F1, kappa, balanced accuracy,
  recall and F1 of a class, a correlation) compared with a paired jackknife (leave one item out;
  Tukey's jackknife) over the items whose removal moves either model's figure (``jackknife_paired``):
  its standard error and degrees of freedom come from those items only. In null simulations of 50
  items x 3 iterations it keeps 4-6% false positives at alpha 0.05, where a paired bootstrap with the
  expanded percentile interval gave 6-8% and the jackknife over every item 6-7% for a minority
  class's recall.

Every comparison is paired by item and keeps an item's iterations together (and "speed" its blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from benchmark import metrics as M
from benchmark.stats import paired as P
from benchmark.stats import speed as SP
from benchmark.stats.common import holm


@dataclass
class Measure:
    metric: str                              # the metric-table key (label, direction, format)
    kind: str                                # "mean" | "logvar" | "agreement" | "jackknife" | "speed"
    x: np.ndarray | None = None              # (models, items): per-item figure, or per-item variance;
                                             # "speed": (models, items, blocks) log of the per-call figure
    codes: np.ndarray | None = None          # agreement: (models, items, iterations) answer codes
    n_codes: int = 0
    suff: np.ndarray | None = None           # jackknife: (models, items, S) additive per-item statistics
    fn: Callable | None = None               # jackknife: (..., S) sums -> figure
    test_fn: Callable | None = None          # jackknife: the scale the test runs on (Fisher z of a correlation)
    mde_factor: Callable | None = None       # jackknife with test_fn: d(figure)/d(test scale) at the reference
    higher_is_better: bool | None = None

    def value(self, k: int) -> float:
        """The model's figure: the mean over items (mean within-item variance for "logvar")."""
        if self.kind == "jackknife":
            s = self.suff[k]
            ok = _rows_ok(s)
            return float(self.fn(s[ok].sum(0))) if ok.any() else np.nan
        if self.x is None:
            return np.nan
        if self.kind == "speed":  # the mean per-call figure (seconds per call, a call's tokens/s)
            col = np.exp(self.x[k])
            return float(np.nanmean(col)) if np.isfinite(col).any() else np.nan
        with np.errstate(invalid="ignore"):
            col = self.x[k]
            return float(np.nanmean(col)) if np.isfinite(col).any() else np.nan


TESTS = {"mean": "paired t over items", "logvar": "paired t on per-item log(variance + c)",
         "agreement": "paired t on per-item excess disagreement",
         "jackknife": "paired jackknife over the informative items",
         "speed": "t on log ratios paired by (item, block), clustered by item and block"}
ESTIMATES = {"mean": "difference (candidate - reference)",
             "logvar": "geometric mean over items of (var_cand + c) / (var_ref + c); 'ratio' beside it: mean "
                       "variance candidate / reference",
             "agreement": "extra disagreement with the reference beyond its own (share of answer pairs)",
             "jackknife": "difference (candidate - reference)",
             "speed": "geometric-mean ratio candidate / reference of the per-call figure"}


def measure(metric: str, kind: str = "mean", **kw) -> Measure:
    return Measure(metric, kind, higher_is_better=M.higher_is_better(metric), **kw)


# --------------------------------------------------------------------------- the jackknife


def _rows_ok(s: np.ndarray) -> np.ndarray:
    """Items whose additive statistics are all finite (the item is there for this model)."""
    return np.isfinite(s.reshape(len(s), -1)).all(-1)


def _moved(loo: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Items whose leave-one-out value differs from the full statistic (NaN equal to NaN)."""
    f = full[..., None]
    return ~((loo == f) | (np.isnan(loo) & np.isnan(f)))


def _informative_se(loo: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, jackknife standard error) over the items in ``keep``: sqrt((m - 1) / m * sum (L_i - mean)^2),
    the usual jackknife standard error of m items, taken over the informative ones only."""
    m = keep.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(keep, loo, 0.0).sum(-1) / m
        ss_ = np.where(keep, (loo - mean[..., None]) ** 2, 0.0).sum(-1)
        se = np.where(m > 1, np.sqrt((m - 1) / m * ss_), np.nan)
    return m, se


def jackknife_paired(sa: np.ndarray, sb: np.ndarray, fn: Callable, alpha: float = 0.05,
                     test_fn: Callable | None = None) -> dict:
    """Paired jackknife comparison of fn(b) - fn(a) on per-item parts (..., items, S) of the same items,
    over the INFORMATIVE items only: those whose removal changes either model's statistic. A recall of
    one class does not move when an item of another class is left out; counting such items (constant
    pseudo-values) in the degrees of freedom and the spread made the test too liberal (a minority class's
    recall: 6.3-7.1% false positives at alpha 0.05; informative items only: 4.2-4.9%). With m informative
    items, D_i the leave-one-out difference on item i: se = sqrt((m - 1) / m * sum (D_i - mean D)^2),
    t = (fn(b) - fn(a)) / se on m - 1 degrees of freedom.

    Returns the ``paired`` fields (n = m informative items, sd = se x sqrt(m) for the MDE) with ``mean``
    the plain difference fn(b) - fn(a), ``items`` every item compared, and the (1 - alpha) interval
    (ci_low, ci_high). With ``test_fn`` (a variance-stabilizing scale, e.g. Fisher's z of a correlation)
    t and p come from that scale and the interval on the figure's own scale is the test-based one
    (Miettinen): estimate +- t_crit * |estimate / t|, so that it excludes 0 exactly when p < alpha."""
    from scipy import stats as ss

    g = test_fn or fn
    ta, tb = sa.sum(-2), sb.sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        fa, fb = g(ta), g(tb)
        la, lb = g(ta[..., None, :] - sa), g(tb[..., None, :] - sb)
        keep = _moved(la, fa) | _moved(lb, fb)
        m, se = _informative_se(lb - la, keep)
        est_t = fb - fa
        t = np.where(se > 0, est_t / se, np.where(est_t == 0, 0.0, np.sign(est_t) * np.inf))
        df = (m - 1).astype(float)
        p = np.where(m > 1, 2 * ss.t.sf(np.abs(t), np.maximum(df, 1)), np.nan)
        est = fn(tb) - fn(ta) if test_fn is not None else est_t
        if test_fn is not None:
            se = np.where(np.abs(t) > 0, np.abs(est / t), np.nan)
    r = {"n": m, "items": np.full(np.shape(m), sa.shape[-2]), "mean": est, "se": se, "sd": se * np.sqrt(m),
         "df": df, "t": t, "p": p}
    lo, hi = P.t_interval(r, 1 - alpha)
    r.update(ci_low=lo, ci_high=hi)
    return r


def jackknife_interval(s: np.ndarray, fn: Callable, level: float = 0.95) -> tuple[float, float, float, int]:
    """(figure, low, high, informative items) of one model's statistic over its per-item parts (items, S):
    the figure +- t x its jackknife standard error over the informative items (m - 1 df)."""
    from scipy import stats as ss

    if not len(s):
        return np.nan, np.nan, np.nan, 0
    total = s.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = fn(total)
        loo = fn(total[None, :] - s)
    m, se = _informative_se(loo, _moved(loo, np.asarray(f)))
    q = ss.t.ppf(0.5 + level / 2, max(int(m) - 1, 1)) * se if m > 1 else np.nan
    return float(f), float(f - q), float(f + q), int(m)


def jackknife_diff(ms: Measure, a: int, b: int, alpha: float = 0.05) -> dict:
    """``jackknife_paired`` over the items both models have."""
    ok = _rows_ok(ms.suff[a]) & _rows_ok(ms.suff[b])
    return jackknife_paired(ms.suff[a][ok], ms.suff[b][ok], ms.fn, alpha, ms.test_fn)


# --------------------------------------------------------------------------- one pair


def pair(ms: Measure, a: int, b: int, alpha: float = 0.05, power: float = 0.8) -> dict:
    """Every figure of one comparison [a reference, b candidate] on one measure."""
    row: dict = {"metric": ms.metric, "test": TESTS[ms.kind], "estimate_is": ESTIMATES[ms.kind]}
    if ms.kind == "mean":
        r = P.paired(ms.x[b] - ms.x[a])
        lo, hi = P.t_interval(r, 1 - alpha)
        both = ~np.isnan(ms.x[a]) & ~np.isnan(ms.x[b])
        row.update(items=int(r["n"]), value_ref=float(np.mean(ms.x[a][both])) if both.any() else np.nan,
                   value_cand=float(np.mean(ms.x[b][both])) if both.any() else np.nan,
                   estimate=float(r["mean"]), ci95_low=float(lo), ci95_high=float(hi), p=float(r["p"]),
                   sd_diff=float(r["sd"]), mde80=float(P.mde(r["sd"], r["n"], alpha, power)))
        with np.errstate(invalid="ignore", divide="ignore"):
            row["effect_dz"] = float(r["mean"] / r["sd"]) if r["sd"] > 0 else np.nan
    elif ms.kind == "logvar":
        r = P.log_variance_test(ms.x[a], ms.x[b])
        row.update(items=int(r["n"]), value_ref=float(ms.value(a)), value_cand=float(ms.value(b)),
                   estimate=float(r["geo_ratio"]), ci95_low=float(r["geo_ratio_low"]),
                   ci95_high=float(r["geo_ratio_high"]), p=float(r["p"]), sd_diff=float(r["sd"]),
                   mde80=float(np.exp(P.mde(r["sd"], r["n"], alpha, power))), ratio=float(r["ratio"]),
                   c=float(r["c"]))
    elif ms.kind == "speed":
        r = SP.ratio(ms.x[a], ms.x[b], alpha)
        row.update(items=int(r["items"]), blocks=int(r["blocks"]), value_ref=float(ms.value(a)),
                   value_cand=float(ms.value(b)), estimate=float(r["estimate"]), ci95_low=float(r["ratio_low"]),
                   ci95_high=float(r["ratio_high"]), p=float(r["p"]), df=float(r["df"]),
                   sd_diff=float(r["se"] * np.sqrt(r["n"])),
                   mde80=float(SP.mde_ratio(r, alpha, power)))
    elif ms.kind == "agreement":
        r = P.agreement(ms.codes[a], ms.codes[b], ms.n_codes)
        row.update(items=int(r["n"]), value_ref=float(r["own_disagree"]), value_cand=float(r["cross_disagree"]),
                   estimate=float(r["mean"]), ci95_low=float(r["ci_low"]), ci95_high=float(r["ci_high"]),
                   p=float(r["p"]), sd_diff=float(r["sd"]), mde80=float(P.mde(r["sd"], r["n"], alpha, power)),
                   same_seed=float(r["same_seed_disagree"]))
    else:
        r = jackknife_diff(ms, a, b, alpha)
        value_ref = float(ms.value(a))
        mde = float(P.mde(r["sd"], r["n"], alpha, power))
        if ms.mde_factor is not None:  # the test's scale (Fisher z) back to the figure's own (r)
            mde *= float(ms.mde_factor(value_ref))
        row.update(items=int(r["items"]), informative=int(r["n"]), value_ref=value_ref, value_cand=float(ms.value(b)),
                   estimate=float(r["mean"]), ci95_low=float(r["ci_low"]), ci95_high=float(r["ci_high"]),
                   p=float(r["p"]), sd_diff=float(r["sd"]), mde80=mde)
    row["ci95_excludes_null"] = _excludes(row, ms.kind)
    row["direction"] = _direction(row, ms)
    return row


RATIOS = ("logvar", "speed")  # kinds whose estimate is a ratio (no difference: 1)


def _excludes(row: dict, kind: str) -> bool:
    null = 1.0 if kind in RATIOS else 0.0
    lo, hi = row.get("ci95_low", np.nan), row.get("ci95_high", np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return False
    return bool(lo > null or hi < null)


def _direction(row: dict, ms: Measure) -> str:
    """"better" / "worse" (significantly, for the candidate), "differs" (no better direction), or
    "not distinguishable"."""
    if not row["ci95_excludes_null"]:
        return "not distinguishable"
    up = row["estimate"] > (1.0 if ms.kind in RATIOS else 0.0)
    if ms.kind == "agreement":
        return "worse" if up else "better"
    if ms.higher_is_better is None:
        return "differs"
    return "better" if up == ms.higher_is_better else "worse"


# --------------------------------------------------------------------------- tables


def compare(measures: list[Measure], models: list[str], pairs: list[tuple[str, str]], alpha: float = 0.05,
            power: float = 0.8, holm_within: str = "metric") -> pd.DataFrame:
    """Long table: one row per (pair, measure); ``p_holm`` adjusts across the pairs of each metric."""
    index = {m: k for k, m in enumerate(models)}
    rows = []
    for ref, cand in pairs:
        if ref not in index or cand not in index:
            continue
        for ms in measures:
            if ms.kind == "agreement" and ms.codes is None:
                continue
            row = {"reference": ref, "candidate": cand}
            row.update(pair(ms, index[ref], index[cand], alpha, power))
            rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = np.nan
    for _, g in out.groupby("metric", sort=False):
        out.loc[g.index, "p_holm"] = holm(g["p"].to_numpy(dtype=float))
    cols = ["reference", "candidate", "metric", "test", "items", "blocks", "informative", "value_ref", "value_cand",
            "estimate",
            "ci95_low", "ci95_high", "p", "df", "p_holm", "mde80", "direction", "ci95_excludes_null", "effect_dz", "sd_diff",
            "same_seed", "ratio", "c", "estimate_is"]
    return out[[c for c in cols if c in out]]


def significant_best(ms: Measure, alpha: float = 0.05) -> int | None:
    """The model with the best figure, when it is significantly better than EVERY other model (paired
    tests, Holm across those k - 1 comparisons); else None."""
    if ms.higher_is_better is None or ms.kind == "agreement":
        return None
    k = ms.x.shape[0] if ms.x is not None else ms.suff.shape[0]
    vals = np.array([ms.value(j) for j in range(k)])
    if k < 2 or not np.isfinite(vals).any():
        return None
    best = int(np.nanargmax(vals) if ms.higher_is_better else np.nanargmin(vals))
    others = [j for j in range(k) if j != best and np.isfinite(vals[j])]
    if not others:
        return None
    ps, ok = [], True
    for j in others:
        row = pair(ms, j, best, alpha)
        up = row["estimate"] > (1.0 if ms.kind in RATIOS else 0.0)
        ok &= up == bool(ms.higher_is_better)
        ps.append(row["p"])
    if not ok or np.isnan(ps).any():
        return None
    return best if (holm(ps) < alpha).all() else None


def model_intervals(measures: list[Measure], models: list[str], level: float = 0.95) -> pd.DataFrame:
    """Per (model, metric) the figure and its interval over items: the t interval of the per-item mean,
    for "jackknife" measures the figure +- t x its jackknife standard error over the informative
    items (``jackknife_interval``), for "speed" the mean per-call figure with its interval clustered by
    item and block (``speed.two_way``)."""
    rows = []
    for ms in measures:
        if ms.kind not in ("mean", "jackknife", "speed"):
            continue
        for k, m in enumerate(models):
            if ms.kind == "speed":  # the mean per-call figure, its interval clustered by item and block
                r = SP.two_way(np.exp(ms.x[k]), 1 - level)
                mean, lo, hi, n = r["mean"], r["ci_low"], r["ci_high"], int(r["items"])
            elif ms.kind == "mean":
                mean, lo, hi = P.mean_interval(ms.x[k], level=level)
                n = int(np.isfinite(ms.x[k]).sum())
            else:
                s = ms.suff[k][_rows_ok(ms.suff[k])]
                n = len(s)
                mean, lo, hi, _ = jackknife_interval(s, ms.fn, level)
            rows.append({"model": m, "metric": ms.metric, "value": float(mean), "ci95_low": float(lo),
                         "ci95_high": float(hi), "items": n})
    return pd.DataFrame(rows)


def all_pairs(ms: Measure, models: list[str], alpha: float = 0.05) -> pd.DataFrame:
    """Every pair of models on one "mean" measure: paired t over items, 95% interval, Holm across all
    pairs (replaces Tukey's HSD, which treats the models as independent groups)."""
    r = P.all_pairs(ms.x.T, alpha)
    names = np.array(models, dtype=object)
    return pd.DataFrame({"metric": ms.metric, "model_a": names[r["a"]], "model_b": names[r["b"]],
                         "items": r["n"], "mean_diff": r["mean"], "ci95_low": r["ci_low"], "ci95_high": r["ci_high"],
                         "t": r["t"], "p": r["p"], "p_holm": r["p_holm"],
                         "test": "paired t over items, Holm across all pairs"})


# --------------------------------------------------------------------------- correlation as a jackknife measure


def correlation_measure(item_means: np.ndarray, target: np.ndarray) -> Measure:
    """Pearson correlation of per-item means with the labels, as additive per-item sums (x, y, x^2, y^2,
    xy, 1) so that leaving an item out is one subtraction."""
    x = np.asarray(item_means, dtype=float)
    target = np.asarray(target, dtype=float)
    y = np.broadcast_to(target if target.ndim == x.ndim else target[None, :], x.shape)
    ok = np.isfinite(x) & np.isfinite(y)
    suff = np.stack([x, y, x * x, y * y, x * y, np.ones_like(x)], -1)
    suff = np.where(ok[..., None], suff, np.nan)

    def fn(s):
        s = np.asarray(s, dtype=float)
        sx, sy, sxx, syy, sxy, n = (s[..., j] for j in range(6))
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = sxy - sx * sy / n
            return cov / np.sqrt((sxx - sx * sx / n) * (syy - sy * sy / n))

    def z(s):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.arctanh(np.clip(fn(s), -0.999999, 0.999999))

    return measure("correlation", "jackknife", suff=suff, fn=fn, test_fn=z,
                   mde_factor=lambda r: 1 - min(r * r, 1.0) if np.isfinite(r) else np.nan)
