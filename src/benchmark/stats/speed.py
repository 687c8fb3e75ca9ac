"""Speed with the design every run has: the same items go to every arm, in iteration blocks
(``benchmark.run.order``: counterbalanced, the arms take turns within each block). A call's time
depends on its item (a long prompt, a long answer) and on when it ran (the machine's drift, which
falls on one block at a time): repeated calls are not independent, and a test that counts them as
independent (or reduces each item's iterations first and pairs items) calls a drift of the machine
a difference of the models: p = 1e-17 on a speed ratio whose repeats range from 1.1x to 1.8x.

Here a comparison runs on the log of seconds per call (or of a call's generated tokens per second),
paired by cell (item, block): d = log(candidate) - log(reference). The estimate is the mean over
cells, exp() of it a geometric-mean ratio. Its variance is clustered two ways, by item and by
block (Cameron, Gelbach & Miller 2011): V = V_item + V_block - V_cell, each V_g the sandwich
G / (G - 1) x sum over clusters of (the cluster's sum of residuals)^2 / N^2; where that falls below the
larger one-way variance (no sign of one of the two clusterings) the larger one-way variance is taken,
with its own degrees of freedom (clusters - 1). Two-way, the t quantile's degrees of freedom are
Satterthwaite's over the three parts, at most blocks - 1 (left uncapped, the estimated weights made it
too liberal: 6-11% false positives at 2-4 blocks when items and blocks both varied). With one block,
only items are clustered (a drift between arms cannot be seen then: the report says so).

False positives at alpha 0.05, simulated (tests/test_speed.py asserts at most 7% over 3,000 runs of 30
items at 3, 4 and 6 blocks, with item effects, block effects, both, or neither; a wider simulation of
20-100 items gave 2-6% at three blocks or more and up to 9% at two); the paired t over items of each
item's mean over its iterations gave 13-89% wherever the blocks varied.

Drift (``drift``): each arm against itself, its early blocks (the first half) against its late ones
(the second half), per item (the item's mean log seconds late minus early), paired t over items,
Holm across arms; the Speed sheet warns when a move is significant and larger than the tolerance.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as ss

from benchmark.stats import paired as P
from benchmark.stats.common import holm


def _errstate():
    return np.errstate(invalid="ignore", divide="ignore", over="ignore")


def two_way(cells, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """The mean of ``cells`` (..., items, blocks; NaN = no cell) with its variance clustered by item and
    block (see the module doc): n (cells), items, blocks, mean, se, df, t, p (two-sided, H0 mean 0),
    ci_low / ci_high (1 - alpha), and the parts v_item, v_block, v_cell."""
    x = np.asarray(cells, dtype=float)
    ok = ~np.isnan(x)
    n = ok.sum((-2, -1))
    with _errstate():
        mean = np.where(n > 0, np.where(ok, x, 0.0).sum((-2, -1)) / np.maximum(n, 1), np.nan)
        e = np.where(ok, x - mean[..., None, None], 0.0)
        g_i = ok.any(-1).sum(-1)
        g_b = ok.any(-2).sum(-1)
        nn = np.maximum(n, 1).astype(float) ** 2

        def part(sums, g):
            return np.where(g > 1, g / np.maximum(g - 1, 1) * (sums ** 2).sum(-1) / nn, np.nan)

        v_i = part(e.sum(-1), g_i)
        v_b = part(e.sum(-2), g_b)
        v_c = np.where(n > 1, n / np.maximum(n - 1, 1) * (e ** 2).sum((-2, -1)) / nn, np.nan)
        two = v_i + v_b - v_c
        one = np.fmax(v_i, v_b)
        use_two = np.isfinite(two) & (two >= one)
        var = np.where(use_two, two, np.where(g_b > 1, one, v_i))
        # Satterthwaite over the parts used
        df_two = two ** 2 / (v_i ** 2 / np.maximum(g_i - 1, 1) + v_b ** 2 / np.maximum(g_b - 1, 1)
                             + v_c ** 2 / np.maximum(n - 1, 1))
        df_one = np.where((g_b > 1) & (v_b > v_i), g_b - 1, g_i - 1).astype(float)
        df = np.where(use_two & np.isfinite(df_two), np.clip(df_two, 1, np.maximum(g_b - 1, 1)), df_one)
        se = np.sqrt(var)
        t = np.where(se > 0, mean / se, np.where(mean == 0, 0.0, np.sign(mean) * np.inf))
        ok_df = (n > 1) & (g_i > 1) & np.isfinite(se)
        p = np.where(ok_df, 2 * ss.t.sf(np.abs(t), np.maximum(df, 1)), np.nan)
        q = np.where(ok_df, ss.t.ppf(1 - alpha / 2, np.maximum(df, 1)) * se, np.nan)
    return {"n": n, "items": g_i, "blocks": g_b, "mean": mean, "se": se, "df": df, "t": t, "p": p,
            "ci_low": mean - q, "ci_high": mean + q, "v_item": v_i, "v_block": v_b, "v_cell": v_c,
            "two_way": use_two}


def log_cells(values, present=None) -> np.ndarray:
    """log of positive ``values`` (..., items, blocks) in ``present`` cells; NaN elsewhere."""
    v = np.asarray(values, dtype=float)
    keep = (v > 0) & np.isfinite(v) & (present if present is not None else True)
    with _errstate():
        return np.where(keep, np.log(np.where(keep, v, 1.0)), np.nan)


def ratio(y_ref, y_cand, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """Candidate over reference on log cells (..., items, blocks), paired by cell: the geometric-mean ratio
    with its clustered (1 - alpha) interval and p (``two_way`` of the differences; ``estimate``,
    ``ratio_low``, ``ratio_high`` on the ratio scale)."""
    d = np.asarray(y_cand, dtype=float) - np.asarray(y_ref, dtype=float)
    r = two_way(d, alpha)
    with _errstate():
        r.update(estimate=np.exp(r["mean"]), ratio_low=np.exp(r["ci_low"]), ratio_high=np.exp(r["ci_high"]))
    return r


def mde_ratio(r: dict, alpha: float = 0.05, power: float = 0.8) -> np.ndarray:
    """The smallest ratio (above 1) a comparison of this spread and these degrees of freedom detects with
    ``power`` at two-sided ``alpha``."""
    with _errstate():
        df = np.maximum(r["df"], 1)
        return np.exp((ss.t.ppf(1 - alpha / 2, df) + ss.t.ppf(power, df)) * r["se"])


def says(low, high) -> str:
    """"faster", "slower" or "not distinguishable" of a speed ratio's interval (above 1 = faster)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not distinguishable"
    return "faster" if low > 1 else "slower" if high < 1 else "not distinguishable"


