"""Statistics for classification studies: local models, quant levels or prompt variants on the same items.

Design that every figure here respects:

- the same items go to every model, so comparisons are paired by item;
- each item is asked N times (iterations) per model; the iterations of one item are NOT independent
  (an item that is hard stays hard), so every test and interval treats the item as the unit: the
  bootstrap resamples items (each bringing all its iterations), McNemar and Cochran's Q use one binary
  outcome per item per model (majority-vote correctness);
- an invalid reply (not valid, no label, or a label outside ``labels``) counts as wrong: its predicted
  label is the sentinel ``INVALID``, which is kept out of the averaged classes (macro-F1, per-class
  tables) but counts as a miss in recall and accuracy. Accuracy over answered calls only is reported
  beside it as ``accuracy_answered``.

Majority vote (``vote_*``): per (model, item), the label given most often among the VALID answers over
the iterations; ties go to the label that comes first in the label order (``labels`` as given, or
the order of first appearance of the gold labels in ``items`` when no order is given); an item with
no valid answer votes ``INVALID`` and so counts wrong.

Metrics come from scikit-learn and tests from statsmodels. To stay fast on a million calls, the calls
are first counted per (model, gold, predicted) cell and the scikit-learn metrics are called on the
cells with the counts as ``sample_weight``: that gives exactly the figures of the raw rows (the tests
check it) at the cost of a few hundred cells. Formulas written by hand are marked as such.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as ss
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix,
                             f1_score, fbeta_score, precision_recall_fscore_support)
from statsmodels.stats.contingency_tables import cochrans_q as _sm_cochrans_q
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar

from benchmark.stats.common import holm

INVALID = "(invalid)"


# --------------------------------------------------------------------------- coding


@dataclass
class _Coded:
    """Calls as integer codes. Label code k is ``labels[k]``; code ``K`` (= len(labels)) is INVALID."""

    labels: list[str]
    models: list[str]
    item_ids: np.ndarray  # item code -> item_id (every row of ``items``)
    gold_item: np.ndarray  # item code -> gold label code
    m: np.ndarray  # per call: model code (models in order of first appearance)
    i: np.ndarray  # per call: item code
    it: np.ndarray  # per call: iteration
    p: np.ndarray  # per call: predicted label code (K = invalid)
    calls: pd.DataFrame

    @property
    def K(self) -> int:
        return len(self.labels)

    @property
    def g(self) -> np.ndarray:
        return self.gold_item[self.i]


def _label_order(labels, items: pd.DataFrame) -> list[str]:
    if labels is not None:
        order = [str(x) for x in labels]
        if len(set(order)) != len(order):
            raise ValueError(f"duplicate labels in {order}")
        if INVALID in order:
            raise ValueError(f"{INVALID!r} is reserved for invalid replies")
        return order
    return [str(x) for x in pd.unique(_str(items["target_label"]).dropna())]


def _str(s: pd.Series) -> pd.Series:
    """Labels as strings, missing kept missing (so labels given as 0/1 match "0"/"1", also when a
    column of whole numbers came back as floats because of missing values)."""
    if isinstance(s.dtype, pd.StringDtype):
        return s
    if s.dtype.kind == "f" and np.all(np.mod(s.dropna().to_numpy(), 1) == 0):
        s = s.astype("Int64")
    return s.astype("string")


def _codes(values: pd.Series, order: list[str]) -> np.ndarray:
    """Position of each label in ``order``; -1 for a missing label or one outside the list."""
    return pd.Index(order, dtype="string").get_indexer(_str(values)).astype(np.int64)


def _code(calls: pd.DataFrame, items: pd.DataFrame, labels=None) -> _Coded:
    items = items.drop_duplicates("item_id")
    order = _label_order(labels, items)
    item_ids = items["item_id"].astype(str).to_numpy(dtype=object)
    gold = _codes(items["target_label"], order)
    if (gold < 0).any():
        bad = sorted(set(items["target_label"][gold < 0].astype(str)))
        raise ValueError(f"gold labels not in the label list {order}: {bad}")
    icode = pd.Index(item_ids).get_indexer(calls["item_id"].astype(str))
    if (icode < 0).any():
        bad = pd.unique(calls["item_id"][icode < 0])[:5]
        raise ValueError(f"{int((icode < 0).sum())} calls refer to items missing from `items`, e.g. {list(bad)}")
    mcode, models = pd.factorize(calls["model"], sort=False)
    K = len(order)
    pc = _codes(calls["label"], order)
    valid = calls["valid"].fillna(False).astype(bool).to_numpy()
    pc = np.where(valid & (pc >= 0), pc, K)
    return _Coded(labels=order, models=[str(x) for x in models], item_ids=item_ids, gold_item=gold,
                  m=mcode.astype(np.int64), i=icode.astype(np.int64),
                  it=calls["iteration"].to_numpy(dtype=np.int64), p=pc, calls=calls)


@dataclass
class _Items:
    """Per (model, item) counts as dense (M, I) arrays; ``seen`` marks the pairs with at least one call."""

    n: np.ndarray  # calls
    correct: np.ndarray  # correct calls
    vote: np.ndarray  # majority-vote label code (K when no valid answer)
    vote_correct: np.ndarray
    pairs: np.ndarray  # pairs of iterations: n (n - 1) / 2
    agree: np.ndarray  # pairs of iterations with the same answer (INVALID counting as an answer)

    @property
    def seen(self) -> np.ndarray:
        return self.n > 0

    @property
    def accuracy(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.correct / self.n


def _items(c: _Coded) -> _Items:
    M, I, K = len(c.models), len(c.item_ids), c.K
    counts = np.bincount((c.m * I + c.i) * (K + 1) + c.p, minlength=M * I * (K + 1)).reshape(M, I, K + 1)
    n = counts.sum(-1)
    correct = np.take_along_axis(counts, np.broadcast_to(c.gold_item[None, :, None], (M, I, 1)), -1)[..., 0]
    answered = counts[..., :K]
    # argmax returns the first maximum: ties go to the label that comes first in the label order
    vote = np.where(answered.sum(-1) > 0, answered.argmax(-1), K)
    return _Items(n=n, correct=correct, vote=vote, vote_correct=vote == c.gold_item[None, :],
                  pairs=n * (n - 1) // 2, agree=(counts * (counts - 1) // 2).sum(-1))


def per_item(calls: pd.DataFrame, items: pd.DataFrame, labels=None) -> pd.DataFrame:
    """One row per (model, item) answered: calls, correct, accuracy (share of its iterations right),
    vote (majority label, see the module doc), vote_correct, agreement (share of iteration pairs that
    agree; NaN with one iteration). The unit of every test in this module."""
    c = _code(calls, items, labels)
    t = _items(c)
    mm, ii = np.nonzero(t.seen)
    lab = np.array(c.labels + [INVALID], dtype=object)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(t.pairs > 0, t.agree / np.maximum(t.pairs, 1), np.nan)
    return pd.DataFrame({
        "model": np.array(c.models, dtype=object)[mm], "item_id": c.item_ids[ii],
        "target_label": lab[c.gold_item[ii]], "calls": t.n[mm, ii], "correct": t.correct[mm, ii],
        "accuracy": t.accuracy[mm, ii], "vote": lab[t.vote[mm, ii]], "vote_correct": t.vote_correct[mm, ii],
        "agreement": agreement[mm, ii],
    })


# --------------------------------------------------------------------------- metrics


def _cells(K: int, table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gold, predicted, count) of the non-empty cells of a K x (K+1) count table."""
    g, p = np.meshgrid(np.arange(K), np.arange(K + 1), indexing="ij")
    w = table.ravel()
    nz = w > 0
    return g.ravel()[nz], p.ravel()[nz], w[nz]


