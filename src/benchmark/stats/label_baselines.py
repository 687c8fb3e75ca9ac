"""Trivial baselines of a classification study: guesses that never look at the item (the majority class,
each constant label, stratified random guessing) as rows shaped like the models' (``baselines``), and
each model tested against them on the same items (``versus_baseline``): a model that is not
significantly better than the best of them is "no better than always answering <label>", said out loud
in the Decision and the console. The design of ``benchmark.stats.label`` holds: paired by item, an
item's iterations reduced first."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier

from benchmark.stats import paired as P
from benchmark.stats.label import _cells, _codes, _label_order, _metrics, _positive_code


def baselines(items: pd.DataFrame, labels, positive=None, betas=(), seed: int = 0, draws: int = 200) -> pd.DataFrame:
    """Rows shaped like ``per_model`` rows (same metric columns) for guesses that never look at the item:
    the majority class, each constant label ("always <label>", written directly) and stratified random guessing (labels
    drawn with the gold class shares; the figures are the mean over ``draws`` seeded draws, i.e. the
    expected value), all from scikit-learn's DummyClassifier fitted on the gold labels of ``items``.
    One answer per item: iterations 1, invalid_rate 0, vote_accuracy = accuracy, self_consistency NaN,
    no time or cost."""
    order = _label_order(labels, items)
    K = len(order)
    pos = _positive_code(order, positive)
    y = _codes(items["target_label"], order)
    if (y < 0).any():
        raise ValueError(f"gold labels not in the label list {order}")
    n = len(y)
    X = np.zeros((n, 1))

    def row(name, strategy, preds):
        # every metric depends on the (gold, predicted) table only, so draws that give the same table are
        # scored once and weighted by how often they came up: the same mean over draws, far fewer calls
        tables = np.stack([np.bincount(y * (K + 1) + pr, minlength=K * (K + 1)) for pr in preds])
        uniq, times = np.unique(tables, axis=0, return_counts=True)
        ms = [_metrics(*_cells(K, tb), K, pos, betas) for tb in uniq]
        r = {"model": name, "strategy": strategy, "calls": n, "items": n, "iterations": 1}
        r.update({k: float(np.average([m[k] for m in ms], weights=times)) for k in ms[0]})
        r.update(vote_accuracy=r["accuracy"], vote_ties=0, self_consistency=np.nan, s_per_sample=np.nan,
                 cost_per_1k=np.nan)
        return r

    rows = []
    maj = DummyClassifier(strategy="most_frequent").fit(X, y).predict(X)
    rows.append(row(f"majority ({order[maj[0]]})", "most_frequent", [maj]))
    for k, name in enumerate(order):  # also labels absent from these items (DummyClassifier refuses those)
        rows.append(row(f"always {name}", "constant", [np.full(n, k)]))
    strat = DummyClassifier(strategy="stratified", random_state=seed).fit(np.zeros((1, 1)).repeat(n, 0), y)
    pr = strat.predict(np.zeros((n * draws, 1))).reshape(draws, n)
    rows.append(row("stratified random", "stratified", list(pr)))
    return pd.DataFrame(rows)


def majority_code(gold: np.ndarray, K: int) -> np.ndarray:
    """The majority class of each study's items (..., items) -> (...): the most frequent gold code, the
    first in label order on a tie (as DummyClassifier's most_frequent)."""
    g = np.asarray(gold)
    counts = np.stack([(g == k).sum(-1) for k in range(K)], -1)
    return counts.argmax(-1)


def versus_baseline(acc: np.ndarray, gold: np.ndarray, K: int, alpha: float = 0.05) -> dict[str, dict]:
    """Each model's per-item accuracy ``acc`` (..., items; the mean over an item's iterations, an invalid
    reply wrong; NaN = not asked) against the two trivial baselines on the same items (gold codes
    (..., items)), paired by item:

    - majority: b_i = 1 when the item's gold label is the majority class, else 0 (always answering it);
    - stratified: b_i = the share of the item's gold class among the items (the expected accuracy of
      guessing labels at the gold shares).

    d_i = acc_i - b_i; a one-sided paired t over items: "better" when the lower end of the (1 - 2 alpha)
    interval of mean d is above 0 (p_better < alpha). At the boundary (the model as accurate as the
    majority share) it says "better" 3.6-4.0% of the time in simulations of the spam example's shape.
    Returns {"majority": ..., "stratified": ...}, each with baseline accuracy, diff, ci90_low, ci90_high,
    p_better, better and n (arrays over the leading axes), and "majority" with the class code."""
    acc = np.asarray(acc, dtype=float)
    g = np.broadcast_to(np.asarray(gold), acc.shape)
    maj = majority_code(g, K)
    shares = np.stack([(g == k).mean(-1) for k in range(K)], -1)
    base = {"majority": (g == maj[..., None]).astype(float),
            "stratified": np.take_along_axis(shares, g, -1)}
    out = {}
    for name, b in base.items():
        b = np.where(np.isnan(acc), np.nan, b)
        r = P.paired(acc - b)
        lo, hi = P.t_interval(r, 1 - 2 * alpha)
        p = P.p_worse(r)  # one-sided, H0: mean d <= 0 (d positive = the model better than the baseline)
        with np.errstate(invalid="ignore"):
            out[name] = {"baseline_accuracy": np.nanmean(b, -1), "accuracy": np.nanmean(acc, -1), "diff": r["mean"],
                         "ci90_low": lo, "ci90_high": hi, "p_better": p, "better": np.nan_to_num(p, nan=1.0) < alpha,
                         "n": r["n"]}
    out["majority"]["class"] = maj
    return out


def baseline_rows(models: list[str], acc: np.ndarray, gold: np.ndarray, labels: list[str],
                  alpha: float = 0.05, noun: str = "item") -> pd.DataFrame:
    """One row per model and baseline (``versus_baseline``) with the verdict in words: "better than always
    answering spam" or "no better than always answering spam (78.0%): accuracy 47.0%, difference -31.0
    points, 90% CI [...]". ``acc``: (models, items)."""
    res = versus_baseline(acc, gold, len(labels), alpha)
    maj = labels[int(np.ravel(res["majority"]["class"])[0])] if len(labels) else "?"
    names = {"majority": f"always answering {maj}", "stratified": "guessing at the gold shares (stratified)"}
    rows = []
    for k, model in enumerate(models):
        for key in ("majority", "stratified"):
            r = {f: (v[k] if np.ndim(v) else v) for f, v in res[key].items() if f != "class"}
            ci = f"90% CI [{r['ci90_low'] * 100:+.1f}, {r['ci90_high'] * 100:+.1f}] points"
            figures = (f"accuracy {r['accuracy']:.1%} against {r['baseline_accuracy']:.1%}, difference "
                       f"{r['diff'] * 100:+.1f} points, {ci}, one-sided p = {r['p_better']:.3g}, paired t over "
                       f"{int(r['n'])} {noun}s")
            words = (f"better than {names[key]} ({figures})" if r["better"] else
                     f"no better than {names[key]} ({r['baseline_accuracy']:.1%}): {figures}")
            rows.append({"model": model, "baseline": names[key], "strategy": key, **{f: float(v) for f, v in r.items()
                                                                                     if f != "better"},
                         "better": bool(r["better"]), "words": words})
    return pd.DataFrame(rows)


def baseline_verdict(rows: pd.DataFrame, model: str) -> str:
    """The line a model gets against the best trivial baseline: the first (majority, then stratified) it
    is not significantly better than, else better than both."""
    mine = rows[rows["model"] == model]
    if mine.empty:
        return ""
    worse = mine[~mine["better"]]
    if len(worse):
        return f"{model}: {worse.iloc[0]['words']}."
    return f"{model}: {mine.iloc[0]['words']}; also better than {mine.iloc[1]['baseline']}."


def per_class_baselines(items: pd.DataFrame, labels, seed: int = 0, draws: int = 200) -> pd.DataFrame:
    """Long table (baseline, class, f1): each class's F1 when always answering the majority class and when
    guessing at the gold shares (the mean over ``draws`` seeded draws), for the per-class chart's marks."""
    from sklearn.metrics import precision_recall_fscore_support

    order = _label_order(labels, items)
    K = len(order)
    y = _codes(items["target_label"], order)
    if not len(y) or (y < 0).any():
        return pd.DataFrame(columns=["baseline", "class", "f1"])
    n = len(y)
    maj = DummyClassifier(strategy="most_frequent").fit(np.zeros((n, 1)), y).predict(np.zeros((n, 1)))
    strat = DummyClassifier(strategy="stratified", random_state=seed).fit(np.zeros((n, 1)), y)
    draws_ = strat.predict(np.zeros((n * draws, 1))).reshape(draws, n)
    rows = []
    for name, preds in ((f"majority ({order[maj[0]]})", [maj]), ("stratified random", list(draws_))):
        f1 = np.mean([precision_recall_fscore_support(y, p, labels=np.arange(K), average=None, zero_division=0)[2]
                      for p in preds], 0)
        rows += [{"baseline": name, "class": order[k], "f1": float(f1[k])} for k in range(K)]
    return pd.DataFrame(rows)
