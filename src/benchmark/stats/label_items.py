"""Classification calls as (models, items, iterations) arrays in report order, and the figures of summed
per-item gold x answer tables: what the report's paired tests over items and the jackknife use
(``benchmark.stats.compare``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.stats.label import Coded, coded, vote


@dataclass
class LabelData:
    """Calls as (models, items, iterations) arrays in report order, for the paired tests over items."""

    labels: list[str]
    models: list[str]
    item_ids: np.ndarray
    gold: np.ndarray          # (items,) gold label code
    codes: np.ndarray         # (models, items, iterations) answer code, K = invalid, -1 = no call
    wall: np.ndarray          # (models, items, iterations) seconds, NaN = no call
    confidence: np.ndarray    # (models, items, iterations) stated confidence or label probability, NaN = none

    @property
    def K(self) -> int:
        return len(self.labels)

    @classmethod
    def of(cls, calls: pd.DataFrame, items: pd.DataFrame, labels=None, models: list[str] | None = None) -> "LabelData":
        from benchmark.stats.common import Cube

        c = coded(calls, items, labels)
        cube = Cube(calls, models, c.item_ids)
        codes = cube.get(c.p.astype(float), -1).astype(np.int64)
        conf = np.full(len(calls), np.nan)
        if "label_probs_json" in calls:
            conf = _chosen_probability(calls, c)
        if "confidence" in calls:
            stated = pd.to_numeric(calls["confidence"], errors="coerce").to_numpy(dtype=float)
            conf = np.where(np.isnan(conf), stated, conf)
        conf = np.where(c.p < c.K, conf, np.nan)
        return cls(labels=c.labels, models=cube.models, item_ids=c.item_ids, gold=c.gold_item, codes=codes,
                   wall=cube.get("wall_seconds"), confidence=cube.get(conf))

    def counts(self) -> np.ndarray:
        """(models, items, K + 1) answers per label (last: invalid)."""
        return np.stack([(self.codes == k).sum(-1) for k in range(self.K + 1)], -1)

    def tables(self) -> np.ndarray:
        """(models, items, K, K + 1) gold x answer counts per item: additive, for the bootstrap."""
        cnt = self.counts()
        out = np.zeros(cnt.shape[:2] + (self.K, self.K + 1))
        out[:, np.arange(len(self.gold)), self.gold, :] = cnt
        n = cnt.sum(-1)
        return np.where((n > 0)[..., None, None], out, np.nan)

    def item_scores(self) -> dict[str, np.ndarray]:
        cnt = self.counts()
        n = cnt.sum(-1)
        answered = n - cnt[..., self.K]
        correct = np.take_along_axis(cnt, np.broadcast_to(self.gold[None, :, None], cnt.shape[:2] + (1,)), -1)[..., 0]
        pairs = n * (n - 1)
        agree = (cnt * (cnt - 1)).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {
                "accuracy": np.where(n > 0, correct / n, np.nan),
                "accuracy_answered": np.where(answered > 0, correct / answered, np.nan),
                "valid_rate": np.where(n > 0, answered / n, np.nan),
                "self_consistency": np.where(pairs > 0, agree / np.maximum(pairs, 1), np.nan),
            }
        from benchmark.stats.common import item_mean

        _, credit, _ = vote(cnt, np.broadcast_to(self.gold, n.shape))
        out["vote_accuracy"] = np.where(n > 0, credit, np.nan)  # ties split (``benchmark.stats.label.vote``)
        out["s_per_sample"] = item_mean(self.wall)
        if np.isfinite(self.confidence).any():
            out["mean_confidence"] = item_mean(self.confidence)
        return out


def _chosen_probability(calls: pd.DataFrame, c: Coded) -> np.ndarray:
    """Per call, the stored probability of the answered label (log-probability mode); NaN without one."""
    import json

    out = np.full(len(calls), np.nan)
    raw = calls["label_probs_json"].to_numpy(dtype=object)
    lab = calls["label"].to_numpy(dtype=object)
    for j in np.flatnonzero(pd.notna(raw)):
        try:
            probs = json.loads(raw[j])
        except (TypeError, ValueError):
            continue
        if isinstance(probs, dict) and lab[j] is not None and str(lab[j]) in probs:
            out[j] = float(probs[str(lab[j])])
    return out


def label_prob_figures(calls: pd.DataFrame) -> pd.DataFrame:
    """Per model, what log-probability mode measured (calls with stored label probabilities): label_prob,
    the mean probability of the answered (most probable) label, and label_prob_margin, its mean lead over
    the runner-up label. Empty when no call stored probabilities."""
    import json

    if "label_probs_json" not in calls or calls["label_probs_json"].isna().all():
        return pd.DataFrame(columns=["model", "label_prob", "label_prob_margin"])
    rows = []
    for model, raw in calls.loc[calls["label_probs_json"].notna()].groupby("model", sort=False)["label_probs_json"]:
        top, lead = [], []
        for text in raw:
            try:
                p = sorted((float(v) for v in json.loads(text).values()), reverse=True)
            except (TypeError, ValueError, AttributeError):
                continue
            if p:
                top.append(p[0])
                lead.append(p[0] - (p[1] if len(p) > 1 else 0.0))
        rows.append({"model": model, "label_prob": float(np.mean(top)) if top else np.nan,
                     "label_prob_margin": float(np.mean(lead)) if lead else np.nan})
    return pd.DataFrame(rows)


def table_metric(name: str, K: int, positive: int | None = None):
    """A function of summed gold x answer tables (..., K * (K + 1)) or (..., K, K + 1) giving the metric,
    the same as scikit-learn's on the rows the table counts (INVALID, the last column, is never a
    class; it counts as an answer that disagrees in kappa). Written by hand so that a bootstrap over
    items is one vectorized call; the tests compare it with scikit-learn."""

    def parts(s):
        t = np.asarray(s, dtype=float).reshape(np.shape(s)[:-1] + (K, K + 1)) if np.shape(s)[-1] != K + 1 else \
            np.asarray(s, dtype=float)
        diag = np.diagonal(t[..., :, :K], axis1=-2, axis2=-1)
        rows = t.sum(-1)                 # gold counts
        cols = t.sum(-2)                 # answer counts (K + 1)
        return t, diag, rows, cols

    def prf(s, beta=1.0):
        t, diag, rows, cols = parts(s)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(cols[..., :K] > 0, diag / np.where(cols[..., :K] > 0, cols[..., :K], 1), 0.0)
            r = np.where(rows > 0, diag / np.where(rows > 0, rows, 1), 0.0)
            b2 = beta * beta
            f = np.where((b2 * p + r) > 0, (1 + b2) * p * r / np.where((b2 * p + r) > 0, b2 * p + r, 1), 0.0)
        return p, r, f, rows

    if name == "accuracy":
        def fn(s):
            t, diag, rows, _ = parts(s)
            with np.errstate(invalid="ignore", divide="ignore"):
                return diag.sum(-1) / rows.sum(-1)
    elif name == "balanced_accuracy":
        def fn(s):
            _, r, _, rows = prf(s)
            with np.errstate(invalid="ignore", divide="ignore"):
                return (r * (rows > 0)).sum(-1) / (rows > 0).sum(-1)
    elif name == "macro_f1":  # over the labels that occur as gold, as balanced accuracy
        def fn(s):
            _, _, f, rows = prf(s)
            with np.errstate(invalid="ignore", divide="ignore"):
                return (f * (rows > 0)).sum(-1) / (rows > 0).sum(-1)
    elif name == "kappa":
        def fn(s):
            t, diag, rows, cols = parts(s)
            n = rows.sum(-1)
            with np.errstate(invalid="ignore", divide="ignore"):
                po = diag.sum(-1) / n
                pe = (rows * cols[..., :K]).sum(-1) / (n * n)
                return (po - pe) / (1 - pe)
    elif name in ("precision", "recall", "f1") and positive is not None:
        j = {"precision": 0, "recall": 1, "f1": 2}[name]

        def fn(s):
            return prf(s)[j][..., positive]
    elif name.startswith("f_beta_"):
        beta = float(name[len("f_beta_"):])

        def fn(s):
            _, _, f, rows = prf(s, beta)
            if positive is not None:
                return f[..., positive]
            with np.errstate(invalid="ignore", divide="ignore"):
                return (f * (rows > 0)).sum(-1) / (rows > 0).sum(-1)
    else:
        raise ValueError(f"no table metric {name!r}")
    return fn