def _metrics(g: np.ndarray, p: np.ndarray, w: np.ndarray, K: int, pos: int | None, betas) -> dict:
    """Metric columns of one model (or baseline) from weighted (gold, predicted) codes; code K = INVALID."""
    lab = np.arange(K)
    ans = p < K
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        # INVALID is never a gold class: balanced accuracy drops it (mean recall over the gold classes)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        # items of one gold class only (a one-item run): balanced accuracy is the recall of that class;
        # sklearn's note on the confusion matrix's shape is about a matrix this code never returns
        warnings.filterwarnings("ignore", message="A single label was found")
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        row = {
            "accuracy": accuracy_score(g, p, sample_weight=w),
            "accuracy_answered": accuracy_score(g[ans], p[ans], sample_weight=w[ans]) if w[ans].sum() else np.nan,
            "balanced_accuracy": balanced_accuracy_score(g, p, sample_weight=w),
            "macro_f1": f1_score(g, p, labels=lab, average="macro", sample_weight=w, zero_division=0),
            # INVALID takes part as its own category: an invalid reply disagrees with every gold label
            "kappa": cohen_kappa_score(g, p, sample_weight=w),
        }
        if pos is not None:
            pr, rc, f1, _ = precision_recall_fscore_support(g, p, labels=[pos], average=None, sample_weight=w,
                                                            zero_division=0)
            row.update(precision=pr[0], recall=rc[0], f1=f1[0])
        for b in betas:
            if pos is not None:
                v = fbeta_score(g, p, beta=b, labels=[pos], average=None, sample_weight=w, zero_division=0)[0]
            else:
                v = fbeta_score(g, p, beta=b, labels=lab, average="macro", sample_weight=w, zero_division=0)
            row[f"f_beta_{b:g}"] = v
    row["invalid_rate"] = w[~ans].sum() / w.sum()
    return {k: float(v) for k, v in row.items()}


