"""Statistics for classification studies: local models, quant levels or prompt variants on the same items.

Design that every figure here respects:

- the same items go to every model, so comparisons are paired by item;
- each item is asked N times (iterations) per model; the iterations of one item are NOT independent
  (an item that is hard stays hard), so every test and interval treats the item as the unit: the
  bootstrap resamples items (each bringing all its iterations), McNemar and Cochran's Q use one binary
  outcome per item per model (majority-vote correctness);
- an invalid reply (not valid, no label, or a label outside ``labels``) counts as wrong: its predicted
  label is the sentinel ``INVALID``, which is kept out of the averaged classes (macro-F1, per-class
  tables) but counts as a miss in recall and accuracy. Macro averages run over the labels that occur
  among the items' gold labels (a label of the task that no item has is left out of them). Accuracy over answered calls only is reported
  beside it as ``accuracy_answered``.

Majority vote (``vote_*``): per (model, item), the label given most often among the VALID answers over
the iterations. A tie between t labels is its own outcome (``vote_tied``), never broken by the label
order: the item earns 1/t when the gold label is among the tied ones, else 0 (``vote_credit``, the
expected credit of a fair coin among them), so that with two iterations and no invalid reply vote
accuracy equals per-call accuracy exactly and a "gain" is never the tie rule's. An item with no valid
answer votes ``INVALID`` and earns 0.

Metrics come from scikit-learn (here); the paired tests of two models are in ``label_compare``, the
per-item arrays the report's paired measures use in ``label_items``, simulated runs in
``label_synth``. To stay fast on a million calls, the calls
are first counted per (model, gold, predicted) cell and the scikit-learn metrics are called on the
cells with the counts as ``sample_weight``: that gives exactly the figures of the raw rows (the tests
check it) at the cost of a few hundred cells. Formulas written by hand are marked as such.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix,
                             f1_score, fbeta_score, precision_recall_fscore_support)

INVALID = "(invalid)"


# --------------------------------------------------------------------------- coding


@dataclass
class Coded:
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


def coded(calls: pd.DataFrame, items: pd.DataFrame, labels=None) -> Coded:
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
    return Coded(labels=order, models=[str(x) for x in models], item_ids=item_ids, gold_item=gold,
                  m=mcode.astype(np.int64), i=icode.astype(np.int64),
                  it=calls["iteration"].to_numpy(dtype=np.int64), p=pc, calls=calls)


def vote(counts: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label code, credit, tied) of the majority vote per (..., item) from answer counts (..., items, K + 1)
    (last: invalid) and gold codes (..., items): the code of the single top label (K when there is no
    valid answer, -1 for a tie), the credit (1/t when gold is among the t tied top labels, else 0) and
    whether the top is tied (see the module doc)."""
    K = counts.shape[-1] - 1
    ans = counts[..., :K]
    top_n = ans.max(-1, keepdims=True)
    top = (ans == top_n) & (top_n > 0)
    t = top.sum(-1)
    hit = np.take_along_axis(top, np.broadcast_to(np.asarray(gold)[..., None], top.shape[:-1] + (1,)), -1)[..., 0]
    credit = np.where(t > 0, hit / np.maximum(t, 1), 0.0)
    code = np.where(t == 0, K, np.where(t == 1, ans.argmax(-1), -1))
    return code, credit, t > 1


def vote_text(counts_row: np.ndarray, labels: list[str]) -> str:
    """A majority vote in words for a per-item sheet: the label, "(tie: a, b)", or INVALID."""
    K = len(labels)
    ans = np.asarray(counts_row)[:K]
    if ans.max(initial=0) == 0:
        return INVALID
    tied = [labels[k] for k in np.flatnonzero(ans == ans.max())]
    return tied[0] if len(tied) == 1 else f"(tie: {', '.join(tied)})"