def drift(y, models: list[str], alpha: float = 0.05, tolerance: float = 0.1) -> list[dict]:
    """Per arm, its log cells (models, items, blocks) early against late (see the module doc): blocks,
    items, ratio late / early of seconds per call with its 95% interval, p, Holm-adjusted p across the
    arms, and ``moved`` (significant after Holm, and beyond ``1 +- tolerance``)."""
    y = np.asarray(y, dtype=float)
    rows = []
    for k, m in enumerate(models):
        blocks = np.flatnonzero(np.isfinite(y[k]).any(0))
        row = {"model": m, "blocks": len(blocks), "items": 0, "ratio": np.nan, "ci95_low": np.nan,
               "ci95_high": np.nan, "p": np.nan}
        if len(blocks) >= 2:
            half = len(blocks) // 2
            early, late = blocks[:half], blocks[len(blocks) - half:]
            with _errstate():
                d = np.nanmean(y[k][:, late], -1) - np.nanmean(y[k][:, early], -1)
            r = P.paired(d)
            lo, hi = P.t_interval(r, 1 - alpha)
            row.update(items=int(r["n"]), early_blocks=",".join(map(str, early)),
                       late_blocks=",".join(map(str, late)), ratio=float(np.exp(r["mean"])),
                       ci95_low=float(np.exp(lo)), ci95_high=float(np.exp(hi)), p=float(r["p"]))
        rows.append(row)
    ps = np.array([r["p"] for r in rows], dtype=float)
    adj = np.full(len(ps), np.nan)
    ok = np.isfinite(ps)
    if ok.any():
        adj[ok] = holm(ps[ok])
    for r, a in zip(rows, adj):
        r["p_holm"] = float(a)
        big = np.isfinite(r["ratio"]) and (r["ratio"] > 1 + tolerance or r["ratio"] < 1 / (1 + tolerance))
        r["moved"] = bool(np.isfinite(a) and a < alpha and big)
    return rows


def cells(wall, tokens=None, gen_seconds=None) -> dict[str, np.ndarray]:
    """The log cells (models, items, blocks) of the speed figures a run has: ``s_per_sample`` (seconds
    per call) and, with generated tokens and their seconds, ``gen_tok_s`` (a call's tokens / its
    generation seconds). NaN where a cell has no timing (no call, a failed call, a call under load)."""
    out = {"s_per_sample": log_cells(wall)}
    if tokens is not None and gen_seconds is not None:
        with _errstate():
            out["gen_tok_s"] = log_cells(np.asarray(tokens, dtype=float) / np.asarray(gen_seconds, dtype=float))
    return out