def _positive_code(labels: list[str], positive) -> int | None:
    if positive is None:
        return None
    if len(labels) != 2:
        raise ValueError(f"a positive class makes sense for a binary task; labels are {labels}")
    if str(positive) not in labels:
        raise ValueError(f"positive class {positive!r} is not one of {labels}")
    return labels.index(str(positive))


def per_model(calls: pd.DataFrame, items: pd.DataFrame, labels, positive=None, betas=(),
              price_per_hour: float | None = None) -> pd.DataFrame:
    """One row per model, in order of first appearance.

    Columns: model, family, quant, variant (those present in ``calls``), calls, items, iterations,
    accuracy (every call; invalid = wrong), accuracy_answered (valid answers only), balanced_accuracy,
    macro_f1 (over ``labels``; INVALID is not a class), kappa (Cohen's, against gold), for a binary task
    (``positive`` given) precision / recall / f1 of the positive class, f_beta_<b> per beta (positive
    class when binary, else macro), invalid_rate, vote_accuracy (majority vote per item, see the module
    doc), self_consistency (mean over items of the share of iteration pairs giving the same answer,
    INVALID counting as an answer; NaN when no item has two iterations), s_per_sample (mean
    wall_seconds over every call), cost_per_1k (price_per_hour x mean seconds x 1000 / 3600; NaN
    without a price), mean_confidence (over valid calls; when ``calls`` has a confidence column).
    """
    c = _code(calls, items, labels)
    M, K = len(c.models), c.K
    pos = _positive_code(c.labels, positive)
    tab = np.bincount((c.m * K + c.g) * (K + 1) + c.p, minlength=M * K * (K + 1)).reshape(M, K, K + 1)
    t = _items(c)
    g = calls.groupby(c.m, sort=True)
    first = g.first()
    iterations = g["iteration"].nunique()
    wall = g["wall_seconds"].mean()
    conf = None
    if "confidence" in calls:
        conf = calls["confidence"].where(c.p < K).groupby(c.m, sort=True).mean()
    rows = []
    for k, model in enumerate(c.models):
        row = {"model": model}
        for col in ("family", "quant", "variant"):
            if col in calls:
                row[col] = first.loc[k, col]
        seen = t.seen[k]
        with np.errstate(invalid="ignore", divide="ignore"):
            multi = t.pairs[k] > 0
            sc = float(np.mean(t.agree[k][multi] / t.pairs[k][multi])) if multi.any() else np.nan
        row.update(calls=int(t.n[k].sum()), items=int(seen.sum()), iterations=int(iterations.loc[k]))
        row.update(_metrics(*_cells(K, tab[k]), K, pos, betas))
        row.update(vote_accuracy=float(t.vote_correct[k][seen].mean()), self_consistency=sc,
                   s_per_sample=float(wall.loc[k]),
                   cost_per_1k=(float(price_per_hour) * float(wall.loc[k]) * 1000 / 3600
                                if price_per_hour is not None else np.nan))
        if conf is not None:
            row["mean_confidence"] = float(conf.loc[k])
        rows.append(row)
    return pd.DataFrame(rows)