@dataclass
class ItemCounts:
    """Per (model, item) counts as dense (M, I) arrays; ``seen`` marks the pairs with at least one call."""

    n: np.ndarray  # calls
    correct: np.ndarray  # correct calls
    vote: np.ndarray  # majority-vote label code (K when no valid answer, -1 for a tie)
    vote_credit: np.ndarray  # 1 right, 0 wrong, 1/t for a t-way tie that includes gold
    vote_tied: np.ndarray
    pairs: np.ndarray  # pairs of iterations: n (n - 1) / 2
    agree: np.ndarray  # pairs of iterations with the same answer (INVALID counting as an answer)
    counts: np.ndarray  # (M, I, K + 1) answers per label (last: invalid)

    @property
    def vote_correct(self) -> np.ndarray:
        """Right by an untied majority (a tie is not right): the binary outcome of McNemar and Cochran's Q,
        which leave tied items out (``vote_tied``)."""
        return self.vote_credit == 1

    @property
    def seen(self) -> np.ndarray:
        return self.n > 0

    @property
    def accuracy(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.correct / self.n


def item_counts(c: Coded) -> ItemCounts:
    M, I, K = len(c.models), len(c.item_ids), c.K
    counts = np.bincount((c.m * I + c.i) * (K + 1) + c.p, minlength=M * I * (K + 1)).reshape(M, I, K + 1)
    n = counts.sum(-1)
    correct = np.take_along_axis(counts, np.broadcast_to(c.gold_item[None, :, None], (M, I, 1)), -1)[..., 0]
    code, credit, tied = vote(counts, np.broadcast_to(c.gold_item[None, :], (M, I)))
    return ItemCounts(n=n, correct=correct, vote=code, vote_credit=credit, vote_tied=tied,
                      pairs=n * (n - 1) // 2, agree=(counts * (counts - 1) // 2).sum(-1), counts=counts)


def per_item(calls: pd.DataFrame, items: pd.DataFrame, labels=None) -> pd.DataFrame:
    """One row per (model, item) answered: calls, correct, accuracy (share of its iterations right),
    vote (majority label, "(tie: a, b)" or INVALID, see the module doc), vote_credit, vote_tied, agreement
    (share of iteration pairs that agree; NaN with one iteration). The unit of every test in this module."""
    c = coded(calls, items, labels)
    t = item_counts(c)
    mm, ii = np.nonzero(t.seen)
    lab = np.array(c.labels + [INVALID], dtype=object)
    with np.errstate(invalid="ignore", divide="ignore"):
        agreement = np.where(t.pairs > 0, t.agree / np.maximum(t.pairs, 1), np.nan)
    return pd.DataFrame({
        "model": np.array(c.models, dtype=object)[mm], "item_id": c.item_ids[ii],
        "target_label": lab[c.gold_item[ii]], "calls": t.n[mm, ii], "correct": t.correct[mm, ii],
        "accuracy": t.accuracy[mm, ii], "vote": [vote_text(t.counts[m, i], c.labels) for m, i in zip(mm, ii)],
        "vote_credit": t.vote_credit[mm, ii], "vote_tied": t.vote_tied[mm, ii], "agreement": agreement[mm, ii],
    })


# --------------------------------------------------------------------------- metrics


def _cells(K: int, table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gold, predicted, count) of the non-empty cells of a K x (K+1) count table."""
    g, p = np.meshgrid(np.arange(K), np.arange(K + 1), indexing="ij")
    w = table.ravel()
    nz = w > 0
    return g.ravel()[nz], p.ravel()[nz], w[nz]


def _metrics(g: np.ndarray, p: np.ndarray, w: np.ndarray, K: int, pos: int | None, betas) -> dict:
    """Metric columns of one model (or baseline) from weighted (gold, predicted) codes; code K = INVALID.
    Macro averages run over the labels that occur as gold (a label no item has would add an F1 of 0
    to every model whatever it answered)."""
    lab = np.unique(g[w > 0]) if (w > 0).any() else np.arange(K)
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
    class when binary, else macro), invalid_rate, vote_accuracy (majority vote per item, ties split, see
    the module doc), vote_ties (items whose vote is tied), self_consistency (mean over items of the share of iteration pairs giving the same answer,
    INVALID counting as an answer; NaN when no item has two iterations), s_per_sample (mean
    wall_seconds over every call), cost_per_1k (price_per_hour x mean seconds x 1000 / 3600; NaN
    without a price), mean_confidence (over valid calls; when ``calls`` has a confidence column).
    """
    c = coded(calls, items, labels)
    M, K = len(c.models), c.K
    pos = _positive_code(c.labels, positive)
    tab = np.bincount((c.m * K + c.g) * (K + 1) + c.p, minlength=M * K * (K + 1)).reshape(M, K, K + 1)
    t = item_counts(c)
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
        row.update(vote_accuracy=float(t.vote_credit[k][seen].mean()), vote_ties=int(t.vote_tied[k][seen].sum()),
                   self_consistency=sc,
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
    c = coded(calls, items, labels)
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
    c = coded(calls, items, labels)
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
