"""Calibration: does a model's stated confidence (or its label probability) match how often it is right?

Per model, over the calls that carry a confidence: the reliability table (equal-width bins of
confidence: calls, mean confidence, share right), the expected calibration error

    ECE = sum over bins of (calls in bin / calls) * |share right - mean confidence|

and the Brier score (the mean squared gap between confidence and correctness). scikit-learn's ``calibration_curve`` gives
the per-bin figures but not the bin counts that ECE weighs by, so the binning is written here (the
tests check it against ``calibration_curve``). ECE is biased upward when bins hold few calls: the
table shows the counts. "Right" is the task's correctness: the label for classification; the
direction (with the neutral band) for a value task such as sentiment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def bins_of(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence in equal-width bins over [0, 1], as scikit-learn's
    calibration_curve(strategy="uniform") bins them: bins are (low, high], the first [0, 1/n_bins], so a
    confidence on an inner edge (0.9) falls in the bin below it (0.8-0.9)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], conf, side="left")


def reliability(conf, correct, n_bins: int = 10) -> pd.DataFrame:
    """One row per non-empty bin ((low, high], the first [0, high]): bin, low, high, calls, mean_confidence,
    accuracy_answered (the share of the bin's calls right), gap."""
    conf = np.asarray(conf, dtype=float)
    correct = np.asarray(correct, dtype=float)
    ok = np.isfinite(conf) & np.isfinite(correct)
    conf, correct = np.clip(conf[ok], 0, 1), correct[ok]
    b = bins_of(conf, n_bins)
    n = np.bincount(b, minlength=n_bins)
    sc = np.bincount(b, conf, minlength=n_bins)
    sr = np.bincount(b, correct, minlength=n_bins)
    nz = n > 0
    edges = np.linspace(0, 1, n_bins + 1)
    out = pd.DataFrame({"bin": np.arange(n_bins), "low": edges[:-1], "high": edges[1:], "calls": n,
                        "mean_confidence": np.where(nz, sc / np.maximum(n, 1), np.nan),
                        "accuracy_answered": np.where(nz, sr / np.maximum(n, 1), np.nan)})[nz]
    out["gap"] = out["accuracy_answered"] - out["mean_confidence"]
    return out.reset_index(drop=True)


def ece(conf, correct, n_bins: int = 10) -> float:
    t = reliability(conf, correct, n_bins)
    if t.empty:
        return np.nan
    return float((t["calls"] / t["calls"].sum() * t["gap"].abs()).sum())


def summary(models: list[str], conf: np.ndarray, correct: np.ndarray, n_bins: int = 10,
            what: str = "stated confidence") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per model: calls with a confidence, mean confidence, accuracy_answered (the share right of those
    calls: answered calls only, an invalid reply has no confidence), ECE, Brier score;
    long reliability table). ``conf`` / ``correct``: (models, ...) arrays, NaN where a call has none."""
    rows, tables = [], []
    for k, m in enumerate(models):
        c = np.asarray(conf[k], dtype=float).ravel()
        y = np.asarray(correct[k], dtype=float).ravel()
        ok = np.isfinite(c) & np.isfinite(y)
        if not ok.any():
            continue
        c, y = np.clip(c[ok], 0, 1), y[ok]
        t = reliability(c, y, n_bins).assign(model=m)
        tables.append(t)
        rows.append({"model": m, "confidence_from": what, "calls": int(ok.sum()), "mean_confidence": float(c.mean()),
                     "accuracy_answered": float(y.mean()), "overconfidence": float(c.mean() - y.mean()),
                     "ece": ece(c, y, n_bins),
                     # Brier score: mean squared gap, as scikit-learn's brier_score_loss (which refuses a
                     # model that is always right or always wrong: one class only)
                     "brier": float(np.mean((c - y) ** 2))})
    long = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if len(long):
        long = long[["model"] + [c for c in long.columns if c != "model"]]
    return pd.DataFrame(rows), long