def per_class(calls: pd.DataFrame, items: pd.DataFrame, labels) -> pd.DataFrame:
    """Long table, one row per (model, class): precision, recall, f1, support (gold calls of the class).

    Invalid replies lower the recall of their gold class and no class's precision; a class never
    predicted has precision 0 (scikit-learn's zero_division=0)."""
    c = _code(calls, items, labels)
    M, K = len(c.models), c.K
    tab = np.bincount((c.m * K + c.g) * (K + 1) + c.p, minlength=M * K * (K + 1)).reshape(M, K, K + 1)
    frames = []
    for k, model in enumerate(c.models):
        g, p, w = _cells(K, tab[k])
        pr, rc, f1, sup = precision_recall_fscore_support(g, p, labels=np.arange(K), average=None, sample_weight=w,
                                                          zero_division=0)
        frames.append(pd.DataFrame({"model": model, "class": c.labels, "precision": pr, "recall": rc, "f1": f1,
                                    "support": np.rint(sup).astype(np.int64)}))
    return pd.concat(frames, ignore_index=True)


def confusion(calls: pd.DataFrame, items: pd.DataFrame, labels) -> dict[str, pd.DataFrame]:
    """Per model, counts over every call: rows gold label, columns predicted label plus INVALID."""
    c = _code(calls, items, labels)
    M, K = len(c.models), c.K
    tab = np.bincount((c.m * K + c.g) * (K + 1) + c.p, minlength=M * K * (K + 1)).reshape(M, K, K + 1)
    cols = c.labels + [INVALID]
    out = {}
    for k, model in enumerate(c.models):
        g, p, w = _cells(K, tab[k])
        cm = confusion_matrix(g, p, labels=np.arange(K + 1), sample_weight=w)[:K]
        out[model] = pd.DataFrame(cm.astype(np.int64), index=pd.Index(c.labels, name="gold"),
                                  columns=pd.Index(cols, name="predicted"))
    return out


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
        r.update(vote_accuracy=r["accuracy"], self_consistency=np.nan, s_per_sample=np.nan, cost_per_1k=np.nan)
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


# --------------------------------------------------------------------------- tests


