"""Statistics of whole-number ratings on an ordinal scale (a 1-5 star rating): exact accuracy,
within-one accuracy and the quadratic-weighted kappa, as array functions over (..., models, items,
iterations) values (NaN = no valid answer) and (..., items) gold values, like ``benchmark.stats.value``.

An unanswered call counts against the model, as everywhere else: it is wrong in exact and within-one
accuracy, and in the kappa it takes the value of the scale farthest from the gold value (the end of
the scale farther away; the low end when both are as far), the ordinal twin of MAE's "unanswered =
worst error".

The weighted kappa (Cohen 1968, quadratic weights (i - j)^2) is computed from gold x answer count
tables, so that per-item tables add up and a jackknife over items is one subtraction
(``benchmark.stats.compare``). Written by hand for that reason; scikit-learn's
``cohen_kappa_score(weights="quadratic")`` gives the same figure on the calls (the tests check it).
"""

from __future__ import annotations

import numpy as np


def _gold(target) -> np.ndarray:
    return np.asarray(target, dtype=float)[..., None, :, None]


def farthest(target, low: float, high: float) -> np.ndarray:
    """Per item, the value of the scale farthest from its gold value (the low end on a tie)."""
    t = np.asarray(target, dtype=float)
    return np.where(high - t > t - low, high, low)


def exact(value, present, target, answered_only: bool = False) -> np.ndarray:
    """Per call 1/0: the answer equals the gold value; unanswered = 0 (NaN when ``answered_only``); NaN
    without a gold value."""
    g = _gold(target)
    right = np.where(np.isnan(value) | np.isnan(g), np.nan, (value == g).astype(float))
    if answered_only:
        return right
    return np.where(present & np.isnan(value) & ~np.isnan(g), 0.0, right)


def within_one(value, present, target, answered_only: bool = False) -> np.ndarray:
    """Per call 1/0: the answer is at most one step from the gold value; unanswered = 0."""
    g = _gold(target)
    with np.errstate(invalid="ignore"):
        right = np.where(np.isnan(value) | np.isnan(g), np.nan, (np.abs(value - g) <= 1).astype(float))
    if answered_only:
        return right
    return np.where(present & np.isnan(value) & ~np.isnan(g), 0.0, right)


def codes(value, present, low: float, high: float) -> np.ndarray:
    """Per call the answer's position on the scale 0 .. K-1, K for unanswered, -1 for no call (the
    answer codes of ``paired.agreement``)."""
    k = int(round(high - low)) + 1
    pos = np.where(np.isnan(value), k, np.round(np.nan_to_num(value, nan=low) - low))
    return np.where(present, pos, -1).astype(np.int64)


def tables(value, present, target, low: float, high: float) -> np.ndarray:
    """(..., models, items, K * K) gold x answer counts per item (unanswered = the farthest value), NaN
    for an item a model has no call for, or that has no gold value: additive over items."""
    k = int(round(high - low)) + 1
    g = _gold(target)
    answer = np.where(np.isnan(value), farthest(target, low, high)[..., None, :, None], value)
    gi = np.round(np.broadcast_to(g, answer.shape) - low)
    ai = np.round(answer - low)
    ok = present & ~np.isnan(gi)
    flat = np.where(ok, gi * k + ai, -1).astype(np.int64)
    out = np.stack([(flat == c).sum(-1) for c in range(k * k)], -1).astype(float)
    seen = ok.any(-1)
    return np.where(seen[..., None], out, np.nan)


def weighted_kappa(table, k: int) -> np.ndarray:
    """Quadratic-weighted kappa of summed gold x answer tables (..., k * k) (rows gold, columns answer):
    1 - sum(w * observed) / sum(w * expected), w_ij = (i - j)^2, expected from the margins."""
    t = np.asarray(table, dtype=float)
    t = t.reshape(t.shape[:-1] + (k, k))
    idx = np.arange(k)
    w = (idx[:, None] - idx[None, :]) ** 2.0
    n = t.sum((-2, -1))
    rows, cols = t.sum(-1), t.sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = rows[..., :, None] * cols[..., None, :] / n[..., None, None]
        return 1 - (w * t).sum((-2, -1)) / (w * expected).sum((-2, -1))