def bootstrap_diff_ci(diffs, alpha: float = 0.05, n_boot: int = 2000, seed=0,
                      method: str = "expanded") -> tuple[float, float]:
    """Interval for the mean of per-item differences from a bootstrap over items.

    ``diffs`` holds one value per item (candidate accuracy minus reference accuracy on that item, each
    the mean over the item's iterations); resampling these values with replacement is resampling items,
    each bringing all its iterations. ``method``:

    - "expanded" (default): the expanded percentile interval (Hesterberg 2015, "What teachers should
      know about the bootstrap"): the percentiles are taken at alpha' where
      z_{alpha'/2} = sqrt(n / (n - 1)) * t_{alpha/2, n-1}. The plain percentile interval is too narrow
      at the item counts of a small study (the bootstrap variance has divisor n, and a normal
      rather than a t quantile): in null simulations with 24 items it excluded 0 in 6.6-7.5 % of
      runs at alpha 0.05, and BCa (scipy) in 7-10 %; the expanded interval stays near 5 %.
      scipy.stats.bootstrap has no such option, so the two lines are written by hand.
    - "percentile": the plain percentile interval.

    Returns (nan, nan) with fewer than two items."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n < 2:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, (n_boot, n), dtype=np.int32)].mean(1)
    if method == "expanded":
        a = 2 * special.ndtr(-np.sqrt(n / (n - 1)) * special.stdtrit(n - 1, 1 - alpha / 2))
    elif method == "percentile":
        a = alpha
    else:
        raise ValueError(f"unknown method {method!r}")
    lo, hi = np.quantile(means, [a / 2, 1 - a / 2])
    return float(lo), float(hi)


def mcnemar_test(ref_correct, cand_correct) -> dict:
    """McNemar on one binary outcome per item: exact (statsmodels, conservative at small n) and mid-p.

    The mid-p value is the exact two-sided binomial p minus the probability of the observed count
    (Fagerland, Lydersen & Laake 2013); statsmodels has no mid-p variant, hence this one line by hand."""
    r = np.asarray(ref_correct, dtype=bool)
    cnd = np.asarray(cand_correct, dtype=bool)
    table = np.array([[np.sum(r & cnd), np.sum(r & ~cnd)], [np.sum(~r & cnd), np.sum(~r & ~cnd)]])
    b, c = int(table[0, 1]), int(table[1, 0])
    p_exact = float(_sm_mcnemar(table, exact=True).pvalue)
    p_mid = 1.0 if b == c else float(p_exact - ss.binom.pmf(min(b, c), b + c, 0.5))
    return {"ref_only": b, "cand_only": c, "p_exact": p_exact, "p_midp": p_mid}


def compare_pairs(calls: pd.DataFrame, items: pd.DataFrame, pairs, alpha: float = 0.05, n_boot: int = 2000,
                  seed: int = 0, labels=None, ci_method: str = "expanded") -> pd.DataFrame:
    """One row per [reference, candidate] pair, over the items both answered.

    Columns: reference, candidate, items; accuracy_reference, accuracy_candidate (mean over items of
    the per-item accuracy, the mean over the item's iterations), diff (candidate - reference),
    ci_low / ci_high (``1 - alpha`` interval from a bootstrap over items, see ``bootstrap_diff_ci``;
    not adjusted across pairs), ci_excludes_0;
    vote_accuracy_reference / _candidate, mcnemar_ref_only / mcnemar_cand_only (items only the
    reference / only the candidate gets right by majority vote), mcnemar_p_exact, mcnemar_p_midp and
    their Holm-adjusted values across the pairs (…_holm); matched_calls (calls matched on item and
    iteration), right_to_wrong / wrong_to_right (shares of matched calls the reference gets right and
    the candidate wrong, and the reverse), flip_rate (their sum), answer_flip_rate (share of matched
    calls whose answers differ, INVALID counting as an answer); ref_flip_rate / ref_answer_flip_rate:
    the reference's own flip rate, the share of pairs of different iterations of one item whose
    correctness (answer) differs; the baseline for flip_rate / answer_flip_rate; note.
    """
    c = _code(calls, items, labels)
    t = _items(c)
    acc = t.accuracy
    index = {m: k for k, m in enumerate(c.models)}
    correct_call = c.p == c.g
    width = int(c.it.max()) + 1 if len(c.it) else 1
    seeds = np.random.SeedSequence(seed).spawn(max(len(pairs), 1))
    rows = []
    for (ref, cand), ss_ in zip(pairs, seeds):
        ref, cand = str(ref), str(cand)
        row = {"reference": ref, "candidate": cand}
        if ref not in index or cand not in index:
            raise ValueError(f"pair {[ref, cand]}: models present are {c.models}")
        a, b = index[ref], index[cand]
        both = t.seen[a] & t.seen[b]
        d = acc[b][both] - acc[a][both]
        lo, hi = bootstrap_diff_ci(d, alpha, n_boot, ss_, ci_method)
        mc = mcnemar_test(t.vote_correct[a][both], t.vote_correct[b][both])
        # matched calls: the same (item, iteration) answered by both
        ka, kb = c.m == a, c.m == b
        key_a, key_b = c.i[ka] * width + c.it[ka], c.i[kb] * width + c.it[kb]
        _, ia, ib = np.intersect1d(key_a, key_b, return_indices=True)
        ra, rb = correct_call[ka][ia], correct_call[kb][ib]
        pa, pb = c.p[ka][ia], c.p[kb][ib]
        n_m = len(ia)
        pairs_a = t.pairs[a][both].sum()
        own_flip = (t.correct[a] * (t.n[a] - t.correct[a]))[both].sum()
        own_answer = (t.pairs[a] - t.agree[a])[both].sum()
        row.update(
            items=int(both.sum()),
            accuracy_reference=float(acc[a][both].mean()) if both.any() else np.nan,
            accuracy_candidate=float(acc[b][both].mean()) if both.any() else np.nan,
            diff=float(d.mean()) if both.any() else np.nan, ci_low=lo, ci_high=hi,
            ci_excludes_0=bool(lo > 0 or hi < 0),
            vote_accuracy_reference=float(t.vote_correct[a][both].mean()) if both.any() else np.nan,
            vote_accuracy_candidate=float(t.vote_correct[b][both].mean()) if both.any() else np.nan,
            mcnemar_ref_only=mc["ref_only"], mcnemar_cand_only=mc["cand_only"],
            mcnemar_p_exact=mc["p_exact"] if both.any() else np.nan,
            mcnemar_p_midp=mc["p_midp"] if both.any() else np.nan,
            matched_calls=n_m,
            right_to_wrong=float(np.mean(ra & ~rb)) if n_m else np.nan,
            wrong_to_right=float(np.mean(~ra & rb)) if n_m else np.nan,
            flip_rate=float(np.mean(ra != rb)) if n_m else np.nan,
            answer_flip_rate=float(np.mean(pa != pb)) if n_m else np.nan,
            ref_flip_rate=float(own_flip / pairs_a) if pairs_a else np.nan,
            ref_answer_flip_rate=float(own_answer / pairs_a) if pairs_a else np.nan,
            note=(f"diff and interval: bootstrap over items ({n_boot} resamples, "
                  f"{'expanded percentile' if ci_method == 'expanded' else ci_method} interval); McNemar on "
                  "per-item majority-vote correctness (one outcome per item and model); Holm across "
                  f"{len(pairs)} pairs; flips over calls matched on (item, iteration)"),
        )
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(out):
        out["mcnemar_p_exact_holm"] = holm(out["mcnemar_p_exact"])
        out["mcnemar_p_midp_holm"] = holm(out["mcnemar_p_midp"])
        out = out[[col for col in out.columns if col != "note"] + ["note"]]
    return out


def cochran_q(calls: pd.DataFrame, items: pd.DataFrame, labels=None) -> dict:
    """Cochran's Q across every model (statsmodels) on per-item majority-vote correctness, over the items
    that every model answered. Returns {Q, df, p, items, models, note}."""
    c = _code(calls, items, labels)
    t = _items(c)
    every = t.seen.all(0)
    x = t.vote_correct[:, every].T.astype(int)
    res = cochran_q_test(x)
    res.update(items=int(every.sum()), models=len(c.models),
               note="Cochran's Q (chi-square reference) on per-item majority-vote correctness, "
                    "items answered by every model")
    return res


def cochran_q_test(correct) -> dict:
    """Cochran's Q on an items x models array of 0/1 outcomes (statsmodels)."""
    x = np.asarray(correct, dtype=int)
    if x.shape[0] == 0 or x.shape[1] < 2:
        return {"Q": np.nan, "df": max(x.shape[1] - 1, 0), "p": np.nan}
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no item differs between models: Q = 0/0 = NaN
        r = _sm_cochrans_q(x)
    return {"Q": float(r.statistic), "df": int(r.df), "p": float(r.pvalue)}


# --------------------------------------------------------------------------- synthetic results


@dataclass
class SynthLabelModel:
    """A model for ``synthetic_calls``.

    ``accuracy`` is the per-sample accuracy of its valid answers, averaged over items. Correctness on
    item i: P(right) = Phi(mu + d_i + e_i) with d_i ~ N(0, difficulty_sd) shared by every model (items
    differ in difficulty) and e_i ~ N(0, item_effect_sd) this model's own item effect; mu is set so
    that the mean over items is ``accuracy``. The iterations of one item are independent given that
    probability, so they are correlated across the item's iterations."""

    name: str
    accuracy: float = 0.8
    family: str = "fam"
    quant: str = "Q4_K_M"
    variant: str | None = None
    item_effect_sd: float = 0.3
    invalid_rate: float = 0.0
    seconds: float = 1.0


def synthetic_calls(models: list[SynthLabelModel], n_items: int, n_iterations: int, labels, priors=None,
                    seed: int = 0, difficulty_sd: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(calls, items) with known properties. Gold labels drawn with ``priors`` (uniform by default);
    a call is invalid with the model's ``invalid_rate`` (independently); a valid call is right with the
    probability described in ``SynthLabelModel``, else one of the other labels at random. Confidence
    follows the probability of being right. ``calls.attrs["p_correct"]`` holds the models x items
    probabilities."""
    rng = np.random.default_rng(seed)
    labels = [str(x) for x in labels]
    K = len(labels)
    item_ids = np.array([f"item{i:06d}" for i in range(n_items)], dtype=object)
    gold = rng.choice(K, size=n_items, p=priors)
    difficulty = rng.normal(0, difficulty_sd, n_items)
    lab = np.array(labels + [None], dtype=object)
    it = np.tile(np.arange(n_iterations), n_items)
    ii = np.repeat(np.arange(n_items), n_iterations)
    frames, probs = [], []
    for m in models:
        mu = ss.norm.ppf(m.accuracy) * np.sqrt(1 + difficulty_sd ** 2 + m.item_effect_sd ** 2)
        p_item = ss.norm.cdf(mu + difficulty + rng.normal(0, m.item_effect_sd, n_items))
        probs.append(p_item)
        n = n_items * n_iterations
        right = rng.random(n) < p_item[ii]
        wrong = (gold[ii] + rng.integers(1, K, n)) % K if K > 1 else gold[ii]
        valid = rng.random(n) >= m.invalid_rate
        pred = np.where(valid, np.where(right, gold[ii], wrong), K)
        frames.append(pd.DataFrame({
            "model": m.name, "family": m.family, "quant": m.quant, "variant": m.variant, "iteration": it,
            "item_id": item_ids[ii], "valid": valid, "label": lab[pred],
            "confidence": np.where(valid, np.clip(p_item[ii] + rng.normal(0, 0.05, n), 0, 1), np.nan),
            "wall_seconds": m.seconds * rng.lognormal(0, 0.1, n),
        }))
    calls = pd.concat(frames, ignore_index=True)
    calls.attrs["p_correct"] = np.array(probs)
    items = pd.DataFrame({"item_id": item_ids, "target_label": lab[gold], "split": None})
    return calls, items


# --------------------------------------------------------------------------- per-item figures for the paired tests


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

        c = _code(calls, items, labels)
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

        out["s_per_sample"] = item_mean(self.wall)
        if np.isfinite(self.confidence).any():
            out["mean_confidence"] = item_mean(self.confidence)
        return out


def _chosen_probability(calls: pd.DataFrame, c: _Coded) -> np.ndarray:
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
    elif name == "macro_f1":
        def fn(s):
            return prf(s)[2].mean(-1)
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
            f = prf(s, beta)[2]
            return f[..., positive] if positive is not None else f.mean(-1)
    else:
        raise ValueError(f"no table metric {name!r}")
    return fn
